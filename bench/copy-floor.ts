/**
 * The floor of a verified segment copy over HTTP on this machine: each part of
 * the work measured alone, in a process of its own, on the same files and disk
 * as the copy bench (bench/copy.ts), with nothing of ours around it:
 *
 *   write  every segment written from memory to a fresh folder, 8 files at a
 *          time, an fsync each and one of the folder at the end (what any copy
 *          must do to the disk, with the durability of ours and of cp + sync)
 *   hash   sha256 of every segment's bytes, from memory, on one thread
 *   tcp    every segment sent over TCP on 127.0.0.1: a sender process reading each
 *          source file (page cache) into one buffer and writing it to a fresh
 *          connection, a receiver reading each into one buffer (net.Socket onread)
 *
 * Each prints its wall time and the CPU time of its process (every thread,
 * the kernel's work for it included). The bench adds them up: the CPU an HTTP
 * copy needs at the least, against what the machine's cores give in the time
 * the 0.8 goal allows. Not a test; run as `node copy-floor.js <part> <args>`.
 */
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface FloorResult {
  part: string;
  seconds: number;
  cpuS: number;
  /** tcp: the sender's CPU. */
  senderCpuS?: number;
}

const cpuS = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

async function writePart(dest: string, count: number, segBytes: number): Promise<FloorResult> {
  fs.mkdirSync(dest, { recursive: true });
  const buf = crypto.randomBytes(segBytes);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let next = 0;
  const one = async () => {
    while (next < count) {
      const i = next++;
      const fh = await fs.promises.open(path.join(dest, `s${i}.ts`), 'w');
      try {
        await fh.write(buf, 0, buf.length, 0);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, one));
  const dh = fs.openSync(dest, 'r');
  fs.fsyncSync(dh);
  fs.closeSync(dh);
  return { part: 'write', seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuS: cpuS(process.cpuUsage(c0)) };
}

function hashPart(count: number, segBytes: number): FloorResult {
  const buf = crypto.randomBytes(segBytes);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) crypto.createHash('sha256').update(buf).digest('hex');
  return { part: 'hash', seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuS: cpuS(process.cpuUsage(c0)) };
}

/** The sender: on each connection, reads the next file whole and writes it; reports its CPU when asked. */
function senderPart(files: string[]): void {
  let next = 0;
  let buf: Buffer | null = null;
  const c0 = process.cpuUsage();
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      const file = files[next++ % files.length];
      const fd = fs.openSync(file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        if (!buf || buf.length < size) buf = Buffer.allocUnsafe(size);
        let off = 0;
        while (off < size) off += fs.readSync(fd, buf, off, size - off, off);
        s.end(buf.subarray(0, size));
      } finally {
        fs.closeSync(fd);
      }
    });
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
  process.on('message', (m: { type: string }) => {
    if (m.type === 'cpu') process.send!({ cpuS: cpuS(process.cpuUsage(c0)) }, () => process.exit(0));
  });
}

async function tcpPart(listFile: string, count: number, segBytes: number): Promise<FloorResult> {
  const sender = fork(__filename, ['sender', listFile], { stdio: 'inherit' });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      sender.once('message', (m: { port: number }) => resolve(m.port));
      sender.once('exit', (code) => reject(new Error(`the sender exited (${code})`)));
    });
    const buf = Buffer.allocUnsafe(segBytes + 65536);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve, reject) => {
        let got = 0;
        const s = net.connect({
          host: '127.0.0.1',
          port,
          onread: {
            buffer: () => buf.subarray(got),
            callback: (n: number) => {
              got += n;
              return true;
            },
          },
        });
        s.on('error', reject);
        s.on('close', () => (got === segBytes ? resolve() : reject(new Error(`got ${got} of ${segBytes} bytes`))));
        s.write('GET');
      });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const mine = cpuS(process.cpuUsage(c0));
    const senderCpu = await new Promise<number>((resolve) => {
      sender.once('message', (m: { cpuS: number }) => resolve(m.cpuS));
      sender.send({ type: 'cpu' });
    });
    return { part: 'tcp', seconds, cpuS: mine, senderCpuS: senderCpu };
  } finally {
    if (sender.exitCode === null) sender.kill('SIGKILL');
  }
}

/** Run one part in a child process of its own; resolves with what it measured. */
export function runFloorPart(part: 'write' | 'hash' | 'tcp', o: { dest: string; files: string[]; segBytes: number }): Promise<FloorResult> {
  const listFile = path.join(o.dest, '..', `floor-files-${process.pid}.txt`);
  fs.mkdirSync(path.dirname(listFile), { recursive: true });
  fs.writeFileSync(listFile, o.files.join('\n'));
  const child = fork(__filename, [part, o.dest, listFile, String(o.files.length), String(o.segBytes)], { stdio: 'inherit' });
  return new Promise<FloorResult>((resolve, reject) => {
    let result: FloorResult | null = null;
    child.on('message', (m: FloorResult) => (result = m));
    child.on('exit', (code) => {
      fs.rmSync(listFile, { force: true });
      if (result) resolve(result);
      else reject(new Error(`floor part ${part} exited (${code}) without a result`));
    });
  });
}

if (require.main === module) {
  const [part, a1, a2, a3, a4] = process.argv.slice(2);
  if (part === 'sender') senderPart(fs.readFileSync(a1, 'utf8').split('\n').filter(Boolean));
  else {
    const count = Number(a3);
    const segBytes = Number(a4);
    const run = part === 'write' ? writePart(a1, count, segBytes) : part === 'hash' ? Promise.resolve(hashPart(count, segBytes)) : tcpPart(a2, count, segBytes);
    run.then(
      (r) => process.send!(r, () => process.exit(0)),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  }
}
