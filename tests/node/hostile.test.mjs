// Hostile clients against the real daemon. Every case checks that the offender gets an error
// reply or a closed socket, that the daemon stays up, and that well-behaved peers in the same
// swarm are still served afterwards (announce answered, offer and answer relayed).
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { Daemon } from './lib/daemon.mjs';
import { scrape, until } from './lib/proc.mjs';
import { WsClient, rawExchange, rawWebSocket, tcpConnect, upgradeStatus, withTimeout } from './lib/ws-client.mjs';
import * as wt from './lib/wt.mjs';

const is = WsClient.is;
const MAX_MESSAGE_BYTES = 512 * 1024;
const MAX_PROTOCOL_ERRORS = 50;
// "Nothing more arrives" can only be observed for a while; 300 ms is far beyond loopback
// latency for messages that were sent.
const QUIET_MS = 300;

let d;
let metrics0;
const open = [];

before(async () => {
  d = await Daemon.start(['--set', 'server.threads=2',
    '--set', `server.max_message_bytes=${MAX_MESSAGE_BYTES}`,
    '--set', `server.max_protocol_errors=${MAX_PROTOCOL_ERRORS}`]);
  metrics0 = await scrape(d);
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

after(async () => {
  if (!d) return;
  const { code, signal } = await d.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, 'a clean exit after all that');
});

async function connect(url = d.wsUrl, options = {}) {
  const c = await WsClient.open(url, options);
  open.push(c);
  return c;
}

async function announce(c, infoHash, peerId, opts = {}) {
  await c.send(wt.announce(infoHash, peerId, opts));
  return c.next({ filter: is('announce', infoHash), what: 'announce response' });
}

// Two well-behaved peers in a fresh swarm, and the offender's socket, which first joins the
// same swarm with a peer of its own (unless join is false).
async function scene({ join = true } = {}) {
  const ih = wt.randomId();
  const good = [];
  for (let i = 0; i < 2; i++) {
    const c = await connect();
    c.peerId = wt.randomId();
    assert.equal((await announce(c, ih, c.peerId)).info_hash, ih);
    good.push(c);
  }
  const bad = await connect();
  if (join) await announce(bad, ih, wt.randomId());
  return { ih, good, bad };
}

// The daemon is up and serves the swarm: good[0] announces with ten offers (more than the
// other peers of the swarm, so good[1] gets one), good[1] answers it, good[0] gets the answer;
// a new client can connect and announce too.
async function assertServed({ ih, good: [a, b] }) {
  assert.equal(d.proc.exitCode, null, `daemon exited:\n${d.log}`);
  assert.equal((await fetch(`http://${d.public}/healthz`)).status, 200);
  const offerList = wt.offers(10);
  const res = await announce(a, ih, a.peerId, { event: null, offerList });
  assert.equal(res.info_hash, ih);
  const offer = await b.next({ filter: (j) => is('offer', ih)(j) && j.peer_id === a.peerId, what: 'offer from the good peer' });
  assert.ok(offerList.some((o) => o.offer_id === offer.offer_id));
  await b.send(wt.answer(ih, b.peerId, a.peerId, offer.offer_id));
  const ans = await a.next({ filter: (j) => is('answer', ih)(j) && j.offer_id === offer.offer_id, what: 'answer relay' });
  assert.equal(ans.peer_id, b.peerId);
  const fresh = await connect();
  assert.equal((await announce(fresh, wt.randomId(), wt.randomId())).incomplete, 1);
  await fresh.close();
}

// Resolves 'error' with the reply, or 'closed' with the close info, whichever comes first.
async function errorOrClose(c, what) {
  const reply = c.take(is('error'));
  try {
    return await withTimeout(Promise.race([
      reply.promise.then((msg) => ({ kind: 'error', msg }), () => c.closed.then((info) => ({ kind: 'closed', info }))),
      c.closed.then((info) => ({ kind: 'closed', info })),
    ]), 5000, `error reply or close after ${what}`);
  } finally {
    reply.cancel();
  }
}

// Sends each message and expects exactly `expected(msg)` back; the socket stays open.
async function expectReplies(c, cases) {
  for (const [msg, want] of cases) {
    await c.send(msg);
    const r = await errorOrClose(c, JSON.stringify(msg).slice(0, 80));
    assert.equal(r.kind, 'error', `${JSON.stringify(msg).slice(0, 80)} closed the socket: ${JSON.stringify(r.info)}`);
    if (typeof want === 'function') want(r.msg, msg);
    else assert.deepEqual(r.msg, want, `reply to ${JSON.stringify(msg).slice(0, 80)}`);
  }
}

const noAction = (re) => (reply) => {
  assert.deepEqual(Object.keys(reply), ['failure reason']);
  assert.match(reply['failure reason'], re);
};

describe('malformed messages', () => {
  it('answers malformed JSON with a parse error and keeps the socket', async () => {
    const s = await scene();
    const inputs = ['{', '{"action":"announce",', 'nul', '{"a":1}}', '\u0000', '', ' ', '{"a":é}', 'é',
      '{"action":"announce","info_hash":"\\ud800"}', '{"action":"scrape",}', '{\'action\':\'scrape\'}',
      'NaN', '1e400', '{"action":"announce"' + ',"x":1'.repeat(1000)];
    await expectReplies(s.bad, inputs.map((m) => [m, noAction(/parse error|syntax error|surrogate|invalid|overflow/)]));
    await assertServed(s);
  });

  it('answers JSON that is not an object', async () => {
    const s = await scene();
    const inputs = ['5', '[]', '"x"', 'null', 'true', '1.5e300', '[{"action":"scrape"}]', '-0', '"\\u0000"'];
    await expectReplies(s.bad, inputs.map((m) => [m, { 'failure reason': 'invalid action in WS request: undefined' }]));
    await assertServed(s);
  });

  it('answers fields of the wrong type', async () => {
    const s = await scene();
    const { ih } = s;
    const pid = wt.randomId();
    const warn = (text) => ({ action: 'announce', 'failure reason': text, info_hash: ih });
    const invalidInfoHash = { 'failure reason': 'invalid info_hash' };
    await expectReplies(s.bad, [
      [{ action: 'scrape', info_hash: 5 }, invalidInfoHash],
      [{ action: 'scrape', info_hash: [ih, 5] }, invalidInfoHash],
      [{ action: 'scrape', info_hash: { a: ih } }, invalidInfoHash],
      [{ action: 'scrape', info_hash: Array(257).fill(ih) }, noAction(/too many info_hash/)],
      [{ action: 'announce', info_hash: 5, peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: [ih], peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: { ih }, peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: null, peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: ih.slice(1), peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: `\u20ac${ih.slice(1)}`, peer_id: pid }, invalidInfoHash],
      [{ action: 'announce', info_hash: ih, peer_id: pid.slice(1) }, warn('invalid peer_id')],
      [{ action: 'announce', info_hash: ih, peer_id: `${pid}x` }, warn('invalid peer_id')],
      [{ action: 'announce', info_hash: ih, peer_id: 7 }, warn('invalid peer_id')],
      [{ action: 'announce', info_hash: ih }, warn('invalid peer_id')],
      [{ ...wt.answer(ih, pid, wt.randomId(), wt.randomId()), to_peer_id: undefined },
        warn('invalid `to_peer_id` (required with `answer`)')],
      [{ ...wt.answer(ih, pid, wt.randomId(), wt.randomId()), to_peer_id: 5 },
        warn('invalid `to_peer_id` (required with `answer`)')],
      [{ ...wt.answer(ih, pid, wt.randomId(), wt.randomId()), offer_id: undefined }, warn('invalid `offer_id` (required with `answer`)')],
      [{ ...wt.answer(ih, pid, wt.randomId(), wt.randomId()), answer: 'sdp' }, warn('invalid `answer` (must be an object)')],
      [{ ...wt.announce(ih, pid), event: 'bogus' }, warn('invalid event')],
      [{ ...wt.announce(ih, pid), event: 5 }, warn('invalid event')],
      [{ action: 5 }, { 'failure reason': 'invalid action in WS request: 5' }],
      [{ action: { a: 1 } }, { 'failure reason': 'invalid action in WS request: {"a":1}' }],
      [{ action: `x${'é'.repeat(100)}` }, noAction(/^invalid action in WS request: xé+/)],
    ]);
    await assertServed(s);
  });

  it('accepts an announce whose offers are not an array or hold garbage, relaying only valid offers', async () => {
    const s = await scene();
    const { ih, bad } = s;
    const pid = wt.randomId();
    for (const offers of ['x', 5, { offer: {} }, null]) {
      const res = await announce(bad, ih, pid, { extra: { offers } });
      assert.equal(res.incomplete, 4, `offers: ${JSON.stringify(offers)}`);
    }
    const [valid] = wt.offers(1);
    const garbage = [5, null, 'x', [], {}, { offer: 5, offer_id: wt.randomId() }, { offer: {}, offer_id: 5 },
      { offer: {}, offer_id: 'short' }, { offer_id: wt.randomId() }, { fake_offer: 'fake_offer_0' }];
    const before = await scrape(d);
    const res = await announce(bad, ih, pid, { event: null, extra: { offers: [...garbage, valid] } });
    assert.equal(res.incomplete, 4);
    const after = await scrape(d);
    assert.equal(after.get('swarmcoord_offers_relayed_total') - before.get('swarmcoord_offers_relayed_total'), 1);
    assert.equal(after.get('swarmcoord_offers_unrelayed_total') - before.get('swarmcoord_offers_unrelayed_total'), garbage.length);
    // Bounded wait: only the valid offer reaches a peer, no garbage one.
    const relayed = [];
    for (const g of s.good) relayed.push(...await g.collectFor(QUIET_MS, (j) => is('offer', ih)(j) && j.peer_id === pid));
    assert.equal(relayed.length, 1);
    assert.deepEqual(relayed[0], { action: 'announce', offer: valid.offer, offer_id: valid.offer_id, peer_id: pid, info_hash: ih });
    for (const g of s.good) g.drain();
    await assertServed(s);
  });
});

describe('hostile framing', () => {
  it('rejects JSON nested 50000 deep within the size limit', async () => {
    const s = await scene();
    const depth = 50000;
    const arrays = '['.repeat(depth) + ']'.repeat(depth);
    const objects = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const inOffer = JSON.stringify(wt.announce(s.ih, wt.randomId(), { offerList: wt.offers(1) }))
      .replace('"offer":{', `"offer":{"deep":${'['.repeat(depth)}${']'.repeat(depth)},`);
    for (const m of [arrays, objects, inOffer]) assert.ok(Buffer.byteLength(m) < MAX_MESSAGE_BYTES);
    await expectReplies(s.bad, [arrays, objects, inOffer].map((m) => [m, noAction(/nested deeper/)]));
    // The deep offer was not relayed.
    assert.deepEqual(await s.good[0].collectFor(QUIET_MS, is('offer')), []);
    assert.deepEqual(s.good[1].queue, []);
    await assertServed(s);
  });

  it('closes with 1009 on frames over max_message_bytes, fragmented or not', async () => {
    const s = await scene();
    const tooBig = () => scrape(d).then((m) => m.get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'message_too_big' }));
    const big0 = await tooBig();
    // A frame header announcing more than the limit, sent alone on a hand-made socket: the
    // close frame with 1009 is all that comes back.
    const raw = await rawWebSocket(d.public, '/');
    let reply = Buffer.alloc(0);
    raw.socket.on('data', (c) => { reply = Buffer.concat([reply, c]); });
    const header = Buffer.alloc(14);
    header[0] = 0x81;  // FIN, text
    header[1] = 0x80 | 127;  // masked, 64-bit length
    header.writeBigUInt64BE(BigInt(MAX_MESSAGE_BYTES + 1), 2);
    crypto.randomFillSync(header, 10, 4);  // mask key
    raw.socket.write(header);
    await withTimeout(until(() => reply.length >= 4), 5000, 'close frame');
    assert.equal(reply[0], 0x88, 'a close frame');
    assert.equal(reply.readUInt16BE(2), 1009);
    raw.socket.end();
    await withTimeout(raw.closed, 5000, 'raw socket closed');

    // Whole frames from a real client. Beast 1.81 tears the connection down with the rest of
    // the frame still unread, so the kernel resets it and the client may see 1006 instead of
    // the 1009 close frame sent before; either way the connection is gone.
    // (The send itself may fail with EPIPE: the server stops reading.)
    s.bad.ws.send(JSON.stringify({ action: 'scrape', pad: 'x'.repeat(MAX_MESSAGE_BYTES) }), () => {});
    assert.ok([1009, 1006].includes((await s.bad.waitClose()).code));
    // Many fragments, each small, adding up to more than the limit.
    const frag = await connect();
    const chunk = 'x'.repeat(64 * 1024);
    const sends = [];
    for (let i = 0; i < 10; i++) {
      sends.push(new Promise((resolve) => frag.ws.send(chunk, { fin: i === 9 }, () => resolve())));
    }
    assert.ok([1009, 1006].includes((await frag.waitClose()).code));
    await Promise.all(sends);
    // The client can see the reset before the server has counted the error.
    await until(async () => (await tooBig()) === big0 + 3, { what: 'three message_too_big errors counted' });
    await assertServed(s);
  });

  it('answers binary frames of random garbage with a valid UTF-8 error reply', async () => {
    const s = await scene();
    for (let i = 0; i < 20; i++) {
      // Its first byte above 0x7f: random bytes may otherwise happen to be valid JSON ("7").
      const garbage = crypto.randomBytes(1 + Math.floor(Math.random() * 2000));
      garbage[0] |= 0x80;
      await s.bad.send(garbage);
      const r = await errorOrClose(s.bad, 'a binary frame');
      // The ws client fails a connection on a text frame that is not UTF-8: a 'closed' here
      // with code 1006 means the daemon sent one.
      assert.equal(r.kind, 'error', `closed: ${JSON.stringify(r.info)} ${s.bad.errors}`);
      assert.match(r.msg['failure reason'], /parse error|nested/);
    }
    await assertServed(s);
  });

  it('closes with 1007 on invalid UTF-8 in a text frame', async () => {
    const s = await scene();
    await s.bad.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), { binary: false });
    const r = await errorOrClose(s.bad, 'invalid UTF-8');
    assert.equal(r.kind, 'closed');
    assert.equal(r.info.code, 1007);
    // An overlong encoding and a lone surrogate (CESU) are invalid too.
    for (const bytes of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const c = await connect();
      await c.send(Buffer.from([0x22, ...bytes, 0x22]), { binary: false });
      assert.equal((await c.waitClose()).code, 1007);
    }
    await assertServed(s);
  });

  it(`closes with 1008 after ${MAX_PROTOCOL_ERRORS} invalid messages in a row`, async () => {
    const s = await scene();
    for (let i = 0; i < 1000; i++) s.bad.ws.send(`bad ${i}`);
    const { code } = await s.bad.waitClose(10000);
    assert.equal(code, 1008);
    const replies = s.bad.queue.filter((m) => m.json && 'failure reason' in m.json);
    assert.equal(replies.length, MAX_PROTOCOL_ERRORS, 'one reply per error up to the limit, then the close');
    await assertServed(s);
  });

  it('counts only errors in a row: a valid message resets the count', async () => {
    const s = await scene();
    const { bad, ih } = s;
    const burst = async (n) => {
      for (let i = 0; i < n; i++) bad.ws.send('{');
      for (let i = 0; i < n; i++) await bad.next({ filter: is('error'), what: `error reply ${i}` });
    };
    await burst(MAX_PROTOCOL_ERRORS - 1);
    await bad.send({ action: 'scrape', info_hash: ih });
    await bad.next({ filter: is('scrape'), what: 'scrape reply' });
    await burst(MAX_PROTOCOL_ERRORS - 1);
    await bad.send({ action: 'scrape', info_hash: ih });
    await bad.next({ filter: is('scrape'), what: 'scrape reply' });
    assert.equal(bad.closeInfo, null);
    await assertServed(s);
  });
});

describe('floods', () => {
  it('keeps serving others through 200 announces with 10 offers each', async () => {
    const s = await scene({ join: false });
    const { bad, ih } = s;
    const floodIds = Array.from({ length: 5 }, () => wt.randomId());
    const before = await scrape(d);
    for (let i = 0; i < 200; i++) {
      bad.ws.send(JSON.stringify(wt.announce(ih, floodIds[i % 5], { event: i < 5 ? 'started' : null, offerList: wt.offers(10, 'flood') })));
    }
    // While the flood is being worked through, a client elsewhere is answered.
    const other = await connect();
    assert.equal((await announce(other, wt.randomId(), wt.randomId())).incomplete, 1);
    for (let i = 0; i < 200; i++) await bad.next({ filter: is('announce', ih), what: `flood response ${i}`, timeoutMs: 10000 });
    const after = await scrape(d);
    const relayed = after.get('swarmcoord_offers_relayed_total') - before.get('swarmcoord_offers_relayed_total');
    // Relays per flood peer_id are bounded by its unanswered offers (4 x tracker.max_offers).
    assert.ok(relayed > 0 && relayed <= 5 * 40, `relayed ${relayed}`);
    await assertServed(s);
  });

  it('caps the peers one connection may announce', async () => {
    const s = await scene({ join: false });
    const { bad, ih } = s;
    for (let i = 0; i < 150; i++) bad.ws.send(JSON.stringify(wt.announce(ih, wt.randomId())));
    let ok = 0;
    let refused = 0;
    for (let i = 0; i < 150; i++) {
      const m = await bad.next({ filter: (j) => j?.info_hash === ih, what: `reply ${i}` });
      if ('failure reason' in m) {
        assert.match(m['failure reason'], /too many/);
        refused += 1;
      } else {
        ok += 1;
      }
    }
    assert.deepEqual({ ok, refused }, { ok: 100, refused: 50 });
    // Its hundred peers would take most offers; they leave with the socket.
    await bad.close();
    await until(async () => {
      const st = await d.stats();
      return !st.top_swarms.some((t) => t.info_hash === wt.hexOf(ih) && t.peers > 2);
    }, { what: 'the capped connection\'s peers to leave' });
    await assertServed(s);
  });
});

describe('hostile HTTP', () => {
  it('drops random bytes, oversized headers and bodies on the public port', async () => {
    const s = await scene();
    const cases = {
      'random bytes': crypto.randomBytes(4096),
      'header over 8 KiB': `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10000)}\r\n\r\n`,
      'upgrade with a header over 8 KiB': 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        `X-Big: ${'a'.repeat(10000)}\r\n\r\n`,
      'body over the limit': `POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(100000)}`,
      'bad request line': 'GARBAGE\r\n\r\n',
      'bad chunked body': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    };
    for (const [name, data] of Object.entries(cases)) {
      const r = await rawExchange(d.public, data, { timeoutMs: 5000 });
      assert.ok(r.closedByServer, `${name}: the server closes the connection`);
      const text = r.data.toString('latin1');
      assert.ok(text === '' || /^HTTP\/1\.1 [45]\d\d /.test(text), `${name}: no success reply, got ${text.slice(0, 80)}`);
    }
    await assertServed(s);
  });

  it('answers 100 pipelined requests on one connection', async () => {
    const s = await tcpConnect(d.public);
    let text = '';
    s.on('data', (c) => { text += c.toString(); });
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(99) + 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await withTimeout(new Promise((r) => s.once('close', r)), 5000, 'pipelined responses');
    assert.equal(text.match(/HTTP\/1\.1 200 OK/g)?.length, 100);
  });

  it('keeps serving while slowloris connections hold partial requests', async () => {
    const s = await scene();
    const sockets = [];
    try {
      for (let i = 0; i < 50; i++) {
        const sock = await tcpConnect(d.public);
        sock.on('error', () => {});
        sock.write(i % 2 ? 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ' : 'GET / HTTP/1.1\r\nUpgrade: websocket\r\n');
        sockets.push(sock);
      }
      // One more dribbles a byte at a time while the others wait (bounded: 20 bytes).
      const dribble = await tcpConnect(d.public);
      dribble.on('error', () => {});
      sockets.push(dribble);
      for (const ch of 'GET /healthz HTTP/1.1') {
        dribble.write(ch);
        await assertServedQuick();
      }
      await assertServed(s);
      // The server's 30 s request timeout is not waited for here.
      assert.ok(sockets.every((x) => !x.destroyed), 'partial requests are still pending, not answered');
    } finally {
      for (const x of sockets) x.destroy();
    }
  });

  it('refuses WebSocket upgrades to unknown paths (404) and /v1/ws (501)', async () => {
    const s = await scene();
    assert.equal(await upgradeStatus(`${d.wsUrl}/nope`), 404);
    assert.equal(await upgradeStatus(`${d.wsUrl}/announce/x`), 404);
    // /v1/ws is the native protocol: 501 while it is not served; once it is, it must not
    // speak WebTorrent to a WebTorrent client.
    const native = await upgradeStatus(`${d.wsUrl}/v1/ws`);
    assert.ok([501, 101].includes(native), `/v1/ws upgrade: ${native}`);
    if (native === 101) {
      const c = await connect(`${d.wsUrl}/v1/ws`);
      await c.send(wt.announce(s.ih, wt.randomId()));
      // Whatever the native protocol answers (an error of its own, or a close), it is not a
      // WebTorrent announce response.
      const reply = await Promise.race([c.next({ what: 'reply on /v1/ws' }).catch(() => null), c.closed.then(() => null)]);
      assert.ok(reply === null || reply.action !== 'announce', `reply on /v1/ws: ${JSON.stringify(reply)}`);
    }
    assert.equal(await upgradeStatus(`ws://${d.admin}/`), 404, 'no WebSocket on the admin port');
    // A handshake with a wrong version is refused, not upgraded.
    const sock = await tcpConnect(d.public);
    sock.on('error', () => {});
    let text = '';
    sock.on('data', (c) => { text += c; });
    sock.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n');
    await withTimeout(new Promise((r) => sock.once('close', r)), 5000, 'refused handshake');
    assert.match(text, /^HTTP\/1\.1 (400|426) /);
    // A hand-made handshake that is right gets 101.
    const raw = await rawWebSocket(d.public, '/announce');
    assert.match(raw.response, /^HTTP\/1\.1 101 /);
    raw.socket.destroy();
    await assertServed(s);
  });
});

// /healthz and a fresh announce, without touching a swarm's offer budget.
async function assertServedQuick() {
  assert.equal(d.proc.exitCode, null);
  assert.equal((await fetch(`http://${d.public}/healthz`)).status, 200);
}

describe('aftermath', () => {
  it('counted the protocol errors by reason', async () => {
    const m = await scrape(d);
    const moved = (reason) => m.get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason }) -
      metrics0.get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason });
    // At least what the cases above sent (some cases run more than once per reason).
    const want = {
      bad_json: 15 + 3 + 20 + MAX_PROTOCOL_ERRORS, not_an_object: 9, invalid_action: 3, invalid_info_hash: 9,
      invalid_peer_id: 4, invalid_to_peer_id: 2, invalid_offer_id: 2, invalid_event: 2,
      too_many_info_hashes: 1, too_many_peers: 50, message_too_big: 3,
    };
    const got = Object.fromEntries(Object.keys(want).map((r) => [r, moved(r)]));
    for (const r of Object.keys(want)) assert.ok(got[r] >= want[r], `${r}: moved ${got[r]}, want >= ${want[r]}; all: ${JSON.stringify(got)}`);
  });

  it('logged no unhandled exception and is still up', async () => {
    assert.equal(d.proc.exitCode, null);
    assert.doesNotMatch(d.log, /unhandled exception|critical/);
    const st = await d.stats();
    assert.equal(st.draining, false);
  });
});
