/** A TCP port on 127.0.0.1 that is free right now (for test peers). */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Every port handed out in this process. A test often takes two ports before
 * either is listened on (a Node-RED process and its peer API, started later);
 * the kernel may give the same free port twice in a row, and the second
 * listener then fails with EADDRINUSE (seen in CI: Node-RED and the peer API
 * of one server on one port). A port handed out once is not handed out again.
 */
const handedOut = new Set<number>();

/**
 * The same across processes: the unit tests run in parallel mocha workers (and
 * other test runs may share the machine), each with its own `handedOut`. A
 * port handed out is claimed by a file named after it in this folder, created
 * exclusively and holding our PID; another process skips a port whose claim
 * belongs to a live process. Our claims are removed when we exit.
 */
const CLAIMS = path.join(os.tmpdir(), 'twinrec-test-ports');
const claimed: string[] = [];
let cleanupHooked = false;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Claim a port for this process; false if a live process holds it. */
function claim(port: number): boolean {
  const file = path.join(CLAIMS, String(port));
  for (let i = 0; i < 2; i++) {
    try {
      fs.mkdirSync(CLAIMS, { recursive: true });
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      claimed.push(file);
      if (!cleanupHooked) {
        cleanupHooked = true;
        process.once('exit', () => {
          for (const f of claimed) {
            try {
              fs.unlinkSync(f);
            } catch {
              /* gone */
            }
          }
        });
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return true; // no claims folder to use: the in-process set still holds
      const text = fs.readFileSync(file, 'utf8').trim();
      if (!text) return false; // being written by its owner right now
      const owner = Number(text);
      if (owner !== process.pid && alive(owner)) return false;
      // a claim of a process that is gone: take it over
      try {
        fs.unlinkSync(file);
      } catch {
        /* another process took it over first */
      }
    }
  }
  return false;
}

function osFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await osFreePort();
    if (handedOut.has(p)) continue;
    handedOut.add(p);
    if (!claim(p)) continue;
    return p;
  }
  throw new Error('no free port on 127.0.0.1 that this test run (or another live one) has not handed out already (50 tries)');
}
