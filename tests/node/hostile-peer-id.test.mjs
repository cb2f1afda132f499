// WebTorrent peer_ids against the real daemon. peer_ids travel in every offer, so anyone in a
// swarm knows them: a peer_id belongs to the socket that announced it into the swarm. While
// that socket is open and re-announces it, another socket can't take it over (its announce
// gets a warning), stop it, or receive answers meant for it; the client itself, back on a new
// socket, takes it again once the old socket closed or fell silent for tracker.interval_s plus
// tracker.reannounce_grace_s.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Daemon } from './lib/daemon.mjs';
import { scrape, until } from './lib/proc.mjs';
import { WsClient } from './lib/ws-client.mjs';
import * as wt from './lib/wt.mjs';

const is = WsClient.is;
// "Nothing more arrives" can only be observed for a while; 300 ms is far beyond loopback
// latency for messages that were sent.
const QUIET_MS = 300;
const IN_USE = 'peer_id is in use by another connection';

const open = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

async function connect(d) {
  const c = await WsClient.open(d.wsUrl);
  open.push(c);
  return c;
}

// The reply to an announce: the announce response, or the warning about it.
async function announce(c, infoHash, peerId, opts = {}) {
  await c.send(wt.announce(infoHash, peerId, opts));
  return c.next({
    filter: (j) => is('announce', infoHash)(j) || is('error', infoHash)(j),
    what: `reply to the announce of ${wt.hexOf(peerId)}`,
  });
}

// A new socket that announced a peer of its own into infoHash.
async function member(d, infoHash) {
  const c = await connect(d);
  c.peerId = wt.randomId();
  const res = await announce(c, infoHash, c.peerId);
  assert.equal(res['failure reason'], undefined);
  return c;
}

function assertRefused(reply, infoHash) {
  // The shape with info_hash: the reference client only warns and keeps its socket.
  assert.deepEqual(reply, { action: 'announce', info_hash: infoHash, 'failure reason': IN_USE });
}

const refusals = async (d) =>
  (await scrape(d)).get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'peer_id_in_use' });
const webtorrentConnections = async (d) => (await scrape(d)).get('swarmcoord_connections', { protocol: 'webtorrent' });

describe('a peer_id whose socket is alive', () => {
  let d;
  before(async () => { d = await Daemon.start(['--set', 'server.threads=2']); });
  after(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
    assert.deepEqual(await d?.stop(), { code: 0, signal: null });
  });

  it('is refused to another socket, which can neither take its offers, stop it nor get its answers', async () => {
    const ih = wt.randomId();
    const a = await member(d, ih);
    const b = await member(d, ih);
    const c = await member(d, ih);
    const refused0 = await refusals(d);

    // B learns A's peer_id the way anyone in the swarm does: from an offer of A's.
    const first = wt.offers(2, 'a');
    await announce(a, ih, a.peerId, { event: null, offerList: first });
    const seen = await b.next({ filter: is('offer', ih), what: 'an offer of A at B' });
    assert.equal(seen.peer_id, a.peerId);
    const atC = await c.next({ filter: is('offer', ih), what: 'an offer of A at C' });

    // B announces A's peer_id from its own socket, with offers: a warning, nothing relayed.
    assertRefused(await announce(b, ih, a.peerId, { event: 'started', offerList: wt.offers(3, 'b') }), ih);
    assertRefused(await announce(b, ih, a.peerId, { event: null, left: 0 }), ih);
    assert.deepEqual(await c.collectFor(QUIET_MS, is('offer', ih)), [], 'no offer of B\'s under A\'s peer_id');
    await until(async () => (await refusals(d)) === refused0 + 2, { what: 'two refusals counted' });
    // B's socket is fine: its own peer is served, and the swarm still counts three leechers.
    const own = await announce(b, ih, b.peerId, { event: null });
    assert.deepEqual([own.complete, own.incomplete], [0, 3]);

    // C's answer to A's offer reaches A's socket, not B's.
    await c.send(wt.answer(ih, c.peerId, a.peerId, atC.offer_id));
    const answer = await a.next({ filter: is('answer', ih), what: 'C\'s answer at A' });
    assert.deepEqual([answer.peer_id, answer.offer_id], [c.peerId, atC.offer_id]);

    // B's stopped for A's peer_id is answered with the counts and evicts nobody.
    const stopped = await announce(b, ih, a.peerId, { event: 'stopped' });
    assert.deepEqual([stopped.complete, stopped.incomplete], [0, 3]);

    // C's offers still reach A (and B, as itself): two peers, two offers.
    const fromC = wt.offers(2, 'c');
    await announce(c, ih, c.peerId, { event: null, offerList: fromC });
    const toA = await a.next({ filter: is('offer', ih), what: 'an offer of C at A' });
    const toB = await b.next({ filter: is('offer', ih), what: 'an offer of C at B' });
    assert.deepEqual([toA.peer_id, toB.peer_id], [c.peerId, c.peerId]);
    // A answers from its socket; C gets it.
    await a.send(wt.answer(ih, a.peerId, c.peerId, toA.offer_id));
    assert.equal((await c.next({ filter: is('answer', ih), what: 'A\'s answer at C' })).peer_id, a.peerId);
    // B answering in A's name is dropped: C hears nothing of it.
    await b.send(wt.answer(ih, a.peerId, c.peerId, toB.offer_id));
    assert.deepEqual(await c.collectFor(QUIET_MS, is('answer', ih)), []);
    assert.deepEqual(await b.collectFor(0, is('answer', ih)), [], 'no answer reached B');
    assert.ok(a.isOpen && b.isOpen && c.isOpen);
  });

  it('is taken by the reconnecting client once its old socket closed', async () => {
    const ih = wt.randomId();
    const old = await member(d, ih);
    const c = await member(d, ih);
    const fresh = await connect(d);
    assertRefused(await announce(fresh, ih, old.peerId, { event: null }), ih);

    const before = await webtorrentConnections(d);
    await old.close();
    // Once the old socket is gone from the gauge, its close has been handed to the shard
    // ahead of any later announce.
    await until(async () => (await webtorrentConnections(d)) === before - 1, { what: 'the old socket to close' });
    const res = await announce(fresh, ih, old.peerId, { event: null });
    assert.equal(res['failure reason'], undefined);
    assert.deepEqual([res.complete, res.incomplete], [0, 2]);

    // Offers to the peer go to its new socket; its answer from there is relayed.
    const [offer] = wt.offers(1, 'c');
    await announce(c, ih, c.peerId, { event: null, offerList: [offer] });
    const got = await fresh.next({ filter: is('offer', ih), what: 'C\'s offer on the new socket' });
    assert.equal(got.offer_id, offer.offer_id);
    await fresh.send(wt.answer(ih, old.peerId, c.peerId, offer.offer_id));
    assert.equal((await c.next({ filter: is('answer', ih), what: 'the answer from the new socket' })).peer_id, old.peerId);
  });

  it('is the socket\'s own in one swarm only: the same peer_id elsewhere is another peer', async () => {
    const [ih, other] = wt.randomIds(2);
    const a = await member(d, ih);
    const b = await connect(d);
    assertRefused(await announce(b, ih, a.peerId), ih);
    const res = await announce(b, other, a.peerId);
    assert.deepEqual([res.info_hash, res.incomplete], [other, 1]);
  });
});

describe('a peer_id whose socket fell silent', () => {
  // The shortest interval and no grace: the silence the test waits for is 10 s.
  const INTERVAL_S = 10;
  let d;
  before(async () => {
    d = await Daemon.start(['--set', `tracker.interval_s=${INTERVAL_S}`, '--set', 'tracker.reannounce_grace_s=0']);
  });
  after(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
    assert.deepEqual(await d?.stop(), { code: 0, signal: null });
  });

  it('is taken by the reconnecting client after interval_s plus the grace, then refused to the old socket', async () => {
    const ih = wt.randomId();
    const c = await member(d, ih);
    const old = await member(d, ih);
    const lastAnnounce = Date.now();
    // The old socket stays open (it answers pings) but announces nothing more, as a dead
    // connection the transport has not closed yet; its client is back on a new socket.
    const fresh = await connect(d);
    assertRefused(await announce(fresh, ih, old.peerId, { event: null }), ih);
    const res = await until(async () => {
      const r = await announce(fresh, ih, old.peerId, { event: null });
      return r['failure reason'] === undefined ? r : null;
    }, { timeoutMs: INTERVAL_S * 1000 + 5000, intervalMs: 200, what: 'the peer_id to move to the new socket' });
    assert.ok(Date.now() - lastAnnounce >= INTERVAL_S * 1000, 'not before the owner was silent for interval_s');
    assert.deepEqual([res.complete, res.incomplete], [0, 2]);

    // The old socket has lost it: its announce is refused now, and offers go to the new one.
    assertRefused(await announce(old, ih, old.peerId, { event: null }), ih);
    const [offer] = wt.offers(1, 'c');
    await announce(c, ih, c.peerId, { event: null, offerList: [offer] });
    assert.equal((await fresh.next({ filter: is('offer', ih), what: 'the offer on the new socket' })).offer_id,
      offer.offer_id);
    assert.deepEqual(await old.collectFor(QUIET_MS, is('offer', ih)), []);
  });
});
