// The demo page: downloads one file through the swarm and shows, live, how many bytes came
// from peers and how many from the origin. Settings come from the form or the query string
// (?coordinator=…&file=…&manifest=…&autostart=1); window.demo exposes the outcome to scripts.
import { SwarmClient } from '/clients/web/swarmcoord.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('coordinator').value = params.get('coordinator') ?? `ws://${location.hostname}:8000/v1/ws`;
$('file').value = params.get('file') ?? '/files/sample.bin';
$('manifest').value = params.get('manifest') ?? (params.has('file') ? '' : '/files/sample.bin.manifest.json');

const demo = { state: 'idle', stats: null, sha256: null, error: null, client: null };
window.demo = demo;

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function show(p, neighbors) {
  const total = p.total || 1;
  $('bar-p2p').style.width = `${(100 * p.p2pBytes) / total}%`;
  $('bar-http').style.width = `${(100 * Math.min(p.httpBytes, total - p.p2pBytes)) / total}%`;
  $('p2p').textContent = formatBytes(p.p2pBytes);
  $('http').textContent = formatBytes(p.httpBytes);
  $('uploaded').textContent = formatBytes(p.uploadedBytes);
  if (neighbors !== undefined) $('neighbors').textContent = neighbors;
}

async function start() {
  if (demo.state === 'running') return;
  demo.state = 'running';
  $('status').className = '';
  $('status').textContent = 'Downloading…';
  demo.client?.close();
  const file = $('file').value;
  const client = new SwarmClient({ coordinator: $('coordinator').value });
  demo.client = client;
  // Keep the numbers moving after the download too: this tab now serves other visitors.
  const ticker = setInterval(() => { const s = client.stats(file); if (s) show({ ...s, total: demo.size ?? 0 }, s.neighbors); }, 500);
  try {
    const started = performance.now();
    const manifest = $('manifest').value || undefined;
    const response = await client.fetch(file, { manifest, onProgress: (p) => { demo.size = p.total; show(p); } });
    const body = await response.arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', body));
    demo.sha256 = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
    demo.stats = client.stats(file);
    demo.size = body.byteLength;
    demo.ms = Math.round(performance.now() - started);
    demo.state = 'done';
    $('sha256').textContent = demo.sha256;
    $('status').textContent = `Done: ${formatBytes(body.byteLength)} in ${(demo.ms / 1000).toFixed(1)} s, ` +
      `${Math.round((100 * demo.stats.p2pBytes) / body.byteLength)}% from peers. This tab keeps sharing it while open.`;
  } catch (e) {
    clearInterval(ticker);
    demo.state = 'error';
    demo.error = String(e?.message ?? e);
    $('status').className = 'error';
    $('status').textContent = `Failed: ${demo.error}`;
  }
}

$('form').addEventListener('submit', (ev) => { ev.preventDefault(); start(); });
if (params.get('autostart') === '1') start();
