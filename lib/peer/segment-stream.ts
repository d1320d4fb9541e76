/**
 * The segment stream of the peer API: the segments of one clip a copier wants,
 * sent one after the other on one connection, with the bytes in flight bounded
 * by what the copier says it has written.
 *
 * Why: asked one GET at a time, every 4 MiB segment waited on a round trip and
 * on the peer opening and reading the file before its first byte came. A trace
 * of a 2 GiB copy on the 2-core machine of the README (session 13) spent 1.5 s
 * receiving bodies and 1.8 s in those waits. Asking for the next segment early
 * hid them but let a kill -9 find two segments in the socket buffers (one was
 * the goal). Here the peer reads and sends ahead, but never more than `window`
 * bytes past the last acknowledgement, and the copier acknowledges bytes only
 * once they are in the segment's part file (which a resume starts from): a
 * kill -9 of the copier costs at most `window` bytes sent twice, whatever the
 * segment size.
 *
 * The exchange, on a plain-HTTP (or HTTPS) connection of the peer API:
 *
 *   GET /twinrec/v1/clips/<clipId>/stream HTTP/1.1
 *   Authorization: Bearer <secret>
 *   Connection: Upgrade
 *   Upgrade: twinrec-segments/1
 *
 *   <- HTTP/1.1 101 Switching Protocols (or an ordinary error answer: 401, 404, ...)
 *   -> one line of JSON, the plan: {"window": bytes, "segments": [[index, from, sha256 | null], ...]}
 *      (from: bytes the copier has in its part already; sha256: of the file that part is a
 *      prefix of, and the peer starts from 0 when its segment has another)
 *   -> then, at any time, lines with one decimal number: body bytes written so far (all segments)
 *   <- per segment, in plan order: one line of JSON {"i", "size", "start", "sha256", "complete"}
 *      and then the bytes [start, size) of the file; or {"i", "status", "error"} and the end
 *   <- after the last: {"end": true}, and the peer closes
 *
 * Client (StreamClient, plain TCP only: the socket reads straight into the
 * copier's segment buffer, as lib/peer/raw-get.ts does) and server (serveSegmentStream,
 * used by lib/peer/api.ts) are both here.
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import net from 'node:net';
import { giveBuffer, readFull, takeBuffer } from '../io/buffers';
import { WRITE_BATCH } from '../io/part-file';
import { holdForPacing, PACE_BATCH, RawReceiveOptions, RawTarget } from './raw-get';

export const STREAM_PROTOCOL = 'twinrec-segments/1';
/**
 * Default bytes the peer may send past the copier's last acknowledgement: under
 * one 4 MiB segment, so a kill -9 of the copier costs less than one such
 * segment sent twice.
 */
export const STREAM_WINDOW = 3.5 * (1 << 20);
export const MIN_WINDOW = 64 << 10;
export const MAX_WINDOW = 64 << 20;
/** Segments one plan may name. */
export const MAX_PLAN = 100000;
/** Longest plan line (about 90 bytes a segment). */
const MAX_PLAN_LINE = 12 << 20;
/** Longest frame header line. */
const HEAD_MAX = 16 * 1024;
/** Bytes read from the file per write to the socket on the peer. */
const SEND_CHUNK = 1 << 20;

/** Bytes the peer reads and writes at a time: a quarter of the window at most. */
export function streamChunk(window: number): number {
  return Math.max(1, Math.min(SEND_CHUNK, Math.floor(window / 4)));
}

/** Bytes a copier gathers before it writes them to the part (and may acknowledge them): a quarter of the window at most. */
export function flushEvery(window: number): number {
  return Math.max(1, Math.min(WRITE_BATCH, Math.floor(window / 4)));
}

/**
 * How far past its last acknowledgement a copier writes before it sends the
 * next. Each acknowledgement is a write to a loopback socket, which on the
 * 2-core machine of the README cost 0.15 ms of the copier's main thread (the
 * kernel delivers it to the peer on the sender's time): one per MiB written was
 * 0.38 s of CPU in a 2 GiB copy. Sent less often, but never so seldom that the
 * peer waits for ever: the peer stops when more than window - chunk is
 * unacknowledged, of which the copier has written all but less than
 * flushEvery, so an acknowledgement is due once window - chunk - flushEvery
 * has been written.
 */
export function ackEvery(window: number): number {
  return Math.max(0, window - streamChunk(window) - flushEvery(window));
}

/**
 * The window for a copy under a bandwidth limit: about a quarter of a second of
 * it (at least MIN_WINDOW), so what the peer sent ahead is taken within that
 * and a peer that went away is noticed soon; STREAM_WINDOW without a limit.
 */
export function windowFor(bytesPerSecond?: number): number {
  if (!bytesPerSecond || !Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return STREAM_WINDOW;
  return Math.max(MIN_WINDOW, Math.min(STREAM_WINDOW, Math.floor(bytesPerSecond / 4)));
}

export type PlanItem = [index: number, from: number, sha256: string | null];

export interface FrameHead {
  i: number;
  size: number;
  start: number;
  sha256: string | null;
  complete: boolean;
}

/** Why a stream ended for a copier; `status` is the peer's, when it refused a segment. */
export class StreamError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status?: number,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StreamError';
  }
}

/** The plan line a copier sends, checked by the peer (throws a sentence). */
export function parsePlan(line: string): { window: number; segments: PlanItem[] } {
  let p: unknown;
  try {
    p = JSON.parse(line);
  } catch {
    throw new Error('the plan is not JSON');
  }
  const o = p as { window?: unknown; segments?: unknown };
  if (!o || typeof o !== 'object' || !Array.isArray(o.segments)) throw new Error('the plan has no list of segments');
  if (o.segments.length > MAX_PLAN) throw new Error(`the plan names ${o.segments.length} segments; at most ${MAX_PLAN}`);
  const w = o.window === undefined ? STREAM_WINDOW : o.window;
  if (typeof w !== 'number' || !Number.isInteger(w) || w < MIN_WINDOW || w > MAX_WINDOW) throw new Error(`window ${String(w).slice(0, 20)} is not a whole number of bytes from ${MIN_WINDOW} to ${MAX_WINDOW}`);
  const segments: PlanItem[] = [];
  for (const s of o.segments as unknown[]) {
    if (!Array.isArray(s) || s.length !== 3) throw new Error('a plan entry is not [index, from, sha256]');
    const [i, from, sha] = s as unknown[];
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i > 1e9) throw new Error(`segment index ${String(i).slice(0, 20)} is not a whole number`);
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 0 || from > Number.MAX_SAFE_INTEGER) throw new Error(`offset ${String(from).slice(0, 20)} of segment ${i} is not a whole number of bytes`);
    if (sha !== null && (typeof sha !== 'string' || !/^[0-9a-f]{64}$/i.test(sha))) throw new Error(`the sha256 given for segment ${i} is not 64 hex digits`);
    segments.push([i, from, sha === null ? null : sha.toLowerCase()]);
  }
  return { window: w, segments };
}

function parseHead(line: string): FrameHead | { i: number; status: number; error: string } | { end: true } {
  const o = JSON.parse(line) as Record<string, unknown>;
  if (o && o.end === true) return { end: true };
  if (!o || typeof o.i !== 'number' || !Number.isInteger(o.i)) throw new Error('a frame without a segment index');
  if (typeof o.error === 'string') return { i: o.i, status: typeof o.status === 'number' ? o.status : 500, error: o.error };
  const size = o.size;
  const start = o.start;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || typeof start !== 'number' || !Number.isInteger(start) || start < 0 || start > size) {
    throw new Error(`frame of segment ${o.i}: size and start are not whole numbers with start <= size`);
  }
  const sha = typeof o.sha256 === 'string' && /^[0-9a-f]{64}$/i.test(o.sha256) ? o.sha256.toLowerCase() : null;
  return { i: o.i, size, start, sha256: sha, complete: o.complete === true };
}

// ---------------------------------------------------------------------------
// client

export interface StreamOpen {
  host: string;
  port: number;
  hostHeader: string;
  path: string;
  secret: string;
  plan: PlanItem[];
  window?: number;
  timeoutMs: number;
}

/** One segment of the stream: its frame head, and its body to receive. */
export interface StreamAnswer {
  head: FrameHead;
  /** Receive the body (head.size - head.start bytes) into target; rejects with a StreamError. */
  receive(target: RawTarget, o?: RawReceiveOptions & { signal?: AbortSignal }): Promise<void>;
}

type Phase = 'upgrade' | 'idle' | 'head' | 'held' | 'body' | 'over';

/**
 * A copier's end of a segment stream. `take(index)` waits for the frame of the
 * next planned segment (in plan order); its `receive` reads the body straight
 * into the target. Between them the socket is paused (the peer stops at its
 * window). `ack(n)` tells the peer that n body bytes (counted over the whole
 * stream, see `received`) are in part files. Any failure ends the stream for
 * good (`failure`): the copier goes on with ordinary GETs.
 */
export class StreamClient {
  private readonly socket: net.Socket;
  /**
   * upgrade: reading the 101; idle: between segments (paused); head: reading a frame head for take();
   * held: a head handed over, paused until receive(); body: receiving; over: failed or closed.
   */
  private phase: Phase = 'upgrade';
  /** Bytes read and not yet taken: a head being read, or what came after one (a body's start, more heads). */
  private readonly headBuf = Buffer.allocUnsafe(HEAD_MAX);
  private headLen = 0;
  /** The part of headBuf last lent for a read, and where it began (Node asks for a read's buffer after the read before it, so what is held may have moved meanwhile). */
  private headLent: Buffer | null = null;
  private headLentAt = 0;
  private planIdx = 0;
  private head: FrameHead | null = null;
  private waiter: { resolve: (a: StreamAnswer) => void; reject: (e: StreamError) => void } | null = null;
  private body: {
    target: RawTarget;
    want: number;
    got: number;
    unpaced: number;
    lent: Buffer | null;
    o: RawReceiveOptions;
    settle: (err: StreamError | null) => void;
  } | null = null;
  private opened: { resolve: () => void; reject: (e: StreamError) => void } | null = null;
  /** Body bytes received over the whole stream. */
  received = 0;
  private acked = 0;
  private readonly ackStep: number;
  /** Bytes received before a pacing wait (a bandwidth limit): no more than the window. */
  private readonly paceBatch: number;
  /** Write to the part, and acknowledge, once this much is unwritten (flushEvery of the window). */
  readonly flushAt: number;
  failure: StreamError | null = null;

  private constructor(private readonly o: StreamOpen) {
    const window = o.window ?? STREAM_WINDOW;
    this.ackStep = ackEvery(window);
    this.flushAt = flushEvery(window);
    this.paceBatch = Math.min(PACE_BATCH, window);
    this.socket = net.connect({
      host: o.host,
      port: o.port,
      onread: {
        buffer: () => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer),
      },
    });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(o.timeoutMs);
    this.socket.on('timeout', () => {
      // only a wait on the peer is timed: a stream paused between segments waits on the copier
      if (this.phase === 'upgrade' || this.phase === 'head' || this.phase === 'body') this.fail(new StreamError(`the peer was silent for ${Math.round(o.timeoutMs / 100) / 10} s`, 'ETIMEOUT'));
    });
    let socketError: unknown = null;
    this.socket.on('error', (err) => {
      socketError = err;
    });
    this.socket.on('close', () => {
      if (this.phase === 'over') return;
      const why = socketError ? `: ${(socketError as Error).message}` : '';
      if (this.body) this.fail(new StreamError(`the connection closed after ${this.body.got} of ${this.body.want} bytes of segment ${this.head?.i}${why}`, 'ETRUNC', undefined, socketError ?? undefined));
      else if (this.phase === 'upgrade') this.fail(new StreamError(`cannot open a segment stream${why || ': the peer closed the connection'}`, 'ENET', undefined, socketError ?? undefined));
      else this.fail(new StreamError(`the stream's connection closed${why}`, 'ETRUNC', undefined, socketError ?? undefined));
    });
  }

  /** Connect, ask for the upgrade and send the plan; rejects (ENOSTREAM with the status) when the peer answers otherwise. */
  static open(o: StreamOpen): Promise<StreamClient> {
    const c = new StreamClient(o);
    return new Promise<StreamClient>((resolve, reject) => {
      c.opened = { resolve: () => resolve(c), reject };
      c.socket.write(
        `GET ${o.path} HTTP/1.1\r\nHost: ${o.hostHeader}\r\nAuthorization: Bearer ${o.secret}\r\nConnection: Upgrade\r\nUpgrade: ${STREAM_PROTOCOL}\r\n\r\n`,
        'latin1',
      );
    });
  }

  /** The index of the segment whose frame comes next, null when the stream is over or failed. */
  get next(): number | null {
    if (this.phase === 'over' || this.planIdx >= this.o.plan.length) return null;
    return this.o.plan[this.planIdx][0];
  }

  /** The planned offset of the next segment (bytes of its part at plan time). */
  get nextFrom(): number {
    return this.o.plan[this.planIdx]?.[1] ?? 0;
  }

  /** Wait for the frame of `index`, which must be the next planned one. */
  take(index: number, signal?: AbortSignal): Promise<StreamAnswer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.phase !== 'idle') return Promise.reject(new StreamError('the stream is busy with another segment', 'EBUSY'));
    if (this.next !== index) return Promise.reject(new StreamError(`segment ${index} is not the next in the stream's plan`, 'EPLAN'));
    return new Promise<StreamAnswer>((resolve, reject) => {
      const onAbort = () => this.fail(new StreamError('the transfer was stopped', 'EABORT'));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiter = {
        resolve: (a) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(a);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.phase = 'head';
      // the silence is timed from now: a timeout while the stream sat paused (waiting on the copier) was let pass
      this.socket.setTimeout(this.o.timeoutMs);
      // a head read already (after the body before it) is parsed from what is held
      if (this.headLen > 0 && !this.parseHead()) return;
      this.socket.resume();
    });
  }

  /**
   * `n` body bytes of the stream are in part files (monotonic; more than received is ignored): told to
   * the peer once they are ackEvery(window) past the last acknowledgement. Call it after every write.
   */
  ack(n: number): void {
    const v = Math.min(n, this.received);
    if (v <= this.acked || v - this.acked < this.ackStep || this.phase === 'over') return;
    this.acked = v;
    this.socket.write(`${v}\n`, 'latin1');
  }

  close(): void {
    this.fail(new StreamError('the stream was closed', 'ECLOSED'));
  }

  private fail(err: StreamError): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    this.failure ??= err;
    this.socket.destroy();
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
    const b = this.body;
    this.body = null;
    b?.settle(err);
    const op = this.opened;
    this.opened = null;
    op?.reject(err);
  }

  private nextBuffer(): Buffer {
    if (this.phase === 'body' && this.body && this.body.got < this.body.want && this.headLen === 0) {
      // the read never runs past this segment's body: what follows is read as the next head
      this.body.lent = this.body.target.reserve(this.body.want - this.body.got);
      return this.body.lent;
    }
    if (this.body) this.body.lent = null;
    this.headLentAt = this.headLen;
    this.headLent = this.headBuf.subarray(this.headLen);
    return this.headLent;
  }

  private onRead(n: number, buf: Buffer): boolean {
    if (this.phase === 'over') return false;
    if (this.body && buf === this.body.lent) return this.takeBody(buf.subarray(0, n), true);
    if (buf === this.headLent) {
      // it landed where headBuf ended when it was lent: moved behind what is held now
      if (this.headLentAt !== this.headLen) this.headBuf.copyWithin(this.headLen, this.headLentAt, this.headLentAt + n);
      this.headLen += n;
    } else {
      // not a buffer lent for this read (Node gave its own): copied behind what is held
      if (n > HEAD_MAX - this.headLen) {
        this.fail(new StreamError('the stream sent more than it may before being read', 'EPROTO'));
        return false;
      }
      buf.copy(this.headBuf, this.headLen, 0, n);
      this.headLen += n;
    }
    this.headLent = null;
    switch (this.phase) {
      case 'upgrade':
        return this.parseUpgrade();
      case 'head':
        return this.parseHead();
      case 'body':
        return this.feedHeld();
      default:
        // idle or held: nobody reads now; it is held for the next step, and the socket pauses
        return false;
    }
  }

  /** Drop the first n held bytes. */
  private consume(n: number): void {
    if (n < this.headLen) this.headBuf.copyWithin(0, n, this.headLen);
    this.headLen = Math.max(0, this.headLen - n);
  }

  private parseUpgrade(): boolean {
    const end = this.headBuf.subarray(0, this.headLen).indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headLen >= HEAD_MAX) this.fail(new StreamError('the answer to the stream request has too long a header', 'EPROTO'));
      return this.phase === 'upgrade';
    }
    const lines = this.headBuf.toString('latin1', 0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    const upgrade = lines.some((l) => /^upgrade:\s*twinrec-segments\/1\s*$/i.test(l));
    if (!m || m[1] !== '101' || !upgrade) {
      const status = m ? Number(m[1]) : 0;
      this.fail(new StreamError(`the peer did not open a segment stream (${m ? `status ${status}` : 'not an HTTP answer'})`, 'ENOSTREAM', status));
      return false;
    }
    this.consume(end + 4);
    const plan = JSON.stringify({ window: this.o.window ?? STREAM_WINDOW, segments: this.o.plan });
    this.socket.write(`${plan}\n`, 'utf8');
    // paused until the first take(); the peer's first frame waits in the socket
    this.phase = 'idle';
    const op = this.opened;
    this.opened = null;
    op?.resolve();
    return false;
  }

  /** Parse a frame head from what is held; false: paused (a head handed over, or failed). */
  private parseHead(): boolean {
    const nl = this.headBuf.subarray(0, this.headLen).indexOf(10);
    if (nl < 0) {
      if (this.headLen >= HEAD_MAX) {
        this.fail(new StreamError('a frame head of the stream is too long', 'EPROTO'));
        return false;
      }
      return true;
    }
    let h: ReturnType<typeof parseHead>;
    try {
      h = parseHead(this.headBuf.toString('utf8', 0, nl));
    } catch (err) {
      this.fail(new StreamError(`the stream sent a frame this does not read: ${(err as Error).message}`, 'EPROTO'));
      return false;
    }
    this.consume(nl + 1);
    const want = this.o.plan[this.planIdx]?.[0];
    if ('end' in h) {
      this.fail(new StreamError(`the stream ended before segment ${want}`, 'EPROTO'));
      return false;
    }
    if ('error' in h) {
      this.fail(new StreamError(h.error, 'EREFUSED', h.status));
      return false;
    }
    if (h.i !== want) {
      this.fail(new StreamError(`the stream sent segment ${h.i} where segment ${want} was planned`, 'EPROTO'));
      return false;
    }
    this.planIdx++;
    this.head = h;
    this.phase = 'held';
    const w = this.waiter;
    this.waiter = null;
    w?.resolve({ head: h, receive: (t, o) => this.receive(h, t, o) });
    return false;
  }

  private receive(h: FrameHead, target: RawTarget, o: RawReceiveOptions & { signal?: AbortSignal } = {}): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.head !== h || this.phase !== 'held') return Promise.reject(new StreamError('that segment was already received', 'EPROTO'));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => this.fail(new StreamError('the transfer was stopped', 'EABORT'));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      this.body = {
        target,
        want: h.size - h.start,
        got: 0,
        unpaced: 0,
        lent: null,
        o,
        settle: (err) => {
          o.signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve();
        },
      };
      this.phase = 'body';
      this.socket.setTimeout(this.o.timeoutMs);
      if (this.body.want === 0) {
        this.completeBody();
        return;
      }
      if (this.feedHeld()) this.socket.resume();
    });
  }

  /** Body bytes held (read with a head) go to the body first. False: paused (complete, failed, pacing). */
  private feedHeld(): boolean {
    const b = this.body;
    if (!b || this.headLen === 0) return true;
    const n = Math.min(this.headLen, b.want - b.got);
    const chunk = Buffer.from(this.headBuf.subarray(0, n));
    this.consume(n);
    return this.takeBody(chunk, false);
  }

  /** False: paused (complete, failed, or a pacing wait). */
  private takeBody(chunk: Buffer, inPlace: boolean): boolean {
    const b = this.body!;
    const n = chunk.length;
    if (b.got + n > b.want) {
      this.fail(new StreamError(`the stream sent more than the ${b.want} bytes of segment ${this.head?.i}`, 'EPROTO'));
      return false;
    }
    const unwritten = inPlace ? b.target.advance(n) : b.target.add(chunk);
    b.got += n;
    b.unpaced += n;
    this.received += n;
    b.o.onBytes?.(n);
    b.o.onData?.(unwritten);
    if (this.phase !== 'body') return false; // onData may have failed or closed the stream
    if (b.got === b.want) {
      this.completeBody();
      return false;
    }
    if (b.o.pace && b.unpaced >= this.paceBatch) {
      const wait = b.o.pace(b.unpaced);
      b.unpaced = 0;
      if (wait) {
        holdForPacing(this.socket, wait, this.o.timeoutMs, () => this.phase === 'body', (err) => this.fail(new StreamError(`pacing failed: ${String(err)}`, 'EABORT')));
        return false;
      }
    }
    return true;
  }

  private completeBody(): void {
    const b = this.body!;
    this.body = null;
    this.head = null;
    this.phase = 'idle';
    const wait = b.o.pace && b.unpaced > 0 ? b.o.pace(b.unpaced) : null;
    if (wait) wait.then(() => b.settle(null), (err: unknown) => b.settle(new StreamError(`pacing failed: ${String(err)}`, 'EABORT')));
    else b.settle(null);
  }
}

// ---------------------------------------------------------------------------
// server

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
