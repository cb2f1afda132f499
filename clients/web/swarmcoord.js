// swarmcoord's browser client. Plain ES module, no build step:
//
//   import { SwarmClient } from './swarmcoord.js';
//   const client = new SwarmClient({ coordinator: 'wss://coord.example.com/v1/ws' });
//   const response = await client.fetch('/video.mp4', { manifest: '/video.mp4.manifest.json' });
//   client.stats('/video.mp4');  // { httpBytes, p2pBytes, uploadedBytes, neighbors, … }
//
// Blocks come from the neighbours the coordinator assigns, over WebRTC data channels, and
// from the origin (HTTP Range) when no neighbour has them in time. A finished resource stays
// shared with the swarm until close(). In Node, pass WebSocket (the `ws` package) and
// RTCPeerConnection (`@roamhq/wrtc`); clients/node does.

import { Coordinator, swarmKey } from './coordinator.js';
import { loadManifest } from './manifest.js';
import { probeSize } from './origin.js';
import { Resource } from './resource.js';

export const DEFAULTS = Object.freeze({
  blockSize: 65536,
  requireManifest: false,
  maxNeighbors: 8,
  // How long a new download waits for neighbours before the origin serves blocks nobody has.
  p2pWaitMs: 2000,
  requestTimeoutMs: 8000,
  requestsPerNeighbor: 4,
  httpConcurrency: 2,
  httpMaxBlocks: 16,
  httpRetries: 3,
  reportIntervalMs: 5000,
  native: false,
  // Upload cap for the whole client, bytes per second (0: none) — for visitors on metered or
  // slow uplinks.
  uploadBytesPerSecond: 0,
});

export class SwarmClient {
  constructor(options = {}) {
    if (typeof options.coordinator !== 'string') throw new TypeError('SwarmClient needs { coordinator: "ws(s)://host:port/v1/ws" }');
    this.options = { ...DEFAULTS, ...options };
    const { blockSize } = this.options;
    if (!Number.isInteger(blockSize) || blockSize < 1024 || blockSize > 64 * 1024 * 1024) throw new RangeError('blockSize must be an integer from 1024 to 64 MiB');
    this.log = options.log ?? defaultLog;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (!this.RTCPeerConnection) throw new Error('no RTCPeerConnection: pass one as RTCPeerConnection');
    this.maxNeighbors = this.options.maxNeighbors;
    this.coordinator = new Coordinator(this.options.coordinator, {
      WebSocketImpl: options.WebSocket ?? globalThis.WebSocket,
      native: this.options.native,
      maxNeighbors: this.options.maxNeighbors,
      log: this.log,
    });
    this.resources = new Map();  // swarm key → Resource
    // Stable for the life of this client, unlike the peer id the coordinator hands out per
    // connection: lets neighbours recognise us after a coordinator restart.
    this.clientId = [...globalThis.crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('');
    this.uploadLimiter = this.options.uploadBytesPerSecond > 0 ? new RateLimiter(this.options.uploadBytesPerSecond) : null;
  }

  // Resolves to a standard Response holding the whole resource.
  // options: { manifest (object or URL), signal (AbortSignal), onProgress({loaded, total, httpBytes, p2pBytes, uploadedBytes}) }
  async fetch(url, { manifest, signal, onProgress } = {}) {
    const absolute = absoluteUrl(url);
    const key = swarmKey(absolute);
    if (!key) throw new TypeError(`not an http(s) URL: ${url}`);
    signal?.throwIfAborted();
    let resource = this.resources.get(key);
    if (resource && manifest !== undefined && !resource.manifest) {
      // Its blocks so far came unverified; a caller who asked for verification must not get them.
      throw new Error(`${absolute} is already being fetched without a manifest; release() it first`);
    }
    if (!resource) {
      if (manifest === undefined && this.options.requireManifest) throw new Error(`${absolute}: a manifest is required (requireManifest) and none was given`);
      const m = manifest === undefined ? null : await loadManifest(typeof manifest === 'string' ? absoluteUrl(manifest) : manifest, this.fetchImpl);
      const head = m ? { size: m.size, contentType: null } : await probeSize(this.fetchImpl, absolute);
      signal?.throwIfAborted();
      resource = this.resources.get(key);  // another fetch of the same URL may have won the race
      if (resource && m && !resource.manifest) throw new Error(`${absolute} is already being fetched without a manifest; release() it first`);
      if (!resource) {
        resource = new Resource({
          client: this, key, url: absolute, size: head.size, blockSize: m ? m.blockSize : this.options.blockSize,
          manifest: m, store: new MemoryStore(head.size), contentType: head.contentType,
        });
        this.resources.set(key, resource);
      }
    }
    const listener = onProgress ? (p) => onProgress(p) : null;
    if (listener) resource.progressListeners.add(listener);
    // Several callers may wait for one resource: an abort rejects its own caller only, and
    // the download stops when the last waiting caller gave up.
    resource.waiters = (resource.waiters ?? 0) + 1;
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => reject(signal.reason ?? new DOMException('the download was aborted', 'AbortError'));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await Promise.race([resource.done, aborted]);
    } catch (e) {
      const drop = resource.failure || (signal?.aborted && resource.waiters === 1 && !resource.have.complete);
      if (drop && this.resources.get(key) === resource) { this.resources.delete(key); resource.close(); }
      throw e;
    } finally {
      resource.waiters--;
      if (listener) resource.progressListeners.delete(listener);
      signal?.removeEventListener('abort', onAbort);
    }
    if (!(resource.store instanceof MemoryStore)) throw new Error(`${absolute} is being seeded from a source, not downloaded`);
    return new Response(resource.store.bytes, {
      status: 200,
      headers: { 'Content-Type': resource.contentType ?? 'application/octet-stream', 'Content-Length': String(resource.size) },
    });
  }

  // Shares a resource the caller already has. source: Uint8Array / ArrayBuffer, or
  // { size, read(offset, length) → Promise<Uint8Array> } (a file, say). Returns { stop() }.
  async seed(url, source, { manifest } = {}) {
    const absolute = absoluteUrl(url);
    const key = swarmKey(absolute);
    if (!key) throw new TypeError(`not an http(s) URL: ${url}`);
    if (this.resources.has(key)) throw new Error(`${absolute} is already in this client`);
    const m = manifest === undefined ? null : await loadManifest(manifest, this.fetchImpl);
    const store = source instanceof Uint8Array || source instanceof ArrayBuffer ? new MemoryStore(new Uint8Array(source)) : new SourceStore(source);
    if (m && m.size !== store.size) throw new Error(`the source has ${store.size} bytes, the manifest says ${m.size}`);
    const resource = new Resource({
      client: this, key, url: absolute, size: store.size, blockSize: m ? m.blockSize : this.options.blockSize,
      manifest: m, store, seed: true,
    });
    this.resources.set(key, resource);
    return {
      key,
      stop: () => {
        if (this.resources.get(key) === resource) this.resources.delete(key);
        resource.close();
      },
    };
  }

  // Stops sharing (or downloading) one resource and frees its memory: its swarm is left.
  // A client keeps every resource it fetched until then (and the coordinator allows a
  // connection 16 swarms by default: limits.max_swarms_per_connection).
  release(url) {
    const key = swarmKey(absoluteUrl(url));
    const resource = this.resources.get(key);
    if (!resource) return false;
    this.resources.delete(key);
    resource.close();
    return true;
  }

  // { httpBytes, p2pBytes, uploadedBytes, neighbors, blocks, haveBlocks, badPeers }, or null.
  stats(url) {
    const resource = this.resources.get(swarmKey(absoluteUrl(url)));
    return resource ? resource.publicStats() : null;
  }

  // The coordinator's welcome (peer id, ICE servers) once connected.
  ready() { return this.coordinator.whenReady(); }

  close() {
    for (const r of this.resources.values()) r.close();
    this.resources.clear();
    this.coordinator.close();
  }
}

// An XMLHttpRequest look-alike for code written against XHR (GET only):
//   const xhr = new SwarmRequest(client);
//   xhr.open('GET', url); xhr.responseType = 'arraybuffer';
//   xhr.onprogress = (e) => …; xhr.onload = () => use(xhr.response); xhr.send();
export class SwarmRequest {
  constructor(client, { manifest } = {}) {
    this.client = client;
    this.manifest = manifest;
    this.readyState = 0;
    this.status = 0;
    this.statusText = '';
    this.responseType = '';
    this.response = null;
    this.onload = null;
    this.onprogress = null;
    this.onerror = null;
    this.onabort = null;
    this.onloadend = null;
    this.onreadystatechange = null;
    this.controller = null;
  }

  open(method, url) {
    if (String(method).toUpperCase() !== 'GET') throw new Error('SwarmRequest supports GET only');
    this.url = url;
    this.setState(1);
  }

  setRequestHeader() { /* Range and the like are decided by the client */ }

  get responseText() { return typeof this.response === 'string' ? this.response : ''; }

  send() {
    if (this.readyState !== 1) throw new Error('SwarmRequest: call open() before send()');
    this.controller = new AbortController();
    const onProgress = (p) => this.fire('onprogress', { lengthComputable: true, loaded: p.loaded, total: p.total, type: 'progress' });
    this.client.fetch(this.url, { manifest: this.manifest, signal: this.controller.signal, onProgress })
      .then(async (res) => {
        this.status = res.status;
        this.statusText = 'OK';
        this.setState(2);
        this.response = await readAs(res, this.responseType);
        return null;
      })
      .catch((e) => e ?? new Error('failed'))
      .then((error) => {
        // Handlers run outside the promise chain: one that throws neither turns a load into
        // an error nor becomes an unhandled rejection.
        this.error = error;
        this.setState(4);
        if (!error) this.fire('onload', { type: 'load' });
        else if (error.name === 'AbortError') this.fire('onabort', { type: 'abort' });
        else this.fire('onerror', { type: 'error', error });
        this.fire('onloadend', { type: 'loadend' });
      });
  }

  fire(name, event) {
    try {
      this[name]?.(event);
    } catch (e) {
      console.error(`SwarmRequest ${name} handler threw:`, e);
    }
  }

  abort() { this.controller?.abort(); }

  setState(s) {
    this.readyState = s;
    this.fire('onreadystatechange', { type: 'readystatechange' });
  }
}

async function readAs(res, type) {
  switch (type) {
    case 'arraybuffer': return res.arrayBuffer();
    case 'blob': return res.blob();
    case 'json': return res.json();
    case '':
    case 'text': return res.text();
    default: throw new Error(`responseType ${type} is not supported`);
  }
}

function absoluteUrl(url) {
  const base = globalThis.location?.href;
  return base ? new URL(url, base).href : new URL(url).href;
}

// A token bucket holding at most one second's worth; take(n) resolves when n bytes may go.
class RateLimiter {
  constructor(bytesPerSecond) {
    this.rate = bytesPerSecond;
    this.tokens = bytesPerSecond;
    this.last = Date.now();
    this.tail = Promise.resolve();
  }

  take(n) {
    // Callers queue behind each other, so a big block cannot starve small ones forever.
    this.tail = this.tail.then(async () => {
      const now = Date.now();
      this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
      this.tokens -= n;
      if (this.tokens < 0) await new Promise((r) => setTimeout(r, (-this.tokens * 1000) / this.rate));
    });
    return this.tail;
  }
}

class MemoryStore {
  constructor(sizeOrBytes) {
    this.bytes = typeof sizeOrBytes === 'number' ? new Uint8Array(sizeOrBytes) : sizeOrBytes;
    this.size = this.bytes.length;
  }

  read(block, offset, length) { return this.bytes.subarray(offset, offset + length); }
  write(block, offset, bytes) { this.bytes.set(bytes, offset); }
}

class SourceStore {
  constructor(source) {
    if (!Number.isSafeInteger(source?.size) || source.size < 1 || typeof source.read !== 'function') throw new TypeError('seed source must be bytes or { size, read(offset, length) }');
    this.source = source;
    this.size = source.size;
  }

  read(block, offset, length) { return this.source.read(offset, length); }
  write() { throw new Error('a seeded source is read-only'); }
}

function defaultLog(level, message) {
  if (level === 'warn' || level === 'error') console[level](`swarmcoord: ${message}`);
}
