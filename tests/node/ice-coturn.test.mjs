// welcome.ice_servers against a real TURN server: coturn's turnserver runs on loopback with
// use-auth-secret (TURN REST credentials), swarmcoord is configured with the same secret, and
// coturn's own test client (turnutils_uclient) allocates relays with the credentials a native
// peer was given. Credentials from another secret, or with an expiry in the past, must be
// refused; a daemon with static TURN credentials hands out ones an lt-cred-mech coturn takes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Daemon } from './lib/daemon.mjs';
import { NativePeer } from './lib/native-peer.mjs';
import { Turnserver, runUclient, uclientSummary } from './lib/coturn.mjs';

const SECRET = 'swarmcoord-test-secret-' + crypto.randomBytes(6).toString('hex');
const TTL_S = 600;

const restCredential = (secret, username) => crypto.createHmac('sha1', secret).update(username).digest('base64');
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The TURN entry of a welcome: the one ice_servers element whose urls are turn: URLs.
function turnEntry(welcome) {
  assert.ok(Array.isArray(welcome.ice_servers), `ice_servers is an array: ${JSON.stringify(welcome)}`);
  const turn = welcome.ice_servers.filter((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)));
  assert.equal(turn.length, 1, `one TURN entry in ${JSON.stringify(welcome.ice_servers)}`);
  return turn[0];
}

// Host and port of a turn:HOST:PORT?transport=udp URL, as a browser would read it.
function turnAddress(url) {
  const m = url.match(/^turn:([^:?]+):(\d+)(\?transport=udp)?$/);
  assert.ok(m, `a turn:HOST:PORT URL: ${url}`);
  return { host: m[1], port: Number(m[2]) };
}

async function helloFrom(d) {
  const peer = await NativePeer.open(d.wsUrl);
  const welcome = await peer.hello();
  return { peer, welcome };
}

// A uclient run that got an allocation and relayed its messages: exit 0, a relay address on
// 127.0.0.1, every message sent came back through the relay; and coturn logged a successful
// ALLOCATE for exactly this username.
async function assertAllocates(turn, username, credential, what) {
  const r = await runUclient({ port: turn.port, username, credential });
  const s = uclientSummary(r.output);
  const detail = `${what}: turnutils_uclient ${r.args.join(' ')}\n${r.output}\n--- turnserver log ---\n${turn.log.slice(-4000)}`;
  assert.equal(r.signal, null, `uclient was not killed (timeout): ${detail}`);
  assert.equal(r.code, 0, `uclient exit code: ${detail}`);
  assert.match(s.relayAddr ?? '', /^127\.0\.0\.1:\d+$/, `relay address: ${detail}`);
  assert.ok(s.sent > 0 && s.received === s.sent, `messages relayed (sent ${s.sent}, received ${s.received}): ${detail}`);
  await turn.waitForLog(new RegExp(`user <${escapeRe(username)}>: incoming packet ALLOCATE processed, success`), 2000);
  return r;
}

// A uclient run that was refused: non-zero exit, "Cannot complete Allocation", coturn answered
// this username with 401, and never logged a successful ALLOCATE for it.
async function assertRefused(turn, username, credential, what) {
  const r = await runUclient({ port: turn.port, username, credential });
  const s = uclientSummary(r.output);
  const detail = `${what}: turnutils_uclient ${r.args.join(' ')}\n${r.output}\n--- turnserver log ---\n${turn.log.slice(-4000)}`;
  assert.equal(r.signal, null, `uclient was not killed (timeout): ${detail}`);
  assert.notEqual(r.code, 0, `uclient must fail: ${detail}`);
  assert.ok(s.allocationFailed, `uclient reports the failed allocation: ${detail}`);
  assert.equal(s.relayAddr, undefined, `no relay address: ${detail}`);
  await turn.waitForLog(new RegExp(`user <${escapeRe(username)}>: incoming packet \\S+ processed, error 401`), 2000);
  assert.doesNotMatch(turn.log, new RegExp(`user <${escapeRe(username)}>: incoming packet ALLOCATE processed, success`),
    `coturn never granted ${username}: ${detail}`);
  return r;
}

describe('TURN REST credentials against coturn (use-auth-secret)', { timeout: 90000 }, () => {
  let turn;
  let d;
  let turnUrl;
  const peers = [];

  before(async () => {
    turn = await Turnserver.start(['--use-auth-secret', `--static-auth-secret=${SECRET}`]);
    turnUrl = `turn:127.0.0.1:${turn.port}?transport=udp`;
    d = await Daemon.start([
      '--set', `ice.turn_urls=["${turnUrl}"]`,
      '--set', `ice.turn_secret="${SECRET}"`,
      '--set', `ice.turn_ttl_s=${TTL_S}`,
    ]);
  });

  after(async () => {
    await Promise.all(peers.map((p) => p.close()));
    await d?.stop();
    await turn?.stop();
  });

  test('welcome.ice_servers has the TURN URL and per-peer "<expiry>:<peer_id>" credentials', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    const a = await helloFrom(d);
    const b = await helloFrom(d);
    const afterHello = Math.ceil(Date.now() / 1000);
    peers.push(a.peer, b.peer);
    for (const { welcome } of [a, b]) {
      const entry = turnEntry(welcome);
      assert.deepEqual([].concat(entry.urls), [turnUrl]);
      const m = String(entry.username).match(/^(\d+):([0-9a-f]{16})$/);
      assert.ok(m, `username "<unix expiry>:<peer_id>": ${entry.username}`);
      assert.equal(m[2], welcome.peer_id, 'the username names the peer');
      const expiry = Number(m[1]);
      assert.ok(expiry >= t0 + TTL_S && expiry <= afterHello + TTL_S,
        `expiry ${expiry} is now + ice.turn_ttl_s (${t0 + TTL_S}..${afterHello + TTL_S})`);
      assert.equal(entry.credential, restCredential(SECRET, entry.username), 'credential = base64(HMAC-SHA1(secret, username))');
      assert.deepEqual(turnAddress(entry.urls[0]), { host: '127.0.0.1', port: turn.port });
    }
    assert.notEqual(turnEntry(a.welcome).username, turnEntry(b.welcome).username, 'each peer has its own username');
  });

  test('coturn allocates relays with the credentials of a welcome (two peers at once)', { timeout: 40000 }, async () => {
    const a = await helloFrom(d);
    const b = await helloFrom(d);
    peers.push(a.peer, b.peer);
    await Promise.all([a, b].map(({ welcome }) => {
      const entry = turnEntry(welcome);
      return assertAllocates(turn, entry.username, entry.credential, `peer ${welcome.peer_id}`);
    }));
  });

  test('a credential made with another secret is refused (401)', { timeout: 40000 }, async () => {
    const { peer, welcome } = await helloFrom(d);
    peers.push(peer);
    const { username } = turnEntry(welcome);
    const forged = restCredential(`not-${SECRET}`, username);
    assert.notEqual(forged, turnEntry(welcome).credential);
    await assertRefused(turn, username, forged, 'wrong secret');
  });

  test('an expired username is refused even with the right secret (a fresh one with the same secret works)',
    { timeout: 40000 }, async () => {
      const { peer, welcome } = await helloFrom(d);
      peers.push(peer);
      const now = Math.floor(Date.now() / 1000);
      const expired = `${now - 120}:${welcome.peer_id}`;
      const fresh = `${now + 120}:${welcome.peer_id}`;
      // The control shows the refusal is the expiry's doing: node's HMAC is coturn's HMAC.
      await Promise.all([
        assertRefused(turn, expired, restCredential(SECRET, expired), 'expired username'),
        assertAllocates(turn, fresh, restCredential(SECRET, fresh), 'control: unexpired username, same secret'),
      ]);
    });

  test('a daemon whose ice.turn_secret is not coturn\'s hands out credentials coturn refuses', { timeout: 40000 }, async () => {
    const other = await Daemon.start([
      '--set', `ice.turn_urls=["${turnUrl}"]`,
      '--set', `ice.turn_secret="other-${SECRET}"`,
    ]);
    try {
      const { peer, welcome } = await helloFrom(other);
      try {
        const entry = turnEntry(welcome);
        assert.equal(entry.credential, restCredential(`other-${SECRET}`, entry.username));
        await assertRefused(turn, entry.username, entry.credential, 'daemon with another secret');
      } finally {
        await peer.close();
      }
    } finally {
      await other.stop();
    }
  });
});

describe('static TURN credentials against coturn (lt-cred-mech)', { timeout: 60000 }, () => {
  const user = 'swarmcoord-static';
  const password = 'pw-' + crypto.randomBytes(8).toString('hex');
  let turn;
  let d;
  let turnUrl;

  before(async () => {
    turn = await Turnserver.start(['--lt-cred-mech', `--user=${user}:${password}`]);
    turnUrl = `turn:127.0.0.1:${turn.port}?transport=udp`;
    d = await Daemon.start([
      '--set', `ice.turn_urls=["${turnUrl}"]`,
      '--set', `ice.turn_username="${user}"`,
      '--set', `ice.turn_credential="${password}"`,
      '--set', 'ice.stun_urls=["stun:127.0.0.1:3478"]',
    ]);
  });

  after(async () => {
    await d?.stop();
    await turn?.stop();
  });

  test('welcome carries the STUN entry and the static username/credential, which coturn accepts', { timeout: 40000 }, async () => {
    const { peer, welcome } = await helloFrom(d);
    try {
      assert.deepEqual(welcome.ice_servers[0], { urls: ['stun:127.0.0.1:3478'] }, 'STUN entry first, no credentials');
      const entry = turnEntry(welcome);
      assert.deepEqual(entry, { urls: [turnUrl], username: user, credential: password });
      await assertAllocates(turn, entry.username, entry.credential, 'static credentials');
    } finally {
      await peer.close();
    }
  });
});
