// HTTP to the origin: the size of a resource, and byte ranges of it. Responses are checked
// (status, Content-Range, length), since a wrong answer here would be stored as content.

// Size and type of a resource: HEAD, or when that tells nothing, a one-byte Range request.
export async function probeSize(fetchImpl, url) {
  const head = await fetchImpl(url, { method: 'HEAD', cache: 'no-store' }).catch(() => null);
  const length = Number(head?.ok ? head.headers.get('content-length') : NaN);
  if (Number.isSafeInteger(length) && length > 0) return { size: length, contentType: head.headers.get('content-type') };
  const res = await fetchImpl(url, { headers: { Range: 'bytes=0-0' }, cache: 'no-store' });
  const total = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  await res.arrayBuffer().catch(() => {});
  if (res.status === 206 && total && Number(total[1]) > 0) return { size: Number(total[1]), contentType: res.headers.get('content-type') };
  throw new Error(`cannot learn the size of ${url} (HTTP ${res.status}, no Content-Length or Content-Range)`);
}

// GET bytes [start, end] of url; accepts a 206 with the right Content-Range, or a 200 with the
// whole resource (an origin that ignores Range), and checks the length either way. Returns
// { body, transferred, whole }: body is the range, or the whole resource when whole is true.
export async function fetchRange(fetchImpl, url, start, end, size, signal) {
  const res = await fetchImpl(url, { headers: { Range: `bytes=${start}-${end}` }, cache: 'no-store', signal });
  if (res.status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
    if (!range || Number(range[1]) !== start || Number(range[2]) !== end) throw new Error(`unexpected Content-Range ${res.headers.get('content-range')}`);
    // Another total means the resource changed under us: never stitch two versions together.
    if (range[3] !== '*' && Number(range[3]) !== size) throw new Error(`the resource is now ${range[3]} bytes, not ${size}`);
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length !== end - start + 1) throw new Error(`short body: ${body.length} of ${end - start + 1} bytes`);
    return { body, transferred: body.length, whole: false };
  }
  if (res.status === 200) {
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.length !== size) throw new Error(`the origin sent ${body.length} bytes, expected ${size}`);
    return { body, transferred: body.length, whole: true };
  }
  throw new Error(`HTTP ${res.status}`);
}
