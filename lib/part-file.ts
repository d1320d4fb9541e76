/**
 * The receiving side of a verified segment copy, shared by the peer API client
 * (lib/peer-client.ts, bytes from HTTP) and the mounted-share source
 * (lib/share-source.ts, bytes from a file): a segment goes to `<dest>.part`,
 * is hashed (whole on the thread pool when it is of bounded size), fsynced,
 * and renamed into place only when its sha256 is right.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

export async function fileSize(file: string): Promise<number> {
  try {
    return (await fs.promises.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
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

export async function syncDir(dir: string): Promise<void> {
  let fh: fs.promises.FileHandle | null = null;
  try {
    fh = await fs.promises.open(dir, 'r');
    await fh.sync();
  } catch {
    // not every file system lets a directory be synced; the rename stands
  } finally {
    await fh?.close().catch(() => undefined);
  }
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
  /** sha256 (hex) of the whole segment, the part's earlier bytes included. */
  digest(): Promise<string>;
}

/**
 * The whole segment in one buffer (a resumed part's earlier bytes read into its
 * start): each byte is copied once from the socket's chunk, written from the
 * buffer, and hashed with WebCrypto, which runs on libuv's thread pool, so the
 * hash of one segment overlaps the receiving of the next.
 */
export class WholeSink implements BodySink {
  private filled: number;
  private flushed: number;
  private constructor(private readonly buf: Buffer, from: number) {
    this.filled = from;
    this.flushed = from;
  }
  static async open(part: string, total: number, resumedFrom: number): Promise<WholeSink> {
    const buf = Buffer.allocUnsafe(total);
    if (resumedFrom > 0) {
      const fh = await fs.promises.open(part, 'r');
      try {
        let off = 0;
        while (off < resumedFrom) {
          const { bytesRead } = await fh.read(buf, off, resumedFrom - off, off);
          if (bytesRead === 0) throw new Error(`${part} is shorter than ${resumedFrom} bytes`);
          off += bytesRead;
        }
      } finally {
        await fh.close();
      }
    }
    return new WholeSink(buf, resumedFrom);
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
  async flush(fh: fs.promises.FileHandle): Promise<void> {
    if (this.filled === this.flushed) return;
    const to = this.filled;
    await writeAll(fh, this.buf.subarray(this.flushed, to));
    this.flushed = to;
  }
  async digest(): Promise<string> {
    const d = await crypto.webcrypto.subtle.digest('SHA-256', this.buf.subarray(0, this.filled));
    return Buffer.from(d).toString('hex');
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
