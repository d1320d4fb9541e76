/**
 * A plain-HTTP GET whose body is read by the kernel straight into the caller's
 * buffer (net.Socket `onread`), for the segment fetches of lib/peer-client.ts.
 *
 * Node's HTTP client hands each body chunk over as a fresh Buffer through a
 * readable stream, which on a fast link costs more CPU than the bytes' own
 * copying, hashing and writing: on the 2-core machine of the README it
 * receives about 0.8-0.9 GiB/s where reading into one preallocated buffer
 * gets about 2 GiB/s. The segment copiers hold a segment whole in memory
 * anyway (lib/part-file.ts WholeSink), so the socket reads into it directly.
 *
 * Deliberately small: one request per connection (`Connection: close`), a
 * response with a Content-Length, no chunked encoding, no TLS. The header is
 * read first and the socket paused, so the caller decides on the status and
 * headers before any body byte is taken; anything it does not handle it hands
 * to the ordinary HTTP client (lib/peer-client.ts does so for every status but
 * 200 and 206).
 *
 * Errors carry a code: ENET (connect or socket error before the answer, with
 * `cause`), ETIMEOUT (silent for timeoutMs), EABORT (the signal), EPROTO (not
 * an HTTP answer this reads), ETRUNC (the connection ended inside the body).
 *
 * No Node-RED import.
 */
import net from 'node:net';

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

/** Where the body goes (lib/part-file.ts WholeSink): `reserve` a region to read into, `advance` past what came, or `add` a copy. */
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
   * Resolves once all came; the connection is then closed.
   */
  receive(target: RawTarget, length: number, o?: RawReceiveOptions): Promise<void>;
  /** Drop the connection (an answer not received). */
  close(): void;
}

const HEADER_MAX = 16 * 1024;
/** A read lands here when no target is set (between the header and receive()). */
const SPARE = 64 * 1024;
export const PACE_BATCH = 1 << 20;
const CRLF2 = Buffer.from('\r\n\r\n');

function headerSafe(v: string): boolean {
  return !/[\r\n\0]/.test(v);
}

export function rawGet(r: RawGetRequest): Promise<RawAnswer> {
  return new Promise((resolveAnswer, rejectAnswer) => {
    if (r.signal?.aborted) return rejectAnswer(new RawGetError('the transfer was stopped', 'EABORT'));
    for (const [k, v] of Object.entries(r.headers)) {
      if (!/^[A-Za-z0-9-]+$/.test(k) || !headerSafe(v)) return rejectAnswer(new RawGetError(`header ${k} cannot be sent`, 'EPROTO'));
    }
    if (!headerSafe(r.path) || !headerSafe(r.hostHeader) || /\s/.test(r.path)) return rejectAnswer(new RawGetError('the request line cannot be sent', 'EPROTO'));

    const head = Buffer.allocUnsafe(HEADER_MAX);
    let headLen = 0;
    let spare: Buffer | null = null;
    /** 'head': reading the header; 'held': header parsed, paused; 'body': receiving; 'over': settled. */
    let phase: 'head' | 'held' | 'body' | 'over' = 'head';
    let answer: RawAnswer | null = null;
    let socketError: unknown = null;

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

    const nextBuffer = (): Buffer => {
      if (phase === 'head') return head.subarray(headLen);
      if (phase === 'body' && target && got < want) {
        lent = target.reserve(want - got);
        return lent;
      }
      lent = null;
      spare ??= Buffer.allocUnsafe(SPARE);
      return spare;
    };

    /** The connection is done with: no more reads, the abort listener gone. */
    const hangUp = () => {
      phase = 'over';
      r.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    };

    const fail = (err: RawGetError) => {
      if (phase === 'over') return;
      const was = phase;
      hangUp();
      if (was === 'head') rejectAnswer(err);
      else if (was === 'held') failure = err;
      else settleBody?.(err);
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
      if (got === want) {
        hangUp();
        // the last bytes are paced too (awaited, as every batch before them)
        const wait = ro.pace && unpaced > 0 ? ro.pace(unpaced) : null;
        const settle = settleBody;
        if (wait) wait.then(() => settle?.(null), (err: unknown) => settle?.(new RawGetError(`pacing failed: ${String(err)}`, 'EABORT')));
        else settle?.(null);
        return false;
      }
      if (ro.pace && unpaced >= PACE_BATCH) {
        const wait = ro.pace(unpaced);
        unpaced = 0;
        if (wait) {
          socket.setTimeout(0);
          wait.then(
            () => {
              if (phase !== 'body') return;
              socket.setTimeout(r.timeoutMs);
              socket.resume();
            },
            (err: unknown) => fail(new RawGetError(`pacing failed: ${String(err)}`, 'EABORT')),
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
      const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]);
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
      // what came after the header is the start of the body: kept until receive() has a target
      let early: Buffer | null = Buffer.from(head.subarray(end + 4, headLen));
      phase = 'held';
      answer = {
        status: Number(m[1]),
        headers,
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
              if (!takeBody(e, false)) return;
            }
            early = null;
            if (want === 0) {
              hangUp();
              return resolve();
            }
            socket.resume();
          });
        },
        close() {
          if (phase !== 'over') hangUp();
        },
      };
      resolveAnswer(answer);
      return false; // paused until receive()
    };

    const socket = net.connect({
      host: r.host,
      port: r.port,
      onread: {
        buffer: nextBuffer,
        callback(n: number, buf: Uint8Array): boolean {
          if (phase === 'over') return false;
          if (phase === 'head') return onHead(n);
          if (phase === 'held') {
            // the socket is paused while held, so no read should land here; if one does, the answer is not trusted
            fail(new RawGetError('the peer sent data while the answer was held', 'EPROTO'));
            return false;
          }
          const b = buf as Buffer;
          return takeBody(b === lent ? b.subarray(0, n) : Buffer.from(b.subarray(0, n)), b === lent);
        },
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(r.timeoutMs);
    socket.on('timeout', () => fail(new RawGetError(`the peer was silent for ${Math.round(r.timeoutMs / 100) / 10} s`, 'ETIMEOUT')));
    socket.on('error', (err) => {
      socketError = err;
    });
    socket.on('close', () => {
      if (phase === 'over') return;
      if (phase === 'head') {
        fail(new RawGetError(socketError ? `cannot reach the peer: ${(socketError as Error).message}` : 'the peer closed the connection before answering', 'ENET', socketError ?? undefined));
        return;
      }
      fail(new RawGetError(`the connection closed after ${got} of ${want} bytes${socketError ? `: ${(socketError as Error).message}` : ''}`, 'ETRUNC', socketError ?? undefined));
    });
    const onAbort = () => fail(new RawGetError('the transfer was stopped', 'EABORT'));
    r.signal?.addEventListener('abort', onAbort, { once: true });

    let text = `GET ${r.path} HTTP/1.1\r\nHost: ${r.hostHeader}\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(r.headers)) text += `${k}: ${v}\r\n`;
    socket.write(`${text}\r\n`, 'latin1');
  });
}
