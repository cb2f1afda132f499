// Starts Debian's nginx as a throw-away static origin for the end-to-end suites: in the
// foreground, on 127.0.0.1 and a free port, with every file it writes (config, pid, logs,
// temp dirs) in a fresh temp dir that stop() removes. The access log holds one JSON object
// per request, so a test can check what the origin really served (e.g. how many segment
// bytes a P2P client still fetched over HTTP).
//
//   const origin = await startNginx({ root: '/tmp/site', aliases: { '/vendor/': '/abs/node_modules/' } });
//   origin.url                        // 'http://127.0.0.1:PORT' (no trailing slash)
//   await origin.requests('/hls/')    // [{ path, status, bytes, range }, …] in log order
//   await origin.bytesServed('/hls/') // body bytes sent for paths starting with '/hls/'
//   await origin.stop()
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

export const NGINX = '/usr/sbin/nginx';
const SETPRIV = '/usr/bin/setpriv';

const READY_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;
const PORT_ATTEMPTS = 5;

// A port that was free a moment ago: bind port 0, read it, close. Another process may take
// it before nginx binds it, hence the retries in startNginx.
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// nginx creates the temp dir of each compiled-in module that has one, at start-up, and fails
// if it may not (the defaults are under /var/lib/nginx): point all of them into our dir. A
// directive of a module that was configured out would be a config error, so those are
// skipped (`nginx -V` prints the configure arguments on stderr).
function tempPathDirectives(dir) {
  const r = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });
  const configure = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const lines = [`client_body_temp_path "${dir}/client_body";`];
  for (const m of ['proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    if (!configure.includes(`--without-http_${m}_module`)) lines.push(`${m}_temp_path "${dir}/${m}";`);
  }
  return lines;
}

// A path goes into the config between double quotes; refuse what would break out of them.
function confPath(p, what) {
  if (!path.isAbsolute(p)) throw new Error(`startNginx: ${what} must be an absolute path: ${p}`);
  if (/["\\\n\r$;{}]/.test(p)) throw new Error(`startNginx: ${what} has characters nginx.conf cannot hold: ${p}`);
  return p;
}

// As root nginx chowns its temp dirs to the configured user, by default nobody, which does
// not exist inside the tests' user namespace (unshare --map-root-user maps uid 0 only): the
// chown fails there. Staying root avoids it. As any other user the directive would only
// draw a warning, so it is left out.
function userDirective() {
  return process.getuid?.() === 0 ? 'user root root;' : '';
}

function config({ dir, port, root, aliases, readyToken }) {
  const locations = Object.entries(aliases).map(([prefix, target]) => {
    if (!/^\/([\w.-]+\/)*$/.test(prefix)) throw new Error(`startNginx: alias prefix must look like /a/b/: ${prefix}`);
    let t = confPath(target, `alias target for ${prefix}`);
    if (!t.endsWith('/')) t += '/'; // alias replaces the prefix verbatim: keep both slash-terminated
    if (!fs.statSync(t, { throwIfNoEntry: false })?.isDirectory()) {
      throw new Error(`startNginx: alias target for ${prefix} is not a directory: ${t}`);
    }
    // ^~ : a prefix match that no regex location could override.
    return `    location ^~ ${prefix} { alias "${t}"; }`;
  });
  return `# written by tests/node/lib/nginx.mjs
daemon off;
# One process: stop() has a single pid to signal and nothing is left behind if it has to
# SIGKILL it; and no worker, so no switch to another user.
master_process off;
${userDirective()}
pid "${dir}/nginx.pid";
error_log "${dir}/error.log" notice;
events { worker_connections 1024; }
http {
  types {
    text/html                      html htm;
    text/css                       css;
    text/javascript                js mjs;
    application/json               json map;
    application/wasm               wasm;
    application/vnd.apple.mpegurl  m3u8;
    video/mp2t                     ts;
    video/mp4                      mp4 m4s;
    audio/mp4                      m4a;
    image/png                      png;
    image/svg+xml                  svg;
    text/plain                     txt;
  }
  default_type application/octet-stream;
  charset_types text/css text/javascript application/json text/plain;
  charset utf-8;
  ${tempPathDirectives(dir).join('\n  ')}
  log_format e2e escape=json '{"path":"$uri","status":$status,"bytes":$body_bytes_sent,"range":"$http_range"}';
  access_log "${dir}/access.log" e2e;
  server_tokens off;
  sendfile on;
  keepalive_timeout 10s;
  server {
    listen 127.0.0.1:${port};
    root "${confPath(root, 'root')}";
    # Fetched cross-origin from pages on other ports and by p2p-media-loader (fetch() with
    # Range), which must read the lengths; no-store so that every load is a logged request.
    add_header Access-Control-Allow-Origin "*" always;
    add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS" always;
    add_header Access-Control-Allow-Headers "Range" always;
    add_header Access-Control-Expose-Headers "Content-Length, Content-Range, Accept-Ranges" always;
    add_header Cache-Control "no-store" always;
    if ($request_method = OPTIONS) { return 204; }
    location = /__nginx_ready { access_log off; default_type text/plain; return 200 "${readyToken}"; }
${locations.join('\n')}
  }
}
`;
}

async function readOrEmpty(file) {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch {
    return '';
  }
}

// options: root (absolute directory served at /), aliases ({ '/prefix/': '/absolute/dir/' }).
export async function startNginx({ root, aliases = {} }) {
  if (!fs.existsSync(NGINX)) {
    throw new Error(`${NGINX} is missing: install the Debian package nginx-light (deploy/install-deps.sh test)`);
  }
  if (!fs.statSync(root, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`startNginx: root is not a directory: ${root}`);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'swarmcoord-nginx-'));
  const errorLog = path.join(dir, 'error.log');
  const accessLogPath = path.join(dir, 'access.log');
  const readyToken = crypto.randomBytes(8).toString('hex');

  let failure = '';
  try {
    for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
      const port = await freePort();
      const confFile = path.join(dir, 'nginx.conf');
      await fsp.writeFile(confFile, config({ dir, port, root, aliases, readyToken }));
      await fsp.rm(errorLog, { force: true });
      // -e: the log for errors before the config's error_log applies; -p: relative paths.
      const args = ['-p', `${dir}/`, '-e', errorLog, '-c', confFile];
      // Through setpriv (util-linux), nginx is killed with us if the test process dies
      // without stop(), instead of holding its port forever. setpriv execs nginx: same pid.
      const proc = fs.existsSync(SETPRIV)
        ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', NGINX, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(NGINX, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      proc.stdout.on('data', (c) => { output += c; });
      proc.stderr.on('data', (c) => { output += c; });
      const exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
      const spawnError = new Promise((resolve) => proc.on('error', resolve));

      const ready = await waitReady(`http://127.0.0.1:${port}/__nginx_ready`, readyToken, exited, spawnError);
      if (ready === true) return handle({ proc, exited, port, dir, accessLogPath, errorLog });

      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await Promise.race([exited, spawnError]);
      }
      const log = await readOrEmpty(errorLog);
      failure = `nginx on port ${port} (attempt ${attempt}): ${ready}\n--- error log ---\n${log}\n--- output ---\n${output}`;
      // Only a lost race for the port is worth another try.
      if (!/Address already in use/.test(log + output)) break;
    }
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
  await fsp.rm(dir, { recursive: true, force: true });
  throw new Error(`nginx did not start: ${failure}`);
}

// Polls the readiness location until it answers with our token (so that another server
// that grabbed the port cannot pass for ours); resolves true, or a reason string.
async function waitReady(url, token, exited, spawnError) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let gone = null;
  exited.then((e) => { gone = `exited (code ${e.code}, signal ${e.signal})`; });
  spawnError.then((err) => { gone = `cannot run ${NGINX}: ${err.message}`; });
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (gone) return gone;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      const body = await res.text();
      if (res.status === 200 && body === token) return true;
      last = `unexpected answer ${res.status} ${body.slice(0, 80)}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return gone ?? `not ready within ${READY_TIMEOUT_MS} ms (last: ${last})`;
}

function handle({ proc, exited, port, dir, accessLogPath, errorLog }) {
  let stopped = null;

  async function requests(pathPrefix = '/') {
    const text = await readOrEmpty(accessLogPath);
    const out = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      const r = JSON.parse(line);
      if (!r.path.startsWith(pathPrefix)) continue;
      out.push({ path: r.path, status: r.status, bytes: r.bytes, range: r.range || null });
    }
    return out;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accessLogPath,
    errorLogPath: errorLog,
    requests,
    async bytesServed(pathPrefix = '/') {
      return (await requests(pathPrefix)).reduce((sum, r) => sum + r.bytes, 0);
    },
    // Fast shutdown (SIGTERM), SIGKILL if it hangs; then the temp dir (logs included) goes.
    // Safe to call twice.
    stop() {
      stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        await fsp.rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
