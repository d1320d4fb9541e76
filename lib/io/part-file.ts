/**
 * The receiving side of a verified segment copy, shared by the peer API client
 * (lib/peer/client.ts, bytes from HTTP) and the mounted-share source
 * (lib/copy/share-source.ts, bytes from a file): a segment goes to `<dest>.part`,
 * is hashed (whole on a worker thread when it is of bounded size), fsynced,
 * and renamed into place only when its sha256 is right.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncHandle, fsyncPath } from './fsync-worker';
import { sharedDigest } from './hash-worker';
import { giveBuffer, takeBuffer } from './buffers';

/**
 * The size of a part file now, 0 when there is none: a plain stat on this
 * server's own storage, done at once rather than queued on the thread pool (the
 * copiers ask it before each segment, on the path where every wait counts).
 */
export function partSize(part: string): number {
  return fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0;
}

/** Feed the first `bytes` of a file into a hash. */
export function hashPrefix(file: string, bytes: number, h: crypto.Hash): Promise<void> {
  if (bytes <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = fs.createReadStream(file, { start: 0, end: bytes - 1 });
    s.on('data', (c) => h.update(c as Buffer));
    s.on('error', reject);
    s.on('end', () => resolve());
  });
}

export async function writeAll(fh: fs.promises.FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

/** Open a segment's .part file, making its folder first when it is not there yet (no round trip when it is). */
export async function openPart(part: string, flags: 'a' | 'w'): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(part, flags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await fs.promises.mkdir(path.dirname(part), { recursive: true });
    return fs.promises.open(part, flags);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch {
    // not every file system lets a directory be synced; the rename stands
  }
}

/**
 * Group commit of an idempotent job per key (an fsync of a folder): `run(key)`
 * resolves after a job for that key that started after the call. While one job
 * runs, every caller waits for a single next one (it starts when the running one
 * ends, so it covers what they did before asking) instead of each running it in
 * turn. A job that fails counts as run (its error is dropped: a folder that
 * cannot be synced does not hold anyone).
 */
type Waiters = { done: Promise<void>; resolve: () => void };

export class GroupRun {
  /** Per key with a job running: the callers waiting for the next one. */
  private readonly busy = new Map<string, { queued: Waiters | null }>();
  constructor(private readonly job: (key: string) => Promise<void>) {}

  run(key: string): Promise<void> {
    const busy = this.busy.get(key);
    if (busy) {
      if (!busy.queued) {
        let resolve!: () => void;
        busy.queued = { done: new Promise<void>((r) => (resolve = r)), resolve };
      }
      return busy.queued.done;
    }
    const st: { queued: Waiters | null } = { queued: null };
    this.busy.set(key, st);
    return (async () => {
      await this.job(key).catch(() => undefined);
      // the first caller is done; those who asked meanwhile get one more run, and so on until nobody asks
      void (async () => {
        while (st.queued) {
          const q = st.queued;
          st.queued = null;
          await this.job(key).catch(() => undefined);
          q.resolve();
        }
        this.busy.delete(key);
      })();
    })();
  }
}

const dirSyncs = new GroupRun(fsyncDir);

/**
 * Make the renames done in `dir` so far durable: resolves after an fsync of the
 * folder that started after this call. With several segments of a clip in flight
 * one folder fsync serves all the renames made while the one before ran.
 */
export function syncDir(dir: string): Promise<void> {
  return dirSyncs.run(path.resolve(dir));
}

/**
 * The end of a verified segment copy, once the part is hashed and fsynced:
 * with a `wrong` sha256 (a sentence saying which and against what) the part is
 * deleted and `refuse(sentence)` is thrown; else the part is renamed into place
 * and its folder's fsync (shared with the renames made meanwhile) awaited.
 */
export async function settlePart(part: string, dest: string, wrong: string | null, refuse: (sentence: string) => Error): Promise<void> {
  if (wrong) {
    await fs.promises.unlink(part).catch(() => undefined);
    throw refuse(`${wrong}; the copy was deleted`);
  }
  await fs.promises.rename(part, dest);
  await syncDir(path.dirname(dest));
}

/** Bytes gathered before one write to the .part file. */
export const WRITE_BATCH = 1 << 20;
/** Segments up to this size are held whole while they arrive and hashed in one go off the event loop. */
export const WHOLE_MAX = 64 << 20;

/** Where a segment's body goes while it arrives: written to the .part in batches and hashed. */
export interface BodySink {
  /** Take a chunk; returns the bytes not yet written. */
  add(chunk: Buffer): number;
  flush(fh: fs.promises.FileHandle): Promise<void>;
  /** Wait until everything flushed is written (throws a write's error). */
  drain(): Promise<void>;
  /** sha256 (hex) of the whole segment, the part's earlier bytes included. */
  digest(): Promise<string>;
  /** Done with it (after the digest settled): its memory may serve the next segment. */
  release(): void;
}

/**
 * A write to the part file is made at once, on the event loop, when the
 * storage is quick: it lands in the page cache (a copier fsyncs each segment
 * soon after, on a worker, so its own unsynced bytes stay under what the
 * copiers hold in flight and it does not meet the kernel's dirty-page
 * throttling). On a 2-core server a write sent to the thread pool cost more than
 * the write itself: a wake-up of a pool thread and one of the event loop for
 * its answer (about 0.35 s of CPU per 2 GiB copied, for writes of 1 MiB).
 *
 * A direct write that takes longer than DIRECT_SLOW_MS (a busy disk, a network
 * mount under pressure) sends every write of the next SLOW_HOLD_MS to the
 * thread pool, so a slow storage never holds the event loop twice in a row.
 */
export const DIRECT_SLOW_MS = 20;
const SLOW_HOLD_MS = 60000;
let directAfter = 0;
/** Whether part writes are made on the event loop now (false for a while after a slow one). */
export function directWrites(): boolean {
  return Date.now() >= directAfter;
}
/** After a write that took `ms`: a slow one sends the writes of the next minute to the thread pool. */
export function noteDirectWrite(ms: number): void {
  if (ms > DIRECT_SLOW_MS) directAfter = Date.now() + SLOW_HOLD_MS;
}
/** Tests: part writes are made directly again. */
export function resetDirectWrites(): void {
  directAfter = 0;
}

/**
 * The whole segment in one buffer (a resumed part's earlier bytes read into its
 * start): each byte is copied once from the socket's chunk, written from the
 * buffer (shared memory), and hashed on a worker thread (lib/io/hash-worker.ts)
 * without a copy, so the hash of one segment overlaps the receiving of the next.
 */
export class WholeSink implements BodySink {
  private filled: number;
  private flushed: number;
  private writes: Promise<void> = Promise.resolve();
  /** Writes handed to the thread pool and not done: while there are any, the next one goes behind them (in order). */
  private poolWrites = 0;
  private failed: Error | null = null;
  private readonly buf: Buffer;
  private mem: Buffer | null;
  private constructor(mem: Buffer, total: number, from: number) {
    this.mem = mem;
    this.buf = mem.subarray(0, total);
    this.filled = from;
    this.flushed = from;
  }
  static async open(part: string, total: number, resumedFrom: number): Promise<WholeSink> {
    const sink = new WholeSink(takeBuffer(total), total, resumedFrom);
    const buf = sink.buf;
    if (resumedFrom > 0) {
      const fh = await fs.promises.open(part, 'r');
      try {
        let off = 0;
        while (off < resumedFrom) {
          const { bytesRead } = await fh.read(buf, off, resumedFrom - off, off);
          if (bytesRead === 0) throw new Error(`${part} is shorter than ${resumedFrom} bytes`);
          off += bytesRead;
        }
      } catch (err) {
        sink.release();
        throw err;
      } finally {
        await fh.close();
      }
    }
    return sink;
  }
  release(): void {
    if (this.mem) giveBuffer(this.mem);
    this.mem = null;
  }
  /** The next `n` bytes of the buffer, to read into directly; `advance(n)` takes them. */
  reserve(n: number): Buffer {
    return this.buf.subarray(this.filled, this.filled + n);
  }
  advance(n: number): number {
    this.filled += n;
    return this.filled - this.flushed;
  }
  add(chunk: Buffer): number {
    chunk.copy(this.buf, this.filled);
    this.filled += chunk.length;
    return this.filled - this.flushed;
  }
  /**
   * Write what came since the last flush, in order, so the part is always a
   * prefix of the segment: at once when the storage is quick (directWrites()),
   * else behind the writes before it on the thread pool without waiting (the
   * bytes stay in the buffer, so receiving goes on while the pool writes). A
   * write's error is kept; `drain()` waits for every write and throws it.
   */
  flush(fh: fs.promises.FileHandle): Promise<void> {
    if (this.filled === this.flushed) return Promise.resolve();
    const from = this.flushed;
    const to = this.filled;
    this.flushed = to;
    if (this.failed) return Promise.resolve();
    if (this.poolWrites === 0 && directWrites()) {
      const t0 = performance.now();
      try {
        for (let off = from; off < to;) off += fs.writeSync(fh.fd, this.buf, off, to - off, null);
      } catch (err) {
        this.failed = err instanceof Error ? err : new Error(String(err));
      }
      noteDirectWrite(performance.now() - t0);
      return Promise.resolve();
    }
    this.poolWrites++;
    this.writes = this.writes
      .then(() => (this.failed ? undefined : writeAll(fh, this.buf.subarray(from, to))))
      .catch((err: unknown) => {
        this.failed ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => {
        this.poolWrites--;
      });
    return Promise.resolve();
  }
  async drain(): Promise<void> {
    await this.writes;
    if (this.failed) throw this.failed;
  }
  /** Settles when every write flushed so far is done (never rejects: `drain()` throws a write's error). */
  written(): Promise<void> {
    return this.writes;
  }
  async digest(): Promise<string> {
    return sharedDigest(this.buf, this.filled);
  }
}

/** A segment hashed as it arrives (unknown or large size): chunks gathered into writes of about WRITE_BATCH. */
export class StreamSink implements BodySink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private constructor(private readonly h: crypto.Hash) {}
  static async open(part: string, resumedFrom: number): Promise<StreamSink> {
    const h = crypto.createHash('sha256');
    if (resumedFrom > 0) await hashPrefix(part, resumedFrom, h);
    return new StreamSink(h);
  }
  add(chunk: Buffer): number {
    this.h.update(chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    return this.pendingBytes;
  }
  async flush(fh: fs.promises.FileHandle): Promise<void> {
    if (this.pendingBytes === 0) return;
    const bufs = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    await writeAll(fh, bufs.length === 1 ? bufs[0] : Buffer.concat(bufs));
  }
  async digest(): Promise<string> {
    return this.h.digest('hex');
  }
  async drain(): Promise<void> {
    // its flush awaits its write
  }
  release(): void {
    this.pending = [];
  }
}

/**
 * After the last write drained: the sha256 (on the hash worker) and the fsync of
 * the part (on an fsync worker, lib/io/fsync-worker.ts) side by side. The buffer
 * goes back to the pool once the hash is taken, not after the fsync, so a copier
 * can have several segments waiting on the disk without holding their bytes.
 * Throws the hash's error, else the fsync's.
 */
export async function hashAndSync(
  sink: BodySink,
  fh: fs.promises.FileHandle,
  fsync: (fh: fs.promises.FileHandle) => Promise<void> = fsyncHandle,
): Promise<string> {
  const hashed = sink.digest().finally(() => sink.release());
  // both settle before this does: the caller closes the file next, never while a worker may still fsync it
  const [d, f] = await Promise.allSettled([hashed, fsync(fh)]);
  if (d.status === 'rejected') throw d.reason;
  if (f.status === 'rejected') throw f.reason;
  return d.value;
}

/**
 * A segment's body into its part through `sink`: `receive` fills it (flushing
 * as it goes, its own errors said in its words); what came is written and
 * drained also when `receive` fails, so the part stays a prefix a resume starts
 * after (`kept` is called then), and a write's error is thrown as it is. Then
 * `received`, and the sha256 and the fsync side by side (hashAndSync). The sink
 * is released in every case. One lifecycle for the GET, the stream and the share.
 */
export async function receiveIntoPart(
  sink: BodySink,
  fh: fs.promises.FileHandle,
  receive: () => Promise<void>,
  o: { kept?: () => void; received?: () => void } = {},
): Promise<string> {
  try {
    try {
      await receive();
    } finally {
      await sink.flush(fh);
      await sink.drain();
      o.kept?.();
    }
    o.received?.();
    return await hashAndSync(sink, fh);
  } finally {
    sink.release();
  }
}

export async function restartPart(part: string): Promise<number> {
  await fs.promises.unlink(part).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return 0;
}

/** The sink for a segment of `total` bytes (null: not announced) with `resumedFrom` bytes already in its part. */
export function openSink(part: string, total: number | null, resumedFrom: number): Promise<BodySink> {
  return total !== null && total <= WHOLE_MAX ? WholeSink.open(part, total, resumedFrom) : StreamSink.open(part, resumedFrom);
}
