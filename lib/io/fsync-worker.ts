/**
 * fsync on threads of its own, off libuv's thread pool.
 *
 * Node runs every asynchronous file call (open, stat, read, write, fsync) on one
 * pool of four threads, shared by the whole Node-RED process. An fsync holds its
 * thread until the disk has the bytes: a copier with several segments waiting on
 * the disk fills the pool, and every other file call (the next segment's open,
 * Node-RED saving its flows or context) queues behind the fsyncs. Here each
 * fsync blocks a worker thread instead (fs.fsyncSync on the same descriptor: file
 * descriptors belong to the process), so the pool stays free and the disk still
 * sees several fsyncs at once (the journal commits them together).
 *
 * Up to SYNC_THREADS workers, started on first use, each keeping the process
 * alive only while it has work. If one dies, what it had is rejected and the next
 * call starts another. If a worker cannot be started at all, the fsync runs on the
 * thread pool as before. No Node-RED import.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/** fsyncs under way at once (one per worker). */
export const SYNC_THREADS = 3;

/** The worker's body: fsync-thread.ts, compiled beside this file. */
const THREAD_FILE = path.join(__dirname, 'fsync-thread.js');

type Job = { id: number; fd?: number; path?: string; resolve: () => void; reject: (err: Error) => void };
type Slot = { w: Worker; jobs: Map<number, Job> };

const slots: Slot[] = [];
const waiting: Job[] = [];
let nextId = 1;
let unavailable = false;

function fail(slot: Slot, err: Error): void {
  const i = slots.indexOf(slot);
  if (i >= 0) slots.splice(i, 1);
  for (const j of slot.jobs.values()) j.reject(err);
  slot.jobs.clear();
  pump();
}

function startSlot(): Slot | null {
  let w: Worker;
  try {
    w = new Worker(THREAD_FILE);
  } catch {
    unavailable = true;
    return null;
  }
  w.unref();
  const slot: Slot = { w, jobs: new Map() };
  w.on('message', (m: { id: number; error?: string; code?: string }) => {
    const j = slot.jobs.get(m.id);
    if (!j) return;
    slot.jobs.delete(m.id);
    if (slot.jobs.size === 0) w.unref();
    if (m.error === undefined) j.resolve();
    else j.reject(Object.assign(new Error(m.error), m.code ? { code: m.code } : {}));
    pump();
  });
  w.on('error', (err) => fail(slot, err instanceof Error ? err : new Error(String(err))));
  w.on('exit', (code) => fail(slot, new Error(`fsync worker exited (${code})`)));
  slots.push(slot);
  return slot;
}

/** Hand waiting jobs to idle workers, starting workers up to SYNC_THREADS. */
function pump(): void {
  while (waiting.length > 0) {
    let slot = slots.find((s) => s.jobs.size === 0) ?? null;
    if (!slot && slots.length < SYNC_THREADS && !unavailable) slot = startSlot();
    if (!slot) {
      if (unavailable && slots.length === 0) {
        // no worker can run here: the thread pool does it
        for (const j of waiting.splice(0)) void poolSync(j);
      }
      return;
    }
    const j = waiting.shift()!;
    slot.jobs.set(j.id, j);
    slot.w.ref();
    slot.w.postMessage(j.fd !== undefined ? { id: j.id, fd: j.fd } : { id: j.id, path: j.path });
  }
}

async function poolSync(j: Job): Promise<void> {
  try {
    if (j.fd !== undefined) await new Promise<void>((res, rej) => fs.fsync(j.fd!, (err) => (err ? rej(err) : res())));
    else {
      const fh = await fs.promises.open(j.path!, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    j.resolve();
  } catch (err) {
    j.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function submit(target: { fd: number } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    waiting.push({ id: nextId++, ...target, resolve, reject });
    pump();
  });
}

/** fsync an open file (its FileHandle must stay open until this settles). Errors carry the system's code (EIO...). */
export function fsyncHandle(fh: fs.promises.FileHandle): Promise<void> {
  return submit({ fd: fh.fd });
}

/** Open a folder (or file) read-only, fsync it, close it. */
export function fsyncPath(p: string): Promise<void> {
  return submit({ path: p });
}

/** Stop the workers (tests; a process never needs to). What they had is rejected. */
export async function stopFsyncWorkers(): Promise<void> {
  const all = slots.splice(0);
  await Promise.all(all.map((s) => s.w.terminate()));
  for (const s of all) for (const j of s.jobs.values()) j.reject(new Error('fsync worker stopped'));
}
