/**
 * The copier's end of a segment stream (the exchange and why: lib/peer/segment-stream.ts),
 * plain TCP only: the socket reads straight into the copier's segment buffer,
 * as lib/peer/raw-get.ts does. Used by lib/peer/segment-fetch.ts.
 *
 * No Node-RED import.
 */
import net from 'node:net';
import { holdForPacing, PACE_BATCH, RawReceiveOptions, RawTarget } from './raw-get';
import { ackEvery, flushEvery, FrameHead, HEAD_MAX, parseHead, PlanItem, STREAM_PROTOCOL, STREAM_WINDOW, StreamError } from './segment-stream';

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
    options: RawReceiveOptions;
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

  private constructor(private readonly options: StreamOpen) {
    const window = options.window ?? STREAM_WINDOW;
    this.ackStep = ackEvery(window);
    this.flushAt = flushEvery(window);
    this.paceBatch = Math.min(PACE_BATCH, window);
    this.socket = net.connect({
      host: options.host,
      port: options.port,
      onread: {
        buffer: () => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer),
      },
    });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(options.timeoutMs);
    this.socket.on('timeout', () => {
      // only a wait on the peer is timed: a stream paused between segments waits on the copier
      if (this.phase === 'upgrade' || this.phase === 'head' || this.phase === 'body')
        this.fail(new StreamError(`the peer was silent for ${Math.round(options.timeoutMs / 100) / 10} s`, 'ETIMEOUT'));
    });
    let socketError: unknown = null;
    this.socket.on('error', (err) => {
      socketError = err;
    });
    this.socket.on('close', () => {
      if (this.phase === 'over') return;
      const why = socketError ? `: ${(socketError as Error).message}` : '';
      if (this.body)
        this.fail(
          new StreamError(
            `the connection closed after ${this.body.got} of ${this.body.want} bytes of segment ${this.head?.i}${why}`,
            'ETRUNC',
            undefined,
            socketError ?? undefined,
          ),
        );
      else if (this.phase === 'upgrade')
        this.fail(new StreamError(`cannot open a segment stream${why || ': the peer closed the connection'}`, 'ENET', undefined, socketError ?? undefined));
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
    if (this.phase === 'over' || this.planIdx >= this.options.plan.length) return null;
    return this.options.plan[this.planIdx][0];
  }

  /** The planned offset of the next segment (bytes of its part at plan time). */
  get nextFrom(): number {
    return this.options.plan[this.planIdx]?.[1] ?? 0;
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
      this.socket.setTimeout(this.options.timeoutMs);
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
    const plan = JSON.stringify({ window: this.options.window ?? STREAM_WINDOW, segments: this.options.plan });
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
    const want = this.options.plan[this.planIdx]?.[0];
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
        options: o,
        settle: (err) => {
          o.signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve();
        },
      };
      this.phase = 'body';
      this.socket.setTimeout(this.options.timeoutMs);
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
    b.options.onBytes?.(n);
    b.options.onData?.(unwritten);
    if (this.phase !== 'body') return false; // onData may have failed or closed the stream
    if (b.got === b.want) {
      this.completeBody();
      return false;
    }
    if (b.options.pace && b.unpaced >= this.paceBatch) {
      const wait = b.options.pace(b.unpaced);
      b.unpaced = 0;
      if (wait) {
        holdForPacing(
          this.socket,
          wait,
          this.options.timeoutMs,
          () => this.phase === 'body',
          (err) => this.fail(new StreamError(`pacing failed: ${String(err)}`, 'EABORT')),
        );
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
    const wait = b.options.pace && b.unpaced > 0 ? b.options.pace(b.unpaced) : null;
    if (wait)
      wait.then(
        () => b.settle(null),
        (err: unknown) => b.settle(new StreamError(`pacing failed: ${String(err)}`, 'EABORT')),
      );
    else b.settle(null);
  }
}
