/**
 * The body of an fsync worker thread (started by fsync-worker.ts): fsync the
 * descriptor it is given (descriptors belong to the process, so the caller's fd
 * is valid here), or open, fsync and close a path (a folder, after a rename).
 */
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';

interface FsyncJob {
  id: number;
  fd?: number;
  path?: string;
}

parentPort?.on('message', (m: FsyncJob) => {
  let fd: number | null = null;
  try {
    if (m.fd !== undefined) fs.fsyncSync(m.fd);
    else {
      fd = fs.openSync(m.path!, 'r');
      fs.fsyncSync(fd);
    }
    parentPort!.postMessage({ id: m.id });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id: m.id, error: String(e?.message ?? err), code: e?.code });
  } finally {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        // closed already: nothing to give back
      }
    }
  }
});
