// RFC 6455 server conformance, on raw TCP against the real daemon: the opening handshake,
// framing (fragments, extended lengths, many messages per write, one byte per write),
// protocol errors and the close codes they earn, the close handshake, pings and the server's
// keep-alive. Every frame is built and parsed here, so that the test sees exactly what the
// server sends. After every case a fresh client must still be served.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { Daemon } from './lib/daemon.mjs';
import { tcpConnect, withTimeout } from './lib/ws-client.mjs';
import * as wt from './lib/wt.mjs';

// ================================================================ helpers

// server.max_message_bytes for the main daemon: above the default (65536) so that a 70,000-byte
// message is allowed, and low enough that an oversized frame is quick to send.
const MAX_MESSAGE_BYTES = 100_000;
// Bound of every single wait for the server; loopback answers in well under a millisecond.
const WAIT_MS = 5000;
// Bound of a whole test (node:test's own timeout).
const T = { timeout: 20_000 };

const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const acceptOf = (key) => crypto.createHash('sha1').update(key + GUID).digest('base64');
const newKey = () => crypto.randomBytes(16).toString('base64');

// One client frame. payload: string or Buffer. Options: fin, rsv (3 bits: 4 = RSV1, 2 = RSV2,
// 1 = RSV3), mask (clients must mask; false sends it bare), maskKey, length (what the header
// claims, a Number or BigInt, when it is to differ from the payload sent).
function frame(opcode, payload = '', { fin = true, rsv = 0, mask = true, maskKey = crypto.randomBytes(4), length } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = BigInt(length ?? data.length);
  let head;
  if (len < 126n) {
    head = Buffer.alloc(2);
    head[1] = Number(len);
  } else if (len < 65536n) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(Number(len), 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(len, 2);
  }
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0xf);
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] ^= maskKey[i & 3];
  return Buffer.concat([head, maskKey, body]);
}

// Payload of a close frame.
function closePayload(code, reason = '') {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.isBuffer(reason) ? reason : Buffer.from(reason)]);
}

// GET <path> with the headers of a valid upgrade; `headers` overrides them (null leaves one out).
function upgradeRequest(path = '/', headers = {}, { method = 'GET', version = '1.1' } = {}) {
  const h = {
    Host: 'swarmcoord.test', Upgrade: 'websocket', Connection: 'Upgrade',
    'Sec-WebSocket-Key': newKey(), 'Sec-WebSocket-Version': '13', ...headers,
  };
  const lines = Object.entries(h).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k}: ${v}\r\n`);
  return { text: `${method} ${path} HTTP/${version}\r\n${lines.join('')}\r\n`, key: h['Sec-WebSocket-Key'] };
}

const nextTick = () => new Promise((r) => setTimeout(r, 1));

// A raw TCP connection speaking WebSocket by hand. Reads the HTTP response head, then parses
// every byte after it as server frames (queued in `frames`); records how the connection ended.
class Conn {
  static all = new Set();  // every connection of the running test, destroyed after it

  static async connect(hostPort) {
    const s = await tcpConnect(hostPort);
    s.setNoDelay(true);
    return new Conn(s);
  }

  // Connects and upgrades (headers as for upgradeRequest); asserts the 101. `after`: bytes
  // written in the same write as the request.
  static async open(hostPort, path = '/', { headers = {}, after } = {}) {
    const c = await Conn.connect(hostPort);
    const req = upgradeRequest(path, headers);
    c.write(after ? Buffer.concat([Buffer.from(req.text), after]) : req.text);
    const res = await c.response();
    assert.equal(res.status, 101, `upgrade of ${path}: ${res.head}`);
    assert.equal(res.headers.get('sec-websocket-accept'), acceptOf(req.key));
    return c;
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.res = null;        // the parsed response head: { status, headers: Map, head }
    this.frames = [];       // server frames not consumed yet
    this.seen = [];         // every server frame, in order
    this.gotFin = false;    // the server ended its side (TCP FIN)
    this.error = null;      // a socket error (ECONNRESET when the server reset it)
    this.isClosed = false;
    this.waiters = new Set();
    Conn.all.add(this);
    socket.on('data', (chunk) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.parse();
      this.wake();
    });
    socket.on('end', () => { this.gotFin = true; });
    socket.on('error', (e) => { this.error = e; });
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.isClosed = true;
      this.wake();
      resolve(this.endInfo());
    }));
  }

  endInfo() {
    return { fin: this.gotFin, error: this.error?.code ?? null };
  }

  // Writes bytes; resolves once handed to the kernel (errors such as EPIPE after the server
  // closed are recorded on the connection, never thrown).
  write(data) {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(data, () => resolve());
    });
  }

  send(opcode, payload, opts) { return this.write(frame(opcode, payload, opts)); }
  sendText(text, opts) { return this.send(OP.text, text, opts); }

  // Writes data one byte per TCP write.
  async dribble(data) {
    const b = Buffer.from(data);
    for (let i = 0; i < b.length; i++) {
      await this.write(b.subarray(i, i + 1));
      await nextTick();
    }
  }

  parse() {
    if (!this.res) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString('latin1');
      this.buf = this.buf.subarray(end + 4);
      const [statusLine, ...lines] = head.split('\r\n');
      const headers = new Map();
      for (const l of lines) {
        const i = l.indexOf(':');
        const name = l.slice(0, i).trim().toLowerCase();
        const value = l.slice(i + 1).trim();
        headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
      }
      this.res = { status: Number(statusLine.split(' ')[1]), statusLine, headers, head };
    }
    if (this.res.status !== 101) return;  // the rest is an HTTP body
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const len7 = b[1] & 0x7f;
      let off = 2;
      let len = len7;
      if (len7 === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len7 === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (b[1] & 0x80) !== 0;
      const key = masked ? b.subarray(off, off + 4) : null;
      if (masked) off += 4;
      if (b.length < off + len) return;
      const payload = Buffer.from(b.subarray(off, off + len));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      const f = { fin: (b[0] & 0x80) !== 0, rsv: (b[0] >> 4) & 7, opcode: b[0] & 0xf, masked, payload };
      this.frames.push(f);
      this.seen.push(f);
      this.buf = b.subarray(off + len);
    }
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  // Resolves with check()'s first value other than undefined, re-checked on every arrival;
  // rejects when the connection closes first or after timeoutMs.
  waitFor(check, { timeoutMs = WAIT_MS, what = 'condition' } = {}) {
    let w;
    const p = new Promise((resolve, reject) => {
      w = () => {
        let v;
        try {
          v = check();
        } catch (e) {
          this.waiters.delete(w);
          return reject(e);
        }
        if (v !== undefined) {
          this.waiters.delete(w);
          resolve(v);
        } else if (this.isClosed) {
          this.waiters.delete(w);
          reject(new Error(`connection closed (${JSON.stringify(this.endInfo())}) while waiting for ${what}`));
        }
      };
      this.waiters.add(w);
      w();
    });
    return withTimeout(p, timeoutMs, what).finally(() => this.waiters.delete(w));
  }

  // The HTTP response head.
  response(timeoutMs = WAIT_MS) {
    return this.waitFor(() => this.res ?? undefined, { timeoutMs, what: 'the HTTP response' });
  }

  nextFrame({ timeoutMs = WAIT_MS, what = 'a frame' } = {}) {
    return this.waitFor(() => this.frames.shift(), { timeoutMs, what });
  }

  // The next whole message, its fragments joined: { opcode, data, text, json, frames }. A control
  // frame before it is a failure (none is expected where this is used).
  nextMessage({ timeoutMs = WAIT_MS, what = 'a message' } = {}) {
    return this.waitFor(() => {
      if (this.frames.length === 0) return undefined;
      const first = this.frames[0];
      if (first.opcode >= 0x8) {
        throw new Error(`${what}: got control frame 0x${first.opcode.toString(16)} (${first.payload.length} bytes${
          first.opcode === OP.close ? `, code ${closeCodeOf(first)}` : ''})`);
      }
      const end = this.frames.findIndex((f) => f.fin);
      if (end < 0) return undefined;
      const frames = this.frames.splice(0, end + 1);
      const data = Buffer.concat(frames.map((f) => f.payload));
      const text = data.toString();
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      return { opcode: first.opcode, data, text, json, frames };
    }, { timeoutMs, what });
  }

  // The server's close frame, which must be the next frame, with a code in `codes` (a code or
  // a list); then the server must end the TCP connection without the client's echo (RFC 6455
  // 7.1.7: failing the connection closes it). Resolves { code, reason, end }.
  async expectClose(codes, what = 'close frame') {
    const f = await this.nextFrame({ what });
    assert.equal(f.opcode, OP.close, `${what}: expected a close frame, got opcode 0x${f.opcode.toString(16)}: ${f.payload.toString().slice(0, 80)}`);
    const code = closeCodeOf(f);
    const want = [codes].flat();
    assert.ok(want.includes(code), `${what}: close code ${code}, expected ${want.join(' or ')}`);
    const end = await withTimeout(this.closed, WAIT_MS, `the server ending the connection after its close frame (${what})`);
    return { code, reason: f.payload.subarray(2).toString(), end };
  }

  destroy() {
    this.socket.destroy();
    Conn.all.delete(this);
  }
}

function closeCodeOf(f) {
  return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
}

// An announce as text with printable 20-character ids; pad: an extra string field (ignored by
// the daemon) to reach a size.
function announceText({ ih = wt.randomId({ ascii: true }), pid = wt.randomId({ ascii: true }), pad } = {}) {
  return JSON.stringify(wt.announce(ih, pid, pad === undefined ? {} : { extra: { pad } }));
}

// An announce of exactly `bytes` bytes of UTF-8 (padded with ASCII); only the required fields,
// so that it fits in 125 bytes.
function announceOfSize(bytes, { ih = wt.randomId({ ascii: true }), pid = wt.randomId({ ascii: true }) } = {}) {
  const text = (pad) => JSON.stringify({ action: 'announce', info_hash: ih, peer_id: pid, pad });
  const n = bytes - Buffer.byteLength(text(''));
  assert.ok(n >= 0, `an announce needs ${Buffer.byteLength(text(''))} bytes at least`);
  return text('x'.repeat(n));
}

function assertAnnounceReply(msg, ih, what = 'announce reply') {
  assert.equal(msg.opcode, OP.text, `${what}: a text message`);
  assert.ok(msg.json, `${what}: JSON, got ${msg.text.slice(0, 120)}`);
  assert.equal(msg.json.action, 'announce', `${what}: ${msg.text.slice(0, 160)}`);
  assert.ok('interval' in msg.json, `${what}: an announce response, got ${msg.text.slice(0, 160)}`);
  assert.equal(msg.json.info_hash, ih, `${what}: for its info_hash`);
}

// Sends an announce on c and asserts the announce response.
async function assertAnswers(c, what = 'announce reply') {
  const ih = wt.randomId({ ascii: true });
  await c.sendText(announceText({ ih }));
  assertAnnounceReply(await c.nextMessage({ what }), ih, what);
}

// The daemon is up and a fresh client is served, then closed cleanly.
async function assertServed(daemon) {
  assert.equal(daemon.proc.exitCode, null, `daemon exited:\n${daemon.log}`);
  const c = await Conn.open(daemon.public, '/');
  await assertAnswers(c, 'announce reply to a fresh client');
  await c.send(OP.close, closePayload(1000));
  await c.expectClose(1000, 'close of the fresh client');
  c.destroy();
}

// ================================================================ suites

let d;  // the main daemon (keep-alive tests start their own)

before(async () => {
  d = await Daemon.start(['--set', 'server.threads=2', '--set', `server.max_message_bytes=${MAX_MESSAGE_BYTES}`]);
});

// After each case: its connections go, and the daemon still serves a fresh client.
afterEach(async () => {
  for (const c of Conn.all) c.destroy();
  await assertServed(d);
});

after(async () => {
  if (!d) return;
  const { code, signal } = await d.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `a clean exit:\n${d.log}`);
});

describe('opening handshake', () => {
  it('answers a valid upgrade with 101 and the right Sec-WebSocket-Accept on /, /announce and /v1/ws', T, async () => {
    for (const path of ['/', '/announce', '/v1/ws']) {
      for (const key of [newKey(), 'dGhlIHNhbXBsZSBub25jZQ==']) {
        const c = await Conn.connect(d.public);
        await c.write(upgradeRequest(path, { 'Sec-WebSocket-Key': key }).text);
        const res = await c.response();
        assert.match(res.statusLine, /^HTTP\/1\.1 101 /, `${path}: ${res.head}`);
        assert.equal(res.headers.get('sec-websocket-accept'), acceptOf(key), `${path}: accept key`);
        if (key === 'dGhlIHNhbXBsZSBub25jZQ==') assert.equal(acceptOf(key), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');  // RFC 6455 1.3
        assert.equal(res.headers.get('upgrade')?.toLowerCase(), 'websocket', `${path}: Upgrade header`);
        assert.ok(res.headers.get('connection')?.toLowerCase().split(/\s*,\s*/).includes('upgrade'), `${path}: Connection header`);
        if (path !== '/v1/ws') await assertAnswers(c, `announce on ${path}`);
        c.destroy();
      }
    }
  });

  it('accepts header names and values in any case, and Connection with several tokens', T, async () => {
    // Firefox sends "Connection: keep-alive, Upgrade"; header names are case-insensitive, and
    // so are the Upgrade and Connection tokens.
    for (const headers of [
      { Connection: 'keep-alive, Upgrade', Upgrade: 'websocket' },
      { Connection: 'upgrade', Upgrade: 'WebSocket' },
      { Connection: 'UPGRADE', Upgrade: 'WEBSOCKET' },
    ]) {
      const c = await Conn.connect(d.public);
      const key = newKey();
      const text = upgradeRequest('/', { ...headers, 'Sec-WebSocket-Key': key }).text
        .replace('Sec-WebSocket-Key', 'sec-websocket-key').replace('Sec-WebSocket-Version', 'SEC-WEBSOCKET-VERSION');
      await c.write(text);
      const res = await c.response();
      assert.equal(res.status, 101, `${JSON.stringify(headers)}: ${res.head}`);
      assert.equal(res.headers.get('sec-websocket-accept'), acceptOf(key));
      await assertAnswers(c);
      c.destroy();
    }
  });

  // A refused upgrade: a 4xx status, and no frame is answered on that connection.
  async function assertRefused(text, what, statuses = null) {
    const c = await Conn.connect(d.public);
    await c.write(text);
    const res = await c.response();
    if (statuses) assert.ok(statuses.includes(res.status), `${what}: status ${res.status}, expected ${statuses.join(' or ')}: ${res.head}`);
    else assert.ok(res.status >= 400 && res.status < 500, `${what}: a 4xx, got ${res.head}`);
    assert.equal(res.headers.get('sec-websocket-accept'), undefined, `${what}: no accept key`);
    c.destroy();
    return res;
  }

  it('refuses an upgrade without Sec-WebSocket-Key with a 4xx', T, async () => {
    await assertRefused(upgradeRequest('/', { 'Sec-WebSocket-Key': null }).text, 'no key');
    await assertRefused(upgradeRequest('/', { 'Sec-WebSocket-Key': crypto.randomBytes(32).toString('base64') }).text, 'a 44-character key');
  });

  it('refuses an upgrade without Host, or with two keys, with 400 (RFC 6455 4.2.1, 11.3.1)', T, async () => {
    await assertRefused(upgradeRequest('/', { Host: null }).text, 'no Host', [400]);
    const { text } = upgradeRequest('/');
    const twoKeys = text.replace('\r\n\r\n', `\r\nSec-WebSocket-Key: ${newKey()}\r\n\r\n`);
    await assertRefused(twoKeys, 'two keys', [400]);
  });

  // Boost.Beast, the daemon's earlier WebSocket layer, upgraded any key of up to 24 characters.
  it('refuses an upgrade whose Sec-WebSocket-Key is not the base64 of 16 bytes with a 4xx', T, async () => {
    // RFC 6455 4.2.1 item 5: the key, base64-decoded, is 16 bytes long.
    const cases = {
      'empty': '',
      'too short': crypto.randomBytes(8).toString('base64'),
      'not base64': 'not base64 at all!!!!!==',
      '24 characters of 17 bytes': `${crypto.randomBytes(17).toString('base64').slice(0, 23)}=`,
    };
    for (const [what, key] of Object.entries(cases)) await assertRefused(upgradeRequest('/', { 'Sec-WebSocket-Key': key }).text, what);
  });

  it('refuses a Sec-WebSocket-Version other than 13 with 426 (or 400) naming version 13', T, async () => {
    // RFC 6455 4.2.2 and 4.4: an error status "such as 426" and a Sec-WebSocket-Version header
    // with the versions the server speaks.
    for (const version of ['8', '12', '14', 'x']) {
      const res = await assertRefused(upgradeRequest('/', { 'Sec-WebSocket-Version': version }).text, `version ${version}`, [426, 400]);
      assert.equal(res.headers.get('sec-websocket-version'), '13', `version ${version}: Sec-WebSocket-Version header: ${res.head}`);
    }
    await assertRefused(upgradeRequest('/', { 'Sec-WebSocket-Version': null }).text, 'no version', [426, 400]);
  });

  it('does not upgrade a request that is not GET over HTTP/1.1', T, async () => {
    // RFC 6455 4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1."
    for (const [what, opts] of [['POST', { method: 'POST' }], ['HTTP/1.0', { version: '1.0' }]]) {
      const c = await Conn.connect(d.public);
      await c.write(upgradeRequest('/', {}, opts).text);
      const res = await c.response();
      assert.notEqual(res.status, 101, `${what}: ${res.head}`);
      assert.ok(res.status >= 400, `${what}: an error status, got ${res.head}`);
      c.destroy();
    }
  });

  it('negotiates no extension or subprotocol it does not implement', T, async () => {
    // The daemon implements no extension (so RSV bits are errors below) and no subprotocol:
    // offered ones must not be echoed (RFC 6455 4.2.2, 9.1).
    const c = await Conn.open(d.public, '/', {
      headers: {
        'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits, x-webkit-deflate-frame',
        'Sec-WebSocket-Protocol': 'chat, superchat',
      },
    });
    assert.equal(c.res.headers.get('sec-websocket-extensions'), undefined, c.res.head);
    assert.equal(c.res.headers.get('sec-websocket-protocol'), undefined, c.res.head);
    await assertAnswers(c);
  });

  it('reads an upgrade request that arrives one byte per TCP write', T, async () => {
    const c = await Conn.connect(d.public);
    const req = upgradeRequest('/announce');
    await c.dribble(req.text);
    const res = await c.response();
    assert.equal(res.status, 101, res.head);
    assert.equal(res.headers.get('sec-websocket-accept'), acceptOf(req.key));
    await assertAnswers(c);
  });

  // The HTTP parser may read past the request's end: those bytes must reach the WebSocket
  // session (Boost.Beast's async_accept(req), used before, lost them).
  it('answers a frame that arrives in the same TCP write as the upgrade request', T, async () => {
    const ih = wt.randomId({ ascii: true });
    const ping = crypto.randomBytes(8);
    const c = await Conn.open(d.public, '/', { after: Buffer.concat([frame(OP.ping, ping), frame(OP.text, announceText({ ih }))]) });
    const pong = await c.nextFrame({ what: 'pong to the ping sent with the request' });
    assert.equal(pong.opcode, OP.pong);
    assert.deepEqual(pong.payload, ping);
    assertAnnounceReply(await c.nextMessage({ what: 'reply to the announce sent with the request' }), ih);
  });
});

describe('framing', () => {
  it('sends replies as unmasked text frames with FIN set and RSV bits clear', T, async () => {
    const c = await Conn.open(d.public);
    for (let i = 0; i < 3; i++) await assertAnswers(c);
    await c.send(OP.ping, 'p');
    await c.nextFrame({ what: 'pong' });
    assert.ok(c.seen.length >= 4);
    for (const f of c.seen) {
      assert.equal(f.masked, false, 'server frames are never masked (RFC 6455 5.1)');
      assert.equal(f.rsv, 0, 'no RSV bit without an extension');
      assert.equal(f.fin, true, 'small replies are single frames');
      assert.ok([OP.text, OP.pong].includes(f.opcode), `opcode 0x${f.opcode.toString(16)}`);
    }
  });

  it('accepts payload lengths in the 7-bit, 16-bit and 64-bit forms (125 to 70,000 bytes)', T, async () => {
    const c = await Conn.open(d.public);
    for (const size of [125, 126, 200, 65535, 65536, 70_000]) {
      const ih = wt.randomId({ ascii: true });
      const text = announceOfSize(size, { ih });
      const f = frame(OP.text, text);
      assert.equal(f[1] & 0x7f, size < 126 ? size : size < 65536 ? 126 : 127);
      await c.write(f);
      assertAnnounceReply(await c.nextMessage({ what: `reply to a ${size}-byte message` }), ih, `${size} bytes`);
    }
  });

  it('reassembles a message of three fragments with a ping between them: pong first, then the reply', T, async () => {
    const c = await Conn.open(d.public);
    const ih = wt.randomId({ ascii: true });
    const text = Buffer.from(announceText({ ih }));
    const a = Math.floor(text.length / 3);
    const ping = Buffer.from('ping between fragments');
    await c.send(OP.text, text.subarray(0, a), { fin: false });
    await c.send(OP.cont, text.subarray(a, 2 * a), { fin: false });
    await c.send(OP.ping, ping);
    const pong = await c.nextFrame({ what: 'pong in the middle of a message' });
    assert.equal(pong.opcode, OP.pong);
    assert.deepEqual(pong.payload, ping);
    assert.equal(c.frames.length, 0, 'nothing before the message is complete');
    await c.send(OP.cont, text.subarray(2 * a), { fin: true });
    assertAnnounceReply(await c.nextMessage(), ih);
    // The same with all of it in one write, the ping right after the first fragment.
    const ih2 = wt.randomId({ ascii: true });
    const text2 = Buffer.from(announceText({ ih: ih2 }));
    await c.write(Buffer.concat([
      frame(OP.text, text2.subarray(0, 10), { fin: false }), frame(OP.ping, 'x'),
      frame(OP.cont, text2.subarray(10, 20), { fin: false }), frame(OP.cont, text2.subarray(20)),
    ]));
    const pong2 = await c.nextFrame({ what: 'second pong' });
    assert.equal(pong2.opcode, OP.pong);
    assert.equal(pong2.payload.toString(), 'x');
    assertAnnounceReply(await c.nextMessage(), ih2);
  });

  it('accepts empty fragments and a binary message made of fragments', T, async () => {
    const c = await Conn.open(d.public);
    const ih = wt.randomId({ ascii: true });
    const text = Buffer.from(announceText({ ih }));
    await c.write(Buffer.concat([
      frame(OP.text, '', { fin: false }), frame(OP.cont, text.subarray(0, 5), { fin: false }),
      frame(OP.cont, '', { fin: false }), frame(OP.cont, text.subarray(5), { fin: false }), frame(OP.cont, ''),
    ]));
    assertAnnounceReply(await c.nextMessage(), ih, 'text message with empty fragments');
    // The daemon reads binary messages as JSON too.
    const ih2 = wt.randomId({ ascii: true });
    const text2 = Buffer.from(announceText({ ih: ih2 }));
    await c.write(Buffer.concat([frame(OP.binary, text2.subarray(0, 7), { fin: false }), frame(OP.cont, text2.subarray(7))]));
    assertAnnounceReply(await c.nextMessage(), ih2, 'fragmented binary message');
    // An all-zero masking key is still a masked frame.
    const ih3 = wt.randomId({ ascii: true });
    await c.sendText(announceText({ ih: ih3 }), { maskKey: Buffer.alloc(4) });
    assertAnnounceReply(await c.nextMessage(), ih3, 'zero masking key');
  });

  it('answers 50 messages written in one TCP write, all of them, in order', T, async () => {
    const c = await Conn.open(d.public);
    // One swarm: each announce adds a leecher, so the replies count 1, 2, ... in order.
    const ih = wt.randomId({ ascii: true });
    const n = 50;
    await c.write(Buffer.concat(Array.from({ length: n }, () => frame(OP.text, announceText({ ih })))));
    for (let i = 1; i <= n; i++) {
      const m = await c.nextMessage({ what: `reply ${i} of ${n}` });
      assertAnnounceReply(m, ih, `reply ${i}`);
      assert.equal(m.json.incomplete, i, `reply ${i} in order`);
    }
  });

  it('answers a message that arrives one byte per TCP write, with a ping in the middle', T, async () => {
    const c = await Conn.open(d.public);
    const ih = wt.randomId({ ascii: true });
    const text = Buffer.from(announceOfSize(200, { ih }));  // 16-bit length form
    await c.dribble(Buffer.concat([
      frame(OP.text, text.subarray(0, 100), { fin: false }), frame(OP.ping, 'dribbled'), frame(OP.cont, text.subarray(100)),
    ]));
    const pong = await c.nextFrame({ what: 'pong' });
    assert.equal(pong.opcode, OP.pong);
    assert.equal(pong.payload.toString(), 'dribbled');
    assertAnnounceReply(await c.nextMessage(), ih);
  });

  it('ignores an unsolicited pong', T, async () => {
    const c = await Conn.open(d.public);
    await c.send(OP.pong, 'unsolicited');
    await c.send(OP.pong, '');
    await assertAnswers(c);
    assert.equal(c.seen.length, 1, 'nothing but the reply came back');
  });

  it('frames the native protocol on /v1/ws alike: a fragmented hello with a ping between', T, async () => {
    const c = await Conn.open(d.public, '/v1/ws');
    const hello = Buffer.from(JSON.stringify({ type: 'hello', v: 1 }));
    await c.write(Buffer.concat([
      frame(OP.text, hello.subarray(0, 6), { fin: false }), frame(OP.ping, 'native'), frame(OP.cont, hello.subarray(6)),
    ]));
    const pong = await c.nextFrame({ what: 'pong' });
    assert.equal(pong.opcode, OP.pong);
    assert.equal(pong.payload.toString(), 'native');
    const welcome = await c.nextMessage({ what: 'welcome' });
    assert.equal(welcome.opcode, OP.text);
    assert.equal(welcome.json?.type, 'welcome', welcome.text);
  });
});

describe('pings from the client', () => {
  it('answers a ping with an empty payload with an empty pong', T, async () => {
    const c = await Conn.open(d.public);
    await c.send(OP.ping, '');
    const pong = await c.nextFrame({ what: 'pong' });
    assert.equal(pong.opcode, OP.pong);
    assert.equal(pong.fin, true);
    assert.equal(pong.payload.length, 0);
  });

  it('answers a ping of 125 bytes (the most a control frame holds) with the same 125 bytes', T, async () => {
    const c = await Conn.open(d.public);
    const payload = crypto.randomBytes(125);
    await c.send(OP.ping, payload);
    const pong = await c.nextFrame({ what: 'pong' });
    assert.equal(pong.opcode, OP.pong);
    assert.deepEqual(pong.payload, payload);
  });

  it('answers pings at any time: first thing, between messages, several in a row', T, async () => {
    const c = await Conn.open(d.public);
    const payloads = Array.from({ length: 5 }, (_, i) => crypto.randomBytes(i * 30));
    await c.send(OP.ping, payloads[0]);
    assert.deepEqual((await c.nextFrame({ what: 'first pong' })).payload, payloads[0]);
    await assertAnswers(c);
    // Pings in one write: RFC 6455 5.5.3 lets the server answer only the latest of pings it
    // has not answered yet (the server does, so that a ping flood can't queue pongs). Every
    // pong must echo one of them, in order, and the last ping must be answered.
    await c.write(Buffer.concat(payloads.slice(1).map((p) => frame(OP.ping, p))));
    let next = 1;
    for (;;) {
      const pong = await c.nextFrame({ what: 'pong in a row' });
      assert.equal(pong.opcode, OP.pong);
      const at = payloads.findIndex((p, i) => i >= next && p.equals(pong.payload));
      assert.ok(at >= next, 'each pong echoes a later ping than the one before');
      next = at + 1;
      if (at === payloads.length - 1) break;
    }
    await assertAnswers(c);
  });
});

describe('protocol errors close the connection with the right code', () => {
  // Opens a connection, writes data (a Buffer or a list of them, in one write), expects the close
  // frame with code(s) and the end of the connection.
  async function expectFailure(data, codes, what) {
    const c = await Conn.open(d.public);
    await c.write(Array.isArray(data) ? Buffer.concat(data) : data);
    return c.expectClose(codes, what);
  }

  it('1002 on an unmasked client frame', T, async () => {
    await expectFailure(frame(OP.text, announceText(), { mask: false }), 1002, 'unmasked text frame');
    await expectFailure(frame(OP.ping, 'x', { mask: false }), 1002, 'unmasked ping');
  });

  it('1002 on reserved opcodes (0x3-0x7, 0xB-0xF)', T, async () => {
    for (const op of [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      await expectFailure(frame(op, 'x'), 1002, `opcode 0x${op.toString(16)}`);
    }
  });

  it('1002 on RSV1, RSV2 or RSV3 set without a negotiated extension', T, async () => {
    for (const [name, rsv] of [['RSV1', 4], ['RSV2', 2], ['RSV3', 1]]) {
      await expectFailure(frame(OP.text, announceText(), { rsv }), 1002, `${name} on a text frame`);
    }
    await expectFailure(frame(OP.ping, 'x', { rsv: 4 }), 1002, 'RSV1 on a ping');
  });

  it('1002 on a control frame with more than 125 bytes of payload', T, async () => {
    await expectFailure(frame(OP.ping, Buffer.alloc(126, 0x61)), 1002, 'ping of 126 bytes');
    await expectFailure(frame(OP.pong, Buffer.alloc(200, 0x61)), 1002, 'pong of 200 bytes');
    await expectFailure(frame(OP.close, closePayload(1000, 'r'.repeat(124))), 1002, 'close of 126 bytes');
  });

  it('1002 on a fragmented control frame', T, async () => {
    await expectFailure(frame(OP.ping, 'x', { fin: false }), 1002, 'ping without FIN');
    await expectFailure([frame(OP.text, 'ab', { fin: false }), frame(OP.ping, 'x', { fin: false })], 1002,
      'ping without FIN inside a message');
  });

  it('1002 on a continuation frame with no message to continue', T, async () => {
    await expectFailure(frame(OP.cont, announceText()), 1002, 'continuation first thing');
    const c = await Conn.open(d.public);
    await assertAnswers(c);
    await c.send(OP.cont, 'x', { fin: false });
    await c.expectClose(1002, 'continuation after a complete message');
  });

  it('1002 on a new data frame while a fragmented message is unfinished', T, async () => {
    const text = Buffer.from(announceText());
    await expectFailure([frame(OP.text, text.subarray(0, 10), { fin: false }), frame(OP.text, text.subarray(10))], 1002, 'text inside text');
    await expectFailure([frame(OP.text, text.subarray(0, 10), { fin: false }), frame(OP.binary, text.subarray(10), { fin: false })],
      1002, 'binary inside text');
  });

  it('1002 or 1009 on a 64-bit length with its most significant bit set', T, async () => {
    await expectFailure(frame(OP.text, 'x', { length: 0x8000000000000001n }), [1002, 1009], 'length 2^63 + 1');
  });

  it('1002 on a close frame with a 1-byte payload', T, async () => {
    await expectFailure(frame(OP.close, Buffer.from([0x03])), 1002, 'close with 1 byte');
  });

  it('1002 on a close frame with a code that must not be sent (0, 999, 1004, 1005, 1006, 1015, 1016, 2999)', T, async () => {
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999]) {
      await expectFailure(frame(OP.close, closePayload(code)), 1002, `close code ${code}`);
    }
  });

  it('1007 (or 1002) on a close reason that is not UTF-8', T, async () => {
    // RFC 6455 5.5.1 and 8.1: the reason is UTF-8; Autobahn 7.5.1 accepts 1002 or 1007 for it.
    await expectFailure(frame(OP.close, closePayload(1000, Buffer.from([0x6f, 0x6b, 0xff, 0xfe]))), [1007, 1002], 'close reason 0xff 0xfe');
  });

  describe('message over server.max_message_bytes', () => {
    // The 1009 close frame must reach the client: a server that closes its socket with the
    // client's bytes still unread makes the kernel send a reset, which can destroy the close
    // frame before the client reads it.
    it('1009 on a frame header announcing more, sent with a little payload only', T, async () => {
      const c = await Conn.open(d.public);
      const f = frame(OP.text, 'x'.repeat(MAX_MESSAGE_BYTES + 1));
      await c.write(f.subarray(0, 14 + 100));  // 64-bit length form: 14 bytes of header with the key
      const r = await c.expectClose(1009, 'close after an oversized header');
      assert.equal(r.end.error, null, `a clean end, no reset: ${JSON.stringify(r.end)}`);
    });

    it('1009 on an oversized frame written whole in one write', T, async () => {
      const c = await Conn.open(d.public);
      c.write(frame(OP.text, announceOfSize(MAX_MESSAGE_BYTES + 1)));  // not awaited: the server may stop reading
      await c.expectClose(1009, 'close after a whole oversized frame');
    });

    it('1009 on a message whose fragments, each small, add up to more', T, async () => {
      const c = await Conn.open(d.public);
      const chunk = 'x'.repeat(16 * 1024);
      const n = Math.ceil((MAX_MESSAGE_BYTES + 1) / chunk.length);
      c.write(Buffer.concat(Array.from({ length: n }, (_, i) => frame(i ? OP.cont : OP.text, chunk, { fin: i === n - 1 }))));
      await c.expectClose(1009, 'close after oversized fragments');
    });

    it('accepts a message of exactly server.max_message_bytes', T, async () => {
      const c = await Conn.open(d.public);
      const ih = wt.randomId({ ascii: true });
      await c.sendText(announceOfSize(MAX_MESSAGE_BYTES, { ih }));
      assertAnnounceReply(await c.nextMessage(), ih, 'reply to a message of the limit');
    });
  });
});

describe('UTF-8 in text messages', () => {
  // A text message of these bytes, as one frame or cut into fragments at the offsets in `cuts`.
  function textFrames(bytes, cuts = []) {
    const b = Buffer.from(bytes);
    const points = [0, ...cuts, b.length];
    return Buffer.concat(points.slice(0, -1).map((p, i) =>
      frame(i ? OP.cont : OP.text, b.subarray(p, points[i + 1]), { fin: i === points.length - 2 })));
  }

  it('1007 on invalid UTF-8 in a single-frame text message', T, async () => {
    const cases = {
      'byte 0xff': [0xff],
      'overlong /': [0xc0, 0xaf],
      'lone surrogate': [0xed, 0xa0, 0x80],
      'past U+10FFFF': [0xf4, 0x90, 0x80, 0x80],
      'a continuation byte first': [0x80],
      'truncated at the end of the message': [0xe2, 0x82],
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const c = await Conn.open(d.public);
      await c.write(textFrames([0x22, 0x61, ...bytes]));
      await c.expectClose(1007, what);
    }
  });

  it('1007 on invalid UTF-8 spread over fragments', T, async () => {
    const cases = {
      // A three-byte character cut after two bytes, the next fragment starting with ASCII.
      'a character cut and not continued': [[0x22, 0xe2, 0x82, 0x41, 0x22], [3]],
      // The last fragment ends in the middle of a four-byte character.
      'the last fragment ends mid-character': [[0x22, 0x61, 0xf0, 0x9f, 0x98], [2]],
      'an invalid byte in the second fragment': [[0x22, 0x61, 0x62, 0xff, 0x22], [2]],
    };
    for (const [what, [bytes, cuts]] of Object.entries(cases)) {
      const c = await Conn.open(d.public);
      await c.write(textFrames(bytes, cuts));
      await c.expectClose(1007, what);
    }
  });

  it('accepts valid multi-byte characters cut across fragment boundaries', T, async () => {
    const c = await Conn.open(d.public);
    for (const ch of ['é', '€', '😀']) {
      const ih = wt.randomId({ ascii: true });
      const text = Buffer.from(announceText({ ih, pad: `a${ch}b${ch}` }));
      const at = text.indexOf(Buffer.from(ch));
      const w = Buffer.byteLength(ch);
      // Cut after the character's first byte, and (for 3 and 4 bytes) again inside it.
      const cuts = w > 2 ? [at + 1, at + w - 1] : [at + 1];
      await c.write(textFrames(text, cuts));
      assertAnnounceReply(await c.nextMessage({ what: `reply with ${ch} cut` }), ih, `${ch} cut at ${cuts}`);
      // Each fragment in its own TCP write, too.
      const ih2 = wt.randomId({ ascii: true });
      const text2 = Buffer.from(announceText({ ih: ih2, pad: ch.repeat(3) }));
      const at2 = text2.indexOf(Buffer.from(ch));
      const points = [0, at2 + 1, at2 + w + 1, text2.length];
      for (let i = 0; i < points.length - 1; i++) {
        await c.send(i ? OP.cont : OP.text, text2.subarray(points[i], points[i + 1]), { fin: i === points.length - 2 });
      }
      assertAnnounceReply(await c.nextMessage({ what: `reply with ${ch} cut, fragments written apart` }), ih2);
    }
  });

  it('does not check binary messages for UTF-8', T, async () => {
    const c = await Conn.open(d.public);
    await c.send(OP.binary, Buffer.from([0x22, 0xff, 0xfe, 0x22]));
    const m = await c.nextMessage({ what: 'error reply to a binary non-JSON message' });
    assert.equal(m.opcode, OP.text);
    assert.ok(m.json && 'failure reason' in m.json, m.text);
    await assertAnswers(c);
  });
});

describe('close handshake', () => {
  it('echoes a close 1000 with a reason, then closes the TCP connection', T, async () => {
    const c = await Conn.open(d.public);
    await assertAnswers(c);
    await c.send(OP.close, closePayload(1000, 'bye now'));
    const r = await c.expectClose(1000, 'echoed close');
    assert.equal(r.end.fin, true, 'the server closed its side (FIN)');
    assert.equal(r.end.error, null, `no reset: ${JSON.stringify(r.end)}`);
  });

  it('answers a close without payload with a close (no code or 1000)', T, async () => {
    const c = await Conn.open(d.public);
    await c.send(OP.close, '');
    await c.expectClose([null, 1000], 'close answering an empty close');
  });

  it('answers closes with other valid codes (1001, 1003, 1011, 3000, 4999) with a close', T, async () => {
    for (const code of [1001, 1003, 1011, 3000, 4999]) {
      const c = await Conn.open(d.public);
      await c.send(OP.close, closePayload(code, 'x'));
      const f = await c.nextFrame({ what: `close answering ${code}` });
      assert.equal(f.opcode, OP.close);
      const got = closeCodeOf(f);
      assert.ok(got === null || (got >= 1000 && got !== 1005 && got !== 1006), `close answering ${code}: ${got}`);
      await withTimeout(c.closed, WAIT_MS, `end after close ${code}`);
    }
  });

  it('answers a close in the middle of a fragmented message', T, async () => {
    const c = await Conn.open(d.public);
    await c.write(Buffer.concat([frame(OP.text, '{"a":', { fin: false }), frame(OP.close, closePayload(1000))]));
    await c.expectClose(1000, 'close inside a message');
  });

  it('sends no data frame after its close frame', T, async () => {
    // An announce and the close in one write: the reply may come before the close, never after.
    const c = await Conn.open(d.public);
    await c.write(Buffer.concat([frame(OP.text, announceText()), frame(OP.close, closePayload(1000))]));
    await withTimeout(c.closed, WAIT_MS, 'connection end');
    const i = c.seen.findIndex((f) => f.opcode === OP.close);
    assert.ok(i >= 0, 'a close frame came');
    assert.equal(c.seen.length, i + 1, `frames after the close: ${c.seen.slice(i + 1).map((f) => f.opcode)}`);
    assert.equal(closeCodeOf(c.seen[i]), 1000);
  });
});

// server.idle_timeout_s is at least 5 (the config refuses less).
describe('keep-alive (server.idle_timeout_s=5)', () => {
  const IDLE_S = 5;
  const TK = { timeout: 30_000 };
  let kd;

  before(async () => {
    kd = await Daemon.start(['--set', 'server.threads=1', '--set', `server.idle_timeout_s=${IDLE_S}`]);
  });

  after(async () => {
    if (!kd) return;
    const { code, signal } = await kd.stop();
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, `a clean exit:\n${kd.log}`);
  });

  it('pings an idle client within the idle timeout', TK, async () => {
    const c = await Conn.open(kd.public);
    const t0 = Date.now();
    const f = await c.nextFrame({ timeoutMs: IDLE_S * 1000 + 1500, what: 'a ping from the server' });
    assert.equal(f.opcode, OP.ping, `a ping, got opcode 0x${f.opcode.toString(16)} after ${Date.now() - t0} ms`);
    assert.ok(f.payload.length <= 125);
    assert.ok(Date.now() - t0 <= IDLE_S * 1000 + 500, `ping after ${Date.now() - t0} ms`);
  });

  it('keeps a client that answers the pings past three times the idle timeout', TK, async () => {
    const c = await Conn.open(kd.public);
    const t0 = Date.now();
    let pings = 0;
    while (Date.now() - t0 < 3 * IDLE_S * 1000 + 500) {
      // Each wait ends with a ping; the connection closing instead fails the test.
      const f = await c.nextFrame({ timeoutMs: IDLE_S * 1000 + 1500, what: `ping ${pings + 1} (after ${Date.now() - t0} ms)` });
      assert.equal(f.opcode, OP.ping);
      pings += 1;
      await c.send(OP.pong, f.payload);
    }
    assert.ok(pings >= 3, `${pings} pings`);
    await assertAnswers(c, 'announce after the pongs');
    await assertServed(kd);
  });

  it('closes a client that never answers nor sends anything after the idle timeout', TK, async () => {
    const c = await Conn.open(kd.public);
    const t0 = Date.now();
    const end = await withTimeout(c.closed, IDLE_S * 1000 + 4000, 'the server closing a silent client');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= IDLE_S * 1000 - 500, `closed after ${elapsed} ms, before the idle timeout`);
    // Pings, then a close frame (1001 going away, 1000, or 1011) or the TCP close alone.
    const kinds = c.seen.map((f) => f.opcode);
    assert.ok(kinds.every((k) => k === OP.ping || k === OP.close), `only pings and a close: ${kinds}`);
    assert.ok(kinds.includes(OP.ping), 'pinged before closing');
    assert.ok(end.fin || end.error, JSON.stringify(end));
    await assertServed(kd);
  });
});

describe('aftermath', () => {
  it('is still up and logged no unhandled exception', T, async () => {
    assert.equal(d.proc.exitCode, null);
    assert.doesNotMatch(d.log, /unhandled exception|critical/);
    assert.equal((await fetch(`http://${d.public}/healthz`)).status, 200);
  });
});
