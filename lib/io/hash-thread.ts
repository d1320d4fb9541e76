/**
 * The body of the sha256 worker thread (started by hash-worker.ts): hash a byte
 * range of a SharedArrayBuffer where it is, at a lower priority than the
 * process (niceBy from workerData; Linux gives each thread its own nice value).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

interface HashJob {
  id: number;
  sab: SharedArrayBuffer;
  offset: number;
  length: number;
}

try {
  // on Linux a thread has its own nice value: this thread's id is the last part of /proc/thread-self
  const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  const niceBy = Number((workerData as { niceBy?: number } | undefined)?.niceBy ?? 0);
  if (tid > 0 && niceBy > 0) os.setPriority(tid, Math.min(19, os.getPriority(tid) + niceBy));
} catch {
  // elsewhere (or not allowed) it runs at the process's priority
}

parentPort?.on('message', (m: HashJob) => {
  try {
    const hex = crypto
      .createHash('sha256')
      .update(new Uint8Array(m.sab, m.offset, m.length))
      .digest('hex');
    parentPort!.postMessage({ id: m.id, hex });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: String((err as Error)?.message ?? err) });
  }
});
