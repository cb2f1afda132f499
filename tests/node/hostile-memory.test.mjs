// Swarm filling against the real daemon: clients that open swarms until a global cap is
// reached (WebTorrent swarms, native swarms, the bytes of native block maps). Each cap is set
// small; past it the filler gets a clear refusal (server_full), counted in
// swarmcoord_limited_total{limit}, while the swarms that exist keep working (a newcomer joins
// one and its signaling is relayed); once the fillers leave, new swarms can be opened again.
// Every daemon runs two workers, so that the swarms of one cap are spread over both.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Daemon } from './lib/daemon.mjs';
import { scrape, until } from './lib/proc.mjs';
import { WsClient } from './lib/ws-client.mjs';
import { NativeClient, freshSwarm, isError, isType } from './lib/native-client.mjs';
import * as wt from './lib/wt.mjs';

const is = WsClient.is;
const GiB = 1024 * 1024 * 1024;
const BLOCK = 64 * 1024;
// A 1 GiB resource in 64 KiB blocks: 16,384 one-byte counts and a 2,048-byte bitfield.
const NEW_SWARM_BYTES = 16384 + 2048;
const MEMBER_BYTES = 2048;

const open = [];
let d;

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  if (!d) return;
  const { code, signal } = await d.stop();
  d = undefined;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, 'a clean exit');
});

async function start(sets) {
  d = await Daemon.start(['--set', 'server.threads=2', ...sets.flatMap((s) => ['--set', s])]);
  return d;
}

let addr = 0;
const nextAddress = () => { addr += 1; return `127.5.${(addr >> 8) & 255}.${addr & 255}`; };

async function native() {
  const c = await NativeClient.connect(d, { localAddress: nextAddress() });
  open.push(c);
  return c;
}

// Sends a join and resolves with its reply: joined, or the error about that swarm.
async function tryJoin(c, url, { size = GiB, block_size = BLOCK, have } = {}) {
  const msg = { type: 'join', swarm: url, size, block_size };
  if (have !== undefined) msg.have = have;
  await c.send(msg);
  return c.next((j) => (isType('joined')(j) || isError()(j)) && j.swarm === url, `reply to the join of ${url}`);
}

// Client c (a newcomer unless given) joins the swarm `url` of 1 GiB that `keeper` (a seed) is
// in, is linked to it, and a signal goes from c to the keeper.
async function assertSwarmWorks(keeper, url, c = undefined) {
  c ??= await native();
  const { joined, neighbors } = await c.join(url, { size: GiB, block_size: BLOCK });
  assert.ok(neighbors.add.some((n) => n.peer_id === keeper.peerId), `the newcomer is linked to the keeper of ${url}`);
  await c.send({ type: 'signal', swarm: url, to: keeper.peerId, data: { type: 'offer', sdp: 'v=0' } });
  const got = await keeper.next((j) => isType('signal', joined.swarm)(j) && j.from === c.peerId, 'the relayed offer');
  assert.deepEqual(got.data, { type: 'offer', sdp: 'v=0' });
  return c;
}

const limited = async (limit) => (await scrape(d)).get('swarmcoord_limited_total', { limit });

describe('native swarms: limits.max_swarms', () => {
  it('refuses new swarms past the cap across workers, keeps the others, and makes room when fillers leave', async () => {
    const CAP = 6;
    await start([`limits.max_swarms=${CAP}`, 'limits.max_swarms_per_connection=8']);
    const keeper = await native();
    const kept = freshSwarm('kept');
    await keeper.join(kept, { size: GiB, block_size: BLOCK, have: 'all' });

    // Two fillers try 8 fresh swarms each: 5 are opened in all, the other 11 refused.
    const fillers = [await native(), await native()];
    const replies = [];
    for (const f of fillers) for (let i = 0; i < 8; i += 1) replies.push(await tryJoin(f, freshSwarm('fill')));
    const opened = replies.filter((r) => r.type === 'joined');
    const refused = replies.filter((r) => r.type === 'error');
    assert.equal(opened.length, CAP - 1);
    assert.equal(refused.length, 16 - (CAP - 1));
    for (const r of refused) {
      assert.equal(r.code, 'server_full');
      assert.equal(r.ref, 'join');
      assert.match(r.message, /limits\.max_swarms/);
    }
    // Existing swarms go on: a newcomer joins one. The refusals took no slot of
    // limits.max_swarms_per_connection: the second filler, all 8 of whose joins were refused,
    // can still join one (at 8 slots taken it would get too_many_swarms).
    await assertSwarmWorks(keeper, kept);
    await assertSwarmWorks(keeper, kept, fillers[1]);
    const m = await scrape(d);
    assert.equal(m.get('swarmcoord_swarms', { protocol: 'native' }), CAP);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'native_swarms' }), refused.length);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'swarm_memory' }), 0);
    assert.equal(m.get('swarmcoord_protocol_errors_total', { protocol: 'native', reason: 'server_full' }), refused.length);

    // Still full for anyone.
    const late = await native();
    assert.equal((await tryJoin(late, freshSwarm('late'))).code, 'server_full');

    // The fillers go: their swarms go with them, and new swarms can be opened again.
    await Promise.all(fillers.map((f) => f.close()));
    await until(async () => (await scrape(d)).get('swarmcoord_swarms', { protocol: 'native' }) === 1,
      { what: 'the fillers\' swarms to go' });
    for (let i = 0; i < CAP - 1; i += 1) assert.equal((await tryJoin(late, freshSwarm('after'))).type, 'joined');
    assert.equal((await tryJoin(late, freshSwarm('after'))).code, 'server_full');
    assert.equal(await limited('native_swarms'), refused.length + 2);
  });
});

describe('native block maps: limits.max_swarm_memory_mb', () => {
  it('refuses joins that would grow the block maps past the cap, and counts the bytes', async () => {
    await start(['limits.max_swarm_memory_mb=1', 'limits.max_swarms_per_connection=16']);
    const CAP = 1024 * 1024;
    const keeper = await native();
    const kept = freshSwarm('kept');
    await keeper.join(kept, { size: GiB, block_size: BLOCK, have: 'all' });
    assert.equal((await scrape(d)).get('swarmcoord_swarm_memory_bytes'), NEW_SWARM_BYTES);

    // 1 MiB holds 56 one-member swarms of 1 GiB: the keeper's and 55 of the fillers'.
    const fits = Math.floor(CAP / NEW_SWARM_BYTES);
    const fillers = [];
    const replies = [];
    for (let f = 0; f < 4; f += 1) {
      const c = await native();
      fillers.push(c);
      for (let i = 0; i < 16; i += 1) replies.push(await tryJoin(c, freshSwarm('fill')));
    }
    const refused = replies.filter((r) => r.type === 'error');
    assert.equal(replies.length - refused.length, fits - 1);
    for (const r of refused) {
      assert.equal(r.code, 'server_full');
      assert.match(r.message, /limits\.max_swarm_memory_mb/);
    }
    let m = await scrape(d);
    assert.equal(m.get('swarmcoord_swarm_memory_bytes'), fits * NEW_SWARM_BYTES);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'swarm_memory' }), refused.length);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'native_swarms' }), 0);

    // A member more in an existing swarm needs only its bitfield, which still fits; a small
    // resource too, while a large one does not.
    const newcomer = await assertSwarmWorks(keeper, kept);
    assert.equal((await tryJoin(newcomer, freshSwarm('small'), { size: 4096, block_size: 1024 })).type, 'joined');
    assert.equal((await tryJoin(newcomer, freshSwarm('large'))).code, 'server_full');
    m = await scrape(d);
    assert.equal(m.get('swarmcoord_swarm_memory_bytes'), fits * NEW_SWARM_BYTES + MEMBER_BYTES + 4 + 8);

    // The fillers go; the room comes back.
    await Promise.all(fillers.map((f) => f.close()));
    await until(async () => (await scrape(d)).get('swarmcoord_swarm_memory_bytes') === NEW_SWARM_BYTES + MEMBER_BYTES + 4 + 8,
      { what: 'the fillers\' block maps to go' });
    assert.equal((await tryJoin(newcomer, freshSwarm('large'))).type, 'joined');
  });
});

describe('WebTorrent swarms: tracker.max_swarms', () => {
  it('answers announces past the cap with a failure reason, keeps the swarms, and makes room when fillers leave', async () => {
    const CAP = 5;
    const PEERS = 4;
    await start([`tracker.max_swarms=${CAP}`, `tracker.max_peers_per_connection=${PEERS}`]);
    const connect = async () => {
      const c = await WsClient.open(d.wsUrl, { localAddress: nextAddress() });
      open.push(c);
      return c;
    };
    const announce = async (c, ih, peerId, opts = {}) => {
      await c.send(wt.announce(ih, peerId, opts));
      return c.next({ filter: (j) => (is('announce', ih)(j) || is('error')(j)) && j.info_hash === ih, what: `reply for ${wt.hexOf(ih)}` });
    };
    const keeper = await connect();
    const keeperPeer = wt.randomId();
    const kept = wt.randomId();
    assert.ok('interval' in (await announce(keeper, kept, keeperPeer)));

    const filler = await connect();
    for (let i = 0; i < CAP - 1; i += 1) assert.ok('interval' in (await announce(filler, wt.randomId(), wt.randomId())));
    // Full. A second filler is refused every time with the error shape that names the
    // info_hash; a refused pair is released at once, so it never reaches its per-connection
    // cap (it would get too_many_peers after 4 otherwise).
    const second = await connect();
    for (let i = 0; i < 2 * PEERS; i += 1) {
      const ih = wt.randomId();
      const r = await announce(second, ih, wt.randomId());
      assert.equal(r['failure reason'], 'tracker is full: it holds as many torrents as it may (tracker.max_swarms)');
      assert.equal(r.action, 'announce');
      assert.equal(r.info_hash, ih);
    }
    let m = await scrape(d);
    assert.equal(m.get('swarmcoord_swarms', { protocol: 'webtorrent' }), CAP);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'webtorrent_swarms' }), 2 * PEERS);
    assert.equal(m.get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'server_full' }), 2 * PEERS);
    assert.equal(m.get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'too_many_peers' }), 0);

    // The existing swarm goes on: the second filler joins it, its offer reaches the keeper and
    // the keeper's answer comes back.
    const peer = wt.randomId();
    const offerList = wt.offers(1);
    assert.equal((await announce(second, kept, peer, { offerList })).incomplete, 2);
    const offer = await keeper.next({ filter: is('offer', kept), what: 'the offer' });
    await keeper.send(wt.answer(kept, keeperPeer, peer, offer.offer_id));
    assert.equal((await second.next({ filter: is('answer', kept), what: 'the answer' })).peer_id, keeperPeer);

    // The first filler goes; its swarms with it.
    await filler.close();
    await until(async () => (await scrape(d)).get('swarmcoord_swarms', { protocol: 'webtorrent' }) === 1,
      { what: 'the filler\'s swarms to go' });
    for (let i = 0; i < PEERS - 1; i += 1) assert.ok('interval' in (await announce(second, wt.randomId(), wt.randomId())));
    m = await scrape(d);
    assert.equal(m.get('swarmcoord_limited_total', { limit: 'webtorrent_swarms' }), 2 * PEERS);
  });
});
