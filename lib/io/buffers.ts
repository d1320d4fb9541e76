/**
 * Memory and reads for whole segments: the pool of shared buffers a segment is
 * received into or served from, and the read that fills one from a file.
 * No Node-RED import.
 */
import fs from 'node:fs';

/**
 * Buffers kept for the next segments (received here, or sent by the peer API):
 * a fresh 4 MiB buffer costs a thousand page faults (the kernel zeroes each
 * page), more than copying into one already mapped. At most POOL_MAX are kept,
 * in whole MiB, and all are let go after POOL_IDLE_MS without a taker (a copier
 * at rest holds no memory); `takeBuffer(n)` gives one of at least n bytes.
 */
const POOL_MAX = 6;
const POOL_IDLE_MS = 10000;
const MIB = 1 << 20;
const pool: Buffer[] = [];
let poolTimer: NodeJS.Timeout | null = null;
export function takeBuffer(n: number): Buffer {
  const i = pool.findIndex((b) => b.length >= n);
  // shared memory, so the hash worker (lib/io/hash-worker.ts) reads the segment where it is
  return i >= 0 ? pool.splice(i, 1)[0] : Buffer.from(new SharedArrayBuffer(Math.max(MIB, Math.ceil(n / MIB) * MIB)));
}
export function giveBuffer(b: Buffer): void {
  if (pool.length >= POOL_MAX) return;
  pool.push(b);
  if (poolTimer) poolTimer.refresh();
  else {
    poolTimer = setTimeout(() => {
      poolTimer = null;
      pool.length = 0;
    }, POOL_IDLE_MS);
    poolTimer.unref();
  }
}

/**
 * Fill `b` with the `b.length` bytes of an open file at `pos` (a read may give
 * fewer; it is asked again). A file that ends first became shorter while it was
 * sent: an error. The reads of the peer API's GET and of the segment stream.
 */
export function readFull(fd: number, b: Buffer, pos: number): Promise<Buffer> {
  const len = b.length;
  return new Promise((resolve, reject) => {
    let off = 0;
    const step = () =>
      fs.read(fd, b, off, len - off, pos + off, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error('the file became shorter while it was sent'));
        off += n;
        if (off < len) step();
        else resolve(b);
      });
    step();
  });
}
