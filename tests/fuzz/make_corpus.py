#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus/<target>/): a handful of real messages
each, as the unit tests and protocol/README.md show them. Run again after changing it; the
files are committed, so the fuzz runs need nothing but them."""
import json
import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, 'corpus')


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8')
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def latin1(b):  # a 20-byte id as the JSON string WebTorrent sends: one code point per byte
    return json.dumps(bytes(b).decode('latin1'), ensure_ascii=False)


ih = latin1(b'\x12\x34\xab\xcd' + b'info-hash-exampl')
pid = latin1(b'-WW0208-' + bytes([0xe9, 0x80, 0x7f, 0x00]) + b'peeridxx')
oid = latin1(b'offer-id-0000000001\xff')
sdp = '{"type":"offer","sdp":"v=0\\r\\no=- 4611 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0\\r\\n"}'


def webtorrent():
    t = 'fuzz_webtorrent'
    write(t, 'announce-offers', '{"action":"announce","info_hash":%s,"peer_id":%s,"numwant":2,"uploaded":0,"downloaded":0,'
          '"event":"started","left":1000,"offers":[{"offer":%s,"offer_id":%s},{"fake_offer":1}]}' % (ih, pid, sdp, oid))
    write(t, 'announce-completed', '{"action":"announce","info_hash":%s,"peer_id":%s,"event":"completed","left":"0"}' % (ih, pid))
    write(t, 'answer', '{"action":"announce","info_hash":%s,"peer_id":%s,"to_peer_id":%s,"offer_id":%s,'
          '"answer":{"type":"answer","sdp":"v=0\\r\\n"}}' % (ih, pid, pid, oid))
    write(t, 'scrape-list', '{"action":"scrape","info_hash":[%s,%s]}' % (ih, pid))
    write(t, 'scrape-all', '{"action":"scrape"}')
    write(t, 'bad-action', '{"action":"bogus","info_hash":"aaaaaaaaaaaaaaaaaaaa"}')
    write(t, 'stopped-dup-keys', '{"action":"announce","info_hash":%s,"peer_id":%s,"event":"bogus","left":"x","event":"stopped","left":7}' % (ih, pid))


def native():
    t = 'fuzz_native'
    url = 'https://cdn.example.com/video/seg-17.ts'
    write(t, 'hello', '{"type":"hello","v":1,"native":true,"max_neighbors":8}')
    write(t, 'join-bitfield', '{"type":"join","swarm":"HTTPS://CDN.Example.com:443/video/seg-17.ts#t=1","size":1048576,"block_size":65536,"have":"//8="}')
    write(t, 'join-all', '{"type":"join","swarm":"http://[2001:DB8::1]:8080/f.bin","size":1000000,"block_size":65536,"have":"all"}')
    write(t, 'have', '{"type":"have","swarm":"%s","blocks":[3,4,5,4294967295]}' % url)
    write(t, 'leave', '{"type":"leave","swarm":"%s"}' % url)
    write(t, 'signal', '{"type":"signal","swarm":"%s","to":"3f2a9c0d00000007","data":{"type":"offer","sdp":"v=0\\r\\no=- 4611 2 IN IP4 127.0.0.1\\r\\n"}}' % url)
    write(t, 'signal-candidate', '{"type":"signal","swarm":"%s","to":"3f2a9c0d00000007","data":{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.168.77.1 53017 typ host","sdpMid":"0","sdpMLineIndex":0}}}' % url)
    write(t, 'report', '{"type":"report","swarm":"%s","http_bytes":65536,"p2p_bytes":196608,"uploaded_bytes":131072,"bad_peers":["00000000000000ff"]}' % url)
    write(t, 'wide-integer', '{"type":"signal","swarm":"%s","to":"0000000000000001","data":{"n":123456789012345678901234567890,"d":1.5e300,"z":-0}}' % url)


def mask(payload, key=b'\x37\xfa\x21\x3d'):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(op, payload, fin=True, key=b'\x37\xfa\x21\x3d'):
    head = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack('>H', n)
    else:
        head += bytes([0x80 | 127]) + struct.pack('>Q', n)
    return head + key + mask(payload, key)


def websocket():
    t = 'fuzz_websocket'
    # The stream, then what FuzzedDataProvider reads from the end: the size limit's pick (the
    # last byte: 65536), the number of cuts (3), the cut points (two bytes each).
    tail = bytes([0x05, 0x00, 0x11, 0x00, 0x02, 0x00, 3, 7])
    write(t, 'text', frame(1, b'{"type":"hello","v":1}') + tail)
    write(t, 'fragments', frame(1, b'Hello, ', fin=False) + frame(9, b'ping') + frame(0, 'wörld'.encode(), fin=False)
          + frame(0, b'!') + tail)
    write(t, 'binary-126', frame(2, bytes(range(200))) + frame(10, b'') + tail)
    write(t, 'close', frame(1, b'a') + frame(8, struct.pack('>H', 1000) + b'bye') + frame(1, b'after') + tail)
    write(t, 'bad-utf8', frame(1, b'\xc3\x28') + tail)
    write(t, 'long-65536', frame(2, b'x' * 70000)[:12] + b'x' * 64 + tail)


def helpers():
    t = 'fuzz_helpers'
    write(t, 'binary-id', b'\x00' + '-WW0208-é\x7fpeeridxxxxx'.encode())
    write(t, 'base64', b'\x01' + b'wEA=//8=')
    write(t, 'bitfield', b'\x02' + b'\xc0\x40\xff\x00' + struct.pack('<I', 10)[::-1])
    write(t, 'utf8', b'\x03' + 'sdp v=0\r\n "quoted" \\ é € 😀 \x01'.encode() + b'\xc3\x28\xed\xa0\x80')
    write(t, 'peer-id', b'\x04' + b'3f2a9c0d00000007')
    # From the front the key (RFC 6455's example) and a close reason (a backslash ends it); from the end (read last
    # to first) the key's length, the payload size's pick and addend, the fill byte.
    write(t, 'websocket-key', b'\x06' + b'dGhlIHNhbXBsZSBub25jZQ==' + b'going away\\n' + b'x\x01\x03\x18')
    write(t, 'address', b'\x05' + b'\x0c10.0.0.0/8\x2010.1.2.3, 192.0.2.7, [2001:db8::1]:443for="[2001:db8::2]:80";proto=https')


def swarm_url():
    t = 'fuzz_swarm_url'
    with open(os.path.join(HERE, '..', 'fixtures', 'swarm-urls.json'), encoding='utf-8') as f:
        cases = json.load(f)['cases']
    for i, c in enumerate(cases[::10]):
        write(t, 'fixture-%02d' % i, c['url'])
    write(t, 'defect-port-colon', 'https://a:b:443/f')
    write(t, 'defect-empty-port', 'https://h::/x')


def event_sequences(target, count, length):
    rng = random.Random(target)  # the same bytes every run
    for i in range(count):
        write(target, 'sequence-%d' % i, bytes(rng.randrange(256) for _ in range(length * (i + 1))))


if __name__ == '__main__':
    shutil.rmtree(CORPUS, ignore_errors=True)
    webtorrent()
    native()
    websocket()
    helpers()
    swarm_url()
    event_sequences('fuzz_tracker', 4, 300)
    event_sequences('fuzz_mesh', 4, 300)
