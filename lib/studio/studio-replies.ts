/**
 * What studio-control sends to panels: the replies and the retained state of
 * a channel (rec-list, status), their schemas, and the recorder's lines and
 * events as panels see them. No Node-RED here.
 */
import { CommandError } from '../model/errors';
import { redactUrl } from '../model/url';
import type { ChannelEvent, ChannelStatus, PresentedLine } from '../recorder/types';
import { StudioError, StudioRequest } from './studio-requests';

// ------------------------------------------------------------------ schemas

const lineOut = { type: 'object', required: ['id', 'n', 'title', 'status'] };
const errorOut = {
  type: 'object',
  additionalProperties: false,
  required: ['code', 'message'],
  properties: { code: { type: 'string', minLength: 1 }, message: { type: 'string', minLength: 1 } },
};
const statusOut = {
  type: 'object',
  required: ['server', 'channel', 'at', 'state', 'line', 'curPoint', 'lines', 'detail'],
  properties: {
    server: { type: 'string' },
    channel: { type: 'integer' },
    at: { type: 'integer' },
    state: { enum: ['idle', 'armed', 'recording', 'interrupted', 'failed', 'closed'] },
    line: { anyOf: [lineOut, { type: 'null' }] },
    curPoint: { type: ['string', 'null'] },
    lines: { type: 'integer', minimum: 0 },
    detail: { type: ['string', 'null'] },
  },
};

/** Every reply a panel gets on `.../reply` (or `<prefix>/error`). */
export const replySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['ok', 'requestId', 'command', 'server', 'channel', 'at'],
  properties: {
    ok: { type: 'boolean' },
    requestId: { type: ['string', 'null'] },
    command: { type: ['string', 'null'] },
    server: { type: ['string', 'null'] },
    channel: { type: ['integer', 'null'] },
    at: { type: 'integer' },
    events: {
      type: 'array',
      items: { type: 'object', required: ['event', 'at'], properties: { event: { type: 'string' }, at: { type: 'integer' }, line: lineOut } },
    },
    reclist: { type: 'array', items: lineOut },
    status: statusOut,
    error: errorOut,
  },
  oneOf: [
    {
      properties: { ok: { const: true } },
      required: ['ok'],
      anyOf: [{ required: ['events'] }, { required: ['reclist'] }, { required: ['status'] }],
      not: { required: ['error'] },
    },
    { properties: { ok: { const: false } }, required: ['ok', 'error'] },
  ],
};

/** The retained rec-list of a channel on `.../reclist`. */
export const reclistStateSchema = {
  type: 'object',
  required: ['server', 'channel', 'at', 'lines'],
  properties: { server: { type: 'string' }, channel: { type: 'integer' }, at: { type: 'integer' }, lines: { type: 'array', items: lineOut } },
};

export const statusStateSchema = statusOut;

// ------------------------------------------------------------------ payloads

export interface ClipSummary {
  id: string;
  name: string;
  dir: string;
  state: string;
  tcIn: string | null;
  tcOut: string | null;
  frames: number;
  durationMs: number;
  startedAt: number | null;
  stoppedAt: number | null;
  segments: number;
  reason: string | null;
}

export interface EventSummary {
  event: string;
  at: number;
  line?: PresentedLine;
  reason?: string;
  requestId?: string;
  /** The clip without its segment list (a long clip has thousands). */
  clip?: ClipSummary;
}

/** A line as panels see it: a source URL without its password. */
export function panelLine(l: PresentedLine): PresentedLine {
  return l.source && l.source.includes('@') ? { ...l, source: redactUrl(l.source) } : l;
}

export function summariseEvent(ev: ChannelEvent): EventSummary {
  const out: EventSummary = { event: ev.event, at: ev.at };
  if (ev.line) out.line = panelLine(ev.line);
  if (ev.reason) out.reason = ev.reason;
  if (ev.requestId) out.requestId = ev.requestId;
  if (ev.clip) {
    const c = ev.clip;
    out.clip = {
      id: c.id,
      name: c.name,
      dir: c.dir,
      state: c.state,
      tcIn: c.tcIn,
      tcOut: c.tcOut,
      frames: c.frames,
      durationMs: c.durationMs,
      startedAt: c.startedAt,
      stoppedAt: c.stoppedAt,
      segments: c.segments.length,
      reason: c.reason,
    };
  }
  return out;
}

export interface StatusState extends ChannelStatus {
  server: string;
  channel: number;
  at: number;
}

export function statusState(server: string, channel: number, st: ChannelStatus, at: number): StatusState {
  return { server, channel, at, ...st, line: st.line ? panelLine(st.line) : null };
}

export interface ReclistState {
  server: string;
  channel: number;
  at: number;
  lines: PresentedLine[];
}

export interface Reply {
  ok: boolean;
  requestId: string | null;
  command: string | null;
  server: string | null;
  channel: number | null;
  at: number;
  events?: EventSummary[];
  reclist?: PresentedLine[];
  status?: StatusState;
  error?: { code: string; message: string };
}

export function errorReply(
  err: StudioError | CommandError,
  at: number,
  req: Partial<Pick<StudioRequest, 'server' | 'channel' | 'requestId' | 'command'>> = {},
): Reply {
  const se = err instanceof StudioError ? err : null;
  return {
    ok: false,
    requestId: req.requestId ?? se?.requestId ?? null,
    command: req.command ?? se?.command ?? null,
    server: req.server ?? null,
    channel: req.channel ?? null,
    at,
    error: { code: err.code, message: err.message },
  };
}
