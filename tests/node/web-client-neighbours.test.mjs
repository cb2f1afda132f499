// The browser client (clients/web) over a fake WebRTC network (lib/fake-rtc.mjs): neighbours
// that refuse, stay silent, send garbage or corrupt blocks, come back under another peer id,
// and the back-pressure of large blocks. No sockets, no WebRTC: every exchange is scripted, so
// every byte from the origin and from peers can be accounted for exactly.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { manifestOf, until } from './lib/proc.mjs';
import { FakeNet, bitfieldOf, blockOf, chunkFrame, chunkFrames, seeder, fakeOrigin, CHUNK_PAYLOAD } from './lib/fake-rtc.mjs';

const web = (m) => new URL(`../../clients/web/${m}`, import.meta.url).href;
const { SwarmClient, SwarmRequest } = await import(web('swarmcoord.js'));

// ------------------------------------------------------------------ over a fake WebRTC network

// Neighbours' peer ids (16 hex digits, as the coordinator hands them out).
const SEED = '5eed000000000001';
const BAD = 'bad0000000000001';
const HOSTILE_URL = 'https://cdn.example/hostile.bin';
const T = { timeout: 30000 };  // per test: a hang fails that test, not the whole run

describe('SwarmClient over a fake WebRTC network: hostile neighbours cannot spoil or stall a download', () => {
  const nets = [];
  const clients = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const n of nets.splice(0)) n.close();
  });

  // A resource of `blocks` blocks (the last one 100 bytes short), its origin, a fake network,
  // and a client on it that waits for neighbours (p2pWaitMs) and for each request
  // (requestTimeoutMs) far longer than any test: only what a test provokes sends blocks to the
  // origin. client.logs keeps what it logged; the origin's GETs wait for `gate` when given.
  function scene({ blocks = 16, blockSize = 1024, net: netOpts, gate, ...opts } = {}) {
    const data = new Uint8Array(crypto.randomBytes(blocks * blockSize - 100));
    const origin = fakeOrigin(data, { gate });
    const net = new FakeNet(netOpts);
    nets.push(net);
    const client = netClient(net, origin, { blockSize, ...opts });
    const len = (i) => blockOf(data, blockSize, i).length;
    const full = bitfieldOf(blocks);
    return { data, origin, net, client, blocks, blockSize, len, full, url: HOSTILE_URL };
  }

  function netClient(net, origin, opts = {}) {
    const logs = [];
    const c = new SwarmClient({
      coordinator: 'ws://coord.test/v1/ws', WebSocket: net.WebSocket, RTCPeerConnection: net.RTCPeerConnection,
      fetch: origin.fetchImpl, log: (level, message) => logs.push(`${level} ${message}`),
      blockSize: 1024, p2pWaitMs: 60000, requestTimeoutMs: 60000, reportIntervalMs: 60000, ...opts,
    });
    c.logs = logs;
    clients.push(c);
    return c;
  }

  // A promise the test awaits later, or not at all when it failed first (the client's close()
  // then rejects it): no unhandled rejection either way.
  const quiet = (p) => { p.catch(() => {}); return p; };

  // Runs fn(end) once pred() holds (a neighbour that waits for something to happen first).
  const once = (net, pred, what, fn) => (end) => { net.waitFor(pred, what).then(() => fn(end), () => {}); };

  // The download arrived whole; bytes from peers + from the origin = the size; the origin
  // served exactly what the client counted as httpBytes.
  async function assertWhole(s, res) {
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(s.data)), 'the bytes fetched are the resource');
    const st = s.client.stats(s.url);
    assert.equal(st.haveBlocks, s.blocks);
    assert.equal(st.p2pBytes + st.httpBytes, s.data.length, `p2p ${st.p2pBytes} + http ${st.httpBytes} must be the size`);
    assert.equal(s.origin.served(), st.httpBytes, 'the origin served exactly httpBytes');
    return st;
  }

  const resourceOf = (s) => s.client.resources.get(s.url);

  it('(a) a neighbour answering every request with `busy`: exactly the blocks it refused come from the origin, the rest from the other neighbour', T, async () => {
    const s = scene();
    const BUSY = s.net.peer('b05f000000000001', (end) => {
      end.bitfield(s.full);
      end.onFrame = (f) => { if (f.t === 'request') end.send({ t: 'error', block: f.block, code: 'busy' }); };
    });
    // the seed speaks up once the busy one has been asked for something
    s.net.peer(SEED, once(s.net, () => s.net.endsOf(BUSY)[0]?.requests().length > 0, 'a request to the busy neighbour', seeder(s.data, { blockSize: s.blockSize })));
    s.net.onJoin = () => [{ peer_id: BUSY, initiator: true }, { peer_id: SEED, initiator: true }];
    const st = await assertWhole(s, await s.client.fetch(s.url));
    const asked = s.net.endsOf(BUSY)[0].requests();
    assert.ok(asked.length >= 1);
    assert.equal(new Set(asked).size, asked.length, `no block asked of the busy neighbour twice: ${asked}`);
    assert.equal(st.httpBytes, asked.reduce((n, i) => n + s.len(i), 0), `the origin served the refused blocks ${asked}, and nothing else`);
    assert.equal(s.net.endsOf(SEED)[0].requests().filter((b) => asked.includes(b)).length, 0, 'a refused block is not asked of anyone else');
    assert.deepEqual({ neighbors: st.neighbors, badPeers: st.badPeers }, { neighbors: 2, badPeers: 0 }, '`busy` is no offence');
    assert.deepEqual(s.client.logs.filter((l) => /timed out|no block arrived/.test(l)), [], 'no deadline was needed');
  });

  it('(b) a neighbour claiming every block and never answering: every request is cancelled at its deadline and the origin serves it all', T, async () => {
    const s = scene({ blocks: 8, requestTimeoutMs: 500, p2pWaitMs: 100 });
    const SILENT = s.net.peer('5113000000000001', (end) => end.bitfield(s.full));
    s.net.onJoin = () => [{ peer_id: SILENT, initiator: true }];
    const t0 = Date.now();
    const st = await assertWhole(s, await s.client.fetch(s.url));
    assert.ok(Date.now() - t0 >= 500, 'the first deadline passed before the origin was asked');
    assert.equal(st.httpBytes, s.data.length);
    const end = s.net.endsOf(SILENT)[0];
    const asked = end.requests();
    assert.ok(asked.length >= 4, `asked for ${asked}`);
    assert.equal(new Set(asked).size, asked.length, `no block asked twice: ${asked}`);
    // every request passed its deadline and was cancelled (no 'timed out' request left pending)
    await s.net.waitFor(() => end.cancels().length === asked.length, 'a cancel for every request');
    assert.deepEqual(end.cancels().sort(), [...asked].sort());
    assert.equal(s.client.logs.filter((l) => /timed out/.test(l)).length, asked.length);
    assert.deepEqual({ neighbors: st.neighbors, badPeers: st.badPeers }, { neighbors: 1, badPeers: 0 }, 'a few missed deadlines are no offence');
  });

  it('(b) a silent neighbour claiming many blocks is not asked for them round after round once the watchdog gave the rest to the origin', {
    ...T,
  }, async () => {
    const s = scene({ blocks: 40, requestTimeoutMs: 1000, p2pWaitMs: 100 });
    const SILENT = s.net.peer('5113000000000002', (end) => end.bitfield(s.full));
    s.net.onJoin = () => [{ peer_id: SILENT, initiator: true }];
    const st = await assertWhole(s, await s.client.fetch(s.url));
    assert.equal(st.httpBytes, s.data.length);
    const asked = s.net.endsOf(SILENT)[0].requests();
    // what was in flight when the watchdog fired, plus at most one more round
    assert.ok(asked.length <= 8, `the silent neighbour was asked for ${asked.length} of ${s.blocks} blocks`);
  });

  // (c) Frames that break the protocol: [name, what the neighbour sends once it holds four
  // requests (requestsPerNeighbor), the reason the client logs].
  const GARBAGE = [
    ['not JSON', () => 'this is not JSON', /protocol error: control message is not JSON/],
    ['an unknown `t`', () => ({ t: 'piece', block: 0 }), /protocol error: unknown message piece/],
    ['a block out of range', (s) => ({ t: 'have', blocks: [1, s.blocks] }), /protocol error: block 16 out of range/],
    ['a chunk out of range', (s) => chunkFrame(s.blocks, 0, new Uint8Array(10)), /protocol error: chunk for block 16 out of range/],
    ['an unrequested chunk', (s, end, block) => {
      const other = [...Array(s.blocks).keys()].find((i) => !end.requests().includes(i));
      return chunkFrame(other, 0, blockOf(s.data, s.blockSize, other));
    }, /protocol error: unrequested chunk of block \d+/],
    ['an out-of-order chunk', (s, end, block) => chunkFrame(block, 512, blockOf(s.data, s.blockSize, block).subarray(512)), /protocol error: chunk at 512 of block \d+ out of order/],
    ['a second bitfield', (s) => ({ t: 'bitfield', have: s.full }), /protocol error: second bitfield/],
  ];
  for (const [name, garbage, reason] of GARBAGE) {
    it(`(c) a neighbour sending ${name} is closed and banned, its requests go to another neighbour, and it is not linked again`, T, async () => {
      const s = scene();
      s.net.peer(BAD, (end) => {
        end.bitfield(s.full);
        end.onFrame = (f) => { if (f.t === 'request' && end.requests().length === 4) end.send(garbage(s, end, f.block)); };
      });
      s.net.peer(SEED, once(s.net, () => s.net.endsOf(BAD)[0]?.requests().length > 0, 'a request to the bad neighbour', seeder(s.data, { blockSize: s.blockSize })));
      s.net.onJoin = () => [{ peer_id: BAD, initiator: true }, { peer_id: SEED, initiator: true }];
      const download = quiet(s.client.fetch(s.url));
      await s.net.waitFor(() => s.net.endsOf(BAD)[0]?.isClosed, 'the bad neighbour closed');
      assert.equal(s.client.logs.filter((l) => l.includes(`neighbour ${BAD} gone`)).length, 1);
      assert.match(s.client.logs.find((l) => l.includes(`neighbour ${BAD} gone`)), reason);
      // the coordinator assigns it again: ignored (a link would make its connection at once)
      const pcs = s.net.pcs.length;
      resourceOf(s).client.coordinator.ws.push({ type: 'neighbors', swarm: s.url, add: [{ peer_id: BAD, initiator: true }], remove: [] });
      assert.equal(s.net.pcs.length, pcs, 'no new RTCPeerConnection for a banned neighbour');
      assert.equal(resourceOf(s).links.has(BAD), false);
      const st = await assertWhole(s, await download);
      assert.deepEqual({ p2p: st.p2pBytes, http: st.httpBytes }, { p2p: s.data.length, http: 0 }, 'what the bad neighbour held back came from the good one');
      assert.deepEqual({ neighbors: st.neighbors, badPeers: st.badPeers }, { neighbors: 1, badPeers: 1 });
      assert.equal(s.net.endsOf(BAD).length, 1, 'linked once');
      assert.equal(s.net.sent('signal').filter((m) => m.to === BAD).length, 1, 'one offer to it, before the ban');
    });
  }

  it('(d) a request that timed out: the late chunks of the cancelled block, in order, are dropped and the link survives', T, async () => {
    const s = scene({ blocks: 6, blockSize: 65536, requestTimeoutMs: 300 });
    let late = -1;
    const LATE = s.net.peer('1a7e000000000001', (end) => {
      end.bitfield(s.full);
      end.onFrame = (f) => {
        const bytes = (b) => blockOf(s.data, s.blockSize, b);
        if (f.t === 'request' && late < 0) {
          // the first block asked: one chunk now, the rest only once the client gave up on it
          late = f.block;
          end.send(chunkFrames(f.block, bytes(f.block))[0]);
        } else if (f.t === 'request') {
          end.sendBlock(f.block, bytes(f.block));
        } else if (f.t === 'cancel' && f.block === late) {
          end.sendBlock(late, bytes(late), CHUNK_PAYLOAD);
        }
      };
    });
    s.net.onJoin = () => [{ peer_id: LATE, initiator: true }];
    const st = await assertWhole(s, await s.client.fetch(s.url));
    const end = s.net.endsOf(LATE)[0];
    await s.net.waitFor(() => end.cancels().length > 0, 'the cancel');
    assert.deepEqual(end.cancels(), [late], 'only the held-back block was cancelled');
    // the late chunks reach the client and are drained as the rest of the cancelled block
    const n = resourceOf(s).links.get(LATE);
    await s.net.waitFor(() => !n.cancelled.has(late) || end.isClosed, 'the cancelled block drained');
    assert.equal(end.isClosed, false, `the link survives: ${s.client.logs.join('\n')}`);
    assert.deepEqual({ http: st.httpBytes, p2p: st.p2pBytes }, { http: s.len(late), p2p: s.data.length - s.len(late) }, `block ${late} from the origin, the rest from the neighbour`);
    assert.deepEqual({ neighbors: s.client.stats(s.url).neighbors, badPeers: st.badPeers }, { neighbors: 1, badPeers: 0 });
    assert.deepEqual(s.client.logs.filter((l) => /protocol error/.test(l)), []);
  });

  it('(d) chunks of a cancelled block out of order close and ban the link', T, async () => {
    const s = scene({ blocks: 6, blockSize: 65536, requestTimeoutMs: 300 });
    let late = -1;
    const LATE = s.net.peer('1a7e000000000002', (end) => {
      end.bitfield(s.full);
      end.onFrame = (f) => {
        const bytes = (b) => blockOf(s.data, s.blockSize, b);
        if (f.t === 'request' && late < 0) late = f.block;  // held back
        else if (f.t === 'request') end.sendBlock(f.block, bytes(f.block));
        else if (f.t === 'cancel' && f.block === late) end.sendBlock(late, bytes(late), CHUNK_PAYLOAD);  // the first chunk skipped
      };
    });
    s.net.onJoin = () => [{ peer_id: LATE, initiator: true }];
    const download = quiet(s.client.fetch(s.url));
    const end = await s.net.waitFor(() => s.net.endsOf(LATE)[0]?.isClosed && s.net.endsOf(LATE)[0], 'the late neighbour closed');
    assert.deepEqual(end.cancels(), [late]);
    assert.deepEqual(s.client.logs.filter((l) => l.includes(`neighbour ${LATE} gone`)), [`debug neighbour ${LATE} gone: protocol error: unrequested chunk of block ${late}`]);
    const st = await assertWhole(s, await download);
    assert.ok(st.httpBytes >= s.len(late), `block ${late} came from the origin`);
    assert.equal(st.badPeers, 1);
    assert.equal(st.neighbors, 0);
  });

  it('(d) late chunks of a block cancelled more than 4 × requestTimeoutMs before still continue it in order: the link survives', {
    ...T,
  }, async () => {
    const s = scene({ blocks: 24, requestTimeoutMs: 60, requestsPerNeighbor: 1 });
    // A neighbour whose channel is stuck: nothing arrives until six requests have timed out, then
    // every block asked so far arrives, in the order asked (as an ordered channel delivers).
    const LATE = s.net.peer('1a7e000000000003', (end) => {
      end.bitfield(s.full);
      let flushed = false;
      end.onFrame = (f) => {
        if (flushed && f.t === 'request') end.sendBlock(f.block, blockOf(s.data, s.blockSize, f.block));
        if (!flushed && f.t === 'cancel' && end.cancels().length === 6) {
          flushed = true;
          for (const b of end.requests()) end.sendBlock(b, blockOf(s.data, s.blockSize, b));
        }
      };
    });
    s.net.onJoin = () => [{ peer_id: LATE, initiator: true }];
    await assertWhole(s, await s.client.fetch(s.url));
    const end = s.net.endsOf(LATE)[0];
    await s.net.waitFor(() => end.isClosed || resourceOf(s).links.get(LATE)?.cancelled.size === 0, 'the cancelled blocks drained');
    assert.deepEqual(s.client.logs.filter((l) => /protocol error/.test(l)), []);
    assert.equal(end.isClosed, false);
  });

  it('(e) a corrupt block with a manifest: the sender is banned and named in the next report\'s bad_peers, the block comes from the origin', T, async () => {
    const s = scene({ blocks: 12 });
    const manifest = await manifestOf(s.data, s.blockSize);
    let corrupt = -1;
    s.net.peer(BAD, (end) => {
      end.bitfield(s.full);
      end.onFrame = (f) => {
        if (f.t !== 'request' || corrupt >= 0) return;  // answers its first request only
        corrupt = f.block;
        const bytes = blockOf(s.data, s.blockSize, f.block).slice();
        bytes[7] ^= 0x01;
        end.sendBlock(f.block, bytes);
      };
    });
    s.net.peer(SEED, once(s.net, () => s.net.endsOf(BAD)[0]?.requests().length > 0, 'a request to the bad neighbour', seeder(s.data, { blockSize: s.blockSize })));
    s.net.onJoin = () => [{ peer_id: BAD, initiator: true }, { peer_id: SEED, initiator: true }];
    const st = await assertWhole(s, await s.client.fetch(s.url, { manifest }));
    assert.ok(s.net.endsOf(BAD)[0].isClosed, 'the corrupt sender was closed');
    const pcs = s.net.pcs.length;
    s.client.coordinator.ws.push({ type: 'neighbors', swarm: s.url, add: [{ peer_id: BAD, initiator: true }], remove: [] });
    assert.equal(s.net.pcs.length, pcs, 'the coordinator\'s re-add of it is ignored');
    assert.match(s.client.logs.join('\n'), new RegExp(`block ${corrupt} from neighbour ${BAD} does not match the manifest`));
    assert.deepEqual({ http: st.httpBytes, p2p: st.p2pBytes }, { http: s.len(corrupt), p2p: s.data.length - s.len(corrupt) }, `block ${corrupt} from the origin, nothing else`);
    const ranges = s.origin.requests.filter((r) => r.method === 'GET').map((r) => r.range);
    assert.deepEqual(ranges, [`bytes=${corrupt * s.blockSize}-${corrupt * s.blockSize + s.len(corrupt) - 1}`]);
    assert.deepEqual({ neighbors: st.neighbors, badPeers: st.badPeers }, { neighbors: 1, badPeers: 1 });
    // the report sent right after the ban names it; no other report does
    const reports = s.net.sent('report');
    assert.deepEqual(reports[0]?.bad_peers, [BAD], JSON.stringify(reports));
    assert.equal(reports.filter((r) => r.bad_peers).length, 1);
    s.client.release(s.url);  // the last report goes out
    const sum = (k) => s.net.sent('report').reduce((n, r) => n + r[k], 0);
    assert.deepEqual({ http: sum('http_bytes'), p2p: sum('p2p_bytes') }, { http: st.httpBytes, p2p: st.p2pBytes }, 'the reports add up to the stats');
  });

  it('(f) the same client under a new peer id after a coordinator restart: the older link is closed, its requests go to the newer one', {
    ...T,
  }, async () => {
    const s = scene({ requestTimeoutMs: 5000 });
    const CLIENT = 'c11e47c11e47c11e';
    const OLD = '01d0000000000001';
    const NEW = '2e20000000000001';
    // before the restart: serves two blocks, then holds every request back
    s.net.peer(OLD, seeder(s.data, { blockSize: s.blockSize, client: CLIENT, onRequest: (end) => end.requests().length > 2 }));
    s.net.peer(NEW, seeder(s.data, { blockSize: s.blockSize, client: CLIENT }));
    let joins = 0;
    s.net.onJoin = () => [{ peer_id: joins++ === 0 ? OLD : NEW, initiator: true }];
    const download = quiet(s.client.fetch(s.url));
    const old = await s.net.waitFor(() => s.net.endsOf(OLD)[0]?.requests().length > 2 && s.net.endsOf(OLD)[0], 'requests held back by the old link');
    const first = s.client.coordinator.ws;
    first.drop(1006);
    const fresh = await s.net.waitFor(() => s.net.endsOf(NEW)[0], 'the link to the new peer id');
    assert.notEqual(s.client.coordinator.ws, first, 'the client reconnected');
    assert.equal(s.net.sent('join').length, 2, 'and joined again');
    await s.net.waitFor(() => old.isClosed, 'the older link closed', 3000);
    assert.ok(s.client.logs.some((l) => l === `debug neighbour ${OLD} gone: replaced by a newer link to the same client`), s.client.logs.join('\n'));
    const st = await assertWhole(s, await download);
    assert.deepEqual({ p2p: st.p2pBytes, http: st.httpBytes }, { p2p: s.data.length, http: 0 }, 'what the old link held back came over the new one');
    assert.deepEqual({ neighbors: st.neighbors, badPeers: st.badPeers }, { neighbors: 1, badPeers: 0 });
    assert.equal(fresh.isClosed, false);
  });

  it('(f) a banned client under a new peer id is closed at once, asked nothing, and leaves no availability behind', {
    ...T,
  }, async () => {
    const s = scene();
    const CLIENT = 'bad0c11e47000001';
    const AGAIN = 'bad0000000000002';
    s.net.peer(BAD, (end) => {
      end.bitfield(s.full, CLIENT);
      end.onFrame = (f) => { if (f.t === 'request') end.send('not JSON'); };
    });
    s.net.peer(AGAIN, seeder(s.data, { blockSize: s.blockSize, client: CLIENT }));
    s.net.peer(SEED, once(s.net, () => s.net.endsOf(AGAIN)[0]?.isClosed, 'the banned client closed again', seeder(s.data, { blockSize: s.blockSize })));
    s.net.onJoin = () => [{ peer_id: BAD, initiator: true }, { peer_id: SEED, initiator: true }];
    const download = quiet(s.client.fetch(s.url));
    await s.net.waitFor(() => s.net.endsOf(BAD)[0]?.isClosed, 'the bad neighbour closed');
    s.client.coordinator.ws.push({ type: 'neighbors', swarm: s.url, add: [{ peer_id: AGAIN, initiator: true }], remove: [] });
    const again = await s.net.waitFor(() => s.net.endsOf(AGAIN)[0], 'a link under the new peer id');
    await s.net.waitFor(() => again.isClosed, 'the banned client closed under its new peer id', 3000);
    assert.deepEqual(again.requests(), [], 'nothing was asked of it');
    assert.ok(s.client.logs.includes(`debug neighbour ${AGAIN} gone: dropped earlier under another peer id`), s.client.logs.join('\n'));
    assert.deepEqual([...new Set(resourceOf(s).availability)], [0], 'no neighbour with a bitfield is left');
    const st = await assertWhole(s, await download);
    assert.deepEqual({ p2p: st.p2pBytes, http: st.httpBytes }, { p2p: s.data.length, http: 0 });
    assert.equal(st.neighbors, 1);
  });

  it('(g) offers from peers the coordinator did not announce in `neighbors` are ignored', T, async () => {
    const s = scene();
    const STRANGER = s.net.peer('5e2a000000000001', seeder(s.data, { blockSize: s.blockSize }));
    s.net.peer(SEED, seeder(s.data, { blockSize: s.blockSize }));
    s.net.onJoin = () => [{ peer_id: SEED, initiator: false }];  // it offers, we answer
    const download = quiet(s.client.fetch(s.url));
    await s.net.waitFor(() => s.net.sockets[0]?.sent.some((m) => m.type === 'join'), 'the join');
    await s.net.waitFor(() => resourceOf(s)?.links.has(SEED), 'the announced neighbour');
    assert.equal(s.net.pcs.length, 1, 'one RTCPeerConnection, waiting for the announced neighbour\'s offer');
    const ws = s.client.coordinator.ws;
    const offer = (from) => ws.push({ type: 'signal', swarm: s.url, from, data: { type: 'offer', sdp: `fake:peer:${from}` } });
    offer(STRANGER);
    ws.push({ type: 'signal', swarm: s.url, from: STRANGER, data: { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 } } });
    offer(SEED);
    await s.net.waitFor(() => s.net.sent('signal').some((m) => m.to === SEED && m.data.type === 'answer'), 'the answer to the announced neighbour');
    const st = await assertWhole(s, await download);
    assert.deepEqual(s.net.sent('signal').filter((m) => m.to === STRANGER), [], 'nothing sent to the stranger');
    assert.equal(s.net.pcs.length, 1, 'no RTCPeerConnection for the stranger');
    assert.deepEqual(s.net.endsOf(STRANGER), []);
    assert.equal(resourceOf(s).links.has(STRANGER), false);
    assert.deepEqual({ p2p: st.p2pBytes, neighbors: st.neighbors }, { p2p: s.data.length, neighbors: 1 });
  });

  it('(h) an onProgress callback that throws fails neither its own caller\'s download nor another caller\'s', T, async () => {
    const s = scene({ net: { joinedPeers: 0 }, p2pWaitMs: 0 });  // alone: all from the origin
    let calls = 0;
    const [a, b] = await Promise.allSettled([
      s.client.fetch(s.url, { onProgress: () => { calls++; throw new Error('ui bug'); } }),
      s.client.fetch(s.url, { onProgress: () => {} }),
    ]);
    assert.equal(a.status, 'fulfilled', a.reason?.stack);
    assert.equal(b.status, 'fulfilled', b.reason?.stack);
    await assertWhole(s, b.value);
    assert.ok(Buffer.from(await a.value.arrayBuffer()).equals(Buffer.from(s.data)));
    assert.equal(calls, s.blocks, 'the throwing listener was called for every block');
    assert.equal(s.client.logs.filter((l) => l === 'warn progress listener failed: ui bug').length, s.blocks);
  });

  it('(h) SwarmRequest handlers that throw: onload does not turn into onerror, nothing becomes an unhandled rejection', T, async () => {
    const s = scene({ net: { joinedPeers: 0 }, p2pWaitMs: 0 });
    const unhandled = [];
    const onUnhandled = (e) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const savedError = console.error;
    const printed = [];
    console.error = (...args) => printed.push(args.map(String).join(' '));
    try {
      const xhr = new SwarmRequest(s.client);
      xhr.open('GET', s.url);
      xhr.responseType = 'arraybuffer';
      const events = [];
      const ended = new Promise((resolve) => { xhr.onloadend = () => { events.push('loadend'); resolve(); throw new Error('loadend bug'); }; });
      xhr.onprogress = () => { throw new Error('progress bug'); };
      xhr.onload = () => { events.push('load'); throw new Error('load bug'); };
      xhr.onerror = (e) => events.push(`error ${e.error?.message}`);
      xhr.onabort = () => events.push('abort');
      xhr.send();
      await ended;
      // unhandled rejections are reported once the microtask queue drains, before the next turn
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(events, ['load', 'loadend']);
      assert.equal(xhr.status, 200);
      assert.ok(Buffer.from(xhr.response).equals(Buffer.from(s.data)));
      assert.deepEqual(unhandled, []);
      for (const h of ['onprogress', 'onload', 'onloadend']) assert.ok(printed.some((p) => p.startsWith(`SwarmRequest ${h} handler threw:`)), `${h}: ${printed.join('\n')}`);
    } finally {
      console.error = savedError;
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('(i) fetch() with a manifest of a URL already being fetched without one rejects; release() leaves the swarm and frees it', T, async () => {
    let open;
    const s = scene({ net: { joinedPeers: 0 }, p2pWaitMs: 0, gate: new Promise((r) => { open = r; }) });
    const { origin } = s;
    const manifest = await manifestOf(s.data, s.blockSize);
    const plain = quiet(s.client.fetch(s.url));
    await s.net.waitFor(() => origin.requests.some((r) => r.method === 'GET'), 'the download under way');
    await assert.rejects(s.client.fetch(s.url, { manifest }), (e) => e instanceof Error && e.message === `${s.url} is already being fetched without a manifest; release() it first`);
    open();
    const res = await plain;
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(s.data)), 'the first download is unharmed');
    assert.equal(resourceOf(s).manifest, null);

    assert.equal(s.client.release(s.url), true);
    await s.net.waitFor(() => s.net.sent('leave').length === 1, 'the leave');
    assert.deepEqual(s.net.sent('leave'), [{ type: 'leave', swarm: s.url }]);
    assert.equal(s.client.stats(s.url), null);
    assert.equal(s.client.resources.size, 0);
    assert.equal(s.client.release(s.url), false, 'nothing left to release');
    // released: the same URL can now be fetched with the manifest (a new resource, a new join)
    const verified = await s.client.fetch(s.url, { manifest });
    assert.ok(Buffer.from(await verified.arrayBuffer()).equals(Buffer.from(s.data)));
    assert.notEqual(resourceOf(s).manifest, null);
    assert.equal(s.net.sent('join').length, 2);
  });

  it('(i) release() of a download under way rejects its fetch with AbortError and leaves the swarm', T, async () => {
    const s = scene({ net: { joinedPeers: 0 }, p2pWaitMs: 0, gate: new Promise(() => {}) });  // no GET is ever answered
    const download = quiet(s.client.fetch(s.url));
    await s.net.waitFor(() => s.net.sent('join').length === 1 && resourceOf(s), 'the join');
    assert.equal(s.client.release(s.url), true);
    await assert.rejects(download, { name: 'AbortError' });
    assert.deepEqual(s.net.sent('leave'), [{ type: 'leave', swarm: s.url }]);
    assert.equal(s.client.stats(s.url), null);
  });

  it('(i) fetch() with a manifest that loses the race to a fetch without one (still loading its manifest) rejects too', {
    ...T,
  }, async () => {
    const s = scene({ net: { joinedPeers: 0 }, p2pWaitMs: 0 });
    const manifest = await manifestOf(s.data, s.blockSize);
    let serveManifest;
    const manifestGate = new Promise((r) => { serveManifest = r; });
    const origin = s.client.fetchImpl;
    s.client.fetchImpl = async (url, init) => (url.endsWith('.manifest.json') ? manifestGate.then(() => Response.json(manifest)) : origin(url, init));
    const verified = quiet(s.client.fetch(s.url, { manifest: `${s.url}.manifest.json` }));
    const plain = quiet(s.client.fetch(s.url));
    await until(() => resourceOf(s), { what: 'the resource of the fetch without a manifest' });
    serveManifest();
    await assert.rejects(verified, /already being fetched without a manifest/);
    await plain;
  });

  it('(j) 1 MiB blocks go chunk by chunk, the send buffer never holding more than 1 MiB + one chunk', T, async () => {
    const BLOCK = 1 << 20;
    const data = new Uint8Array(crypto.randomBytes(4 * BLOCK + 12345));
    const origin = fakeOrigin(data);
    // every channel drains 64 KiB a millisecond or so: a block takes many rounds to leave
    const net = new FakeNet({ throttle: { bytesPerTick: 65536, intervalMs: 1 } });
    nets.push(net);
    const members = [];
    net.onJoin = (sock, msg) => {
      const others = members.slice();
      members.push(sock);
      for (const o of others) o.reply({ type: 'neighbors', swarm: msg.swarm, add: [{ peer_id: sock.peerId, initiator: false }], remove: [] });
      return others.map((o) => ({ peer_id: o.peerId, initiator: true }));
    };
    const seedClient = netClient(net, origin, { blockSize: BLOCK });
    await seedClient.seed(HOSTILE_URL, data);
    await net.waitFor(() => net.sent('join').length === 1, 'the seed joined');
    const fetcher = netClient(net, origin, { blockSize: BLOCK });
    const res = await fetcher.fetch(HOSTILE_URL);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(data)), 'the bytes fetched are the resource');
    const st = fetcher.stats(HOSTILE_URL);
    assert.deepEqual({ p2p: st.p2pBytes, http: st.httpBytes, blocks: st.blocks }, { p2p: data.length, http: 0, blocks: 5 });
    assert.equal(seedClient.stats(HOSTILE_URL).uploadedBytes, data.length);
    const up = net.channels.filter((ch) => ch.sentBytes >= data.length);
    assert.equal(up.length, 1, 'one channel carried the blocks');
    const [ch] = up;
    assert.ok(ch.maxFrameBytes <= 16384, `frames of up to ${ch.maxFrameBytes} bytes`);
    assert.ok(ch.sentFrames >= Math.ceil(data.length / CHUNK_PAYLOAD), `${ch.sentFrames} frames`);
    assert.ok(ch.maxBufferedAmount <= BLOCK + 16384, `bufferedAmount reached ${ch.maxBufferedAmount}`);
    assert.ok(ch.maxBufferedAmount >= BLOCK - 16384, `the sender filled the buffer to the mark (${ch.maxBufferedAmount}), so it waited`);
    assert.ok(ch.lowEvents >= 1, 'and resumed on bufferedamountlow');
  });
});
