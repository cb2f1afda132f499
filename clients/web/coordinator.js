// The connection to the swarmcoord coordinator (native protocol v1, protocol/README.md).
// It survives outages: when the socket drops it reconnects with jittered exponential backoff,
// says hello again and re-joins every swarm with the bitfield its owner holds now. Owners
// (one per swarm) receive `joined`, `neighbors`, `signal` and `error` through callbacks.

// The swarm key of a URL lives in its own module; importers of this one find it here too.
export { swarmKey } from './swarm-key.js';

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
