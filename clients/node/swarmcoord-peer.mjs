#!/usr/bin/env node
// swarmcoord's native peer: the browser client's code (clients/web) with Node's WebSocket
// (`ws`) and WebRTC (`@roamhq/wrtc`), so browser ⇄ native transfers use the same protocol.
//
//   swarmcoord-peer seed FILE --url URL --coordinator ws://HOST:PORT/v1/ws [--manifest PATH|URL]
//   swarmcoord-peer fetch URL --coordinator ws://HOST:PORT/v1/ws [--manifest PATH|URL] [--out FILE]
//
// Exit status: 0 done, 1 the transfer failed, 2 bad usage.
// `seed` serves FILE as the resource URL (an office cache box, say) until SIGINT/SIGTERM.
// `fetch` downloads URL through the swarm, writes it to --out, prints its statistics as JSON.
import { open, readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import wrtc from '@roamhq/wrtc';
import WebSocket from 'ws';
import { SwarmClient } from '../web/swarmcoord.js';

const usage = `usage:
  swarmcoord-peer seed FILE --url URL --coordinator WS_URL [--manifest PATH|URL] [--block-size N]
  swarmcoord-peer fetch URL --coordinator WS_URL [--manifest PATH|URL] [--out FILE] [--block-size N]
options:
  --coordinator   the coordinator's native endpoint, e.g. ws://127.0.0.1:8000/v1/ws
  --manifest      block digests from \`swarmcoord manifest\` (a file or a URL)
  --block-size    block size when there is no manifest (default 65536)
  --verbose       log every neighbour event`;

// Exit codes: 2 for bad usage (arguments, files), 1 when the transfer itself fails.
function fail(message, code = 2) {
  console.error(`swarmcoord-peer: ${message}`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      coordinator: { type: 'string' }, url: { type: 'string' }, manifest: { type: 'string' },
      out: { type: 'string' }, 'block-size': { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
} catch (e) {
  fail(`${e.message}\n${usage}`);
}
const { values: opt, positionals: [command, target] } = args;
if (opt.help) { console.log(usage); process.exit(0); }
if (!['seed', 'fetch'].includes(command) || !target) fail(usage);
if (!opt.coordinator) fail('--coordinator is required');
const blockSize = opt['block-size'] === undefined ? undefined : Number(opt['block-size']);
if (blockSize !== undefined && !Number.isInteger(blockSize)) fail('--block-size must be an integer');

const log = (level, message) => {
  if (level !== 'debug' || opt.verbose) console.error(`${new Date().toISOString()} ${level} ${message}`);
};

async function manifestArg() {
  if (opt.manifest === undefined) return undefined;
  if (/^https?:\/\//.test(opt.manifest)) return opt.manifest;
  try {
    return JSON.parse(await readFile(opt.manifest, 'utf8'));
  } catch (e) {
    fail(`--manifest ${opt.manifest}: ${e.message}`);
  }
}

let client;
try {
  client = new SwarmClient({
    coordinator: opt.coordinator, native: true, log,
    WebSocket, RTCPeerConnection: wrtc.RTCPeerConnection,
    ...(blockSize ? { blockSize } : {}),
  });
} catch (e) {
  fail(e.message);
}
const shutdown = () => { client.close(); process.exit(0); };
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

if (command === 'seed') {
  if (!opt.url) fail('seed needs --url URL (the resource URL browsers fetch)');
  let handle;
  try {
    handle = await open(target, 'r');
  } catch (e) {
    fail(`${target}: ${e.message}`);
  }
  const { size } = await handle.stat();
  const source = {
    size,
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buf, 0, length, offset);
      if (bytesRead !== length) throw new Error(`${target} is shorter than when seeding began`);
      return buf;
    },
  };
  const manifest = await manifestArg();
  if (manifest && typeof manifest === 'object' && manifest.size !== size) fail(`the source has ${size} bytes, the manifest says ${manifest.size}`);
  try {
    const seeded = await client.seed(opt.url, source, { manifest });
    const welcome = await client.ready();
    // One line on stdout when serving, for scripts and tests to wait on.
    console.log(JSON.stringify({ event: 'seeding', url: opt.url, swarm: seeded.key, size, peer_id: welcome.peer_id }));
  } catch (e) {
    fail(e.message, 1);
  }
  setInterval(() => log('info', `stats ${JSON.stringify(client.stats(opt.url))}`), 10000).unref();
} else {
  if (!/^https?:\/\//i.test(target)) fail(`not an http(s) URL: ${target}`);
  const started = Date.now();
  try {
    const res = await client.fetch(target, { manifest: await manifestArg() });
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (opt.out) await writeFile(opt.out, bytes);
    console.log(JSON.stringify({ event: 'fetched', url: target, bytes: bytes.length, ms: Date.now() - started, ...client.stats(target) }));
  } catch (e) {
    client.close();
    fail(e.message, 1);
  }
  client.close();
  process.exit(0);
}
