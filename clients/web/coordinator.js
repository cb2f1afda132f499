// The connection to the swarmcoord coordinator (native protocol v1, protocol/README.md).
// It survives outages: when the socket drops it reconnects with jittered exponential backoff,
// says hello again and re-joins every swarm with the bitfield its owner holds now. Owners
// (one per swarm) receive `joined`, `neighbors`, `signal` and `error` through callbacks.

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30000;

export class Coordinator {
  // url: ws(s)://HOST:PORT/v1/ws; WebSocketImpl: the browser's WebSocket or the `ws` package.
  constructor(url, { WebSocketImpl = globalThis.WebSocket, native = false, maxNeighbors, log = () => {} } = {}) {
    if (!WebSocketImpl) throw new Error('no WebSocket implementation: pass one as WebSocket');
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.native = native;
    this.maxNeighbors = maxNeighbors;
    this.log = log;
    this.ws = null;
    this.ready = false;        // welcome received on the current socket
    this.welcome = null;
    this.closed = false;
    this.attempt = 0;
    this.owners = new Map();   // swarm key → owner
    this.readyWaiters = [];
    this.reconnectTimer = null;
    this.connect();
  }

  get peerId() { return this.welcome?.peer_id ?? null; }
  get iceServers() { return this.welcome?.ice_servers ?? []; }

  // Resolves with the welcome of the current (or next) session.
  whenReady() {
    if (this.ready) return Promise.resolve(this.welcome);
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  connect() {
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this.log('warn', `coordinator ${this.url}: ${e.message}`);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const hello = { type: 'hello', v: 1, native: this.native };
      if (this.maxNeighbors) hello.max_neighbors = this.maxNeighbors;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return; // the coordinator only sends text
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const wasReady = this.ready;
      this.ws = null;
      this.ready = false;
      if (this.closed) return;
      this.log('warn', `coordinator connection closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''}); reconnecting`);
      if (wasReady) for (const owner of this.owners.values()) owner.onCoordinatorLost?.();
      this.scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows and handles it
  }

  scheduleReconnect() {
    if (this.closed || this.reconnectTimer) return;
    // Full jitter: a whole audience that lost the coordinator at once must not come back at once.
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.connect(); }, delay);
  }

  onMessage(msg) {
    switch (msg.type) {
      case 'welcome': {
        this.welcome = msg;
        this.ready = true;
        this.attempt = 0;
        // Owners re-join with their current bitfields.
        for (const owner of this.owners.values()) owner.onCoordinatorReady?.();
        for (const w of this.readyWaiters.splice(0)) w(msg);
        return;
      }
      case 'joined':
      case 'neighbors':
      case 'signal':
        this.owners.get(msg.swarm)?.onCoordinatorMessage(msg);
        return;
      case 'error': {
        const owner = msg.swarm ? this.owners.get(msg.swarm) : null;
        if (owner) owner.onCoordinatorError?.(msg);
        else this.log('warn', `coordinator error ${msg.code}: ${msg.message}`);
        return;
      }
      default:
    }
  }

  // key: the swarm key as the server spells it (swarmKey()); one owner per swarm.
  register(key, owner) { this.owners.set(key, owner); }
  unregister(key) { this.owners.delete(key); }

  // Sends now when connected, else drops it: owners resend their state (join with the current
  // bitfield) from onCoordinatorReady, so nothing stale is replayed after an outage.
  send(msg) {
    if (!this.ready || this.ws?.readyState !== 1) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close() {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.ws?.close(1000);
    this.ws = null;
    this.ready = false;
  }
}

// The swarm key the coordinator uses for a URL (protocol/README.md, "Swarm keys"; the same
// steps as protocol/swarm_url.cpp): scheme and host lower-cased, the default port and the
// fragment dropped, an empty path made `/`, path and query kept byte for byte. Returns null
// for what the coordinator would refuse.
export function swarmKey(url) {
  // The limit is in UTF-8 bytes, and only ASCII letters are lower-cased, as on the server.
  if (typeof url !== 'string' || url.length === 0 || /[\x00-\x20\x7f]/.test(url)) return null;
  if (new TextEncoder().encode(url).length > 2048) return null;
  url = url.split('#')[0];
  const sep = url.indexOf('://');
  if (sep < 0) return null;
  const scheme = asciiLower(url.slice(0, sep));
  if (scheme !== 'http' && scheme !== 'https') return null;
  const rest = url.slice(sep + 3);
  const pathStart = rest.search(/[/?]/);
  const authority = pathStart < 0 ? rest : rest.slice(0, pathStart);
  const path = pathStart < 0 ? '' : rest.slice(pathStart);
  if (authority === '' || authority.includes('@')) return null;
  let host;
  let port = '';
  if (authority[0] === '[') {
    const close = authority.indexOf(']');
    if (close <= 1) return null;
    host = authority.slice(0, close + 1);
    const after = authority.slice(close + 1);
    if (after !== '') {
      if (after[0] !== ':') return null;
      port = after.slice(1);
    }
  } else {
    const c = authority.lastIndexOf(':');
    host = c < 0 ? authority : authority.slice(0, c);
    if (c >= 0) port = authority.slice(c + 1);
  }
  if (host === '' || !/^\d{0,5}$/.test(port)) return null;
  port = port.replace(/^0+(?=\d)/, '');
  if (port !== '' && Number(port) > 65535) return null;
  if ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443')) port = '';
  return `${scheme}://${asciiLower(host)}${port ? ':' + port : ''}${path === '' || path[0] === '?' ? '/' : ''}${path}`;
}

function asciiLower(s) { return s.replace(/[A-Z]+/g, (m) => m.toLowerCase()); }
