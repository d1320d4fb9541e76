/**
 * Small pieces both ONVIF clients (lib/onvif/camera.ts, lib/onvif/events.ts)
 * need: the defensive plumbing around the onvif library and the texts of
 * their statuses. No Node-RED import.
 */
import * as http from 'node:http';
import { errorText } from '../model/errors';

export function xmlUnescape(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d: string) => safeCodePoint(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => safeCodePoint(parseInt(h, 16)))
    .replace(/&amp;/g, '&');
}

function safeCodePoint(n: number): string {
  try {
    return String.fromCodePoint(n);
  } catch {
    return '';
  }
}

export class Superseded extends Error {
  constructor() {
    super('superseded');
  }
}

/** The onvif library's callback: an error, or the data and the answer's XML. */
export type LibCallback<T = unknown> = (err: unknown, data?: T, xml?: string) => void;

/** What a library call needs of a client's connection (its session). */
export interface LibSession {
  /** The connection's generation: a call of an older one settles as Superseded. */
  gen: number;
  /** Settles the calls still waiting for the library (as Superseded) and clears their watchdogs. */
  pending: Set<() => void>;
  /** The HTTP status of the last answer (the library's rawResponse event), cleared as a call starts. */
  lastStatus?: number;
  /** The last answer's text, when the client keeps it (rawResponse), cleared as a call starts. */
  lastRaw?: string;
}

/** A library call that failed: which call, the library's error, the HTTP status and answer seen (for classification). */
export class LibError extends Error {
  constructor(
    readonly what: string,
    readonly original: unknown,
    readonly status: number | undefined,
    readonly raw: string | undefined,
  ) {
    super(`${what}: ${errorText(original)}`);
  }
}

/**
 * One call into the onvif library, settled exactly once: by its callback, by a
 * watchdog (the library has paths that never call back), or as Superseded when
 * the session is dropped (s.pending) or is no longer the current one. Nothing
 * the library does afterwards, or throws, escapes into it or out of it.
 * An error is wrapped in a LibError unless `passThrough` says it is already a
 * failure of the client's own.
 */
export function callLibrary<T>(
  s: LibSession,
  o: { what: string; current: () => boolean; watchdogMs: number; timeout: () => Error; passThrough?: (err: unknown) => boolean },
  invoke: (cb: LibCallback<T>) => void,
): Promise<{ data: T | undefined; raw?: string }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const watchdog = setTimeout(() => finish(o.timeout()), o.watchdogMs);
    s.lastStatus = undefined;
    s.lastRaw = undefined;
    const finish = (err: unknown, data?: T, xml?: string): void => {
      try {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        s.pending.delete(abandon);
        const raw = s.lastRaw ?? (typeof xml === 'string' ? xml : undefined);
        if (!o.current() || err instanceof Superseded) reject(new Superseded());
        else if (err) reject(o.passThrough?.(err) ? err : new LibError(o.what, err, s.lastStatus, raw));
        else resolve({ data, raw });
      } catch {
        /* never escape into the library */
      }
    };
    const abandon = (): void => finish(new Superseded());
    s.pending.add(abandon);
    try {
      invoke((err, data, xml) => finish(err, data, xml));
    } catch (err) {
      finish(err ?? new Error(`${o.what} failed`));
    }
  });
}

/**
 * Listen to a library client's events for a session: its errors and warnings go
 * to `debug` while the session is current (the calls report what matters), and
 * each answer's HTTP status (and text, with keepRaw) is noted for classification.
 * No listener lets anything escape into the library.
 */
export function watchLibrary(
  cam: { on(event: string, listener: (...args: unknown[]) => void): unknown },
  s: LibSession,
  o: { current: () => boolean; debug: (msg: string) => void; warnings: boolean; keepRaw: boolean },
): void {
  const guard =
    (f: (...args: unknown[]) => void) =>
    (...args: unknown[]): void => {
      try {
        f(...args);
      } catch {
        /* never escape */
      }
    };
  cam.on(
    'error',
    guard((err) => {
      if (o.current()) o.debug(`ONVIF client error: ${errorText(err)}`);
    }),
  );
  if (o.warnings) {
    cam.on(
      'warning',
      guard((msg) => {
        if (o.current()) o.debug(`ONVIF client warning: ${errorText(msg)}`);
      }),
    );
  }
  cam.on(
    'rawResponse',
    guard((xml, status) => {
      if (typeof status === 'number') s.lastStatus = status;
      if (o.keepRaw && typeof xml === 'string') s.lastRaw = xml;
    }),
  );
}

/** The options of the onvif library's Cam that the clients use. */
export interface LibClientOptions {
  hostname: string;
  port: number;
  path: string;
  username?: string;
  password?: string;
  timeout: number;
  autoconnect: boolean;
  useWSSecurity: boolean;
  preserveAddress?: boolean;
  agent: http.Agent;
}

/** Where a library client goes and who it logs in as. */
export interface LibTarget {
  host: string;
  port: number;
  path: string;
  username?: string;
  password?: string;
  timeoutMs: number;
}

/**
 * A new onvif library client on an agent of its own (closed with the session),
 * WS-Security on, no automatic connect. Throws (with the agent closed) when the
 * library refuses the options.
 */
export function newLibClient<C>(
  Cam: new (o: LibClientOptions) => C,
  t: LibTarget,
  o: { stoppedText: string; preserveAddress?: boolean },
): { cam: C; agent: ClosableAgent } {
  const agent = new ClosableAgent({ keepAlive: false }, o.stoppedText);
  try {
    const cam = new Cam({
      hostname: t.host,
      port: t.port,
      path: t.path,
      username: t.username,
      password: t.password,
      timeout: t.timeoutMs,
      autoconnect: false,
      useWSSecurity: true,
      ...(o.preserveAddress ? { preserveAddress: true } : {}),
      agent,
    });
    return { cam, agent };
  } catch (err) {
    agent.close();
    throw err;
  }
}

/** Socket errors that mean the camera cannot be reached (not a refusal by the camera). */
export const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

export function positive(v: number | undefined, dflt: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : dflt;
}

export function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${s >= 10 || Number.isInteger(s) ? Math.round(s) : s.toFixed(1)} s`;
}

export function shorten(s: string, max = 160): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > max ? one.slice(0, max - 1) + '…' : one;
}

/** An HTTP agent that can be closed: destroys open sockets and refuses new ones. */
export class ClosableAgent extends http.Agent {
  private closed = false;

  constructor(
    opts: http.AgentOptions,
    private readonly stoppedText: string,
  ) {
    super(opts);
  }

  close(): void {
    this.closed = true;
    this.destroy();
  }

  override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
    if (this.closed) {
      const cb = args[1];
      const err = new Error(this.stoppedText);
      if (cb) process.nextTick(() => cb(err, undefined as never));
      return undefined;
    }
    return super.createConnection(...args);
  }
}
