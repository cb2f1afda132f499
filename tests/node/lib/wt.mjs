// WebTorrent tracker protocol helpers for the suites: 20-byte ids as latin1 strings (the wire
// form), message builders, and the daemon's shard function (to pick info_hashes that land on
// every worker).
import crypto from 'node:crypto';

// A random 20-byte id as a string of 20 code points U+0000..U+00FF, as WebTorrent sends it.
// ascii: printable ids like p2p-media-loader's.
export function randomId({ ascii = false } = {}) {
  if (ascii) return crypto.randomBytes(15).toString('base64');  // 20 characters
  return crypto.randomBytes(20).toString('latin1');
}

export function hexOf(id) {
  return Buffer.from(id, 'latin1').toString('hex');
}

export function offers(n, tag = 'o') {
  return Array.from({ length: n }, (_, i) => ({
    offer: { type: 'offer', sdp: `v=0\r\n${tag}-${i}-${crypto.randomBytes(4).toString('hex')}\r\n` },
    offer_id: randomId(),
  }));
}

export function announce(infoHash, peerId, { event = 'started', offerList = [], left, extra = {} } = {}) {
  const m = {
    numwant: offerList.length, uploaded: 0, downloaded: 0, action: 'announce',
    info_hash: infoHash, peer_id: peerId, ...extra,
  };
  if (event !== null) m.event = event;  // null: no event key (a periodic re-announce)
  if (left !== undefined) m.left = left;
  if (offerList.length) m.offers = offerList;
  return m;
}

export function answer(infoHash, peerId, toPeerId, offerId, sdp = 'v=0\r\nanswer\r\n') {
  return {
    action: 'announce', info_hash: infoHash, peer_id: peerId, to_peer_id: toPeerId,
    offer_id: offerId, answer: { type: 'answer', sdp },
  };
}

// n random info_hashes. The daemon picks a swarm's worker with a hash keyed at startup, so
// nobody (tests included) can aim ids at one worker; a dozen random ids land on both.
export function randomIds(n) {
  return Array.from({ length: n }, () => randomId());
}
