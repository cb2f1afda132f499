// End to end: real headless Chromium tabs (and the Node native peer) share a 16 MiB file
// through swarmcoord, with Debian nginx as the origin. Runs inside a network namespace of its
// own with loopback and a veth pair (tests/node/run-in-netns.sh --veth), so nothing leaves
// the machine. Each scenario uses its own resource URL (/tN/file.bin, a symlink to the same
// bytes), hence its own swarm and its own lines in the origin's access log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Daemon } from './lib/daemon.mjs';
import { startNginx } from './lib/nginx.mjs';
import { launchChromium, openTab } from './lib/browser.mjs';
import { runBinary, until } from './lib/proc.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SIZE = 16 * 1024 * 1024;
const BLOCK = 65536;
const PEER_CLI = path.join(ROOT, 'clients/node/swarmcoord-peer.mjs');
const DONE_TIMEOUT_MS = 60000;

let dir, origin, daemon, browser, sha256, coordinator;
const children = [];

function hex(bytes) { return createHash('sha256').update(bytes).digest('hex'); }
const pct = (part, whole) => `${((100 * part) / whole).toFixed(1)}%`;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-e2e-'));
  const data = randomBytes(SIZE);
  sha256 = hex(data);
  fs.writeFileSync(path.join(dir, 'file.bin'), data);
  // A poisoned copy: the first byte of every block flipped, same size.
  const bad = Buffer.from(data);
  for (let off = 0; off < SIZE; off += BLOCK) bad[off] ^= 0xff;
  fs.writeFileSync(path.join(dir, 'poisoned.bin'), bad);
  const manifest = await runBinary(['manifest', path.join(dir, 'file.bin'), '--block-size', String(BLOCK)]);
  assert.equal(manifest.code, 0, manifest.stderr);
  for (const t of ['t1', 't2', 't3', 't4']) {
    fs.mkdirSync(path.join(dir, t));
    fs.symlinkSync('../file.bin', path.join(dir, t, 'file.bin'));
    fs.writeFileSync(path.join(dir, t, 'file.bin.manifest.json'), manifest.stdout);
  }
  origin = await startNginx({
    root: dir,
    aliases: { '/demo/': path.join(ROOT, 'examples/demo/'), '/clients/web/': path.join(ROOT, 'clients/web/') },
  });
  daemon = await Daemon.start();
  coordinator = `${daemon.wsUrl}/v1/ws`;
  browser = await launchChromium();
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await browser?.close();
  await daemon?.stop();
  await origin?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// Body bytes the origin sent for exactly this path (not its manifest).
async function originBytesOf(file) {
  return (await origin.requests(file)).filter((r) => r.path === file).reduce((sum, r) => sum + r.bytes, 0);
}

// The demo page, downloading `file` on load; its outcome is window.demo.
function demoUrl(file) {
  const q = new URLSearchParams({ coordinator, file, manifest: `${file}.manifest.json`, autostart: '1' });
  return `${origin.url}/demo/?${q}`;
}

async function waitDemo(page, label) {
  await page.waitForFunction(() => window.demo && window.demo.state !== 'running' && window.demo.state !== 'idle', null, { timeout: DONE_TIMEOUT_MS })
    .catch((e) => { throw new Error(`${label}: download not finished: ${e.message}`); });
  const r = await page.evaluate(() => ({ state: window.demo.state, error: window.demo.error, sha256: window.demo.sha256, stats: window.demo.stats, size: window.demo.size }));
  assert.equal(r.state, 'done', `${label}: ${r.error}`);
  return r;
}

// Starts a SwarmClient download in a page of the origin (the demo page, idle) with client
// options of the test's choosing; waitDownload() returns its outcome.
async function startDownload(browserTab, file, options = {}) {
  await browserTab.evaluate(async ({ coordinator, file, options }) => {
    const { SwarmClient } = await import('/clients/web/swarmcoord.js');
    const client = new SwarmClient({ coordinator, ...options });
    const t = { state: 'running', client, loaded: 0 };
    window.t = t;
    // Not awaited: evaluate() returns once the download has started.
    (async () => {
      try {
        const res = await client.fetch(file, { manifest: `${file}.manifest.json`, onProgress: (p) => { t.loaded = p.loaded; } });
        const body = await res.arrayBuffer();
        const d = new Uint8Array(await crypto.subtle.digest('SHA-256', body));
        t.sha256 = [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
        t.size = body.byteLength;
        t.stats = client.stats(file);
        t.state = 'done';
      } catch (e) {
        t.error = String(e?.stack ?? e);
        t.state = 'error';
      }
    })();
  }, { coordinator, file, options });
}

async function waitDownload(page, label) {
  await page.waitForFunction(() => window.t && window.t.state !== 'running', null, { timeout: DONE_TIMEOUT_MS })
    .catch((e) => { throw new Error(`${label}: download not finished: ${e.message}`); });
  const r = await page.evaluate(() => ({ state: window.t.state, error: window.t.error, sha256: window.t.sha256, size: window.t.size, stats: window.t.stats }));
  assert.equal(r.state, 'done', `${label}: ${r.error}`);
  return r;
}

async function idleTab(label) {
  return openTab(browser, `${origin.url}/demo/`, label);
}

// The native peer seeding `file` (a local path) as the resource URL; resolves once it serves.
async function startSeed(file, url, label) {
  const child = spawn(process.execPath, [PEER_CLI, 'seed', file, '--url', url, '--coordinator', coordinator], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr.on('data', (c) => { err += c; process.stderr.write(`[${label}] ${c}`); });
  const line = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${label}: no "seeding" line in 10 s\n${err}`)), 10000);
    child.stdout.on('data', (c) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl)); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${label}: exited with ${code}\n${err}`)); });
  });
  const msg = JSON.parse(line);
  assert.equal(msg.event, 'seeding');
  return child;
}

test('1: tab 1 fetches from the origin; tabs 2-4 then get most bytes from peers', async () => {
  const file = '/t1/file.bin';
  const tab1 = await openTab(browser, demoUrl(file), 'tab1');
  const first = await waitDemo(tab1, 'tab1');
  assert.equal(first.sha256, sha256);
  assert.equal(first.stats.httpBytes, SIZE, 'alone in its swarm, tab 1 gets everything from the origin');
  const afterFirst = await originBytesOf(file);
  assert.equal(afterFirst, SIZE);

  const tabs = await Promise.all(['tab2', 'tab3', 'tab4'].map((l) => openTab(browser, demoUrl(file), l)));
  const results = await Promise.all(tabs.map((p, i) => waitDemo(p, `tab${i + 2}`)));
  const originBytes = (await originBytesOf(file)) - afterFirst;
  let reportedHttp = 0;
  results.forEach((r, i) => {
    const label = `tab${i + 2}`;
    console.log(`${label}: ${pct(r.stats.p2pBytes, SIZE)} from peers (${r.stats.p2pBytes} B), ${r.stats.httpBytes} B from the origin, uploaded ${r.stats.uploadedBytes} B`);
    assert.equal(r.sha256, sha256, `${label} hash`);
    assert.ok(r.stats.p2pBytes >= SIZE / 2, `${label}: only ${pct(r.stats.p2pBytes, SIZE)} from peers`);
    assert.equal(r.stats.p2pBytes + r.stats.httpBytes, SIZE, `${label}: every byte counted once`);
    reportedHttp += r.stats.httpBytes;
  });
  console.log(`origin access log: ${originBytes} B for tabs 2-4 (${pct(originBytes, 3 * SIZE)} of their ${3 * SIZE} B)`);
  // The origin's own count agrees with the tabs' and is at most half of what they got.
  assert.equal(originBytes, reportedHttp);
  assert.ok(originBytes <= (3 * SIZE) / 2, `origin served ${originBytes} B to tabs 2-4`);
  const tab1Stats = await tab1.evaluate((f) => window.demo.client.stats(f), file);
  assert.ok(tab1Stats.uploadedBytes > 0, 'tab 1 served the others');
  await Promise.all([tab1, ...tabs].map((p) => p.context().close()));
});

test('2: a browser tab gets at least half of the file from a native Node seed', async () => {
  const file = '/t2/file.bin';
  await startSeed(path.join(dir, 'file.bin'), `${origin.url}${file}`, 'seed');
  const tab = await idleTab('tab');
  await startDownload(tab, file);
  const r = await waitDownload(tab, 'tab');
  const originBytes = await originBytesOf(file);
  console.log(`browser from native seed: ${pct(r.stats.p2pBytes, SIZE)} from peers, origin access log ${originBytes} B`);
  assert.equal(r.sha256, sha256);
  assert.ok(r.stats.p2pBytes >= SIZE / 2, `only ${r.stats.p2pBytes} B from the seed`);
  assert.equal(originBytes, r.stats.httpBytes);
  assert.ok(originBytes <= SIZE / 2);
  await tab.context().close();
});

test('3: blocks from a poisoned peer fail the manifest check; the download completes intact', async () => {
  const file = '/t3/file.bin';
  const url = `${origin.url}${file}`;
  await startSeed(path.join(dir, 'poisoned.bin'), url, 'poisoned-seed');
  await startSeed(path.join(dir, 'file.bin'), url, 'honest-seed');
  const tab = await idleTab('tab');
  await startDownload(tab, file);
  const r = await waitDownload(tab, 'tab');
  const originBytes = await originBytesOf(file);
  console.log(`with a poisoned peer: ${pct(r.stats.p2pBytes, SIZE)} from peers, ${r.stats.httpBytes} B from the origin, bad peers ${r.stats.badPeers}`);
  assert.equal(r.sha256, sha256);
  assert.equal(r.stats.badPeers, 1, 'the poisoned seed was dropped');
  assert.equal(originBytes, r.stats.httpBytes);
  assert.equal(r.stats.p2pBytes + r.stats.httpBytes, SIZE, 'no corrupt block was counted');
  // The coordinator heard about it.
  await until(async () => (await daemon.metric('swarmcoord_bad_peer_reports_total')) >= 1, { timeoutMs: 10000, what: 'the bad peer report in /metrics' });
  await tab.context().close();
});

test('4: a tab closed mid-transfer does not stall the others', async () => {
  const file = '/t4/file.bin';
  const seedTab = await idleTab('seed-tab');
  // The only complete copy uploads at 2 MiB/s, so the others are mid-transfer for seconds.
  await startDownload(seedTab, file, { uploadBytesPerSecond: 2 * 1024 * 1024 });
  await waitDownload(seedTab, 'seed-tab');
  const tabs = await Promise.all(['x', 'y', 'z'].map((l) => idleTab(l)));
  await Promise.all(tabs.map((p) => startDownload(p, file)));
  // Close the tab everyone is downloading from while every other tab is still incomplete.
  await tabs[0].waitForFunction((size) => window.t.loaded >= size / 8, SIZE, { timeout: DONE_TIMEOUT_MS });
  const loaded = await Promise.all(tabs.map((p) => p.evaluate(() => window.t.loaded)));
  await seedTab.context().close();
  console.log(`seed tab closed with x/y/z at ${loaded.map((l) => pct(l, SIZE)).join(' / ')}`);
  assert.ok(loaded.every((l) => l < SIZE), 'the seed tab was closed mid-transfer');
  const results = await Promise.all(tabs.map((p, i) => waitDownload(p, ['x', 'y', 'z'][i])));
  for (const [i, r] of results.entries()) {
    console.log(`${['x', 'y', 'z'][i]}: ${pct(r.stats.p2pBytes, SIZE)} from peers, ${r.stats.httpBytes} B from the origin`);
    assert.equal(r.sha256, sha256);
  }
  await Promise.all(tabs.map((p) => p.context().close()));
});
