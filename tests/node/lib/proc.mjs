// Process and metrics helpers for the integration suites: run the binary once and collect its
// output, read every metric sample of one /metrics scrape, poll a condition with a bound.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binary, daemonEnv, exitProblem } from './daemon.mjs';

// Runs the binary to completion; resolves { code, signal, stdout, stderr }, whatever the exit
// status (the caller judges it), but rejects on a crash or a sanitizer report (see
// exitProblem). The environment is the test's minus its SWARMCOORD_* variables (see
// daemonEnv), plus env.
export function runBinary(args, { env = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, args, { env: daemonEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c) => { stdout += c; });
    proc.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      // 'exit' can come before the pipes are drained.
      let pending = 2;
      const done = () => {
        if (--pending) return;
        const problem = exitProblem({ code, signal }, stdout + stderr, { allowNonZeroExit: true });
        if (problem) reject(new Error(`${args.join(' ')} did not end well: ${problem}`));
        else resolve({ code, signal, stdout, stderr });
      };
      if (proc.stdout.readableEnded) done(); else proc.stdout.once('end', done);
      if (proc.stderr.readableEnded) done(); else proc.stderr.once('end', done);
    });
  });
}

// One /metrics scrape: get(name, labels) returns the sample's value (labels must match the
// given subset), families is the set of "# TYPE" names, text the raw exposition.
export async function scrape(d) {
  const res = await fetch(`http://${d.admin}/metrics`);
  const text = await res.text();
  const samples = [];
  const families = new Set();
  for (const line of text.split('\n')) {
    const t = line.match(/^# TYPE (\S+) (\S+)/);
    if (t) families.add(t[1]);
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  const get = (name, want = {}) => {
    const s = samples.find((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v));
    return s?.value;
  };
  return { status: res.status, text, samples, families, get };
}

// Polls check() (sync or async) every intervalMs until it returns a truthy value, at most
// timeoutMs; returns that value or throws naming `what`. For state that changes
// asynchronously inside the daemon and has no event a client could wait on.
export async function until(check, { timeoutMs = 5000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// The manifest `swarmcoord manifest` writes for these bytes, parsed.
export async function manifestOf(bytes, blockSize) {
  const file = path.join(os.tmpdir(), `swarmcoord-mf-${randomUUID()}`);
  fs.writeFileSync(file, bytes);
  try {
    const r = await runBinary(['manifest', file, '--block-size', String(blockSize)]);
    if (r.code !== 0) throw new Error(`swarmcoord manifest exited with ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  } finally {
    fs.rmSync(file, { force: true });
  }
}
