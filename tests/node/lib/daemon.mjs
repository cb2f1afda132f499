// Starts the real swarmcoord binary on loopback with port 0 and waits for its "listening"
// line; stop() sends a signal and waits for the exit. Every test suite uses this.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

export const binary = process.env.SWARMCOORD_BIN ??
  path.resolve(import.meta.dirname, '../../../build/swarmcoord');

// The daemon reads every SWARMCOORD_* variable as a config key and refuses unknown ones, so
// the test harness's own variables (SWARMCOORD_BIN, …) are kept from it; `extra` adds the
// ones a test means.
export function daemonEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWARMCOORD_')));
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export class Daemon {
  constructor(proc) {
    this.proc = proc;
    this.log = '';
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  // args: extra command-line arguments, e.g. ['--set', 'server.threads=1']. wrapper: a command
  // that execs the binary (given as its last arguments), e.g. ['prlimit', '--nofile=64:96', '--'];
  // the process is then the binary itself once the wrapper has exec'd.
  static async start(args = [], { env = {}, timeoutMs = 10000, wrapper = [] } = {}) {
    const [command, ...prefix] = [...wrapper, binary];
    const proc = spawn(command, [
      ...prefix,
      '--set', 'server.listen=127.0.0.1:0',
      '--set', 'admin.listen=127.0.0.1:0',
      ...args,
    ], { env: daemonEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(proc);
    const spawnFailed = new Promise((_, reject) => proc.on('error', (err) => reject(new Error(`cannot run ${binary}: ${err.message}`))));
    const listening = new Promise((resolve, reject) => {
      const onData = (chunk) => {
        d.log += chunk.toString();
        const m = d.log.match(/listening public=(\S+) admin=(\S+)/);
        if (m) resolve(m);
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      d.exited.then(({ code }) => reject(new Error(`swarmcoord exited with ${code} before listening:\n${d.log}`)));
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`swarmcoord did not report listening:\n${d.log}`)), timeoutMs);
    });
    const m = await Promise.race([listening, timeout, spawnFailed]).finally(() => clearTimeout(timer));
    d.public = m[1];
    d.admin = m[2];
    d.wsUrl = `ws://${m[1]}`;
    return d;
  }

  // Waits until the log contains a line matching re.
  async waitForLog(re, timeoutMs = 10000) {
    if (re.test(this.log)) return;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`log never matched ${re}:\n${this.log}`)), timeoutMs);
      const check = () => { if (re.test(this.log)) { clearTimeout(timer); resolve(); } };
      this.proc.stdout.on('data', check);
      this.proc.stderr.on('data', check);
    });
  }

  async metrics() {
    const text = await (await fetch(`http://${this.admin}/metrics`)).text();
    return text;
  }

  // The value of one sample, e.g. metric('swarmcoord_offers_relayed_total') or with labels
  // metric('swarmcoord_peers', { protocol: 'webtorrent', role: 'seeder' }).
  async metric(name, labels = {}) {
    const text = await this.metrics();
    for (const line of text.split('\n')) {
      const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/);
      if (!m || m[1] !== name) continue;
      const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
    }
    return undefined;
  }

  async stats() {
    return (await fetch(`http://${this.admin}/stats`)).json();
  }

  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }
}
