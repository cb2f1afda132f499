#!/usr/bin/env node
// The reference WebTorrent tracker for bench/compare.sh: the npm `bittorrent-tracker` 11.2.3
// Server, WebSocket only (no HTTP announce, no UDP, no /stats page), on 127.0.0.1 and a free
// port. Prints one line `listening port=PORT pid=PID` once it accepts connections.
//
//   node [--expose-gc] bench/reference-tracker.mjs [--host 127.0.0.1] [--port 0]
//
// The package comes from tests/node/node_modules (pinned by tests/node/package-lock.json;
// `make node-deps` installs it), resolved relative to this file, not to the working directory.
// SIGUSR2 runs a full garbage collection when node was started with --expose-gc (compare.sh
// does so before reading VmRSS, so that the memory figure is live objects, not garbage) and
// prints `gc done`. SIGTERM/SIGINT close the server and exit 0.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgDir = path.resolve(here, '../tests/node/node_modules/bittorrent-tracker');
// server.js, not index.js: index.js also loads the client, whose WebRTC dependency needs a
// native binary the server never uses.
const entry = path.join(pkgDir, 'server.js');
if (!existsSync(entry)) {
  console.error(`reference-tracker: ${entry} not found; run \`make node-deps\` (npm ci in tests/node) first`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port', '0'));

const { default: Server } = await import(pathToFileURL(entry).href);
const { version } = JSON.parse(
  (await import('node:fs')).readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));

const server = new Server({ http: false, udp: false, ws: true, stats: false });
let warnings = 0;
// Client mistakes are 'warning's; without a listener an 'error' would throw.
server.on('warning', () => { warnings++; });
server.on('error', (err) => { console.error(`reference-tracker: error: ${err.message}`); });

server.listen(port, host, () => {
  const addr = server.ws.address();
  console.log(`listening port=${addr.port} pid=${process.pid} bittorrent-tracker=${version}`);
});

process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') globalThis.gc();
  console.log(`gc done warnings=${warnings}`);
});

let closing = false;
const stop = () => {
  if (closing) process.exit(1);
  closing = true;
  // Open sockets would keep close() waiting; the benchmark is over, so just leave.
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
