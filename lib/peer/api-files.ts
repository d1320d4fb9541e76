/**
 * How the peer API (lib/peer/api.ts) serves a file of a clip: found through the
 * catalogue entry only, its real path inside the storage root, opened without
 * following a link, and sent whole or as the range asked for (a segment), or
 * whole (the sidecar).
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Clip, Segment } from '../model/clip';
import { giveBuffer, readFull, takeBuffer } from '../io/buffers';
import { SIDECAR_NAME, insideRoot } from '../store/clip-files';
import { HttpError } from './api-checks';

/** Bytes read from a segment file per write to the socket: fewer, larger reads and writes than the 64 KiB default cost less CPU per byte served. */
const SEND_CHUNK = 1 << 20;

/**
 * Send bytes [start, end] of an open file as the body of `res` and end it,
 * closing the file: two buffers in turn, one read from the file while the
 * other is written to the socket. A buffer goes back to the pool only once the
 * socket has taken its bytes; when the client goes away mid-stream the
 * answer is destroyed and its buffers are left to the garbage collector.
 */
async function sendFileRange(fd: number, start: number, end: number, res: http.ServerResponse, onServed?: (n: number) => void): Promise<void> {
  let gone = false;
  let onGone: () => void = () => undefined;
  const goneP = new Promise<false>((resolve) => {
    onGone = () => {
      gone = true;
      resolve(false);
    };
  });
  res.once('close', onGone);
  // from the pool of lib/io/part-file.ts (a fresh 1 MiB buffer costs 256 page faults; reusing one costs none)
  const bufs = [takeBuffer(SEND_CHUNK), takeBuffer(SEND_CHUNK)];
  const writing: (Promise<boolean> | null)[] = [null, null];
  let clean = false;
  try {
    let pos = start;
    for (let k = 0; pos <= end; k ^= 1) {
      const w = writing[k];
      if (w && !(await w)) return;
      const b = bufs[k];
      const n = Math.min(SEND_CHUNK, end - pos + 1);
      await readFull(fd, b.subarray(0, n), pos);
      if (gone) return;
      writing[k] = Promise.race([new Promise<boolean>((resolve) => res.write(b.subarray(0, n), (err) => resolve(!err))), goneP]);
      onServed?.(n);
      pos += n;
    }
    const [a, b] = await Promise.all(writing.map((w) => w ?? true));
    if (!a || !b || gone) return;
    clean = true;
    res.end();
  } catch (err) {
    res.destroy(err as Error);
    throw err;
  } finally {
    res.off('close', onGone);
    if (clean) for (const b of bufs) giveBuffer(b);
    if (!clean && !res.destroyed) res.destroy();
    closeFd(fd);
  }
}

function closeFd(fd: number): void {
  fs.close(fd, () => undefined);
}

const CONTENT_TYPES: Record<string, string> = {
  '.ts': 'video/mp2t',
  '.mkv': 'video/x-matroska',
  '.mp4': 'video/mp4',
  '.m4s': 'video/mp4',
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * Parse a Range header against a file size. Returns null when the whole file
 * is to be served (no header, or several ranges: see below), the inclusive
 * [start, end] to serve, or throws 416.
 *
 * Several ranges (`bytes=0-9,20-29`) are answered with the whole file (200):
 * RFC 9110 lets a server ignore Range, and no client of ours asks for several.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (header === undefined) return null;
  const unsatisfiable = (why: string) => new HttpError(416, why, { 'Content-Range': `bytes */${size}` });
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m) throw unsatisfiable(`the Range header "${header.slice(0, 80)}" is not of the form bytes=a-b, bytes=a- or bytes=-n`);
  if (m[1].includes(',')) return null;
  const r = /^\s*(\d{0,16})\s*-\s*(\d{0,16})\s*$/.exec(m[1]);
  if (!r || (r[1] === '' && r[2] === '')) throw unsatisfiable(`the Range header "${header.slice(0, 80)}" is not of the form bytes=a-b, bytes=a- or bytes=-n`);
  if (r[1] === '') {
    const n = Number(r[2]);
    if (n === 0 || size === 0) throw unsatisfiable(`the range asks for the last ${n} bytes of a file of ${size} bytes`);
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(r[1]);
  const end = r[2] === '' ? size - 1 : Number(r[2]);
  if (end < start) throw unsatisfiable(`the range ${start}-${end} ends before it starts`);
  if (start >= size) throw unsatisfiable(`the range starts at byte ${start}, but the file has ${size} bytes`);
  return { start, end: Math.min(end, size - 1) };
}

/** True when `file` is `root` or below it (both already real paths). */
function within(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * The real path of a file of a clip, refused (403) when it is outside the
 * storage root (by its catalogue entry or through a symlink); 404 when missing.
 *
 * This and openFile() ask the file system at once rather than on the thread pool:
 * a copier asks for every segment in turn, and on a busy 2-core server each
 * thread-pool round trip cost 0.3 ms at the median and 2.7 ms at the 90th
 * percentile before the answer's header could go (three of them per segment).
 * They are name lookups and an open on this server's own storage, as the
 * recorder's own checks are; the reads of the file's bytes stay on the pool.
 */
export function resolveFile(storageRoot: string, clip: Clip, file: string, what: string): string {
  let lexical: string;
  try {
    lexical = insideRoot(storageRoot, clip.dir, file);
  } catch {
    throw new HttpError(403, `refused: the ${what} of clip ${clip.id} would be outside the storage root`);
  }
  let root: string;
  let real: string;
  try {
    root = fs.realpathSync.native(storageRoot);
    real = fs.realpathSync.native(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new HttpError(404, `the ${what} of clip ${clip.id} is not on storage`);
    throw err;
  }
  if (!within(root, real)) throw new HttpError(403, `refused: the ${what} of clip ${clip.id} leads outside the storage root`);
  return real;
}

/**
 * Open a resolved file without following a symlink put there since, and check
 * it is a plain file (O_NONBLOCK: a FIFO put in its place does not hold the open).
 */
export function openFile(file: string, clip: Clip, what: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new HttpError(404, `the ${what} of clip ${clip.id} is not on storage`);
    if (code === 'ELOOP') throw new HttpError(403, `refused: the ${what} of clip ${clip.id} changed into a link`);
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new HttpError(403, `refused: the ${what} of clip ${clip.id} is not a plain file`);
    return { fd, size: st.size };
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

export async function sendSidecar(storageRoot: string, req: http.IncomingMessage, res: http.ServerResponse, clip: Clip): Promise<void> {
  const file = resolveFile(storageRoot, clip, SIDECAR_NAME, 'sidecar');
  const { fd } = openFile(file, clip, 'sidecar');
  let body: Buffer;
  try {
    body = await new Promise<Buffer>((resolve, reject) => fs.readFile(fd, (err, b) => (err ? reject(err) : resolve(b))));
  } finally {
    closeFd(fd);
  }
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(body.length), 'Cache-Control': 'no-store' });
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

export async function sendSegment(
  storageRoot: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  clip: Clip,
  seg: Segment,
  onServed?: (clipId: string, index: number, bytes: number) => void,
): Promise<void> {
  const file = resolveFile(storageRoot, clip, seg.file, `segment ${seg.index}`);
  const { fd, size } = openFile(file, clip, `segment ${seg.index}`);
  let handedOver = false;
  try {
    const headers: Record<string, string> = {
      'Content-Type': contentTypeOf(seg.file),
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
      'X-Segment-Complete': seg.complete ? 'true' : 'false',
    };
    if (seg.sha256) {
      headers['X-Sha256'] = seg.sha256;
      headers.ETag = `"${seg.sha256}"`;
    }
    // If-Range: resume only when the client holds a prefix of this very file (same sha256)
    const ifRange = req.headers['if-range'];
    const rangeHeader = ifRange !== undefined && (!seg.sha256 || String(ifRange).trim() !== headers.ETag) ? undefined : req.headers.range;
    let range: { start: number; end: number } | null;
    try {
      range = parseRange(rangeHeader, size);
    } catch (err) {
      if (err instanceof HttpError) {
        // a 416 still says what the segment is (a client whose part is already whole verifies it with X-Sha256)
        const { 'Content-Type': _type, ...about } = headers;
        Object.assign(err.headers, about);
      }
      throw err;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    headers['Content-Length'] = String(length);
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    // the header goes now: the client prepares its part file while the first bytes are read
    res.flushHeaders();
    // the size at open time: a segment still being written is served as it is now
    handedOver = true;
    void sendFileRange(fd, start, end, res, onServed ? (n) => onServed(clip.id, seg.index, n) : undefined).catch(() => {
      // a read error or a client that went away mid-stream: the answer was cut, the file is closed
    });
  } finally {
    if (!handedOver) closeFd(fd);
  }
}
