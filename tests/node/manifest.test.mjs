// `swarmcoord manifest FILE --block-size N`: the real binary against node:crypto.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { runBinary } from './lib/proc.mjs';

let dir;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-manifest-')); });
after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

function blockHashes(data, blockSize) {
  const out = [];
  for (let at = 0; at < data.length; at += blockSize)
    out.push(crypto.createHash('sha256').update(data.subarray(at, at + blockSize)).digest('base64'));
  return out;
}

describe('swarmcoord manifest', () => {
  for (const [size, blockSize] of [[3 * 65536 + 17, 65536], [1 << 20, 16384], [1, 1024], [0, 1024]]) {
    it(`hashes a ${size}-byte file in ${blockSize}-byte blocks like node:crypto`, async () => {
      const data = crypto.randomBytes(size);
      const file = path.join(dir, `f-${size}-${blockSize}`);
      fs.writeFileSync(file, data);
      const r = await runBinary(['manifest', file, '--block-size', String(blockSize), '--url', 'https://cdn.example/f']);
      assert.equal(r.code, 0, r.stderr);
      const m = JSON.parse(r.stdout);
      assert.deepEqual(m, {
        url: 'https://cdn.example/f', version: 1, size, block_size: blockSize, algorithm: 'sha-256',
        blocks: blockHashes(data, blockSize),
      });
    });
  }

  it('exits 2 with one line for a missing file or a bad block size', async () => {
    const missing = await runBinary(['manifest', path.join(dir, 'nope')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /manifest: cannot read .*nope/);
    const file = path.join(dir, 'small');
    fs.writeFileSync(file, 'x');
    const bad = await runBinary(['manifest', file, '--block-size', '100']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /block-size must be between 1024 and/);
  });
});
