// A fake network for running clients/web's SwarmClient in-process without WebRTC or a daemon:
//
//   const net = new FakeNet();
//   const client = new SwarmClient({ coordinator: 'ws://coord.test/v1/ws',
//     WebSocket: net.WebSocket, RTCPeerConnection: net.RTCPeerConnection, fetch, log });
//
// - net.WebSocket is a coordinator speaking the native protocol: it answers `hello` with a
//   `welcome` (a fresh peer id per connection), `join` with `joined` and then `neighbors` (empty
//   unless net.onJoin returns links), relays `signal`s between the clients on this net, and
//   records every message a client sent (socket.sent, net.sent()). A test drives it further
//   with socket.push(message) (delivered at once) and socket.drop() (the server went away).
// - net.RTCPeerConnection / its data channels connect two SwarmClients on this net, or a client
//   and a scripted neighbour (net.peer(id, behaviour)): when the client's link to `id` opens,
//   behaviour(end) runs with a RemoteEnd — the neighbour's side of the data channel, which
//   records what the client sent (end.frames) and sends anything, well-formed or not.
// - Data channels are ordered and deliver asynchronously. With net.throttle set, the bytes a
//   channel sends wait in its send buffer (bufferedAmount) and leave it `bytesPerTick` every
//   `intervalMs`, firing bufferedamountlow as a browser does; channel.maxBufferedAmount is the
//   highest bufferedAmount seen.
// Every event (a message, a frame, a close) emits net.changed, so that tests wait on
// conditions (net.waitFor) rather than on time.
import { EventEmitter } from 'node:events';

export const CHUNK_HEADER = 8;
export const CHUNK_PAYLOAD = 16384 - CHUNK_HEADER;

// ------------------------------------------------------------------ frames

// A chunk frame: u32 block, u32 offset (big-endian), payload.
export function chunkFrame(block, offset, payload) {
  const frame = new Uint8Array(CHUNK_HEADER + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, block);
  view.setUint32(4, offset);
  frame.set(payload, CHUNK_HEADER);
  return frame;
}

// The frames carrying `bytes` (a whole block) from byte `from` on.
export function chunkFrames(block, bytes, from = 0) {
  const frames = [];
  for (let off = from; off < bytes.length; off += CHUNK_PAYLOAD) frames.push(chunkFrame(block, off, bytes.subarray(off, off + CHUNK_PAYLOAD)));
  return frames;
}

// Base64 bitfield of `blocks` blocks, bit i set when has(i) (protocol/README.md layout).
export function bitfieldOf(blocks, has = () => true) {
  const bytes = Buffer.alloc(Math.ceil(blocks / 8));
  for (let i = 0; i < blocks; i++) if (has(i)) bytes[i >> 3] |= 0x80 >> (i & 7);
  return bytes.toString('base64');
}

// What a client sent on a data channel: a parsed control message, a chunk, or { t: '(bad)' }.
function decode(data) {
  if (typeof data === 'string') {
    try { return JSON.parse(data); } catch { return { t: '(bad)', data }; }
  }
  const bytes = new Uint8Array(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { t: 'chunk', block: view.getUint32(0), offset: view.getUint32(4), payload: bytes.subarray(CHUNK_HEADER) };
}

// ------------------------------------------------------------------ the network

export class FakeNet {
  // opts.throttle: { bytesPerTick, intervalMs } for every data channel (default: no limit).
  // opts.joinedPeers: `joined.peers` (other members; 0 lets the origin serve at once).
  constructor({ throttle = null, joinedPeers = 1 } = {}) {
    this.throttle = throttle;
    this.joinedPeers = joinedPeers;
    this.onJoin = null;        // (socket, join message) → the `add` list of the `neighbors` reply
    this.changed = new EventEmitter();
    this.changed.setMaxListeners(0);
    this.sockets = [];         // every coordinator connection, in order
    this.pcs = [];             // every RTCPeerConnection the clients made
    this.channels = [];        // every data channel (both ends)
    this.peers = new Map();    // scripted neighbour id → behaviour(end)
    this.ends = [];            // RemoteEnds of scripted neighbours, in the order they opened
    this.refuse = false;       // true: coordinator connections fail (1006) without opening
    this.closed = false;
    this.timers = new Set();
    this.waiters = new Set();
    this.lastPeer = 0;
    const net = this;
    this.WebSocket = class extends CoordinatorSocket { constructor(url) { super(net, url); } };
    this.RTCPeerConnection = class extends FakePeerConnection { constructor(config) { super(net, config); } };
  }

  touch() { this.changed.emit('change'); }

  newPeerId() { return (0xc0000000 + ++this.lastPeer).toString(16).padStart(16, '0'); }

  // Scripted neighbour `id`: behaviour(end) runs each time a client's link to it opens.
  peer(id, behaviour) {
    this.peers.set(id, behaviour);
    return id;
  }

  // The RemoteEnds of scripted neighbour `id`, in order.
  endsOf(id) { return this.ends.filter((e) => e.peerId === id); }

  // Every message the clients sent to the coordinator, optionally of one type.
  sent(type) { return this.sockets.flatMap((s) => s.sent).filter((m) => type === undefined || m.type === type); }

  // Resolves with pred()'s first truthy value, checked after every event on the net (and every
  // 20 ms, for state a client changes after its own asynchronous work).
  waitFor(pred, what, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let timer;
      let poll;
      const done = (fn, v) => { clearTimeout(timer); clearInterval(poll); this.changed.off('change', check); this.waiters.delete(abandon); fn(v); };
      const abandon = () => done(reject, new Error(`the network closed while waiting for ${what}`));
      this.waiters.add(abandon);
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { done(reject, e); return; }
        if (v) done(resolve, v);
      };
      timer = setTimeout(() => done(reject, new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      poll = setInterval(check, 20);
      this.changed.on('change', check);
      check();
    });
  }

  later(fn, ms = 0) {
    const t = setTimeout(() => { this.timers.delete(t); if (!this.closed) fn(); }, ms);
    this.timers.add(t);
  }

  // Stops every timer of the net (throttled channels, waitFor); clients are closed by the test.
  close() {
    this.closed = true;
    for (const abandon of [...this.waiters]) abandon();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // --- links ---

  connectScripted(pc, peerId) {
    const behaviour = this.peers.get(peerId);
    const label = pc.channel?.label ?? 'swarmcoord/1';
    const local = pc.channel ?? new FakeDataChannel(this, label);
    const remote = new FakeDataChannel(this, label);
    local.pair(remote);
    const end = new RemoteEnd(this, peerId, remote, pc);
    this.ends.push(end);
    if (!pc.channel) { pc.channel = local; pc.ondatachannel?.({ channel: local }); }
    this.openLink(pc, [local, remote], () => behaviour(end));
  }

  connectPair(a, b) {
    const made = a.channel ?? b.channel;
    const other = new FakeDataChannel(this, made.label);
    made.pair(other);
    const [withChannel, without] = a.channel ? [a, b] : [b, a];
    without.channel = other;
    without.ondatachannel?.({ channel: other });
    this.openLink(withChannel, [made, other]);
    without.setState('connected');
  }

  openLink(pc, channels, then) {
    setImmediate(() => {
      pc.setState('connected');
      for (const ch of channels) ch.open();
      then?.();
    });
  }
}

// ------------------------------------------------------------------ coordinator

class CoordinatorSocket {
  constructor(net, url) {
    this.net = net;
    this.url = url;
    this.readyState = 0;
    this.sent = [];            // parsed messages from the client, in order
    this.peerId = null;
    this.closeCode = null;
    net.sockets.push(this);
    setImmediate(() => {
      if (this.readyState !== 0) return;
      if (net.refuse) return this.drop(1006);
      this.readyState = 1;
      this.onopen?.({});
      net.touch();
    });
  }

  send(text) {
    if (this.readyState !== 1) throw new Error('fake coordinator socket is not open');
    const msg = JSON.parse(text);
    this.sent.push(msg);
    switch (msg.type) {
      case 'hello':
        this.peerId = this.net.newPeerId();
        this.reply({ type: 'welcome', peer_id: this.peerId, max_neighbors: 8, heartbeat_s: 150, ice_servers: [] });
        break;
      case 'join': {
        this.reply({ type: 'joined', swarm: msg.swarm, blocks: Math.ceil(msg.size / msg.block_size), peers: this.net.joinedPeers });
        const add = this.net.onJoin?.(this, msg) ?? [];
        this.reply({ type: 'neighbors', swarm: msg.swarm, add, remove: [] });
        break;
      }
      case 'signal': this.relay(msg); break;
      default:
    }
    this.net.touch();
  }

  relay(msg) {
    const { net } = this;
    if (net.peers.has(msg.to)) {
      // A scripted neighbour answers an offer at once; its side of the link needs nothing else.
      if (msg.data?.type === 'offer') this.reply({ type: 'signal', swarm: msg.swarm, from: msg.to, data: { type: 'answer', sdp: `fake:peer:${msg.to}` } });
      return;
    }
    const target = net.sockets.find((s) => s.readyState === 1 && s.peerId === msg.to);
    if (target) target.reply({ type: 'signal', swarm: msg.swarm, from: this.peerId, data: msg.data });
    else this.reply({ type: 'error', code: 'peer_not_found', message: `no peer ${msg.to}`, ref: 'signal', swarm: msg.swarm });
  }

  // Server → client, asynchronously (as from the network).
  reply(msg) {
    setImmediate(() => {
      if (this.readyState !== 1) return;
      this.onmessage?.({ data: JSON.stringify(msg) });
      this.net.touch();
    });
  }

  // Server → client, now: when this returns, the client has handled it.
  push(msg) {
    if (this.readyState !== 1) throw new Error('fake coordinator socket is not open');
    this.onmessage?.({ data: JSON.stringify(msg) });
    this.net.touch();
  }

  // The server side went away (1006: killed; 1001: shutting down).
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closeCode = code;
    setImmediate(() => {
      this.onclose?.({ code, reason: '' });
      this.net.touch();
    });
  }

  // The client closes.
  close(code = 1000) { this.drop(code); }
}

// ------------------------------------------------------------------ WebRTC

let pcCount = 0;

class FakePeerConnection {
  constructor(net, config) {
    this.net = net;
    this.id = ++pcCount;
    this.config = config;
    this.localDescription = null;
    this.remoteDescription = null;
    this.connectionState = 'new';
    this.channel = null;
    this.candidates = [];
    this.linked = false;
    this.closed = false;
    net.pcs.push(this);
    net.touch();
  }

  createDataChannel(label) {
    this.channel = new FakeDataChannel(this.net, label);
    return this.channel;
  }

  async createOffer() { return { type: 'offer', sdp: `fake:pc:${this.id}` }; }

  async createAnswer() {
    if (!this.remoteDescription) throw new Error('createAnswer without a remote offer');
    return { type: 'answer', sdp: `fake:pc:${this.id}` };
  }

  async setLocalDescription(d) { this.localDescription = { ...d }; this.maybeLink(); }

  async setRemoteDescription(d) {
    if (typeof d?.sdp !== 'string' || !d.sdp.startsWith('fake:')) throw new Error(`not a fake SDP: ${d?.sdp}`);
    this.remoteDescription = { ...d };
    this.maybeLink();
  }

  async addIceCandidate(c) { this.candidates.push(c); }

  // Links once both descriptions are set (and, for two clients, on both sides).
  maybeLink() {
    if (this.linked || this.closed || !this.localDescription || !this.remoteDescription) return;
    const [, kind, id] = this.remoteDescription.sdp.split(':');
    if (kind === 'peer') {
      this.linked = true;
      this.net.connectScripted(this, id);
      return;
    }
    const other = this.net.pcs.find((p) => p.id === Number(id));
    if (!other || other.closed || !other.localDescription || !other.remoteDescription) return;
    this.linked = other.linked = true;
    this.net.connectPair(this, other);
  }

  setState(s) {
    if (this.closed && s !== 'closed') return;
    this.connectionState = s;
    this.onconnectionstatechange?.();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.connectionState = 'closed';
    this.channel?.close();
    this.net.touch();
  }
}

class FakeDataChannel {
  constructor(net, label) {
    this.net = net;
    this.label = label;
    this.readyState = 'connecting';
    this.binaryType = 'blob';
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    this.maxBufferedAmount = 0;
    this.lowEvents = 0;        // bufferedamountlow events fired
    this.sentFrames = 0;
    this.sentBytes = 0;
    this.maxFrameBytes = 0;
    this.queue = [];           // [data, size] waiting in the send buffer
    this.draining = false;
    this.other = null;
    net.channels.push(this);
  }

  pair(other) { this.other = other; other.other = this; }

  open() {
    if (this.readyState !== 'connecting') return;
    this.readyState = 'open';
    this.onopen?.({});
    this.net.touch();
  }

  send(data) {
    if (this.readyState !== 'open') throw new DOMException(`channel is ${this.readyState}`, 'InvalidStateError');
    let copy;
    let size;
    if (typeof data === 'string') {
      copy = data;
      size = Buffer.byteLength(data);
    } else {
      const view = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
      copy = view.slice().buffer;  // what the receiver gets: its own ArrayBuffer
      size = view.byteLength;
    }
    this.queue.push([copy, size]);
    this.bufferedAmount += size;
    this.sentFrames++;
    this.sentBytes += size;
    this.maxFrameBytes = Math.max(this.maxFrameBytes, size);
    this.maxBufferedAmount = Math.max(this.maxBufferedAmount, this.bufferedAmount);
    this.scheduleDrain();
  }

  scheduleDrain() {
    if (this.draining) return;
    this.draining = true;
    const t = this.net.throttle;
    const step = () => {
      this.draining = false;
      if (this.readyState !== 'open') return;
      const before = this.bufferedAmount;
      let budget = t ? t.bytesPerTick : Infinity;
      while (this.queue.length && budget > 0) {
        const [data, size] = this.queue.shift();
        budget -= size;
        this.bufferedAmount -= size;
        this.other?.receive(data);
      }
      if (before > this.bufferedAmountLowThreshold && this.bufferedAmount <= this.bufferedAmountLowThreshold) {
        this.lowEvents++;
        this.onbufferedamountlow?.({});
      }
      if (this.queue.length) this.scheduleDrain();
    };
    if (t) this.net.later(step, t.intervalMs);
    else setImmediate(step);
  }

  receive(data) {
    if (this.readyState !== 'open') return;
    this.onmessage?.({ data });
    this.net.touch();
  }

  close() {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    this.queue.length = 0;
    this.bufferedAmount = 0;
    setImmediate(() => { this.onclose?.({}); this.net.touch(); });
    this.other?.close();
  }
}

// A scripted neighbour's side of one data channel.
class RemoteEnd {
  constructor(net, peerId, channel, pc) {
    this.net = net;
    this.peerId = peerId;
    this.channel = channel;
    this.pc = pc;              // the client's RTCPeerConnection for this link
    this.frames = [];          // what the client sent, decoded, in order
    this.onFrame = null;       // (frame) → void
    this.isClosed = false;
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
    channel.onmessage = (ev) => {
      const f = decode(ev.data);
      this.frames.push(f);
      this.onFrame?.(f);
    };
    channel.onclose = () => {
      this.isClosed = true;
      this.resolveClosed();
    };
  }

  // Sends an object (as JSON), a string or bytes, as they are. False once closed.
  send(x) {
    if (this.channel.readyState !== 'open') return false;
    this.channel.send(typeof x === 'string' || x instanceof Uint8Array ? x : JSON.stringify(x));
    return true;
  }

  bitfield(have, client) { return this.send(client === undefined ? { t: 'bitfield', have } : { t: 'bitfield', have, client }); }

  // Sends block `block` (its bytes) from byte `from` on, chunk by chunk.
  sendBlock(block, bytes, from = 0) {
    for (const f of chunkFrames(block, bytes, from)) if (!this.send(f)) return false;
    return true;
  }

  // The blocks the client asked for (`request`), and cancelled, in order.
  requests() { return this.frames.filter((f) => f.t === 'request').map((f) => f.block); }
  cancels() { return this.frames.filter((f) => f.t === 'cancel').map((f) => f.block); }

  close() { this.channel.close(); }
}

// A neighbour that holds every block of `data` and serves each request in full.
// opts: { client (its client id), blockSize, onRequest(end, block) → true when handled }
export function seeder(data, { blockSize, client, onRequest } = {}) {
  const blocks = Math.ceil(data.length / blockSize);
  return (end) => {
    end.bitfield(bitfieldOf(blocks), client);
    end.onFrame = (f) => {
      if (f.t !== 'request') return;
      if (onRequest?.(end, f.block)) return;
      end.sendBlock(f.block, blockOf(data, blockSize, f.block));
    };
  };
}

export function blockOf(data, blockSize, i) { return data.subarray(i * blockSize, Math.min((i + 1) * blockSize, data.length)); }

// An origin in a function: serves `bytes` for Range GETs and HEAD, records requests (with the
// body bytes it sent); served() is their sum. GETs wait for `gate` (a promise) when given.
export function fakeOrigin(bytes, { hang = false, gate = null } = {}) {
  const requests = [];
  const fetchImpl = async (url, init = {}) => {
    const range = init.headers?.Range ?? null;
    const r = { url, method: init.method ?? 'GET', range, bytes: 0 };
    requests.push(r);
    if (hang) return new Promise(() => {});
    if (init.method === 'HEAD') return new Response(null, { status: 200, headers: { 'Content-Length': String(bytes.length), 'Content-Type': 'video/mp2t' } });
    if (gate) await gate;
    const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
    if (!m) { r.bytes = bytes.length; return new Response(bytes, { status: 200 }); }
    const [s, e] = [Number(m[1]), Number(m[2])];
    r.bytes = e + 1 - s;
    return new Response(bytes.slice(s, e + 1), { status: 206, headers: { 'Content-Range': `bytes ${s}-${e}/${bytes.length}` } });
  };
  const served = () => requests.reduce((n, r) => n + r.bytes, 0);
  return { fetchImpl, requests, served };
}
