// Hostile native-protocol (ws://HOST/v1/ws) clients against the real daemon. Every error code of
// the wire contract is provoked over a real socket: before hello the offender gets the error and
// a 1008 close; after hello it gets the error and keeps its connection, which still works.
// After each abuse a well-behaved pair in a fresh swarm can join, get each other as neighbours
// and relay a signal, and the daemon answers /healthz on its admin port.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { Daemon } from './lib/daemon.mjs';
import { scrape, until } from './lib/proc.mjs';
import { rawWebSocket, withTimeout } from './lib/ws-client.mjs';
import { NativeClient, bitfield, freshSwarm, isError, isType, settle } from './lib/native-client.mjs';

const MAX_SWARMS = 3;
const SIGNAL_MAX = 1024;
const MAX_MESSAGE = 32 * 1024;
const MAX_ERRORS = 20;
const MAX_BLOCKS = 4096;
// "Nothing (more) arrives" can only be observed for a while; 300 ms is far beyond loopback
// latency for a message that was sent.
const QUIET_MS = 300;

let d;
let metrics0;
const open = [];

before(async () => {
  d = await Daemon.start([
    '--set', 'server.threads=2',
    '--set', 'mesh.replan_ms=100',
    '--set', `limits.max_swarms_per_connection=${MAX_SWARMS}`,
    '--set', `limits.max_blocks=${MAX_BLOCKS}`,
    '--set', `signal.max_bytes=${SIGNAL_MAX}`,
    '--set', `server.max_message_bytes=${MAX_MESSAGE}`,
    '--set', `server.max_protocol_errors=${MAX_ERRORS}`,
  ]);
  metrics0 = await scrape(d);
});

// After every case, whatever it did: a well-behaved pair in a fresh swarm is served and the
// daemon answers /healthz on its admin port.
afterEach(async () => {
  try {
    await assertServed();
  } finally {
    await Promise.all(open.splice(0).map((c) => c.close()));
  }
});

after(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  if (!d) return;
  const { code, signal } = await d.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `a clean exit after all that:\n${d.log}`);
});

let addr = 0;
// Each client from its own loopback address.
const nextAddress = () => { addr += 1; return `127.3.${(addr >> 8) & 255}.${addr & 255}`; };

async function raw() {
  const c = await NativeClient.open(d, { localAddress: nextAddress() });
  open.push(c);
  return c;
}

async function hello(fields = {}) {
  const c = await NativeClient.connect(d, { localAddress: nextAddress(), ...fields });
  open.push(c);
  return c;
}

// A client that said hello and joined a fresh swarm of `blocks` blocks.
async function member({ blocks = 10, have } = {}) {
  const c = await hello();
  c.url = freshSwarm('hostile');
  c.opts = { size: blocks * 1024, block_size: 1024 };
  c.key = (await c.join(c.url, { ...c.opts, have })).joined.swarm;
  return c;
}

// The connection works: a signal to oneself is answered by the swarm's owner (the sender is a
// member of c.key, but nobody is its own neighbour), and nothing else was waiting.
async function assertAlive(c, why) {
  assert.ok(c.isOpen, `closed (${JSON.stringify(c.closeInfo)}) ${why}`);
  await c.send({ type: 'signal', swarm: c.url, to: c.peerId, data: { type: 'ping' } });
  const got = await c.next(isError(), `the reply to a signal to itself ${why}`);
  assert.deepEqual([got.code, got.ref], ['not_linked', 'signal'], `${why}: ${JSON.stringify(got)}`);
  if (c.key) assert.equal(got.swarm, c.key);
}

// The error reply, or the close, whichever comes first.
async function errorOrClose(c, what) {
  const reply = c.wc.take(isError());
  try {
    return await withTimeout(Promise.race([
      reply.promise.then((msg) => ({ kind: 'error', msg }), () => c.closed.then((info) => ({ kind: 'closed', info }))),
      c.closed.then((info) => ({ kind: 'closed', info })),
    ]), 5000, `error reply or close after ${what}`);
  } finally {
    reply.cancel();
  }
}

const show = (m) => (typeof m === 'string' ? m : JSON.stringify(m)).slice(0, 100);

// Sends each [message, code, ref] and expects exactly that error back (ref absent when
// undefined), the connection staying open. Runs on c; proves c alive at the end.
async function expectErrors(c, cases) {
  for (const [msg, code, ref] of cases) {
    await c.send(msg);
    const r = await errorOrClose(c, show(msg));
    assert.equal(r.kind, 'error', `${show(msg)} closed the connection: ${JSON.stringify(r.info)}`);
    assert.equal(r.msg.code, code, `${show(msg)} -> ${JSON.stringify(r.msg)}`);
    if (typeof ref === 'function') assert.ok(ref(r.msg.ref), `ref ${JSON.stringify(r.msg.ref)} of the reply to ${show(msg)}`);
    else assert.equal(r.msg.ref, ref, `ref of the reply to ${show(msg)}`);
    assert.equal(typeof r.msg.message, 'string');
    assert.ok(r.msg.message.length > 0);
  }
  await assertAlive(c, `after ${cases.length} errors`);
}

// A well-behaved pair in a fresh swarm is served, and the daemon is up.
async function assertServed() {
  assert.equal(d.proc.exitCode, null, `daemon exited:\n${d.log}`);
  assert.equal((await fetch(`http://${d.admin}/healthz`)).status, 200);
  const url = freshSwarm('good');
  const opts = { size: 4 * 1024, block_size: 1024 };
  const a = await hello();
  const { joined } = await a.join(url, { ...opts, have: 'all' });
  const b = await hello();
  const rb = await b.join(url, opts);
  assert.deepEqual(rb.neighbors.add.map((n) => n.peer_id), [a.peerId]);
  await a.neighbors(joined.swarm, (j) => j.add.some((n) => n.peer_id === b.peerId));
  await b.send({ type: 'signal', swarm: url, to: a.peerId, data: { type: 'offer', sdp: 'v=0' } });
  assert.deepEqual(await a.next(isType('signal')), { type: 'signal', swarm: joined.swarm, from: b.peerId, data: { type: 'offer', sdp: 'v=0' } });
  await a.send({ type: 'signal', swarm: url, to: b.peerId, data: { type: 'answer', sdp: 'v=0' } });
  assert.equal((await b.next(isType('signal'))).from, a.peerId);
  await a.close();
  await b.close();
}

const aJoin = (extra = {}) => ({ type: 'join', swarm: freshSwarm('j'), size: 10 * 1024, block_size: 1024, ...extra });

describe('before hello', () => {
  it('answers anything but a valid hello with an error, then closes with 1008', async () => {
    const url = freshSwarm('pre');
    const cases = [
      [aJoin(), 'hello_required', 'join'],
      [{ type: 'have', swarm: url, blocks: [1] }, 'hello_required', 'have'],
      [{ type: 'leave', swarm: url }, 'hello_required', 'leave'],
      [{ type: 'signal', swarm: url, to: '0123456789abcdef', data: {} }, 'hello_required', 'signal'],
      [{ type: 'report', swarm: url, http_bytes: 1, p2p_bytes: 1, uploaded_bytes: 1 }, 'hello_required', 'report'],
      ['{', 'bad_json', undefined],
      ['[]', 'invalid_field', undefined],
      [{ type: 'nope' }, 'unknown_type', 'nope'],
      [{ type: 'hello', v: 2 }, 'unsupported_version', 'hello'],
      [{ type: 'hello', v: 1, max_neighbors: 0 }, 'invalid_field', 'hello'],
      [{ type: 'hello', v: 1, native: 'yes' }, 'invalid_field', 'hello'],
      [{ type: 'join', swarm: 'ftp://example.org/x', size: 1, block_size: 1024 }, 'bad_url', 'join'],
      [crypto.randomBytes(300), 'bad_json', undefined],
    ];
    for (const [msg, code, ref] of cases) {
      const c = await raw();
      await c.send(msg);
      const err = await c.next(isError(), `error for ${show(msg)}`);
      assert.deepEqual([err.code, err.ref], [code, ref], show(msg));
      const { code: closeCode } = await c.waitClose();
      assert.equal(closeCode, 1008, `close after ${show(msg)}`);
      // The error and the close were all that came.
      assert.deepEqual(c.queue, []);
      assert.deepEqual(c.received.map((m) => m.type), ['error']);
    }
  });

  it('accepts hello without v and native, and a hello with every field', async () => {
    for (const fields of [{}, { native: true }, { native: false, max_neighbors: 1000 }]) {
      const c = await raw();
      await c.send({ type: 'hello', ...fields });
      const w = await c.next(isType('welcome'));
      assert.match(w.peer_id, /^[0-9a-f]{16}$/);
    }
  });
});

describe('after hello: every error code, the connection kept', () => {
  it('bad_json', async () => {
    const c = await member();
    await expectErrors(c, [
      ['{', 'bad_json'], ['nul', 'bad_json'], ['', 'bad_json'], ['{"type":"join",}', 'bad_json'],
      ['{"type":"hello"} trailing', 'bad_json'],
      [`{"type":"report","swarm":"${c.url}","http_bytes":1e400,"p2p_bytes":0,"uploaded_bytes":0}`, 'bad_json'],
      ['\u00ff\u00fe garbage', 'bad_json'],
    ]);
  });

  it('invalid_field: not an object, no string type, wrong field types and ranges', async () => {
    const c = await member();
    const u = c.url;
    const groups = [
      [
        ['[]', 'invalid_field'], ['"hello"', 'invalid_field'], ['42', 'invalid_field'], ['null', 'invalid_field'],
        ['{}', 'invalid_field'], [{ type: 5 }, 'invalid_field'], [{ type: null }, 'invalid_field'],
        [{ type: ['join'] }, 'invalid_field'],
        [{ type: 'hello', max_neighbors: 0 }, 'invalid_field', 'hello'],
        [{ type: 'hello', max_neighbors: 1001 }, 'invalid_field', 'hello'],
        [{ type: 'hello', max_neighbors: '3' }, 'invalid_field', 'hello'],
      ],
      [
        [aJoin({ size: '10240' }), 'invalid_field', 'join'],
        [aJoin({ size: -1 }), 'invalid_field', 'join'],
        [aJoin({ size: 0 }), 'invalid_field', 'join'],
        [aJoin({ size: 1.5 }), 'invalid_field', 'join'],
        [aJoin({ size: 2 ** 53 + 2 }), 'invalid_field', 'join'],
        [aJoin({ size: undefined }), 'invalid_field', 'join'],
        [aJoin({ block_size: 1023 }), 'invalid_field', 'join'],
        [aJoin({ block_size: 64 * 1024 * 1024 + 1 }), 'invalid_field', 'join'],
        [aJoin({ have: 5 }), 'invalid_field', 'join'],
        [aJoin({ have: true }), 'invalid_field', 'join'],
        [aJoin({ have: [0, 1] }), 'invalid_field', 'join'],
        [aJoin({ swarm: 42 }), 'invalid_field', 'join'],
        [aJoin({ swarm: undefined }), 'invalid_field', 'join'],
      ],
      [
        [{ type: 'have', swarm: u, blocks: '1' }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u, blocks: [-1] }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u, blocks: [1.5] }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u, blocks: ['1'] }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u, blocks: [2 ** 32] }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u, blocks: [null] }, 'invalid_field', 'have'],
        [{ type: 'have', swarm: u }, 'invalid_field', 'have'],
        [{ type: 'leave', swarm: { url: u } }, 'invalid_field', 'leave'],
      ],
      [
        [{ type: 'signal', swarm: u, to: 123, data: {} }, 'invalid_field', 'signal'],
        [{ type: 'signal', swarm: u, data: {} }, 'invalid_field', 'signal'],
        [{ type: 'signal', swarm: u, to: c.peerId }, 'invalid_field', 'signal'],
        [{ type: 'signal', swarm: u, to: c.peerId, data: null }, 'invalid_field', 'signal'],
        [{ type: 'report', swarm: u, http_bytes: -1, p2p_bytes: 0, uploaded_bytes: 0 }, 'invalid_field', 'report'],
        [{ type: 'report', swarm: u, http_bytes: 0, p2p_bytes: '1', uploaded_bytes: 0 }, 'invalid_field', 'report'],
        [{ type: 'report', swarm: u, http_bytes: 0, p2p_bytes: 0, uploaded_bytes: 2 ** 50 + 1 }, 'invalid_field', 'report'],
        [{ type: 'report', swarm: u, http_bytes: 0, p2p_bytes: 0 }, 'invalid_field', 'report'],
      ],
    ];
    // Valid messages between groups keep the count of errors in a row below the limit.
    for (const g of groups) await expectErrors(c, g);
  });

  it('unknown_type, with a reply that stays valid UTF-8 when the type is cut short', async () => {
    const c = await member();
    await expectErrors(c, [
      // ref names the unknown type; a long one is cut short at a character boundary.
      [{ type: 'nope' }, 'unknown_type', 'nope'], [{ type: 'HELLO' }, 'unknown_type', 'HELLO'],
      [{ type: 'Join' }, 'unknown_type', 'Join'], [{ type: '' }, 'unknown_type', undefined],
      [{ type: 'welcome' }, 'unknown_type', 'welcome'], [{ type: 'error' }, 'unknown_type', 'error'],
      [{ type: `a${'é'.repeat(40)}` }, 'unknown_type', (ref) => ref === `a${'é'.repeat(15)}…`],
      [{ type: '\u{1F600}'.repeat(20) }, 'unknown_type', (ref) => ref === `${'\u{1F600}'.repeat(8)}…`],
    ]);
  });

  it('unsupported_version and already_hello; the peer id does not change', async () => {
    const c = await member();
    const id = c.peerId;
    await expectErrors(c, [
      [{ type: 'hello', v: 2 }, 'unsupported_version', 'hello'],
      [{ type: 'hello', v: 0 }, 'unsupported_version', 'hello'],
      [{ type: 'hello', v: '1' }, 'unsupported_version', 'hello'],
      [{ type: 'hello', v: 1 }, 'already_hello', 'hello'],
      [{ type: 'hello' }, 'already_hello', 'hello'],
      [{ type: 'hello', v: 1, max_neighbors: 2 }, 'already_hello', 'hello'],
    ]);
    assert.equal(c.peerId, id);
    assert.equal(c.received.filter((m) => m.type === 'welcome').length, 1, 'one welcome only');
  });

  it('bad_url in every message that names a swarm', async () => {
    const c = await member();
    await expectErrors(c, [
      [aJoin({ swarm: 'ftp://example.org/x' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'https://user:pw@example.org/x' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'not a url' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'http://' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'http://example.org:99999/' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'http://example.org:8o/' }), 'bad_url', 'join'],
      [aJoin({ swarm: 'https://exa mple.org/' }), 'bad_url', 'join'],
      [aJoin({ swarm: `https://example.org/${'x'.repeat(3000)}` }), 'bad_url', 'join'],
      [aJoin({ swarm: '' }), 'bad_url', 'join'],
      [{ type: 'have', swarm: 'javascript:alert(1)', blocks: [0] }, 'bad_url', 'have'],
      [{ type: 'leave', swarm: 'mailto:x@example.org' }, 'bad_url', 'leave'],
      [{ type: 'signal', swarm: 'file:///etc/passwd', to: c.peerId, data: 1 }, 'bad_url', 'signal'],
      [{ type: 'report', swarm: '//example.org/x', http_bytes: 0, p2p_bytes: 0, uploaded_bytes: 0 }, 'bad_url', 'report'],
    ]);
  });

  it('bad_base64 and bad_bitfield', async () => {
    const c = await member();
    const url = freshSwarm('bits');
    const j = (have) => ({ type: 'join', swarm: url, size: 10 * 1024, block_size: 1024, have });
    await expectErrors(c, [
      [j('!!!!'), 'bad_base64', 'join'],
      [j('YQ'), 'bad_base64', 'join'],  // no padding
      [j('AA=A'), 'bad_base64', 'join'],  // data after padding
      [j('=AAA'), 'bad_base64', 'join'],
      [j('wEA=\n'), 'bad_base64', 'join'],
      [j('AA=='), 'bad_bitfield', 'join'],  // 1 byte for 10 blocks
      [j('AAAA'), 'bad_bitfield', 'join'],  // 3 bytes
      [j(Buffer.from([0xff, 0xe0]).toString('base64')), 'bad_bitfield', 'join'],  // bit 10 set
      [j(Buffer.from([0x00, 0x01]).toString('base64')), 'bad_bitfield', 'join'],  // bit 15 set
      [j(''), 'bad_bitfield', 'join'],  // zero bytes
    ]);
  });

  it('block_out_of_range, applying none of the indices', async () => {
    const c = await member({ blocks: 10, have: bitfield(10, [0, 1, 2, 3, 4, 5, 6, 7, 8]) });
    const seeds = async () => (await d.stats()).top_swarms.find((s) => s.swarm === c.key)?.seeds;
    assert.equal(await seeds(), 0);
    await expectErrors(c, [
      [{ type: 'have', swarm: c.url, blocks: [10] }, 'block_out_of_range', 'have'],
      [{ type: 'have', swarm: c.url, blocks: [9, 10] }, 'block_out_of_range', 'have'],
      [{ type: 'have', swarm: c.url, blocks: [0, 1, 2 ** 32 - 1] }, 'block_out_of_range', 'have'],
    ]);
    assert.equal(await seeds(), 0, 'block 9 of the rejected message was not applied');
    await c.send({ type: 'have', swarm: c.url, blocks: [9] });
    await until(async () => (await seeds()) === 1, { what: 'block 9 makes a seed' });
  });

  it(`too_many_swarms over limits.max_swarms_per_connection (${MAX_SWARMS})`, async () => {
    const c = await member();  // one swarm
    const urls = [freshSwarm('lim'), freshSwarm('lim')];
    for (const u of urls) await c.join(u, c.opts);
    const fourth = freshSwarm('lim');
    await expectErrors(c, [[{ type: 'join', swarm: fourth, ...c.opts }, 'too_many_swarms', 'join']]);
    // Joining a swarm one is already in (another spelling) is no new membership.
    const again = await c.join(urls[0].replace('https://cdn.example.org', 'HTTPS://CDN.example.org:443'), c.opts);
    assert.equal(again.joined.swarm, urls[0]);
    await c.send({ type: 'leave', swarm: urls[1] });
    await c.join(fourth, c.opts);
    await expectErrors(c, [[{ type: 'join', swarm: urls[1], ...c.opts }, 'too_many_swarms', 'join']]);
  });

  // A join the shard refuses (bad_bitfield, too_many_blocks, swarm_mismatch) gives its slot
  // under limits.max_swarms_per_connection back.
  it('failed joins use up no swarm slot', async () => {
    const c = await hello();
    for (let i = 0; i < MAX_SWARMS; i++) {
      await c.send({ type: 'join', swarm: freshSwarm('failed'), size: 10 * 1024, block_size: 1024, have: 'AA==' });
      assert.equal((await c.error()).code, 'bad_bitfield');
    }
    await c.join(freshSwarm('after-failures'), { size: 10 * 1024, block_size: 1024 });
  });

  it(`too_many_blocks over limits.max_blocks (${MAX_BLOCKS})`, async () => {
    const c = await member();
    const big = freshSwarm('big');
    await expectErrors(c, [
      [aJoin({ swarm: big, size: (MAX_BLOCKS + 1) * 1024, block_size: 1024 }), 'too_many_blocks', 'join'],
      [aJoin({ swarm: big, size: MAX_BLOCKS * 1024 + 1, block_size: 1024 }), 'too_many_blocks', 'join'],
      [aJoin({ swarm: big, size: 2 ** 53, block_size: 1024 }), 'too_many_blocks', 'join'],
    ]);
    const { joined } = await c.join(freshSwarm('max'), { size: MAX_BLOCKS * 1024, block_size: 1024 });
    assert.equal(joined.blocks, MAX_BLOCKS);
  });

  it('swarm_mismatch for another size or block_size', async () => {
    const owner = await member();
    const c = await hello();
    c.url = freshSwarm('own');
    c.opts = { size: 4096, block_size: 1024 };
    await c.join(c.url, c.opts);
    const j = (size, block_size) => ({ type: 'join', swarm: owner.url, size, block_size });
    await expectErrors(c, [
      [j(10 * 1024 + 1, 1024), 'swarm_mismatch', 'join'],
      [j(10 * 1024, 2048), 'swarm_mismatch', 'join'],
      [j(10 * 1024 - 1, 1024), 'swarm_mismatch', 'join'],  // same block count, another size
    ]);
    // The owner's swarm is untouched; the same figures join fine.
    const ok = await c.join(owner.url, owner.opts);
    assert.equal(ok.joined.peers, 1);
  });

  it('not_joined for have, leave, signal and report outside one\'s swarms', async () => {
    const c = await member();
    const other = await member();
    await expectErrors(c, [
      [{ type: 'have', swarm: other.url, blocks: [0] }, 'not_joined', 'have'],
      [{ type: 'leave', swarm: other.url }, 'not_joined', 'leave'],
      [{ type: 'signal', swarm: other.url, to: other.peerId, data: { type: 'offer' } }, 'not_joined', 'signal'],
      [{ type: 'report', swarm: other.url, http_bytes: 1, p2p_bytes: 1, uploaded_bytes: 1 }, 'not_joined', 'report'],
      [{ type: 'have', swarm: freshSwarm('nowhere'), blocks: [0] }, 'not_joined', 'have'],
    ]);
    // Nothing reached the other swarm's member (bounded: QUIET_MS is far beyond loopback latency).
    assert.deepEqual(await other.wc.collectFor(QUIET_MS, isType('signal')), []);
  });

  it('peer_not_found for ids that are malformed, unknown or in another swarm', async () => {
    const c = await member();
    const other = await member();
    const s = (to) => ({ type: 'signal', swarm: c.url, to, data: { type: 'offer', sdp: 'v=0' } });
    await expectErrors(c, [
      [s('zzzz'), 'peer_not_found', 'signal'],
      [s(c.peerId.toUpperCase()), 'peer_not_found', 'signal'],
      [s(`${c.peerId}0`), 'peer_not_found', 'signal'],
      [s(''), 'peer_not_found', 'signal'],
      [s('0123456789abcdef'), 'peer_not_found', 'signal'],
      [s(other.peerId), 'peer_not_found', 'signal'],
    ]);
    assert.deepEqual(await other.wc.collectFor(QUIET_MS, isType('signal')), []);
  });

  it('not_linked for a signal to a member that is not a neighbour; neighbours\' signals pass', async () => {
    // A seed and two empty peers: each empty peer gets the seed, which is useful to it, and
    // not the other one.
    const seed = await member({ have: 'all' });
    const [a, b] = [await hello(), await hello()];
    for (const c of [a, b]) {
      await c.join(seed.url, seed.opts);
      Object.assign(c, { url: seed.url, key: seed.key });
    }
    await settle([seed, a, b]);
    assert.deepEqual([...a.neighborsOf(seed.key).keys()], [seed.peerId]);
    assert.deepEqual([...b.neighborsOf(seed.key).keys()], [seed.peerId]);
    const m0 = await scrape(d);
    const s = (to, i) => ({ type: 'signal', swarm: seed.url, to, data: { type: 'offer', sdp: 'v'.repeat(SIGNAL_MAX - 40), i } });

    // Both ways along a link, whichever side initiated it.
    for (const [from, to] of [[a, seed], [seed, a], [b, seed], [seed, b]]) {
      await from.send(s(to.peerId, 0));
      assert.equal((await to.next(isType('signal'), 'a signal between neighbours')).from, from.peerId);
    }
    // A to B, more times than server.max_protocol_errors: each refused, none relayed, and the
    // connection stays (a refusal by the swarm answers a well-formed message).
    const N = MAX_ERRORS + 5;
    for (let i = 0; i < N; i++) await a.send(s(b.peerId, i));
    for (let i = 0; i < N; i++) {
      const e = await a.error();
      assert.deepEqual([e.code, e.ref, e.swarm], ['not_linked', 'signal', seed.key], JSON.stringify(e));
    }
    await expectErrors(b, [[s(a.peerId, 0), 'not_linked', 'signal'], [s(b.peerId, 0), 'not_linked', 'signal']]);
    assert.deepEqual(await b.wc.collectFor(QUIET_MS, isType('signal')), [], 'nothing reached B');
    assert.deepEqual(await a.wc.collectFor(0, isType('signal')), [], 'nothing reached A');
    await assertAlive(a, `after ${N} not_linked`);

    const m1 = await scrape(d);
    const moved = (name, labels) => m1.get(name, labels) - m0.get(name, labels);
    // a N, b 2 (expectErrors) + 1 (its assertAlive), a's assertAlive 1.
    assert.equal(moved('swarmcoord_signal_failures_total', { reason: 'not_linked' }), N + 4);
    assert.equal(moved('swarmcoord_protocol_errors_total', { protocol: 'native', reason: 'not_linked' }), N + 4);
    assert.equal(moved('swarmcoord_signals_relayed_total', { kind: 'offer' }), 4);
    // A's neighbour still hears from it.
    await a.send(s(seed.peerId, 1));
    assert.equal((await seed.next(isType('signal'))).from, a.peerId);
  });

  it(`signal_too_big over signal.max_bytes (${SIGNAL_MAX}), exact at the limit`, async () => {
    const c = await member();
    const peer = await hello();
    await peer.join(c.url, c.opts);
    const m0 = await scrape(d);
    const s = (data) => ({ type: 'signal', swarm: c.url, to: peer.peerId, data });
    // A string of n characters serializes to n + 2 bytes.
    await expectErrors(c, [
      [s('x'.repeat(SIGNAL_MAX - 1)), 'signal_too_big', 'signal'],
      [s({ type: 'offer', sdp: 'v'.repeat(SIGNAL_MAX) }), 'signal_too_big', 'signal'],
      [s('x'.repeat(MAX_MESSAGE / 2)), 'signal_too_big', 'signal'],
    ]);
    await c.send(s('y'.repeat(SIGNAL_MAX - 2)));
    const got = await peer.next(isType('signal'), 'a signal of exactly signal.max_bytes');
    assert.equal(got.data.length, SIGNAL_MAX - 2);
    assert.deepEqual(await peer.wc.collectFor(QUIET_MS, (j) => isType('signal')(j)), [], 'none of the big ones');
    const m1 = await scrape(d);
    const failed = (m) => m.get('swarmcoord_signal_failures_total', { reason: 'too_big' });
    assert.equal(failed(m1) - failed(m0), 3);
  });
});

describe('hostile framing', () => {
  it('rejects nesting deeper than 32 levels, accepts 32', async () => {
    const c = await member();
    const peer = await hello();
    await peer.join(c.url, c.opts);
    const nest = (n) => '['.repeat(n) + ']'.repeat(n);
    const sig = (data) => `{"type":"signal","swarm":"${c.url}","to":"${peer.peerId}","data":${data}}`;
    await expectErrors(c, [
      [nest(33), 'bad_json'],
      [nest(10000), 'bad_json'],
      ['{"a":'.repeat(5000) + '1' + '}'.repeat(5000), 'bad_json'],
      [sig(nest(32)), 'bad_json'],  // 1 + 32 levels
    ]);
    await c.send(sig(nest(31)));
    const got = await peer.next(isType('signal'), 'signal with data nested 31 deep');
    assert.equal(JSON.stringify(got.data), nest(31));
    // Brackets inside a string are no nesting.
    await c.send(sig(`"${'['.repeat(100)}"`));
    assert.equal((await peer.next(isType('signal'))).data, '['.repeat(100));
  });

  it(`closes with 1009 on a frame over server.max_message_bytes (${MAX_MESSAGE})`, async () => {
    const tooBig = (m) => m.get('swarmcoord_protocol_errors_total', { protocol: 'native', reason: 'message_too_big' });
    const big0 = tooBig(await scrape(d));
    // Exactly at the limit is fine (unknown keys are ignored).
    const c = await member();
    const base = JSON.stringify({ type: 'leave', swarm: freshSwarm('x'), pad: '' });
    const atLimit = base.replace('"pad":""', `"pad":"${'p'.repeat(MAX_MESSAGE - base.length)}"`);
    assert.equal(Buffer.byteLength(atLimit), MAX_MESSAGE);
    await expectErrors(c, [[atLimit, 'not_joined', 'leave']]);

    // A header announcing one byte more, on a hand-made socket: a 1009 close frame comes back.
    const r = await rawWebSocket(d.public, '/v1/ws');
    assert.match(r.response, /^HTTP\/1\.1 101 /);
    let reply = Buffer.alloc(0);
    r.socket.on('data', (b) => { reply = Buffer.concat([reply, b]); });
    // (The length must use the shortest form, here 16 bits, or it is a protocol error: 1002.)
    const header = Buffer.alloc(8);
    header[0] = 0x81;  // FIN, text
    header[1] = 0x80 | 126;  // masked, 16-bit length
    header.writeUInt16BE(MAX_MESSAGE + 1, 2);
    crypto.randomFillSync(header, 4, 4);  // mask key
    r.socket.write(header);
    await until(() => reply.length >= 4, { what: 'close frame' });
    assert.equal(reply[0], 0x88, 'a close frame');
    assert.equal(reply.readUInt16BE(2), 1009);
    r.socket.end();
    await withTimeout(r.closed, 5000, 'raw socket closed');

    // A real client after hello, whole and fragmented. The server stops reading at the limit;
    // the client may see the reset (1006) instead of the close frame (1009).
    c.wc.ws.send(atLimit.replace('"pad":"', '"pad":"P'), () => {});
    assert.ok([1009, 1006].includes((await c.waitClose()).code));
    const f = await member();
    const sends = [];
    for (let i = 0; i < 4; i++) sends.push(new Promise((res) => f.wc.ws.send('x'.repeat(10000), { fin: i === 3 }, () => res())));
    assert.ok([1009, 1006].includes((await f.waitClose()).code));
    await Promise.all(sends);
    await until(async () => tooBig(await scrape(d)) === big0 + 3, { what: 'three message_too_big counted' });
  });

  it('answers binary garbage with an error reply that is valid UTF-8, connection kept', async () => {
    const c = await member();
    for (let i = 0; i < 15; i++) {
      await c.send(crypto.randomBytes(1 + Math.floor(Math.random() * 3000)));
      // ws fails the connection (1007) on a text frame that is not UTF-8: a close here with
      // 1006/1007 would mean the daemon sent one.
      const r = await errorOrClose(c, 'binary garbage');
      assert.equal(r.kind, 'error', `closed: ${JSON.stringify(r.info)} ${c.wc.errors}`);
      assert.ok(['bad_json', 'invalid_field'].includes(r.msg.code), JSON.stringify(r.msg));
    }
    // Bytes that are not UTF-8 inside a JSON string, in a binary frame: the reply quotes none.
    await c.send(Buffer.concat([Buffer.from('{"type":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]));
    const r = await errorOrClose(c, 'invalid UTF-8 in a binary frame');
    assert.equal(r.kind, 'error', JSON.stringify(r.info));
    await assertAlive(c, 'after binary garbage');
  });

  it('closes with 1007 on invalid UTF-8 in a text frame', async () => {
    const c = await member();
    await c.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), { binary: false });
    assert.equal((await c.waitClose()).code, 1007);
  });

  it(`closes with 1008 after ${MAX_ERRORS} invalid messages in a row (1000 sent)`, async () => {
    const c = await member();
    const bad = ['{', { type: 'nope' }, { type: 'join' }, '[]', { type: 'hello', v: 1 }];
    for (let i = 0; i < 1000; i++) {
      const m = bad[i % bad.length];
      c.wc.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
    }
    const { code } = await c.waitClose(10000);
    assert.equal(code, 1008);
    const errors = c.queue.filter((m) => m.json?.type === 'error');
    assert.equal(errors.length, MAX_ERRORS, 'one reply per error up to the limit, then the close');
  });

  it('counts only errors in a row: a valid message resets the count', async () => {
    const c = await member();
    const burst = async (n) => {
      for (let i = 0; i < n; i++) c.wc.ws.send('{');
      for (let i = 0; i < n; i++) await c.error('bad_json');
    };
    await burst(MAX_ERRORS - 1);
    await assertAlive(c, 'after a burst just under the limit');
    await burst(MAX_ERRORS - 1);
    await assertAlive(c, 'after a second burst');
    // Errors raised by the swarm (not_joined) are replies to well-formed messages: they do
    // not count towards the limit either.
    for (let i = 0; i < MAX_ERRORS + 5; i++) c.wc.ws.send(JSON.stringify({ type: 'leave', swarm: freshSwarm('none') }));
    for (let i = 0; i < MAX_ERRORS + 5; i++) await c.error('not_joined');
    await assertAlive(c, 'after many not_joined');
  });

  it('refuses a WebSocket upgrade on an unknown path', async () => {
    await assert.rejects(NativeClient.open(d, { path: '/v2/ws' }), (e) => e.status === 404);
    await assert.rejects(NativeClient.open(d, { path: '/v1/ws/x' }), (e) => e.status === 404);
  });
});

describe('aftermath', () => {
  it('counted the protocol errors by reason', async () => {
    const m = await scrape(d);
    const moved = (reason) => m.get('swarmcoord_protocol_errors_total', { protocol: 'native', reason }) -
      metrics0.get('swarmcoord_protocol_errors_total', { protocol: 'native', reason });
    // At least what the cases above provoked.
    // The 1000-message flood cycles through 5 kinds: MAX_ERRORS / 5 replies of each.
    const flood = MAX_ERRORS / 5;
    const want = {
      bad_json: 2 + 7 + 4 + 2 * (MAX_ERRORS - 1) + flood, invalid_field: 3 + 11 + 13 + 8 + 8 + 2 * flood,
      unknown_type: 1 + 8 + flood, unsupported_version: 1 + 3, hello_required: 5, already_hello: 3 + flood,
      bad_url: 1 + 13, bad_base64: 5, bad_bitfield: 5, block_out_of_range: 3, too_many_swarms: 2,
      too_many_blocks: 3, swarm_mismatch: 3, not_joined: 5 + 1 + MAX_ERRORS + 5, peer_not_found: 6,
      signal_too_big: 3, message_too_big: 3, not_linked: MAX_ERRORS + 5 + 4,
    };
    const got = Object.fromEntries(Object.keys(want).map((r) => [r, moved(r)]));
    for (const r of Object.keys(want)) assert.ok(got[r] >= want[r], `${r}: moved ${got[r]}, want >= ${want[r]}; all: ${JSON.stringify(got)}`);
  });

  it('logged no unhandled exception and is still up', async () => {
    assert.equal(d.proc.exitCode, null);
    assert.doesNotMatch(d.log, /unhandled exception|critical/);
    assert.equal((await fetch(`http://${d.admin}/healthz`)).status, 200);
    const st = await d.stats();
    assert.equal(st.draining, false);
  });
});
