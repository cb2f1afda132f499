// A real coturn `turnserver` on loopback for the ICE suite, and a runner for its test client
// `turnutils_uclient`. Coturn is Debian's `coturn` package (deploy/install-deps.sh test).
//
// Turnserver.start() picks a free port (bound and released by node, both TCP and UDP), runs
// turnserver with no config file (-n), everything it writes (pid file, SQLite user db) in a
// fresh temp dir, and waits for its log to show the UDP listener; when the port was taken in
// between (its log says "Cannot bind"), it is stopped and started again on another port.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { withTimeout } from './native-peer.mjs';

// A port free on 127.0.0.1 for both TCP and UDP at the time of the call.
export async function freePort() {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = net.createServer();
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address();
    const udp = dgram.createSocket('udp4');
    const udpOk = await new Promise((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise((r) => udp.close(r)).catch(() => {});
    await new Promise((r) => server.close(r));
    if (udpOk) return port;
  }
  throw new Error('no port free for both TCP and UDP on 127.0.0.1');
}

export class Turnserver {
  constructor(proc, port, dir, args) {
    this.proc = proc;
    this.port = port;
    this.dir = dir;
    this.args = args;
    this.log = '';
    this.listeners = new Set();
    this.spawnError = null;
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => resolve({ code, signal }));
      // A failed spawn (no turnserver installed) may never emit 'exit'.
      proc.on('error', (e) => { this.spawnError = e; resolve({ code: null, signal: null, error: e }); });
    });
    const onData = (chunk) => {
      this.log += chunk.toString();
      for (const f of this.listeners) f();
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
  }

  get commandLine() { return ['turnserver', ...this.args].join(' '); }

  // extraArgs: the authentication options, e.g. ['--use-auth-secret', '--static-auth-secret=S'].
  // firstPort: the port of the first attempt (default: a free one).
  static async start(extraArgs, { realm = 'swarmcoord.test', attempts = 5, timeoutMs = 10000, firstPort } = {}) {
    let lastError;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const port = attempt === 0 && firstPort ? firstPort : await freePort();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-coturn-'));
      const args = [
        '-n',  // no configuration file: nothing from /etc/turnserver.conf
        '-v',  // the listener and per-session lines the tests wait for
        `--listening-ip=127.0.0.1`, `--relay-ip=127.0.0.1`, `--listening-port=${port}`,
        `--realm=${realm}`, ...extraArgs,
        '--no-tls', '--no-dtls', '--no-tcp', '--no-cli', '--no-rfc5780',
        // turnutils_uclient -y relays between two allocations, both on 127.0.0.1.
        '--allow-loopback-peers',
        '--log-file=stdout', '--simple-log',
        `--pidfile=${path.join(dir, 'turnserver.pid')}`, `--userdb=${path.join(dir, 'turndb')}`,
      ];
      const proc = spawn('turnserver', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      const t = new Turnserver(proc, port, dir, args);
      try {
        const outcome = await withTimeout(t.#ready(), timeoutMs, 'turnserver readiness');
        if (outcome === 'ready') return t;
        lastError = new Error(`turnserver could not bind port ${port}:\n${t.log}`);
      } catch (e) {
        lastError = new Error(`${e.message}\n${t.log}`);
      }
      await t.stop();
      if (t.spawnError) {
        throw new Error(`cannot run turnserver (${t.spawnError.message}); it comes with Debian's coturn package ` +
                        '(deploy/install-deps.sh test)');
      }
    }
    throw lastError;
  }

  // 'ready' once the UDP listener is open and the server threads are up; 'collision' when a
  // bind failed; rejects when the process exits first.
  #ready() {
    const ready = new RegExp(`UDP listener opened on: 127\\.0\\.0\\.1:${this.port}\\b[\\s\\S]*Total General servers`);
    return new Promise((resolve, reject) => {
      const check = () => {
        if (/Cannot bind|Address already in use/.test(this.log)) resolve('collision');
        else if (ready.test(this.log)) resolve('ready');
        else return;
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
      this.exited.then(({ code, signal, error }) =>
        reject(new Error(error ? `turnserver did not start: ${error.message}` : `turnserver exited (${code ?? signal}) before it was ready`)));
    });
  }

  // Resolves once the log matches re (the server logs each request's outcome per user).
  waitForLog(re, timeoutMs = 5000) {
    let check;
    return withTimeout(new Promise((resolve) => {
      check = () => {
        const m = this.log.match(re);
        if (m) resolve(m);
      };
      this.listeners.add(check);
      check();
    }), timeoutMs, `turnserver log matching ${re}`).finally(() => this.listeners.delete(check));
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      try {
        await withTimeout(this.exited, 5000, 'turnserver exit after SIGTERM');
      } catch {
        this.proc.kill('SIGKILL');
        await this.exited;
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Runs turnutils_uclient against 127.0.0.1:port: one client pair (-y: the two allocations
// send to each other through the relay), no RTCP pair (-c), one 100-byte message (-n 1).
// Resolves { code, signal, output, args }; the run is killed after timeoutMs.
export function runUclient({ port, username, credential, timeoutMs = 20000 }) {
  const args = ['-v', '-y', '-c', '-n', '1', '-m', '1', '-u', username, '-w', credential, '-p', String(port), '127.0.0.1'];
  return new Promise((resolve, reject) => {
    const proc = spawn('turnutils_uclient', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (c) => { output += c; });
    proc.stderr.on('data', (c) => { output += c; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (e) => { clearTimeout(timer); reject(e); });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, args });
    });
  });
}

// What a uclient run shows: the relay address it was given and the messages it sent and got
// back through the relay.
export function uclientSummary(output) {
  const relay = output.match(/Received relay addr: (\S+)/);
  const totals = output.match(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/);
  return {
    relayAddr: relay?.[1],
    sent: totals ? Number(totals[1]) : undefined,
    received: totals ? Number(totals[2]) : undefined,
    allocationFailed: /Cannot complete Allocation/.test(output),
  };
}
