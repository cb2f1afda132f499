// A minimal native-protocol (ws://HOST/v1/ws) client for the ICE and locality suites: opens a
// WebSocket, optionally from a given loopback source address (all of 127/8 is on lo), says
// hello, joins swarms, and waits for messages matching a filter. Every wait is bounded.
import WebSocket from 'ws';

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class NativePeer {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.queue = [];    // parsed messages not consumed yet
    this.waiters = [];  // { filter, resolve, reject }
    this.errors = [];
    this.closeInfo = null;
    this.welcome = null;
    ws.on('error', (e) => this.errors.push(e));
    ws.on('message', (data, isBinary) => {
      let msg;
      try { msg = JSON.parse(data.toString()); } catch { msg = { type: '(unparsable)', raw: data.toString(), isBinary }; }
      const w = this.waiters.find((x) => x.filter(msg));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(msg);
      } else {
        this.queue.push(msg);
      }
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) w.reject(new Error(`${label}: socket closed (${code}) while waiting`));
        resolve(this.closeInfo);
      });
    });
  }

  // url: the daemon's ws://HOST:PORT; localAddress: source address (e.g. '127.1.5.1').
  static async open(url, { localAddress, label = localAddress ?? 'peer', timeoutMs = 5000 } = {}) {
    const ws = new WebSocket(`${url}/v1/ws`, { perMessageDeflate: false, ...(localAddress ? { localAddress } : {}) });
    const peer = new NativePeer(ws, label);
    const opened = new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    });
    try {
      await withTimeout(opened, timeoutMs, `${label}: open ${url}/v1/ws`);
    } catch (e) {
      ws.terminate();
      throw e;
    }
    return peer;
  }

  send(obj) {
    return new Promise((resolve, reject) => this.ws.send(JSON.stringify(obj), (err) => (err ? reject(err) : resolve())));
  }

  // The next message matching filter (messages that don't match stay queued for later waits).
  next(filter, { timeoutMs = 5000, what = 'message' } = {}) {
    const i = this.queue.findIndex(filter);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    if (this.closeInfo) return Promise.reject(new Error(`${this.label}: closed (${this.closeInfo.code}), no ${what}`));
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { filter, resolve, reject };
      this.waiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, `${this.label}: waiting for ${what}`).finally(() => {
      const k = this.waiters.indexOf(waiter);
      if (k >= 0) this.waiters.splice(k, 1);
    });
  }

  // Sends hello and resolves with the welcome (kept in this.welcome; this.id is the peer id).
  async hello(extra = {}) {
    await this.send({ type: 'hello', v: 1, ...extra });
    const m = await this.next((x) => x.type === 'welcome' || x.type === 'error', { what: 'welcome' });
    if (m.type !== 'welcome') throw new Error(`${this.label}: hello answered with ${JSON.stringify(m)}`);
    this.welcome = m;
    this.id = m.peer_id;
    return m;
  }

  // Joins and resolves with the joined message (its swarm is the normalized key).
  async join(swarm, { size = 1 << 20, blockSize = 1 << 16, have } = {}) {
    await this.send({ type: 'join', swarm, size, block_size: blockSize, ...(have ? { have } : {}) });
    const m = await this.next((x) => x.type === 'joined' || x.type === 'error', { what: `joined ${swarm}` });
    if (m.type !== 'joined') throw new Error(`${this.label}: join ${swarm} answered with ${JSON.stringify(m)}`);
    return m;
  }

  // The next neighbors message of one swarm (by its normalized key) that satisfies match (a
  // joiner is always sent one, with an empty add when nobody was linked to it).
  neighbors(swarmKey, { match = () => true, timeoutMs = 5000, what = `neighbors of ${swarmKey}` } = {}) {
    return this.next((x) => x.type === 'neighbors' && x.swarm === swarmKey && match(x), { timeoutMs, what });
  }

  // The next neighbors message of one swarm adding the peer with id.
  linkedTo(swarmKey, id, timeoutMs = 5000) {
    return this.neighbors(swarmKey, { match: (x) => x.add.some((n) => n.peer_id === id), timeoutMs, what: `link to ${id} in ${swarmKey}` });
  }

  async close() {
    if (this.closeInfo) return this.closeInfo;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    else this.ws.terminate();
    try {
      return await withTimeout(this.closed, 3000, `${this.label}: close handshake`);
    } catch {
      this.ws.terminate();
      return this.closed;
    }
  }
}
