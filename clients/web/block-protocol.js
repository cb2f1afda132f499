// The peer-to-peer block protocol spoken on the data channel between two neighbours
// (specified in protocol/README.md, "Peer-to-peer block protocol"). Control messages are JSON
// text frames; block bytes travel in binary frames of at most CHUNK_BYTES, each with an
// 8-byte header (block index, byte offset within the block; both big-endian uint32), because
// 16 KiB is the largest data-channel message every browser accepts.

export const CHANNEL_LABEL = 'swarmcoord/1';
export const CHUNK_BYTES = 16384;
export const CHUNK_HEADER_BYTES = 8;
export const CHUNK_PAYLOAD_BYTES = CHUNK_BYTES - CHUNK_HEADER_BYTES;
export const MAX_CONTROL_BYTES = 256 * 1024;
// A neighbour may have this many requests queued with us; more get `busy`.
export const MAX_QUEUED_REQUESTS = 32;

export const ERROR_CODES = new Set(['not_have', 'busy', 'bad_request']);

export function encodeControl(msg) { return JSON.stringify(msg); }

export function encodeChunk(block, offset, payload) {
  const frame = new Uint8Array(CHUNK_HEADER_BYTES + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, block);
  view.setUint32(4, offset);
  frame.set(payload, CHUNK_HEADER_BYTES);
  return frame;
}

// Splits one block into the frames that carry it.
export function* chunksOf(block, bytes) {
  for (let off = 0; off < bytes.length; off += CHUNK_PAYLOAD_BYTES) {
    yield encodeChunk(block, off, bytes.subarray(off, off + CHUNK_PAYLOAD_BYTES));
  }
}

export class ProtocolError extends Error {}

// Decodes one received frame against the resource's block count. Returns
//   {t:'bitfield', have}, {t:'have', blocks}, {t:'request', block}, {t:'cancel', block},
//   {t:'error', block, code, message}, or {t:'chunk', block, offset, payload};
// throws ProtocolError for anything else — the caller drops that neighbour.
export function decodeFrame(data, blocks) {
  if (typeof data === 'string') {
    if (data.length > MAX_CONTROL_BYTES) throw new ProtocolError(`control message of ${data.length} bytes`);
    let msg;
    try { msg = JSON.parse(data); } catch { throw new ProtocolError('control message is not JSON'); }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new ProtocolError('control message is not an object');
    const index = (v) => {
      if (!Number.isInteger(v) || v < 0 || v >= blocks) throw new ProtocolError(`block ${v} out of range`);
      return v;
    };
    switch (msg.t) {
      case 'bitfield':
        if (typeof msg.have !== 'string') throw new ProtocolError('bitfield without have');
        return typeof msg.client === 'string' ? { t: 'bitfield', have: msg.have, client: msg.client } : { t: 'bitfield', have: msg.have };
      case 'have':
        if (!Array.isArray(msg.blocks)) throw new ProtocolError('have without blocks');
        return { t: 'have', blocks: msg.blocks.map(index) };
      case 'request':
      case 'cancel':
        return { t: msg.t, block: index(msg.block) };
      case 'error':
        if (!ERROR_CODES.has(msg.code)) throw new ProtocolError(`unknown error code ${String(msg.code).slice(0, 32)}`);
        return { t: 'error', block: index(msg.block), code: msg.code, message: String(msg.message ?? '').slice(0, 200) };
      default:
        throw new ProtocolError(`unknown message ${String(msg.t).slice(0, 32)}`);
    }
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < CHUNK_HEADER_BYTES || bytes.length > CHUNK_BYTES) throw new ProtocolError(`chunk frame of ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const block = view.getUint32(0);
  if (block >= blocks) throw new ProtocolError(`chunk for block ${block} out of range`);
  return { t: 'chunk', block, offset: view.getUint32(4), payload: bytes.subarray(CHUNK_HEADER_BYTES) };
}
