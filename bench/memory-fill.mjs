#!/usr/bin/env node
// Fill-and-leave: how much memory swarms take, and how much of it the daemon gives back once
// they are gone. Starts build/swarmcoord on 127.0.0.1 (port 0), opens many native connections
// that each join many large resources of their own (one swarm per join), closes them all,
// and reads the daemon's VmRSS from /proc/PID/status: before, at the peak, and after the
// swarms are gone (at once, and after --settle seconds, so that periodic housekeeping ran).
// --hold S: also reads it S seconds after the fill, before anyone leaves (an allocator that
// returns freed pages with a delay holds transient garbage at the peak).
// Repeats the cycle --cycles times in the same daemon (memory reused or lost between cycles).
// Four probe connections relay a signal to themselves every 10 ms throughout: their round
// trips (p99, max) while filling and while leaving show stalls (e.g. a long malloc_trim).
//
//   node bench/memory-fill.mjs [--connections 2500] [--joins 16] [--size 1073741824]
//       [--block-size 65536] [--threads 2] [--cycles 2] [--settle 12] [--hold 0] [--sources 32]
//       [--protocol native|webtorrent] [--preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2]
//       [--daemon build/swarmcoord] [--label NAME] [--raise-caps 1] [--show-log REGEX]
//       [--parallel 200] [--set key=value ...]
//
// --protocol webtorrent announces --joins fresh info_hashes per connection instead. Connections
// come from 127.0.0.1 .. 127.0.0.<sources>, --parallel of them being opened at a time.
// The swarm caps are raised by default so that the fill is not refused (--set overrides;
// --raise-caps 0 leaves them alone).
// Prints one line per cycle, then a JSON summary line starting with `result `.
// `ws` comes from tests/node/node_modules (`make node-deps`).
import { spawn } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(path.join(root, 'tests/node/package.json'));
const WebSocket = require('ws');

// ---------------------------------------------------------------- options
const args = process.argv.slice(2);
const sets = [];
const opt = {
  connections: 2500, joins: 16, size: 1024 * 1024 * 1024, 'block-size': 65536, threads: 2, cycles: 2,
  settle: 12, sources: 32, protocol: 'native', preload: '', daemon: path.join(root, 'build/swarmcoord'),
  label: '', parallel: 200, 'raise-caps': 1, 'show-log': '', hold: 0,
};
for (let i = 0; i < args.length; i += 2) {
  const name = args[i].replace(/^--/, '');
  if (name === 'set') { sets.push(args[i + 1]); continue; }
  if (!(name in opt) || i + 1 >= args.length) {
    console.error(`memory-fill: unknown or incomplete option ${args[i]}`);
    process.exit(2);
  }
  opt[name] = typeof opt[name] === 'number' ? Number(args[i + 1]) : args[i + 1];
}
if (!existsSync(opt.daemon)) {
  console.error(`memory-fill: ${opt.daemon} not built`);
  process.exit(2);
}
const label = opt.label || (opt.preload ? path.basename(opt.preload) : 'glibc');

// ---------------------------------------------------------------- the daemon
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWARMCOORD_')));
if (opt.preload) env.LD_PRELOAD = opt.preload;
const daemonArgs = [
  '--set', 'server.listen=127.0.0.1:0', '--set', 'admin.listen=127.0.0.1:0',
  '--set', `server.threads=${opt.threads}`,
  ...(opt['raise-caps'] ? ['--set', 'limits.max_swarms=10000000', '--set', 'tracker.max_swarms=10000000',
    '--set', 'limits.max_swarm_memory_mb=1000000'] : []),
  '--set', `limits.max_swarms_per_connection=${Math.max(16, opt.joins)}`,
  '--set', `tracker.max_peers_per_connection=${Math.max(100, opt.joins)}`,
  '--set', 'server.max_messages_per_second=100000',
  ...sets.flatMap((s) => ['--set', s]),
];
const proc = spawn(opt.daemon, daemonArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
let log = '';
const listening = new Promise((resolve, reject) => {
  const onData = (chunk) => {
    log += chunk.toString();
    const m = log.match(/listening public=(\S+) admin=(\S+)/);
    if (m) resolve({ pub: m[1], admin: m[2] });
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  proc.on('exit', (code) => reject(new Error(`swarmcoord exited (${code}):\n${log}`)));
  setTimeout(() => reject(new Error(`swarmcoord did not report listening:\n${log}`)), 10000).unref();
});
const stop = () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); };
process.on('exit', stop);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { stop(); process.exit(1); });

function rssKiB() {
  const m = readFileSync(`/proc/${proc.pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]);
}

async function metric(admin, name, labels) {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').pop());
  }
  return undefined;
}

// ---------------------------------------------------------------- clients
// Resolves once every join of the connection was answered (joined/announce reply, or error).
function fillOne(url, index, cycle) {
  const localAddress = `127.0.0.${1 + (index % opt.sources)}`;
  const native = opt.protocol === 'native';
  const ws = new WebSocket(native ? `${url}/v1/ws` : `${url}/announce`, { perMessageDeflate: false, localAddress });
  let answered = 0;
  let refused = 0;
  const done = new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('close', () => reject(new Error('closed during the fill')));
    ws.on('message', (data) => {
      const j = JSON.parse(data.toString());
      if (native && j.type === 'welcome') {
        for (let k = 0; k < opt.joins; k += 1) {
          ws.send(JSON.stringify({
            type: 'join', swarm: `https://cdn.example.org/fill/${cycle}/${index}/${k}.bin`,
            size: opt.size, block_size: opt['block-size'],
          }));
        }
        return;
      }
      const reply = native ? j.type === 'joined' || j.type === 'error' : j.action === 'announce';
      if (!reply) return;
      if (j.type === 'error' || j['failure reason']) refused += 1;
      if (++answered === opt.joins) resolve({ ws, refused });
    });
    ws.on('open', () => {
      if (native) return ws.send(JSON.stringify({ type: 'hello', v: 1 }));
      for (let k = 0; k < opt.joins; k += 1) {
        ws.send(JSON.stringify({
          action: 'announce', event: 'started', numwant: 0, uploaded: 0, downloaded: 0, left: 1,
          info_hash: crypto.randomBytes(20).toString('latin1'), peer_id: crypto.randomBytes(20).toString('latin1'),
        }));
      }
    });
  });
  return done;
}

async function fill(url, cycle) {
  const open = [];
  let refused = 0;
  for (let i = 0; i < opt.connections; i += opt.parallel) {
    const batch = [];
    for (let k = i; k < Math.min(opt.connections, i + opt.parallel); k += 1) batch.push(fillOne(url, k, cycle));
    for (const r of await Promise.all(batch)) {
      open.push(r.ws);
      refused += r.refused;
    }
  }
  return { open, refused };
}

async function waitFor(pred, what, ms = 60000) {
  const until = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------- responsiveness probes
// Native connections that each relay a signal to themselves, one at a time, every 10 ms, in a
// small swarm of their own (so through the swarm's owner and back home): the round trips show
// whether a worker stalls (while memory is given back, say). Samples go to the current phase.
const PROBES = 4;
let phase = 'idle';
const rtts = { fill: [], leave: [] };
async function startProbe(url, n) {
  const ws = new WebSocket(`${url}/v1/ws`, { perMessageDeflate: false, localAddress: '127.0.0.254' });
  const swarm = `https://probe.example.org/${n}.bin`;
  let me;
  let sentAt = 0;
  const ping = () => {
    sentAt = performance.now();
    ws.send(JSON.stringify({ type: 'signal', swarm, to: me, data: { type: 'probe' } }));
  };
  await new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', v: 1 })));
    ws.on('message', (data) => {
      const j = JSON.parse(data.toString());
      if (j.type === 'welcome') {
        me = j.peer_id;
        ws.send(JSON.stringify({ type: 'join', swarm, size: 1024, block_size: 1024, have: 'all' }));
      } else if (j.type === 'joined') {
        resolve();
        ping();
      } else if (j.type === 'signal') {
        rtts[phase]?.push(performance.now() - sentAt);
        setTimeout(ping, 10);
      }
    });
  });
  return ws;
}
const summary = (xs) => {
  if (xs.length === 0) return 'no samples';
  const sorted = [...xs].sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))];
  return `p99 ${p99.toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms (${xs.length})`;
};

// ---------------------------------------------------------------- the cycles
const { pub, admin } = await listening;
const url = `ws://${pub}`;
const protoLabel = opt.protocol === 'native' ? 'native' : 'webtorrent';
const probes = [];
for (let n = 0; n < PROBES; n += 1) probes.push(await startProbe(url, n));
const baseSwarms = protoLabel === 'native' ? PROBES : 0;
await sleep(500);
const before = rssKiB();
const cycles = [];
for (let cycle = 1; cycle <= opt.cycles; cycle += 1) {
  rtts.fill = [];
  rtts.leave = [];
  phase = 'fill';
  const start = Date.now();
  const { open, refused } = await fill(url, cycle);
  const fillS = (Date.now() - start) / 1000;
  const swarms = (await metric(admin, 'swarmcoord_swarms', { protocol: protoLabel })) - baseSwarms;
  const peak = rssKiB();
  let held;
  if (opt.hold > 0) {
    await sleep(opt.hold * 1000);
    held = rssKiB();
  }
  phase = 'leave';
  await Promise.all(open.map((ws) => new Promise((r) => { ws.removeAllListeners('close'); ws.on('close', r); ws.close(); })));
  await waitFor(async () => (await metric(admin, 'swarmcoord_swarms', { protocol: protoLabel })) === baseSwarms, 'the swarms to go');
  const gone = rssKiB();
  await sleep(opt.settle * 1000);
  const after = rssKiB();
  phase = 'idle';
  const row = { cycle, swarms, refused, fill_s: fillS, before_kib: before, peak_kib: peak, held_kib: held, gone_kib: gone, after_kib: after,
                probe_fill: summary(rtts.fill), probe_leave: summary(rtts.leave) };
  cycles.push(row);
  console.log(`${label} cycle ${cycle}: ${swarms} swarms in ${fillS.toFixed(1)} s (${refused} refused); RSS KiB ` +
              `before ${before}, peak ${peak} (+${peak - before}, ${((peak - before) * 1024 / Math.max(1, swarms)).toFixed(0)} B/swarm), ` +
              (held === undefined ? '' : `${opt.hold} s later ${held} (${((held - before) * 1024 / Math.max(1, swarms)).toFixed(0)} B/swarm), `) +
              `all gone ${gone}, ${opt.settle} s later ${after}; probe round trips: filling ${row.probe_fill}; ` +
              `leaving and after ${row.probe_leave}`);
}
for (const ws of probes) ws.terminate();
if (opt['show-log']) for (const line of log.split('\n')) if (new RegExp(opt['show-log']).test(line)) console.log(`log: ${line}`);
console.log(`result ${JSON.stringify({ label, protocol: opt.protocol, connections: opt.connections, joins: opt.joins, size: opt.size, block_size: opt['block-size'], threads: opt.threads, cycles })}`);
stop();
process.exit(0);
