/** sha256 on the worker thread: the same digest as node:crypto, on any range of shared memory, many at once, and after a restart of the worker. */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { HASH_NICE, sharedDigest, stopHashWorker } from '../../../lib/io/hash-worker';
import { giveBuffer, takeBuffer } from '../../../lib/io/buffers';

const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

describe('hash worker', () => {
  after(() => stopHashWorker());

  it('gives the sha256 of a range of shared memory, at any offset and length, as node:crypto does', async () => {
    const sab = new SharedArrayBuffer(3 << 20);
    const all = new Uint8Array(sab);
    crypto.randomFillSync(all);
    for (const [off, len] of [
      [0, 3 << 20],
      [1, 1000],
      [4097, (1 << 20) + 3],
      [(3 << 20) - 1, 1],
      [5, 0],
    ]) {
      const view = new Uint8Array(sab, off, len);
      assert.equal(await sharedDigest(view), sha(view), `offset ${off}, length ${len}`);
    }
    const view = new Uint8Array(sab, 100, 5000);
    assert.equal(await sharedDigest(view, 1234), sha(view.subarray(0, 1234)), 'a prefix of the view');
  });

  it('answers many digests at once, each with its own result', async () => {
    const bufs = Array.from({ length: 12 }, (_, i) => {
      const b = Buffer.from(new SharedArrayBuffer(64 * 1024 + i));
      crypto.randomFillSync(b);
      return b;
    });
    const got = await Promise.all(bufs.map((b) => sharedDigest(b)));
    assert.deepEqual(got, bufs.map(sha));
  });

  it('runs at a lower priority than the process (nice + HASH_NICE on its own thread), the other threads untouched', async () => {
    /** nice of each thread of this process (field 19 of /proc/self/task/<tid>/stat) */
    const nices = () =>
      fs.readdirSync('/proc/self/task').map((tid) => {
        const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      });
    const mine = nices()[0]; // the first task is the main thread
    const want = Math.min(19, mine + HASH_NICE);
    await stopHashWorker();
    const before = nices().filter((n) => n === want).length;
    assert.equal(await sharedDigest(new Uint8Array(new SharedArrayBuffer(16))), sha(new Uint8Array(16)));
    assert.equal(nices().filter((n) => n === want).length, before + 1, 'one thread more at the lower priority: the worker');
    assert.equal(nices()[0], mine, 'the main thread keeps its priority');
  });

  it('refuses memory that is not shared and a length beyond the view, without starting anything', async () => {
    await assert.rejects(sharedDigest(Buffer.alloc(10)), /needs a view of a SharedArrayBuffer/);
    await assert.rejects(sharedDigest(new Uint8Array(new SharedArrayBuffer(8)), 9), /cannot hash 9 bytes of a 8-byte view/);
  });

  it('starts a new worker after the last one stopped; a digest pending at the stop is rejected, not lost', async () => {
    const b = Buffer.from(new SharedArrayBuffer(8 << 20));
    const pendingDigest = sharedDigest(b);
    await stopHashWorker();
    await assert.rejects(pendingDigest, /sha256 worker (stopped|exited)/);
    assert.equal(await sharedDigest(b), sha(b));
  });

  it('the segment buffers of lib/io/part-file are shared memory, so they are hashed where they are', async () => {
    const b = takeBuffer(3 << 20);
    try {
      assert.ok(b.buffer instanceof SharedArrayBuffer);
      b.fill(7, 0, 1000);
      assert.equal(await sharedDigest(b, 1000), sha(b.subarray(0, 1000)));
    } finally {
      giveBuffer(b);
    }
  });
});
