// Locality from MaxMind databases: tests/tools/make-test-mmdb.pl writes a small .mmdb mapping
// loopback networks to countries and ASNs, swarmcoord reads it (locality.geoip_db and/or
// locality.asn_db), and real native clients connect from different 127/8 source addresses
// (all of 127/8 is on lo). neighbors.add must name the tier of each pair (subnet: same /24;
// asn: same ASN; country: same country; remote: none of these) and, with every candidate
// equally useful, a newcomer allowed one neighbour must get one of the best tier.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binary, Daemon, daemonEnv, sanitizerReport } from './lib/daemon.mjs';
import { NativePeer } from './lib/native-peer.mjs';

const SCRIPT = path.resolve(import.meta.dirname, '../tools/make-test-mmdb.pl');

// The test world, in insertion order (a later, more specific network overrides the /16).
const NETWORKS = [
  { cidr: '127.1.0.0/16', country: 'DE', asn: 64500 },
  { cidr: '127.1.200.0/24', country: 'FR', asn: 64502 },
  { cidr: '127.2.0.0/16', country: 'DE', asn: 64501 },
  { cidr: '127.3.0.0/16', country: 'FR', asn: 64500 },
  { cidr: '127.4.0.0/16', country: 'FR', asn: 64502 },
  { cidr: '127.5.0.0/16', country: 'US', asn: null },  // country only
  { cidr: '127.6.0.0/16', country: null, asn: 64500 },  // ASN only
];
// 127.9.0.0/16 is in no network: neither ASN nor country.
const ADDRESSES = [
  '127.1.5.1', '127.1.5.2', '127.1.9.1', '127.1.200.1', '127.2.5.1', '127.3.5.1',
  '127.4.5.1', '127.5.5.1', '127.6.5.1', '127.9.5.1', '127.9.5.2', '127.9.6.1',
];
const TIERS = ['site', 'subnet', 'asn', 'country', 'remote'];

const ipv4 = (a) => a.split('.').reduce((n, x) => n * 256 + Number(x), 0);
function inCidr(address, cidr) {
  const [net, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipv4(address) / size) === Math.floor(ipv4(net) / size);
}

// What a database built from networks says about an address (the last matching insert wins,
// which with this table is the longest prefix).
function lookup(networks, address) {
  let found = { country: null, asn: null };
  for (const n of networks) if (inCidr(address, n.cidr)) found = n;
  return found;
}

// The locality the daemon must report between two addresses, given what it knows.
function expectedLocality(networks, a, b) {
  if (a.split('.').slice(0, 3).join('.') === b.split('.').slice(0, 3).join('.')) return 'subnet';
  const x = lookup(networks, a);
  const y = lookup(networks, b);
  if (x.asn && x.asn === y.asn) return 'asn';
  if (x.country && x.country === y.country) return 'country';
  return 'remote';
}

const entry = (n, fields = ['country', 'asn']) =>
  `${n.cidr}=${fields.includes('country') ? n.country ?? '' : ''},${fields.includes('asn') ? n.asn ?? '' : ''}`;

// Runs make-test-mmdb.pl; entries with neither part left are dropped.
function makeDb(out, networks, { fields = ['country', 'asn'], ipVersion = 6 } = {}) {
  const entries = networks.map((n) => entry(n, fields)).filter((e) => !/=,$/.test(e));
  return new Promise((resolve, reject) => {
    execFile('perl', [SCRIPT, '--ip-version', String(ipVersion), out, ...entries], { timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`make-test-mmdb.pl failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(out);
    });
  });
}

// Runs the daemon expecting it not to start; resolves { code, signal, output }.
function runToExit(args, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, ['--set', 'server.listen=127.0.0.1:0', '--set', 'admin.listen=127.0.0.1:0', ...args],
      { env: daemonEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (c) => { output += c; });
    proc.stderr.on('data', (c) => { output += c; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (e) => { clearTimeout(timer); reject(e); });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      const report = sanitizerReport(output);
      if (report) reject(new Error(`a sanitizer report:\n${report}`));
      else resolve({ code, signal, output });
    });
  });
}

const swarmUrl = (what) => `https://cdn.swarmcoord.test/locality/${what}/${crypto.randomBytes(6).toString('hex')}.bin`;

function shuffled(list) {
  const a = [...list];
  for (let i = a.length - 1; i > 0; i--) {
    const j = crypto.randomInt(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// One peer per address, joined to a fresh swarm per vantage point: every other address joins
// as a seed (have "all"), then the vantage joins with nothing and max_neighbors above the
// seed count, so it is linked to every seed. Checks the locality both sides are told.
async function checkMatrix(d, networks) {
  const peers = new Map();
  try {
    for (const a of ADDRESSES) {
      const p = await NativePeer.open(d.wsUrl, { localAddress: a });
      await p.hello({ max_neighbors: 16 });
      peers.set(a, p);
    }
    const byId = new Map([...peers].map(([a, p]) => [p.id, a]));
    for (const vantage of ADDRESSES) {
      const url = swarmUrl(`matrix-${vantage}`);
      const seeds = ADDRESSES.filter((a) => a !== vantage);
      let key;
      for (const a of shuffled(seeds)) key = (await peers.get(a).join(url, { have: 'all' })).swarm;
      await peers.get(vantage).join(url);
      const mine = await peers.get(vantage).neighbors(key);
      assert.deepEqual(mine.remove, []);
      const got = Object.fromEntries(mine.add.map((n) => [byId.get(n.peer_id), n.locality]));
      const want = Object.fromEntries(seeds.map((s) => [s, expectedLocality(networks, vantage, s)]));
      assert.deepEqual(got, want, `localities seen from ${vantage}`);
      for (const n of mine.add) {
        assert.equal(n.initiator, true, 'the planned newcomer initiates');
        assert.equal(n.have, 16, 'seeds have all 16 blocks');
      }
      // The other end of each link is told the same tier, as the non-initiator.
      for (const s of seeds) {
        const theirs = await peers.get(s).linkedTo(key, peers.get(vantage).id);
        assert.deepEqual(theirs.add, [{ peer_id: peers.get(vantage).id, initiator: false, locality: want[s], have: 0 }],
          `${s} told about ${vantage}`);
      }
    }
  } finally {
    await Promise.all([...peers.values()].map((p) => p.close()));
  }
}

// A newcomer at vantage with max_neighbors=1 and equally useful seeds (all have "all"): it must
// be linked to a seed of the best tier present. Then that tier's seeds are left out and the
// next tier must win, and so on; each step `rounds` times with fresh swarms and shuffled join
// order, so that a planner ignoring locality (random tie-break) would fail.
async function checkBestTier(d, networks, vantage, pool, rounds) {
  const newcomer = await NativePeer.open(d.wsUrl, { localAddress: vantage, label: `newcomer ${vantage}` });
  const seeds = new Map();
  const tally = [];
  try {
    await newcomer.hello({ max_neighbors: 1 });
    assert.equal(newcomer.welcome.max_neighbors, 1);
    for (const a of pool) {
      const p = await NativePeer.open(d.wsUrl, { localAddress: a });
      await p.hello();
      seeds.set(a, p);
    }
    const byId = new Map([...seeds].map(([a, p]) => [p.id, a]));
    const tierOf = (a) => expectedLocality(networks, vantage, a);
    let remaining = [...pool];
    while (remaining.length > 0) {
      const best = TIERS[Math.min(...remaining.map((a) => TIERS.indexOf(tierOf(a))))];
      for (let round = 0; round < rounds; round++) {
        const url = swarmUrl(`best-${vantage}-${best}`);
        let key;
        for (const a of shuffled(remaining)) key = (await seeds.get(a).join(url, { have: 'all' })).swarm;
        await newcomer.join(url);
        const m = await newcomer.neighbors(key);
        assert.equal(m.add.length, 1, `one neighbour for max_neighbors=1: ${JSON.stringify(m)}`);
        const chosen = byId.get(m.add[0].peer_id);
        assert.ok(chosen, `the neighbour is one of the seeds: ${JSON.stringify(m)}`);
        assert.equal(m.add[0].locality, tierOf(chosen), `reported tier of ${chosen} seen from ${vantage}`);
        assert.equal(m.add[0].locality, best,
          `from ${vantage} among ${remaining.map((a) => `${a}(${tierOf(a)})`).join(' ')} the ${best} tier must win, got ${chosen}`);
        const other = await seeds.get(chosen).linkedTo(key, newcomer.id);
        assert.deepEqual(other.add, [{ peer_id: newcomer.id, initiator: false, locality: best, have: 0 }]);
        tally.push(`${best}:${chosen}`);
      }
      remaining = remaining.filter((a) => tierOf(a) !== best);
    }
  } finally {
    await Promise.all([newcomer, ...seeds.values()].map((p) => p.close()));
  }
  return tally;
}

// Swarms per connection in these suites: one per vantage point, or per tier step and round.
const DAEMON_ARGS = ['--set', 'mesh.max_neighbors=16', '--set', 'limits.max_swarms_per_connection=256'];

describe('locality from a MaxMind database (geoip_db with country and ASN)', { timeout: 120000 }, () => {
  let dir;
  let d;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-geoip-'));
    const db = await makeDb(path.join(dir, 'test.mmdb'), NETWORKS);
    d = await Daemon.start([...DAEMON_ARGS, '--set', `locality.geoip_db="${db}"`]);
  });

  after(async () => {
    await d?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the expectation table separates the tiers as intended', () => {
    const e = (a, b) => expectedLocality(NETWORKS, a, b);
    assert.equal(e('127.1.5.1', '127.1.5.2'), 'subnet');
    assert.equal(e('127.1.5.1', '127.1.9.1'), 'asn');      // same AS64500, other /24
    assert.equal(e('127.1.5.1', '127.3.5.1'), 'asn');      // same AS64500, DE vs FR
    assert.equal(e('127.1.5.1', '127.6.5.1'), 'asn');      // AS64500, no country on one side
    assert.equal(e('127.1.5.1', '127.2.5.1'), 'country');  // DE, AS64500 vs AS64501
    assert.equal(e('127.3.5.1', '127.4.5.1'), 'country');  // FR, AS64500 vs AS64502
    assert.equal(e('127.1.200.1', '127.4.5.1'), 'asn');    // the /24 override: AS64502
    assert.equal(e('127.1.5.1', '127.1.200.1'), 'remote'); // the /24 override: FR AS64502
    assert.equal(e('127.1.5.1', '127.4.5.1'), 'remote');
    assert.equal(e('127.1.5.1', '127.5.5.1'), 'remote');
    assert.equal(e('127.9.5.1', '127.9.5.2'), 'subnet');   // no data, same /24
    assert.equal(e('127.9.5.1', '127.9.6.1'), 'remote');   // no data on either side is no match
  });

  test('neighbors.add names the tier of every pair, on both ends (12 addresses, 132 pairs)', async () => {
    await checkMatrix(d, NETWORKS);
  });

  test('a newcomer with max_neighbors=1 gets a seed of the best tier (subnet > asn > country > remote)', async (t) => {
    const pool = ADDRESSES.filter((a) => a !== '127.1.5.1');
    const tally = await checkBestTier(d, NETWORKS, '127.1.5.1', pool, 6);
    t.diagnostic(`choices from 127.1.5.1: ${tally.join(' ')}`);
  });

  test('the best tier wins from other vantage points too (FR/AS64500, ASN-only, no data)', async () => {
    await checkBestTier(d, NETWORKS, '127.3.5.1', ['127.4.5.1', '127.1.9.1', '127.2.5.1', '127.9.5.1'], 5);
    await checkBestTier(d, NETWORKS, '127.6.5.1', ['127.1.9.1', '127.5.5.1', '127.9.6.1'], 5);
    await checkBestTier(d, NETWORKS, '127.9.5.1', ['127.9.5.2', '127.1.5.1', '127.3.5.1', '127.9.6.1'], 5);
  });
});

describe('locality from two databases and other layouts', { timeout: 120000 }, () => {
  let dir;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-geoip-')); });
  after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  async function withDaemon(args, fn) {
    const d = await Daemon.start([...DAEMON_ARGS, ...args]);
    try {
      await fn(d);
    } finally {
      await d.stop();
    }
  }

  test('countries from geoip_db and ASNs from asn_db give the same tiers', async () => {
    const countries = await makeDb(path.join(dir, 'country.mmdb'), NETWORKS, { fields: ['country'] });
    const asns = await makeDb(path.join(dir, 'asn.mmdb'), NETWORKS, { fields: ['asn'] });
    await withDaemon(['--set', `locality.geoip_db="${countries}"`, '--set', `locality.asn_db="${asns}"`], async (d) => {
      await checkMatrix(d, NETWORKS);
      await checkBestTier(d, NETWORKS, '127.1.5.1', ['127.1.5.2', '127.3.5.1', '127.2.5.1', '127.4.5.1'], 3);
    });
  });

  test('an ASN-only database alone: no country tier', async () => {
    const asns = await makeDb(path.join(dir, 'asn-only.mmdb'), NETWORKS, { fields: ['asn'] });
    const known = NETWORKS.map((n) => ({ ...n, country: null }));
    await withDaemon(['--set', `locality.geoip_db="${asns}"`], (d) => checkMatrix(d, known));
  });

  test('an IPv4-only database (ip_version 4) gives the same tiers', async () => {
    const db = await makeDb(path.join(dir, 'v4.mmdb'), NETWORKS, { ipVersion: 4 });
    await withDaemon(['--set', `locality.geoip_db="${db}"`], (d) => checkMatrix(d, NETWORKS));
  });

  test('without a database only subnet and remote remain (control)', async () => {
    await withDaemon([], async (d) => {
      await checkMatrix(d, []);
      await checkBestTier(d, [], '127.1.5.1', ['127.1.5.2', '127.1.9.1', '127.2.5.1'], 3);
    });
  });
});

describe('locality database errors at startup', { timeout: 60000 }, () => {
  let dir;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmcoord-geoip-')); });
  after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  for (const key of ['geoip_db', 'asn_db']) {
    test(`a nonexistent locality.${key} exits with code 2 naming the key`, async () => {
      const missing = path.join(dir, `no-such-${key}.mmdb`);
      const r = await runToExit(['--set', `locality.${key}="${missing}"`]);
      assert.equal(r.signal, null, `exited by itself:\n${r.output}`);
      assert.equal(r.code, 2, r.output);
      const line = r.output.split('\n').find((l) => l.includes(`locality.${key}`));
      assert.ok(line, `a line naming locality.${key}:\n${r.output}`);
      assert.ok(line.includes(missing), `the line names the path: ${line}`);
      assert.doesNotMatch(r.output, /listening public=/);
    });
  }

  const notDatabases = {
    'a text file': (p) => fs.writeFileSync(p, 'this is not a MaxMind database\n'),
    'an empty file': (p) => fs.writeFileSync(p, ''),
    'random bytes': (p) => fs.writeFileSync(p, crypto.randomBytes(4096)),
  };
  for (const key of ['geoip_db', 'asn_db']) {
    test(`a directory as locality.${key} exits 2 naming the key and saying it is not a file`, async () => {
      const p = path.join(dir, `a-directory-${key}`);
      fs.mkdirSync(p);
      const r = await runToExit(['--set', `locality.${key}="${p}"`]);
      assert.equal(r.code, 2, r.output);
      const line = r.output.split('\n').find((l) => l.includes(`locality.${key}`));
      assert.ok(line, `a line naming locality.${key}:\n${r.output}`);
      assert.match(line, /not a regular file/, line);
      assert.doesNotMatch(r.output, /listening public=/);
    });
  }
  for (const [what, make] of Object.entries(notDatabases)) {
    for (const key of ['geoip_db', 'asn_db']) {
      test(`${what} as locality.${key} exits non-zero with a line naming the file as not a MaxMind database`, async () => {
        const p = path.join(dir, `${what.replace(/\W+/g, '-')}-${key}.mmdb`);
        make(p);
        const r = await runToExit(['--set', `locality.${key}="${p}"`]);
        assert.equal(r.signal, null, `exited by itself:\n${r.output}`);
        assert.equal(r.code, 2, `a bad config value: ${r.output}`);
        assert.match(r.output, new RegExp(`locality\\.${key}`), 'names the key');
        const line = r.output.split('\n').find((l) => l.includes(p));
        assert.ok(line, `a line naming ${p}:\n${r.output}`);
        assert.match(line, /MaxMind/i, `the line says what is wrong: ${line}`);
        assert.doesNotMatch(r.output, /listening public=/);
      });
    }
  }
});
