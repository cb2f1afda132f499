// One resource URL being downloaded or seeded: its blocks, its neighbours, and the scheduler
// that decides which block to ask from whom. Neighbours are asked first (rarest block first,
// several requests in flight each, every request with a deadline); the origin gets, by HTTP
// Range, only what no open neighbour has once the first neighbours had time to connect, and
// what peers failed to deliver (timeout, refusal, corrupt data).

import { Bitfield } from './bitfield.js';
import { ProtocolError, decodeFrame, encodeControl } from './block-protocol.js';
import { blockDigestMatches } from './manifest.js';
import { Neighbor } from './neighbor.js';
import { fetchRange } from './origin.js';

const HAVE_FLUSH_MS = 100;
const WATCHDOG_MS = 1000;

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
    this.requested = new Map();       // block → 'http' | the Neighbor asked for it | 'verify'
    this.peerFailed = new Set();      // blocks peers failed to deliver: the origin may take them at once
    this.availability = new Uint16Array(this.blocks);  // open neighbours holding each block
    this.links = new Map();           // peer id → Neighbor
    this.banned = new Set();          // peer ids and client ids of neighbours we dropped for misbehaving
    this.bannedCount = 0;             // neighbours dropped so far (stats().badPeers)
    this.pendingBadPeers = [];        // corrupt senders not reported to the coordinator yet
    this.httpInFlight = 0;
    this.rangeConfirmed = false;      // the origin answered a Range request with a 206
    this.httpAttempts = new Map();    // block → failed origin attempts
    this.httpAllowedAt = Date.now() + this.options.p2pWaitMs;
    this.httpTimer = setTimeout(() => this.pump(), this.options.p2pWaitMs + 1);
    // Neighbours that hold blocks but never deliver (or answer `busy` forever) must not stall
    // us: after requestTimeoutMs without any block arriving, the origin takes what is left.
    this.startedAt = Date.now();
    this.stalled = false;
    this.watchdog = setInterval(() => this.checkProgress(), WATCHDOG_MS);
    this.originAbort = new AbortController();
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
    if (this.have.complete) {
      this.resolveDone();
      clearInterval(this.watchdog);
    }
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
      for (const id of Array.isArray(msg.remove) ? msg.remove : []) this.links.get(id)?.close('removed by the coordinator');
      for (const n of Array.isArray(msg.add) ? msg.add : []) {
        if (typeof n?.peer_id === 'string' && !this.links.has(n.peer_id) && !this.banned.has(n.peer_id)) {
          this.links.set(n.peer_id, new Neighbor(this, n.peer_id, n.initiator === true));
        }
      }
    } else if (msg.type === 'signal' && typeof msg.from === 'string') {
      // Only from neighbours the coordinator assigned (their `neighbors` came first, on the
      // same connection); any other member's offer is ignored.
      this.links.get(msg.from)?.link.onSignal(msg.data);
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
    for (const n of this.links.values()) if (n.open) n.send(frame);
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
      this.pendingBadPeers = this.pendingBadPeers.slice(16);
    }
  }

  // --- neighbours ---------------------------------------------------------------------------

  onNeighborOpen(n) {
    // Our client id lets a neighbour recognise us across coordinator sessions (peer ids change
    // when the coordinator restarts; the data channel and the client do not).
    n.send(encodeControl({ t: 'bitfield', have: this.have.toBase64(), client: this.client.clientId }));
    this.pump();
  }

  onNeighborClosed(n, reason) {
    if (this.links.get(n.peerId) !== n) return;
    this.links.delete(n.peerId);
    this.log('debug', `neighbour ${n.peerId} gone: ${reason}`);
    if (n.bitfield) for (let i = 0; i < this.blocks; i++) if (n.bitfield.has(i)) this.availability[i]--;
    for (const [block, req] of n.inFlight) this.releaseRequest(n, block, req, false);
    // Every neighbour we had is gone (banned, left, failed): nothing left to wait for.
    if (this.links.size === 0) this.httpAllowedAt = 0;
    if (!this.closed) this.pump();
  }

  // Drops a misbehaving neighbour for good (in this resource), under both of its names.
  ban(n, reason) {
    if (!this.banned.has(n.peerId)) this.bannedCount++;
    this.banned.add(n.peerId);
    if (n.clientId) this.banned.add(n.clientId);
    n.close(reason);
  }

  onFrame(n, data) {
    try {
      this.handleFrame(n, decodeFrame(data, this.blocks));
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.ban(n, `protocol error: ${e.message}`);
    }
  }

  handleFrame(n, msg) {
    switch (msg.t) {
      case 'bitfield': {
        if (n.bitfield) throw new ProtocolError('second bitfield');
        let bf;
        try { bf = Bitfield.fromBase64(this.blocks, msg.have); } catch (e) { throw new ProtocolError(e.message); }
        if (typeof msg.client === 'string' && msg.client.length <= 64) {
          n.clientId = msg.client;
          if (this.banned.has(n.clientId)) return this.ban(n, 'dropped earlier under another peer id');
          // The same client under an older peer id (from before a coordinator restart): the
          // newer link replaces it.
          for (const other of this.links.values()) if (other !== n && other.clientId === n.clientId) other.close('replaced by a newer link to the same client');
        }
        n.bitfield = bf;
        for (let i = 0; i < this.blocks; i++) if (n.bitfield.has(i)) this.availability[i]++;
        break;
      }
      case 'have':
        if (!n.bitfield) throw new ProtocolError('have before bitfield');
        for (const i of msg.blocks) if (n.bitfield.set(i)) this.availability[i]++;
        break;
      case 'request':
        n.onRequest(msg.block);
        return;
      case 'cancel':
        n.onCancel(msg.block);
        return;
      case 'error': {
        const req = n.inFlight.get(msg.block);
        if (!req) return;  // an answer to a request we already cancelled
        // `not_have` means its bitfield misled us: not asked for that block again until it
        // announces it. `busy` cannot happen to a client that keeps to requestsPerNeighbor,
        // so either way the block goes to someone else.
        if (msg.code === 'not_have' && n.bitfield?.has(msg.block)) {
          n.bitfield.clear(msg.block);
          this.availability[msg.block]--;
        }
        this.releaseRequest(n, msg.block, req, true);
        break;
      }
      case 'chunk':
        this.onChunk(n, msg);
        return;
      default:
    }
    this.pump();
  }

  onChunk(n, { block, offset, payload }) {
    const length = this.blockLength(block);
    const req = n.inFlight.get(block);
    if (!req) {
      if (!n.drainCancelled(block, offset, payload.length, length)) throw new ProtocolError(`unrequested chunk of block ${block}`);
      return;
    }
    if (offset !== req.received || req.received + payload.length > length) throw new ProtocolError(`chunk at ${offset} of block ${block} out of order`);
    req.buffer.set(payload, offset);
    req.received += payload.length;
    if (req.received < length) return;
    clearTimeout(req.timer);
    n.inFlight.delete(block);
    this.requested.set(block, 'verify');
    this.acceptFromPeer(n, block, req.buffer).catch((e) => this.fail(e));
  }

  async acceptFromPeer(n, block, bytes) {
    if (this.manifest && !(await blockDigestMatches(this.manifest, block, bytes))) {
      this.log('warn', `block ${block} from neighbour ${n.peerId} does not match the manifest: dropping that neighbour`);
      this.pendingBadPeers.push(n.peerId);
      this.requested.delete(block);
      this.peerFailed.add(block);
      // Report first, then drop: the coordinator can only act on the report while the
      // accused is still a member, and closing the channel may make it go at once.
      this.sendReport();
      this.ban(n, 'sent a corrupt block');
      this.pump();
      return;
    }
    this.requested.delete(block);
    if (this.closed || this.have.has(block)) return;
    this.stats.p2pBytes += bytes.length;
    this.lastPeerProgressAt = Date.now();
    n.missed = 0;
    this.stalled = false;
    this.complete(block, bytes);
    this.pump();
  }

  // --- scheduling ---------------------------------------------------------------------------

  pump() {
    if (this.closed || this.failure) return;
    for (const n of this.links.values()) {
      if (!n.open || !n.bitfield) continue;
      // A neighbour that missed a deadline gets one request at a time until it delivers.
      while (n.inFlight.size < (n.missed ? 1 : this.options.requestsPerNeighbor)) {
        const block = this.rarestFrom(n);
        if (block < 0) break;
        this.requestFromPeer(n, block);
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
  rarestFrom(n) {
    let best = -1;
    let bestCount = Infinity;
    const start = Math.floor(Math.random() * this.blocks);
    for (let k = 0; k < this.blocks; k++) {
      const i = (start + k) % this.blocks;
      if (this.availability[i] < bestCount && this.wanted(i) && n.bitfield.has(i) && !this.peerFailed.has(i) && !n.cancelled.has(i)) {
        best = i;
        bestCount = this.availability[i];
        if (bestCount <= 1) break;
      }
    }
    return best;
  }

  requestFromPeer(n, block) {
    const req = { buffer: new Uint8Array(this.blockLength(block)), received: 0, timer: null };
    req.timer = setTimeout(() => {
      if (n.inFlight.get(block) !== req) return;
      this.log('debug', `block ${block} from ${n.peerId} timed out`);
      n.send(encodeControl({ t: 'cancel', block }));
      n.missed++;
      this.releaseRequest(n, block, req, true);
      if (!n.noteCancelled(block, req.received, this.options.requestTimeoutMs)) this.ban(n, 'misses too many deadlines');
      this.pump();
    }, this.options.requestTimeoutMs);
    n.inFlight.set(block, req);
    this.requested.set(block, n);
    n.send(encodeControl({ t: 'request', block }));
  }

  // peerFault: the block goes to the origin rather than wait for another neighbour.
  releaseRequest(n, block, req, peerFault) {
    clearTimeout(req.timer);
    n.inFlight.delete(block);
    if (this.requested.get(block) === n) this.requested.delete(block);
    if (peerFault) this.peerFailed.add(block);
  }

  checkProgress() {
    if (this.have.complete || this.closed || this.stalled) return;
    if (Date.now() - (this.lastPeerProgressAt ?? this.startedAt) < Math.max(this.options.requestTimeoutMs, this.options.p2pWaitMs)) return;
    this.log('info', `no block arrived for ${this.options.requestTimeoutMs} ms: the origin takes what is left of ${this.url}`);
    this.stalled = true;
    this.pump();
  }

  // The next contiguous run of blocks the origin should serve: those peers failed to deliver,
  // and (once neighbours had their chance) those no open neighbour has — or all that are
  // left when nothing has arrived for a while.
  nextHttpRun() {
    const now = Date.now();
    const eligible = (i) => this.wanted(i) &&
      (this.peerFailed.has(i) || this.stalled || (now >= this.httpAllowedAt && this.availability[i] === 0));
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
      result = await fetchRange(this.client.fetchImpl, this.url, start, end, this.size, this.originAbort.signal);
    } catch (e) {
      if (this.closed) return;
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
    if (this.closed) return;
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
      if (this.closed) return;
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
    // A listener's exception is the caller's business, not a failure of the download.
    for (const fn of this.progressListeners) {
      try { fn(this.progress()); } catch (e) { this.log('warn', `progress listener failed: ${e?.message ?? e}`); }
    }
    if (this.have.complete) {
      clearTimeout(this.httpTimer);
      clearInterval(this.watchdog);
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
    for (const n of this.links.values()) if (n.open) neighbors++;
    return { ...this.stats, neighbors, blocks: this.blocks, haveBlocks: this.have.count, badPeers: this.bannedCount };
  }

  close() {
    if (this.closed) return;
    this.sendReport();
    this.closed = true;
    clearTimeout(this.httpTimer);
    clearTimeout(this.haveTimer);
    clearInterval(this.reportTimer);
    clearInterval(this.watchdog);
    this.originAbort.abort();
    for (const n of [...this.links.values()]) n.close('closing');
    this.client.coordinator.send({ type: 'leave', swarm: this.key });
    this.client.coordinator.unregister(this.key);
    if (!this.have.complete && !this.failure) this.rejectDone(new DOMException('the download was aborted', 'AbortError'));
  }
}
