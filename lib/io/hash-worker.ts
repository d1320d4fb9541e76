/**
 * sha256 of a byte range of a SharedArrayBuffer on a worker thread, so a copier
 * hashes a whole segment without blocking its event loop and without the copy
 * WebCrypto makes of its input (a fresh 4 MiB allocation, page faults included,
 * on the event loop, and the clearing of it afterwards).
 *
 * One worker per process, started on first use; it keeps the process alive only
 * while a digest is pending. If it dies, every pending digest is rejected and the next one
 * starts a new worker. No Node-RED import.
 *
 * The worker runs at a lower priority (nice HASH_NICE, Linux: its own thread
 * only): hashing is the bulk of a copy's CPU and is never on its critical
 * path (segments queue for it, up to the copier's depth), while the recorders'
 * ffmpeg processes, Node-RED's event loop and the transfer itself are. On the
 * 2-core bench machine (docs/benchmarks.md), with both ends of the copy on it, material copy over HTTP
 * gave 572-616 MiB/s in four runs with it and 501-581 in the two runs just
 * before without it: within that machine's noise, so it is kept for the
 * recordings' sake, not for speed.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/** How much nicer than the process the hash worker runs (where the system lets a thread be reniced). */
export const HASH_NICE = 10;

/** The worker's body: hash-thread.ts, compiled beside this file. */
const THREAD_FILE = path.join(__dirname, 'hash-thread.js');

type Pending = { resolve: (hex: string) => void; reject: (err: Error) => void; w: Worker | null };

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, Pending>();

/** Reject the digests sent to `w` (all of them when w is null). */
function failAll(err: Error, w: Worker | null = null): void {
  for (const [id, p] of [...pending]) {
    if (w && p.w !== w) continue;
    pending.delete(id);
    p.reject(err);
  }
}

function start(): Worker {
  const w = new Worker(THREAD_FILE, { workerData: { niceBy: HASH_NICE } });
  w.unref();
  w.on('message', (m: { id: number; hex?: string; error?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (m.hex !== undefined) p.resolve(m.hex);
    else p.reject(new Error(`sha256 worker: ${m.error ?? 'no result'}`));
  });
  const gone = (err: Error) => {
    if (worker === w) worker = null;
    failAll(err, w);
  };
  w.on('error', (err) => gone(err instanceof Error ? err : new Error(String(err))));
  w.on('exit', (code) => gone(new Error(`sha256 worker exited (${code})`)));
  return w;
}

/** sha256 (hex) of `length` bytes of `view`'s SharedArrayBuffer from `view`'s start. */
export function sharedDigest(view: Uint8Array, length = view.length): Promise<string> {
  if (!(view.buffer instanceof SharedArrayBuffer)) return Promise.reject(new TypeError('sharedDigest needs a view of a SharedArrayBuffer'));
  if (length < 0 || length > view.length) return Promise.reject(new RangeError(`cannot hash ${length} bytes of a ${view.length}-byte view`));
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const p: Pending = { resolve, reject, w: null };
    pending.set(id, p);
    try {
      worker ??= start();
      // held while a digest is pending (a process waiting only for it must not exit), let go when idle
      worker.ref();
      p.w = worker;
      worker.postMessage({ id, sab: view.buffer, offset: view.byteOffset, length });
    } catch (err) {
      pending.delete(id);
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Stop the worker (tests; a process never needs to). Pending digests are rejected. */
export async function stopHashWorker(): Promise<void> {
  const w = worker;
  worker = null;
  if (w) await w.terminate();
  failAll(new Error('sha256 worker stopped'));
}
