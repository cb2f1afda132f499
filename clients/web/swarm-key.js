// The swarm key the coordinator uses for a URL: protocol/README.md, "Swarm keys", step for
// step as protocol/swarm_url.cpp (tests/fixtures/swarm-urls.json holds both to one table).
// Scheme and host lower-cased, the default port and the fragment dropped, an empty path made
// `/`, path and query kept byte for byte; the host a name, a dotted-quad IPv4 address or an
// IPv6 address in brackets (written as browsers write it). Returns null for what the
// coordinator would refuse.
export function swarmKey(url) {
  // The limit is in UTF-8 bytes, and only ASCII letters are lower-cased, as on the server.
  if (typeof url !== 'string' || url.length === 0 || /[\x00-\x20\x7f]/.test(url)) return null;
  if (utf8Length(url) > MAX_BYTES) return null;
  url = url.split('#')[0];
  const sep = url.indexOf('://');
  if (sep < 0) return null;
  const scheme = asciiLower(url.slice(0, sep));
  if (scheme !== 'http' && scheme !== 'https') return null;
  const rest = url.slice(sep + 3);
  const pathStart = rest.search(/[/?]/);
  const authority = pathStart < 0 ? rest : rest.slice(0, pathStart);
  const path = pathStart < 0 ? '' : rest.slice(pathStart);

  // host [":" port]; user info and anything else with '@' fails the host's character check.
  let host;
  let port;
  if (authority[0] === '[') {
    const close = authority.indexOf(']');
    if (close < 0) return null;
    host = normalIpv6(authority.slice(1, close));
    port = authority.slice(close + 1);
  } else {
    const c = authority.indexOf(':');
    host = normalName(c < 0 ? authority : authority.slice(0, c));
    port = c < 0 ? '' : authority.slice(c);
  }
  if (host === null) return null;
  if (port !== '') {
    if (port[0] !== ':') return null;
    port = port.slice(1);
  }
  if (!/^\d{0,5}$/.test(port)) return null;
  port = port.replace(/^0+(?=\d)/, '');
  if (Number(port) > 65535) return null;
  if ((scheme === 'http' && port === '80') || (scheme === 'https' && port === '443')) port = '';
  const key = `${scheme}://${host}${port ? ':' + port : ''}${path === '' || path[0] === '?' ? '/' : ''}${path}`;
  // Normalizing can lengthen a URL: a key over the limit would be refused when sent back.
  return utf8Length(key) > MAX_BYTES ? null : key;
}

const MAX_BYTES = 2048;

function utf8Length(s) { return new TextEncoder().encode(s).length; }
function asciiLower(s) { return s.replace(/[A-Z]+/g, (m) => m.toLowerCase()); }

const DEC_OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = new RegExp(`^${DEC_OCTET}(?:\\.${DEC_OCTET}){3}$`);

// RFC 3986 reg-name without percent-encoding (a percent-encoded host is another spelling of
// a plain one); a name whose last label is a number must be a dotted quad, since browsers
// read "127.1", "0x7f.1" or "2130706433" as IPv4 shorthands and resolvers may not.
function normalName(host) {
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=]+$/.test(host)) return null;
  const label = host.replace(/\.$/, '').split('.').pop();
  if (/^(?:\d+|0[xX][0-9A-Fa-f]*)$/.test(label) && !IPV4.test(host)) return null;
  return asciiLower(host);
}

// Groups of 1-4 hex digits separated by ':', the last possibly an IPv4 address; null if bad.
function ipv6Groups(s) {
  if (s === '') return [];
  const groups = [];
  const parts = s.split(':');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (i === parts.length - 1 && part.includes('.')) {
      if (!IPV4.test(part)) return null;
      const [a, b, c, d] = part.split('.').map(Number);
      groups.push((a << 8) | b, (c << 8) | d);
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return null;
    }
  }
  return groups;
}

// Written as browsers write it (RFC 5952, the URL Standard): lower-case hex without leading
// zeros, the first longest run of two or more zero groups as "::", an IPv4 tail in hex.
function normalIpv6(inside) {
  let groups;
  const gap = inside.indexOf('::');
  if (gap < 0) {
    groups = ipv6Groups(inside);
    if (groups === null || groups.length !== 8) return null;
  } else {
    const before = inside.slice(0, gap);
    if (before.includes('.')) return null;
    const head = ipv6Groups(before);
    const tail = ipv6Groups(inside.slice(gap + 2));
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  }
  let runStart = 8;
  let runLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLength) [runStart, runLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (runStart === 8) return `[${groups.map((g) => g.toString(16)).join(':')}]`;
  const hex = (gs) => gs.map((g) => g.toString(16)).join(':');
  return `[${hex(groups.slice(0, runStart))}::${hex(groups.slice(runStart + runLength))}]`;
}
