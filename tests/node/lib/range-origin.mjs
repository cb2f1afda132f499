// A small Range-capable HTTP origin for the client suites: serves in-memory files on
// 127.0.0.1 (HEAD with Content-Length; GET with a single `bytes=a-b` Range as 206, without
// one as 200), counts every body byte it sends, and injects faults on demand:
//   origin.failNext(n, status)  the next n Range GETs are answered with `status` (no body)
//   origin.ignoreRange = true   every GET gets 200 with the whole body, Range or not
// `requests` logs { method, path, range, status, bytes, at } for every request answered.
import http from 'node:http';
import { once } from 'node:events';

export class RangeOrigin {
  constructor() {
    this.files = new Map();   // path → { body: Buffer, type }
    this.requests = [];
    this.bytesServed = 0;     // body bytes written, all paths and statuses
    this.ignoreRange = false;
    this.failures = [];       // statuses for the next Range GETs
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.sockets = new Set();
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
  }

  static async start() {
    const o = new RangeOrigin();
    o.server.listen(0, '127.0.0.1');
    await once(o.server, 'listening');
    o.port = o.server.address().port;
    o.base = `http://127.0.0.1:${o.port}`;
    return o;
  }

  // Returns the absolute URL of the file.
  add(path, body, type = 'application/octet-stream') {
    this.files.set(path, { body: Buffer.from(body.buffer, body.byteOffset, body.byteLength), type });
    return `${this.base}${path}`;
  }

  failNext(n, status = 503) {
    for (let i = 0; i < n; i++) this.failures.push(status);
  }

  // Body bytes served for one path (GET answers only).
  bytesFor(path) {
    return this.requests.filter((r) => r.path === path).reduce((s, r) => s + r.bytes, 0);
  }

  resetCounters() {
    this.requests = [];
    this.bytesServed = 0;
  }

  handle(req, res) {
    const path = new URL(req.url, 'http://x').pathname;
    const range = req.headers.range ?? null;
    const log = (status, bytes) => {
      this.requests.push({ method: req.method, path, range, status, bytes, at: Date.now() });
      this.bytesServed += bytes;
    };
    const file = this.files.get(path);
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      log(404, 0);
      res.writeHead(404, { 'Content-Length': '0' }).end();
      return;
    }
    const { body, type } = file;
    if (req.method === 'HEAD') {
      log(200, 0);
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': String(body.length), 'Accept-Ranges': 'bytes' }).end();
      return;
    }
    if (range !== null && this.failures.length > 0) {
      const status = this.failures.shift();
      log(status, 0);
      res.writeHead(status, { 'Content-Length': '0', 'Retry-After': '0' }).end();
      return;
    }
    const m = range === null || this.ignoreRange ? null : /^bytes=(\d+)-(\d*)$/.exec(range);
    if (m) {
      const start = Number(m[1]);
      const end = Math.min(m[2] === '' ? body.length - 1 : Number(m[2]), body.length - 1);
      if (start > end) {
        log(416, 0);
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}`, 'Content-Length': '0' }).end();
        return;
      }
      const part = body.subarray(start, end + 1);
      log(206, part.length);
      res.writeHead(206, {
        'Content-Type': type, 'Content-Length': String(part.length),
        'Content-Range': `bytes ${start}-${end}/${body.length}`, 'Accept-Ranges': 'bytes',
      }).end(part);
      return;
    }
    log(200, body.length);
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': String(body.length) }).end(body);
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}
