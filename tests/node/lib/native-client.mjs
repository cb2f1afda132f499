// A native-protocol (ws://HOST/v1/ws) test client on top of WsClient: hello/join helpers, and a
// record of every neighbors message received, applied remove-before-add, so that a test can
// read each client's view of the mesh at any time and compare the views of several clients.
import { WsClient, withTimeout } from './ws-client.mjs';

// Filters for WsClient.next(): a message of one type (and swarm), an error (of one code).
export const isType = (type, swarm) => (j) => !!j && j.type === type && (swarm === undefined || j.swarm === swarm);
export const isError = (code) => (j) => !!j && j.type === 'error' && (code === undefined || j.code === code);

// Bitfield of `blocks` blocks with the given block indices set (bit i = block i, MSB of byte 0
// first), as base64.
export function bitfield(blocks, set = []) {
  const bytes = Buffer.alloc(Math.ceil(blocks / 8));
  for (const i of set) bytes[i >> 3] |= 0x80 >> (i & 7);
  return bytes.toString('base64');
}

let swarmCounter = 0;
// A fresh swarm URL (unique per call), so that tests never share a swarm by accident.
export function freshSwarm(tag = 'res') {
  swarmCounter += 1;
  return `https://cdn.example.org/${tag}/${process.pid}-${swarmCounter}-${Math.random().toString(36).slice(2, 8)}.bin`;
}

export class NativeClient {
  constructor(wc, localAddress) {
    this.wc = wc;
    this.localAddress = localAddress;
    this.peerId = null;
    this.welcome = null;
    this.maxNeighbors = null;
    // swarm key -> Map(peer_id -> { initiator, locality, have })
    this.mesh = new Map();
    // Every neighbors message, in arrival order: { at, msg }.
    this.neighborLog = [];
    this.lastNeighborsAt = 0;
    // Type (and swarm) of every text message received, in arrival order.
    this.received = [];
    // Runs after WsClient's own listener, synchronously in the same 'message' event: the state
    // is up to date before whatever awaited the message continues.
    wc.ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let j;
      try { j = JSON.parse(data.toString()); } catch { return; }
      this.received.push({ type: j?.type, swarm: j?.swarm });
      if (j?.type !== 'neighbors') return;
      this.lastNeighborsAt = Date.now();
      this.neighborLog.push({ at: this.lastNeighborsAt, msg: j });
      let m = this.mesh.get(j.swarm);
      if (!m) this.mesh.set(j.swarm, (m = new Map()));
      for (const id of j.remove ?? []) m.delete(id);
      for (const a of j.add ?? []) m.set(a.peer_id, { initiator: a.initiator, locality: a.locality, have: a.have });
    });
  }

  // Opens a WebSocket to d's /v1/ws from localAddress (a 127.x.y.z address).
  static async open(d, { localAddress = '127.0.0.1', path = '/v1/ws' } = {}) {
    const wc = await WsClient.open(`${d.wsUrl}${path}`, { localAddress });
    return new NativeClient(wc, localAddress);
  }

  // Opens and says hello; resolves with the client once welcome arrived.
  static async connect(d, { localAddress, ...hello } = {}) {
    const c = await NativeClient.open(d, { localAddress });
    try {
      await c.hello(hello);
    } catch (e) {
      c.wc.terminate();
      throw e;
    }
    return c;
  }

  send(msg, opts) { return this.wc.send(msg, opts); }
  next(filter, what = 'message', timeoutMs = 5000) { return this.wc.next({ filter, what, timeoutMs }); }
  get queue() { return this.wc.queue; }
  get closed() { return this.wc.closed; }
  get closeInfo() { return this.wc.closeInfo; }
  get isOpen() { return this.wc.isOpen; }
  waitClose(ms) { return this.wc.waitClose(ms); }
  close() { return this.wc.close(); }
  terminate() { return this.wc.terminate(); }

  async hello(fields = {}) {
    await this.send({ type: 'hello', v: 1, ...fields });
    this.welcome = await this.next(isType('welcome'), 'welcome');
    this.peerId = this.welcome.peer_id;
    this.maxNeighbors = this.welcome.max_neighbors;
    return this.welcome;
  }

  // Joins and resolves { joined, neighbors } once the joined reply and the joiner's first
  // neighbors message (always sent, possibly empty) arrived.
  async join(swarm, { size = 64 * 1024, block_size = 1024, have } = {}) {
    const msg = { type: 'join', swarm, size, block_size };
    if (have !== undefined) msg.have = have;
    await this.send(msg);
    const joined = await this.next((j) => isType('joined')(j) || isError()(j), `joined for ${swarm}`);
    if (joined.type === 'error') throw new Error(`join ${swarm} failed: ${JSON.stringify(joined)}`);
    const neighbors = await this.next(isType('neighbors', joined.swarm), `first neighbors for ${joined.swarm}`);
    return { joined, neighbors };
  }

  // Resolves with the next error reply (of code, when given).
  error(code, what = `error ${code ?? ''}`, timeoutMs = 5000) { return this.next(isError(code), what, timeoutMs); }

  // Resolves with the next neighbors message for key satisfying pred(msg).
  neighbors(key, pred = () => true, what = `neighbors for ${key}`, timeoutMs = 5000) {
    return this.next((j) => isType('neighbors', key)(j) && pred(j), what, timeoutMs);
  }

  // This client's current neighbours in swarm key: Map(peer_id -> { initiator, locality, have }).
  neighborsOf(key) { return this.mesh.get(key) ?? new Map(); }
}

// Resolves once no neighbors message arrived on any of clients for quietMs (the mesh has
// settled: re-plans run every mesh.replan_ms, so a few periods without a change means none is
// pending), bounded by timeoutMs overall.
export async function settle(clients, { quietMs = 300, timeoutMs = 10000 } = {}) {
  const start = Date.now();
  return withTimeout((async () => {
    for (;;) {
      const last = Math.max(start, ...clients.map((c) => c.lastNeighborsAt));
      const wait = last + quietMs - Date.now();
      if (wait <= 0) return;
      await new Promise((r) => setTimeout(r, Math.min(wait, 50)));
    }
  })(), timeoutMs, 'the mesh to settle');
}

// Checks the mesh of swarm key as the members see it; returns a list of problems (empty when
// the relation is symmetric, each link has exactly one initiator, the locality agrees on both
// sides, nobody is its own neighbour or linked to a non-member, and no degree exceeds the
// member's max_neighbors).
export function meshProblems(members, key) {
  const byId = new Map(members.map((c) => [c.peerId, c]));
  const problems = [];
  for (const c of members) {
    const mine = c.neighborsOf(key);
    if (mine.size > c.maxNeighbors) problems.push(`${c.peerId} has ${mine.size} neighbours > max ${c.maxNeighbors}`);
    for (const [id, link] of mine) {
      if (id === c.peerId) { problems.push(`${id} is its own neighbour`); continue; }
      const other = byId.get(id);
      if (!other) { problems.push(`${c.peerId} is linked to non-member ${id}`); continue; }
      const back = other.neighborsOf(key).get(c.peerId);
      if (!back) { problems.push(`${c.peerId} -> ${id} is not symmetric`); continue; }
      if (back.initiator === link.initiator) {
        problems.push(`${c.peerId} <-> ${id}: initiator ${link.initiator} on both sides`);
      }
      if (back.locality !== link.locality) problems.push(`${c.peerId} <-> ${id}: locality ${link.locality} vs ${back.locality}`);
    }
  }
  return problems;
}

// Number of links in swarm key as the members see them (each link counted once).
export function linkCount(members, key) {
  return members.reduce((n, c) => n + c.neighborsOf(key).size, 0) / 2;
}
