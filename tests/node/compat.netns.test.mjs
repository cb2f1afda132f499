// Compatibility: the real npm `bittorrent-tracker` 11.2.3 Client (as used by webtorrent)
// against a real swarmcoord process, over loopback inside a network namespace.
//
// `webrtc-polyfill` (needed by the client's simple-peer) is redirected to @roamhq/wrtc by
// ./lib/wrtc-loader.mjs; bittorrent-tracker must therefore be imported dynamically, after
// the hook is registered.
import './lib/wrtc-loader.mjs';

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { Daemon } from './lib/daemon.mjs';
import { shimUrl } from './lib/wrtc-loader.mjs';

const { default: wrtc } = await import('@roamhq/wrtc');
const polyfill = await import('webrtc-polyfill');
const { default: Client } = await import('bittorrent-tracker');
// Not exported by the package; the same file (hence module instance) as the client uses.
const { default: WebSocketTracker } = await import(
  new URL('./node_modules/bittorrent-tracker/lib/client/websocket-tracker.js', import.meta.url).href);

const EVENT_TIMEOUT_MS = 15000;
const PEER_TIMEOUT_MS = 20000;

// ------------------------------------------------------------------ helpers

function startDaemon(threads) {
  return Daemon.start(['--set', `server.threads=${threads}`]);
}

// 20 bytes as 40 hex digits, starting with the bytes that need JSON escaping or become
// 2-byte UTF-8 on the wire (NUL, '"', '\', LF, DEL, 0x80, 0xC3, 0xFF).
function trickyId(length = 20) {
  const head = Buffer.from([0x00, 0x22, 0x5c, 0x0a, 0x7f, 0x80, 0xc3, 0xff]);
  return Buffer.concat([head, crypto.randomBytes(20)]).subarray(0, length).toString('hex');
}

// Resolves with the first `name` event that passes `filter`; rejects on timeout or, if
// failOn names events, when one of those comes first.
function nextEvent(emitter, name, { filter = () => true, timeoutMs = EVENT_TIMEOUT_MS, failOn = [], who = '' } = {}) {
  return new Promise((resolve, reject) => {
    const listeners = [];
    const cleanup = () => {
      clearTimeout(timer);
      for (const [n, fn] of listeners) emitter.removeListener(n, fn);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${who ? `${who}: ` : ''}no '${name}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    const onEvent = (value) => {
      if (!filter(value)) return;
      cleanup();
      resolve(value);
    };
    listeners.push([name, onEvent]);
    for (const bad of failOn) {
      listeners.push([bad, (value) => {
        cleanup();
        reject(new Error(`${who ? `${who}: ` : ''}'${bad}' before '${name}': ${value?.message ?? value}`));
      }]);
    }
    for (const [n, fn] of listeners) emitter.on(n, fn);
  });
}

// Polls an async probe until it returns a truthy value (the daemon's gauges follow a socket
// close asynchronously); fails with the last value seen.
async function waitUntil(probe, what, timeoutMs = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// Clients made here are tracked so that every test can destroy what it created, including
// the WebRTC peers handed out by 'peer' events (those are the application's to destroy).
class Clients {
  constructor() {
    this.clients = [];
    this.peers = [];
    this.warnings = new Map();
  }

  make(announce, opts = {}) {
    const client = new Client({
      announce: [announce],
      infoHash: trickyId(),
      peerId: trickyId(),
      port: 6881,
      wrtc,
      rtcConfig: { iceServers: [] }, // no STUN: nothing but host candidates on loopback
      ...opts,
    });
    const warnings = [];
    this.warnings.set(client, warnings);
    client.on('warning', (err) => warnings.push(err.message));
    client.on('error', (err) => warnings.push(`error: ${err.message}`));
    client.on('peer', (peer) => {
      this.peers.push(peer);
      peer.on('error', () => {}); // torn down at the end of a test; asserted where it matters
    });
    this.clients.push(client);
    return client;
  }

  warningsOf(client) {
    return this.warnings.get(client);
  }

  static destroy(client) {
    if (client.destroyed) return Promise.resolve();
    return new Promise((resolve) => client.destroy(() => resolve()));
  }

  async destroyAll() {
    for (const peer of this.peers) peer.destroy();
    for (const client of this.clients) {
      // A tracker that hit a socket error has already destroyed itself but left its
      // reconnect timer armed, and Client.destroy() does not clear it (reference client
      // behaviour): clear it so that no reconnect outlives the test.
      for (const tracker of client._trackers ?? []) clearTimeout(tracker.reconnectTimer);
    }
    await Promise.all(this.clients.map((c) => Clients.destroy(c)));
    this.clients = [];
    this.peers = [];
  }
}

const announceCounts = (update) => ({ complete: update.complete, incomplete: update.incomplete });

async function peerGauges(d) {
  return {
    seeders: await d.metric('swarmcoord_peers', { protocol: 'webtorrent', role: 'seeder' }),
    leechers: await d.metric('swarmcoord_peers', { protocol: 'webtorrent', role: 'leecher' }),
    swarms: await d.metric('swarmcoord_swarms', { protocol: 'webtorrent' }),
  };
}

// ------------------------------------------------------------------ suite

test('webrtc-polyfill resolves to @roamhq/wrtc through the loader hook', async () => {
  assert.equal(import.meta.resolve('webrtc-polyfill'), shimUrl);
  assert.equal(polyfill.RTCPeerConnection, wrtc.RTCPeerConnection);
  assert.equal(polyfill.RTCSessionDescription, wrtc.RTCSessionDescription);
  assert.equal(polyfill.RTCIceCandidate, wrtc.RTCIceCandidate);
  const { default: Peer } = await import('@thaunknown/simple-peer/lite.js');
  assert.equal(Peer.WEBRTC_SUPPORT, true);
});

for (const threads of [1, 2]) {
  describe(`bittorrent-tracker Client against swarmcoord (server.threads=${threads})`, () => {
    let d;
    before(async () => {
      d = await startDaemon(threads);
    });
    after(async () => {
      await d?.stop();
    });

    test('lifecycle: start, update, complete, scrape, stop', async (t) => {
      const clients = new Clients();
      t.after(() => clients.destroyAll());
      const base = {
        accepted: await d.metric('swarmcoord_connections_accepted_total'),
        announces: await d.metric('swarmcoord_messages_received_total', { protocol: 'webtorrent', type: 'announce' }),
      };
      const client = clients.make(d.wsUrl);

      // start: 'started' with 5 offers (numwant defaults to 50, the client caps it at 5).
      let update = nextEvent(client, 'update', { failOn: ['warning'] });
      client.start();
      update = await update;
      assert.deepEqual(announceCounts(update), { complete: 0, incomplete: 1 });
      assert.equal(update.action, 'announce');
      assert.equal(update.infoHash, client.infoHash);
      assert.equal(update.announce, d.wsUrl);
      assert.equal(update.interval, 120);
      assert.deepEqual(await peerGauges(d), { seeders: 0, leechers: 1, swarms: 1 });

      // update: a periodic announce (no event) from the same peer is not counted twice.
      update = nextEvent(client, 'update', { failOn: ['warning'] });
      client.update();
      assert.deepEqual(announceCounts(await update), { complete: 0, incomplete: 1 });

      // complete: the peer becomes a seeder.
      update = nextEvent(client, 'update', { failOn: ['warning'] });
      client.complete();
      assert.deepEqual(announceCounts(await update), { complete: 1, incomplete: 0 });
      assert.deepEqual(await peerGauges(d), { seeders: 1, leechers: 0, swarms: 1 });

      // scrape from the client itself.
      let scrape = nextEvent(client, 'scrape', { failOn: ['warning'] });
      client.scrape();
      scrape = await scrape;
      assert.equal(scrape.infoHash, client.infoHash);
      assert.equal(scrape.announce, d.wsUrl);
      assert.deepEqual({ complete: scrape.complete, incomplete: scrape.incomplete, downloaded: scrape.downloaded },
        { complete: 1, incomplete: 0, downloaded: 1 });

      // The static helper, for two hashes at once: ours and one nobody announced.
      const unknown = trickyId();
      const results = await new Promise((resolve, reject) => {
        Client.scrape({ announce: d.wsUrl, infoHash: [client.infoHash, unknown], wrtc },
          (err, res) => (err ? reject(err) : resolve(res)));
      });
      assert.deepEqual(Object.keys(results).sort(), [client.infoHash, unknown].sort());
      assert.deepEqual(
        { complete: results[client.infoHash].complete, incomplete: results[client.infoHash].incomplete,
          downloaded: results[client.infoHash].downloaded },
        { complete: 1, incomplete: 0, downloaded: 1 });
      assert.deepEqual(
        { complete: results[unknown].complete, incomplete: results[unknown].incomplete,
          downloaded: results[unknown].downloaded },
        { complete: 0, incomplete: 0, downloaded: 0 });

      // stop: the response carries the counts after removal.
      update = nextEvent(client, 'update', { failOn: ['warning'] });
      client.stop();
      assert.deepEqual(announceCounts(await update), { complete: 0, incomplete: 0 });
      assert.deepEqual(await peerGauges(d), { seeders: 0, leechers: 0, swarms: 0 });

      scrape = nextEvent(client, 'scrape', { failOn: ['warning'] });
      client.scrape();
      scrape = await scrape;
      assert.equal(scrape.infoHash, client.infoHash);
      assert.deepEqual({ complete: scrape.complete, incomplete: scrape.incomplete },
        { complete: 0, incomplete: 0 });

      // Everything above went over one socket (the static helper borrowed it from the pool).
      assert.equal(await d.metric('swarmcoord_connections_accepted_total'), base.accepted + 1);
      assert.equal(await d.metric('swarmcoord_messages_received_total', { protocol: 'webtorrent', type: 'announce' }),
        base.announces + 4);
      assert.deepEqual(clients.warningsOf(client), []);
    });

    test('two info_hashes share one socket; closing it removes both peers', async (t) => {
      const clients = new Clients();
      t.after(() => clients.destroyAll());
      const acceptedBefore = await d.metric('swarmcoord_connections_accepted_total');
      const a = clients.make(d.wsUrl);
      const b = clients.make(d.wsUrl);
      assert.notEqual(a.infoHash, b.infoHash);

      // Each client only reacts to frames carrying its own info_hash; a response routed
      // to the wrong hash (or without one) would leave one of them waiting.
      const updates = [a, b].map((c) => nextEvent(c, 'update', { failOn: ['warning'] }));
      a.start();
      b.start();
      const [ua, ub] = await Promise.all(updates);
      assert.equal(ua.infoHash, a.infoHash);
      assert.equal(ub.infoHash, b.infoHash);
      assert.deepEqual(announceCounts(ua), { complete: 0, incomplete: 1 });
      assert.deepEqual(announceCounts(ub), { complete: 0, incomplete: 1 });

      // The premise: bittorrent-tracker pooled the socket, and the daemon saw one connection.
      assert.equal(a._trackers[0].socket, b._trackers[0].socket);
      assert.equal(await d.metric('swarmcoord_connections_accepted_total'), acceptedBefore + 1);
      assert.equal(await d.metric('swarmcoord_connections', { protocol: 'webtorrent' }), 1);

      // Per-hash state stays apart: b completes, a remains a leecher.
      const ub2 = nextEvent(b, 'update', { failOn: ['warning'] });
      b.complete();
      assert.deepEqual(announceCounts(await ub2), { complete: 1, incomplete: 0 });
      assert.deepEqual(await peerGauges(d), { seeders: 1, leechers: 1, swarms: 2 });
      const stats = await d.stats();
      assert.deepEqual(stats.peers, { seeders: 1, leechers: 1 });
      assert.equal(stats.swarms, 2);
      assert.equal(stats.connections.webtorrent, 1);

      // One scrape for both hashes answers both.
      const scrapes = new Map();
      const both = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('scrape for both hashes incomplete')), EVENT_TIMEOUT_MS);
        a.on('scrape', (s) => {
          scrapes.set(s.infoHash, s);
          if (scrapes.size === 2) { clearTimeout(timer); resolve(); }
        });
      });
      a.scrape({ infoHash: [a.infoHash, b.infoHash] });
      await both;
      assert.deepEqual([scrapes.get(a.infoHash).complete, scrapes.get(a.infoHash).incomplete], [0, 1]);
      assert.deepEqual([scrapes.get(b.infoHash).complete, scrapes.get(b.infoHash).incomplete], [1, 0]);

      assert.deepEqual(clients.warningsOf(a), []);
      assert.deepEqual(clients.warningsOf(b), []);

      // Destroying both closes the pooled socket without any 'stopped': the daemon must drop
      // every peer_id announced on it (the reference only drops the first).
      await Promise.all([Clients.destroy(a), Clients.destroy(b)]);
      await waitUntil(async () => {
        const s = await d.stats();
        return { ok: s.connections.webtorrent === 0 && s.swarms === 0 && s.peers.seeders === 0 && s.peers.leechers === 0,
          stats: { connections: s.connections, swarms: s.swarms, peers: s.peers } };
      }, 'after closing the shared socket');
      assert.deepEqual(await peerGauges(d), { seeders: 0, leechers: 0, swarms: 0 });
      assert.equal(await d.metric('swarmcoord_connections', { protocol: 'webtorrent' }), 0);
    });

    test('WebRTC data channel between two Clients, signalled through swarmcoord', async (t) => {
      const clients = new Clients();
      t.after(() => clients.destroyAll());
      const offersBefore = await d.metric('swarmcoord_offers_relayed_total');
      const answersBefore = await d.metric('swarmcoord_answers_relayed_total');
      const infoHash = trickyId();
      // Two different announce URLs of the same daemon, so that each Client has a socket of
      // its own (like two browsers): bittorrent-tracker pools sockets per URL, and the
      // daemon never offers a peer to another peer_id of the announcer's own socket.
      const a = clients.make(d.wsUrl, { infoHash, getAnnounceOpts: () => ({ numwant: 5 }) });
      const b = clients.make(`${d.wsUrl}/announce`, { infoHash, getAnnounceOpts: () => ({ numwant: 5 }) });

      const peerA = nextEvent(a, 'peer', { timeoutMs: PEER_TIMEOUT_MS, who: 'client a (offer from b)' });
      const peerB = nextEvent(b, 'peer', { timeoutMs: PEER_TIMEOUT_MS, who: 'client b (answer from a)' });

      // a is alone: its 5 offers have nobody to go to.
      const ua = nextEvent(a, 'update', { failOn: ['warning'] });
      a.start();
      assert.deepEqual(announceCounts(await ua), { complete: 0, incomplete: 1 });
      // b joins: one of its offers goes to a, a answers, the answer goes back to b.
      const ub = nextEvent(b, 'update', { failOn: ['warning'] });
      b.start();
      assert.deepEqual(announceCounts(await ub), { complete: 0, incomplete: 2 });

      const [pa, pb] = await Promise.all([peerA, peerB]);
      assert.equal(pa.id, b.peerId, 'a got its peer from an offer by b');
      assert.equal(pb.id, a.peerId, 'b got its peer from the answer by a');
      await Promise.all([pa, pb].map((p, i) => (p.connected ? null : nextEvent(p, 'connect',
        { timeoutMs: PEER_TIMEOUT_MS, failOn: ['error', 'close'], who: `peer of client ${'ab'[i]}` }))));

      const atB = nextEvent(pb, 'data', { failOn: ['error', 'close'] });
      pa.send('hello from a');
      assert.equal(Buffer.from(await atB).toString(), 'hello from a');
      const atA = nextEvent(pa, 'data', { failOn: ['error', 'close'] });
      pb.send('hello from b');
      assert.equal(Buffer.from(await atA).toString(), 'hello from b');

      // Exactly one offer (b's, to the only other peer) and one answer were relayed.
      assert.equal(await d.metric('swarmcoord_offers_relayed_total'), offersBefore + 1);
      assert.equal(await d.metric('swarmcoord_answers_relayed_total'), answersBefore + 1);
      assert.equal(await d.metric('swarmcoord_answers_dropped_total', { reason: 'unknown_offer' }), 0);
      assert.equal(await d.metric('swarmcoord_answers_dropped_total', { reason: 'offerer_gone' }), 0);
      assert.deepEqual(clients.warningsOf(a), []);
      assert.deepEqual(clients.warningsOf(b), []);
    });
  });
}

describe('error replies as the real client sees them (server.threads=1)', () => {
  let d;
  before(async () => {
    d = await startDaemon(1);
  });
  after(async () => {
    await d?.stop();
  });

  test('"invalid event" is a warning: the client keeps its socket and its place', async (t) => {
    const clients = new Clients();
    t.after(() => clients.destroyAll());
    const acceptedBefore = await d.metric('swarmcoord_connections_accepted_total');
    const errorsBefore = await d.metric('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'invalid_event' });
    // getAnnounceOpts is merged into the periodic announce after the client's defaults, so
    // an application can put any `event` there (start/update/complete/stop override it).
    let extra = { numwant: 0 };
    const client = clients.make(d.wsUrl, { getAnnounceOpts: () => extra });
    const update = nextEvent(client, 'update', { failOn: ['warning'] });
    client.start();
    assert.deepEqual(announceCounts(await update), { complete: 0, incomplete: 1 });
    const socket = client._trackers[0].socket;

    extra = { numwant: 0, event: 'bogus' };
    const warning = nextEvent(client, 'warning');
    client.setInterval(200); // the next periodic announce carries event "bogus"
    const err = await warning.finally(() => client.setInterval(0));
    assert.equal(err.message, 'invalid event');
    assert.ok(await d.metric('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'invalid_event' }) > errorsBefore);

    // Same socket, still connected, no reconnect pending.
    const tracker = client._trackers[0];
    assert.equal(tracker.destroyed, false);
    assert.equal(tracker.reconnecting, false);
    assert.equal(tracker.socket, socket);
    assert.equal(socket.connected, true);

    // ... and it still works: a periodic announce with `paused` (accepted by the reference)
    // is answered, with the peer still in the swarm.
    extra = { numwant: 0, event: 'paused' };
    const again = nextEvent(client, 'update', { failOn: ['warning'] });
    client.setInterval(200);
    const u = await again.finally(() => client.setInterval(0));
    assert.deepEqual(announceCounts(u), { complete: 0, incomplete: 1 });
    assert.equal(await d.metric('swarmcoord_connections_accepted_total'), acceptedBefore + 1);
    assert.equal(await d.metric('swarmcoord_connections', { protocol: 'webtorrent' }), 1);
    assert.deepEqual(clients.warningsOf(client), ['invalid event']);
  });

  test('"invalid peer_id" with a known info_hash is a warning too: socket kept', async (t) => {
    const clients = new Clients();
    t.after(() => clients.destroyAll());
    const acceptedBefore = await d.metric('swarmcoord_connections_accepted_total');
    const client = clients.make(d.wsUrl, { peerId: trickyId(19) }); // a broken app's 19-byte peer id
    const warning = nextEvent(client, 'warning');
    client.start({ numwant: 0 });
    assert.equal((await warning).message, 'invalid peer_id');
    assert.equal(client._trackers[0].destroyed, false);
    assert.equal(client._trackers[0].reconnecting, false);
    // The socket is alive: a scrape over it is answered.
    const scrape = nextEvent(client, 'scrape', { failOn: ['warning'] });
    client.scrape();
    const s = await scrape;
    assert.deepEqual([s.complete, s.incomplete], [0, 0]);
    assert.equal(await d.metric('swarmcoord_connections_accepted_total'), acceptedBefore + 1);
    assert.equal(await d.metric('swarmcoord_connections', { protocol: 'webtorrent' }), 1);
  });

  test('an announce without a usable info_hash gets the action-less failure: the client drops the socket', async (t) => {
    const clients = new Clients();
    t.after(() => clients.destroyAll());
    const errorsBefore = await d.metric('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'invalid_info_hash' });
    await waitUntil(async () => {
      const n = await d.metric('swarmcoord_connections', { protocol: 'webtorrent' });
      return { ok: n === 0, connections: n };
    }, 'connections left over from the previous test');
    const client = clients.make(d.wsUrl, { infoHash: trickyId(19) });
    const warning = nextEvent(client, 'warning');
    client.start({ numwant: 0 });
    // The reply can't carry an info_hash the client would recognise, so it has no `action`,
    // which bittorrent-tracker treats as a socket error: it closes and schedules a reconnect.
    assert.equal((await warning).message, 'invalid action in WS response: undefined');
    assert.equal(client._trackers[0].reconnecting, true);
    assert.equal(await d.metric('swarmcoord_protocol_errors_total', { protocol: 'webtorrent', reason: 'invalid_info_hash' }),
      errorsBefore + 1);
    await waitUntil(async () => {
      const n = await d.metric('swarmcoord_connections', { protocol: 'webtorrent' });
      return { ok: n === 0, connections: n };
    }, 'the daemon seeing the client close its socket');
    assert.deepEqual(await peerGauges(d), { seeders: 0, leechers: 0, swarms: 0 });
  });
});

test('no tracker socket outlives the tests that opened it', () => {
  // Every test destroyed its clients; bittorrent-tracker's socket pool must be empty.
  assert.deepEqual(Object.keys(WebSocketTracker._socketPool), []);
});
