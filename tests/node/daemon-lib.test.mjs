// The verdict of lib/daemon.mjs on the way a daemon ended, against stand-in processes (node
// scripts) that end each way: a suite must fail when its daemon crashed, printed a sanitizer
// report or exited non-zero, and must not when the test itself killed it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { Daemon, exitProblem, sanitizerReport } from './lib/daemon.mjs';

// A stand-in daemon: runs script, then waits to be signalled unless the script exits.
function standIn(script) {
  const proc = spawn(process.execPath, ['-e', `${script}; setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Daemon(proc);
}

const ASAN = `=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010 at pc 0x5555 bp 0x7fff sp 0x7fff
READ of size 4 at 0x602000000010 thread T0
    #0 0x5555 in swarmcoord::net::runtime::~runtime() server/net/runtime.cpp:80
SUMMARY: AddressSanitizer: heap-use-after-free server/net/runtime.cpp:80 in swarmcoord::net::runtime::~runtime()
`;
const LEAK = `
=================================================================
==4242==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 64 byte(s) in 1 object(s) allocated from:
    #0 0x7f00 in operator new(unsigned long)
SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).
`;
const UBSAN = `server/swarm/mesh.cpp:120:17: runtime error: signed integer overflow: 2147483647 + 1 cannot be represented in type 'int'
    #0 0x5555 in swarmcoord::swarm::mesh::plan() server/swarm/mesh.cpp:120
SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior server/swarm/mesh.cpp:120:17
`;

describe('sanitizer reports', () => {
  it('finds ASan, LSan and UBSan reports, from their first line on', () => {
    for (const report of [ASAN, LEAK, UBSAN]) {
      const found = sanitizerReport(`2026-01-01T00:00:00.000 info drained; exiting\n${report}`);
      assert.ok(found, report);
      assert.ok(!found.includes('drained'), 'starts at the report');
      assert.match(found, /SUMMARY: /);
    }
  });

  it('takes no log line quoting a client for a report', () => {
    for (const line of [
      '2026-01-01T00:00:00.000 info protocol error from 127.0.0.1:5000: bad JSON "x:1:2: runtime error: y"',
      '2026-01-01T00:00:00.000 warn unknown action "==1==ERROR: AddressSanitizer: SEGV"',
      '{"time":"2026-01-01T00:00:00.000000Z","level":"warn","thread":7,"msg":"unknown action \\"x:1:2: runtime error: y\\""}',
    ]) assert.equal(sanitizerReport(`${line}\n`), null, line);
  });

  it('judges exits: clean, sent signals, crashes, reports, exit statuses', () => {
    const none = new Set();
    assert.equal(exitProblem({ code: 0, signal: null }, 'drained; exiting'), null);
    assert.equal(exitProblem({ code: null, signal: 'SIGKILL' }, '', { signalsSent: new Set(['SIGKILL']) }), null);
    assert.match(exitProblem({ code: null, signal: 'SIGABRT' }, '', { signalsSent: none }), /SIGABRT/);
    assert.match(exitProblem({ code: null, signal: 'SIGSEGV' }, '', { signalsSent: new Set(['SIGTERM']) }), /SIGSEGV/);
    assert.match(exitProblem({ code: 1, signal: null }, ''), /exit status 1/);
    assert.equal(exitProblem({ code: 1, signal: null }, '', { allowNonZeroExit: true }), null);
    assert.match(exitProblem({ code: 0, signal: null }, LEAK), /LeakSanitizer/);
    assert.match(exitProblem({ code: 2, signal: null }, UBSAN, { allowNonZeroExit: true }), /runtime error/);
  });
});

describe('Daemon.stop', () => {
  it('resolves when the daemon exits 0 on SIGTERM', async () => {
    const d = standIn(`process.on('SIGTERM', () => { console.error('drained; exiting'); process.exit(0); }); console.error('up')`);
    await d.waitForLog(/up/);
    assert.deepEqual(await d.stop(), { code: 0, signal: null });
  });

  it('resolves when the test killed the daemon itself, through stop or through its process', async () => {
    const a = standIn('console.error("up")');
    await a.waitForLog(/up/);
    assert.deepEqual(await a.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
    const b = standIn('console.error("up")');
    await b.waitForLog(/up/);
    b.proc.kill('SIGKILL');
    await b.exited;
    assert.deepEqual(await b.stop(), { code: null, signal: 'SIGKILL' });
  });

  it('rejects a daemon that died of a signal it was not sent', async () => {
    const d = standIn(`process.kill(process.pid, 'SIGABRT')`);
    await d.exited;
    await assert.rejects(d.stop(), /killed by SIGABRT/);
  });

  it('rejects a non-zero exit unless the test allows it', async () => {
    const d = standIn(`process.on('SIGTERM', () => process.exit(1)); console.error('up')`);
    await d.waitForLog(/up/);
    await assert.rejects(d.stop(), /exit status 1/);
    assert.deepEqual(await d.stop('SIGTERM', { allowNonZeroExit: true }), { code: 1, signal: null });
  });

  it('rejects a daemon whose last words are a leak report, though it exits 0', async () => {
    // Written as the process ends, as LeakSanitizer does; 'close' waits for it.
    const d = standIn(`process.on('SIGTERM', () => { process.stderr.write(${JSON.stringify(LEAK)}, () => process.exit(0)); }); console.error('up')`);
    await d.waitForLog(/up/);
    await assert.rejects(d.stop(), /LeakSanitizer: detected memory leaks/);
  });
});
