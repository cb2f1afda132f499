// Manifests (protocol/README.md, "Manifests"): the SHA-256 of every block, published by the
// site next to the resource, so a block received from a peer can be checked before use.

import { base64ToBytes } from './bitfield.js';

// manifest: the parsed JSON object, or its URL. Returns { size, blockSize, digests }, or
// throws a clear error for anything malformed.
export async function loadManifest(manifest, fetchImpl) {
  if (typeof manifest === 'string') {
    const res = await fetchImpl(manifest, { cache: 'no-store' });
    if (!res.ok) throw new Error(`manifest ${manifest}: HTTP ${res.status}`);
    manifest = await res.json();
  }
  const m = manifest;
  if (m === null || typeof m !== 'object') throw new Error('manifest is not an object');
  if (m.version !== 1) throw new Error(`manifest version ${m.version} is not supported`);
  if (m.algorithm !== 'sha-256') throw new Error(`manifest algorithm ${m.algorithm} is not supported`);
  if (!Number.isSafeInteger(m.size) || m.size < 1) throw new Error('manifest size must be a positive integer');
  if (!Number.isSafeInteger(m.block_size) || m.block_size < 1024 || m.block_size > 64 * 1024 * 1024) throw new Error('manifest block_size must be an integer from 1024 to 64 MiB');
  const blocks = Math.ceil(m.size / m.block_size);
  if (!Array.isArray(m.blocks) || m.blocks.length !== blocks) throw new Error(`manifest lists ${m.blocks?.length} digests for ${blocks} blocks`);
  const digests = m.blocks.map((d, i) => {
    let bytes;
    try { bytes = base64ToBytes(d); } catch { bytes = null; }
    if (!bytes || bytes.length !== 32) throw new Error(`manifest digest ${i} is not base64 of 32 bytes`);
    return bytes;
  });
  return { url: typeof m.url === 'string' ? m.url : null, size: m.size, blockSize: m.block_size, digests };
}

export async function blockDigestMatches(manifest, block, bytes) {
  const subtle = globalThis.crypto?.subtle;
  // crypto.subtle exists only in secure contexts (https, or http on localhost/127.0.0.1).
  if (!subtle) throw new Error('blocks cannot be verified: crypto.subtle is unavailable (serve the page over https)');
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes));
  const want = manifest.digests[block];
  if (digest.length !== want.length) return false;
  let diff = 0;
  for (let i = 0; i < digest.length; i++) diff |= digest[i] ^ want[i];
  return diff === 0;
}
