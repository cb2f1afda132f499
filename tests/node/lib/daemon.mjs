// Starts the real swarmcoord binary on loopback with port 0 and waits for its "listening"
// line; stop() sends a signal, waits for the exit and fails the test that stops a daemon which
// did not end well (a crash, a sanitizer report, an unexpected exit status). Every test suite
// uses this.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
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

// The first line of a sanitizer's report (a build with SWARMCOORD_SANITIZE): AddressSanitizer
// (LeakSanitizer at exit) starts it with "==pid==ERROR: AddressSanitizer: …",
// UndefinedBehaviorSanitizer with "file:line:col: runtime error: …". Anchored at the start of a
// line: the daemon's own log lines may quote a client's words, never at their start.
const SANITIZER_REPORT = /^(?:==\d+==ERROR: \w+Sanitizer\b|\S+: runtime error: )/m;

// The report in a process's output, from its first line on (at most 20000 characters), or null.
export function sanitizerReport(output) {
  const m = SANITIZER_REPORT.exec(output);
  return m ? output.slice(m.index, m.index + 20000) : null;
}

// What is wrong with the way a swarmcoord process ended, or null: a sanitizer report in its
// output, a death by a signal nobody sent it (a crash, or SIGABRT: the sanitize build aborts on
// its first finding), or an exit status other than 0 unless allowNonZeroExit (the caller
// judges the status itself).
export function exitProblem({ code, signal }, output, { signalsSent = new Set(), allowNonZeroExit = false } = {}) {
  const report = sanitizerReport(output);
  if (report) return `a sanitizer report:\n${report}`;
  if (signal !== null && !signalsSent.has(signal)) return `killed by ${signal}, which it was not sent`;
  if (signal === null && code !== 0 && !allowNonZeroExit) return `exit status ${code}`;
  return null;
}

const signalName = (signal) =>
  typeof signal === 'number' ? Object.keys(os.constants.signals).find((k) => os.constants.signals[k] === signal) : signal;

export class Daemon {
  constructor(proc) {
    this.proc = proc;
    this.log = '';
    // Suites signal the process themselves too (d.proc.kill) to test a drain or a crash of the
    // coordinator; every signal delivered is recorded so that stop() can tell a death the test
    // caused from one the daemon came to by itself.
    this.signalsSent = new Set();
    const append = (chunk) => { this.log += chunk.toString(); };
    proc.stdout.on('data', append);
    proc.stderr.on('data', append);
    const kill = proc.kill.bind(proc);
    proc.kill = (signal = 'SIGTERM') => {
      const delivered = kill(signal);
      if (delivered) this.signalsSent.add(signalName(signal));
      return delivered;
    };
    // 'close', not 'exit': the output is read to its end first, so a report printed at exit
    // (LeakSanitizer's) is in the log by the time the exit is seen.
    this.exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
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
      const onData = () => {  // after the constructor's listener: d.log has the chunk
        const m = d.log.match(/listening public=(\S+) admin=(\S+)/);
        if (m) resolve(m);
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      d.exited.then(({ code, signal }) => reject(new Error(`swarmcoord exited (${code ?? signal}) before listening:\n${d.log}`)));
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        proc.kill('SIGKILL');  // a daemon left running would keep the suite from ending
        reject(new Error(`swarmcoord did not report listening within ${timeoutMs} ms:\n${d.log}`));
      }, timeoutMs);
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

  // Sends signal unless the daemon has exited already, waits for the exit and resolves
  // { code, signal }. Rejects when the daemon did not end well (see exitProblem), so that the
  // test or hook stopping it fails with the reason and the log. A test that makes the daemon
  // exit non-zero on purpose passes allowNonZeroExit.
  async stop(signal = 'SIGTERM', { allowNonZeroExit = false } = {}) {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    const status = await this.exited;
    const problem = exitProblem(status, this.log, { signalsSent: this.signalsSent, allowNonZeroExit });
    if (!problem) return status;
    // A sanitizer report is the end of the log already.
    const log = sanitizerReport(this.log) ? '' : `\n--- the end of its log ---\n${this.log.slice(-20000)}`;
    throw new Error(`swarmcoord did not end well: ${problem}${log}`);
  }
}
