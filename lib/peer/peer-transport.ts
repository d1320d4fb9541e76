/**
 * The HTTP(S) side of the peer API's client (lib/peer/client.ts): the peer's
 * address and secret, the kept-alive connections, one GET and what its answer
 * means (JSON, or an error with a code), and the fast path's GET through
 * lib/peer/raw-get.ts.
 *
 * No Node-RED import.
 */
import http from 'node:http';
import https from 'node:https';
import { RawAnswer, RawGetError, rawGet } from './raw-get';
import { RawPool } from './raw-pool';
import { CLIP_ID_PATTERN, MIN_SECRET_LENGTH } from './protocol';
import { netError, PeerError, readAll } from './peer-error';

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

export const MAX_JSON = 64 * 1024 * 1024;

export interface Exchange {
  res: http.IncomingMessage;
  /** Why the request was torn down by us, if it was. */
  cause: () => PeerError | null;
  done: () => void;
}

export class PeerTransport {
  readonly url: string;
  protected readonly base: URL;
  protected readonly secret: string;
  protected readonly timeoutMs: number;
  protected readonly agent: http.Agent;
  /** Kept-alive connections of the segment fast path (lib/peer/raw-get.ts). */
  readonly rawPool = new RawPool();
  protected readonly tls: boolean;

  constructor(o: PeerClientOptions) {
    let u: URL;
    try {
      u = new URL(String(o.url ?? ''));
    } catch {
      throw new Error(`peer URL "${String(o.url).slice(0, 200)}" is not a URL: use http://host:port or https://host:port`);
    }
    if (
      (u.protocol !== 'http:' && u.protocol !== 'https:') ||
      !u.hostname ||
      u.username ||
      u.password ||
      u.search ||
      u.hash ||
      (u.pathname !== '/' && u.pathname !== '')
    ) {
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

  /** Drop the kept-alive connections (PeerSegments also the open streams). */
  close(): void {
    this.agent.destroy();
    this.rawPool.close();
  }

  protected request(p: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Exchange> {
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
  protected async statusError(x: Exchange, what: string): Promise<PeerError> {
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
    if (status === 502 || status === 503 || status === 504)
      return new PeerError(`the peer at ${this.url} is unavailable (${status})${tail}`, 'EUNAVAILABLE', status);
    return new PeerError(`the peer at ${this.url} answered ${status} for ${what}${tail}`, 'EPEER', status);
  }

  protected async getJson<T>(p: string, what: string): Promise<T> {
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

  protected checkClipId(id: string): void {
    if (typeof id !== 'string' || !CLIP_ID_PATTERN.test(id)) throw new PeerError(`"${String(id).slice(0, 70)}" is not a clip id`, 'EINVAL');
  }

  /** A GET through lib/peer/raw-get.ts, its header read and the body held; errors as PeerError. */
  protected async rawRequest(p: string, headers: Record<string, string>, signal?: AbortSignal): Promise<RawAnswer> {
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

  protected silentError(): PeerError {
    return new PeerError(`the peer at ${this.url} was silent for ${Math.round(this.timeoutMs / 100) / 10} s`, 'ENET');
  }

  protected rawError(err: RawGetError, where: string): PeerError {
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
}
