/**
 * The checks of a request to the peer API (lib/peer/api.ts): the shared secret,
 * the query parameters of a listing, a clip's time range, and the path's
 * percent-encoding. A request that fails one gets an HttpError: its status and
 * the sentence of its JSON {error}.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import { Clip } from '../model/clip';
import { NAME_PATTERN } from '../model/names';

/** Latest time accepted in a query (year 2255): keeps numbers exact and SQLite happy. */
const MAX_MS = 9e15;

/** An answer other than 200, with the sentence that goes into {error}. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function hashSecret(s: string): Buffer {
  return crypto.createHash('sha256').update(s, 'utf8').digest();
}

type Query = URLSearchParams;

function oneParam(q: Query, name: string): string | undefined {
  const all = q.getAll(name);
  if (all.length > 1) throw new HttpError(400, `the query parameter "${name}" is given ${all.length} times; give it once`);
  return all[0];
}

export function checkParams(q: Query, allowed: string[]): void {
  for (const k of new Set(q.keys())) {
    if (!allowed.includes(k)) throw new HttpError(400, `unknown query parameter "${k.slice(0, 40)}"; use ${allowed.join(', ')}`);
  }
}

function intParam(q: Query, name: string, min: number, max: number, dflt: number | undefined, what: string): number | undefined {
  const v = oneParam(q, name);
  if (v === undefined || v === '') {
    if (dflt === undefined && v === '') throw new HttpError(400, `${name} is empty; give ${what}`);
    return dflt;
  }
  if (!/^\d{1,16}$/.test(v)) throw new HttpError(400, `${name} "${v.slice(0, 40)}" is not ${what}`);
  const n = Number(v);
  if (n < min || n > max) throw new HttpError(400, `${name} ${n} is out of range: give ${what}`);
  return n;
}

/** server, channel (required or not), from, to of a listing query. */
export function rangeQuery(q: Query, ownServer: string, channelRequired: boolean): { server: string; channel: number | null; from: number; to: number } {
  checkParams(q, ['server', 'channel', 'from', 'to']);
  const s = oneParam(q, 'server');
  const server = s === undefined || s === '' ? ownServer : s;
  if (!new RegExp(NAME_PATTERN).test(server)) {
    throw new HttpError(400, `server "${server.slice(0, 70)}" is not a server name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const channel = intParam(q, 'channel', 1, 999, channelRequired ? undefined : -1, 'a channel number from 1 to 999');
  if (channel === undefined) throw new HttpError(400, 'channel is missing: give a channel number from 1 to 999');
  const from = intParam(q, 'from', 0, MAX_MS, 0, 'a time in UTC milliseconds')!;
  const to = intParam(q, 'to', 0, MAX_MS, Date.now(), 'a time in UTC milliseconds')!;
  if (to < from) throw new HttpError(400, `to (${to}) is before from (${from}); the range is [from, to) in UTC milliseconds`);
  return { server, channel: channel === -1 ? null : channel, from, to };
}

/**
 * Whether a clip [startedAt, stoppedAt) overlaps [from, to). A clip still
 * recording (stoppedAt null) is open-ended; a clip of no length counts when its
 * instant is inside [from, to).
 */
export function clipOverlaps(c: Pick<Clip, 'startedAt' | 'stoppedAt'>, from: number, to: number): boolean {
  const start = c.startedAt ?? 0;
  const stop = c.stoppedAt ?? Number.POSITIVE_INFINITY;
  if (start >= to) return false;
  return stop > from || (stop <= start && start >= from);
}

export function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'the path has a malformed percent-encoding');
  }
}
