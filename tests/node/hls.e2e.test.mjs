// End to end: two headless Chromium tabs play the same HLS VOD stream with hls.js and
// p2p-media-loader 2.3.1, whose only tracker is swarmcoord. Tab 1 fetches the stream from the
// origin (nginx); tab 2, opened afterwards, must get its segments from tab 1 over WebRTC.
// Checked three ways: p2p-media-loader's own events in each tab, the origin's access log,
// and the coordinator's metrics (offers and answers relayed).
//
// Runs inside the network namespace of run-in-netns.sh --veth (see tests/CMakeLists.txt):
// the page, the origin, the tracker and both peers are on this machine only.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { Daemon } from './lib/daemon.mjs';
import { startNginx } from './lib/nginx.mjs';
import { launchChromium, openTab } from './lib/browser.mjs';
import { until } from './lib/proc.mjs';

const FFMPEG = '/usr/bin/ffmpeg';
const NODE_MODULES = path.resolve(import.meta.dirname, 'node_modules');

const STREAM_SECONDS = 24;
const SEGMENT_SECONDS = 2;
const STEP_TIMEOUT_MS = 20000;
// Tab 2 makes no HTTP request for a segment during this long (see TAB2_CORE): ample time
// for the tracker round trip, the WebRTC handshake and the whole transfer on loopback, and
// the bound at which a broken P2P path shows up as HTTP loads instead of a hang.
const TAB2_HTTP_DELAY_MS = 30000;

// ------------------------------------------------------------------ p2p-media-loader config
//
// p2p-media-loader 2.x sorts the segments ahead of the playhead into time windows:
// "high demand" ones (highDemandTimeWindow s) are fetched over HTTP as soon as an HTTP slot
// is free, the ones further out only from peers that announced them (p2pDownloadTimeWindow),
// and a random one over HTTP now and then when a peer is connected but nobody has it
// (httpDownloadTimeWindow). It also plays from segments already in its memory store.

// Tab 1 is the seed: the whole VOD is "high demand", so its core fetches every segment over
// HTTP right away (not only the ~15 s hls.js would buffer) and keeps them all in memory
// (a VOD's segments are evicted only at the memory limit), ready to be shared.
const TAB1_CORE = {
  highDemandTimeWindow: 3600,
};

// Tab 2 is the leech: no HTTP at all for the first TAB2_HTTP_DELAY_MS
// (httpDownloadInitialTimeoutMs holds back even the segment hls.js asks for, until a peer
// has it), every segment of the stream in the P2P window so that the whole VOD is fetched
// from tab 1 in the background, and the random-HTTP window reduced to the segment at the
// playhead.
const TAB2_CORE = {
  httpDownloadInitialTimeoutMs: TAB2_HTTP_DELAY_MS,
  httpDownloadTimeWindow: 0,
  p2pDownloadTimeWindow: 3600,
};

// ------------------------------------------------------------------ fixtures

const run = promisify(execFile);

// A short test-pattern stream with a tone: H.264 + AAC in MPEG-TS, a keyframe every
// SEGMENT_SECONDS so that every segment has the same length.
async function makeStream(dir) {
  if (!fs.existsSync(FFMPEG)) {
    throw new Error(`${FFMPEG} is missing: install the Debian package "ffmpeg" (deploy/install-deps.sh test does)`);
  }
  const fps = 25;
  await run(FFMPEG, [
    '-hide_banner', '-loglevel', 'error', '-nostdin',
    '-f', 'lavfi', '-i', `testsrc=size=640x360:rate=${fps}`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(STREAM_SECONDS),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    '-g', String(fps * SEGMENT_SECONDS), '-keyint_min', String(fps * SEGMENT_SECONDS), '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', '64k',
    '-f', 'hls', '-hls_time', String(SEGMENT_SECONDS), '-hls_playlist_type', 'vod',
    '-hls_segment_filename', path.join(dir, 'seg%03d.ts'),
    path.join(dir, 'index.m3u8'),
  ], { timeout: 60000 });
  const playlist = await fsp.readFile(path.join(dir, 'index.m3u8'), 'utf8');
  const names = playlist.split('\n').filter((l) => l.endsWith('.ts'));
  const sizes = await Promise.all(names.map(async (n) => (await fsp.stat(path.join(dir, n))).size));
  return { segments: names.length, bytes: sizes.reduce((a, b) => a + b, 0) };
}

// The player page. No bundler: an import map points the bare specifiers at the packages'
// own browser builds, served from tests/node/node_modules through the origin's /vendor/
// alias. p2p-media-loader-core's dist file is a self-contained ES module (bittorrent-tracker
// and its Node polyfills included); the hlsjs one imports only "p2p-media-loader-core".
// ?debug=p2pml-* turns on p2p-media-loader's `debug` logging (read from localStorage when
// the module loads, hence the classic script first).
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>swarmcoord HLS end-to-end</title>
<link rel="icon" href="data:,">
<script>
  const debugNamespaces = new URLSearchParams(location.search).get('debug');
  if (debugNamespaces) localStorage.debug = debugNamespaces;
</script>
<script type="importmap">
{
  "imports": {
    "hls.js": "/vendor/hls.js/dist/hls.mjs",
    "p2p-media-loader-core": "/vendor/p2p-media-loader-core/dist/p2p-media-loader-core.es.js",
    "p2p-media-loader-hlsjs": "/vendor/p2p-media-loader-hlsjs/dist/p2p-media-loader-hlsjs.es.js"
  }
}
</script>
<video id="video" muted playsinline width="320" height="180"></video>
<script type="module">
  import Hls from 'hls.js';
  import { HlsJsP2PEngine } from 'p2p-media-loader-hlsjs';

  // What the test reads back: everything comes from p2p-media-loader's and hls.js's events.
  const e2e = {
    segments: [],            // onSegmentLoaded: { url, bytes, source, peerId }
    chunkBytes: { http: 0, p2p: 0 }, // onChunkDownloaded
    uploadedBytes: 0,        // onChunkUploaded
    peersConnected: 0,
    problems: [],            // segment, peer and tracker errors, fatal hls.js errors
  };
  window.e2e = e2e;
  const note = (what, detail) => {
    const text = what + ': ' + (detail?.message ?? JSON.stringify(detail));
    e2e.problems.push(text);
    console.warn(text);
  };

  window.startPlayer = (src, core) => {
    const HlsWithP2P = HlsJsP2PEngine.injectMixin(Hls);
    const hls = new HlsWithP2P({
      p2p: {
        core,
        onHlsJsCreated(h) {
          const p2p = h.p2pEngine;
          p2p.addEventListener('onSegmentLoaded', (d) => {
            e2e.segments.push({ url: d.segmentUrl, bytes: d.bytesLength, source: d.downloadSource, peerId: d.peerId ?? null });
            console.log('segment ' + d.segmentUrl.split('/').pop() + ' ' + d.bytesLength + ' B via ' + d.downloadSource);
          });
          p2p.addEventListener('onChunkDownloaded', (bytes, source) => { e2e.chunkBytes[source] += bytes; });
          p2p.addEventListener('onChunkUploaded', (bytes) => { e2e.uploadedBytes += bytes; });
          p2p.addEventListener('onPeerConnect', (d) => { e2e.peersConnected++; console.log('peer connected ' + d.peerId); });
          p2p.addEventListener('onPeerClose', (d) => console.log('peer closed ' + d.peerId));
          p2p.addEventListener('onPeerError', (d) => note('peer error', d.error));
          p2p.addEventListener('onSegmentError', (d) => note('segment error ' + d.downloadSource, d.error));
          p2p.addEventListener('onTrackerError', (d) => note('tracker error', d.error));
          p2p.addEventListener('onTrackerWarning', (d) => note('tracker warning', d.warning));
        },
      },
    });
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) note('hls.js fatal error', { message: d.details }); });
    const video = document.getElementById('video');
    hls.attachMedia(video);
    hls.loadSource(src);
    video.play().catch((err) => note('play() refused', err));
    window.hls = hls;
  };
  window.playerReady = true;
</script>
`;

// ------------------------------------------------------------------ helpers

// Waits for fn(arg) to be truthy in the page; on timeout fails with `what` and the page's
// e2e state, never hangs.
async function waitInPage(page, label, what, fn, arg, timeoutMs = STEP_TIMEOUT_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
  } catch (err) {
    const state = await page.evaluate(() => JSON.stringify(window.e2e ?? null)).catch((e) => `unreadable: ${e.message}`);
    throw new Error(`${label}: ${what} not reached within ${timeoutMs} ms (${err.message.split('\n')[0]})\npage state: ${state}`);
  }
}

// The page's e2e state plus per-source totals of its onSegmentLoaded events.
async function tabFigures(page) {
  const e2e = await page.evaluate(() => window.e2e);
  const by = { http: { segments: 0, bytes: 0 }, p2p: { segments: 0, bytes: 0 } };
  for (const s of e2e.segments) {
    by[s.source].segments++;
    by[s.source].bytes += s.bytes;
  }
  return { ...e2e, ...by };
}

async function startTab(browser, origin, label, core) {
  const page = await openTab(browser, `${origin.url}/index.html?tab=${label}`, label);
  await waitInPage(page, label, 'player modules loaded', () => window.playerReady === true);
  await page.evaluate(({ src, core }) => window.startPlayer(src, core), { src: `${origin.url}/hls/index.m3u8`, core });
  return page;
}

// ------------------------------------------------------------------ suite

describe('HLS over p2p-media-loader with swarmcoord as tracker', () => {
  let tmp;
  let stream;
  let origin;
  let daemon;
  let browser;
  let tab1;
  let tab2;
  let originBytesAfterTab1;
  let figures1;
  let figures2;

  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'swarmcoord-hls-e2e-'));
    await fsp.mkdir(path.join(tmp, 'hls'));
    await fsp.writeFile(path.join(tmp, 'index.html'), PAGE);
    stream = await makeStream(path.join(tmp, 'hls'));
    origin = await startNginx({ root: tmp, aliases: { '/vendor/': NODE_MODULES } });
    daemon = await Daemon.start();
    browser = await launchChromium();
    console.log(`stream: ${stream.segments} segments, ${stream.bytes} bytes; origin ${origin.url}; tracker ${daemon.wsUrl}`);
  });

  after(async () => {
    // Each in turn, whatever failed before: browser first (its peers and sockets go with it).
    await browser?.close().catch((err) => console.error(`browser close: ${err.message}`));
    await origin?.stop().catch((err) => console.error(`nginx stop: ${err.message}`));
    await daemon?.stop();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('tab 1 loads the whole stream from the origin and joins the swarm', async () => {
    tab1 = await startTab(browser, origin, 'tab1', { announceTrackers: [daemon.wsUrl], rtcConfig: { iceServers: [] }, ...TAB1_CORE });
    await waitInPage(tab1, 'tab1', `all ${stream.segments} segments loaded`,
      (n) => new Set(window.e2e.segments.map((s) => s.url)).size >= n, stream.segments);
    // Its announce must have reached the tracker before tab 2 announces, or tab 2's offers
    // would find nobody to go to.
    await until(async () => {
      const s = await daemon.stats();
      return s.peers.leechers + s.peers.seeders >= 1;
    }, { timeoutMs: STEP_TIMEOUT_MS, what: 'tab 1 in the tracker swarm' });

    figures1 = await tabFigures(tab1);
    // nginx logs a request just after its last byte is sent: poll rather than race it.
    originBytesAfterTab1 = await until(async () => {
      const served = await origin.bytesServed('/hls/seg');
      return served >= figures1.http.bytes && served;
    }, { timeoutMs: 5000, what: `the origin's log to show the ${figures1.http.bytes} segment bytes tab 1 loaded` });
    console.log(`tab1: http ${figures1.http.segments} segments / ${figures1.http.bytes} B, ` +
      `p2p ${figures1.p2p.segments} segments / ${figures1.p2p.bytes} B; origin served ${originBytesAfterTab1} segment bytes`);
    assert.deepEqual(figures1.problems, [], 'tab 1 reported errors');
    assert.equal(figures1.http.segments, stream.segments, 'tab 1 (alone) loads every segment over HTTP');
    assert.equal(figures1.http.bytes, stream.bytes);
  });

  test('tab 2 gets the stream from tab 1 over WebRTC and plays it', async () => {
    assert.ok(tab1, 'needs tab 1');
    const offersBefore = await daemon.metric('swarmcoord_offers_relayed_total');
    const answersBefore = await daemon.metric('swarmcoord_answers_relayed_total');
    const started = Date.now();

    tab2 = await startTab(browser, origin, 'tab2', { announceTrackers: [daemon.wsUrl], rtcConfig: { iceServers: [] }, ...TAB2_CORE });
    await waitInPage(tab2, 'tab2', 'a peer connection', () => window.e2e.peersConnected >= 1);
    await waitInPage(tab2, 'tab2', `all ${stream.segments} segments loaded`,
      (n) => new Set(window.e2e.segments.map((s) => s.url)).size >= n, stream.segments, TAB2_HTTP_DELAY_MS + STEP_TIMEOUT_MS);
    const loadedMs = Date.now() - started;
    // The P2P data is real media: playback moves past the first segments.
    await waitInPage(tab2, 'tab2', 'playback past 3 s', () => document.getElementById('video').currentTime > 3);

    figures2 = await tabFigures(tab2);
    const figures1After = await tabFigures(tab1);
    // Whatever the origin served after tab 1 had everything counts against tab 2 (tab 1
    // plays from its memory store, so it is all tab 2's or nobody's).
    const originBytesForTab2 = await until(async () => {
      const served = await origin.bytesServed('/hls/seg') - originBytesAfterTab1;
      return served >= figures2.http.bytes && { served };
    }, { timeoutMs: 5000, what: `the origin's log to show the ${figures2.http.bytes} segment bytes tab 2 loaded over HTTP` }).then((r) => r.served);
    const offers = await daemon.metric('swarmcoord_offers_relayed_total') - offersBefore;
    const answers = await daemon.metric('swarmcoord_answers_relayed_total') - answersBefore;
    console.log(`tab2: p2p ${figures2.p2p.segments} segments / ${figures2.p2p.bytes} B, ` +
      `http ${figures2.http.segments} segments / ${figures2.http.bytes} B (chunks: p2p ${figures2.chunkBytes.p2p} B, http ${figures2.chunkBytes.http} B); ` +
      `whole stream in ${loadedMs} ms`);
    console.log(`tab1 uploaded ${figures1After.uploadedBytes} B; origin served ${originBytesForTab2} segment bytes after tab 1; ` +
      `tracker relayed ${offers} offers, ${answers} answers`);

    // p2p-media-loader's own account: every segment from the peer, none from the origin.
    assert.ok(figures2.p2p.segments >= 1, 'tab 2 got no segment over P2P');
    assert.equal(figures2.p2p.segments, stream.segments, 'tab 2 got every segment over P2P');
    assert.equal(figures2.p2p.bytes, stream.bytes);
    assert.equal(figures2.http.segments, 0);
    assert.ok(figures1After.uploadedBytes >= figures2.p2p.bytes, 'tab 1 uploaded what tab 2 downloaded');
    // The origin's account agrees: it served tab 2 less than the stream (here: nothing).
    assert.ok(originBytesForTab2 < stream.bytes, `origin served tab 2 ${originBytesForTab2} B of ${stream.bytes}`);
    assert.equal(originBytesForTab2, figures2.http.bytes);
    // And the coordinator's: it introduced the peers (WebRTC offer one way, answer back).
    assert.ok(offers >= 1, 'tracker relayed no offer');
    assert.ok(answers >= 1, 'tracker relayed no answer');
    assert.deepEqual(figures2.problems, [], 'tab 2 reported errors');
  });
});
