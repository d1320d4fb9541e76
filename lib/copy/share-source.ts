/**
 * Segments from a mounted share: the other server's storage root mounted here
 * (NFS, SMB, a SAN volume), the second way to fetch media besides the peer
 * storage API. Clip lists, clip records and events still come from the peer
 * API (they live in the peer's catalogue); only the bytes are read from the
 * share, at the same place under its root as the clip folder and segment file
 * the catalogue names.
 *
 * A segment is copied exactly as one from the API: into `<dest>.part`, resumed
 * from the part's size after a break, hashed (whole, on the thread pool),
 * fsynced, checked against the catalogue's sha256 and size, then renamed into
 * place. Error codes as lib/peer/client.ts:
 *
 *   EUNAVAILABLE the share is not mounted or not readable now, or lacks the clip's top
 *                folder (the server's: an unmounted mount point is an empty folder); try again
 *   ENET         an I/O error or a stale handle on the share (part kept: try again)
 *   ENOENT       the share is there but the segment is not
 *   EREFUSED     the clip folder or file name leads outside the share
 *   ETRUNC       the file on the share is shorter than the catalogue says
 *   EHASH        the bytes do not match the sha256 (part deleted)
 *   EABORT       the caller's AbortSignal stopped it (part kept)
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import path from 'node:path';
import { errorText } from '../model/errors';
import { openPart, openSink, partSize, receiveIntoPart, restartPart, settlePart, WholeSink } from '../io/part-file';
import { PeerError } from '../peer/peer-error';
import type { SegmentSource } from './segment-copy';
import type { SegmentFetchOptions } from '../peer/protocol';
import { insideRoot } from '../store/clip-files';

/**
 * Bytes read from the share per read call. Each chunk's write starts as soon as
 * it is read, and a chunk is read only once the write of the one before the last
 * is done: reading runs at most two chunks ahead of the disk, so when the last
 * write is done (and the next segment may start) nothing read is left unwritten.
 */
const READ_CHUNK = 1 << 20;

const RETRY_CODES = new Set(['EIO', 'ESTALE', 'EHOSTDOWN', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'ENOTCONN', 'EAGAIN', 'EBUSY']);

export class ShareSource implements SegmentSource {
  readonly root: string;

  /** `root`: the peer's storage root as mounted on this server (an absolute path). */
  constructor(root: string) {
    if (typeof root !== 'string' || !path.isAbsolute(root)) throw new Error(`a share folder must be an absolute path, not "${String(root).slice(0, 200)}"`);
    this.root = path.resolve(root);
  }

  /** Throws EUNAVAILABLE unless the share's root is a readable folder now. */
  async check(): Promise<void> {
    try {
      const st = await fs.promises.stat(this.root);
      if (!st.isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
      await fs.promises.access(this.root, fs.constants.R_OK | fs.constants.X_OK);
    } catch (err) {
      throw new PeerError(`the share ${this.root} is not mounted or not readable: ${errorText(err)}`, 'EUNAVAILABLE');
    }
  }

  /** Throws EUNAVAILABLE when the share lacks the top folder of a clip folder (an unmounted mount point is an empty folder). */
  private async checkHolds(clipDir: string): Promise<void> {
    const top = clipDir.split('/').filter(Boolean)[0];
    if (!top) return;
    try {
      await fs.promises.stat(path.join(this.root, top));
    } catch (err) {
      throw new PeerError(`the share ${this.root} has no folder "${top}": not mounted yet? (${errorText(err)})`, 'EUNAVAILABLE');
    }
  }

  async fetchSegment(
    clipId: string,
    index: number,
    dest: string,
    o: SegmentFetchOptions = {},
  ): Promise<{ bytes: number; sha256: string; resumedFrom: number }> {
    const what = `segment ${index} of clip ${clipId}`;
    if (!o.where) throw new PeerError(`${what}: a share needs the clip folder and file name`, 'EINVAL');
    let src: string;
    try {
      src = insideRoot(this.root, o.where.dir, o.where.file);
    } catch {
      throw new PeerError(`${what}: "${o.where.dir}/${o.where.file}" is outside the share ${this.root}`, 'EREFUSED');
    }
    // no look at the share before the open (each look is a round trip through the thread pool, which the
    // fsyncs of the segments before keep busy): only a failed open asks why (not mounted, or no such file)
    let fh: fs.promises.FileHandle;
    try {
      // O_NOFOLLOW: a segment that is a symbolic link (to a file outside the clip, or outside the share) is not read
      fh = await fs.promises.open(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new PeerError(`${what}: ${src} on the share is a symbolic link, which a copy does not follow`, 'EREFUSED');
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR') {
        await this.check();
        // an empty mount point looks like an empty folder: without the clip's top folder (the server's) the share is not mounted
        if (code === 'ENOENT') await this.checkHolds(o.where.dir);
      }
      throw this.ioError(err, what, src);
    }
    const part = `${dest}.part`;
    try {
      // the catalogue's size when it gives one (a shorter file ends the reads early: ETRUNC), else the file's
      const total = o.expectedBytes ?? (await fh.stat()).size;
      let have = o.partBytes ?? partSize(part);
      if (have > total) have = await restartPart(part);
      const resumedFrom = have;
      const out = await openPart(part, resumedFrom > 0 ? 'a' : 'w');
      const sink = await openSink(part, total, resumedFrom).catch(async (err: unknown) => {
        await out.close().catch(() => undefined);
        throw err;
      });
      let sha: string;
      try {
        let pos = resumedFrom;
        const writes: Promise<void>[] = [];
        // every byte read is written before `received` (a kill then loses no byte read from the share): the next segment may be read
        sha = await receiveIntoPart(
          sink,
          out,
          async () => {
            while (pos < total) {
              if (o.signal?.aborted) throw new PeerError('the transfer was stopped', 'EABORT');
              const n = Math.min(READ_CHUNK, total - pos);
              if (o.limiter) await o.limiter.take(n);
              // straight into the segment's buffer when it is held whole (no copy of the bytes on the event loop)
              const whole = sink instanceof WholeSink ? sink : null;
              const chunk = whole ? whole.reserve(n) : Buffer.allocUnsafe(n);
              let got = 0;
              while (got < n) {
                const { bytesRead } = await fh.read(chunk, got, n - got, pos + got).catch((err: unknown) => {
                  throw this.ioError(err, what, src);
                });
                if (bytesRead === 0) throw new PeerError(`${what} on the share is ${pos + got} bytes, not ${total} as the catalogue says`, 'ETRUNC');
                got += bytesRead;
              }
              if (whole) whole.advance(n);
              else sink.add(chunk);
              await sink.flush(out);
              pos += n;
              o.onBytes?.(n);
              if (whole) {
                writes.push(whole.written());
                if (writes.length > 1) await writes.shift();
              }
            }
          },
          { received: o.onReceived },
        );
      } finally {
        await out.close().catch(() => undefined);
      }
      const expected = o.expectedSha256?.toLowerCase() ?? null;
      const wrong = expected && sha !== expected ? `${what} on the share ${this.root} has sha256 ${sha}, not ${expected} as the catalogue says` : null;
      await settlePart(part, dest, wrong, (sentence) => new PeerError(sentence, 'EHASH'));
      return { bytes: total, sha256: sha, resumedFrom };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private ioError(err: unknown, what: string, src: string): PeerError {
    if (err instanceof PeerError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOENT') return new PeerError(`${what} is not on the share (${src})`, 'ENOENT');
    if (code === 'EACCES' || code === 'EPERM') return new PeerError(`${what} on the share cannot be read (${src}): ${errorText(err)}`, 'EUNAVAILABLE');
    if (RETRY_CODES.has(code)) return new PeerError(`the share ${this.root} failed reading ${what}: ${errorText(err)}`, 'ENET');
    return new PeerError(`the share ${this.root} failed reading ${what}: ${errorText(err)}`, 'EPEER');
  }
}

/**
 * A copy source whose lists and events come from one source (the peer API) and
 * whose segment bytes come from another (a share).
 */
export function withShareMedia<T extends SegmentSource>(meta: T, share: ShareSource): T {
  return new Proxy(meta, {
    get(target, prop, receiver) {
      if (prop === 'fetchSegment') return share.fetchSegment.bind(share);
      // media come from the share: no segment stream is opened to the peer
      if (prop === 'planStream' || prop === 'endStream') return undefined;
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The share folder for a server: `{server}` in the configured path is replaced by its id. */
export function shareFolderFor(template: string, serverId: string): string {
  return template.split('{server}').join(serverId);
}

/** The share-folder setting of a copier node: empty means "media over the peer API"; else an absolute path, `{server}` allowed. */
export function parseShareFolder(v: unknown): string | null {
  const s = typeof v === 'string' ? v.trim() : v === undefined || v === null ? '' : null;
  if (s === null)
    throw new Error('the share folder must be text: an absolute path such as /mnt/{server}/recordings, or empty to fetch media over the peer API');
  if (s === '') return null;
  if (s.split('/').includes('..'))
    throw new Error(`the share folder "${s.slice(0, 200)}" has "..": give the absolute path of the mount, such as /mnt/{server}/recordings`);
  if (!path.isAbsolute(s) || s.includes('\0')) {
    throw new Error(
      `the share folder "${s.slice(0, 200)}" must be an absolute path, such as /mnt/{server}/recordings, or empty to fetch media over the peer API`,
    );
  }
  return s;
}
