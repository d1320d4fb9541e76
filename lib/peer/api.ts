/**
 * The peer storage API of one server: what other servers of the group (material
 * copy, the transfer manager) read of this server's clips over HTTP(S).
 *
 *   GET      /twinrec/v1/info                                   {server, api: 1}
 *   GET      /twinrec/v1/clips?server=&channel=&from=&to=        {clips: Clip[]}
 *   GET      /twinrec/v1/clips/<clipId>                         Clip
 *   GET      /twinrec/v1/clips/<clipId>/sidecar                 the clip.json file
 *   GET|HEAD /twinrec/v1/clips/<clipId>/segments/<index>        the segment bytes (Range)
 *   GET      /twinrec/v1/events?server=&channel=&from=&to=       {events: CatalogueEvent[]}
 *   GET      /twinrec/v1/clips/<clipId>/stream  (Upgrade: twinrec-segments/1)
 *            segments of a clip one after the other on one connection, the bytes
 *            in flight bounded by the copier's acknowledgements (lib/peer/segment-stream.ts)
 *
 * Every request carries `Authorization: Bearer <shared secret>` (401 without
 * it). Time ranges are UTC ms, half-open [from, to). Every error is a JSON
 * {error: "<a sentence>"} with a 4xx/5xx status; nothing a client sends or does
 * (including going away mid-transfer) throws out of a handler.
 *
 * Files are found through the catalogue only: a URL names a clip id and a
 * segment index, never a path, and the resolved file (symlinks followed) must
 * be inside the storage root.
 *
 * The checks of a request are in lib/peer/api-checks.ts, the serving of a
 * file (a range of a segment, a sidecar) in lib/peer/api-files.ts.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Catalogue } from '../store/catalogue';
import { errorText } from '../model/errors';
import { CLIP_ID_PATTERN, MIN_SECRET_LENGTH, PEER_API_PREFIX } from './protocol';
import { STREAM_PROTOCOL } from './segment-stream';
import { OpenedSegment, serveSegmentStream } from './stream-server';
import { checkParams, clipOverlaps, decodeSegment, hashSecret, HttpError, rangeQuery } from './api-checks';
import { openFile, resolveFile, sendSegment, sendSidecar } from './api-files';

export const PEER_API_VERSION = 1;
/** Connections the API holds at once, and from one address (a copier keeps a handful). */
const MAX_CONNECTIONS = 256;
export const MAX_PER_ADDRESS = 32;
/** A connection that has not sent its first request (headers whole) this long after it opened is closed. */
export const FIRST_REQUEST_MS = 5000;

export interface PeerApiTls {
  key: string | Buffer;
  cert: string | Buffer;
  ca?: string | Buffer | (string | Buffer)[];
  passphrase?: string;
}

export interface PeerApiOptions {
  /** Address to listen on ('127.0.0.1', '0.0.0.0', '::', a host name). */
  host: string;
  /** 0 = any free port. */
  port: number;
  /** The shared secret of the group (at least 16 characters). */
  secret: string;
  /** Serve HTTPS with this key and certificate. */
  tls?: PeerApiTls;
  storageRoot: string;
  catalogue: Catalogue;
  /** This server's id: the default `server` of a query. */
  serverId: string;
  log?: { warn(m: string): void };
  /** Body bytes of a segment handed to a connection (a GET or a stream): for counters and the benchmark. */
  onServed?: (clipId: string, index: number, bytes: number) => void;
}

export class PeerApiServer {
  private server: http.Server | https.Server | null = null;
  private readonly secretHash: Buffer;
  private readonly sockets = new Set<net.Socket>();
  private readonly perAddress = new Map<string, number>();
  private _port = 0;
  private closing: Promise<void> | null = null;
  private starting: Promise<void> = Promise.resolve();

  constructor(private readonly options: PeerApiOptions) {
    if (typeof options.secret !== 'string' || options.secret.length < MIN_SECRET_LENGTH) {
      throw new Error(`the peer API secret must be at least ${MIN_SECRET_LENGTH} characters (it is the shared secret every server of the group uses)`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)
      throw new Error(`the peer API port must be 0 to 65535, not ${options.port}`);
    if (!options.host || typeof options.host !== 'string') throw new Error('the peer API needs an address to listen on (e.g. 127.0.0.1 or 0.0.0.0)');
    if (options.tls && (!options.tls.key || !options.tls.cert)) throw new Error('the peer API over TLS needs both a certificate and its private key');
    this.secretHash = hashSecret(options.secret);
  }

  get port(): number {
    return this._port;
  }

  /** Where this server answers (the listening address; other servers may need another name for it). */
  get url(): string {
    const host = net.isIPv6(this.options.host) ? `[${this.options.host}]` : this.options.host;
    return `${this.options.tls ? 'https' : 'http'}://${host}:${this._port}`;
  }

  start(): Promise<{ port: number; url: string }> {
    if (this.server) return Promise.reject(new Error('the peer API is already started'));
    const p = this.listen();
    this.starting = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  private listen(): Promise<{ port: number; url: string }> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res);
    const tls = !!this.options.tls;
    const server = this.options.tls
      ? https.createServer(
          {
            key: this.options.tls.key,
            cert: this.options.tls.cert,
            ca: this.options.tls.ca,
            passphrase: this.options.tls.passphrase,
            connectionsCheckingInterval: 1000,
            handshakeTimeout: FIRST_REQUEST_MS,
          },
          handler,
        )
      : http.createServer({ connectionsCheckingInterval: 1000 }, handler);
    server.keepAliveTimeout = 5000;
    // a request's headers (and a whole request: ours have no body) come within 10 s, checked every second,
    // so slowly dripped headers cannot hold a connection
    server.headersTimeout = 10000;
    server.requestTimeout = 15000;
    // a client that stops reading (or a connection that died silently) lets its file go after 2 min
    server.timeout = 120000;
    server.maxConnections = MAX_CONNECTIONS;
    server.on('connection', (s: net.Socket) => {
      // at most MAX_PER_ADDRESS connections from one address: one host cannot take every connection
      const from = s.remoteAddress ?? '?';
      const n = (this.perAddress.get(from) ?? 0) + 1;
      if (n > MAX_PER_ADDRESS) {
        s.destroy();
        return;
      }
      this.perAddress.set(from, n);
      this.sockets.add(s);
      if (!tls) this.armFirstRequest(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        const left = (this.perAddress.get(from) ?? 1) - 1;
        if (left > 0) this.perAddress.set(from, left);
        else this.perAddress.delete(from);
      });
    });
    // a connection must have sent its first request (headers whole) within FIRST_REQUEST_MS: a silent
    // socket or headers dripped a byte at a time cannot hold a connection slot (over TLS, from the handshake on)
    if (tls) server.on('secureConnection', (s: net.Socket) => this.armFirstRequest(s));
    server.on('request', (req: http.IncomingMessage) => this.disarmFirstRequest(req.socket));
    server.on('upgrade', (req: http.IncomingMessage) => this.disarmFirstRequest(req.socket));
    server.on('clientError', (_err: Error, socket: net.Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    server.on('tlsClientError', (_err: Error, s: net.Socket) => s.destroy());
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.server = null;
        const why =
          err.code === 'EADDRINUSE'
            ? `port ${this.options.port} on ${this.options.host} is already in use`
            : err.code === 'EADDRNOTAVAIL'
              ? `${this.options.host} is not an address of this machine`
              : err.code === 'EACCES'
                ? `no permission to listen on port ${this.options.port}`
                : errorText(err);
        reject(Object.assign(new Error(`the peer API cannot listen on ${this.options.host}:${this.options.port}: ${why}`), { code: err.code }));
      };
      server.once('error', onError);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.options.log?.warn(`peer API: ${errorText(err)}`));
        this._port = (server.address() as net.AddressInfo).port;
        resolve({ port: this._port, url: this.url });
      });
    });
  }

  private readonly firstRequest = new WeakMap<net.Socket, NodeJS.Timeout>();

  private armFirstRequest(s: net.Socket): void {
    const t = setTimeout(() => s.destroy(), FIRST_REQUEST_MS);
    this.firstRequest.set(s, t);
    s.once('close', () => clearTimeout(t));
  }

  private disarmFirstRequest(s: net.Socket): void {
    const t = this.firstRequest.get(s);
    if (t) clearTimeout(t);
    this.firstRequest.delete(s);
  }

  /** Stop listening and end every connection, idle keep-alive ones and transfers alike. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    // a start still under way (a host name being looked up) finishes first, so nothing listens after close
    this.closing = this.starting.then(
      () =>
        new Promise<void>((resolve) => {
          const server = this.server;
          if (!server) return resolve();
          server.close(() => resolve());
          for (const s of this.sockets) s.destroy();
          this.sockets.clear();
        }),
    );
    return this.closing.finally(() => {
      this.server = null;
      this.closing = null;
    });
  }

  /**
   * A segment stream (lib/peer/segment-stream.ts): checked like a GET (secret, clip
   * id, the clip in the catalogue), then the connection is the stream's. Any
   * other upgrade, or a refusal, gets an ordinary JSON error answer and the
   * connection is closed.
   */
  private onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    socket.on('error', () => undefined);
    const refuse = (err: HttpError) => {
      const body = JSON.stringify({ error: err.message });
      const extra = Object.entries(err.headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.end(
        `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n${extra}\r\n${body}`,
      );
    };
    try {
      if (!this.authorised(req)) {
        throw new HttpError(401, 'the shared secret is missing or wrong: send Authorization: Bearer <the group secret>', {
          'WWW-Authenticate': 'Bearer realm="twinrec"',
        });
      }
      const m = /^\/twinrec\/v1\/clips\/([^/?]*)\/stream$/.exec(String(req.url ?? ''));
      if (req.method !== 'GET' || !m) throw new HttpError(404, 'no such stream: the peer API streams segments at GET /twinrec/v1/clips/<clipId>/stream');
      if (
        String(req.headers.upgrade ?? '')
          .trim()
          .toLowerCase() !== STREAM_PROTOCOL
      ) {
        throw new HttpError(400, `the peer API speaks ${STREAM_PROTOCOL} on an upgraded connection, not "${String(req.headers.upgrade).slice(0, 40)}"`);
      }
      const clipId = decodeSegment(m[1]);
      if (!CLIP_ID_PATTERN.test(clipId)) {
        throw new HttpError(400, `"${clipId.slice(0, 70)}" is not a clip id: 1 to 64 letters, digits or '-', starting with a letter or digit`);
      }
      if (!this.options.catalogue.clip(clipId)) throw new HttpError(404, `there is no clip ${clipId} on ${this.options.serverId}`);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${STREAM_PROTOCOL}\r\n\r\n`);
      const onServed = this.options.onServed;
      void serveSegmentStream(socket, head, {
        open: (index) => this.openForStream(clipId, index),
        onServed: onServed ? (index, n) => onServed(clipId, index, n) : undefined,
        warn: (msg) => this.options.log?.warn(`peer API: ${msg}`),
      });
    } catch (err) {
      if (err instanceof HttpError) refuse(err);
      else {
        this.options.log?.warn(`peer API: stream ${String(req.url).slice(0, 200)} failed: ${errorText(err)}`);
        refuse(new HttpError(500, `the server could not answer: ${errorText(err)}`));
      }
    }
  }

  /** A segment for a stream, found and checked as for a GET (throws an HttpError with its status). */
  private openForStream(clipId: string, index: number): OpenedSegment {
    const found = this.options.catalogue.clipAndSegment(clipId, index);
    if (!found) throw new HttpError(404, `there is no clip ${clipId} on ${this.options.serverId}`);
    if (!found.segment) throw new HttpError(404, `clip ${clipId} has no segment ${index}`);
    const what = `segment ${index}`;
    const file = resolveFile(this.options.storageRoot, found.clip, found.segment.file, what);
    const { fd, size } = openFile(file, found.clip, what);
    return { fd, size, sha256: found.segment.sha256 ?? null, complete: !!found.segment.complete };
  }

  private authorised(req: http.IncomingMessage): boolean {
    const h = req.headers.authorization;
    if (typeof h !== 'string') return false;
    const m = /^Bearer +(.+)$/i.exec(h.trim());
    if (!m) return false;
    return crypto.timingSafeEqual(hashSecret(m[1]), this.secretHash);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    req.resume(); // a GET has no body; whatever comes is drained
    let p: Promise<void>;
    try {
      p = this.route(req, res);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.catch((err) => this.fail(req, res, err));
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    try {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        this.json(req, res, err.status, { error: err.message }, err.headers);
        return;
      }
      this.options.log?.warn(`peer API: ${req.method} ${String(req.url).slice(0, 200)} failed: ${errorText(err)}`);
      this.json(req, res, 500, { error: `the server could not answer: ${errorText(err)}` });
    } catch {
      res.destroy();
    }
  }

  private json(req: http.IncomingMessage, res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = Buffer.from(JSON.stringify(body));
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(text.length),
      'Cache-Control': 'no-store',
      ...headers,
    });
    if (req.method === 'HEAD') res.end();
    else res.end(text);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!this.authorised(req)) {
      throw new HttpError(401, 'the shared secret is missing or wrong: send Authorization: Bearer <the group secret>', {
        'WWW-Authenticate': 'Bearer realm="twinrec"',
      });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new HttpError(405, `method ${String(req.method).slice(0, 20)} is not allowed: the peer API is read-only (GET, HEAD)`, { Allow: 'GET, HEAD' });
    }
    // the raw path, not a normalised URL: "/clips/../x" must not become "/x"
    const raw = String(req.url ?? '');
    const qi = raw.indexOf('?');
    const pathname = qi < 0 ? raw : raw.slice(0, qi);
    const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
    if (!pathname.startsWith(`${PEER_API_PREFIX}/`)) throw new HttpError(404, `no such resource: the peer API is under ${PEER_API_PREFIX}/`);
    const parts = pathname
      .slice(PEER_API_PREFIX.length + 1)
      .split('/')
      .map(decodeSegment);
    const notFound = () => new HttpError(404, `no such resource "${pathname.slice(0, 120)}"`);

    if (parts.length === 1 && parts[0] === 'info') {
      checkParams(query, []);
      return this.json(req, res, 200, { server: this.options.serverId, api: PEER_API_VERSION });
    }
    if (parts.length === 1 && parts[0] === 'clips') {
      const q = rangeQuery(query, this.options.serverId, true);
      const clips = this.options.catalogue
        .clips(q.server, q.channel!, q.from, q.to)
        .filter((c) => clipOverlaps(c, q.from, q.to))
        .sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0));
      return this.json(req, res, 200, { clips });
    }
    if (parts.length === 1 && parts[0] === 'events') {
      const q = rangeQuery(query, this.options.serverId, false);
      const events = this.options.catalogue.events(q.server, q.channel, q.from, q.to).filter((e) => e.ts < q.to);
      return this.json(req, res, 200, { events });
    }
    if (parts[0] === 'clips' && parts.length >= 2 && parts.length <= 4) {
      const clipId = parts[1];
      if (!CLIP_ID_PATTERN.test(clipId)) {
        throw new HttpError(400, `"${clipId.slice(0, 70)}" is not a clip id: 1 to 64 letters, digits or '-', starting with a letter or digit`);
      }
      checkParams(query, []);
      if (parts.length === 4 && parts[2] === 'segments') {
        if (!/^\d{1,9}$/.test(parts[3])) throw new HttpError(400, `segment index "${parts[3].slice(0, 40)}" is not a whole number`);
        const index = Number(parts[3]);
        // the clip row and this segment's only (a copier asks for every segment in turn)
        const found = this.options.catalogue.clipAndSegment(clipId, index);
        if (!found) throw new HttpError(404, `there is no clip ${clipId} on ${this.options.serverId}`);
        if (!found.segment) throw new HttpError(404, `clip ${clipId} has no segment ${index}`);
        return sendSegment(this.options.storageRoot, req, res, found.clip, found.segment, this.options.onServed);
      }
      const clip = this.options.catalogue.clip(clipId);
      if (parts.length === 2) {
        if (!clip) throw new HttpError(404, `there is no clip ${clipId} on ${this.options.serverId}`);
        return this.json(req, res, 200, clip);
      }
      if (parts.length === 3 && parts[2] === 'sidecar') {
        if (!clip) throw new HttpError(404, `there is no clip ${clipId} on ${this.options.serverId}`);
        return sendSidecar(this.options.storageRoot, req, res, clip);
      }
    }
    throw notFound();
  }
}
