// Promise-based clients for the integration suites: a WebSocket client with a message queue
// (next(), silence(), closed), a probe for upgrade responses that are not 101, and raw TCP/HTTP
// helpers for traffic that no well-behaved client library would send.
import net from 'node:net';
import WebSocket from 'ws';

// Rejects with an Error naming `what` if promise has not settled within ms.
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];    // received messages not consumed yet: { text, json, binary }
    this.waiters = [];  // pending next() calls: { filter, resolve, reject }
    this.errors = [];   // 'error' events (kept so that they are never unhandled)
    this.pings = 0;
    this.closeInfo = null;
    ws.on('error', (e) => this.errors.push(e));
    ws.on('ping', () => { this.pings += 1; });
    ws.on('message', (data, isBinary) => this.#push(data, isBinary));
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) {
          w.reject(new Error(`socket closed (code ${code}) while waiting for a message`));
        }
        resolve(this.closeInfo);
      });
    });
  }

  // Connects; rejects with err.status set when the server answers the upgrade with a status
  // other than 101.
  static open(url, options = {}, timeoutMs = 5000) {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    const client = new WsClient(ws);
    const opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (req, res) => {
        const err = new Error(`upgrade refused with HTTP ${res.statusCode}`);
        err.status = res.statusCode;
        res.resume();
        req.destroy();
        reject(err);
      });
      ws.once('error', reject);
      ws.once('close', (code) => reject(new Error(`closed (${code}) before open`)));
    });
    return withTimeout(opened, timeoutMs, `open ${url}`).catch((e) => {
      ws.terminate();
      throw e;
    });
  }

  get isOpen() { return this.ws.readyState === WebSocket.OPEN; }

  // Sends an object as JSON, or a string / Buffer as given (opts go to ws.send).
  send(msg, opts = {}) {
    const data = typeof msg === 'string' || Buffer.isBuffer(msg) ? msg : JSON.stringify(msg);
    return new Promise((resolve, reject) => {
      this.ws.send(data, opts, (err) => (err ? reject(err) : resolve()));
    });
  }

  // The next message (parsed JSON in .json when it parses) matching filter(json, text),
  // leaving messages that don't match in the queue.
  next({ filter = () => true, timeoutMs = 5000, what = 'message' } = {}) {
    const i = this.queue.findIndex((m) => filter(m.json, m.text));
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0].json);
    if (this.closeInfo) {
      return Promise.reject(new Error(`socket already closed (code ${this.closeInfo.code}), no ${what}`));
    }
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { filter, resolve, reject };
      this.waiters.push(waiter);
    });
    return withTimeout(p, timeoutMs, `waiting for ${what}`).finally(() => {
      const k = this.waiters.indexOf(waiter);
      if (k >= 0) this.waiters.splice(k, 1);
    });
  }

  // Messages of one kind, for filters.
  static is(kind, infoHash) {
    return (j) => {
      if (!j || (infoHash !== undefined && j.info_hash !== infoHash)) return false;
      switch (kind) {
        case 'announce': return j.action === 'announce' && 'interval' in j;
        case 'offer': return j.action === 'announce' && 'offer' in j;
        case 'answer': return j.action === 'announce' && 'answer' in j;
        case 'scrape': return j.action === 'scrape';
        case 'error': return 'failure reason' in j;
        default: throw new Error(`unknown kind ${kind}`);
      }
    };
  }

  // Like next(), but also returns cancel(), which withdraws the wait (used by waitAny).
  take(filter) {
    const i = this.queue.findIndex((m) => filter(m.json, m.text));
    if (i >= 0) return { promise: Promise.resolve(this.queue.splice(i, 1)[0].json), cancel() {} };
    let waiter;
    const promise = new Promise((resolve, reject) => {
      waiter = { filter, resolve, reject };
      this.waiters.push(waiter);
    });
    promise.catch(() => {});
    return {
      promise,
      cancel: () => {
        const k = this.waiters.indexOf(waiter);
        if (k >= 0) this.waiters.splice(k, 1);
      },
    };
  }

  // Resolves with the messages matching filter that arrived within ms (expected: none).
  // Observing that nothing happens needs a bound: callers pass a short one and say why.
  async collectFor(ms, filter = () => true) {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.filter((m) => filter(m.json, m.text)).map((m) => m.json ?? m.text);
  }

  // Drops every queued message matching filter; returns how many.
  drain(filter = () => true) {
    const before = this.queue.length;
    this.queue = this.queue.filter((m) => !filter(m.json, m.text));
    return before - this.queue.length;
  }

  waitClose(timeoutMs = 5000) {
    return withTimeout(this.closed, timeoutMs, 'socket close');
  }

  async close(code = 1000) {
    if (this.closeInfo) return this.closeInfo;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code);
    else this.ws.terminate();
    try {
      return await withTimeout(this.closed, 3000, 'close handshake');
    } catch {
      this.ws.terminate();
      return this.closed;
    }
  }

  terminate() {
    this.ws.terminate();
    return this.closed;
  }

  #push(data, isBinary) {
    const text = isBinary ? null : data.toString();
    let json;
    if (text !== null) {
      try { json = JSON.parse(text); } catch { json = undefined; }
    }
    const m = { text, json, binary: isBinary ? data : null };
    const w = this.waiters.find((x) => x.filter(m.json, m.text));
    if (w) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(m.json);
    } else {
      this.queue.push(m);
    }
  }
}

// The first of clients to receive a message matching filter: resolves { client, index, msg }.
// The other clients keep their queues untouched.
export async function waitAny(clients, filter, timeoutMs = 5000, what = 'message on any client') {
  const takes = clients.map((c) => c.take(filter));
  try {
    return await withTimeout(Promise.any(takes.map((t, index) => t.promise.then((msg) => ({ client: clients[index], index, msg })))),
      timeoutMs, what);
  } finally {
    for (const t of takes) t.cancel();
  }
}

// Status code of a WebSocket upgrade attempt: 101 when it succeeds (the socket is then closed).
export async function upgradeStatus(url, options = {}) {
  try {
    const c = await WsClient.open(url, options);
    await c.close();
    return 101;
  } catch (e) {
    if (e.status) return e.status;
    throw e;
  }
}

// Opens a raw TCP connection to "host:port"; resolves with the socket once connected.
export function tcpConnect(hostPort, timeoutMs = 5000) {
  const [host, port] = splitHostPort(hostPort);
  return withTimeout(new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s));
    s.once('error', reject);
  }), timeoutMs, `connect ${hostPort}`);
}

export function splitHostPort(hostPort) {
  const i = hostPort.lastIndexOf(':');
  return [hostPort.slice(0, i).replace(/^\[|\]$/g, ''), Number(hostPort.slice(i + 1))];
}

// Writes data on a fresh TCP connection and collects what comes back until the server
// closes (or timeoutMs). Resolves { data: Buffer, closedByServer: boolean }.
export async function rawExchange(hostPort, data, { timeoutMs = 5000, endAfterWrite = false } = {}) {
  const s = await tcpConnect(hostPort);
  const chunks = [];
  s.on('data', (c) => chunks.push(c));
  s.on('error', () => {});  // a reset after garbage is an acceptable way to be told off
  const done = new Promise((resolve) => s.once('close', () => resolve(true)));
  s.write(data);
  if (endAfterWrite) s.end();
  let closedByServer = false;
  try {
    closedByServer = await withTimeout(done, timeoutMs, 'server closing the connection');
  } catch {
    s.destroy();
  }
  return { data: Buffer.concat(chunks), closedByServer };
}

// A WebSocket client written by hand on a raw socket: performs the upgrade and then does only
// what the test tells it to (it never answers pings). Resolves { socket, response, closed }.
export async function rawWebSocket(hostPort, path = '/', timeoutMs = 5000) {
  const s = await tcpConnect(hostPort);
  const key = Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256))).toString('base64');
  s.write(`GET ${path} HTTP/1.1\r\nHost: ${hostPort}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  const closed = new Promise((resolve) => s.once('close', resolve));
  s.on('error', () => {});
  const response = await withTimeout(new Promise((resolve, reject) => {
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        s.off('data', onData);
        resolve(buf.subarray(0, end).toString());
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed during the handshake: ${buf}`)));
  }), timeoutMs, 'raw upgrade response');
  return { socket: s, response, closed };
}
