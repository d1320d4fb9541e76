/**
 * The client of another server's peer storage API (lib/peer/api.ts): lists its
 * clips and events, and fetches segments resumably and verified.
 *
 * A segment goes to `<dest>.part` first; a later call resumes from the part's
 * size with a Range request, and only a file whose size is what the peer
 * announced and whose sha256 matches (the catalogue's and the peer's) is renamed
 * to `<dest>`. Errors carry a code the caller can decide on:
 *
 *   ENET        the peer is unreachable or went silent (part kept: try again)
 *   ETRUNC      the connection closed before the whole segment came (part kept)
 *   EHASH       the bytes do not match the sha256 (part deleted: its content is wrong)
 *   EAUTH       the peer refused the shared secret (401)
 *   ENOENT      the peer has no such clip or segment (404)
 *   EREFUSED    the peer refused to serve it (403: outside its storage)
 *   EINVAL      the request was not valid (400)
 *   EUNAVAILABLE the peer answered 502/503/504
 *   ETLS        the peer's certificate is not trusted
 *   EPROTO      the peer's answer is not what the API promises
 *   EPEER       another status from the peer
 *   EABORT      the caller's AbortSignal stopped it (part kept)
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { CatalogueEvent } from '../store/catalogue';
import { Clip } from '../model/clip';
import { errorText } from '../model/errors';
import { hashPrefix, openPart, openSink, partSize, receiveIntoPart, restartPart, settlePart, WHOLE_MAX, WholeSink, WRITE_BATCH } from '../io/part-file';
import { RawAnswer, RawGetError, RawPool, rawGet } from './raw-get';
import { CLIP_ID_PATTERN, MIN_SECRET_LENGTH, PEER_API_PREFIX, SegmentFetchOptions } from './protocol';
import { PlanItem, StreamClient, StreamError, windowFor } from './segment-stream';

export class PeerError extends Error {
  readonly code: string;
  readonly status?: number;
  constructor(message: string, code: string, status?: number) {
    super(message);
    this.name = 'PeerError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

export interface PeerClientOptions {
  /** http(s)://host:port of the peer's API (as it advertises in its state). */
  url: string;
  /** The shared secret of the group. */
  secret: string;
  /** CA to trust for an https peer (PEM). */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  /** Longest silence of the peer (connect, answer, or between two chunks), ms. */
  timeoutMs?: number;
}

export interface ClipQuery {
  server?: string;
  channel: number;
  from?: number;
  to?: number;
}

export interface EventQuery {
  server?: string;
  channel?: number;
  from?: number;
  to?: number;
}

export type FetchOptions = SegmentFetchOptions;

export interface FetchResult {
  bytes: number;
  sha256: string;
  /** Bytes that were already in the part file (0 when fetched from the start). */
  resumedFrom: number;
}

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED', 'EHOSTDOWN', 'ENETDOWN']);
const MAX_JSON = 64 * 1024 * 1024;

interface Exchange {
  res: http.IncomingMessage;
  /** Why the request was torn down by us, if it was. */
  cause: () => PeerError | null;
  done: () => void;
}

/** A token bucket: `take(n)` resolves when n more bytes fit into bytesPerSecond (0 = unlimited). */
export class RateLimiter {
  private tokens: number;
  private last: number;
  private bps: number;
  private burst: number;
  /** Bytes taken so far. */
  taken = 0;
  private readonly clock: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(bytesPerSecond: number, o: { burstBytes?: number; clock?: () => number; sleep?: (ms: number) => Promise<void> } = {}) {
    this.clock = o.clock ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.bps = 0;
    this.burst = 0;
    this.setRate(bytesPerSecond, o.burstBytes);
    this.tokens = this.burst;
    this.last = this.clock();
  }

  get bytesPerSecond(): number {
    return this.bps;
  }

  /** Change the rate; the bucket holds at most burstBytes (default: one second's worth). */
  setRate(bytesPerSecond: number, burstBytes?: number): void {
    if (!(Number.isFinite(bytesPerSecond) && bytesPerSecond >= 0)) throw new Error(`a rate limit must be 0 (unlimited) or more bytes per second, not ${bytesPerSecond}`);
    this.bps = bytesPerSecond;
    this.burst = burstBytes ?? bytesPerSecond;
    if (this.tokens !== undefined) this.tokens = Math.min(this.tokens, this.burst);
  }

  private refill(): void {
    const now = this.clock();
    if (now > this.last && this.bps > 0) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.bps) / 1000);
    this.last = Math.max(this.last, now);
  }

  /** Take bytes only when they fit now (no wait): true when taken. */
  tryTake(bytes: number): boolean {
    if (!(bytes > 0)) return true;
    if (this.bps > 0) {
      this.refill();
      if (this.tokens < bytes) return false;
      this.tokens -= bytes;
    }
    this.taken += bytes;
    return true;
  }

  /**
   * Take bytes from the bucket; the bucket may go into debt, and the caller
   * waits until the debt is paid back at the rate (so concurrent takers queue).
   */
  take(bytes: number): Promise<void> {
    if (!(bytes > 0)) return Promise.resolve();
    this.taken += bytes;
    if (this.bps <= 0) return Promise.resolve();
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return Promise.resolve();
    return this.sleep(Math.ceil((-this.tokens * 1000) / this.bps));
  }
}

function netError(err: unknown, where: string): PeerError {
  if (err instanceof PeerError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME_MISMATCH|ALTNAME/i.test(code) || /certificate/i.test(errorText(err))) {
    return new PeerError(`the peer at ${where} has a certificate this server does not trust: ${errorText(err)}`, 'ETLS');
  }
  if (NET_CODES.has(code) || /socket hang up|aborted/i.test(errorText(err))) {
    return new PeerError(`cannot reach the peer at ${where}: ${errorText(err)}`, 'ENET');
  }
  return new PeerError(`the peer at ${where} failed: ${errorText(err)}`, 'ENET');
}

async function readAll(res: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new PeerError(`the peer's answer is larger than ${limit} bytes`, 'EPROTO');
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}





export class PeerClient {
  readonly url: string;
  private readonly base: URL;
  private readonly secret: string;
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  /** Kept-alive connections of the segment fast path (lib/peer/raw-get.ts). */
  readonly rawPool = new RawPool();
  private readonly tls: boolean;
  /** Segment streams by clip id (lib/peer/segment-stream.ts), opened by planStream(). */
  private readonly streams = new Map<string, Promise<StreamClient | null>>();
  /** The peer answered a stream request with 404/400 (an older peer API): segments go one GET at a time. */
  private noStreams = false;
  /** Streams opened, and segments received through them (for tests and the benchmark). */
  readonly streamStats = { opened: 0, segments: 0 };

  constructor(o: PeerClientOptions) {
    let u: URL;
    try {
      u = new URL(String(o.url ?? ''));
    } catch {
      throw new Error(`peer URL "${String(o.url).slice(0, 200)}" is not a URL: use http://host:port or https://host:port`);
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) {
      throw new Error(`peer URL "${String(o.url).slice(0, 200)}" must be http://host:port or https://host:port, without a path or a login`);
    }
    if (typeof o.secret !== 'string' || o.secret.length < MIN_SECRET_LENGTH) {
      throw new Error(`the peer API secret must be at least ${MIN_SECRET_LENGTH} characters (it is the shared secret every server of the group uses)`);
    }
    this.base = u;
    this.url = `${u.protocol}//${u.host}`;
    this.secret = o.secret;
    this.timeoutMs = o.timeoutMs ?? 10000;
    this.tls = u.protocol === 'https:';
    this.agent = this.tls
      ? new https.Agent({ keepAlive: true, maxSockets: 8, ca: o.ca, rejectUnauthorized: o.rejectUnauthorized ?? true })
      : new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  /** Drop the kept-alive connections and the open streams. */
  close(): void {
    this.agent.destroy();
    this.rawPool.close();
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

  private request(p: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Exchange> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new PeerError('the transfer was stopped', 'EABORT'));
      let cause: PeerError | null = null;
      let answered = false;
      const req = (this.tls ? https : http).request({
        protocol: this.base.protocol,
        hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
        port: this.base.port || (this.tls ? 443 : 80),
        path: p,
        method: 'GET',
        agent: this.agent,
        headers: { Authorization: `Bearer ${this.secret}`, ...headers },
      });
      // after the answer came, the socket may already be back in the agent's pool: tear down without an
      // error there (an error on a pooled socket has no listener); the reader then reports `cause`
      const stop = (err: PeerError) => {
        cause = err;
        if (answered) req.destroy();
        else req.destroy(err);
      };
      const onAbort = () => stop(new PeerError('the transfer was stopped', 'EABORT'));
      const done = () => signal?.removeEventListener('abort', onAbort);
      signal?.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(this.timeoutMs, () => stop(this.silentError()));
      req.on('response', (res) => {
        answered = true;
        res.on('error', () => undefined); // read errors surface through the reader
        resolve({ res, cause: () => cause, done });
      });
      req.on('error', (err) => {
        if (answered) return;
        done();
        reject(cause ?? netError(err, this.url));
      });
      req.end();
    });
  }

  /** The error for an answer that is not the one hoped for (its body read for the peer's sentence). */
  private async statusError(x: Exchange, what: string): Promise<PeerError> {
    const status = x.res.statusCode ?? 0;
    let said = '';
    try {
      const body = await readAll(x.res, 64 * 1024);
      said = String((JSON.parse(body.toString('utf8')) as { error?: unknown }).error ?? '');
    } catch {
      // no sentence
    } finally {
      x.done();
    }
    const tail = said ? `: ${said}` : '';
    if (status === 401) return new PeerError(`the peer refused the shared secret (${this.url}, ${what})`, 'EAUTH', status);
    if (status === 404) return new PeerError(`the peer at ${this.url} has no ${what}${tail}`, 'ENOENT', status);
    if (status === 403) return new PeerError(`the peer at ${this.url} refused ${what}${tail}`, 'EREFUSED', status);
    if (status === 400) return new PeerError(`the peer at ${this.url} found the request for ${what} not valid${tail}`, 'EINVAL', status);
    if (status === 502 || status === 503 || status === 504) return new PeerError(`the peer at ${this.url} is unavailable (${status})${tail}`, 'EUNAVAILABLE', status);
    return new PeerError(`the peer at ${this.url} answered ${status} for ${what}${tail}`, 'EPEER', status);
  }

  private async getJson<T>(p: string, what: string): Promise<T> {
    const x = await this.request(p, { Accept: 'application/json' });
    if (x.res.statusCode !== 200) throw await this.statusError(x, what);
    let body: Buffer;
    try {
      body = await readAll(x.res, MAX_JSON);
    } catch (err) {
      throw x.cause() ?? netError(err, this.url);
    } finally {
      x.done();
    }
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new PeerError(`the peer at ${this.url} answered ${what} with something that is not JSON`, 'EPROTO');
    }
  }

  private checkClipId(id: string): void {
    if (typeof id !== 'string' || !CLIP_ID_PATTERN.test(id)) throw new PeerError(`"${String(id).slice(0, 70)}" is not a clip id`, 'EINVAL');
  }

  async info(): Promise<{ server: string; api: number }> {
    const r = await this.getJson<{ server?: unknown; api?: unknown }>(`${PEER_API_PREFIX}/info`, 'info');
    if (typeof r?.server !== 'string' || typeof r.api !== 'number') throw new PeerError(`the peer at ${this.url} is not a twinrec peer API`, 'EPROTO');
    return { server: r.server, api: r.api };
  }

  async clips(q: ClipQuery): Promise<Clip[]> {
    const r = await this.getJson<{ clips?: unknown }>(`${PEER_API_PREFIX}/clips?${query(q)}`, `clip list of channel ${q.channel}`);
    if (!Array.isArray(r?.clips) || r.clips.some((c) => !c || typeof c !== 'object' || typeof c.id !== 'string' || !Array.isArray(c.segments))) {
      throw new PeerError(`the peer at ${this.url} answered the clip list with something that is not a list of clips`, 'EPROTO');
    }
    return r.clips as Clip[];
  }

  async clip(id: string): Promise<Clip> {
    this.checkClipId(id);
    const c = await this.getJson<Clip>(`${PEER_API_PREFIX}/clips/${encodeURIComponent(id)}`, `clip ${id}`);
    if (!c || typeof c !== 'object' || c.id !== id || !Array.isArray(c.segments)) throw new PeerError(`the peer at ${this.url} answered clip ${id} with something else`, 'EPROTO');
    return c;
  }

  async sidecar(id: string): Promise<Buffer> {
    this.checkClipId(id);
    const what = `sidecar of clip ${id}`;
    const x = await this.request(`${PEER_API_PREFIX}/clips/${encodeURIComponent(id)}/sidecar`);
    if (x.res.statusCode !== 200) throw await this.statusError(x, what);
    try {
      return await readAll(x.res, MAX_JSON);
    } catch (err) {
      throw x.cause() ?? netError(err, this.url);
    } finally {
      x.done();
    }
  }

  async events(q: EventQuery): Promise<CatalogueEvent[]> {
    const r = await this.getJson<{ events?: unknown }>(`${PEER_API_PREFIX}/events?${query(q)}`, 'event list');
    if (!Array.isArray(r?.events)) throw new PeerError(`the peer at ${this.url} answered the event list with something that is not a list`, 'EPROTO');
    return r.events as CatalogueEvent[];
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
  private async fromStream(c: StreamClient, clipId: string, index: number, dest: string, have: number, o: FetchOptions, what: string): Promise<FetchResult | null> {
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
    return new PeerError(`the connection to ${this.url} closed after ${got} of ${total} bytes of ${what}${err.cause !== undefined ? `: ${errorText(err.cause)}` : ''}`, 'ETRUNC');
  }

  /** A GET through lib/peer/raw-get.ts, its header read and the body held; errors as PeerError. */
  private async rawRequest(p: string, headers: Record<string, string>, signal?: AbortSignal): Promise<RawAnswer> {
    try {
      return await rawGet({
        host: this.base.hostname.replace(/^\[|\]$/g, ''),
        port: Number(this.base.port || 80),
        hostHeader: this.base.host,
        path: p,
        headers: { Authorization: `Bearer ${this.secret}`, ...headers },
        timeoutMs: this.timeoutMs,
        signal,
        pool: this.rawPool,
      });
    } catch (err) {
      throw err instanceof RawGetError ? this.rawError(err, 'the answer') : netError(err, this.url);
    }
  }

  private silentError(): PeerError {
    return new PeerError(`the peer at ${this.url} was silent for ${Math.round(this.timeoutMs / 100) / 10} s`, 'ENET');
  }

  private rawError(err: RawGetError, where: string): PeerError {
    switch (err.code) {
      case 'EABORT':
        return new PeerError('the transfer was stopped', 'EABORT');
      case 'ETIMEOUT':
        return this.silentError();
      case 'EPROTO':
        return new PeerError(`the peer at ${this.url} answered with something this does not read (${where}): ${err.message}`, 'EPROTO');
      default:
        return err.cause !== undefined ? netError(err.cause, this.url) : new PeerError(`cannot reach the peer at ${this.url}: ${err.message}`, 'ENET');
    }
  }

  private async finish(part: string, dest: string, size: number, sha: string, expected: string | null, peerSha: string | null, resumedFrom: number, what: string): Promise<FetchResult> {
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

function query(q: object): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null) u.set(k, String(v));
  return u.toString();
}
