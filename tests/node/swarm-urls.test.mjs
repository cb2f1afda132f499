// swarmKey() (clients/web/swarm-key.js) against the table of tricky URLs that
// tests/unit/test_swarm_url.cpp holds protocol/swarm_url.cpp to: both must give every URL the
// table's key, or refuse it, so that a browser and the coordinator always name a resource's
// swarm alike. (web-client.test.mjs also runs the table through a running daemon.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

const { swarmKey } = await import(new URL('../../clients/web/swarm-key.js', import.meta.url).href);
const { cases } = JSON.parse(fs.readFileSync(new URL('../fixtures/swarm-urls.json', import.meta.url), 'utf8'));

const show = (s) => (s === null ? 'null' : JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…(${s.length})` : s));

describe('swarmKey() and the shared table (tests/fixtures/swarm-urls.json)', () => {
  it('has enough of both kinds to mean something', () => {
    assert.ok(cases.filter((c) => c.key === null).length >= 30);
    assert.ok(cases.filter((c) => c.key !== null).length >= 30);
    assert.equal(new Set(cases.map((c) => c.url)).size, cases.length, 'each URL once');
  });

  it('gives every URL the key of the table, or refuses it where the table does', () => {
    const wrong = cases.filter((c) => swarmKey(c.url) !== c.key);
    assert.deepEqual(wrong.map((c) => `${c.why}: ${show(c.url)} → ${show(swarmKey(c.url))}, want ${show(c.key)}`), []);
  });

  it('gives every key itself back', () => {
    const keys = cases.filter((c) => c.key !== null).map((c) => c.key);
    assert.deepEqual(keys.filter((k) => swarmKey(k) !== k).map((k) => `${show(k)} → ${show(swarmKey(k))}`), []);
  });
});

describe('swarmKey() is idempotent', () => {
  it('on a grid of authorities built from separators a naive split trips on', () => {
    const hosts = ['a', 'A.B', 'a:b', 'h:', ':', 'a::b', '', '[::1]', '[::1]:', '[0:0::1]', '[::1', '::1]', '1.2.3.4',
      '1.2.3.4:', '127.1', 'a.1', 'a%41', 'a@b', '[::1]@a', 'a[b]', 'xn--e', 'a.', '.'];
    const ports = ['', ':', ':0', ':80', ':443', ':0443', ':8080', ':b', '::', ':80:80', ':99999', ':[::1]'];
    const tails = ['', '/', '?', '/x', '?q', '#f', '/x?y#z', '//', '/:443', '?:80'];
    const broken = [];
    let keys = 0;
    for (const scheme of ['http://', 'HTTPS://']) {
      for (const host of hosts) {
        for (const port of ports) {
          for (const tail of tails) {
            const key = swarmKey(scheme + host + port + tail);
            if (key === null) continue;
            keys++;
            if (swarmKey(key) !== key) broken.push(`${show(scheme + host + port + tail)} → ${show(key)} → ${show(swarmKey(key))}`);
          }
        }
      }
    }
    assert.deepEqual(broken, []);
    assert.ok(keys > 500, `only ${keys} keys: the grid is mostly refusals`);
  });

  it('never hands out a key over 2048 bytes (normalizing can lengthen a URL)', () => {
    assert.equal(swarmKey(`https://${'h'.repeat(2040)}`), null, 'an empty path becomes "/"');
    assert.equal(swarmKey(`https://a.example?${'q'.repeat(2030)}`), null);
    assert.equal(swarmKey(`https://a.example?${'q'.repeat(2029)}`), `https://a.example/?${'q'.repeat(2029)}`);
    const ipv6 = 'http://[1::2:3:4:5:6:7]/';
    assert.equal(swarmKey(ipv6 + 'p'.repeat(2048 - ipv6.length)), null, 'a one-group "::" is written out');
  });
});
