// Which blocks of a resource a peer holds: bit i = block i, most significant bit of byte 0
// first, unused trailing bits clear — the layout of the native protocol's `have` bitfields
// (protocol/README.md), so the same bytes go to the coordinator and to neighbours.

export class Bitfield {
  constructor(blocks, bytes) {
    this.blocks = blocks;
    this.bytes = bytes ?? new Uint8Array(Math.ceil(blocks / 8));
    this.count = 0;
    if (bytes) for (let i = 0; i < blocks; i++) if (this.has(i)) this.count++;
  }

  has(i) { return (this.bytes[i >> 3] & (0x80 >> (i & 7))) !== 0; }

  // Returns true when the bit was newly set.
  set(i) {
    if (this.has(i)) return false;
    this.bytes[i >> 3] |= 0x80 >> (i & 7);
    this.count++;
    return true;
  }

  clear(i) {
    if (!this.has(i)) return;
    this.bytes[i >> 3] &= ~(0x80 >> (i & 7));
    this.count--;
  }

  get complete() { return this.count === this.blocks; }

  static full(blocks) {
    const b = new Bitfield(blocks);
    for (let i = 0; i < blocks; i++) b.set(i);
    return b;
  }

  toBase64() { return bytesToBase64(this.bytes); }

  // Throws on anything that is not exactly ceil(blocks/8) bytes with clear unused bits: a
  // neighbour's bitfield is untrusted input.
  static fromBase64(blocks, text) {
    const bytes = base64ToBytes(text);
    if (bytes.length !== Math.ceil(blocks / 8)) throw new Error(`bitfield of ${bytes.length} bytes for ${blocks} blocks`);
    const spare = bytes.length * 8 - blocks;
    if (spare > 0 && (bytes[bytes.length - 1] & ((1 << spare) - 1)) !== 0) throw new Error('bitfield has unused bits set');
    return new Bitfield(blocks, bytes);
  }
}

export function bytesToBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function base64ToBytes(text) {
  if (typeof text !== 'string') throw new Error('base64 must be a string');
  const s = atob(text); // throws on invalid base64
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
