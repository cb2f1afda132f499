// One neighbour of one resource: its WebRTC link, what it holds, what we asked of it, and
// the requests it made of us, served in order while its channel has room. The Resource
// decides what to ask; this class keeps the per-neighbour books.

import { MAX_QUEUED_REQUESTS, chunksOf, encodeControl } from './block-protocol.js';
import { PeerLink } from './peer-link.js';

// A neighbour that misses this many deadlines within CANCEL_WINDOW_FACTOR × the request
// timeout is not worth its slot.
const MAX_RECENT_TIMEOUTS = 16;
const CANCEL_WINDOW_FACTOR = 4;

export class Neighbor {
  constructor(resource, peerId, initiator) {
    this.resource = resource;
    this.peerId = peerId;
    this.clientId = null;    // stable across coordinator sessions (from its bitfield message)
    this.bitfield = null;
    this.inFlight = new Map();   // block → { buffer, received, timer }: what we asked of it
    this.cancelled = new Map();  // block → { received, at }: cancelled, chunks may still come
    this.timeouts = [];          // when its recent requests missed their deadline
    this.missed = 0;             // deadlines missed since its last delivered block
    this.queue = [];             // blocks it asked of us, in order
    this.serving = false;
    this.current = -1;           // the block being read or sent to it now
    this.currentCancelled = false;
    this.drainWaiter = null;
    const client = resource.client;
    this.link = new PeerLink({
      peerId, initiator,
      iceServers: client.coordinator.iceServers,
      RTCPeerConnectionImpl: client.RTCPeerConnection,
      sendSignal: (data) => client.coordinator.send({ type: 'signal', swarm: resource.key, to: peerId, data }),
      log: resource.log,
      events: {
        onOpen: () => resource.onNeighborOpen(this),
        onFrame: (_, data) => resource.onFrame(this, data),
        onClose: (_, reason) => {
          this.wakeDrain();
          resource.onNeighborClosed(this, reason);
        },
        onDrain: () => this.wakeDrain(),
      },
    });
  }

  get open() { return this.link.open; }
  send(frame) { return this.link.send(frame); }
  close(reason) { this.link.close(reason); }

  // --- what we asked of it -----------------------------------------------------------------

  // Remembers a cancelled request whose chunks may still arrive. Returns false when the
  // neighbour has missed too many deadlines lately.
  noteCancelled(block, received, timeoutMs) {
    const now = Date.now();
    this.timeouts = this.timeouts.filter((at) => now - at <= CANCEL_WINDOW_FACTOR * timeoutMs);
    this.timeouts.push(now);
    this.cancelled.set(block, { received, at: now });
    return this.timeouts.length <= MAX_RECENT_TIMEOUTS;
  }

  // A chunk of a block we cancelled: fine if it continues where the block was, in order.
  // Returns false for anything else (the caller treats it as a protocol error).
  drainCancelled(block, offset, length, blockLength) {
    const c = this.cancelled.get(block);
    if (!c || offset !== c.received || offset + length > blockLength) return false;
    c.received += length;
    if (c.received === blockLength) this.cancelled.delete(block);
    return true;
  }

  // --- what it asked of us -----------------------------------------------------------------

  onRequest(block) {
    if (!this.resource.have.has(block)) this.send(encodeControl({ t: 'error', block, code: 'not_have' }));
    else if (this.queue.length >= MAX_QUEUED_REQUESTS) this.send(encodeControl({ t: 'error', block, code: 'busy' }));
    else {
      this.queue.push(block);
      this.serve();
    }
  }

  onCancel(block) {
    const k = this.queue.indexOf(block);
    if (k >= 0) this.queue.splice(k, 1);
    if (this.current === block) this.currentCancelled = true;
  }

  // Sends queued blocks one after the other, chunk by chunk, pausing whenever the channel's
  // send buffer is full (a block may be far larger than what the buffer should hold).
  async serve() {
    if (this.serving) return;
    this.serving = true;
    const r = this.resource;
    try {
      while (this.queue.length && !this.link.closed) {
        const block = this.queue.shift();
        this.current = block;
        this.currentCancelled = false;
        const bytes = await r.store.read(block, r.blockOffset(block), r.blockLength(block));
        await r.client.uploadLimiter?.take(bytes.length);
        if (this.currentCancelled) continue;  // cancelled while we read or waited
        for (const frame of chunksOf(block, bytes)) {
          while (!this.link.writable && !this.link.closed) await new Promise((resolve) => { this.drainWaiter = resolve; });
          if (!this.send(frame)) return;
        }
        r.stats.uploadedBytes += bytes.length;
      }
    } catch (e) {
      r.log('warn', `serving ${this.peerId}: ${e.message}`);
      this.close('could not read a block');
    } finally {
      this.serving = false;
      this.current = -1;
    }
  }

  wakeDrain() {
    const w = this.drainWaiter;
    this.drainWaiter = null;
    w?.();
  }
}
