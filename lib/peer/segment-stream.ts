/**
 * The segment stream of the peer API: the segments of one clip a copier wants,
 * sent one after the other on one connection, with the bytes in flight bounded
 * by what the copier says it has written.
 *
 * Why: asked one GET at a time, every 4 MiB segment waited on a round trip and
 * on the peer opening and reading the file before its first byte came. A trace
 * of a 2 GiB copy on the 2-core bench machine (docs/benchmarks.md) spent 1.5 s
 * receiving bodies and 1.8 s in those waits. Asking for the next segment early
 * hid them but let a kill -9 find two segments in the socket buffers (one was
 * the goal). Here the peer reads and sends ahead, but never more than `window`
 * bytes past the last acknowledgement, and the copier acknowledges bytes only
 * once they are in the segment's part file (which a resume starts from): a
 * kill -9 of the copier costs at most `window` bytes sent twice, whatever the
 * segment size.
 *
 * The exchange, on a plain-HTTP (or HTTPS) connection of the peer API:
 *
 *   GET /twinrec/v1/clips/<clipId>/stream HTTP/1.1
 *   Authorization: Bearer <secret>
 *   Connection: Upgrade
 *   Upgrade: twinrec-segments/1
 *
 *   <- HTTP/1.1 101 Switching Protocols (or an ordinary error answer: 401, 404, ...)
 *   -> one line of JSON, the plan: {"window": bytes, "segments": [[index, from, sha256 | null], ...]}
 *      (from: bytes the copier has in its part already; sha256: of the file that part is a
 *      prefix of, and the peer starts from 0 when its segment has another)
 *   -> then, at any time, lines with one decimal number: body bytes written so far (all segments)
 *   <- per segment, in plan order: one line of JSON {"i", "size", "start", "sha256", "complete"}
 *      and then the bytes [start, size) of the file; or {"i", "status", "error"} and the end
 *   <- after the last: {"end": true}, and the peer closes
 *
 * Here the framing both ends speak; the client (StreamClient, in
 * lib/peer/stream-client.ts, plain TCP only: the socket reads straight into the
 * copier's segment buffer, as lib/peer/raw-get.ts does) and the server
 * (serveSegmentStream, in lib/peer/stream-server.ts, used by lib/peer/api.ts)
 * are beside it.
 *
 * No Node-RED import.
 */
import { WRITE_BATCH } from '../io/part-file';

export const STREAM_PROTOCOL = 'twinrec-segments/1';
/**
 * Default bytes the peer may send past the copier's last acknowledgement: under
 * one 4 MiB segment, so a kill -9 of the copier costs less than one such
 * segment sent twice.
 */
export const STREAM_WINDOW = 3.5 * (1 << 20);
export const MIN_WINDOW = 64 << 10;
export const MAX_WINDOW = 64 << 20;
/** Segments one plan may name. */
export const MAX_PLAN = 100000;
/** Longest plan line (about 90 bytes a segment). */
export const MAX_PLAN_LINE = 12 << 20;
/** Longest frame header line. */
export const HEAD_MAX = 16 * 1024;
/** Bytes read from the file per write to the socket on the peer. */
const SEND_CHUNK = 1 << 20;

/** Bytes the peer reads and writes at a time: a quarter of the window at most. */
export function streamChunk(window: number): number {
  return Math.max(1, Math.min(SEND_CHUNK, Math.floor(window / 4)));
}

/** Bytes a copier gathers before it writes them to the part (and may acknowledge them): a quarter of the window at most. */
export function flushEvery(window: number): number {
  return Math.max(1, Math.min(WRITE_BATCH, Math.floor(window / 4)));
}

/**
 * How far past its last acknowledgement a copier writes before it sends the
 * next. Each acknowledgement is a write to a loopback socket, which on the
 * 2-core bench machine (docs/benchmarks.md) cost 0.15 ms of the copier's main thread (the
 * kernel delivers it to the peer on the sender's time): one per MiB written was
 * 0.38 s of CPU in a 2 GiB copy. Sent less often, but never so seldom that the
 * peer waits for ever: the peer stops when more than window - chunk is
 * unacknowledged, of which the copier has written all but less than
 * flushEvery, so an acknowledgement is due once window - chunk - flushEvery
 * has been written.
 */
export function ackEvery(window: number): number {
  return Math.max(0, window - streamChunk(window) - flushEvery(window));
}

/**
 * The window for a copy under a bandwidth limit: about a quarter of a second of
 * it (at least MIN_WINDOW), so what the peer sent ahead is taken within that
 * and a peer that went away is noticed soon; STREAM_WINDOW without a limit.
 */
export function windowFor(bytesPerSecond?: number): number {
  if (!bytesPerSecond || !Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return STREAM_WINDOW;
  return Math.max(MIN_WINDOW, Math.min(STREAM_WINDOW, Math.floor(bytesPerSecond / 4)));
}

export type PlanItem = [index: number, from: number, sha256: string | null];

export interface FrameHead {
  i: number;
  size: number;
  start: number;
  sha256: string | null;
  complete: boolean;
}

/** Why a stream ended for a copier; `status` is the peer's, when it refused a segment. */
export class StreamError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status?: number,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StreamError';
  }
}

/** The plan line a copier sends, checked by the peer (throws a sentence). */
export function parsePlan(line: string): { window: number; segments: PlanItem[] } {
  let p: unknown;
  try {
    p = JSON.parse(line);
  } catch {
    throw new Error('the plan is not JSON');
  }
  const o = p as { window?: unknown; segments?: unknown };
  if (!o || typeof o !== 'object' || !Array.isArray(o.segments)) throw new Error('the plan has no list of segments');
  if (o.segments.length > MAX_PLAN) throw new Error(`the plan names ${o.segments.length} segments; at most ${MAX_PLAN}`);
  const w = o.window === undefined ? STREAM_WINDOW : o.window;
  if (typeof w !== 'number' || !Number.isInteger(w) || w < MIN_WINDOW || w > MAX_WINDOW)
    throw new Error(`window ${String(w).slice(0, 20)} is not a whole number of bytes from ${MIN_WINDOW} to ${MAX_WINDOW}`);
  const segments: PlanItem[] = [];
  for (const s of o.segments as unknown[]) {
    if (!Array.isArray(s) || s.length !== 3) throw new Error('a plan entry is not [index, from, sha256]');
    const [i, from, sha] = s as unknown[];
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i > 1e9) throw new Error(`segment index ${String(i).slice(0, 20)} is not a whole number`);
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 0 || from > Number.MAX_SAFE_INTEGER)
      throw new Error(`offset ${String(from).slice(0, 20)} of segment ${i} is not a whole number of bytes`);
    if (sha !== null && (typeof sha !== 'string' || !/^[0-9a-f]{64}$/i.test(sha))) throw new Error(`the sha256 given for segment ${i} is not 64 hex digits`);
    segments.push([i, from, sha === null ? null : sha.toLowerCase()]);
  }
  return { window: w, segments };
}

/** A frame head line of the peer, as the copier reads it. */
export function parseHead(line: string): FrameHead | { i: number; status: number; error: string } | { end: true } {
  const o = JSON.parse(line) as Record<string, unknown>;
  if (o && o.end === true) return { end: true };
  if (!o || typeof o.i !== 'number' || !Number.isInteger(o.i)) throw new Error('a frame without a segment index');
  if (typeof o.error === 'string') return { i: o.i, status: typeof o.status === 'number' ? o.status : 500, error: o.error };
  const size = o.size;
  const start = o.start;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || typeof start !== 'number' || !Number.isInteger(start) || start < 0 || start > size) {
    throw new Error(`frame of segment ${o.i}: size and start are not whole numbers with start <= size`);
  }
  const sha = typeof o.sha256 === 'string' && /^[0-9a-f]{64}$/i.test(o.sha256) ? o.sha256.toLowerCase() : null;
  return { i: o.i, size, start, sha256: sha, complete: o.complete === true };
}
