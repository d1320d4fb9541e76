/**
 * Small pieces both ONVIF clients (lib/onvif-camera.ts, lib/onvif-events.ts)
 * need: the defensive plumbing around the onvif library and the texts of
 * their statuses. No Node-RED import.
 */
import * as http from 'node:http';

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
