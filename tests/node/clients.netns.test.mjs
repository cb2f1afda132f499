// The reference clients end to end, over real WebRTC (@roamhq/wrtc) on loopback inside a
// network namespace: the real daemon, a Range-capable origin that counts the bytes it serves
// (lib/range-origin.mjs), the CLI `clients/node/swarmcoord-peer.mjs` as child processes, and
// in-process SwarmClient instances (clients/web/swarmcoord.js) where a test needs to look
// inside or act at a precise moment of a download. Every figure is checked exactly where the
// protocol makes it exact: SHA-256 of what was fetched, bytes from peers + bytes from the
// origin = the size, the origin's own count = the client's httpBytes, the daemon's report
// counters = what the clients say they reported.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { Daemon } from './lib/daemon.mjs';
import { runBinary, scrape, until } from './lib/proc.mjs';
import { RangeOrigin } from './lib/range-origin.mjs';

const ROOT = process.env.SWARMCOORD_ROOT ?? path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'clients/node/swarmcoord-peer.mjs');

// `ws` and `@roamhq/wrtc` from tests/node, else from the CLI's own node_modules.
function requireDep(name) {
  for (const base of [import.meta.url, path.join(ROOT, 'clients/node/package.json')]) {
    try { return createRequire(base)(name); } catch { /* next */ }
  }
  throw new Error(`cannot find ${name} in tests/node or clients/node`);
}
const WebSocket = requireDep('ws');
const wrtc = requireDep('@roamhq/wrtc');
const { SwarmClient } = await import(new URL('../../clients/web/swarmcoord.js', import.meta.url).href);

const BLOCK = 65536;
const FETCH_TIMEOUT_MS = 30000;
const T = { timeout: 60000 };  // per test: a hang fails that test, not the whole run
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const mib = (n) => `${(n / 1048576).toFixed(2)} MiB`;
const figures = [];  // printed at the end: what was measured
const note = (s) => figures.push(s);

let dir;
let origin;
const children = new Set();
const clients = new Set();
const daemons = new Set();

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-clients-'));
  origin = await RangeOrigin.start();
});

after(async () => {
  for (const c of clients) c.close();
  for (const p of children) p.proc.kill('SIGKILL');
  await Promise.all([...children].map((p) => p.closed));
  // SIGTERM, not SIGKILL: a daemon that exits checks itself for leaks in the sanitize build.
  await Promise.all([...daemons].map((d) => d.stop()));
  await origin?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  if (figures.length) console.log(`measured:\n  ${figures.join('\n  ')}`);
});

// ------------------------------------------------------------------ helpers

async function startDaemon(args = []) {
  const d = await Daemon.start(['--set', 'server.drain_seconds=0', ...args]);
  daemons.add(d);
  return d;
}

const native = (d) => `${d.wsUrl}/v1/ws`;

// A random file of `size` bytes served by the origin at `name`, on disk for the CLI, with its
// manifest (object and file) from the real `swarmcoord manifest`.
async function resource(name, size) {
  const data = crypto.randomBytes(size);
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  const url = origin.add(`/${name}`, data);
  const r = await runBinary(['manifest', file, '--block-size', String(BLOCK), '--url', url]);
  assert.equal(r.code, 0, r.stderr);
  const manifestFile = `${file}.manifest.json`;
  fs.writeFileSync(manifestFile, r.stdout);
  return { name, data, file, url, path: `/${name}`, manifest: JSON.parse(r.stdout), manifestFile, sha: sha256(data), size };
}

// A CLI process; stdout is one JSON object per line.
class CliPeer {
  constructor(args, label) {
    this.label = label;
    this.stderr = '';
    this.events = [];
    this.emitter = new EventEmitter();
    this.proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout.on('data', (c) => {
      buf += c;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let ev;
        try { ev = JSON.parse(line); } catch { ev = { event: '(not json)', line }; }
        this.events.push(ev);
        this.emitter.emit('event', ev);
      }
    });
    this.proc.stderr.on('data', (c) => { this.stderr += c; });
    this.closed = new Promise((resolve) => this.proc.on('close', (code, signal) => {
      this.exit = { code, signal };
      this.emitter.emit('close');
      resolve(this.exit);
    }));
    children.add(this);
  }

  // The first stdout event named `name`; rejects if the process ends first or on timeout.
  event(name, timeoutMs = FETCH_TIMEOUT_MS) {
    const found = this.events.find((e) => e.event === name);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const done = (fn, v) => { clearTimeout(timer); this.emitter.off('event', onEvent); this.emitter.off('close', onClose); fn(v); };
      const onEvent = (e) => { if (e.event === name) done(resolve, e); };
      const onClose = () => done(reject, new Error(`${this.label} exited (${JSON.stringify(this.exit)}) before '${name}':\n${this.stderr}`));
      const timer = setTimeout(() => done(reject, new Error(`${this.label}: no '${name}' within ${timeoutMs} ms:\n${this.stderr}`)), timeoutMs);
      this.emitter.on('event', onEvent);
      this.emitter.once('close', onClose);
      if (this.exit) onClose();
    });
  }

  kill(signal = 'SIGKILL') { this.proc.kill(signal); return this.closed; }
}

async function startSeed(res, d, { file = res.file, manifest = true, label = 'seed' } = {}) {
  const p = new CliPeer(['seed', file, '--url', res.url, '--coordinator', native(d), ...(manifest ? ['--manifest', res.manifestFile] : [])], label);
  const ev = await p.event('seeding', 15000);
  assert.equal(ev.size, res.size);
  p.peerId = ev.peer_id;
  p.key = ev.swarm;
  return p;
}

// Runs `fetch` to completion: { stats (the 'fetched' line), bytes (the --out file) }.
async function cliFetch(res, coordinator, { manifest = true, label = 'fetch', verbose = false } = {}) {
  const out = path.join(dir, `${res.name}.${crypto.randomUUID()}.out`);
  const p = new CliPeer(['fetch', res.url, '--coordinator', coordinator, '--out', out,
    ...(manifest ? ['--manifest', res.manifestFile] : []), ...(verbose ? ['--verbose'] : [])], label);
  const stats = await p.event('fetched', FETCH_TIMEOUT_MS);
  const exit = await p.closed;
  assert.deepEqual(exit, { code: 0, signal: null }, p.stderr);
  return { stats, bytes: fs.readFileSync(out), stderr: p.stderr };
}

// The daemon's /stats entry for a native swarm, once pred holds.
function swarmStats(d, key, pred, what) {
  return until(async () => {
    const s = await d.stats();
    const e = s.top_swarms.find((x) => x.protocol === 'native' && x.swarm === key);
    return e && pred(e) ? e : null;
  }, { timeoutMs: 10000, what: `${what} (${key})` });
}

// A `ws` WebSocket class that records each connection attempt of one client:
// { at, opened, closedAt, code }.
function recordingWebSocket() {
  const attempts = [];
  const changed = new EventEmitter();
  class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      const a = { at: Date.now(), opened: false, closedAt: null, code: null };
      attempts.push(a);
      this.on('open', () => { a.opened = true; changed.emit('change'); });
      this.on('close', (code) => { a.closedAt = Date.now(); a.code = code; changed.emit('change'); });
      changed.emit('change');
    }
  }
  const waitFor = (pred, what, timeoutMs = 10000) => new Promise((resolve, reject) => {
    const check = () => {
      const v = pred(attempts);
      if (v) { clearTimeout(timer); changed.off('change', check); resolve(v); }
    };
    const timer = setTimeout(() => { changed.off('change', check); reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(attempts)}`)); }, timeoutMs);
    changed.on('change', check);
    check();
  });
  return { RecordingWebSocket, attempts, waitFor };
}

function inProcessClient(coordinator, opts = {}) {
  const logs = [];
  const c = new SwarmClient({
    coordinator, WebSocket, RTCPeerConnection: wrtc.RTCPeerConnection,
    log: (level, message) => logs.push(`${level} ${message}`), ...opts,
  });
  c.logs = logs;
  clients.add(c);
  return c;
}

function closeClient(c) {
  c.close();
  clients.delete(c);
}

// A loopback port nobody listens on.
async function closedPort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function assertWhole(res, bytes, stats, label) {
  assert.equal(bytes.length, res.size, `${label}: length`);
  assert.equal(sha256(bytes), res.sha, `${label}: SHA-256`);
  assert.equal(stats.p2pBytes + stats.httpBytes, res.size, `${label}: p2p ${stats.p2pBytes} + http ${stats.httpBytes} must be the size`);
}

// The killed seed's link was closed by the coordinator's `remove` (its socket died with the
// process), not found out by request timeouts (requestTimeoutMs, 8 s) or ICE consent.
function assertReleasedByRemove(fetcher, seed) {
  const gone = fetcher.logs.filter((l) => l.includes(`neighbour ${seed.peerId} gone`));
  assert.deepEqual(gone, [`debug neighbour ${seed.peerId} gone: removed by the coordinator`], fetcher.logs.join('\n'));
  assert.deepEqual(fetcher.logs.filter((l) => /timed out/.test(l)), [], 'no request timed out');
}

// ------------------------------------------------------------------ tests


// Fetches res, killing `seed` with SIGKILL once a quarter of it came from peers; returns when
// and at what progress the seed was killed, when the download ended, and its bytes.
async function fetchKillingSeed(fetcher, res, seed) {
  let killed = null;
  const response = await fetcher.fetch(res.url, {
    manifest: res.manifest,
    onProgress: (p) => {
      if (!killed && p.p2pBytes >= 0.25 * res.size) {
        killed = { at: Date.now(), loaded: p.loaded };
        seed.proc.kill('SIGKILL');
      }
    },
  });
  const doneAt = Date.now();
  return { killed, doneAt, bytes: new Uint8Array(await response.arrayBuffer()) };
}
describe('reference clients over WebRTC', () => {
  it('(a) seed → fetch: the file arrives whole, from the peer, and the origin is spared', T, async () => {
    const d = await startDaemon();
    const res = await resource('a.bin', 3 * 1048576 + 4321);
    const seed = await startSeed(res, d);
    await swarmStats(d, seed.key, (s) => s.seeds === 1 && s.peers === 1, 'the seed joined');
    const { stats, bytes, stderr } = await cliFetch(res, native(d));
    assertWhole(res, bytes, stats, 'fetch');
    assert.equal(stats.bytes, res.size);
    assert.equal(stats.badPeers, 0);
    assert.equal(stats.blocks, Math.ceil(res.size / BLOCK));
    assert.equal(stats.haveBlocks, stats.blocks);
    assert.ok(stats.p2pBytes >= 0.9 * res.size, `only ${stats.p2pBytes} of ${res.size} bytes from peers\n${stderr}`);
    assert.equal(origin.bytesFor(res.path), stats.httpBytes, 'the origin served exactly what the client took from it');
    assert.ok(origin.bytesFor(res.path) <= 0.1 * res.size);
    // the fetch's report reached the daemon
    await swarmStats(d, seed.key, (s) => s.p2p_bytes === stats.p2pBytes && s.http_bytes === stats.httpBytes, 'the report of the fetch');
    note(`(a) ${mib(res.size)}: p2p ${stats.p2pBytes} B (${(100 * stats.p2pBytes / res.size).toFixed(1)}%), origin ${stats.httpBytes} B, ${stats.ms} ms`);
    // SIGTERM: the seed leaves cleanly, and its last report (what it uploaded) reaches the daemon.
    assert.deepEqual(await seed.kill('SIGTERM'), { code: 0, signal: null });
    await until(async () => (await d.metric('swarmcoord_client_bytes_total', { source: 'uploaded' })) === stats.p2pBytes,
      { timeoutMs: 5000, what: `the seed's final report (uploaded ${stats.p2pBytes})` });
  });

  it('(b) a poisoned seed with the real manifest: the right bytes anyway, badPeers 1, the origin serves the rest', T, async () => {
    const d = await startDaemon();
    const res = await resource('b.bin', 2 * 1048576 + 777);
    const bad = 5;  // the seed's block 5 has one byte flipped
    const poisoned = Buffer.from(res.data);
    poisoned[bad * BLOCK + 100] ^= 0xff;
    const poisonedFile = path.join(dir, 'b.poisoned');
    fs.writeFileSync(poisonedFile, poisoned);
    const seed = await startSeed(res, d, { file: poisonedFile, manifest: false, label: 'poisoned seed' });
    await swarmStats(d, seed.key, (s) => s.seeds === 1, 'the seed joined');
    const { stats, bytes, stderr } = await cliFetch(res, native(d));
    assertWhole(res, bytes, stats, 'fetch');
    assert.equal(stats.badPeers, 1, stderr);
    assert.match(stderr, new RegExp(`block ${bad} from neighbour ${seed.peerId} does not match the manifest`));
    assert.equal(stats.neighbors, 0, 'the poisoned seed was dropped');
    assert.equal(origin.bytesFor(res.path), stats.httpBytes, 'the origin served exactly the rest');
    assert.ok(stats.httpBytes >= BLOCK, 'at least the poisoned block came from the origin');
    const ranges = origin.requests.filter((r) => r.path === res.path).map((r) => r.range.match(/(\d+)-(\d+)/).slice(1).map(Number));
    assert.ok(ranges.some(([s, e]) => s <= bad * BLOCK && e >= (bad + 1) * BLOCK - 1), `block ${bad} fetched from the origin: ${JSON.stringify(ranges)}`);
    // The fetch told the coordinator (report.bad_peers), which unlinks the pair.
    await until(async () => (await d.metric('swarmcoord_bad_peer_reports_total')) === 1, { timeoutMs: 5000, what: 'one bad-peer report' });
    note(`(b) ${mib(res.size)} poisoned block ${bad}: p2p ${stats.p2pBytes} B before the ban, origin ${stats.httpBytes} B in ${ranges.length} range(s), ${stats.ms} ms`);
    await seed.kill('SIGTERM');
  });

  it('(c) no coordinator reachable: the fetch completes from the origin after the p2p wait', T, async () => {
    const res = await resource('c.bin', 1048576 + 1);
    const port = await closedPort();
    const { stats, bytes, stderr } = await cliFetch(res, `ws://127.0.0.1:${port}/v1/ws`, { manifest: false });
    assertWhole(res, bytes, stats, 'fetch');
    assert.equal(stats.p2pBytes, 0);
    assert.equal(stats.httpBytes, res.size);
    assert.equal(origin.bytesFor(res.path), res.size);
    assert.ok(stats.ms >= 2000, `the client waits p2pWaitMs (2000) for neighbours first; took ${stats.ms} ms`);
    assert.ok(stats.ms < 10000, `took ${stats.ms} ms`);
    const reqs = origin.requests.filter((r) => r.path === res.path);
    assert.equal(reqs[0].method, 'HEAD', 'without a manifest the size comes from HEAD');
    assert.deepEqual(reqs.slice(1).map((r) => r.status), reqs.slice(1).map(() => 206));
    assert.match(stderr, /coordinator connection closed .*reconnecting/);
    note(`(c) ${mib(res.size)} with coordinator port ${port} closed: all ${stats.httpBytes} B from the origin in ${stats.ms} ms`);
  });

  it('(d) coordinator dropped (kill -9) and restarted (SIGTERM): clients reconnect with backoff, re-join, keep serving', T, async () => {
    const d1 = await startDaemon();
    const res = await resource('d.bin', 6 * 1048576);
    const seedRec = recordingWebSocket();
    const seeder = inProcessClient(native(d1), { WebSocket: seedRec.RecordingWebSocket, reportIntervalMs: 200 });
    const handle = await seeder.seed(res.url, res.data, { manifest: res.manifest });
    const welcome1 = await seeder.ready();
    await swarmStats(d1, handle.key, (s) => s.seeds === 1, 'the seed joined the first daemon');

    // A download is running when the coordinator dies: its data channel must not care.
    const fetchRec = recordingWebSocket();
    const fetcher = inProcessClient(native(d1), { WebSocket: fetchRec.RecordingWebSocket });
    let killed = null;
    let onKilled;
    const killedNow = new Promise((resolve) => { onKilled = resolve; });
    const download = fetcher.fetch(res.url, {
      manifest: res.manifest,
      onProgress: (p) => {
        if (!killed && p.p2pBytes >= 0.05 * res.size) {
          killed = { at: Date.now(), loaded: p.loaded };
          d1.proc.kill('SIGKILL');
          onKilled();
        }
      },
    });
    await Promise.race([killedNow, download.then(() => assert.fail('the download ended before the coordinator was killed'))]);
    await d1.exited;
    assert.ok(killed.loaded < res.size, 'the coordinator died mid-download');

    // The seed retries with full-jitter exponential backoff: delays in [125, 250], then [250, 500] ms.
    const failed = await seedRec.waitFor((a) => {
      const after = a.slice(1).filter((x) => x.closedAt !== null && !x.opened);
      return after.length >= 2 ? after : null;
    }, 'two failed reconnection attempts');
    const lost = seedRec.attempts[0];
    assert.equal(lost.opened, true);
    assert.equal(lost.code, 1006, 'an abnormal close');
    const gaps = [failed[0].at - lost.closedAt, failed[1].at - failed[0].closedAt];
    // Lower bounds only (exact up to timer rounding): a timer never fires early, but a loaded
    // machine may fire it late by any amount, so an upper bound would test the machine.
    assert.ok(gaps[0] >= 120, `first retry after ${gaps[0]} ms, sooner than the backoff's 125 ms`);
    assert.ok(gaps[1] >= 245, `second retry after ${gaps[1]} ms, sooner than the backoff's 250 ms`);

    let downloadedAt = null;
    download.then(() => { downloadedAt = Date.now(); }, () => {});
    const d2 = await startDaemon(['--set', `server.listen=${d1.public}`]);
    const d2UpAt = Date.now();
    const bytes = new Uint8Array(await (await download).arrayBuffer());
    const fstats = fetcher.stats(res.url);
    assertWhole(res, bytes, fstats, 'download across the outage');
    // The blocks kept coming from the seed across the outage — over the data channel opened
    // before it, or over the one that replaces it once both have re-joined (a newer link to the
    // same client id closes the older one). The origin may serve only blocks whose request
    // passed its deadline (requestTimeoutMs, 8 s) on a loaded machine, each of them logged: at
    // most one round of requests in flight. A stall of the whole download (the watchdog) fails.
    const timeouts = fetcher.logs.filter((l) => /^debug block \d+ from \w+ timed out$/.test(l));
    assert.deepEqual(fetcher.logs.filter((l) => /no block arrived/.test(l)), [], 'the download never stalled');
    assert.ok(fstats.httpBytes <= timeouts.length * BLOCK,
      `the origin served ${fstats.httpBytes} B, but only ${timeouts.length} request(s) timed out:\n${fetcher.logs.join('\n')}`);
    assert.ok(fstats.p2pBytes >= res.size - BLOCK * Math.min(timeouts.length, 4), `p2p ${fstats.p2pBytes} of ${res.size} B`);
    assert.equal(origin.bytesFor(res.path), fstats.httpBytes);
    if (timeouts.length) note(`(d) ${timeouts.length} request(s) timed out during the outage: ${fstats.httpBytes} B from the origin`);

    // Both clients are members of the new daemon's swarm (the seed with have=all).
    const welcome2 = await seeder.ready();
    await swarmStats(d2, handle.key, (s) => s.peers === 2 && s.seeds >= 1, 'both clients re-joined the restarted daemon');
    assert.equal(seeder.coordinator.attempt, 0, 'the backoff resets after a welcome');
    assert.equal(seeder.coordinator.peerId, welcome2.peer_id);
    const reconnectMs = seedRec.attempts.find((a, i) => i > 0 && a.opened).at - lost.closedAt;
    note(`(d) kill -9 at ${mib(killed.loaded)} of ${mib(res.size)}: download finished ${downloadedAt < d2UpAt ? 'during the outage' : 'after the restart'}; seed retries after ${gaps.join(', ')} ms; reconnected after ${reconnectMs} ms (peer id ${welcome1.peer_id} → ${welcome2.peer_id})`);

    // A graceful restart: 1001, then the same again with a third daemon on the same port.
    const opened = seedRec.attempts.length;
    await d2.stop('SIGTERM');
    const goingAway = await seedRec.waitFor((a) => a.slice(0, opened).find((x) => x.opened && x.code === 1001), 'the 1001 close');
    assert.ok(goingAway);
    const d3 = await startDaemon(['--set', `server.listen=${d1.public}`]);
    await swarmStats(d3, handle.key, (s) => s.peers === 2, 'both clients re-joined the third daemon');
    await fetchRec.waitFor((a) => a.at(-1).opened, 'the fetcher reconnected');

    // A new peer is served P2P through the restarted coordinator.
    const up0 = seeder.stats(res.url).uploadedBytes + fetcher.stats(res.url).uploadedBytes;
    const { stats, bytes: late, stderr } = await cliFetch(res, native(d3), { label: 'late fetch' });
    assertWhole(res, late, stats, 'late fetch');
    assert.ok(stats.p2pBytes >= 0.9 * res.size, `late fetch: only ${stats.p2pBytes} B from peers\n${stderr}`);
    assert.equal(origin.bytesFor(res.path) - fstats.httpBytes, stats.httpBytes);
    const up1 = seeder.stats(res.url).uploadedBytes + fetcher.stats(res.url).uploadedBytes;
    assert.equal(up1 - up0, stats.p2pBytes, 'what the in-process peers uploaded is what the new peer got from peers');
    await swarmStats(d3, handle.key, (s) => s.p2p_bytes >= stats.p2pBytes, 'the late fetch reported to the third daemon');
    note(`(d) late fetch through the third daemon: p2p ${stats.p2pBytes} B, origin ${stats.httpBytes} B, ${stats.ms} ms`);
    closeClient(fetcher);
    closeClient(seeder);
  });

  describe('(e) a seed killed (-9) mid-transfer does not stall the download', () => {
    it('with a second seed', T, async () => {
      const d = await startDaemon();
      const res = await resource('e1.bin', 12 * 1048576 + 99);
      const [a, b] = await Promise.all([startSeed(res, d, { label: 'seed A' }), startSeed(res, d, { label: 'seed B' })]);
      await swarmStats(d, a.key, (s) => s.seeds === 2, 'both seeds joined');
      const fetcher = inProcessClient(native(d));
      const t0 = Date.now();
      const { killed, doneAt, bytes } = await fetchKillingSeed(fetcher, res, a);
      const s = fetcher.stats(res.url);
      assert.ok(killed && killed.loaded < res.size, 'seed A was killed mid-transfer');
      assert.equal((await a.closed).signal, 'SIGKILL');
      assertWhole(res, bytes, s, 'download');
      assert.equal(origin.bytesFor(res.path), s.httpBytes);
      assert.ok(s.p2pBytes >= 0.9 * res.size, `seed B should have carried on: p2p ${s.p2pBytes}, http ${s.httpBytes}\n${fetcher.logs.join('\n')}`);
      assert.equal(s.neighbors, 1, 'only seed B is left');
      assertReleasedByRemove(fetcher, a);
      note(`(e) two seeds, ${mib(res.size)}, A killed at ${mib(killed.loaded)}: done ${doneAt - killed.at} ms later (total ${doneAt - t0} ms), p2p ${s.p2pBytes} B, origin ${s.httpBytes} B`);
      closeClient(fetcher);
      await b.kill('SIGTERM');
    });

    it('with only the origin left', T, async () => {
      const d = await startDaemon();
      const res = await resource('e2.bin', 8 * 1048576 + 5);
      const a = await startSeed(res, d, { label: 'only seed' });
      await swarmStats(d, a.key, (s) => s.seeds === 1, 'the seed joined');
      const fetcher = inProcessClient(native(d));
      const { killed, doneAt, bytes } = await fetchKillingSeed(fetcher, res, a);
      const s = fetcher.stats(res.url);
      assert.ok(killed && killed.loaded < res.size);
      assertWhole(res, bytes, s, 'download');
      assert.ok(s.httpBytes > 0 && s.p2pBytes >= 0.25 * res.size, JSON.stringify(s));
      assert.equal(origin.bytesFor(res.path), s.httpBytes, 'the origin served exactly the rest');
      assertReleasedByRemove(fetcher, a);
      note(`(e) one seed, ${mib(res.size)}, killed at ${mib(killed.loaded)}: done ${doneAt - killed.at} ms later, p2p ${s.p2pBytes} B, origin ${s.httpBytes} B`);
      closeClient(fetcher);
    });
  });

  describe('(f) origin failures', () => {
    let d;
    before(async () => { d = await startDaemon(); });

    it('a transient 503 is retried', T, async () => {
      const res = await resource('f1.bin', 2 * 1048576 + 3);
      const c = inProcessClient(native(d));
      origin.failNext(2, 503);
      const r = await c.fetch(res.url);  // alone in its swarm: straight to the origin
      const bytes = new Uint8Array(await r.arrayBuffer());
      const s = c.stats(res.url);
      assertWhole(res, bytes, s, 'fetch');
      assert.equal(s.httpBytes, res.size);
      const reqs = origin.requests.filter((x) => x.path === res.path && x.method === 'GET');
      assert.equal(reqs.filter((x) => x.status === 503).length, 2);
      assert.equal(reqs.filter((x) => x.status === 206).reduce((n, x) => n + x.bytes, 0), res.size);
      assert.equal(origin.bytesFor(res.path), res.size);
      assert.ok(c.logs.some((l) => /origin request for bytes .* failed \(HTTP 503\); retrying/.test(l)), c.logs.join('\n'));
      // each failed run is retried, no sooner than 250 ms later, until it succeeds
      for (const f of reqs.filter((x) => x.status === 503)) {
        const retry = reqs.find((x) => x.at >= f.at && x !== f && x.range === f.range);
        assert.ok(retry, `${f.range} retried`);
        assert.ok(retry.at - f.at >= 240, `${f.range} retried after ${retry.at - f.at} ms`);
      }
      for (const range of new Set(reqs.map((x) => x.range))) {
        assert.equal(reqs.filter((x) => x.range === range).at(-1).status, 206, `${range} ends served`);
      }
      note(`(f) 503 ×2 then ${reqs.filter((x) => x.status === 206).length} Range GETs of ${mib(res.size)}`);
      closeClient(c);
    });

    it('a persistent 503 fails the fetch after httpRetries attempts', T, async () => {
      const res = await resource('f2.bin', 100000);
      const c = inProcessClient(native(d));
      origin.failNext(1000, 503);
      try {
        await assert.rejects(c.fetch(res.url), /origin failed for .*f2\.bin bytes 0-99999: HTTP 503/);
      } finally {
        origin.failures.length = 0;
      }
      const failedReqs = origin.requests.filter((x) => x.path === res.path && x.status === 503).length;
      assert.equal(failedReqs, 3, 'httpRetries (3) attempts of the one run');
      assert.equal(c.stats(res.url), null, 'the failed resource is dropped');
      closeClient(c);
    });

    it('an origin that ignores Range (200, whole body) still works', T, async () => {
      const res = await resource('f3.bin', 17 * BLOCK + 100);  // 18 blocks: runs of 16 + 2
      const c = inProcessClient(native(d));
      origin.ignoreRange = true;
      let r;
      try {
        r = await c.fetch(res.url, { manifest: res.manifest });
      } finally {
        origin.ignoreRange = false;
      }
      const bytes = new Uint8Array(await r.arrayBuffer());
      const s = c.stats(res.url);
      const reqs = origin.requests.filter((x) => x.path === res.path);
      assert.equal(sha256(bytes), res.sha);
      assert.ok(reqs.length >= 1 && reqs.every((x) => x.status === 200 && x.bytes === res.size && /^bytes=/.test(x.range)), JSON.stringify(reqs));
      assert.equal(s.httpBytes, reqs.length * res.size, 'httpBytes counts what the origin sent, not what was kept');
      assert.equal(origin.bytesFor(res.path), s.httpBytes);
      note(`(f) Range ignored: ${reqs.length} requests, ${s.httpBytes} B sent by the origin for a ${res.size}-byte file`);
      closeClient(c);
    });

    it('an origin that ignores Range sends the whole body once, not once per run of blocks', T, async () => {
      const res = await resource('f4.bin', 40 * BLOCK);  // 3 runs of at most 16 blocks
      const c = inProcessClient(native(d));
      origin.ignoreRange = true;
      try {
        const r = await c.fetch(res.url, { manifest: res.manifest });
        assert.equal(sha256(new Uint8Array(await r.arrayBuffer())), res.sha);
      } finally {
        origin.ignoreRange = false;
        closeClient(c);
      }
      assert.equal(origin.bytesFor(res.path), res.size, `the origin sent ${origin.bytesFor(res.path) / res.size} copies`);
    });
  });

  it('(g) three peers at once from one seed; the daemon\'s report counters add up', T, async () => {
    const d = await startDaemon();
    const res = await resource('g.bin', 4 * 1048576 + 12345);
    const seeder = inProcessClient(native(d), { reportIntervalMs: 200 });
    const handle = await seeder.seed(res.url, res.data, { manifest: res.manifest });
    await seeder.ready();
    await swarmStats(d, handle.key, (s) => s.seeds === 1, 'the seed joined');
    const before = await scrape(d);
    assert.equal(before.get('swarmcoord_client_bytes_total', { source: 'p2p' }), 0);

    const results = await Promise.all([1, 2, 3].map((i) => cliFetch(res, native(d), { label: `fetch ${i}`, verbose: true })));
    const sum = { p2p: 0, http: 0 };
    results.forEach(({ stats, bytes, stderr }, i) => {
      assertWhole(res, bytes, stats, `fetch ${i + 1}`);
      assert.ok(stats.p2pBytes >= 0.9 * res.size, `fetch ${i + 1}: only ${stats.p2pBytes} B from peers\n${stderr}`);
      sum.p2p += stats.p2pBytes;
      sum.http += stats.httpBytes;
    });
    assert.equal(origin.bytesFor(res.path), sum.http);
    const seedUp = seeder.stats(res.url).uploadedBytes;
    // every byte that did not come from the origin left the seed at least once
    assert.ok(seedUp >= res.size - sum.http, `the seed uploaded ${seedUp} B`);

    // Every fetcher reports at completion and again when it closes; the seed every 200 ms. Every
    // byte received from a peer was counted and reported by the peer that sent it, so the
    // uploads reported reach Σ p2p. They can exceed it a little: an upload counts when a block's
    // frames are queued on the channel, and a block queued to a neighbour that goes away (a
    // fetcher exits the moment it is complete; a `remove`) never arrives — at most
    // requestsPerNeighbor (4) blocks per link between the three fetchers (6 links).
    const seedResource = seeder.resources.get(handle.key);
    await until(() => seedResource.reported.uploadedBytes === seedResource.stats.uploadedBytes, { what: 'the seed\'s last report' });
    const m = await until(async () => {
      const s = await scrape(d);
      const v = (source) => s.get('swarmcoord_client_bytes_total', { source });
      return v('p2p') === sum.p2p && v('http') === sum.http && v('uploaded') >= sum.p2p ? s : null;
    }, { timeoutMs: 10000, what: `client byte counters p2p=${sum.p2p} http=${sum.http} uploaded≥${sum.p2p}` });
    const uploaded = m.get('swarmcoord_client_bytes_total', { source: 'uploaded' });
    const events = results.flatMap((r) => r.stderr.split('\n').filter((l) => /gone|timed out|warn|error/.test(l)));
    assert.ok(uploaded <= sum.p2p + 24 * BLOCK, `uploaded ${uploaded} B reported, but only ${sum.p2p} B were received from peers\n${events.join('\n')}`);
    if (uploaded !== sum.p2p) note(`(g) reported uploads exceed received p2p bytes by ${uploaded - sum.p2p} B; fetchers' link events:\n    ${events.join('\n    ')}`);
    const entry = await swarmStats(d, handle.key, () => true, 'the swarm');
    assert.equal(entry.p2p_bytes, sum.p2p);
    assert.equal(entry.http_bytes, sum.http);
    assert.ok(Math.abs(entry.offload_ratio - sum.p2p / (sum.p2p + sum.http)) < 1e-9);
    note(`(g) 3 × ${mib(res.size)}: p2p ${results.map((r) => r.stats.p2pBytes).join('/')} B, origin ${sum.http} B, seed uploaded ${seedUp} B (${(seedUp / res.size).toFixed(2)} copies), reported uploaded ${uploaded} B, ${results.map((r) => r.stats.ms).join('/')} ms`);
    closeClient(seeder);
  });

  it('(h) the CLI exits 2 with a message on bad usage (1 is for a failed transfer)', T, async () => {
    const res = await resource('h.bin', 5000);
    const other = await resource('h-other.bin', 7000);
    const ws = 'ws://127.0.0.1:9/v1/ws';
    const cases = [
      [[], /usage:/],
      [['serve', res.file, '--coordinator', ws], /usage:/],
      [['fetch', res.url], /--coordinator is required/],
      [['fetch', res.url, '--coordinator', ws, '--bogus'], /Unknown option '--bogus'/],
      [['fetch', res.url, '--coordinator', ws, '--block-size', 'abc'], /--block-size must be an integer/],
      [['fetch', res.url, '--coordinator', ws, '--block-size', '100'], /blockSize must be an integer from 1024/],
      [['fetch', res.url, '--coordinator', ws, '--manifest', path.join(dir, 'nope.json')], /--manifest .*nope\.json: ENOENT/],
      [['fetch', 'ftp://127.0.0.1/x', '--coordinator', ws], /not an http\(s\) URL/],
      [['seed', res.file, '--coordinator', ws], /seed needs --url/],
      [['seed', path.join(dir, 'nope.bin'), '--url', res.url, '--coordinator', ws], /nope\.bin: ENOENT/],
      [['seed', res.file, '--url', res.url, '--coordinator', ws, '--manifest', other.manifestFile], /the source has 5000 bytes, the manifest says 7000/],
    ];
    const runs = await Promise.all(cases.map(async ([args]) => {
      const p = new CliPeer(args, `cli ${args.join(' ')}`);
      return { exit: await p.closed, stderr: p.stderr, stdout: p.events };
    }));
    runs.forEach(({ exit, stderr, stdout }, i) => {
      const [args, re] = cases[i];
      assert.deepEqual(exit, { code: 2, signal: null }, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, re, args.join(' '));
      assert.match(stderr, /^swarmcoord-peer: /m);
      assert.deepEqual(stdout, [], 'nothing on stdout');
    });
  });

  // With requestTimeoutMs 1 every request times out; the late chunks of cancelled blocks
  // keep arriving long after 4 × requestTimeoutMs and must still be drained, not punished.
  it('(i) a neighbour whose request timed out is not dropped for the chunks already on their way', T, async () => {
    const d = await startDaemon();
    const res = await resource('i.bin', 1048576);
    const seeder = inProcessClient(native(d));
    const handle = await seeder.seed(res.url, res.data, { manifest: res.manifest });
    await seeder.ready();
    await swarmStats(d, handle.key, (s) => s.seeds === 1, 'the seed joined');
    // Every request times out before its block can arrive: the fetch falls back to the origin
    // (correct), and the neighbour should stay (it did nothing wrong; `cancel` raced the data).
    const fetcher = inProcessClient(native(d), { requestTimeoutMs: 1 });
    try {
      const r = await fetcher.fetch(res.url, { manifest: res.manifest });
      assert.equal(sha256(new Uint8Array(await r.arrayBuffer())), res.sha);
      assert.deepEqual(fetcher.logs.filter((l) => /protocol error/.test(l)), []);
      assert.equal(fetcher.stats(res.url).neighbors, 1);
    } finally {
      closeClient(fetcher);
      closeClient(seeder);
    }
  });
});
