// Integration tests: the real swarmcoord binary on loopback, driven over raw WebSocket and HTTP.
// Covers the HTTP endpoints and metrics, the WebTorrent tracker flows, sharding across workers,
// SIGTERM drain, config errors, connection limits, TLS and X-Forwarded-For.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { Daemon } from './lib/daemon.mjs';
import { runBinary, scrape, until } from './lib/proc.mjs';
import { WsClient, rawWebSocket, upgradeStatus, waitAny, withTimeout } from './lib/ws-client.mjs';
import * as wt from './lib/wt.mjs';

const is = WsClient.is;

// Every client a test opens, closed after the test whatever happened.
const open = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

async function connect(d, pathname = '/', options = {}) {
  const url = options.url ?? `${d.wsUrl}${pathname}`;
  const c = await WsClient.open(url, options);
  open.push(c);
  return c;
}

// Announces peerId in infoHash on client c and returns the announce response.
async function announce(c, infoHash, peerId, opts = {}) {
  await c.send(wt.announce(infoHash, peerId, opts));
  return c.next({ filter: is('announce', infoHash), what: `announce response for ${wt.hexOf(infoHash)}` });
}

// A new socket with one peer in infoHash; returns the client with .peerId set.
async function join(d, infoHash, { pathname = '/', options = {}, ...opts } = {}) {
  const c = await connect(d, pathname, options);
  c.peerId = wt.randomId();
  c.response = await announce(c, infoHash, c.peerId, opts);
  return c;
}

// Closes the test's clients first (a daemon stopped with clients open would drain them over
// server.drain_seconds), then stops the daemon.
async function stopDaemon(d) {
  await Promise.all(open.splice(0).map((c) => c.close()));
  await d?.stop();
}

async function scrapeVia(c, infoHash) {
  const msg = { action: 'scrape' };
  if (infoHash !== undefined) msg.info_hash = infoHash;
  await c.send(msg);
  return c.next({ filter: is('scrape'), what: 'scrape response' });
}

async function httpGet(url) {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

// Nothing must arrive: a negative can only be observed for a while. 300 ms is far beyond the
// sub-millisecond loopback latency of every message that did get sent in these tests.
const QUIET_MS = 300;

// ------------------------------------------------------------------------------------------
describe('HTTP endpoints and metrics', () => {
  let d;
  before(async () => { d = await Daemon.start(['--set', 'server.threads=2']); });
  after(async () => { await d?.stop(); });

  it('serves /healthz and /readyz on both listeners, 404 elsewhere', async () => {
    for (const host of [d.public, d.admin]) {
      assert.deepEqual(await httpGet(`http://${host}/healthz`), { status: 200, body: 'ok\n' });
      assert.deepEqual(await httpGet(`http://${host}/readyz`), { status: 200, body: 'ready\n' });
      assert.equal((await httpGet(`http://${host}/readyz?verbose=1`)).status, 200);
      assert.equal((await httpGet(`http://${host}/nope`)).status, 404);
      assert.equal((await httpGet(`http://${host}/healthz/x`)).status, 404);
    }
    // The public listener must not expose the admin endpoints.
    assert.equal((await httpGet(`http://${d.public}/metrics`)).status, 404);
    assert.equal((await httpGet(`http://${d.public}/stats`)).status, 404);
  });

  it('exposes every metric family with its labels', async () => {
    const m = await scrape(d);
    assert.equal(m.status, 200);
    const families = [
      'swarmcoord_connections', 'swarmcoord_connections_accepted_total',
      'swarmcoord_messages_received_total', 'swarmcoord_messages_sent_total', 'swarmcoord_swarms',
      'swarmcoord_peers', 'swarmcoord_offers_relayed_total', 'swarmcoord_answers_relayed_total',
      'swarmcoord_answers_dropped_total', 'swarmcoord_protocol_errors_total', 'swarmcoord_build_info',
      'swarmcoord_connections_rejected_total', 'process_resident_memory_bytes',
      'process_cpu_seconds_total', 'process_open_fds', 'process_start_time_seconds',
    ];
    for (const f of families) assert.ok(m.families.has(f), `# TYPE line for ${f}`);
    const has = (name, labels) =>
      assert.notEqual(m.get(name, labels), undefined, `${name}${JSON.stringify(labels)} in\n${m.text}`);
    for (const protocol of ['webtorrent', 'native']) {
      has('swarmcoord_connections', { protocol });
      has('swarmcoord_swarms', { protocol });
      for (const role of ['seeder', 'leecher']) has('swarmcoord_peers', { protocol, role });
    }
    for (const type of ['announce', 'answer', 'scrape', 'invalid']) {
      has('swarmcoord_messages_received_total', { protocol: 'webtorrent', type });
    }
    for (const type of ['announce', 'offer', 'answer', 'scrape', 'error']) {
      has('swarmcoord_messages_sent_total', { protocol: 'webtorrent', type });
    }
    for (const reason of ['unknown_offer', 'offerer_gone']) has('swarmcoord_answers_dropped_total', { reason });
    for (const reason of ['bad_json', 'not_an_object', 'invalid_action', 'invalid_info_hash', 'invalid_peer_id',
      'invalid_to_peer_id', 'invalid_offer_id', 'invalid_event', 'too_many_info_hashes', 'too_many_peers',
      'peer_id_in_use', 'message_too_big']) {
      has('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason });
    }
    has('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'server_full' });
    for (const limit of ['webtorrent_swarms', 'native_swarms', 'swarm_memory']) has('swarmcoord_limited_total', { limit });
    has('swarmcoord_swarm_memory_bytes');
    has('swarmcoord_connections_accepted_total');
    has('swarmcoord_offers_relayed_total');
    has('swarmcoord_answers_relayed_total');
    const version = (await runBinary(['--version'])).stdout.trim().split(' ')[1];
    assert.equal(m.get('swarmcoord_build_info', { version }), 1);
    assert.ok(m.get('process_resident_memory_bytes') > 1e5);
    assert.ok(m.get('process_open_fds') >= 5);
    assert.ok(m.get('process_cpu_seconds_total') >= 0);
    const start = m.get('process_start_time_seconds');
    assert.ok(Math.abs(start - Date.now() / 1000) < 120, `process_start_time_seconds ${start} is not about now`);
  });

  it('moves the counters and gauges with traffic', async () => {
    const before = await scrape(d);
    const wtm = (type) => ({ protocol: 'webtorrent', type });
    const delta = (m, name, labels = {}) => m.get(name, labels) - before.get(name, labels);
    const ih = wt.randomId();
    const seeder = await join(d, ih, { left: 0 });
    const leecher = await join(d, ih, { left: 100 });
    const offerer = await connect(d);
    offerer.peerId = wt.randomId();
    const offerList = wt.offers(2);
    await announce(offerer, ih, offerer.peerId, { offerList });
    const got = await Promise.all([seeder, leecher].map((c) => c.next({ filter: is('offer', ih), what: 'offer' })));
    await leecher.send(wt.answer(ih, leecher.peerId, offerer.peerId, got[1].offer_id));
    await offerer.next({ filter: is('answer', ih), what: 'answer relay' });
    await scrapeVia(seeder, ih);
    await seeder.send('{not json');
    await seeder.next({ filter: is('error'), what: 'error reply' });

    const m = await scrape(d);
    assert.equal(delta(m, 'swarmcoord_messages_received_total', wtm('announce')), 3);
    assert.equal(delta(m, 'swarmcoord_messages_received_total', wtm('answer')), 1);
    assert.equal(delta(m, 'swarmcoord_messages_received_total', wtm('scrape')), 1);
    assert.equal(delta(m, 'swarmcoord_messages_received_total', wtm('invalid')), 1);
    assert.equal(delta(m, 'swarmcoord_messages_sent_total', wtm('announce')), 3);
    assert.equal(delta(m, 'swarmcoord_messages_sent_total', wtm('offer')), 2);
    assert.equal(delta(m, 'swarmcoord_messages_sent_total', wtm('answer')), 1);
    assert.equal(delta(m, 'swarmcoord_messages_sent_total', wtm('scrape')), 1);
    assert.equal(delta(m, 'swarmcoord_messages_sent_total', wtm('error')), 1);
    assert.equal(delta(m, 'swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'bad_json' }), 1);
    assert.equal(delta(m, 'swarmcoord_offers_relayed_total'), 2);
    assert.equal(delta(m, 'swarmcoord_answers_relayed_total'), 1);
    assert.equal(delta(m, 'swarmcoord_connections_accepted_total'), 3);
    assert.equal(delta(m, 'swarmcoord_connections', { protocol: 'webtorrent' }), 3);
    assert.equal(delta(m, 'swarmcoord_swarms', { protocol: 'webtorrent' }), 1);
    assert.equal(delta(m, 'swarmcoord_peers', { protocol: 'webtorrent', role: 'seeder' }), 1);
    // The offerer sent no `left`: a leecher, like the reference.
    assert.equal(delta(m, 'swarmcoord_peers', { protocol: 'webtorrent', role: 'leecher' }), 2);

    await Promise.all([seeder, leecher, offerer].map((c) => c.close()));
    // Closing is processed after the client has seen its close frame: poll, bounded.
    const settled = await until(async () => {
      const x = await scrape(d);
      return delta(x, 'swarmcoord_connections', { protocol: 'webtorrent' }) === 0 &&
             delta(x, 'swarmcoord_swarms', { protocol: 'webtorrent' }) === 0 &&
             delta(x, 'swarmcoord_peers', { protocol: 'webtorrent', role: 'leecher' }) === 0 &&
             delta(x, 'swarmcoord_peers', { protocol: 'webtorrent', role: 'seeder' }) === 0 && x;
    }, { what: 'gauges back to their values before the test' });
    assert.equal(delta(settled, 'swarmcoord_connections_accepted_total'), 3);
  });
});

// ------------------------------------------------------------------------------------------
describe('/stats', () => {
  let d;
  before(async () => { d = await Daemon.start(['--set', 'server.threads=2']); });
  after(async () => { await d?.stop(); });

  it('reports connections, swarms, peers and the top swarms by size', async () => {
    const [big, mid, ...small] = wt.randomIds(12);
    // Three sockets; one socket may carry several peer_ids.
    const s1 = await connect(d);
    const s2 = await connect(d);
    const s3 = await connect(d);
    await announce(s1, big, wt.randomId(), { left: 0 });
    await announce(s1, big, wt.randomId());
    await announce(s1, big, wt.randomId());
    await announce(s2, mid, wt.randomId());
    await announce(s2, mid, wt.randomId(), { left: 0 });
    for (const ih of small) await announce(s3, ih, wt.randomId());

    const st = await d.stats();
    assert.deepEqual(st.connections, { webtorrent: 3, native: 0 });
    assert.equal(st.swarms, 12);
    assert.deepEqual(st.peers, { seeders: 2, leechers: 13 });
    assert.equal(st.workers, 2);
    assert.equal(st.draining, false);
    assert.equal(st.top_swarms.length, 10);
    assert.deepEqual(st.top_swarms[0], { info_hash: wt.hexOf(big), protocol: 'webtorrent', peers: 3, seeders: 1, leechers: 2 });
    assert.deepEqual(st.top_swarms[1], { info_hash: wt.hexOf(mid), protocol: 'webtorrent', peers: 2, seeders: 1, leechers: 1 });
    const smallHex = new Set(small.map(wt.hexOf));
    for (const s of st.top_swarms.slice(2)) {
      assert.ok(smallHex.has(s.info_hash), `${s.info_hash} is one of the single-peer swarms`);
      assert.match(s.info_hash, /^[0-9a-f]{40}$/);
      assert.equal(s.peers, 1);
    }
    for (let i = 1; i < st.top_swarms.length; i++) {
      assert.ok(st.top_swarms[i - 1].peers >= st.top_swarms[i].peers, 'ordered by peer count');
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('WebTorrent flows', () => {
  let d;
  // Scrapes of everything are off by default; these tests list swarms with them.
  before(async () => { d = await Daemon.start(['--set', 'server.threads=2', '--set', 'tracker.max_scrape_all=1000']); });
  after(async () => { await d?.stop(); });

  it('answers announces on / and /announce', async () => {
    const ih = wt.randomId();
    const a = await join(d, ih, { pathname: '/', left: 10 });
    assert.deepEqual(a.response, { action: 'announce', interval: 120, info_hash: ih, complete: 0, incomplete: 1 });
    const b = await join(d, ih, { pathname: '/announce', left: 0 });
    assert.deepEqual(b.response, { action: 'announce', interval: 120, info_hash: ih, complete: 1, incomplete: 1 });
    const c = await join(d, ih, { pathname: '/announce?source=test' });
    assert.deepEqual(c.response, { action: 'announce', interval: 120, info_hash: ih, complete: 1, incomplete: 2 });
    // Re-announce without event keeps one peer.
    assert.deepEqual(await announce(a, ih, a.peerId, { event: null }),
      { action: 'announce', interval: 120, info_hash: ih, complete: 1, incomplete: 2 });
    // ASCII ids (p2p-media-loader) work the same.
    const ascii = wt.randomId({ ascii: true });
    const p = await join(d, ascii, { pathname: '/announce' });
    assert.equal(p.response.info_hash, ascii);
  });

  it('relays offers to other peers, never back to the announcer', async () => {
    const ih = wt.randomId();
    const peers = [await join(d, ih), await join(d, ih), await join(d, ih)];
    const offerer = await connect(d);
    offerer.peerId = wt.randomId();
    const offerList = wt.offers(5);
    const before = await scrape(d);
    const res = await announce(offerer, ih, offerer.peerId, { offerList });
    assert.deepEqual(res, { action: 'announce', interval: 120, info_hash: ih, complete: 0, incomplete: 4 });
    const got = await Promise.all(peers.map((c) => c.next({ filter: is('offer', ih), what: 'relayed offer' })));
    // Three other peers: three of the five offers, the first three, one each.
    const byId = new Map(offerList.map((o) => [o.offer_id, o]));
    const ids = new Set();
    for (const m of got) {
      const o = byId.get(m.offer_id);
      assert.ok(o, 'offer_id is one the offerer sent');
      assert.deepEqual(m, { action: 'announce', offer: o.offer, offer_id: o.offer_id, peer_id: offerer.peerId, info_hash: ih });
      ids.add(m.offer_id);
    }
    assert.deepEqual(ids, new Set(offerList.slice(0, 3).map((o) => o.offer_id)));
    const after = await scrape(d);
    assert.equal(after.get('swarmcoord_offers_relayed_total') - before.get('swarmcoord_offers_relayed_total'), 3);
    // Bounded: nothing else for anyone (an offer to itself, or a second one to a peer).
    assert.deepEqual(await offerer.collectFor(QUIET_MS, is('offer')), []);
    for (const c of peers) assert.deepEqual(c.queue, []);
  });

  it('relays an answer to the offerer only when it matches an offer sent to the answerer', async () => {
    const ih = wt.randomId();
    const b = await join(d, ih);
    const c = await join(d, ih);
    const a = await connect(d);
    a.peerId = wt.randomId();
    const [offer] = wt.offers(1);
    await announce(a, ih, a.peerId, { offerList: [offer] });
    const { client: recipient, msg } = await waitAny([b, c], is('offer', ih), 5000, 'the offer on b or c');
    const other = recipient === b ? c : b;
    assert.equal(msg.offer_id, offer.offer_id);

    const dropped = () => scrape(d).then((m) => m.get('swarmcoord_answers_dropped_total', { reason: 'unknown_offer' }));
    const relayed = () => scrape(d).then((m) => m.get('swarmcoord_answers_relayed_total'));
    const dropped0 = await dropped();
    const relayed0 = await relayed();
    // Not the recipient of that offer.
    await other.send(wt.answer(ih, other.peerId, a.peerId, offer.offer_id));
    // The recipient, but an offer_id that was never relayed to it.
    await recipient.send(wt.answer(ih, recipient.peerId, a.peerId, wt.randomId()));
    // The recipient's peer_id from another socket.
    const impostor = await connect(d);
    await impostor.send(wt.answer(ih, recipient.peerId, a.peerId, offer.offer_id));
    // An unknown swarm.
    await recipient.send(wt.answer(wt.randomId(), recipient.peerId, a.peerId, offer.offer_id));
    await until(async () => (await dropped()) === dropped0 + 4, { what: 'four answers dropped as unknown_offer' });
    assert.equal(await relayed(), relayed0);
    assert.deepEqual(await a.collectFor(QUIET_MS, is('answer')), [], 'no mismatched answer reaches the offerer');
    assert.deepEqual(impostor.queue, [], 'an answer to an unknown offer gets no reply');

    const sdp = { type: 'answer', sdp: 'v=0\r\nthe real one\r\n' };
    await recipient.send({ ...wt.answer(ih, recipient.peerId, a.peerId, offer.offer_id), answer: sdp });
    const ans = await a.next({ filter: is('answer', ih), what: 'answer relay' });
    assert.deepEqual(ans, { action: 'announce', answer: sdp, offer_id: offer.offer_id, peer_id: recipient.peerId, info_hash: ih });
    assert.equal(await relayed(), relayed0 + 1);
    // The offer is used up: a second answer is dropped.
    await recipient.send(wt.answer(ih, recipient.peerId, a.peerId, offer.offer_id));
    await until(async () => (await dropped()) === dropped0 + 5, { what: 'the repeated answer dropped' });
    // Answers get no announce response of their own.
    assert.deepEqual(await recipient.collectFor(QUIET_MS, is('announce')), []);
    assert.deepEqual(await a.collectFor(0, is('answer')), []);
  });

  it('scrapes one swarm, a list and all swarms', async () => {
    const [x, y, z] = wt.randomIds(3);
    const s = await join(d, x, { left: 0 });
    const l1 = await join(d, x, { left: 5 });
    await join(d, x);
    await join(d, y);
    // A completed event makes a seeder and counts a download.
    assert.deepEqual(await announce(l1, x, l1.peerId, { event: 'completed' }),
      { action: 'announce', interval: 120, info_hash: x, complete: 2, incomplete: 1 });
    const flags = { min_request_interval: 600 };

    assert.deepEqual(await scrapeVia(s, x),
      { action: 'scrape', files: { [x]: { complete: 2, incomplete: 1, downloaded: 1 } }, flags });
    assert.deepEqual(await scrapeVia(s, [x, y, z]), {
      action: 'scrape',
      files: {
        [x]: { complete: 2, incomplete: 1, downloaded: 1 },
        [y]: { complete: 0, incomplete: 1, downloaded: 0 },
        [z]: { complete: 0, incomplete: 0, downloaded: 0 },
      },
      flags,
    });
    // An empty list asks no worker (scrapes ask only the workers holding the hashes named).
    assert.deepEqual(await scrapeVia(s, []), { action: 'scrape', files: {}, flags });
    const all = await scrapeVia(s);
    assert.deepEqual(all.flags, flags);
    assert.deepEqual(all.files[x], { complete: 2, incomplete: 1, downloaded: 1 });
    assert.deepEqual(all.files[y], { complete: 0, incomplete: 1, downloaded: 0 });
    assert.equal(all.files[z], undefined, 'scrape-all lists only existing swarms');
  });

  it('answers a scrape of everything with no swarm by default; named info_hashes still work', async () => {
    const plain = await Daemon.start(['--set', 'server.threads=2']);
    try {
      const [x, y] = wt.randomIds(2);
      const a = await join(plain, x, { left: 0 });
      const b = await join(plain, y);
      const flags = { min_request_interval: 600 };
      assert.deepEqual(await scrapeVia(a), { action: 'scrape', files: {}, flags });
      assert.deepEqual(await scrapeVia(a, [x, y]), {
        action: 'scrape',
        files: { [x]: { complete: 1, incomplete: 0, downloaded: 0 }, [y]: { complete: 0, incomplete: 1, downloaded: 0 } },
        flags,
      });
      await Promise.all([a, b].map((c) => c.close()));
    } finally {
      await plain.stop();
    }
  });

  it('removes a peer on stopped and answers with the counts after removal', async () => {
    const ih = wt.randomId();
    const a = await join(d, ih);
    const b = await join(d, ih, { left: 0 });
    assert.deepEqual(await announce(b, ih, b.peerId, { event: 'stopped' }),
      { action: 'announce', interval: 120, info_hash: ih, complete: 0, incomplete: 1 });
    assert.deepEqual((await scrapeVia(a, ih)).files[ih], { complete: 0, incomplete: 1, downloaded: 0 });
    // The stopped peer gets no more offers: a's offer has nobody to go to.
    await announce(a, ih, a.peerId, { event: null, offerList: wt.offers(1) });
    assert.deepEqual(await b.collectFor(QUIET_MS, is('offer')), []);
    assert.deepEqual(await announce(a, ih, a.peerId, { event: 'stopped' }),
      { action: 'announce', interval: 120, info_hash: ih, complete: 0, incomplete: 0 });
    assert.equal((await scrapeVia(a)).files[ih], undefined, 'the empty swarm is gone');
  });

  it('removes every peer_id of a socket when it closes', async () => {
    const [x, y] = wt.randomIds(2);
    const observer = await join(d, x);
    const s = await connect(d);
    await announce(s, x, wt.randomId());
    await announce(s, x, wt.randomId(), { left: 0 });
    await announce(s, y, wt.randomId());
    const counts = async () => {
      const f = (await scrapeVia(observer, [x, y])).files;
      return [f[x].complete + f[x].incomplete, f[y].complete + f[y].incomplete];
    };
    assert.deepEqual(await counts(), [3, 1]);
    await s.close();
    await until(async () => JSON.stringify(await counts()) === '[1,0]',
      { what: 'the closed socket\'s three peers (on two shards) to leave' });
    const st = await d.stats();
    assert.ok(!st.top_swarms.some((t) => t.info_hash === wt.hexOf(y)), 'swarm y is gone from /stats');
  });

  it('gives a peer_id to another socket only once its own socket closed', async () => {
    // More in hostile-peer-id.test.mjs: stop, answers, a silent socket.
    const ih = wt.randomId();
    const q = await join(d, ih);
    const s1 = await join(d, ih);
    const peerId = s1.peerId;
    const s2 = await connect(d);
    await s2.send(wt.announce(ih, peerId, { event: null }));
    assert.deepEqual(await s2.next({ what: 'the refusal' }),
      { action: 'announce', 'failure reason': 'peer_id is in use by another connection', info_hash: ih });

    const conns = async () => (await scrape(d)).get('swarmcoord_connections', { protocol: 'webtorrent' });
    const before = await conns();
    await s1.close();
    // Once the old socket is gone from the gauge, its close has been handed to the shard ahead
    // of any later announce.
    await until(async () => (await conns()) === before - 1, { what: 'the old socket to close' });
    const res = await announce(s2, ih, peerId, { event: null });
    assert.equal(res.incomplete, 2, 'q and the peer on its new socket');
    // Offers for the peer go to its new socket, and its answer from there is relayed.
    const [offer] = wt.offers(1);
    await announce(q, ih, q.peerId, { event: null, offerList: [offer] });
    const got = await s2.next({ filter: is('offer', ih), what: 'offer on the new socket' });
    assert.equal(got.offer_id, offer.offer_id);
    await s2.send(wt.answer(ih, peerId, q.peerId, offer.offer_id));
    await q.next({ filter: is('answer', ih), what: 'answer from the moved peer' });
    await s2.close();
    await until(async () => (await scrapeVia(q, ih)).files[ih].incomplete === 1,
      { what: 'the moved peer to leave with its new socket' });
  });

  it('replies with both error shapes', async () => {
    const c = await connect(d);
    const ih = wt.randomId();
    const pid = wt.randomId();
    // Known info_hash: the warning shape that keeps the socket.
    await c.send({ ...wt.announce(ih, pid), event: 'bogus' });
    assert.deepEqual(await c.next({ what: 'invalid event' }),
      { action: 'announce', 'failure reason': 'invalid event', info_hash: ih });
    await c.send({ action: 'announce', info_hash: ih, peer_id: 'short' });
    assert.deepEqual(await c.next({ what: 'invalid peer_id' }),
      { action: 'announce', 'failure reason': 'invalid peer_id', info_hash: ih });
    await c.send({ action: 'announce', info_hash: ih, peer_id: pid, answer: { type: 'answer', sdp: '' }, offer_id: wt.randomId() });
    assert.deepEqual(await c.next({ what: 'invalid to_peer_id' }),
      { action: 'announce', 'failure reason': 'invalid `to_peer_id` (required with `answer`)', info_hash: ih });
    // Unknown info_hash or action: the socket-error shape, no action key.
    await c.send({ action: 'announce', info_hash: 'x'.repeat(19), peer_id: pid });
    assert.deepEqual(await c.next({ what: 'invalid info_hash' }), { 'failure reason': 'invalid info_hash' });
    await c.send({ action: 'bogus' });
    assert.deepEqual(await c.next({ what: 'invalid action' }), { 'failure reason': 'invalid action in WS request: bogus' });
    await c.send({ info_hash: ih });
    assert.deepEqual(await c.next({ what: 'missing action' }), { 'failure reason': 'invalid action in WS request: undefined' });
    await c.send('{"action":');
    const bad = await c.next({ what: 'parse error' });
    assert.deepEqual(Object.keys(bad), ['failure reason']);
    // The socket is still served.
    assert.equal((await announce(c, ih, pid)).incomplete, 1);
  });
});

// ------------------------------------------------------------------------------------------
describe('sharding across workers is invisible', () => {
  for (const threads of [1, 2]) {
    it(`relays offers and answers between connections with server.threads=${threads}`, async () => {
      // tracker.max_peers_per_connection counts a connection's pairs across every worker shard.
      const d = await Daemon.start(['--set', `server.threads=${threads}`, '--set', 'tracker.max_peers_per_connection=1',
        '--set', 'log.level=debug']);
      try {
        // Shards are chosen by a hash keyed at startup: 16 random swarms cover both workers'
        // shards (chance of not: 2^-15). A probe connection that may hold one pair gets exactly
        // one of them accepted, whatever the number of workers, and the rest too_many_peers;
        // once it stops its pair, the next is accepted.
        const hashes = Array.from({ length: 16 }, () => wt.randomId());
        const probe = await connect(d);
        const accepted = [];
        for (const ih of hashes) {
          const peerId = wt.randomId();
          await probe.send(wt.announce(ih, peerId));
          const r = await probe.next({ filter: (m) => m.info_hash === ih, what: `reply for ${ih}` });
          if (r['failure reason'] === undefined) accepted.push([ih, peerId]);
          else assert.match(r['failure reason'], /too many/);
        }
        assert.equal(accepted.length, 1, 'one probe pair accepted in all shards together');
        await probe.send(wt.announce(accepted[0][0], accepted[0][1], { event: 'stopped' }));
        const again = hashes.find((ih) => ih !== accepted[0][0]);
        await probe.send(wt.announce(again, wt.randomId()));
        const r = await probe.next({ filter: (m) => m.info_hash === again && m.complete !== undefined,
          what: 'a pair accepted after the stop' });
        assert.equal(r['failure reason'], undefined);
        await probe.close();
        await until(async () => (await scrape(d)).get('swarmcoord_peers', { protocol: 'webtorrent', role: 'leecher' }) === 0,
          { what: 'the probe peers gone' });
        const all = [];
        await Promise.all(hashes.map(async (ih) => {
          const a = await join(d, ih);
          const b = await connect(d);
          all.push(a, b);
          b.peerId = wt.randomId();
          const [offer] = wt.offers(1);
          await announce(b, ih, b.peerId, { offerList: [offer] });
          const got = await a.next({ filter: is('offer', ih), what: 'offer' });
          assert.equal(got.peer_id, b.peerId);
          assert.equal(got.offer_id, offer.offer_id);
          await a.send(wt.answer(ih, a.peerId, b.peerId, offer.offer_id));
          const ans = await b.next({ filter: is('answer', ih), what: 'answer' });
          assert.equal(ans.peer_id, a.peerId);
          assert.equal((await scrapeVia(a, ih)).files[ih].incomplete, 2);
        }));
        // Every connection says which worker owns it: one invalid message each, whose debug
        // log line names the connection id (worker index in the top 16 bits).
        await Promise.all(all.map(async (c) => {
          await c.send('!');
          await c.next({ filter: is('error'), what: 'error reply' });
        }));
        const lines = () => [...d.log.matchAll(/conn (\d+) \S+: protocol error bad_json/g)];
        await until(() => lines().length === all.length, { what: 'a debug line per connection' });
        const owners = new Set(lines().map((m) => Number(BigInt(m[1]) >> 48n)));
        assert.deepEqual([...owners].sort(), threads === 2 ? [0, 1] : [0],
          'the connections are spread over the workers');
        const m = await scrape(d);
        assert.equal(m.get('swarmcoord_offers_relayed_total'), 16);
        assert.equal(m.get('swarmcoord_answers_relayed_total'), 16);
        assert.equal(m.get('swarmcoord_swarms', { protocol: 'webtorrent' }), 16);
      } finally {
        await stopDaemon(d);
      }
    });
  }
});

// ------------------------------------------------------------------------------------------
describe('SIGTERM drain', () => {
  it('turns /readyz 503, closes every client with 1001, exits 0', async () => {
    const d = await Daemon.start(['--set', 'server.threads=2', '--set', 'server.drain_seconds=1']);
    try {
      const ih = wt.randomId();
      const clients = [];
      for (let i = 0; i < 6; i++) clients.push(await join(d, ih));
      assert.equal((await httpGet(`http://${d.admin}/readyz`)).status, 200);
      const t0 = Date.now();
      d.proc.kill('SIGTERM');
      // Poll readiness (bounded) while the closes are spread over the second.
      await until(async () => (await httpGet(`http://${d.admin}/readyz`)).status === 503,
        { timeoutMs: 3000, intervalMs: 10, what: '/readyz 503 while draining' });
      const closes = await Promise.all(clients.map((c) => c.waitClose(5000)));
      for (const c of closes) assert.equal(c.code, 1001);
      const { code, signal } = await withTimeout(d.exited, 6000, 'exit after drain');
      assert.deepEqual({ code, signal }, { code: 0, signal: null });
      assert.ok(Date.now() - t0 < 5000, 'drained within drain_seconds plus the close grace');
      assert.match(d.log, /drained; exiting/);
    } finally {
      await d.stop('SIGKILL');
    }
  });

  it('exits at once, non-zero, on a second signal during a long drain', async () => {
    const d = await Daemon.start(['--set', 'server.threads=1', '--set', 'server.drain_seconds=30']);
    try {
      const ih = wt.randomId();
      // Closes are spread over the window: with four clients the last goes after 22.5 s.
      const clients = [];
      for (let i = 0; i < 4; i++) clients.push(await join(d, ih));
      d.proc.kill('SIGTERM');
      await d.waitForLog(/draining 4 connections over 30 s/, 3000);
      await until(async () => (await httpGet(`http://${d.admin}/readyz`)).status === 503,
        { timeoutMs: 3000, what: '/readyz 503 while draining' });
      const t0 = Date.now();
      d.proc.kill('SIGTERM');
      const { code } = await withTimeout(d.exited, 2000, 'exit after the second SIGTERM');
      assert.notEqual(code, 0);
      assert.ok(Date.now() - t0 < 2000);
      assert.match(d.log, /second signal/);
      const stillOpenAtExit = clients.filter((c) => c.closeInfo === null || c.closeInfo.code !== 1001);
      assert.ok(stillOpenAtExit.length >= 1, 'the drain had not finished');
    } finally {
      await d.stop('SIGKILL', { allowNonZeroExit: true });  // the exit status asserted above
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('command line and config errors', () => {
  const base = ['--set', 'server.listen=127.0.0.1:0', '--set', 'admin.listen=127.0.0.1:0'];
  let dir;
  before(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarmcoord-cfg-')); });
  after(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  // Exit code 2 and exactly one line on stderr, which must match re.
  async function expectConfigError(args, re, env = {}) {
    const r = await runBinary([...base, ...args], { env });
    assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
    assert.match(lines[0], re);
    assert.doesNotMatch(r.stdout + r.stderr, /listening/);
  }

  it('rejects an unknown key given with --set', async () => {
    await expectConfigError(['--set', 'server.bogus_key=1'], /server\.bogus_key/);
  });

  it('rejects a bad value from the environment, naming key and variable', async () => {
    await expectConfigError([], /server\.threads.*SWARMCOORD_SERVER_THREADS|SWARMCOORD_SERVER_THREADS.*server\.threads/,
      { SWARMCOORD_SERVER_THREADS: 'abc' });
  });

  it('rejects a missing --config file, naming it', async () => {
    const missing = path.join(dir, 'does-not-exist.toml');
    await expectConfigError(['--config', missing], new RegExp(missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  });

  it('rejects a malformed TOML file, naming file and line', async () => {
    const bad = path.join(dir, 'bad.toml');
    await fs.writeFile(bad, '[server]\nthreads = 2\nlisten = "127.0.0.1:0\n');
    await expectConfigError(['--config', bad], new RegExp(`bad\\.toml:3`));
  });

  it('rejects a bad value in a TOML file, naming the key', async () => {
    const bad = path.join(dir, 'range.toml');
    await fs.writeFile(bad, '[server]\nmax_message_bytes = 10\n');
    await expectConfigError(['--config', bad], /server\.max_message_bytes/);
  });

  it('prints the version and the effective config', async () => {
    const v = await runBinary(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout.trim(), /^swarmcoord \d+\.\d+\.\d+/);
    const p = await runBinary(['--print-config', '--set', 'tracker.interval_s=60']);
    assert.equal(p.code, 0);
    for (const section of ['[server]', '[admin]', '[log]', '[tracker]']) assert.ok(p.stdout.includes(`\n${section}\n`), section);
    for (const key of ['listen', 'threads', 'tls_cert', 'tls_key', 'max_message_bytes', 'max_connections',
      'idle_timeout_s', 'drain_seconds', 'max_write_queue_bytes', 'max_protocol_errors', 'trusted_proxies',
      'level', 'format', 'max_offers', 'offer_ttl_s', 'peer_ttl_s', 'max_peers_per_connection', 'max_scrape_all']) {
      assert.match(p.stdout, new RegExp(`^${key} = `, 'm'), key);
    }
    assert.match(p.stdout, /^interval_s = 60$/m, 'reflects --set');
  });

  it('exits non-zero with a clear line when the public port is taken', async () => {
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address();
    try {
      const r = await runBinary(['--set', `server.listen=127.0.0.1:${port}`, '--set', 'admin.listen=127.0.0.1:0']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`server\\.listen: cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`));
    } finally {
      blocker.close();
    }
  });

  it('refuses to share its public port with a second swarmcoord', async () => {
    // The workers bind with SO_REUSEPORT; without a plain bind first, a second instance would
    // quietly take half the connections and split every swarm.
    const first = await Daemon.start();
    try {
      const port = first.public.split(':').pop();
      const r = await runBinary(['--set', `server.listen=127.0.0.1:${port}`, '--set', 'admin.listen=127.0.0.1:0']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /server\.listen: cannot listen on .*Address already in use/);
    } finally {
      await stopDaemon(first);
    }
  });

  it('exits non-zero with a clear line when the admin port is taken', async () => {
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address();
    try {
      const r = await runBinary(['--set', 'server.listen=127.0.0.1:0', '--set', `admin.listen=127.0.0.1:${port}`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`admin\\.listen: cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`));
    } finally {
      blocker.close();
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('limits', () => {
  it('slows a flooding connection down instead of dropping it (server.max_messages_per_second)', async () => {
    const d = await Daemon.start(['--set', 'server.max_messages_per_second=20']);
    try {
      const flooder = await connect(d);
      const ih = wt.randomId();
      const n = 60;
      for (let i = 0; i < n; i++) await flooder.send({ action: 'scrape', info_hash: ih });
      // Every message is still answered, in order, on the same connection...
      for (let i = 0; i < n; i++) await flooder.next({ filter: is('scrape'), what: `scrape reply ${i}`, timeoutMs: 10000 });
      assert.equal(flooder.ws.readyState, 1, 'still open');
      // ...but reading paused for it, which the metric shows.
      const m = await scrape(d);
      assert.ok(m.get('swarmcoord_reads_throttled_total') >= 1, 'reads throttled');
      await flooder.close();
    } finally {
      await stopDaemon(d);
    }
  });

  it('refuses upgrades over server.max_connections with 503 and counts them', async () => {
    const d = await Daemon.start(['--set', 'server.threads=2', '--set', 'server.max_connections=2']);
    try {
      await connect(d);
      const second = await connect(d);
      const rejected = async () => (await scrape(d)).get('swarmcoord_connections_rejected_total');
      assert.equal(await rejected(), 0);
      assert.equal(await upgradeStatus(d.wsUrl), 503);
      assert.equal(await upgradeStatus(`${d.wsUrl}/announce`), 503);
      assert.equal(await rejected(), 2);
      // Plain HTTP is not limited.
      assert.equal((await httpGet(`http://${d.public}/healthz`)).status, 200);
      // A slot comes back when a connection closes.
      await second.close();
      await until(async () => (await scrape(d)).get('swarmcoord_connections', { protocol: 'webtorrent' }) === 1,
        { what: 'the closed connection to give its slot back' });
      const third = await connect(d);
      assert.equal((await announce(third, wt.randomId(), wt.randomId())).incomplete, 1);
    } finally {
      await stopDaemon(d);
    }
  });

  it('closes with 1009 on a message over server.max_message_bytes, accepts one at the limit', async () => {
    const d = await Daemon.start(['--set', 'server.max_message_bytes=1024']);
    try {
      const c = await connect(d);
      const ih = wt.randomId({ ascii: true });
      const msg = wt.announce(ih, wt.randomId({ ascii: true }), { extra: { pad: '' } });
      msg.pad = 'p'.repeat(1024 - Buffer.byteLength(JSON.stringify(msg)));
      assert.equal(Buffer.byteLength(JSON.stringify(msg)), 1024);
      await c.send(msg);
      assert.equal((await c.next({ filter: is('announce', ih), what: 'response to a 1024-byte announce' })).incomplete, 1);
      const big = (await scrape(d)).get('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'message_too_big' });
      await c.send({ ...msg, pad: `${msg.pad}p` });
      assert.equal((await c.waitClose()).code, 1009);
      // Counted when the server's read completes, which can be after the client saw the close.
      await until(async () => (await scrape(d)).get('swarmcoord_protocol_errors_total',
        { protocol: 'webtorrent', reason: 'message_too_big' }) === big + 1, { what: 'message_too_big counted once' });
    } finally {
      await stopDaemon(d);
    }
  });

  it('closes a client that answers no ping after server.idle_timeout_s, keeps one that does', async () => {
    const idle = 5;
    const d = await Daemon.start(['--set', 'server.threads=2', '--set', `server.idle_timeout_s=${idle}`]);
    try {
      const t0 = Date.now();
      const silent = await connect(d, '/', { autoPong: false });
      // And one made by hand on a raw socket, which sends nothing after its handshake.
      const raw = await rawWebSocket(d.public, '/announce');
      assert.match(raw.response, /^HTTP\/1\.1 101 /);
      const live = await connect(d);
      const ih = wt.randomId();
      await announce(live, ih, wt.randomId());
      const { code } = await silent.waitClose((idle + 4) * 1000);
      const closedAfter = (Date.now() - t0) / 1000;
      assert.ok(closedAfter >= idle - 0.5 && closedAfter <= idle + 3, `closed after ${closedAfter} s`);
      assert.notEqual(code, 1000);
      assert.ok(silent.pings >= 1, 'the silent client was pinged first');
      await withTimeout(raw.closed, 3000, 'the raw silent socket closed too');
      const rawClosedAfter = (Date.now() - t0) / 1000;
      assert.ok(rawClosedAfter <= idle + 3, `raw socket closed after ${rawClosedAfter} s`);
      // The live client must outlast two idle periods: this wait is the observation itself.
      assert.deepEqual(await live.collectFor(2 * idle * 1000 + 1000 - (Date.now() - t0), is('announce')), []);
      assert.equal(live.closeInfo, null, 'the client answering pings is still open');
      assert.ok(live.pings >= 3, `pinged ${live.pings} times`);
      assert.equal((await announce(live, ih, wt.randomId())).incomplete, 2);
    } finally {
      await stopDaemon(d);
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('TLS', () => {
  it('serves wss:// and https:// with server.tls_cert and tls_key', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarmcoord-tls-'));
    let d;
    try {
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
        '-subj', '/CN=localhost', '-keyout', key, '-out', cert]);
      d = await Daemon.start(['--set', 'server.threads=2', '--set', `server.tls_cert="${cert}"`,
        '--set', `server.tls_key="${key}"`]);
      assert.match(d.log, /tls=on/);
      const ih = wt.randomId();
      const a = await connect(d, '/', { url: `wss://${d.public}/announce`, rejectUnauthorized: false });
      a.peerId = wt.randomId();
      assert.deepEqual(await announce(a, ih, a.peerId),
        { action: 'announce', interval: 120, info_hash: ih, complete: 0, incomplete: 1 });
      const b = await connect(d, '/', { url: `wss://${d.public}/`, rejectUnauthorized: false });
      const [offer] = wt.offers(1);
      await announce(b, ih, wt.randomId(), { offerList: [offer] });
      assert.equal((await a.next({ filter: is('offer', ih), what: 'offer over TLS' })).offer_id, offer.offer_id);

      const body = await withTimeout(new Promise((resolve, reject) => {
        https.get(`https://${d.public}/healthz`, { rejectUnauthorized: false }, (res) => {
          let s = '';
          res.on('data', (c) => { s += c; });
          res.on('end', () => resolve({ status: res.statusCode, body: s }));
        }).on('error', reject);
      }), 5000, 'https GET /healthz');
      assert.deepEqual(body, { status: 200, body: 'ok\n' });
      // Plain HTTP on the TLS port gets nothing useful.
      await assert.rejects(fetch(`http://${d.public}/healthz`));
    } finally {
      await stopDaemon(d);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('X-Forwarded-For', () => {
  // An announcer in 10.9.9.0/24 with one offer, one other peer in its /24 and five in
  // 10.8.8.0/24: locality sends the offer to the same-/24 peer, when the header is believed.
  async function setup(d, ih) {
    const xff = (ip) => ({ headers: { 'X-Forwarded-For': ip } });
    const near = await join(d, ih, { options: xff('10.9.9.2') });
    const far = [];
    for (let i = 0; i < 5; i++) far.push(await join(d, ih, { options: xff(`10.8.8.${i + 2}`) }));
    const announcer = await connect(d, '/', xff('203.0.113.7, 10.9.9.1'));
    announcer.peerId = wt.randomId();
    return { near, far, announcer };
  }

  async function whereOffersGo(d, ih, { near, far, announcer }, rounds) {
    const peers = [near, ...far];
    const hits = [];
    for (let i = 0; i < rounds; i++) {
      const [offer] = wt.offers(1);
      await announce(announcer, ih, announcer.peerId, { event: i === 0 ? 'started' : null, offerList: [offer] });
      const { index } = await waitAny(peers, (j) => is('offer', ih)(j) && j.offer_id === offer.offer_id, 5000, 'the offer');
      hits.push(index);
    }
    return hits;
  }

  it('takes the client address from the header behind a trusted proxy', async () => {
    const d = await Daemon.start(['--set', 'server.threads=1', '--set', 'server.trusted_proxies=["127.0.0.0/8"]']);
    try {
      const ih = wt.randomId();
      const hits = await whereOffersGo(d, ih, await setup(d, ih), 8);
      assert.deepEqual(hits, Array(8).fill(0), 'every offer went to the peer in the announcer\'s /24');
    } finally {
      await stopDaemon(d);
    }
  });

  it('ignores the header from an untrusted peer', async () => {
    const d = await Daemon.start(['--set', 'server.threads=1']);
    try {
      const ih = wt.randomId();
      // Everyone is 127.0.0.1 then: recipients are random among six peers; twelve offers all
      // to the same one would happen with probability 6^-11.
      const hits = await whereOffersGo(d, ih, await setup(d, ih), 12);
      assert.ok(hits.some((h) => h !== 0), `offers went to ${hits}`);
    } finally {
      await stopDaemon(d);
    }
  });
});
