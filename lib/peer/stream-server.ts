/**
 * The peer's end of a segment stream (the exchange and why: lib/peer/segment-stream.ts),
 * on a socket lib/peer/api.ts upgraded.
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import net from 'node:net';
import { giveBuffer, readFull, takeBuffer } from '../io/buffers';
import { MAX_PLAN_LINE, parsePlan, streamChunk } from './segment-stream';

/** A segment opened for the stream (the peer API resolves and checks it as for a GET). */
export interface OpenedSegment {
  fd: number;
  size: number;
  sha256: string | null;
  complete: boolean;
}

export interface StreamServeDeps {
  /** Open segment `index` of the clip; throws an error with a `status` (404, 403, ...) and a sentence. */
  open(index: number): OpenedSegment;
  /** Body bytes of segment `index` handed to the socket. */
  onServed?(index: number, bytes: number): void;
  /** A stream that ended on a fault of this server (not the copier going away). */
  warn?(m: string): void;
  /** How long a copier may stay silent while the peer waits on it. */
  idleMs?: number;
}

/**
 * Serve a segment stream on an upgraded socket (the 101 already written;
 * `head` is what came after the request's header). Never throws: every fault
 * ends the stream, with an error frame when the copier should hear why.
 */
export function serveSegmentStream(socket: net.Socket, head: Buffer, deps: StreamServeDeps): Promise<void> {
  return new StreamServer(socket, head, deps).run().catch((err: unknown) => {
    deps.warn?.(`segment stream: ${(err as Error).message}`);
    socket.destroy();
  });
}

class StreamServer {
  private lineBuf = '';
  private planLine: string | null = null;
  private acked = 0;
  private sent = 0;
  private gone = false;
  private bad: string | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly socket: net.Socket,
    head: Buffer,
    private readonly deps: StreamServeDeps,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(deps.idleMs ?? 120000);
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.gone = true;
      this.poke();
    });
    socket.on('data', (d: Buffer) => this.onData(d));
    if (head.length > 0) this.onData(head);
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private waitEvent(): Promise<void> {
    return new Promise<void>((r) => (this.wake = r));
  }

  private onData(d: Buffer): void {
    this.lineBuf += d.toString('latin1');
    if (this.planLine === null && this.lineBuf.length > MAX_PLAN_LINE) return this.protocolFault('the plan line is too long');
    for (;;) {
      const nl = this.lineBuf.indexOf('\n');
      if (nl < 0) break;
      const line = this.lineBuf.slice(0, nl);
      this.lineBuf = this.lineBuf.slice(nl + 1);
      if (this.planLine === null) {
        this.planLine = Buffer.from(line, 'latin1').toString('utf8');
        continue;
      }
      if (!/^\d{1,16}$/.test(line)) return this.protocolFault(`"${line.slice(0, 30)}" is not an acknowledgement (a number of bytes)`);
      const n = Number(line);
      if (n > this.sent) return this.protocolFault(`the copier acknowledged ${n} bytes of ${this.sent} sent`);
      if (n > this.acked) this.acked = n;
    }
    if (this.lineBuf.length > 64) return this.protocolFault('an acknowledgement line is too long');
    this.poke();
  }

  private protocolFault(why: string): void {
    this.bad ??= why;
    this.socket.destroy();
    this.poke();
  }

  private frame(o: unknown): boolean {
    return this.socket.write(`${JSON.stringify(o)}\n`, 'utf8');
  }

  async run(): Promise<void> {
    while (this.planLine === null && !this.gone) await this.waitEvent();
    if (this.gone) return;
    let plan: ReturnType<typeof parsePlan>;
    try {
      plan = parsePlan(this.planLine!);
    } catch (err) {
      this.frame({ i: -1, status: 400, error: `bad plan: ${(err as Error).message}` });
      this.socket.end();
      return;
    }
    this.planLine = '';
    for (const [index, from, sha] of plan.segments) {
      if (this.gone) return;
      let seg: OpenedSegment;
      try {
        seg = this.deps.open(index);
      } catch (err) {
        const status = (err as { status?: number }).status ?? 500;
        if (status >= 500) this.deps.warn?.(`segment stream: segment ${index}: ${(err as Error).message}`);
        this.frame({ i: index, status, error: (err as Error).message });
        this.socket.end();
        return;
      }
      try {
        // a resume only when the copier's part is a prefix of this very file (as If-Range does for a GET)
        const start = from > 0 && from <= seg.size && (sha === null || seg.sha256 === null || sha === seg.sha256) ? from : 0;
        if (!this.frame({ i: index, size: seg.size, start, sha256: seg.sha256, complete: seg.complete })) await this.drained();
        await this.sendBody(seg.fd, index, start, seg.size, plan.window);
      } finally {
        fs.close(seg.fd, () => undefined);
      }
    }
    if (this.gone) return;
    this.frame({ end: true });
    // the copier closes when it has taken the last segment; a copier that never does is timed out
    await new Promise<void>((r) => this.socket.once('close', () => r()));
    if (this.bad) this.deps.warn?.(`segment stream: ${this.bad}`);
  }

  private async drained(): Promise<void> {
    if (this.gone) return;
    await new Promise<void>((r) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        r();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Bytes [start, size) of the file, read one chunk ahead, each write held until the window allows it. */
  private async sendBody(fd: number, index: number, start: number, size: number, window: number): Promise<void> {
    const step = streamChunk(window);
    const readAhead = (at: number) => {
      const p = readChunk(fd, at, Math.min(step, size - at));
      p.catch(() => undefined); // awaited in turn below; a failure then ends the stream
      return p;
    };
    let pos = start;
    let ahead: Promise<Buffer & { mem: Buffer }> | null = pos < size ? readAhead(pos) : null;
    while (ahead) {
      const chunk = await ahead;
      pos += chunk.length;
      ahead = pos < size ? readAhead(pos) : null;
      while (!this.gone && this.sent + chunk.length - this.acked > window) await this.waitEvent();
      if (this.gone) {
        await ahead?.catch(() => undefined);
        return;
      }
      this.sent += chunk.length;
      // the buffer goes back to the pool once the socket has taken its bytes
      const ok = this.socket.write(chunk, (err) => {
        if (!err) giveBuffer(chunk.mem);
      });
      this.deps.onServed?.(index, chunk.length);
      if (!ok) await this.drained();
    }
  }
}

/** `len` bytes of the file at `pos`, in a buffer of the pool of lib/io/part-file.ts (a fresh 1 MiB costs 256 page faults). */
function readChunk(fd: number, pos: number, len: number): Promise<Buffer & { mem: Buffer }> {
  const mem = takeBuffer(len);
  const b = Object.assign(mem.subarray(0, len), { mem });
  return readFull(fd, b, pos).then(() => b);
}
