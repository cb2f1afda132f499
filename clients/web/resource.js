// One resource URL being downloaded or seeded: its blocks, its neighbours, and the scheduler
// that decides which block to ask from whom. Neighbours are asked first (rarest block first,
// several requests in flight each, every request with a deadline); the origin gets, by HTTP
// Range, only what no open neighbour has once the first neighbours had time to connect, and
// what peers failed to deliver (timeout, refusal, corrupt data).

import { Bitfield } from './bitfield.js';
import { MAX_QUEUED_REQUESTS, ProtocolError, chunksOf, decodeFrame, encodeControl } from './block-protocol.js';
import { PeerLink } from './peer-link.js';
import { blockDigestMatches } from './manifest.js';

const HAVE_FLUSH_MS = 100;

export class Resource {
  // opts: { client, key, url, size, blockSize, manifest, store, seed, contentType }
  constructor(opts) {
    Object.assign(this, {
      client: opts.client, key: opts.key, url: opts.url, size: opts.size, blockSize: opts.blockSize,
      manifest: opts.manifest ?? null, store: opts.store, contentType: opts.contentType ?? 'application/octet-stream',
    });
    this.options = opts.client.options;
    this.log = opts.client.log;
    this.blocks = Math.ceil(this.size / this.blockSize);
    this.have = opts.seed ? Bitfield.full(this.blocks) : new Bitfield(this.blocks);
    this.haveBytes = opts.seed ? this.size : 0;
    this.requested = new Map();       // block → 'http' | link state (asked of that neighbour) | 'verify'
    this.peerFailed = new Set();      // blocks peers failed to deliver: the origin may take them at once
    this.availability = new Uint16Array(this.blocks);  // open neighbours holding each block
    this.links = new Map();           // peer id → link state
    this.banned = new Set();          // neighbours that sent a corrupt block
    this.pendingBadPeers = [];
    this.httpInFlight = 0;
    this.rangeConfirmed = false;      // the origin answered a Range request with a 206
    this.httpAttempts = new Map();    // block → failed origin attempts
    this.httpAllowedAt = Date.now() + this.options.p2pWaitMs;
    this.httpTimer = setTimeout(() => this.pump(), this.options.p2pWaitMs + 1);
    this.stats = { httpBytes: 0, p2pBytes: 0, uploadedBytes: 0 };
    this.reported = { httpBytes: 0, p2pBytes: 0, uploadedBytes: 0 };
    this.pendingHave = [];
    this.haveTimer = null;
    this.reportTimer = setInterval(() => this.sendReport(), this.options.reportIntervalMs);
    this.progressListeners = new Set();
    this.closed = false;
    this.failure = null;
    this.done = new Promise((resolve, reject) => { this.resolveDone = resolve; this.rejectDone = reject; });
    this.done.catch(() => {});  // observed through fetch(); an unobserved seed must not crash
    if (this.have.complete) this.resolveDone();
    this.client.coordinator.register(this.key, this);
    if (this.client.coordinator.ready) this.onCoordinatorReady();
  }

  // --- coordinator side -------------------------------------------------------------------

  onCoordinatorReady() {
    const join = { type: 'join', swarm: this.key, size: this.size, block_size: this.blockSize };
    if (this.have.complete) join.have = 'all';
    else if (this.have.count > 0) join.have = this.have.toBase64();
    this.client.coordinator.send(join);
    this.pendingHave.length = 0;  // the join carried them
  }

  onCoordinatorLost() {
    // Open data channels keep working without the coordinator; only new links wait for it.
  }

  onCoordinatorMessage(msg) {
    if (this.closed) return;
    if (msg.type === 'joined') {
      // Alone in the swarm: nobody can give us anything, so the origin need not wait.
      if (msg.peers === 0) this.allowHttpNow();
    } else if (msg.type === 'neighbors') {
      for (const id of Array.isArray(msg.remove) ? msg.remove : []) this.links.get(id)?.link.close('removed by the coordinator');
      for (const n of Array.isArray(msg.add) ? msg.add : []) {
        if (typeof n?.peer_id === 'string' && !this.links.has(n.peer_id) && !this.banned.has(n.peer_id)) this.addLink(n.peer_id, n.initiator === true);
      }
    } else if (msg.type === 'signal' && typeof msg.from === 'string') {
      let state = this.links.get(msg.from);
      // An offer may come from a neighbour whose `neighbors` we have not applied (a re-plan
      // in flight); accept it within a bound.
      if (!state && msg.data?.type === 'offer' && !this.banned.has(msg.from) && this.links.size < 2 * this.client.maxNeighbors) {
        state = this.addLink(msg.from, false);
      }
      state?.link.onSignal(msg.data);
    }
    this.pump();
  }

  onCoordinatorError(err) {
    this.log('warn', `coordinator refused ${err.ref ?? 'a message'} for ${this.key}: ${err.code}: ${err.message}`);
    // Without a swarm there are no peers to wait for.
    if (err.ref === 'join') this.allowHttpNow();
  }

  allowHttpNow() {
    this.httpAllowedAt = 0;
    this.pump();
  }

  announce(block) {
    this.pendingHave.push(block);
    if (this.have.complete) this.flushHave();
    else if (!this.haveTimer) this.haveTimer = setTimeout(() => this.flushHave(), HAVE_FLUSH_MS);
    const frame = encodeControl({ t: 'have', blocks: [block] });
    for (const s of this.links.values()) if (s.link.open) s.link.send(frame);
  }

  flushHave() {
    clearTimeout(this.haveTimer);
    this.haveTimer = null;
    if (this.pendingHave.length === 0) return;
    if (this.client.coordinator.send({ type: 'have', swarm: this.key, blocks: this.pendingHave })) this.pendingHave = [];
  }

  sendReport() {
    const delta = {};
    let any = this.pendingBadPeers.length > 0;
    for (const k of ['httpBytes', 'p2pBytes', 'uploadedBytes']) {
      delta[k] = this.stats[k] - this.reported[k];
      if (delta[k] > 0) any = true;
    }
    if (!any) return;
    const msg = { type: 'report', swarm: this.key, http_bytes: delta.httpBytes, p2p_bytes: delta.p2pBytes, uploaded_bytes: delta.uploadedBytes };
    if (this.pendingBadPeers.length) msg.bad_peers = this.pendingBadPeers.slice(0, 16);
    if (this.client.coordinator.send(msg)) {
      Object.assign(this.reported, this.stats);
      this.pendingBadPeers = [];
    }
  }

  // --- neighbours ---------------------------------------------------------------------------

  addLink(peerId, initiator) {
    const state = {
      peerId, bitfield: null, inFlight: new Map(), link: null,
      // Blocks we cancelled whose chunks may still be on their way: drained, not an error.
      cancelled: new Set(),
      // Serving side: requests queued by the neighbour, and the one being read/sent now.
      queue: [], serving: false, current: -1, currentCancelled: false,
    };
    state.link = new PeerLink({
      peerId, initiator,
      iceServers: this.client.coordinator.iceServers,
      RTCPeerConnectionImpl: this.client.RTCPeerConnection,
      sendSignal: (data) => this.client.coordinator.send({ type: 'signal', swarm: this.key, to: peerId, data }),
      log: this.log,
      events: {
        onOpen: () => {
          state.link.send(encodeControl({ t: 'bitfield', have: this.have.toBase64() }));
          this.pump();
        },
        onFrame: (_, data) => this.onFrame(state, data),
        onClose: (_, reason) => this.onLinkClosed(state, reason),
        onDrain: () => this.serve(state),
      },
    });
    this.links.set(peerId, state);
    return state;
  }

  onLinkClosed(state, reason) {
    if (this.links.get(state.peerId) !== state) return;
    this.links.delete(state.peerId);
    this.log('debug', `neighbour ${state.peerId} gone: ${reason}`);
    if (state.bitfield) for (let i = 0; i < this.blocks; i++) if (state.bitfield.has(i)) this.availability[i]--;
    for (const [block, req] of state.inFlight) this.releaseRequest(state, block, req, false);
    // Every neighbour we had is gone (banned, left, failed): nothing left to wait for.
    if (this.links.size === 0) this.httpAllowedAt = 0;
    if (!this.closed) this.pump();
  }

  onFrame(state, data) {
    let msg;
    try {
      msg = decodeFrame(data, this.blocks);
      this.handleFrame(state, msg);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      state.link.close(`protocol error: ${e.message}`);
    }
  }

  handleFrame(state, msg) {
    switch (msg.t) {
      case 'bitfield': {
        if (state.bitfield) throw new ProtocolError('second bitfield');
        try { state.bitfield = Bitfield.fromBase64(this.blocks, msg.have); } catch (e) { throw new ProtocolError(e.message); }
        for (let i = 0; i < this.blocks; i++) if (state.bitfield.has(i)) this.availability[i]++;
        break;
      }
      case 'have':
        if (!state.bitfield) throw new ProtocolError('have before bitfield');
        for (const i of msg.blocks) if (state.bitfield.set(i)) this.availability[i]++;
        break;
      case 'request':
        if (!this.have.has(msg.block)) state.link.send(encodeControl({ t: 'error', block: msg.block, code: 'not_have' }));
        else if (state.queue.length >= MAX_QUEUED_REQUESTS) state.link.send(encodeControl({ t: 'error', block: msg.block, code: 'busy' }));
        else { state.queue.push(msg.block); this.serve(state); }
        return;
      case 'cancel': {
        const k = state.queue.indexOf(msg.block);
        if (k >= 0) state.queue.splice(k, 1);
        if (state.current === msg.block) state.currentCancelled = true;
        return;
      }
      case 'error': {
        const req = state.inFlight.get(msg.block);
        if (!req) return;  // an answer to a request we already cancelled
        // `not_have` means its bitfield misled us; it will not be asked for that block again
        // until it announces it.
        if (msg.code === 'not_have' && state.bitfield?.has(msg.block)) {
          state.bitfield.bytes[msg.block >> 3] &= ~(0x80 >> (msg.block & 7));
          state.bitfield.count--;
          this.availability[msg.block]--;
        }
        this.releaseRequest(state, msg.block, req, msg.code !== 'busy');
        break;
      }
      case 'chunk':
        this.onChunk(state, msg);
        return;
      default:
    }
    this.pump();
  }

  onChunk(state, { block, offset, payload }) {
    const req = state.inFlight.get(block);
    if (!req) {
      if (!state.cancelled.has(block)) throw new ProtocolError(`unrequested chunk of block ${block}`);
      // The rest of a block we cancelled: its last chunk ends the draining.
      if (offset + payload.length >= this.blockLength(block)) state.cancelled.delete(block);
      return;
    }
    const length = this.blockLength(block);
    if (offset !== req.received || req.received + payload.length > length) throw new ProtocolError(`chunk at ${offset} of block ${block} out of order`);
    req.buffer.set(payload, offset);
    req.received += payload.length;
    if (req.received < length) return;
    clearTimeout(req.timer);
    state.inFlight.delete(block);
    this.requested.set(block, 'verify');
    this.acceptFromPeer(state, block, req.buffer).catch((e) => this.fail(e));
  }

  async acceptFromPeer(state, block, bytes) {
    if (this.manifest && !(await blockDigestMatches(this.manifest, block, bytes))) {
      this.log('warn', `block ${block} from neighbour ${state.peerId} does not match the manifest: dropping that neighbour`);
      this.banned.add(state.peerId);
      this.pendingBadPeers.push(state.peerId);
      this.requested.delete(block);
      this.peerFailed.add(block);
      state.link.close('sent a corrupt block');
      this.sendReport();
      this.pump();
      return;
    }
    this.requested.delete(block);
    if (this.closed || this.have.has(block)) return;
    this.stats.p2pBytes += bytes.length;
    this.complete(block, bytes);
    this.pump();
  }

  // Serves the neighbour's queued requests while its channel has room (onDrain resumes).
  async serve(state) {
    if (state.serving) return;
    state.serving = true;
    try {
      while (state.queue.length && state.link.writable) {
        const block = state.queue.shift();
        state.current = block;
        state.currentCancelled = false;
        const bytes = await this.store.read(block, this.blockOffset(block), this.blockLength(block));
        await this.client.uploadLimiter?.take(bytes.length);
        if (state.currentCancelled) continue;  // cancelled while we read or waited
        for (const frame of chunksOf(block, bytes)) if (!state.link.send(frame)) return;
        this.stats.uploadedBytes += bytes.length;
      }
    } catch (e) {
      this.log('warn', `serving ${state.peerId}: ${e.message}`);
      state.link.close('could not read a block');
    } finally {
      state.serving = false;
      state.current = -1;
    }
  }

  // --- scheduling ---------------------------------------------------------------------------

  pump() {
    if (this.closed || this.failure) return;
    for (const state of this.links.values()) {
      if (!state.link.open || !state.bitfield) continue;
      while (state.inFlight.size < this.options.requestsPerNeighbor) {
        const block = this.rarestFrom(state);
        if (block < 0) break;
        this.requestFromPeer(state, block);
      }
    }
    // One origin request at a time until one came back as a 206: an origin that ignores Range
    // answers every request with the whole resource.
    const httpSlots = this.rangeConfirmed ? this.options.httpConcurrency : 1;
    while (this.httpInFlight < httpSlots) {
      const run = this.nextHttpRun();
      if (!run) break;
      this.fetchFromOrigin(run.first, run.last).catch((e) => this.fail(e));
    }
  }

  wanted(block) { return !this.have.has(block) && !this.requested.has(block); }

  // The wanted block this neighbour has that the fewest open neighbours have (ties broken by
  // a random start, so neighbours of one peer spread over different blocks).
  rarestFrom(state) {
    let best = -1;
    let bestCount = Infinity;
    const start = Math.floor(Math.random() * this.blocks);
    for (let k = 0; k < this.blocks; k++) {
      const i = (start + k) % this.blocks;
      if (this.availability[i] < bestCount && this.wanted(i) && state.bitfield.has(i) && !this.peerFailed.has(i) && !state.cancelled.has(i)) {
        best = i;
        bestCount = this.availability[i];
        if (bestCount <= 1) break;
      }
    }
    return best;
  }

  requestFromPeer(state, block) {
    const req = { buffer: new Uint8Array(this.blockLength(block)), received: 0, timer: null };
    req.timer = setTimeout(() => {
      if (state.inFlight.get(block) !== req) return;
      this.log('debug', `block ${block} from ${state.peerId} timed out`);
      state.link.send(encodeControl({ t: 'cancel', block }));
      this.releaseRequest(state, block, req, true);
      // A neighbour that keeps missing deadlines is not worth its slot.
      if (state.cancelled.size >= 64) state.link.close('too many requests timed out');
      else state.cancelled.add(block);
      this.pump();
    }, this.options.requestTimeoutMs);
    state.inFlight.set(block, req);
    this.requested.set(block, state);
    state.link.send(encodeControl({ t: 'request', block }));
  }

  // peerFault: the block goes to the origin rather than wait for another neighbour.
  releaseRequest(state, block, req, peerFault) {
    clearTimeout(req.timer);
    state.inFlight.delete(block);
    if (this.requested.get(block) === state) this.requested.delete(block);
    if (peerFault) this.peerFailed.add(block);
  }

  // The next contiguous run of blocks the origin should serve: those peers failed to deliver,
  // and (once neighbours had their chance) those no open neighbour has.
  nextHttpRun() {
    const now = Date.now();
    const eligible = (i) => this.wanted(i) && (this.peerFailed.has(i) || (now >= this.httpAllowedAt && this.availability[i] === 0));
    for (let i = 0; i < this.blocks; i++) {
      if (!eligible(i)) continue;
      let last = i;
      while (last + 1 < this.blocks && last + 1 - i < this.options.httpMaxBlocks && eligible(last + 1)) last++;
      return { first: i, last };
    }
    return null;
  }

  async fetchFromOrigin(first, last) {
    for (let i = first; i <= last; i++) this.requested.set(i, 'http');
    this.httpInFlight++;
    const start = this.blockOffset(first);
    const end = this.blockOffset(last) + this.blockLength(last) - 1;
    let result;
    try {
      result = await fetchRange(this.client.fetchImpl, this.url, start, end, this.size);
    } catch (e) {
      let attempts = 0;
      for (let i = first; i <= last; i++) {
        attempts = Math.max(attempts, (this.httpAttempts.get(i) ?? 0) + 1);
        this.httpAttempts.set(i, (this.httpAttempts.get(i) ?? 0) + 1);
      }
      if (attempts >= this.options.httpRetries) throw new Error(`origin failed for ${this.url} bytes ${start}-${end}: ${e.message}`);
      this.log('warn', `origin request for bytes ${start}-${end} failed (${e.message}); retrying`);
      // The blocks stay marked during the back-off, so no other pump re-issues them at once.
      await new Promise((r) => setTimeout(r, 250 * attempts));
      for (let i = first; i <= last; i++) if (this.requested.get(i) === 'http') this.requested.delete(i);
      return;
    } finally {
      this.httpInFlight--;
      if (!this.closed) setTimeout(() => this.pump(), 0);
    }
    this.stats.httpBytes += result.transferred;
    if (!result.whole) this.rangeConfirmed = true;
    // An origin that ignored Range sent everything: use all of it rather than ask again
    // (claimed before the first await, so that no pump asks the origin for them meanwhile).
    const [from, to, base] = result.whole ? [0, this.blocks - 1, 0] : [first, last, start];
    if (result.whole) for (let i = 0; i < this.blocks; i++) if (!this.have.has(i)) this.requested.set(i, 'http');
    for (let i = from; i <= to; i++) {
      if (this.have.has(i)) continue;
      const offset = this.blockOffset(i) - base;
      const bytes = result.body.subarray(offset, offset + this.blockLength(i));
      if (this.manifest && !(await blockDigestMatches(this.manifest, i, bytes))) {
        throw new Error(`the origin's block ${i} of ${this.url} does not match the manifest`);
      }
      if (this.requested.get(i) === 'http') this.requested.delete(i);
      if (!this.have.has(i)) this.complete(i, bytes);
    }
  }

  complete(block, bytes) {
    this.store.write(block, this.blockOffset(block), bytes);
    this.have.set(block);
    this.haveBytes += bytes.length;
    this.peerFailed.delete(block);
    this.announce(block);
    for (const fn of this.progressListeners) fn(this.progress());
    if (this.have.complete) {
      clearTimeout(this.httpTimer);
      this.sendReport();
      this.resolveDone();
    }
  }

  fail(error) {
    if (this.failure || this.closed) return;
    this.failure = error;
    this.log('error', error.message);
    this.rejectDone(error);
  }

  progress() { return { loaded: this.haveBytes, total: this.size, ...this.stats }; }

  blockOffset(i) { return i * this.blockSize; }
  blockLength(i) { return Math.min(this.blockSize, this.size - i * this.blockSize); }

  publicStats() {
    let neighbors = 0;
    for (const s of this.links.values()) if (s.link.open) neighbors++;
    return { ...this.stats, neighbors, blocks: this.blocks, haveBlocks: this.have.count, badPeers: this.banned.size };
  }

  close() {
    if (this.closed) return;
    this.sendReport();
    this.closed = true;
    clearTimeout(this.httpTimer);
    clearTimeout(this.haveTimer);
    clearInterval(this.reportTimer);
    for (const s of [...this.links.values()]) s.link.close('closing');
    this.client.coordinator.send({ type: 'leave', swarm: this.key });
    this.client.coordinator.unregister(this.key);
    if (!this.have.complete && !this.failure) this.rejectDone(new DOMException('the download was aborted', 'AbortError'));
  }
}

// GET bytes [start, end] of url; accepts a 206 with the right Content-Range, or a 200 with the
// whole resource (an origin that ignores Range), and checks the length either way. Returns
// { body, transferred, whole }: body is the range, or the whole resource when whole is true.
export async function fetchRange(fetchImpl, url, start, end, size) {
  const res = await fetchImpl(url, { headers: { Range: `bytes=${start}-${end}` }, cache: 'no-store' });
  if (res.status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
    if (!range || Number(range[1]) !== start || Number(range[2]) !== end) throw new Error(`unexpected Content-Range ${res.headers.get('content-range')}`);
    // Another total means the resource changed under us: never stitch two versions together.
    if (range[3] !== '*' && Number(range[3]) !== size) throw new Error(`the resource is now ${range[3]} bytes, not ${size}`);
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length !== end - start + 1) throw new Error(`short body: ${body.length} of ${end - start + 1} bytes`);
    return { body, transferred: body.length, whole: false };
  }
  if (res.status === 200) {
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length !== size) throw new Error(`the origin sent ${body.length} bytes, expected ${size}`);
    return { body, transferred: body.length, whole: true };
  }
  throw new Error(`HTTP ${res.status}`);
}
