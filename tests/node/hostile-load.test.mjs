// Attacks by numbers against the real daemon: idle and half-sent connections, floods of
// WebSocket connections and of connects, swarm-hoarding, forged and stolen connection tokens,
// foreign origins, a swamped admin port, and running out of file descriptors. Each case checks
// that the attacker is refused as the config says (status, metric) and that clients on other
// addresses are served meanwhile. Clients pick their source address on loopback (127.0.0.x):
// the daemon counts per address, so every address is a different client to it.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

import { Daemon } from './lib/daemon.mjs';
import { until } from './lib/proc.mjs';
import { NativeClient, freshSwarm } from './lib/native-client.mjs';
import { WsClient, splitHostPort, withTimeout } from './lib/ws-client.mjs';
import * as wt from './lib/wt.mjs';

const is = WsClient.is;
const LIMITED = 'swarmcoord_limited_total';
const REFUSED = 'swarmcoord_upgrades_refused_total';
// How much swarmcoord_limited_total{limit} / _upgrades_refused_total{reason} rose between two
// scrapes.
const limitedSince = (m0, m1, limit) => m1.get(LIMITED, { limit }) - m0.get(LIMITED, { limit });
const refusedSince = (m0, m1, reason) => m1.get(REFUSED, { reason }) - m0.get(REFUSED, { reason });

// Everything a case opens, closed after it whatever happened.
const sockets = [];  // raw net.Socket
const clients = [];  // WsClient

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

// ------------------------------------------------------------------ requests, sockets, tokens

async function startDaemon(args, options) {
  return Daemon.start(['--set', 'server.threads=2', ...args], options);
}

async function stopDaemon(d) {
  if (!d) return;
  const { code, signal } = await d.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `a clean exit:\n${d.log}`);
}

// One HTTP request on a connection of its own (no pooling: an admin cap or a descriptor
// shortage must not be met by a connection left open by an earlier request).
// Resolves { status, headers, body }.
function httpGet(hostPort, path, { headers = {}, localAddress, timeoutMs = 5000 } = {}) {
  const [host, port] = splitHostPort(hostPort);
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, headers, localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  }), timeoutMs, `GET ${path} from ${localAddress ?? 'default'}`);
}

// Every sample of one /metrics scrape of d's admin port: get(name, labels) -> value.
async function metricsOf(d, { token } = {}) {
  const res = await httpGet(d.admin, '/metrics', { headers: token ? { authorization: `Bearer ${token}` } : {} });
  assert.equal(res.status, 200, `/metrics: ${res.status} ${res.body}`);
  const samples = [];
  for (const line of res.body.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return {
    // The sum over the samples whose labels include `want` (absent: 0).
    get: (name, want = {}) => samples
      .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
      .reduce((n, s) => n + s.value, 0),
  };
}

// A raw TCP connection that sends `send` (nothing by default) and records what comes back.
// rec.closed resolves with rec when the connection closes, whoever closed it.
function rawSocket(hostPort, { localAddress, send } = {}) {
  const [host, port] = splitHostPort(hostPort);
  const s = net.connect({ host, port, localAddress });
  sockets.push(s);
  const rec = { socket: s, data: '', connectedAt: null, closedAt: null };
  s.on('data', (c) => { rec.data += c.toString('latin1'); });
  s.on('error', () => {});  // a reset is one way of being refused
  rec.connected = new Promise((resolve, reject) => {
    s.once('connect', () => { rec.connectedAt = Date.now(); resolve(rec); });
    s.once('error', reject);
  });
  rec.connected.catch(() => {});
  rec.closed = new Promise((resolve) => s.once('close', () => { rec.closedAt = Date.now(); resolve(rec); }));
  if (send) s.write(send);
  return rec;
}

// Resolves with the first n values of promises to settle successfully, in settling order.
function firstN(promises, n, timeoutMs, what) {
  return withTimeout(new Promise((resolve) => {
    const got = [];
    if (n === 0) resolve(got);
    for (const p of promises) {
      p.then((v) => {
        got.push(v);
        if (got.length === n) resolve(got);
      }, () => {});
    }
  }), timeoutMs, what);
}

// A WebSocket upgrade request by hand. Resolves { status, headers, body }; a 101 is closed at
// once (the clients that stay use openWs).
function upgradeProbe(url, { localAddress, headers = {}, timeoutMs = 5000 } = {}) {
  const u = new URL(url);
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, localAddress, agent: false,
      headers: {
        connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13',
        'sec-websocket-key': crypto.randomBytes(16).toString('base64'), ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  }), timeoutMs, `upgrade ${url}`);
}

async function openWs(url, { localAddress, headers } = {}) {
  const c = await WsClient.open(url, { localAddress, headers });
  clients.push(c);
  return c;
}

async function announce(c, infoHash, peerId, opts = {}) {
  await c.send(wt.announce(infoHash, peerId, opts));
  return c.next({ filter: (j) => (is('announce', infoHash)(j) || is('error', infoHash)(j)), what: 'announce reply' });
}

// A client on `localAddress` is served: /healthz on the public port, an upgrade, an announce.
// query: what the upgrade URL needs besides (a token).
async function assertServedFrom(d, localAddress, { headers, query = '' } = {}) {
  assert.equal(d.proc.exitCode, null, `daemon exited:\n${d.log}`);
  assert.equal((await httpGet(d.public, '/healthz', { localAddress })).status, 200, `/healthz from ${localAddress}`);
  const c = await openWs(`${d.wsUrl}/${query}`, { localAddress, headers });
  const ih = wt.randomId();
  const res = await announce(c, ih, wt.randomId());
  assert.equal(res['failure reason'], undefined, `announce from ${localAddress}: ${res['failure reason']}`);
  assert.equal(res.info_hash, ih);
  await c.close();
}

// HS256 as a site's backend would sign it (or another alg, or "none"), by hand.
function mintToken(claims, secret, { alg = 'HS256' } = {}) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signed = `${part({ alg, typ: 'JWT' })}.${part(claims)}`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  const sig = hash ? crypto.createHmac(hash, secret).update(signed).digest('base64url') : '';
  return `${signed}.${sig}`;
}
const inSeconds = (s) => Math.floor(Date.now() / 1000) + s;

const healthzRequest = 'GET /healthz HTTP/1.1\r\nHost: swarmcoord\r\nConnection: close\r\n\r\n';

function openDescriptors(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

// ------------------------------------------------------------------ per-address limits

describe('per-address limits (defaults, connections_per_address=20, swarms_per_address=5)', () => {
  const CONNECTIONS = 20;
  const SWARMS = 5;
  let d;

  before(async () => {
    d = await startDaemon(['--set', `limits.connections_per_address=${CONNECTIONS}`,
      '--set', `limits.swarms_per_address=${SWARMS}`]);
  });
  after(() => stopDaemon(d));

  it('idle TCP connections from one address: those over 64 get 429 at once, others are served', async () => {
    const HTTP_CAP = 64;  // limits.http_sessions_per_address, default
    const N = 150;
    const m0 = await metricsOf(d);
    const idle = Array.from({ length: N }, () => rawSocket(d.public, { localAddress: '127.0.0.2' }));
    await Promise.all(idle.map((r) => r.connected));
    const refused = await firstN(idle.map((r) => r.closed), N - HTTP_CAP, 5000, 'the connections over the cap closed');
    for (const r of refused) {
      assert.match(r.data, /^HTTP\/1\.1 429 /, 'refused with 429');
      assert.match(r.data, /\r\nRetry-After: 1\r\n/i);
      assert.ok(r.closedAt - r.connectedAt < 2000, `closed at once, not after ${r.closedAt - r.connectedAt} ms`);
    }
    const held = idle.filter((r) => r.closedAt === null);
    assert.equal(held.length, HTTP_CAP, 'exactly the cap is held');
    assert.ok(held.every((r) => r.data === ''), 'the held connections were told nothing');
    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'http_sessions_per_address'), N - HTTP_CAP);

    // The attacker's address is full; everyone else is served.
    assert.equal((await httpGet(d.public, '/healthz', { localAddress: '127.0.0.2' })).status, 429);
    await assertServedFrom(d, '127.0.0.3');
    assert.ok(held.every((r) => r.closedAt === null), 'the held connections are still open');

    // The held ones were admitted all along: each can still send its request. Once they have
    // been answered and closed, the address has its slots back.
    for (const r of held) r.socket.write(healthzRequest);
    for (const r of await withTimeout(Promise.all(held.map((x) => x.closed)), 5000, 'the held connections answered')) {
      assert.match(r.data, /^HTTP\/1\.1 200 /);
    }
    await until(async () => (await httpGet(d.public, '/healthz', { localAddress: '127.0.0.2' })).status === 200,
      { timeoutMs: 5000, intervalMs: 50, what: '127.0.0.2 to get its HTTP slots back' });
  });

  it('many WebSocket connections from one address: the 21st gets 429 with Retry-After', async () => {
    const addr = '127.0.0.4';
    const m0 = await metricsOf(d);
    const ws = await Promise.all(Array.from({ length: CONNECTIONS }, () => openWs(d.wsUrl, { localAddress: addr })));
    assert.equal(ws.length, CONNECTIONS);
    const over = await upgradeProbe(d.wsUrl, { localAddress: addr });
    assert.equal(over.status, 429);
    assert.equal(over.headers['retry-after'], '1');
    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'connections_per_address'), 1);

    // Every connection of the address is still served (a scrape: announces would run into
    // swarms_per_address), and other addresses upgrade.
    const ih = wt.randomId();
    const replies = await Promise.all(ws.map(async (c) => {
      await c.send({ action: 'scrape', info_hash: ih });
      return c.next({ filter: is('scrape'), what: 'scrape reply' });
    }));
    assert.equal(replies.length, CONNECTIONS);
    await assertServedFrom(d, '127.0.0.5');

    // One closes: its slot comes back (once the daemon has seen the close: the gauge says so).
    const before = m1.get('swarmcoord_connections');
    await ws[0].close();
    await until(async () => (await metricsOf(d)).get('swarmcoord_connections') === before - 1,
      { what: 'the closed connection to leave the gauge' });
    const again = await openWs(d.wsUrl, { localAddress: addr });
    assert.ok(again.isOpen);
    assert.equal((await upgradeProbe(d.wsUrl, { localAddress: addr })).status, 429, 'and the address is full again');
  });

  it('swarms per address: announces and joins over the budget are refused, stopped gives one back', async () => {
    const addr = '127.0.0.6';
    const m0 = await metricsOf(d);
    const a = await openWs(d.wsUrl, { localAddress: addr });
    const b = await openWs(d.wsUrl, { localAddress: addr });
    const peerA = wt.randomId();
    const peerB = wt.randomId();
    const ihs = wt.randomIds(SWARMS + 1);
    for (const [i, ih] of ihs.slice(0, SWARMS).entries()) {
      const c = i < 3 ? a : b;
      const res = await announce(c, ih, c === a ? peerA : peerB);
      assert.ok(is('announce', ih)(res), `announce ${i} answered: ${JSON.stringify(res)}`);
    }
    const over = await announce(b, ihs[SWARMS], peerB);
    assert.equal(over['failure reason'], 'too many swarms announced into from one address');
    assert.ok(b.isOpen, 'a refused announce keeps the connection');
    // A re-announce into a swarm the address holds already takes nothing.
    assert.ok(is('announce', ihs[0])(await announce(a, ihs[0], peerA, { event: null })));

    // The native protocol draws on the same budget.
    const native = await NativeClient.connect(d, { localAddress: addr });
    clients.push(native.wc);
    const swarm = freshSwarm('per-address');
    await native.send({ type: 'join', swarm, size: 4096, block_size: 1024 });
    const err = await native.error('too_many_swarms');
    assert.equal(err.swarm, swarm);

    // Another address is not affected.
    const other = await openWs(d.wsUrl, { localAddress: '127.0.0.7' });
    assert.ok(is('announce', ihs[SWARMS])(await announce(other, ihs[SWARMS], wt.randomId())));
    const otherNative = await NativeClient.connect(d, { localAddress: '127.0.0.7' });
    clients.push(otherNative.wc);
    await otherNative.join(freshSwarm('per-address'));

    // stopped gives a slot back, to any connection of the address (its reply says a has
    // handled it).
    assert.ok(is('announce', ihs[0])(await announce(a, ihs[0], peerA, { event: 'stopped' })));
    assert.ok(is('announce', ihs[SWARMS])(await announce(b, ihs[SWARMS], peerB)), 'the slot came back');
    assert.equal((await announce(b, wt.randomId(), peerB))['failure reason'], 'too many swarms announced into from one address');

    // A connection that closes gives back all it held (a held 2 of them).
    const before = (await metricsOf(d)).get('swarmcoord_connections');
    await a.close();
    await until(async () => (await metricsOf(d)).get('swarmcoord_connections') === before - 1,
      { what: 'the closed connection to leave the gauge' });
    await native.join(freshSwarm('per-address'));
    assert.ok(is('announce')(await announce(b, wt.randomId(), peerB)));
    assert.equal((await announce(b, wt.randomId(), peerB))['failure reason'], 'too many swarms announced into from one address');

    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'swarms_per_address'), 4);
  });

  it('a token on a daemon without auth.token_secret is refused, not ignored', async () => {
    const m0 = await metricsOf(d);
    const token = mintToken({ exp: inSeconds(60) }, 'whatever');
    const res = await upgradeProbe(`${d.wsUrl}/?token=${token}`, { localAddress: '127.0.0.8' });
    assert.equal(res.status, 401);
    const m1 = await metricsOf(d);
    assert.equal(refusedSince(m0, m1, 'token_invalid'), 1);
    await assertServedFrom(d, '127.0.0.8');
  });
});

describe('connect rate and header deadline (1 connect/s, burst 10, header_timeout_s=1)', () => {
  const BURST = 10;
  let d;

  before(async () => {
    d = await startDaemon(['--set', 'limits.connects_per_second_per_address=1',
      '--set', `limits.connect_burst_per_address=${BURST}`, '--set', 'server.header_timeout_s=1']);
  });
  after(() => stopDaemon(d));

  it('a burst of connects from one address beyond the burst gets 429 at once; others unaffected', async () => {
    const N = 25;
    const m0 = await metricsOf(d);
    const started = Date.now();
    const burst = Array.from({ length: N }, () => rawSocket(d.public, { localAddress: '127.0.0.4', send: healthzRequest }));
    const done = await withTimeout(Promise.all(burst.map((r) => r.closed)), 5000, 'every connection of the burst answered');
    const elapsed = Date.now() - started;
    const ok = done.filter((r) => /^HTTP\/1\.1 200 /.test(r.data)).length;
    const limited = done.filter((r) => /^HTTP\/1\.1 429 /.test(r.data)).length;
    assert.equal(ok + limited, N, `every one answered 200 or 429: ${done.map((r) => r.data.slice(0, 12))}`);
    // The bucket refills at 1/s: the burst, plus one for each second the burst took.
    assert.ok(ok >= BURST && ok <= BURST + Math.ceil(elapsed / 1000), `${ok} accepted in ${elapsed} ms`);
    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'connect_rate_per_address'), limited);

    // Another address has its own bucket, and is served at once.
    const others = Array.from({ length: BURST }, () => rawSocket(d.public, { localAddress: '127.0.0.5', send: healthzRequest }));
    for (const r of await withTimeout(Promise.all(others.map((x) => x.closed)), 5000, 'the other address answered')) {
      assert.match(r.data, /^HTTP\/1\.1 200 /);
    }
    await assertServedFrom(d, '127.0.0.6');

    // The attacker's bucket refills at the configured rate.
    const refilled = await until(async () => (await httpGet(d.public, '/healthz', { localAddress: '127.0.0.4' })).status === 200,
      { timeoutMs: 3000, intervalMs: 100, what: 'a token for 127.0.0.4 again' });
    assert.ok(refilled);
  });

  it('a connection that sends nothing, or its request a byte at a time, is closed at the deadline', async () => {
    const idle = rawSocket(d.public, { localAddress: '127.0.0.7' });
    const slow = rawSocket(d.public, { localAddress: '127.0.0.7' });
    await Promise.all([idle.connected, slow.connected]);
    const request = `GET /healthz HTTP/1.1\r\nHost: swarmcoord\r\nX-Padding: ${'a'.repeat(200)}\r\n\r\n`;
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < request.length && !slow.socket.destroyed) slow.socket.write(request[sent++]);
    }, 50);
    try {
      // Meanwhile a normal client is served.
      await assertServedFrom(d, '127.0.0.8');
      const [a, b] = await withTimeout(Promise.all([idle.closed, slow.closed]), 4000, 'the deadline closing both');
      for (const r of [a, b]) {
        const held = r.closedAt - r.connectedAt;
        assert.ok(held >= 900 && held < 4000, `closed after ${held} ms (header_timeout_s=1)`);
        assert.equal(r.data, '', 'no response to a request that never arrived');
      }
      assert.ok(sent < request.length, 'the slow request was cut before it was complete');
    } finally {
      clearInterval(trickle);
    }
  });
});

// ------------------------------------------------------------------ trusted proxy

describe('behind a trusted proxy (127.0.0.1; connections_per_address=3, http_sessions_per_address=8)', () => {
  const CONNECTIONS = 3;
  const HTTP_CAP = 8;
  let d;

  before(async () => {
    d = await startDaemon(['--set', 'server.trusted_proxies=["127.0.0.1/32"]',
      '--set', `limits.connections_per_address=${CONNECTIONS}`,
      '--set', `limits.http_sessions_per_address=${HTTP_CAP}`]);
  });
  after(() => stopDaemon(d));

  it('counts the forwarded clients one by one, not the proxy as one address', async () => {
    const m0 = await metricsOf(d);
    const proxy = '127.0.0.1';
    const forwarded = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '2001:db8::1'];
    // 12 connections from the proxy's one address, 3 for each client it forwards.
    for (const client of forwarded) {
      for (let i = 0; i < CONNECTIONS; i++) {
        await openWs(d.wsUrl, { localAddress: proxy, headers: { 'X-Forwarded-For': client } });
      }
    }
    // One forwarded client over its budget is refused, alone.
    const over = await upgradeProbe(d.wsUrl, { localAddress: proxy, headers: { 'X-Forwarded-For': forwarded[0] } });
    assert.equal(over.status, 429);
    // A client the proxy forwarded from another client in the same /64 shares its budget.
    assert.equal((await upgradeProbe(d.wsUrl, { localAddress: proxy, headers: { 'X-Forwarded-For': '2001:db8::2' } })).status,
      429, 'an IPv6 /64 is one address');
    assert.equal((await upgradeProbe(d.wsUrl, { localAddress: proxy, headers: { 'X-Forwarded-For': '198.51.100.9' } })).status,
      101, 'a new forwarded client is let in');
    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'connections_per_address'), 2);
    assert.ok(clients.every((c) => c.isOpen));
  });

  it('ignores X-Forwarded-For from an address that is not a trusted proxy', async () => {
    const addr = '127.0.0.9';
    for (let i = 0; i < CONNECTIONS; i++) {
      await openWs(d.wsUrl, { localAddress: addr, headers: { 'X-Forwarded-For': `203.0.113.${i + 1}` } });
    }
    const over = await upgradeProbe(d.wsUrl, { localAddress: addr, headers: { 'X-Forwarded-For': '203.0.113.99' } });
    assert.equal(over.status, 429, 'counted as 127.0.0.9 whatever it claims');
    await assertServedFrom(d, '127.0.0.10');
  });

  it('the proxy is exempt from the HTTP-phase cap; an ordinary address is not', async () => {
    const m0 = await metricsOf(d);
    const N = 20;
    const fromProxy = Array.from({ length: N }, () => rawSocket(d.public, { localAddress: '127.0.0.1' }));
    await Promise.all(fromProxy.map((r) => r.connected));
    // Every one of them was admitted: each gets its answer when it finally sends its request.
    for (const r of fromProxy) r.socket.write(healthzRequest);
    for (const r of await withTimeout(Promise.all(fromProxy.map((x) => x.closed)), 5000, 'the proxy\'s requests answered')) {
      assert.match(r.data, /^HTTP\/1\.1 200 /);
    }
    const m1 = await metricsOf(d);
    assert.equal(limitedSince(m0, m1, 'http_sessions_per_address'), 0, 'nothing from the proxy refused');

    const direct = Array.from({ length: N }, () => rawSocket(d.public, { localAddress: '127.0.0.11' }));
    const refused = await firstN(direct.map((r) => r.closed), N - HTTP_CAP, 5000, 'the direct connections over the cap');
    assert.ok(refused.every((r) => /^HTTP\/1\.1 429 /.test(r.data)));
    const m2 = await metricsOf(d);
    assert.equal(limitedSince(m1, m2, 'http_sessions_per_address'), N - HTTP_CAP);
    await assertServedFrom(d, '127.0.0.12');
  });
});

// ------------------------------------------------------------------ origins and tokens

describe('admission: allowed origins and required tokens', () => {
  const SECRET = 'current-secret-0123456789abcdef';
  const PREVIOUS = 'previous-secret-fedcba9876543210';
  const ORIGIN = 'https://www.example.com';
  let d;

  before(async () => {
    d = await startDaemon([
      '--set', 'server.allowed_origins=["https://www.example.com", "https://*.example.org"]',
      '--set', 'server.allow_missing_origin=false',
      '--set', 'auth.required=true',
      '--set', `auth.token_secret="${SECRET}"`,
      '--set', `auth.previous_secret="${PREVIOUS}"`,
    ]);
  });
  after(() => stopDaemon(d));

  const good = () => mintToken({ exp: inSeconds(300), sub: 'site-a' }, SECRET);
  const url = (token, path = '/') => `${d.wsUrl}${path}?token=${token}`;

  it('refuses origins not listed (403) and upgrades without Origin (403), serves listed ones', async () => {
    const m0 = await metricsOf(d);
    const cases = [
      [ORIGIN, 101],
      ['https://WWW.EXAMPLE.COM', 101],
      ['https://cdn.example.org', 101],
      ['https://a.b.example.org', 101],
      ['https://example.org', 403],  // the wildcard wants a subdomain
      ['https://evil.example.com', 403],
      ['http://www.example.com', 403],  // another scheme
      ['https://www.example.com:8443', 403],  // another port
      ['https://www.example.com.evil.net', 403],
      ['https://notexample.org', 403],
      ['null', 403],
    ];
    let forbidden = 0;
    for (const [origin, want] of cases) {
      const res = await upgradeProbe(url(good()), { localAddress: '127.0.0.2', headers: { origin } });
      assert.equal(res.status, want, `Origin ${origin}`);
      if (want === 403) {
        forbidden += 1;
        assert.match(res.body, /origin not allowed/);
      }
    }
    const missing = await upgradeProbe(url(good()), { localAddress: '127.0.0.2' });
    assert.equal(missing.status, 403);
    assert.match(missing.body, /Origin header required/);
    const m1 = await metricsOf(d);
    assert.equal(refusedSince(m0, m1, 'origin'), forbidden);
    assert.equal(refusedSince(m0, m1, 'missing_origin'), 1);
    await assertServedFrom(d, '127.0.0.3', { headers: { origin: ORIGIN }, query: `?token=${good()}` });
  });

  it('refuses missing, forged, expired and unsigned tokens (401); takes the previous secret', async () => {
    const m0 = await metricsOf(d);
    const headers = { origin: ORIGIN };
    const probe = (u) => upgradeProbe(u, { localAddress: '127.0.0.4', headers });
    const claims = { exp: inSeconds(300), sub: 'site-a' };
    const [head, , sig] = good().split('.');
    const expect = [
      ['no token', d.wsUrl + '/', 401, 'token_missing', /token required/],
      ['empty token', url(''), 401, 'token_missing', /token required/],
      ['alg none', url(mintToken(claims, SECRET, { alg: 'none' })), 401, 'token_invalid', /invalid token/],
      ['alg none with a signature', url(`${mintToken(claims, SECRET, { alg: 'none' })}${sig}`), 401, 'token_invalid', /invalid token/],
      ['HS512 with the secret', url(mintToken(claims, SECRET, { alg: 'HS512' })), 401, 'token_invalid', /invalid token/],
      ['wrong secret', url(mintToken(claims, 'not-the-secret')), 401, 'token_invalid', /invalid token/],
      ['payload swapped under a signature',
        url(`${head}.${Buffer.from(JSON.stringify({ exp: inSeconds(86400 * 365), sub: 'root' })).toString('base64url')}.${sig}`),
        401, 'token_invalid', /invalid token/],
      ['garbage', url('not.a.jwt'), 401, 'token_invalid', /invalid token/],
      ['oversized', url('a'.repeat(5000)), 401, 'token_invalid', /invalid token/],
      ['no exp', url(mintToken({ sub: 'site-a' }, SECRET)), 401, 'token_invalid', /invalid token/],
      ['expired', url(mintToken({ exp: inSeconds(-10), sub: 'site-a' }, SECRET)), 401, 'token_expired', /token expired/],
      ['expired, previous secret', url(mintToken({ exp: inSeconds(-10) }, PREVIOUS)), 401, 'token_expired', /token expired/],
    ];
    const want = {};
    for (const [what, u, status, reason, body] of expect) {
      const res = await probe(u);
      assert.equal(res.status, status, what);
      assert.match(res.body, body, what);
      want[reason] = (want[reason] ?? 0) + 1;
    }
    assert.equal((await probe(url(good()))).status, 101, 'the current secret');
    assert.equal((await probe(url(mintToken(claims, PREVIOUS)))).status, 101, 'the previous secret (rotation)');
    assert.equal((await probe(url(good(), '/v1/ws'))).status, 101, 'native endpoint, same token');
    const m1 = await metricsOf(d);
    for (const [reason, n] of Object.entries(want)) assert.equal(refusedSince(m0, m1, reason), n, reason);
    await assertServedFrom(d, '127.0.0.5', { headers, query: `?token=${good()}` });
  });

  it('a token listing swarms lets its connection into those only', async () => {
    const allowed = wt.randomId();
    const prefix = 'https://cdn.example.org/allowed/';
    const token = mintToken({ exp: inSeconds(300), swarms: [wt.hexOf(allowed).toUpperCase(), `${prefix}*`] }, SECRET);
    const headers = { origin: ORIGIN };
    const c = await openWs(url(token), { localAddress: '127.0.0.6', headers });
    const peer = wt.randomId();
    assert.ok(is('announce', allowed)(await announce(c, allowed, peer)));
    const other = wt.randomId();
    const refused = await announce(c, other, peer);
    assert.equal(refused['failure reason'], "info_hash not allowed by the connection's token");
    assert.ok(c.isOpen);

    const wc = await openWs(url(token, '/v1/ws'), { localAddress: '127.0.0.6', headers });
    const native = new NativeClient(wc, '127.0.0.6');
    await native.hello();
    await native.join(`${prefix}video/seg-1.ts`);
    const notListed = 'https://cdn.example.org/elsewhere/seg-1.ts';
    await native.send({ type: 'join', swarm: notListed, size: 4096, block_size: 1024 });
    const err = await native.error('not_allowed');
    assert.equal(err.swarm, notListed);
    // Prefix means prefix: the pattern's text without its '*', not a path segment match.
    await native.send({ type: 'join', swarm: 'https://cdn.example.org/allowed', size: 4096, block_size: 1024 });
    await native.error('not_allowed');

    // A token without a swarms claim is not restricted.
    const free = await openWs(url(good()), { localAddress: '127.0.0.7', headers });
    assert.ok(is('announce', other)(await announce(free, other, wt.randomId())));
  });
});

describe('admission: allowed origins, Origin optional, tokens optional', () => {
  const SECRET = 'another-secret-0123456789';
  let d;

  before(async () => {
    d = await startDaemon(['--set', 'server.allowed_origins=["https://www.example.com"]',
      '--set', `auth.token_secret="${SECRET}"`]);
  });
  after(() => stopDaemon(d));

  it('lets in clients without Origin or token, still checks any token present', async () => {
    const m0 = await metricsOf(d);
    assert.equal((await upgradeProbe(d.wsUrl, { localAddress: '127.0.0.2' })).status, 101, 'no Origin, no token');
    assert.equal((await upgradeProbe(`${d.wsUrl}/v1/ws`, { localAddress: '127.0.0.2' })).status, 101, 'native, no Origin');
    assert.equal((await upgradeProbe(d.wsUrl, { localAddress: '127.0.0.2', headers: { origin: 'https://evil.example.net' } })).status, 403);
    const forged = mintToken({ exp: inSeconds(60) }, 'guessed');
    assert.equal((await upgradeProbe(`${d.wsUrl}/?token=${forged}`, { localAddress: '127.0.0.2' })).status, 401,
      'a token present is checked even when none is required');
    const ok = mintToken({ exp: inSeconds(60) }, SECRET);
    assert.equal((await upgradeProbe(`${d.wsUrl}/?token=${ok}`, { localAddress: '127.0.0.2' })).status, 101);
    const m1 = await metricsOf(d);
    assert.equal(refusedSince(m0, m1, 'origin'), 1);
    assert.equal(refusedSince(m0, m1, 'token_invalid'), 1);
    assert.equal(refusedSince(m0, m1, 'missing_origin'), 0);
    await assertServedFrom(d, '127.0.0.3');
  });
});

// ------------------------------------------------------------------ admin listener

describe('admin listener (max_connections=4, token)', () => {
  const CAP = 4;
  const TOKEN = 'scrape-token-0123456789';
  let d;

  before(async () => {
    d = await startDaemon(['--set', `admin.max_connections=${CAP}`, '--set', `admin.token="${TOKEN}"`]);
  });
  after(() => stopDaemon(d));

  it('wants the bearer token for /metrics and /stats, not for the health checks', async () => {
    for (const path of ['/metrics', '/stats']) {
      const none = await httpGet(d.admin, path);
      assert.equal(none.status, 401, `${path} without a token`);
      assert.equal(none.headers['www-authenticate'], 'Bearer');
      for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `bearer ${TOKEN}`, TOKEN,
        `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`, 'Bearer ']) {
        assert.equal((await httpGet(d.admin, path, { headers: { authorization } })).status, 401, `${path} with "${authorization}"`);
      }
      assert.equal((await httpGet(d.admin, path, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, path);
    }
    const m = await metricsOf(d, { token: TOKEN });
    assert.ok(m.get('swarmcoord_build_info') === 1);
    for (const path of ['/healthz', '/readyz']) assert.equal((await httpGet(d.admin, path)).status, 200, path);
  });

  it('closes admin connections over the cap at once; the public port does not notice', async () => {
    const idle = Array.from({ length: CAP }, () => rawSocket(d.admin, { localAddress: '127.0.0.2' }));
    await Promise.all(idle.map((r) => r.connected));
    // Accepted in order, so this one comes after the four that fill the cap.
    const over = rawSocket(d.admin, { localAddress: '127.0.0.3' });
    await over.connected;
    const closed = await withTimeout(over.closed, 2000, 'the connection over the cap closed at once');
    assert.equal(closed.data, '', 'closed without a word');
    assert.ok(idle.every((r) => r.closedAt === null), 'the ones holding the cap stay');

    await assertServedFrom(d, '127.0.0.4');

    // One lets go: the admin port answers again.
    idle[0].socket.destroy();
    await until(async () => {
      try {
        return (await httpGet(d.admin, '/healthz', { timeoutMs: 1000 })).status === 200;
      } catch {
        return false;  // closed at once while the cap was still full
      }
    }, { timeoutMs: 5000, intervalMs: 50, what: 'an admin slot back' });
    assert.ok((await metricsOf(d, { token: TOKEN })).get('swarmcoord_build_info') === 1);
  });
});

// ------------------------------------------------------------------ out of descriptors

describe('out of file descriptors (hard limit 128)', () => {
  const HARD = 128;
  const SOFT = 64;
  let d;

  before(async () => {
    d = await startDaemon(['--set', 'limits.http_sessions_per_address=1000'],
      { wrapper: ['prlimit', `--nofile=${SOFT}:${HARD}`, '--'] });
  });
  after(() => stopDaemon(d));

  it('raised its soft descriptor limit to the hard one', () => {
    const line = fs.readFileSync(`/proc/${d.proc.pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    assert.match(line, new RegExp(`^Max open files\\s+${HARD}\\s+${HARD}\\s`), line);
  });

  it('sheds new connections at once, keeps the admin port answering, recovers when descriptors free up', async () => {
    const m0 = await metricsOf(d);
    const baseline = openDescriptors(d.proc.pid);
    const free = HARD - baseline;
    const EXTRA = 20;
    // Idle connections from several addresses until the descriptors are gone, and some more.
    const idle = Array.from({ length: free + EXTRA }, (_, i) => rawSocket(d.public, { localAddress: `127.0.1.${1 + (i % 4)}` }));
    await Promise.all(idle.map((r) => r.connected));
    // The daemon may hold a descriptor or two more or less than at the baseline meanwhile.
    const shed = await firstN(idle.map((r) => r.closed), EXTRA - 2, 5000, 'connections beyond the descriptors shed');
    for (const r of shed) {
      assert.equal(r.data, '', 'shed without a word (nothing to write it with)');
      assert.ok(r.closedAt - r.connectedAt < 2000, `shed at once, not after ${r.closedAt - r.connectedAt} ms`);
    }

    // The attack goes on. Each round: new clients are told at once, not left waiting in the
    // backlog, and the admin port answers, on its reserved descriptor, however the public
    // port's accepts interleave with it.
    for (let round = 0; round < 4; round++) {
      const late = Array.from({ length: 6 }, (_, i) => rawSocket(d.public, {
        localAddress: `127.0.1.${10 + round}`, send: i % 2 ? healthzRequest : undefined,
      }));
      await Promise.all(late.map((r) => r.connected));
      await withTimeout(Promise.all(late.map((r) => r.closed)), 2000, `round ${round}: new connections shed at once`);
      assert.equal((await httpGet(d.admin, '/healthz', { timeoutMs: 2000 })).status, 200, `round ${round}: admin /healthz`);
    }
    const m1 = await metricsOf(d);
    const shedCount = m1.get('swarmcoord_connections_shed_total') - m0.get('swarmcoord_connections_shed_total');
    const emfile = m1.get('swarmcoord_accept_errors_total', { reason: 'out_of_descriptors' }) -
      m0.get('swarmcoord_accept_errors_total', { reason: 'out_of_descriptors' });
    assert.ok(shedCount >= EXTRA - 2 + 4 * 6, `shed ${shedCount}`);
    assert.ok(emfile >= shedCount, `${emfile} accepts failed for ${shedCount} shed`);
    await d.waitForLog(/raise the descriptor limit/, 2000);
    assert.equal(d.log.match(/raise the descriptor limit/g).length, 1, 'one warning, not one per connection');

    // The idle connections go: the daemon gets its descriptors back and serves again.
    for (const r of idle) r.socket.destroy();
    await until(() => openDescriptors(d.proc.pid) <= baseline + 2,
      { timeoutMs: 5000, what: `descriptors back to ~${baseline} (now ${openDescriptors(d.proc.pid)})` });
    await assertServedFrom(d, '127.0.1.20');
    assert.equal((await httpGet(d.admin, '/readyz')).status, 200);
  });
});
