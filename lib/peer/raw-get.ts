/**
 * A plain-HTTP GET whose body is read by the kernel straight into the caller's
 * buffer (net.Socket `onread`), for the segment fetches of lib/peer/client.ts.
 *
 * Node's HTTP client hands each body chunk over as a fresh Buffer through a
 * readable stream, which on a fast link costs more CPU than the bytes' own
 * copying, hashing and writing: on the 2-core bench machine (docs/benchmarks.md) it
 * receives about 0.8-0.9 GiB/s where reading into one preallocated buffer
 * gets about 2 GiB/s. The segment copiers hold a segment whole in memory
 * anyway (lib/io/part-file.ts WholeSink), so the socket reads into it directly.
 *
 * Deliberately small: a response with a Content-Length, no chunked encoding,
 * no TLS. With a RawPool a connection is kept alive and used again for the
 * next request (HTTP/1.1 persistent connections): a copy of 4 MiB segments at
 * 1 GiB/s would otherwise open 250 connections a second, each costing a
 * connect and an accept, and leave as many sockets in TIME_WAIT (about 28k
 * ephemeral ports, 60 s each). Without a pool, one request per connection
 * (`Connection: close`).
 *
 * The header is read first and the socket paused, so the caller decides on the status and
 * headers before any body byte is taken; anything it does not handle it hands
 * to the ordinary HTTP client (lib/peer/client.ts does so for every status but
 * 200 and 206).
 *
 * A kept connection the peer closed meanwhile (its keep-alive timeout ran out
 * as the request went) fails before any byte of an answer; the GET is then
 * sent once more on a new connection, which is safe for a GET. Anything else
 * is not retried here.
 *
 * The connections and their pool are in lib/peer/raw-pool.ts.
 *
 * Errors carry a code: ENET (connect or socket error before the answer, with
 * `cause`), ETIMEOUT (silent for timeoutMs), EABORT (the signal), EPROTO (not
 * an HTTP answer this reads), ETRUNC (the connection ended inside the body).
 *
 * No Node-RED import.
 */
import net from 'node:net';
import { connKey, HEADER_MAX, RawConn, RawPool } from './raw-pool';

export class RawGetError extends Error {
  readonly code: string;
  /** The socket's own error, when there was one. */
  readonly cause?: unknown;
  constructor(message: string, code: string, cause?: unknown) {
    super(message);
    this.name = 'RawGetError';
    this.code = code;
    if (cause !== undefined) this.cause = cause;
  }
}

/** Where the body goes (lib/io/part-file.ts WholeSink): `reserve` a region to read into, `advance` past what came, or `add` a copy. */
export interface RawTarget {
  reserve(n: number): Buffer;
  /** Returns the bytes not yet written out. */
  advance(n: number): number;
  add(chunk: Buffer): number;
}

export interface RawGetRequest {
  host: string;
  port: number;
  /** Sent as the Host header (host:port as in the URL). */
  hostHeader: string;
  path: string;
  headers: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Keep the connection for the next request (else one request per connection). */
  pool?: RawPool;
}

export interface RawReceiveOptions {
  /** Called after each read with the bytes not yet written out (to start a write when enough has come). */
  onData?: (unwritten: number) => void;
  onBytes?: (n: number) => void;
  /**
   * Pacing (a bandwidth limit): asked every PACE_BATCH bytes; a promise pauses
   * reading until it settles (the timeout does not run meanwhile), null goes on.
   */
  pace?: (bytes: number) => Promise<void> | null;
}

export interface RawAnswer {
  status: number;
  /** Header names in lower case; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  /**
   * Receive exactly `length` body bytes into `target`. Every byte that came is
   * in the target also when it rejects (ETRUNC, ETIMEOUT, EABORT, ENET).
   * Resolves once all came; the connection then goes back to the pool (when
   * there is one and the peer keeps it open) or is closed.
   */
  receive(target: RawTarget, length: number, o?: RawReceiveOptions): Promise<void>;
  /** Drop the connection (an answer not received). */
  close(): void;
  /** Whether this answer came on a connection kept from an earlier request. */
  readonly reused: boolean;
}

export const PACE_BATCH = 1 << 20;
const CRLF2 = Buffer.from('\r\n\r\n');

function headerSafe(v: string): boolean {
  return !/[\r\n\0]/.test(v);
}

/**
 * A body's socket held while a pacing wait runs (the caller returned false, so
 * it reads no more): the silence timeout is off meanwhile (the wait is ours, not
 * the peer's); after it, if `receiving()` still holds, the timeout is on again
 * and reading goes on. Used by the GET (here) and by the segment stream.
 */
export function holdForPacing(socket: net.Socket, wait: Promise<void>, timeoutMs: number, receiving: () => boolean, fail: (err: unknown) => void): void {
  socket.setTimeout(0);
  wait.then(() => {
    if (!receiving()) return;
    socket.setTimeout(timeoutMs);
    socket.resume();
  }, fail);
}

function requestError(r: RawGetRequest): RawGetError | null {
  if (r.signal?.aborted) return new RawGetError('the transfer was stopped', 'EABORT');
  for (const [k, v] of Object.entries(r.headers)) {
    if (!/^[A-Za-z0-9-]+$/.test(k) || !headerSafe(v)) return new RawGetError(`header ${k} cannot be sent`, 'EPROTO');
  }
  if (!headerSafe(r.path) || !headerSafe(r.hostHeader) || /\s/.test(r.path)) return new RawGetError('the request line cannot be sent', 'EPROTO');
  return null;
}

/** A kept connection that failed before any byte of the answer: the peer had closed it, the GET goes again. */
class StaleConnection extends RawGetError {}

export function rawGet(r: RawGetRequest): Promise<RawAnswer> {
  const bad = requestError(r);
  if (bad) return Promise.reject(bad);
  const kept = r.pool?.take(connKey(r)) ?? null;
  if (!kept) return exchange(r, new RawConn(r, r.pool), false);
  r.pool!.reused++;
  return exchange(r, kept, true).catch((err: unknown) => {
    if (!(err instanceof StaleConnection) || r.signal?.aborted) throw err;
    return exchange(r, new RawConn(r, r.pool), false);
  });
}

function exchange(r: RawGetRequest, conn: RawConn, reused: boolean): Promise<RawAnswer> {
  return new Promise((resolveAnswer, rejectAnswer) => {
    const head = Buffer.allocUnsafe(HEADER_MAX);
    let headLen = 0;
    /** The part of `head` the socket was last given to read into. */
    let headLent: Buffer | null = null;
    /** 'head': reading the header; 'held': header parsed, paused; 'body': receiving; 'over': settled. */
    let phase: 'head' | 'held' | 'body' | 'over' = 'head';
    /** The peer keeps the connection open after this answer (HTTP/1.1 without `Connection: close`). */
    let persistent = false;

    // body state (set by receive)
    let target: RawTarget | null = null;
    let lent: Buffer | null = null;
    let want = 0;
    let got = 0;
    let unpaced = 0;
    let ro: RawReceiveOptions = {};
    let settleBody: ((err: RawGetError | null) => void) | null = null;
    /** Why the connection failed while the answer was held (receive() rejects with it). */
    let failure: RawGetError | null = null;
    const socket = conn.socket;

    /** The exchange is over: the abort listener gone, the connection kept (true) or closed. */
    const hangUp = (keep: boolean): boolean => {
      phase = 'over';
      r.signal?.removeEventListener('abort', onAbort);
      return conn.release(keep && persistent && !r.signal?.aborted);
    };

    const fail = (err: RawGetError) => {
      if (phase === 'over') return;
      const was = phase;
      hangUp(false);
      if (was === 'head') rejectAnswer(err);
      else if (was === 'held') failure = err;
      else settleBody?.(err);
    };

    /** The whole body came: the connection is free before the last pacing wait. Returns whether to read on. */
    const complete = (): boolean => {
      const readOn = hangUp(true);
      // the last bytes are paced too (awaited, as every batch before them)
      const wait = ro.pace && unpaced > 0 ? ro.pace(unpaced) : null;
      const settle = settleBody;
      if (wait)
        wait.then(
          () => settle?.(null),
          (err: unknown) => settle?.(new RawGetError(`pacing failed: ${String(err)}`, 'EABORT')),
        );
      else settle?.(null);
      return readOn;
    };

    const takeBody = (chunk: Buffer, inPlace: boolean): boolean => {
      if (!target) return true;
      const n = chunk.length;
      if (got + n > want) {
        fail(new RawGetError(`the peer sent more than the ${want} bytes it announced`, 'EPROTO'));
        return false;
      }
      const unwritten = inPlace ? target.advance(n) : target.add(chunk);
      got += n;
      unpaced += n;
      ro.onBytes?.(n);
      ro.onData?.(unwritten);
      if (got === want) return complete();
      if (ro.pace && unpaced >= PACE_BATCH) {
        const wait = ro.pace(unpaced);
        unpaced = 0;
        if (wait) {
          holdForPacing(
            socket,
            wait,
            r.timeoutMs,
            () => phase === 'body',
            (err) => fail(new RawGetError(`pacing failed: ${String(err)}`, 'EABORT')),
          );
          return false;
        }
      }
      return true;
    };

    const onHead = (n: number): boolean => {
      headLen += n;
      const end = head.subarray(0, headLen).indexOf(CRLF2);
      if (end < 0) {
        if (headLen >= HEADER_MAX) fail(new RawGetError(`the answer's header is longer than ${HEADER_MAX} bytes`, 'EPROTO'));
        return true;
      }
      const lines = head.toString('latin1', 0, end).split('\r\n');
      const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]);
      if (!m) {
        fail(new RawGetError('the answer is not HTTP/1.x', 'EPROTO'));
        return false;
      }
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i <= 0) {
          fail(new RawGetError('the answer has a header line without a name', 'EPROTO'));
          return false;
        }
        const k = line.slice(0, i).trim().toLowerCase();
        const v = line.slice(i + 1).trim();
        headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
      }
      persistent = m[1] === '1' && !/(^|,)\s*close\s*(,|$)/i.test(headers.connection ?? '');
      // what came after the header is the start of the body: kept until receive() has a target
      let early: Buffer | null = Buffer.from(head.subarray(end + 4, headLen));
      phase = 'held';
      const answer: RawAnswer = {
        status: Number(m[2]),
        headers,
        reused,
        receive(t, length, o = {}) {
          return new Promise<void>((resolve, reject) => {
            if (failure) return reject(failure);
            if (phase !== 'held') return reject(new RawGetError('the answer was already taken or closed', 'EPROTO'));
            settleBody = (err) => (err ? reject(err) : resolve());
            target = t;
            want = length;
            ro = o;
            phase = 'body';
            if (early && early.length > 0) {
              const e = early;
              early = null;
              // false: over, or a pacing wait that resumes the socket itself
              if (!takeBody(e, false) || phase !== 'body') return;
            }
            early = null;
            if (want === 0) {
              complete();
              return;
            }
            socket.resume();
          });
        },
        close() {
          if (phase !== 'over') hangUp(false);
        },
      };
      resolveAnswer(answer);
      return false; // paused until receive()
    };

    const onAbort = () => fail(new RawGetError('the transfer was stopped', 'EABORT'));

    conn.use(
      {
        nextBuffer(): Buffer {
          if (phase === 'head') {
            headLent = head.subarray(headLen);
            return headLent;
          }
          if (phase === 'body' && target && got < want) {
            lent = target.reserve(want - got);
            return lent;
          }
          lent = null;
          return conn.spare();
        },
        onRead(n: number, b: Buffer): boolean {
          if (phase === 'over') return false;
          if (phase === 'head') {
            if (b !== headLent) {
              // the first read of this request lands in the connection's spare, the size of `head`: copied
              if (n > HEADER_MAX - headLen) {
                fail(new RawGetError(`the answer's header is longer than ${HEADER_MAX} bytes`, 'EPROTO'));
                return false;
              }
              b.copy(head, headLen, 0, n);
            }
            return onHead(n);
          }
          if (phase === 'held') {
            // the socket is paused while held, so no read should land here; if one does, the answer is not trusted
            fail(new RawGetError('the peer sent data while the answer was held', 'EPROTO'));
            return false;
          }
          return takeBody(b === lent ? b.subarray(0, n) : Buffer.from(b.subarray(0, n)), b === lent);
        },
        onTimeout() {
          fail(new RawGetError(`the peer was silent for ${Math.round(r.timeoutMs / 100) / 10} s`, 'ETIMEOUT'));
        },
        onClose(socketError: unknown) {
          if (phase === 'over') return;
          if (phase === 'head') {
            const why = socketError ? `cannot reach the peer: ${(socketError as Error).message}` : 'the peer closed the connection before answering';
            fail(reused && headLen === 0 ? new StaleConnection(why, 'ENET', socketError ?? undefined) : new RawGetError(why, 'ENET', socketError ?? undefined));
            return;
          }
          fail(
            new RawGetError(
              `the connection closed after ${got} of ${want} bytes${socketError ? `: ${(socketError as Error).message}` : ''}`,
              'ETRUNC',
              socketError ?? undefined,
            ),
          );
        },
      },
      r.timeoutMs,
    );
    r.signal?.addEventListener('abort', onAbort, { once: true });

    let text = `GET ${r.path} HTTP/1.1\r\nHost: ${r.hostHeader}\r\nConnection: ${r.pool ? 'keep-alive' : 'close'}\r\n`;
    for (const [k, v] of Object.entries(r.headers)) text += `${k}: ${v}\r\n`;
    socket.write(`${text}\r\n`, 'latin1');
  });
}
