// The browser client's pure modules (clients/web) run in Node, without WebRTC: the bitfield
// layout, the peer-to-peer block framing, manifests (against the real `swarmcoord manifest`),
// swarmKey() against the real daemon's normalization, the origin Range fetch, and the
// argument checks of SwarmClient / SwarmRequest. (Whole downloads with hostile neighbours over
// a fake WebRTC network: web-client-neighbours.test.mjs.) The network parts (a daemon on
// 127.0.0.1) are loopback only.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Daemon } from './lib/daemon.mjs';
import { NativePeer } from './lib/native-peer.mjs';
import { manifestOf, runBinary, until } from './lib/proc.mjs';
import { fakeOrigin } from './lib/fake-rtc.mjs';

const web = (m) => new URL(`../../clients/web/${m}`, import.meta.url).href;
const { Bitfield, bytesToBase64, base64ToBytes } = await import(web('bitfield.js'));
const bp = await import(web('block-protocol.js'));
const { loadManifest, blockDigestMatches } = await import(web('manifest.js'));
const { swarmKey, Coordinator } = await import(web('coordinator.js'));
const { fetchRange } = await import(web('origin.js'));
const { SwarmClient, SwarmRequest, DEFAULTS } = await import(web('swarmcoord.js'));

let dir;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-web-')); });
after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

// ------------------------------------------------------------------ bitfield.js

describe('bitfield.js', () => {
  it('lays out 10 blocks holding 0, 1 and 9 as C0 40 = "wEA=" (protocol/README.md)', () => {
    const b = new Bitfield(10);
    assert.equal(b.bytes.length, 2);
    assert.equal(b.set(0), true);
    assert.equal(b.set(1), true);
    assert.equal(b.set(9), true);
    assert.equal(b.set(9), false, 'setting a held block again reports nothing new');
    assert.deepEqual([...b.bytes], [0xc0, 0x40]);
    assert.equal(b.toBase64(), 'wEA=');
    assert.equal(b.count, 3);
    assert.equal(b.complete, false);
    assert.deepEqual([...Array(10).keys()].filter((i) => b.has(i)), [0, 1, 9]);
  });

  it('fromBase64 round-trips and counts the held blocks', () => {
    const b = Bitfield.fromBase64(10, 'wEA=');
    assert.equal(b.count, 3);
    assert.deepEqual([...Array(10).keys()].filter((i) => b.has(i)), [0, 1, 9]);
    assert.equal(b.toBase64(), 'wEA=');
    const exact = Bitfield.fromBase64(16, '//8=');
    assert.equal(exact.count, 16);
    assert.equal(exact.complete, true);
  });

  it('fromBase64 rejects a wrong length, set unused bits and invalid base64', () => {
    assert.throws(() => Bitfield.fromBase64(10, 'wA=='), /bitfield of 1 bytes for 10 blocks/);
    assert.throws(() => Bitfield.fromBase64(10, 'wEAA'), /bitfield of 3 bytes for 10 blocks/);
    assert.throws(() => Bitfield.fromBase64(8, ''), /bitfield of 0 bytes for 8 blocks/);
    // C0 41: block 15 of 10 is set (the lowest unused bit); C0 60: bit 10 (the highest unused one).
    assert.throws(() => Bitfield.fromBase64(10, 'wEE='), /unused bits set/);
    assert.throws(() => Bitfield.fromBase64(10, 'wGA='), /unused bits set/);
    assert.throws(() => Bitfield.fromBase64(10, 'wE!='));
    assert.throws(() => Bitfield.fromBase64(10, null), /must be a string/);
  });

  it('full() holds every block and leaves the unused bits clear', () => {
    assert.equal(Bitfield.full(10).toBase64(), '/8A=');
    assert.equal(Bitfield.full(8).toBase64(), '/w==');
    assert.equal(Bitfield.full(1).toBase64(), 'gA==');
    const f = Bitfield.full(10);
    assert.equal(f.count, 10);
    assert.equal(f.complete, true);
    // what full() produces is what fromBase64 accepts from a neighbour
    assert.equal(Bitfield.fromBase64(10, f.toBase64()).complete, true);
  });

  it('base64 helpers handle more than one 32 KiB slice', () => {
    const bytes = crypto.randomBytes(100_003);
    const text = bytesToBase64(new Uint8Array(bytes));
    assert.equal(text, bytes.toString('base64'));
    assert.deepEqual(Buffer.from(base64ToBytes(text)), bytes);
    const big = Bitfield.full(16384);
    assert.equal(big.toBase64(), Buffer.alloc(2048, 0xff).toString('base64'));
  });
});

// ------------------------------------------------------------------ block-protocol.js

describe('block-protocol.js', () => {
  function reassemble(frames, blocks, block, length) {
    const out = new Uint8Array(length);
    let received = 0;
    for (const f of frames) {
      // Data channels hand over an ArrayBuffer: decode from one, as resource.js gets them.
      const ab = f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength);
      const m = bp.decodeFrame(ab, blocks);
      assert.equal(m.t, 'chunk');
      assert.equal(m.block, block);
      assert.equal(m.offset, received, 'chunks come in order, back to back');
      out.set(m.payload, m.offset);
      received += m.payload.length;
    }
    assert.equal(received, length);
    return out;
  }

  it('splits a 65536-byte block into frames of at most 16384 bytes and decodes it back', () => {
    const block = crypto.randomBytes(65536);
    const frames = [...bp.chunksOf(7, new Uint8Array(block))];
    assert.equal(bp.CHUNK_BYTES, 16384);
    assert.equal(frames.length, Math.ceil(65536 / (16384 - 8)));  // 5: 4 × 16376 + 32
    for (const f of frames) assert.ok(f.length <= 16384 && f.length > 8, `frame of ${f.length} bytes`);
    assert.deepEqual(frames.map((f) => f.length), [16384, 16384, 16384, 16384, 32 + 8]);
    // header: block index then byte offset, both big-endian uint32
    assert.deepEqual([...frames[1].subarray(0, 8)], [0, 0, 0, 7, 0, 0, 0x3f, 0xf8]);
    assert.deepEqual(Buffer.from(reassemble(frames, 8, 7, 65536)), block);
  });

  it('carries a 1000-byte (last, short) block in one frame', () => {
    const block = crypto.randomBytes(1000);
    const frames = [...bp.chunksOf(2, new Uint8Array(block))];
    assert.equal(frames.length, 1);
    assert.equal(frames[0].length, 1008);
    assert.deepEqual(Buffer.from(reassemble(frames, 3, 2, 1000)), block);
  });

  it('decodes a chunk from a Uint8Array view with a byte offset', () => {
    const frame = bp.encodeChunk(3, 16376, new Uint8Array([1, 2, 3]));
    const backing = new Uint8Array(frame.length + 5);
    backing.set(frame, 5);
    const m = bp.decodeFrame(backing.subarray(5), 4);
    assert.deepEqual({ ...m, payload: [...m.payload] }, { t: 'chunk', block: 3, offset: 16376, payload: [1, 2, 3] });
  });

  it('rejects chunk frames that are too short, too long or for a block out of range', () => {
    assert.throws(() => bp.decodeFrame(new Uint8Array(7), 4), bp.ProtocolError);
    assert.throws(() => bp.decodeFrame(new Uint8Array(16385), 4), /chunk frame of 16385 bytes/);
    assert.throws(() => bp.decodeFrame(bp.encodeChunk(4, 0, new Uint8Array(1)), 4), /block 4 out of range/);
    assert.throws(() => bp.decodeFrame(bp.encodeChunk(0xffffffff, 0, new Uint8Array(1)), 4), bp.ProtocolError);
    // an 8-byte frame (a header, no payload) is well-formed
    assert.equal(bp.decodeFrame(bp.encodeChunk(3, 0, new Uint8Array(0)), 4).payload.length, 0);
  });

  it('decodes each control message', () => {
    const enc = (m) => bp.decodeFrame(bp.encodeControl(m), 10);
    assert.deepEqual(enc({ t: 'bitfield', have: 'wEA=' }), { t: 'bitfield', have: 'wEA=' });
    assert.deepEqual(enc({ t: 'have', blocks: [0, 9] }), { t: 'have', blocks: [0, 9] });
    assert.deepEqual(enc({ t: 'request', block: 9 }), { t: 'request', block: 9 });
    assert.deepEqual(enc({ t: 'cancel', block: 0 }), { t: 'cancel', block: 0 });
    assert.deepEqual(enc({ t: 'error', block: 1, code: 'busy' }), { t: 'error', block: 1, code: 'busy', message: '' });
    const long = enc({ t: 'error', block: 1, code: 'not_have', message: 'x'.repeat(1000), extra: 1 });
    assert.equal(long.message.length, 200);
    for (const code of ['not_have', 'busy', 'bad_request']) assert.equal(enc({ t: 'error', block: 0, code }).code, code);
  });

  it('rejects out-of-range blocks, non-JSON, unknown `t`, bad error codes and oversize frames', () => {
    const bad = [
      ['{"t":"request","block":10}', /block 10 out of range/],
      ['{"t":"request","block":-1}', /out of range/],
      ['{"t":"request","block":1.5}', /out of range/],
      ['{"t":"request","block":"1"}', /out of range/],
      ['{"t":"request"}', /out of range/],
      ['{"t":"cancel","block":99}', /out of range/],
      ['{"t":"have","blocks":[1,10]}', /block 10 out of range/],
      ['{"t":"have","blocks":3}', /have without blocks/],
      ['{"t":"error","block":10,"code":"busy"}', /out of range/],
      ['{"t":"bitfield"}', /bitfield without have/],
      ['{"t":"bitfield","have":5}', /bitfield without have/],
      ['not json', /not JSON/],
      ['{"t":"request","block":1', /not JSON/],
      ['', /not JSON/],
      ['[1,2]', /not an object/],
      ['null', /not an object/],
      ['"request"', /not an object/],
      ['{"t":"piece","block":1}', /unknown message piece/],
      ['{"block":1}', /unknown message undefined/],
      ['{"t":"error","block":1,"code":"nope"}', /unknown error code nope/],
      ['{"t":"error","block":1}', /unknown error code/],
      ['{"t":"error","block":1,"code":"toString"}', /unknown error code/],
      [JSON.stringify({ t: 'have', blocks: [], pad: 'x'.repeat(bp.MAX_CONTROL_BYTES) }), /control message of \d+ bytes/],
    ];
    for (const [frame, re] of bad) {
      assert.throws(() => bp.decodeFrame(frame, 10), (e) => e instanceof bp.ProtocolError && re.test(e.message), frame.slice(0, 60));
    }
  });
});

// ------------------------------------------------------------------ manifest.js

describe('manifest.js', () => {
  let data;
  let real;  // the daemon binary's manifest of `data`
  const blockSize = 1024;
  before(async () => {
    data = crypto.randomBytes(5 * 1024 + 123);
    const file = path.join(dir, 'm.bin');
    fs.writeFileSync(file, data);
    const r = await runBinary(['manifest', file, '--block-size', String(blockSize), '--url', 'https://cdn.example/m.bin']);
    assert.equal(r.code, 0, r.stderr);
    real = JSON.parse(r.stdout);
  });

  it('loads the output of `swarmcoord manifest`', async () => {
    const m = await loadManifest(structuredClone(real));
    assert.equal(m.url, 'https://cdn.example/m.bin');
    assert.equal(m.size, data.length);
    assert.equal(m.blockSize, blockSize);
    assert.equal(m.digests.length, 6);
    for (let i = 0; i < 6; i++) {
      const want = crypto.createHash('sha256').update(data.subarray(i * blockSize, (i + 1) * blockSize)).digest();
      assert.deepEqual(Buffer.from(m.digests[i]), want, `digest ${i}`);
    }
  });

  it('fetches a manifest given by URL with the fetch it is handed', async () => {
    const seen = [];
    const fetchImpl = async (url, init) => {
      seen.push([url, init?.cache]);
      return url.endsWith('/ok.json') ? Response.json(real) : new Response('gone', { status: 404 });
    };
    const m = await loadManifest('https://cdn.example/ok.json', fetchImpl);
    assert.equal(m.digests.length, 6);
    await assert.rejects(loadManifest('https://cdn.example/missing.json', fetchImpl), /HTTP 404/);
    assert.deepEqual(seen, [['https://cdn.example/ok.json', 'no-store'], ['https://cdn.example/missing.json', 'no-store']]);
  });

  it('rejects wrong digest counts, versions, algorithms and malformed fields', async () => {
    const variant = (patch) => ({ ...structuredClone(real), ...patch });
    const cases = [
      [variant({ blocks: real.blocks.slice(1) }), /lists 5 digests for 6 blocks/],
      [variant({ blocks: [...real.blocks, real.blocks[0]] }), /lists 7 digests for 6 blocks/],
      [variant({ blocks: undefined }), /digests for 6 blocks/],
      [variant({ version: 2 }), /version 2 is not supported/],
      [variant({ version: '1' }), /version 1 is not supported/],
      [variant({ algorithm: 'sha-1' }), /algorithm sha-1 is not supported/],
      [variant({ algorithm: 'SHA-256' }), /algorithm SHA-256/],
      [variant({ size: 0 }), /size must be a positive integer/],
      [variant({ size: 10.5 }), /size must be a positive integer/],
      [variant({ block_size: 512 }), /block_size must be an integer/],
      [variant({ blocks: real.blocks.map((d, i) => (i === 3 ? d.slice(0, 20) : d)) }), /digest 3 is not base64 of 32 bytes/],
      [variant({ blocks: real.blocks.map((d, i) => (i === 2 ? '*'.repeat(44) : d)) }), /digest 2 is not/],
      [variant({ blocks: real.blocks.map((d, i) => (i === 5 ? 7 : d)) }), /digest 5 is not/],
      [null, /not an object/],
    ];
    for (const [m, re] of cases) await assert.rejects(loadManifest(m), re, JSON.stringify(m)?.slice(0, 80));
  });

  it('blockDigestMatches tells the real bytes of a block from altered ones', async () => {
    const m = await loadManifest(real);
    for (let i = 0; i < 6; i++) {
      const bytes = new Uint8Array(data.subarray(i * blockSize, Math.min((i + 1) * blockSize, data.length)));
      assert.equal(await blockDigestMatches(m, i, bytes), true, `block ${i}`);
      const altered = bytes.slice();
      altered[altered.length >> 1] ^= 0x01;
      assert.equal(await blockDigestMatches(m, i, altered), false, `altered block ${i}`);
    }
    // right bytes, wrong index; and a truncated last block
    assert.equal(await blockDigestMatches(m, 1, new Uint8Array(data.subarray(0, blockSize))), false);
    assert.equal(await blockDigestMatches(m, 5, new Uint8Array(data.subarray(5 * blockSize, data.length - 1))), false);
  });
});

// ------------------------------------------------------------------ swarmKey() against the daemon

// [url, why]: the shared table (tests/fixtures/swarm-urls.json, also asserted against
// protocol/swarm_url.cpp by the unit tests and against swarmKey() alone by
// swarm-urls.test.mjs), plus lengths around the limit. The expected key is whatever the daemon
// answers in `joined.swarm`, or null when it answers `bad_url`.
const TABLE = JSON.parse(fs.readFileSync(new URL('../fixtures/swarm-urls.json', import.meta.url), 'utf8')).cases;
const URLS = [
  ...TABLE.map((c) => [c.url, c.why]),
  ['http://e.com/' + 'a'.repeat(2048 - 13), '2048 bytes'],
  ['http://e.com/' + 'a'.repeat(2049 - 13), '2049 bytes'],
  ['http://e.com/#' + 'a'.repeat(2100), 'over 2048 with the fragment'],
  ['http://e.com?' + 'a'.repeat(2048 - 13), '2048 bytes that the missing "/" would make 2049'],
];

// Non-ASCII input: the daemon counts the length limit in UTF-8 bytes and lower-cases ASCII
// letters only; swarmKey() must do the same (SwarmClient passes URLs through `new URL()`
// first, which leaves only ASCII, but direct callers need not).
const NON_ASCII = [
  ['http://ÉXAMPLE.com/', 'non-ASCII upper case in the host'],
  ['http://e.com/' + 'é'.repeat(1100), '1113 UTF-16 units but 2213 UTF-8 bytes'],
];

describe('swarmKey() agrees with the daemon', () => {
  let d;
  let peer;
  before(async () => {
    d = await Daemon.start(['--set', 'limits.max_swarms_per_connection=1000', '--set', 'server.max_protocol_errors=1000',
      '--set', 'server.max_messages_per_second=100000']);
    peer = await NativePeer.open(d.wsUrl, { label: 'keys' });
    await peer.hello();
  });
  after(async () => {
    await peer?.close();
    await d?.stop();
  });

  // The daemon's key for url, or null for bad_url.
  async function daemonKey(url) {
    await peer.send({ type: 'join', swarm: url, size: 1, block_size: 1024 });
    const m = await peer.next((x) => x.type === 'joined' || (x.type === 'error' && x.ref === 'join'), { what: `answer to join ${url.slice(0, 60)}` });
    if (m.type === 'error') {
      assert.equal(m.code, 'bad_url', `join ${url.slice(0, 60)}: ${JSON.stringify(m)}`);
      return null;
    }
    await peer.neighbors(m.swarm);
    await peer.send({ type: 'leave', swarm: m.swarm });
    return m.swarm;
  }

  it('for every tricky URL: the same key, or null exactly when the daemon says bad_url', async () => {
    const rows = [];
    for (const [url, why] of URLS) rows.push({ url, why, server: await daemonKey(url), client: swarmKey(url) });
    const wrong = rows.filter((r) => r.server !== r.client);
    assert.deepEqual(wrong, [], `swarmKey() disagrees with the daemon:\n${wrong.map((r) => `  ${r.why}: ${JSON.stringify(r.url.slice(0, 80))} → daemon ${JSON.stringify(r.server)}, swarmKey ${JSON.stringify(r.client)}`).join('\n')}`);
    // and the daemon gives the table's keys (guards against both being wrong alike)
    const key = (u) => rows.find((r) => r.url === u).server;
    const off = TABLE.filter((c) => key(c.url) !== c.key);
    assert.deepEqual(off.map((c) => `${c.why}: ${JSON.stringify(c.url)} → daemon ${JSON.stringify(key(c.url))}, table ${JSON.stringify(c.key)}`), []);
    assert.equal(key('HTTPS://Example.COM:443/f.bin#x'), 'https://example.com/f.bin');
    assert.equal(key('http://example.com:0080/a'), 'http://example.com/a');
    assert.equal(key('http://example.com:08080/a'), 'http://example.com:8080/a');
    assert.equal(key('http://[::1]:80/x'), 'http://[::1]/x');
    assert.equal(key('http://example.com?q=1'), 'http://example.com/?q=1');
    assert.equal(key('http://user@example.com/'), null);
    assert.equal(key('http://example.com/a b'), null);
    assert.ok(rows.filter((r) => r.server === null).length >= 20 && rows.filter((r) => r.server !== null).length >= 20);
  });

  for (const [url, why] of NON_ASCII) {
    it(`${why}: ${JSON.stringify(url.slice(0, 40))}`, async () => {
      const [client, server] = [swarmKey(url), await daemonKey(url)];
      const short = (k) => (k === null ? 'null' : JSON.stringify(k.length > 50 ? `${k.slice(0, 50)}…(${k.length})` : k));
      assert.ok(client === server, `swarmKey() → ${short(client)}, daemon → ${short(server)}`);
    });
  }

  it('rejects what is not a string', () => {
    for (const v of [undefined, null, 42, {}, ['http://e.com/']]) assert.equal(swarmKey(v), null);
    assert.equal(swarmKey(''), null);
  });
});

// ------------------------------------------------------------------ fetchRange (resource.js)

describe('fetchRange', () => {
  const body = new Uint8Array(crypto.randomBytes(3000));
  const respond = (status, headers, bytes) => async () => new Response(bytes, { status, headers });

  it('accepts a 206 with the asked Content-Range', async () => {
    const seen = [];
    const r = await fetchRange(async (url, init) => {
      seen.push(init.headers.Range);
      return new Response(body.slice(1000, 2000), { status: 206, headers: { 'Content-Range': 'bytes 1000-1999/3000' } });
    }, 'http://o/f', 1000, 1999, 3000);
    assert.deepEqual(seen, ['bytes=1000-1999']);
    assert.deepEqual(r.body, body.slice(1000, 2000));
    assert.equal(r.transferred, 1000);
  });

  it('accepts a 200 with the whole body (an origin ignoring Range), returns and counts it all', async () => {
    const r = await fetchRange(respond(200, {}, body), 'http://o/f', 1000, 1999, 3000);
    assert.equal(r.whole, true);
    assert.deepEqual(r.body, body);
    assert.equal(r.transferred, 3000);
  });

  it('rejects a 206 whose Content-Range names another total size (the resource changed)', async () => {
    await assert.rejects(fetchRange(respond(206, { 'Content-Range': 'bytes 1000-1999/5000' }, body.slice(1000, 2000)), 'http://o/f', 1000, 1999, 3000));
  });

  it('rejects a wrong Content-Range, a short body, a 200 of the wrong size and errors', async () => {
    await assert.rejects(fetchRange(respond(206, { 'Content-Range': 'bytes 0-999/3000' }, body.slice(0, 1000)), 'http://o/f', 1000, 1999, 3000), /unexpected Content-Range/);
    await assert.rejects(fetchRange(respond(206, {}, body.slice(0, 1000)), 'http://o/f', 1000, 1999, 3000), /unexpected Content-Range/);
    await assert.rejects(fetchRange(respond(206, { 'Content-Range': 'bytes 1000-1999/3000' }, body.slice(0, 999)), 'http://o/f', 1000, 1999, 3000), /short body: 999 of 1000/);
    await assert.rejects(fetchRange(respond(200, {}, body.slice(0, 2999)), 'http://o/f', 1000, 1999, 3000), /sent 2999 bytes, expected 3000/);
    await assert.rejects(fetchRange(respond(503, {}, null), 'http://o/f', 0, 9, 3000), /HTTP 503/);
    await assert.rejects(fetchRange(respond(416, {}, null), 'http://o/f', 0, 9, 3000), /HTTP 416/);
  });
});

// ------------------------------------------------------------------ SwarmClient / SwarmRequest

// A WebSocket that never connects: the client's coordinator stays "not ready" and nothing
// touches the network. Instances are kept so a test can check they were closed.
class DeadSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.closedWith = null;
    DeadSocket.made.push(this);
  }
  send() { throw new Error('DeadSocket cannot send'); }
  close(code) { this.closedWith = code; this.readyState = 3; }
}

class FakePC { constructor() { throw new Error('no WebRTC in this suite'); } }

function client(extra = {}) {
  return new SwarmClient({ coordinator: 'ws://127.0.0.1:9/v1/ws', WebSocket: DeadSocket, RTCPeerConnection: FakePC, log: () => {}, ...extra });
}


describe('SwarmClient and SwarmRequest argument checks', () => {
  it('needs a coordinator URL', () => {
    assert.throws(() => new SwarmClient({}), (e) => e instanceof TypeError && /coordinator/.test(e.message));
    assert.throws(() => new SwarmClient(), TypeError);
    assert.throws(() => new SwarmClient({ coordinator: new URL('ws://127.0.0.1:9/v1/ws') }), TypeError);
  });

  it('checks blockSize', () => {
    for (const blockSize of [0, 1023, 1024.5, 64 * 1024 * 1024 + 1, '65536', NaN, null]) {
      assert.throws(() => client({ blockSize }), RangeError, `blockSize ${blockSize}`);
    }
    for (const blockSize of [1024, 64 * 1024 * 1024]) client({ blockSize }).close();
  });

  it('needs RTCPeerConnection and WebSocket implementations outside a browser', () => {
    assert.equal(globalThis.RTCPeerConnection, undefined);
    assert.throws(() => new SwarmClient({ coordinator: 'ws://127.0.0.1:9/v1/ws', WebSocket: DeadSocket }), /no RTCPeerConnection/);
    const savedWs = globalThis.WebSocket;
    globalThis.WebSocket = undefined;
    try {
      assert.throws(() => new Coordinator('ws://127.0.0.1:9/v1/ws'), /no WebSocket implementation/);
    } finally {
      globalThis.WebSocket = savedWs;
    }
  });

  it('uses the documented defaults', () => {
    const c = client();
    try {
      assert.equal(c.options.blockSize, 65536);
      assert.equal(c.options.requireManifest, false);
      assert.deepEqual(c.options.p2pWaitMs, DEFAULTS.p2pWaitMs);
      assert.ok(Object.isFrozen(DEFAULTS));
    } finally {
      c.close();
    }
  });

  it('rejects fetch() without a manifest under requireManifest, and non-http URLs', async () => {
    const { fetchImpl, requests } = fakeOrigin(new Uint8Array(10));
    const c = client({ requireManifest: true, fetch: fetchImpl });
    try {
      await assert.rejects(c.fetch('https://cdn.example/f.bin'), /a manifest is required \(requireManifest\)/);
      await assert.rejects(c.fetch('ftp://cdn.example/f.bin'), (e) => e instanceof TypeError && /not an http\(s\) URL/.test(e.message));
      await assert.rejects(c.fetch('f.bin'), TypeError);  // relative, and no location in Node
      assert.deepEqual(requests, [], 'nothing was fetched');
      assert.equal(c.stats('https://cdn.example/f.bin'), null);
    } finally {
      c.close();
    }
  });

  it('rejects seed() of a URL it already has, and a manifest of another size', async () => {
    const c = client();
    const bytes = new Uint8Array(crypto.randomBytes(3000));
    try {
      const handle = await c.seed('https://cdn.example/s.bin', bytes);
      assert.equal(handle.key, 'https://cdn.example/s.bin');
      assert.deepEqual(c.stats('https://cdn.example/s.bin'), { httpBytes: 0, p2pBytes: 0, uploadedBytes: 0, neighbors: 0, blocks: 1, haveBlocks: 1, badPeers: 0 });
      await assert.rejects(c.seed('HTTPS://CDN.example:443/s.bin', bytes), /already in this client/);
      const file = path.join(dir, 's.bin');
      fs.writeFileSync(file, bytes.subarray(0, 2000));
      const r = await runBinary(['manifest', file, '--block-size', '1024']);
      await assert.rejects(c.seed('https://cdn.example/t.bin', bytes, { manifest: JSON.parse(r.stdout) }), /source has 3000 bytes, the manifest says 2000/);
      await assert.rejects(c.seed('https://cdn.example/u.bin', { size: 0, read() {} }), /seed source must be/);
      handle.stop();
      assert.equal(c.stats('https://cdn.example/s.bin'), null);
    } finally {
      c.close();
    }
    assert.ok(DeadSocket.made.every((s) => s.closedWith === 1000 || s.readyState === 3));
  });

  it('without a coordinator, fetch() falls back to the origin after p2pWaitMs (HEAD, then Range runs)', async () => {
    const bytes = new Uint8Array(crypto.randomBytes(20 * 1024 + 5));
    const { fetchImpl, requests } = fakeOrigin(bytes);
    const c = client({ fetch: fetchImpl, blockSize: 1024, p2pWaitMs: 50, httpMaxBlocks: 8 });
    try {
      const progress = [];
      const t0 = Date.now();
      const res = await c.fetch('https://cdn.example/o.bin', { onProgress: (p) => progress.push(p.loaded) });
      assert.ok(Date.now() - t0 >= 50, 'waited for neighbours first');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'video/mp2t');
      assert.equal(res.headers.get('content-length'), String(bytes.length));
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
      assert.deepEqual(requests.map((r) => r.method), ['HEAD', 'GET', 'GET', 'GET']);
      assert.deepEqual(requests.slice(1).map((r) => r.range).sort(), ['bytes=0-8191', 'bytes=16384-20484', 'bytes=8192-16383']);
      assert.equal(progress.at(-1), bytes.length);
      assert.equal(progress.length, 21);
      const s = c.stats('https://cdn.example/o.bin');
      assert.equal(s.httpBytes, bytes.length);
      assert.equal(s.p2pBytes, 0);
      assert.equal(s.haveBlocks, 21);
    } finally {
      c.close();
    }
  });

  it('SwarmRequest: GET only, open() before send(), onload with an arraybuffer', async () => {
    const bytes = new Uint8Array(crypto.randomBytes(4096));
    const { fetchImpl } = fakeOrigin(bytes);
    const c = client({ fetch: fetchImpl, blockSize: 1024, p2pWaitMs: 0 });
    try {
      const xhr = new SwarmRequest(c);
      assert.throws(() => xhr.open('POST', 'https://cdn.example/x.bin'), /GET only/);
      assert.throws(() => xhr.send(), /call open\(\) before send\(\)/);
      const states = [];
      xhr.onreadystatechange = () => states.push(xhr.readyState);
      xhr.open('get', 'https://cdn.example/x.bin');
      xhr.responseType = 'arraybuffer';
      const events = [];
      xhr.onprogress = (e) => events.push(['progress', e.loaded, e.total, e.lengthComputable]);
      const done = new Promise((resolve) => { xhr.onloadend = resolve; });
      xhr.onload = () => events.push(['load']);
      xhr.onerror = (e) => events.push(['error', e.error.message]);
      xhr.send();
      await done;
      assert.deepEqual(states, [1, 2, 4]);
      assert.equal(xhr.status, 200);
      assert.deepEqual(new Uint8Array(xhr.response), bytes);
      assert.deepEqual(events.at(-1), ['load']);
      assert.deepEqual(events.filter((e) => e[0] === 'progress').at(-1), ['progress', 4096, 4096, true]);
    } finally {
      c.close();
    }
  });

  it('SwarmRequest: onerror for requireManifest without a manifest, onabort for abort()', async () => {
    const c = client({ requireManifest: true });
    try {
      const xhr = new SwarmRequest(c);
      xhr.open('GET', 'https://cdn.example/y.bin');
      const err = await new Promise((resolve) => { xhr.onerror = (e) => resolve(e); xhr.send(); });
      assert.match(err.error.message, /a manifest is required/);
      assert.equal(xhr.readyState, 4);
    } finally {
      c.close();
    }

    // abort() while the origin hangs: the download is dropped and onabort fires
    const bytes = new Uint8Array(3000);
    const { fetchImpl } = fakeOrigin(bytes, { hang: true });
    const c2 = client({ fetch: fetchImpl, blockSize: 1024 });
    try {
      const xhr = new SwarmRequest(c2, { manifest: await manifestOf(bytes, 1024) });
      xhr.open('GET', 'https://cdn.example/z.bin');
      const ended = new Promise((resolve) => { xhr.onloadend = resolve; });
      const what = [];
      xhr.onabort = () => what.push('abort');
      xhr.onerror = (e) => what.push(`error ${e.error?.message}`);
      xhr.onprogress = () => what.push('progress');
      xhr.send();
      // the manifest is in hand, so the resource exists at once
      await new Promise((r) => setImmediate(r));
      assert.notEqual(c2.stats('https://cdn.example/z.bin'), null);
      xhr.abort();
      await ended;
      assert.deepEqual(what, ['abort']);
      assert.equal(c2.stats('https://cdn.example/z.bin'), null);
    } finally {
      c2.close();
    }
  });
});

describe('SwarmClient: concurrent fetches of one URL', () => {
  it('aborting one caller\'s fetch does not abort another caller\'s fetch of the same URL', async () => {
    const bytes = new Uint8Array(crypto.randomBytes(3000));
    let release;
    const gate = new Promise((r) => { release = r; });
    const { fetchImpl: serve } = fakeOrigin(bytes);
    // the origin answers Range requests only once `release` is called
    const fetchImpl = async (url, init = {}) => (init.method === 'HEAD' ? serve(url, init) : gate.then(() => serve(url, init)));
    const c = client({ fetch: fetchImpl, blockSize: 1024, p2pWaitMs: 0 });
    try {
      const ac = new AbortController();
      const first = c.fetch('https://cdn.example/shared.bin', { signal: ac.signal });
      const second = c.fetch('https://cdn.example/shared.bin');
      // both callers wait on the one resource before the first gives up
      await until(() => c.resources.get('https://cdn.example/shared.bin')?.waiters === 2, { what: 'two callers waiting on the resource' });
      ac.abort();
      await assert.rejects(first, { name: 'AbortError' });
      release();
      const res = await second.catch((e) => assert.fail(`the other caller's fetch failed too: ${e.name}: ${e.message}`));
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    } finally {
      release();
      c.close();
    }
  });
});
