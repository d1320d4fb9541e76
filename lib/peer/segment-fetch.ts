/**
 * The segment fetch of the peer API's client (lib/peer/client.ts): one segment
 * to `<dest>.part`, resumed and verified, taken from the clip's segment stream
 * (lib/peer/segment-stream.ts) when it brings it, else by a GET (the fast path of
 * lib/peer/raw-get.ts, or Node's HTTP client). Errors as lib/peer/client.ts lists them.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { errorText } from '../model/errors';
import { hashPrefix, openPart, openSink, partSize, receiveIntoPart, restartPart, settlePart, WHOLE_MAX, WholeSink, WRITE_BATCH } from '../io/part-file';
import { RawAnswer, RawGetError } from './raw-get';
import { PEER_API_PREFIX, SegmentFetchOptions } from './protocol';
import { PlanItem, StreamError, windowFor } from './segment-stream';
import { StreamClient } from './stream-client';
import { PeerError } from './peer-error';
import { Exchange, PeerTransport } from './peer-transport';

export type FetchOptions = SegmentFetchOptions;

export interface FetchResult {
  bytes: number;
  sha256: string;
  /** Bytes that were already in the part file (0 when fetched from the start). */
  resumedFrom: number;
}

export class PeerSegments extends PeerTransport {
  /** Segment streams by clip id (lib/peer/segment-stream.ts), opened by planStream(). */
  private readonly streams = new Map<string, Promise<StreamClient | null>>();
  /** The peer answered a stream request with 404/400 (an older peer API): segments go one GET at a time. */
  private noStreams = false;
  /** Streams opened, and segments received through them (for tests and the benchmark). */
  readonly streamStats = { opened: 0, segments: 0 };

  /** Drop the kept-alive connections and the open streams. */
  override close(): void {
    super.close();
    for (const id of [...this.streams.keys()]) this.endStream(id);
  }

  /**
   * The segments of a clip the caller is about to fetch, in the order it will
   * fetch them ([index, bytes already in its part, sha256]): over plain HTTP
   * they then come on one segment stream (lib/peer/segment-stream.ts), the next
   * read and sent while the one before is written. fetchSegment() takes a
   * segment from the stream when it is the next planned one with the part as
   * planned, and asks for anything else with a GET; a stream that fails is let
   * go and the rest come by GET. endStream() closes it. Under a bandwidth
   * limit (`bytesPerSecond`) the window is a quarter of a second of it.
   */
  planStream(clipId: string, plan: PlanItem[], o: { bytesPerSecond?: number } = {}): void {
    this.endStream(clipId);
    if (this.tls || this.noStreams || plan.length < 2 || /[\r\n\0]/.test(this.secret)) return;
    this.checkClipId(clipId);
    const opening = StreamClient.open({
      host: this.base.hostname.replace(/^\[|\]$/g, ''),
      port: Number(this.base.port || 80),
      hostHeader: this.base.host,
      path: `${PEER_API_PREFIX}/clips/${encodeURIComponent(clipId)}/stream`,
      secret: this.secret,
      plan,
      window: windowFor(o.bytesPerSecond),
      timeoutMs: this.timeoutMs,
    }).then(
      (c) => {
        this.streamStats.opened++;
        return c;
      },
      (err: unknown) => {
        // an older peer without streams: not asked again; anything else: this clip's segments come by GET
        if (err instanceof StreamError && err.code === 'ENOSTREAM' && (err.status === 404 || err.status === 400)) this.noStreams = true;
        return null;
      },
    );
    this.streams.set(clipId, opening);
  }

  endStream(clipId: string): void {
    const st = this.streams.get(clipId);
    if (!st) return;
    this.streams.delete(clipId);
    void st.then((c) => c?.close());
  }

  /** The clip's stream when segment `index`, with `have` bytes in its part, is the next it brings; null: ask with a GET. */
  private async streamFor(clipId: string, index: number, have: number): Promise<StreamClient | null> {
    const st = this.streams.get(clipId);
    if (!st) return null;
    const c = await st;
    if (!c || c.next === null) {
      this.endStream(clipId);
      return null;
    }
    if (c.next === index && c.nextFrom === have) return c;
    // a segment not in the plan comes by GET and the stream waits; one planned before it was not asked for, or
    // its part is not as planned: the stream cannot go on in order
    if (c.next <= index) this.endStream(clipId);
    return null;
  }

  /**
   * Fetch one segment to `dest` (via `dest.part`, resumed when it exists),
   * verified by size and sha256, renamed atomically. See the codes above.
   */
  async fetchSegment(clipId: string, index: number, dest: string, o: FetchOptions = {}): Promise<FetchResult> {
    this.checkClipId(clipId);
    if (!Number.isInteger(index) || index < 0) throw new PeerError(`segment index ${index} is not a whole number`, 'EINVAL');
    const what = `segment ${index} of clip ${clipId}`;
    const p = `${PEER_API_PREFIX}/clips/${encodeURIComponent(clipId)}/segments/${index}`;
    const part = `${dest}.part`;
    let have = o.partBytes ?? partSize(part);
    if (o.expectedBytes !== undefined && have > o.expectedBytes) have = await restartPart(part);
    if (!this.tls && this.streams.has(clipId)) {
      const c = await this.streamFor(clipId, index, have);
      const r = c ? await this.fromStream(c, clipId, index, dest, have, o, what) : null;
      if (r) return r;
    }

    let x: Exchange | null = null;
    let raw: RawAnswer | null = null;
    let total: number | null = null;
    let resumedFrom = 0;
    // a plain-HTTP segment of bounded size is read by the socket straight into its buffer (lib/peer/raw-get.ts);
    // any answer but a 200 or 206 with a length is asked again of Node's HTTP client, which handles them all
    let fast = !this.tls && o.expectedBytes !== undefined && o.expectedBytes <= WHOLE_MAX;
    // with nothing to resume, the part is opened (made empty) while the request is on its way
    const early = have === 0 ? openPart(part, 'w') : null;
    early?.catch(() => undefined); // awaited below
    try {
      for (let attempt = 0; attempt < 3 && !x && !raw; attempt++) {
        const headers: Record<string, string> = {};
        if (have > 0) {
          headers.Range = `bytes=${have}-`;
          // the peer ignores the range (200) unless it holds the very file we have a prefix of
          if (o.expectedSha256) headers['If-Range'] = `"${o.expectedSha256}"`;
        }
        if (fast) {
          const a = await this.rawRequest(p, headers, o.signal);
          const t = rawBodyTotal(a, have);
          if (t !== null && t <= WHOLE_MAX) {
            raw = a;
            total = t;
            resumedFrom = a.status === 206 ? have : 0;
            have = resumedFrom;
            break;
          }
          a.close();
          fast = false;
          attempt--;
          continue;
        }
        const r = await this.request(p, headers, o.signal);
        const status = r.res.statusCode ?? 0;
        if (status === 206 && have > 0) {
          const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(r.res.headers['content-range'] ?? ''));
          if (!m || Number(m[1]) !== have) {
            r.res.destroy(); // not the range asked for: start over
            r.done();
            have = await restartPart(part);
            continue;
          }
          total = Number(m[3]);
          resumedFrom = have;
          x = r;
        } else if (status === 200) {
          const len = r.res.headers['content-length'];
          total = len !== undefined && /^\d+$/.test(len) ? Number(len) : null;
          have = 0;
          x = r;
        } else if (status === 416 && have > 0) {
          const m = /^bytes \*\/(\d+)$/.exec(String(r.res.headers['content-range'] ?? ''));
          const size = m ? Number(m[1]) : -1;
          const peerSha = typeof r.res.headers['x-sha256'] === 'string' ? r.res.headers['x-sha256'] : null;
          r.res.resume();
          r.done();
          if (size === have) {
            // the part already holds the whole segment: verify it as it is
            const h = crypto.createHash('sha256');
            await hashPrefix(part, have, h);
            return this.finish(part, dest, have, h.digest('hex'), o.expectedSha256 ?? null, peerSha, have, what);
          }
          have = await restartPart(part);
        } else {
          throw await this.statusError(r, what);
        }
      }
      if (!x && !raw) throw new PeerError(`the peer at ${this.url} did not answer ${what} with the range asked for`, 'EPROTO');
    } catch (err) {
      if (early) await dropEarlyPart(early, part);
      throw err;
    }

    // the part never grows past the size the listing gave: a peer that announces more, or sends an
    // endless body without a length, is refused before (or as soon as) it would
    const limit = o.expectedBytes;
    if (limit !== undefined && total !== null && total !== limit) {
      raw?.close();
      x?.res.destroy();
      x?.done();
      if (early) await dropEarlyPart(early, part);
      throw new PeerError(`the peer at ${this.url} announced ${total} bytes of ${what}, not the ${limit} its listing said`, 'EPROTO');
    }
    const sha256Header = raw ? raw.headers['x-sha256'] : x?.res.headers['x-sha256'];
    const peerSha = typeof sha256Header === 'string' ? sha256Header.toLowerCase() : null;
    let written = 0;
    let sha = '';
    let fh: fs.promises.FileHandle;
    try {
      if (early && resumedFrom > 0) await (await early).close(); // not reached: a resume needs a part with bytes
      fh = early && resumedFrom === 0 ? await early : await openPart(part, resumedFrom > 0 ? 'a' : 'w');
    } catch (err) {
      raw?.close();
      x?.res.destroy();
      x?.done();
      throw err;
    }
    try {
      // a segment of known, bounded size is gathered whole and hashed in one go on the thread pool
      // (the event loop only receives and writes); a larger or unannounced one is hashed as it comes
      const sink = await openSink(part, total, resumedFrom);
      sha = await receiveIntoPart(
        sink,
        fh,
        async () => {
          try {
            if (raw) {
              if (!(sink instanceof WholeSink) || total === null) throw new PeerError(`${what} has no bounded size to receive whole`, 'EPROTO');
              const onBytes = o.onBytes;
              await raw.receive(sink, total - resumedFrom, {
                onBytes: (n) => {
                  written += n;
                  onBytes?.(n);
                },
                onData: (unwritten) => {
                  if (unwritten >= WRITE_BATCH) void sink.flush(fh);
                },
                pace: o.limiter ? paceWith(o.limiter) : undefined,
              });
            } else {
              const res = x!.res;
              for await (const c of res) {
                const chunk = c as Buffer;
                if (o.limiter) await o.limiter.take(chunk.length);
                if (o.signal?.aborted) throw new PeerError('the transfer was stopped', 'EABORT');
                if (total !== null && resumedFrom + written + chunk.length > total) {
                  res.destroy();
                  throw new PeerError(`the peer at ${this.url} sent more of ${what} than the ${total} bytes it announced`, 'EPROTO');
                }
                if (limit !== undefined && resumedFrom + written + chunk.length > limit) {
                  res.destroy();
                  throw new PeerError(`the peer at ${this.url} sent more of ${what} than the ${limit} bytes its listing said`, 'EPROTO');
                }
                written += chunk.length;
                if (sink.add(chunk) >= WRITE_BATCH) await sink.flush(fh);
                o.onBytes?.(chunk.length);
              }
            }
          } catch (err) {
            throw this.getError(err, x, o.signal, what, resumedFrom + written, total);
          }
        },
        { received: o.onReceived },
      );
    } finally {
      raw?.close();
      x?.done();
      await fh.close().catch(() => undefined);
    }
    const size = resumedFrom + written;
    if (total !== null && size !== total) {
      throw new PeerError(`the connection to ${this.url} closed after ${size} of ${total} bytes of ${what}`, 'ETRUNC');
    }
    return this.finish(part, dest, size, sha, o.expectedSha256 ?? null, peerSha, resumedFrom, what);
  }

  /**
   * Segment `index` from the clip's stream: null when the stream failed before
   * its frame came (the stream is let go; the caller asks with a GET), else as
   * fetchSegment. Bytes are acknowledged to the peer once they are written to
   * the part, so a kill -9 here costs at most the stream's window sent twice.
   */
  private async fromStream(
    c: StreamClient,
    clipId: string,
    index: number,
    dest: string,
    have: number,
    o: FetchOptions,
    what: string,
  ): Promise<FetchResult | null> {
    const part = `${dest}.part`;
    let ans;
    try {
      ans = await c.take(index, o.signal);
    } catch (err) {
      this.endStream(clipId);
      if (o.signal?.aborted) throw new PeerError('the transfer was stopped', 'EABORT');
      return null;
    }
    const h = ans.head;
    if (h.size > WHOLE_MAX || (h.start !== have && h.start !== 0)) {
      // not a segment this receives whole, or not from where its part is: by GET
      this.endStream(clipId);
      return null;
    }
    const resumedFrom = h.start;
    const fh = await openPart(part, resumedFrom > 0 ? 'a' : 'w').catch((err: unknown) => {
      this.endStream(clipId);
      throw err;
    });
    let written = 0;
    let sha = '';
    try {
      const sink = (await openSink(part, h.size, resumedFrom)) as WholeSink;
      const ackWritten = () => {
        const mark = c.received;
        void sink.written().then(() => c.ack(mark));
      };
      sha = await receiveIntoPart(
        sink,
        fh,
        async () => {
          try {
            await ans.receive(sink, {
              onBytes: (n) => {
                written += n;
                o.onBytes?.(n);
              },
              onData: (unwritten) => {
                if (unwritten >= c.flushAt) {
                  void sink.flush(fh);
                  ackWritten();
                }
              },
              pace: o.limiter ? paceWith(o.limiter) : undefined,
              signal: o.signal,
            });
          } catch (err) {
            this.endStream(clipId);
            throw this.streamError(err as StreamError, what, resumedFrom + written, h.size);
          }
        },
        {
          kept: ackWritten,
          received: () => {
            this.streamStats.segments++;
            o.onReceived?.();
          },
        },
      );
    } finally {
      await fh.close().catch(() => undefined);
    }
    return this.finish(part, dest, h.size, sha, o.expectedSha256 ?? null, h.sha256, resumedFrom, what);
  }

  /** A GET's failure while a segment's body came, in words (the part keeps what came). */
  private getError(err: unknown, x: Exchange | null, signal: AbortSignal | undefined, what: string, got: number, total: number | null): Error {
    if (err instanceof PeerError) return err;
    if (err instanceof RawGetError && err.code === 'ETRUNC') {
      const why = err.cause !== undefined ? `: ${errorText(err.cause)}` : '';
      return new PeerError(`the connection to ${this.url} closed after ${got} of ${total} bytes of ${what}${why}`, 'ETRUNC');
    }
    if (err instanceof RawGetError) return this.rawError(err, what);
    const cause = x?.cause();
    if (cause) return cause;
    if (signal?.aborted) return new PeerError('the transfer was stopped', 'EABORT');
    return new PeerError(`the connection to ${this.url} closed after ${got} of ${total ?? '?'} bytes of ${what}: ${errorText(err)}`, 'ETRUNC');
  }

  /** A stream's failure while a segment's body came, as the GET path says it (the part keeps what came). */
  private streamError(err: StreamError, what: string, got: number, total: number): PeerError {
    if (err.code === 'EABORT' || err.code === 'ETIMEOUT') return this.rawError(new RawGetError(err.message, err.code), what);
    if (err.code === 'EPROTO') return new PeerError(`the peer at ${this.url} streamed something this does not read (${what}): ${err.message}`, 'EPROTO');
    return new PeerError(
      `the connection to ${this.url} closed after ${got} of ${total} bytes of ${what}${err.cause !== undefined ? `: ${errorText(err.cause)}` : ''}`,
      'ETRUNC',
    );
  }

  private async finish(
    part: string,
    dest: string,
    size: number,
    sha: string,
    expected: string | null,
    peerSha: string | null,
    resumedFrom: number,
    what: string,
  ): Promise<FetchResult> {
    let wrong: string | null = null;
    if (expected && sha !== expected.toLowerCase()) wrong = `${what} from ${this.url} has sha256 ${sha}, not ${expected} as the catalogue says`;
    else if (peerSha && sha !== peerSha.toLowerCase()) wrong = `${what} from ${this.url} has sha256 ${sha}, not ${peerSha} as the peer announced`;
    await settlePart(part, dest, wrong, (sentence) => new PeerError(sentence, 'EHASH'));
    return { bytes: size, sha256: sha, resumedFrom };
  }
}

/** The part opened before an answer that did not come: closed and removed (it is empty). */
async function dropEarlyPart(early: Promise<fs.promises.FileHandle>, part: string): Promise<void> {
  const fh = await early.catch(() => null);
  if (!fh) return;
  await fh.close().catch(() => undefined);
  await fs.promises.unlink(part).catch(() => undefined);
}

/**
 * The body length of a raw answer the fast path takes: a 200 with a Content-Length, or a 206
 * for exactly the rest from `have` on; null for anything else (the ordinary client handles it).
 */
function rawBodyTotal(a: RawAnswer, have: number): number | null {
  const len = a.headers['content-length'];
  if (a.headers['transfer-encoding'] !== undefined || len === undefined || !/^\d+$/.test(len)) return null;
  if (a.status === 200) return Number(len);
  if (a.status !== 206 || have <= 0) return null;
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(a.headers['content-range'] ?? '');
  if (!m || Number(m[1]) !== have || Number(m[2]) !== Number(m[3]) - 1 || Number(len) !== Number(m[3]) - have) return null;
  return Number(m[3]);
}

/** Pacing for lib/peer/raw-get.ts from a limiter: no pause while the bytes fit the bucket now. */
function paceWith(limiter: { take(bytes: number): Promise<void>; tryTake?(bytes: number): boolean }): (n: number) => Promise<void> | null {
  return (n) => (limiter.tryTake?.(n) ? null : limiter.take(n));
}
