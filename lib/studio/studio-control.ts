/**
 * Studio control panels over MQTT: the topic layout, the request and reply
 * schemas (ajv), and the controller that answers a panel's requests from the
 * recorder channels of this process and publishes their state.
 *
 * No Node-RED here: the studio-control node hands it what an `mqtt in` node
 * received and sends what it publishes to an `mqtt out` node, so the site keeps
 * its broker settings in Node-RED's own MQTT nodes.
 *
 * Topics (`<prefix>` defaults to `twinrec/studio`; `<server>` is a server id,
 * `<channel>` a recorder channel 1..999):
 *
 *   <prefix>/<server>/<channel>/cmd             request, {"command": ..., "line": {...}, "requestId": "..."}
 *   <prefix>/<server>/<channel>/cmd/<command>   request; the command comes from the topic (payload `{}` or more)
 *   <prefix>/<server>/<channel>/reply           answer to every request (not retained)
 *   <prefix>/<server>/<channel>/reclist         the rec-list (retained), after every change
 *   <prefix>/<server>/<channel>/status          the channel's state (retained), after every change
 *   <prefix>/<server>/<channel>/event           each recorder event, and what each command did whoever sent it (not retained)
 *   <prefix>/error                              answer to a request whose topic is not of the form above
 */
import { EventEmitter } from 'node:events';
import { CommandError, errorText, redactUrl } from '../model/errors';
import { NAME_PATTERN } from '../model/names';
import type { ChannelEvent, ChannelStatus, PresentedLine } from '../recorder/channel';
import { COMMANDS, Command, commandSchema, compileSchema, describeAjvError, MAX_COMMAND_BYTES } from '../model/commands';

export const DEFAULT_PREFIX = 'twinrec/studio';

/** What a panel may ask: the recorder's commands, and the channel's status. */
export const STUDIO_COMMANDS = [...COMMANDS, 'status'] as const;
export type StudioCommandName = (typeof STUDIO_COMMANDS)[number];

/** Error codes of refusals made here (the recorder adds its own: EINVAL, ENOENT, EBUSY, EPERM, EEXIST, ECLOSED). */
export type StudioErrorCode = 'EJSON' | 'EINVAL' | 'ECOMMAND' | 'ETOPIC' | 'ENOCHANNEL' | 'ETOOBIG' | 'ERETAINED' | 'EINTERNAL';

/** A refused request: nothing changed; `replyTopic` is where the panel is told (null: nowhere sensible). */
export class StudioError extends CommandError {
  constructor(
    message: string,
    code: StudioErrorCode | string,
    readonly replyTopic: string | null = null,
    readonly requestId: string | null = null,
    readonly command: string | null = null,
  ) {
    super(message, code);
    this.name = 'StudioError';
  }
}

// ------------------------------------------------------------------ schemas

/** A request payload: the recorder's command schema, with `status` added and `command` optional (it may come from the topic). */
export const requestSchema = {
  ...commandSchema,
  required: [] as string[],
  properties: { ...commandSchema.properties, command: { enum: [...STUDIO_COMMANDS] } },
};

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
    events: { type: 'array', items: { type: 'object', required: ['event', 'at'], properties: { event: { type: 'string' }, at: { type: 'integer' }, line: lineOut } } },
    reclist: { type: 'array', items: lineOut },
    status: statusOut,
    error: errorOut,
  },
  oneOf: [
    { properties: { ok: { const: true } }, required: ['ok'], anyOf: [{ required: ['events'] }, { required: ['reclist'] }, { required: ['status'] }], not: { required: ['error'] } },
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

const validateRequestFn = compileSchema(requestSchema);

// ------------------------------------------------------------------ topics

const SERVER_RE = new RegExp(NAME_PATTERN);
const CHANNEL_RE = /^[1-9]\d{0,2}$/;

/** Check a topic prefix: MQTT levels without wildcards, not empty, not a `$` system topic. Returns it trimmed of spaces. */
export function checkPrefix(prefix: unknown): string {
  const p = typeof prefix === 'string' ? prefix.trim() : '';
  if (!p) throw new StudioError('the topic prefix is empty: give one such as "twinrec/studio"', 'EINVAL');
  if (p.length > 200) throw new StudioError('the topic prefix is longer than 200 characters', 'EINVAL');
  if (/[+#\u0000]/.test(p)) throw new StudioError(`the topic prefix "${p}" must not contain the MQTT wildcards + or #`, 'EINVAL');
  if (p.startsWith('/') || p.endsWith('/') || p.includes('//')) throw new StudioError(`the topic prefix "${p}" must not start or end with "/" nor have empty levels`, 'EINVAL');
  if (p.startsWith('$')) throw new StudioError(`the topic prefix "${p}" must not start with "$" (those topics belong to the broker)`, 'EINVAL');
  return p;
}

export interface ChannelTopics {
  cmd: string;
  reply: string;
  reclist: string;
  status: string;
  event: string;
}

export function channelTopics(prefix: string, server: string, channel: number | string): ChannelTopics {
  const base = `${prefix}/${server}/${channel}`;
  return { cmd: `${base}/cmd`, reply: `${base}/reply`, reclist: `${base}/reclist`, status: `${base}/status`, event: `${base}/event` };
}

/** Where a request whose topic is not `<prefix>/<server>/<channel>/cmd[/<command>]` is answered. */
export function errorTopic(prefix: string): string {
  return `${prefix}/error`;
}

/** The subscription an `mqtt in` node needs for every server and channel (or one server). */
export function subscription(prefix: string, server?: string | null): string {
  return `${prefix}/${server || '+'}/+/cmd/#`;
}

export interface RequestTopic {
  server: string;
  channel: number;
  /** The command named by the topic (`.../cmd/<command>`), or null. */
  command: StudioCommandName | null;
  replyTopic: string;
}

const TOPIC_USAGE = 'use <prefix>/<server>/<channel>/cmd or <prefix>/<server>/<channel>/cmd/<command>';

/** Split a request topic. Throws StudioError (with the topic to answer on) when it does not fit. */
export function parseTopic(prefix: string, topic: unknown): RequestTopic {
  const errTo = errorTopic(prefix);
  if (typeof topic !== 'string' || !topic) throw new StudioError(`the message has no topic: ${TOPIC_USAGE}`, 'ETOPIC', errTo);
  if (!topic.startsWith(`${prefix}/`)) throw new StudioError(`topic "${clip(topic)}" does not start with the prefix "${prefix}/": ${TOPIC_USAGE}`, 'ETOPIC', errTo);
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length < 3 || parts.length > 4 || parts[2] !== 'cmd' || parts.some((x) => x === '')) {
    throw new StudioError(`topic "${clip(topic)}" is not a request topic: ${TOPIC_USAGE}`, 'ETOPIC', errTo);
  }
  const [server, ch, , cmd] = parts;
  // a well-formed topic is answered on its own reply topic, even when its server or channel is wrong
  const replyTopic = `${prefix}/${server}/${ch}/reply`;
  if (!SERVER_RE.test(server)) {
    throw new StudioError(`"${clip(server)}" in topic "${clip(topic)}" is not a server id (1 to 64 letters, digits, '.', '_' or '-')`, 'ETOPIC', replyTopic);
  }
  if (!CHANNEL_RE.test(ch)) {
    throw new StudioError(`"${clip(ch)}" in topic "${clip(topic)}" is not a channel number (1 to 999)`, 'ETOPIC', replyTopic);
  }
  let command: StudioCommandName | null = null;
  if (cmd !== undefined) {
    if (!(STUDIO_COMMANDS as readonly string[]).includes(cmd)) {
      throw new StudioError(`unknown command "${clip(cmd)}" in topic "${clip(topic)}": the commands are ${STUDIO_COMMANDS.join(', ')}`, 'ECOMMAND', replyTopic, null, cmd);
    }
    command = cmd as StudioCommandName;
  }
  return { server, channel: Number(ch), command, replyTopic };
}

// ------------------------------------------------------------------ requests

export interface StudioRequest extends RequestTopic {
  requestId: string | null;
  command: StudioCommandName;
  /** The command for the recorder (validated; null for `status`). */
  recorderCommand: Command | null;
}

const USAGE = 'expected {"command": "add"|"update"|"remove"|"start"|"stop"|"list"|"get"|"status", "line": {...}, "requestId": "..."}';

/**
 * Parse and validate a panel's request: topic, then payload (an object, or JSON
 * in a string or a Buffer). Throws StudioError with a sentence that names the
 * problem, the topic to answer on, and the request id when one could be read.
 */
export function parseRequest(prefix: string, topic: unknown, payload: unknown, opts: { retained?: boolean } = {}): StudioRequest {
  const t = parseTopic(prefix, topic);
  const fail = (message: string, code: StudioErrorCode, requestId: string | null = null, command: string | null = t.command): never => {
    throw new StudioError(message, code, t.replyTopic, requestId, command);
  };
  let value: unknown = payload;
  if (Buffer.isBuffer(value)) value = value.toString('utf8');
  if (typeof value === 'string') {
    if (Buffer.byteLength(value) > MAX_COMMAND_BYTES) fail(`the request is larger than ${MAX_COMMAND_BYTES} bytes`, 'ETOOBIG');
    if (value.trim() === '') fail(`the payload is empty; ${USAGE}`, 'EJSON');
    try {
      value = JSON.parse(value);
    } catch (err) {
      fail(`the payload is not valid JSON (${(err as Error).message}); ${USAGE}`, 'EJSON');
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(`the payload must be a JSON object, not ${kindOf(value)}; ${USAGE}`, 'EINVAL');
  }
  const obj = value as Record<string, unknown>;
  let size = 0;
  try {
    size = Buffer.byteLength(JSON.stringify(obj));
  } catch {
    fail('the payload cannot be written as JSON', 'EINVAL');
  }
  if (size > MAX_COMMAND_BYTES) fail(`the request is larger than ${MAX_COMMAND_BYTES} bytes`, 'ETOOBIG');
  // the request id is read first, so that even a refused request is answered with it
  const requestId = typeof obj.requestId === 'string' && obj.requestId.length <= 128 ? obj.requestId : null;
  if (opts.retained) {
    fail(`a retained request is refused: it would run again whenever Node-RED reconnects. Publish commands without the retain flag, and clear this one by publishing an empty retained message to "${String(topic)}"`, 'ERETAINED', requestId);
  }
  const given = obj.command;
  if (given !== undefined && !(typeof given === 'string' && (STUDIO_COMMANDS as readonly string[]).includes(given))) {
    const shown = typeof given === 'string' ? `"${clip(given)}"` : kindOf(given);
    fail(`unknown command ${shown}: the commands are ${STUDIO_COMMANDS.join(', ')}`, 'ECOMMAND', requestId, typeof given === 'string' ? given : t.command);
  }
  if (given !== undefined && t.command !== null && given !== t.command) {
    fail(`the topic asks for "${t.command}" but the payload for "${String(given)}": leave "command" out of the payload or make them the same`, 'EINVAL', requestId);
  }
  const command = (t.command ?? given) as StudioCommandName | undefined;
  if (command === undefined) fail(`the request needs a command: put "command" in the payload or use the topic .../cmd/<command>; ${USAGE}`, 'ECOMMAND', requestId, null);
  if (!validateRequestFn(obj)) {
    const errs = validateRequestFn.errors ?? [];
    fail(`Command refused: ${errs.length ? describeAjvError(pickError(errs)) : 'it is invalid'}`, 'EINVAL', requestId, command!);
  }
  const recorderCommand: Command | null = command === 'status' ? null : ({ ...(obj as object), command } as Command);
  return { ...t, command: command!, requestId, recorderCommand };
}

/** As lib/model/commands: for a field with several forms, the error naming them all (or the value error of the form that matched). */
function pickError(errors: NonNullable<typeof validateRequestFn.errors>) {
  const anyOf = errors.filter((e) => e.keyword === 'anyOf').sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
  if (!anyOf) return errors[0];
  return errors.find((e) => e.instancePath === anyOf.instancePath && !['type', 'anyOf'].includes(e.keyword)) ?? anyOf;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string "${clip(v)}"`;
  return `a ${typeof v}`;
}

function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

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
      id: c.id, name: c.name, dir: c.dir, state: c.state, tcIn: c.tcIn, tcOut: c.tcOut, frames: c.frames, durationMs: c.durationMs,
      startedAt: c.startedAt, stoppedAt: c.stoppedAt, segments: c.segments.length, reason: c.reason,
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

export function errorReply(err: StudioError | CommandError, at: number, req: Partial<Pick<StudioRequest, 'server' | 'channel' | 'requestId' | 'command'>> = {}): Reply {
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

// ------------------------------------------------------------------ controller

/** What the controller needs of a recorder channel (lib/recorder/channel's RecorderChannel). */
export interface StudioChannel extends EventEmitter {
  execute(raw: unknown): Promise<ChannelEvent[]>;
  status(): ChannelStatus;
  lines(): PresentedLine[];
}

/** What it needs of the registry of recorder channels (nodes/shared/registry's recorderChannels). */
export interface StudioRegistry<C extends StudioChannel = StudioChannel> extends EventEmitter {
  get(serverId: string, channel: number): C | undefined;
  entries(): [string, number, C][];
}

/** A message for `mqtt out`: the payload is an object (mqtt out writes it as JSON). */
export interface Outgoing {
  topic: string;
  payload: object;
  retain: boolean;
  qos: 0 | 1 | 2;
  /** MQTT v5: the request's correlation data, sent back with a reply to its response topic. */
  correlationData?: Buffer;
}

/** Longest MQTT topic and binary property (a two-byte length). */
const MQTT_MAX = 65535;

/**
 * MQTT v5 request/response: where a request asked to be answered (its Response
 * Topic, with its Correlation Data to send back), or null when it did not ask.
 * Throws StudioError EINVAL (without a reply topic: the caller supplies the
 * request's own) for a topic that cannot be published to, or that is one of
 * studio-control's own (a reply there would pose as state or as a request).
 */
export function responseTarget(prefix: string, responseTopic: unknown, correlationData: unknown): { topic: string; correlationData?: Buffer } | null {
  if (responseTopic === undefined || responseTopic === null || responseTopic === '') return null;
  const bad = (why: string): never => {
    throw new StudioError(`the MQTT v5 response topic ${typeof responseTopic === 'string' ? `"${clip(responseTopic)}"` : 'given'} ${why}; nothing was done`, 'EINVAL', null);
  };
  if (typeof responseTopic !== 'string') bad('is not text');
  const topic = responseTopic as string;
  if (Buffer.byteLength(topic) > MQTT_MAX || /[+#\0]/.test(topic)) bad('is not a topic to publish to (no wildcards + or #)');
  const own = topic === errorTopic(prefix) || (topic.startsWith(`${prefix}/`) && /^[^/]+\/[^/]+\/(cmd|reclist|status|event)(\/|$)/.test(topic.slice(prefix.length + 1)));
  if (own) bad("is one of studio-control's own topics (requests, state, events)");
  if (correlationData === undefined || correlationData === null) return { topic };
  const cd = Buffer.isBuffer(correlationData) ? correlationData : typeof correlationData === 'string' ? Buffer.from(correlationData) : null;
  if (!cd) throw new StudioError('the MQTT v5 correlation data is not bytes (a Buffer or text); nothing was done', 'EINVAL', null);
  if (cd.length > MQTT_MAX) throw new StudioError(`the MQTT v5 correlation data is ${cd.length} bytes; at most ${MQTT_MAX}; nothing was done`, 'EINVAL', null);
  return { topic, correlationData: cd };
}

export interface StudioOptions {
  prefix?: string;
  /** Serve only this server id (requests for others are left to the Node-RED that has them). */
  server?: string | null;
  /** Events within this time are published as one state (ms). */
  coalesceMs?: number;
  /**
   * How often the state is compared with what was last published (ms; 0: never).
   * Every change is announced by the channel ('event', 'commanded'); this is the
   * safety net for one that is not, and publishes nothing while nothing changed.
   */
  refreshMs?: number;
  clock?: () => number;
}

export type HandleResult =
  | { kind: 'ok'; request: StudioRequest; reply: Outgoing }
  | { kind: 'refused'; error: StudioError | CommandError; reply: Outgoing | null }
  /** for another server (the server filter): not answered here */
  | { kind: 'ignored'; why: string };

interface Watched {
  server: string;
  channel: number;
  ctl: StudioChannel;
  onEvent: (ev: ChannelEvent) => void;
  onCommanded: (evs: ChannelEvent[]) => void;
  timer: NodeJS.Timeout | null;
  /** fingerprint of the state last published */
  published: string;
}

/**
 * Answers panel requests from the recorder channels of a registry, and publishes
 * each channel's rec-list and status (retained) and its events whenever they
 * change. `publish` gets every outgoing message; it must not throw (it is guarded).
 */
export class StudioControl {
  readonly prefix: string;
  readonly server: string | null;
  private readonly coalesceMs: number;
  private readonly clock: () => number;
  private readonly watched = new Map<string, Watched>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly onSet = (server: string, channel: number, ctl: StudioChannel) => this.guard(() => this.attach(server, channel, ctl));
  private readonly onDelete = (server: string, channel: number, ctl: StudioChannel) => this.guard(() => this.detach(server, channel, ctl));

  constructor(
    opts: StudioOptions,
    private readonly registry: StudioRegistry,
    private readonly publish: (m: Outgoing) => void,
    private readonly log: { warn(m: string): void } = { warn: () => undefined },
  ) {
    this.prefix = checkPrefix(opts.prefix ?? DEFAULT_PREFIX);
    const server = typeof opts.server === 'string' ? opts.server.trim() : '';
    if (server && !SERVER_RE.test(server)) throw new StudioError(`the server filter "${server}" is not a server id (1 to 64 letters, digits, '.', '_' or '-')`, 'EINVAL');
    this.server = server || null;
    this.coalesceMs = opts.coalesceMs ?? 50;
    this.clock = opts.clock ?? Date.now;
    registry.on('set', this.onSet);
    registry.on('delete', this.onDelete);
    for (const [s, c, ctl] of registry.entries()) this.attach(s, c, ctl);
    const refreshMs = opts.refreshMs ?? 5000;
    if (refreshMs > 0) this.refreshTimer = setInterval(() => this.guard(() => this.refresh()), refreshMs);
  }

  /** The channels served, as "server/channel". */
  channels(): string[] {
    return [...this.watched.keys()];
  }

  /**
   * Answer one request. Never throws: a refusal comes back as `refused` with the reply to send.
   * An MQTT v5 request with a response topic (`meta.responseTopic`, `meta.correlationData` as
   * Node-RED's mqtt in node gives them) is answered there, its correlation data sent back;
   * a response topic that cannot be answered on refuses the request (EINVAL) on the usual reply topic.
   */
  async handle(topic: unknown, payload: unknown, meta: { retained?: boolean; responseTopic?: unknown; correlationData?: unknown } = {}): Promise<HandleResult> {
    let target: ReturnType<typeof responseTarget> = null;
    let badTarget: StudioError | null = null;
    try {
      target = responseTarget(this.prefix, meta.responseTopic, meta.correlationData);
    } catch (err) {
      badTarget = err as StudioError;
    }
    const r = await this.answer(topic, payload, meta, badTarget);
    if (target && r.kind !== 'ignored' && r.reply) r.reply = { ...r.reply, topic: target.topic, ...(target.correlationData ? { correlationData: target.correlationData } : {}) };
    return r;
  }

  private async answer(topic: unknown, payload: unknown, meta: { retained?: boolean }, badTarget: StudioError | null): Promise<HandleResult> {
    let req: StudioRequest;
    try {
      if (this.closed) throw new StudioError('studio-control is closing; try again when it has restarted', 'ECLOSED', null);
      // a request for another server is for the Node-RED that has it, whatever else is wrong with it
      if (this.server && typeof topic === 'string' && topic.startsWith(`${this.prefix}/`)) {
        const other = topic.slice(this.prefix.length + 1).split('/')[0];
        if (other && other !== this.server) return { kind: 'ignored', why: `request for server ${other}; this node serves ${this.server}` };
      }
      // a message without payload is how MQTT clears a retained message, not a request
      if (payload === '' || (Buffer.isBuffer(payload) && payload.length === 0)) return { kind: 'ignored', why: 'an empty message (it clears a retained message)' };
      req = parseRequest(this.prefix, topic, payload, meta);
    } catch (err) {
      return this.refused(err, null, payload);
    }
    if (badTarget) return this.refused(new StudioError(badTarget.message, 'EINVAL', req.replyTopic, req.requestId, req.command), req);
    const ctl = this.registry.get(req.server, req.channel);
    if (!ctl) {
      return this.refused(new StudioError(this.whyNoChannel(req.server, req.channel), 'ENOCHANNEL', req.replyTopic, req.requestId, req.command), req);
    }
    const at = this.clock();
    const base = { requestId: req.requestId, command: req.command, server: req.server, channel: req.channel };
    try {
      let reply: Reply;
      if (req.command === 'status') {
        reply = { ok: true, ...base, at, status: statusState(req.server, req.channel, ctl.status(), at) };
      } else if (req.command === 'list' || req.command === 'get') {
        const evs = await ctl.execute(req.recorderCommand);
        const lines = evs.find((e) => e.event === 'reclist')?.lines ?? ctl.lines();
        reply = { ok: true, ...base, at: this.clock(), reclist: lines.map(panelLine) };
      } else {
        const evs = await ctl.execute(req.recorderCommand);
        reply = { ok: true, ...base, at: this.clock(), events: evs.map(summariseEvent) };
        // (the channel also emits these events as 'commanded': every panel sees them on .../event, after this reply)
        this.changed(req.server, req.channel);
      }
      return { kind: 'ok', request: req, reply: { topic: req.replyTopic, payload: reply, retain: false, qos: 1 } };
    } catch (err) {
      const e =
        err instanceof CommandError
          ? new StudioError(err.message, err.code, req.replyTopic, req.requestId, req.command)
          : new StudioError(`the recorder failed: ${errorText(err)}`, 'EINTERNAL', req.replyTopic, req.requestId, req.command);
      return this.refused(e, req);
    }
  }

  /** Stop listening and publishing (node close). */
  close(): void {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    this.registry.removeListener('set', this.onSet);
    this.registry.removeListener('delete', this.onDelete);
    for (const w of this.watched.values()) {
      w.ctl.removeListener('event', w.onEvent);
      w.ctl.removeListener('commanded', w.onCommanded);
      if (w.timer) clearTimeout(w.timer);
    }
    this.watched.clear();
  }

  // ---------------------------------------------------------------- internals

  private refused(err: unknown, req: StudioRequest | null, raw?: unknown): HandleResult {
    const e = err instanceof CommandError ? err : new StudioError(errorText(err), 'EINTERNAL', errorTopic(this.prefix));
    const to = e instanceof StudioError ? e.replyTopic : null;
    const who = req ? { server: req.server, channel: req.channel, requestId: req.requestId, command: req.command } : { ...this.fromTopic(e), requestId: peekRequestId(raw) };
    const payload = errorReply(e, this.clock(), who);
    return { kind: 'refused', error: e, reply: to ? { topic: to, payload, retain: false, qos: 1 } : null };
  }

  /** server and channel of a refused request, from its reply topic when that names them. */
  private fromTopic(e: CommandError): { server?: string; channel?: number } {
    if (!(e instanceof StudioError) || !e.replyTopic || e.replyTopic === errorTopic(this.prefix)) return {};
    const [server, ch] = e.replyTopic.slice(this.prefix.length + 1).split('/');
    return CHANNEL_RE.test(ch) && SERVER_RE.test(server) ? { server, channel: Number(ch) } : {};
  }

  private whyNoChannel(server: string, channel: number): string {
    const here = this.registry.entries().filter(([s]) => !this.server || s === this.server);
    if (this.server && server !== this.server) return `this node serves only server ${this.server}, not ${server}`;
    const same = here.filter(([s]) => s === server).map(([, c]) => c).sort((a, b) => a - b);
    if (same.length) return `server ${server} has no recorder on channel ${channel} in this Node-RED (its channels here: ${same.join(', ')})`;
    const servers = [...new Set(here.map(([s]) => s))].sort();
    return `server ${server} has no recorder in this Node-RED (${servers.length ? `servers here: ${servers.join(', ')}` : 'no recorder is running here'})`;
  }

  private attach(server: string, channel: number, ctl: StudioChannel): void {
    if (this.closed || (this.server && server !== this.server)) return;
    const key = `${server}/${channel}`;
    const old = this.watched.get(key);
    if (old && old.ctl === ctl) return;
    if (old) this.detach(server, channel, old.ctl, false);
    const w: Watched = {
      server,
      channel,
      ctl,
      timer: null,
      published: '',
      onEvent: (ev: ChannelEvent) =>
        this.guard(() => {
          this.publish({ topic: channelTopics(this.prefix, server, channel).event, payload: summariseEvent(ev), retain: false, qos: 1 });
          this.changed(server, channel);
        }),
      // what a command or a mirror message did, whoever sent it (this node, the recorder node's input, backup-link)
      onCommanded: (evs: ChannelEvent[]) =>
        this.guard(() => {
          const changes = evs.filter((e) => e.event !== 'reclist').map(summariseEvent);
          if (!changes.length) return;
          // emitted before the command returns: published after the reply to its sender
          setImmediate(() =>
            this.guard(() => {
              if (this.watched.get(`${server}/${channel}`) !== w) return;
              for (const s of changes) this.publish({ topic: channelTopics(this.prefix, server, channel).event, payload: s, retain: false, qos: 1 });
            }),
          );
          this.changed(server, channel);
        }),
    };
    ctl.on('event', w.onEvent);
    ctl.on('commanded', w.onCommanded);
    this.watched.set(key, w);
    // a recorder that just appeared loads its rec-list first: publish once it has (and the refresh checks again)
    this.changed(server, channel, Math.max(this.coalesceMs, 200));
  }

  private detach(server: string, channel: number, ctl: StudioChannel, tell = true): void {
    const key = `${server}/${channel}`;
    const w = this.watched.get(key);
    if (!w || w.ctl !== ctl) return;
    ctl.removeListener('event', w.onEvent);
    ctl.removeListener('commanded', w.onCommanded);
    if (w.timer) clearTimeout(w.timer);
    this.watched.delete(key);
    if (tell && !this.closed) {
      // the recorder left (redeploy or removed): its status says closed until it is back
      const at = this.clock();
      this.publish({ topic: channelTopics(this.prefix, server, channel).status, payload: statusState(server, channel, safeStatus(ctl, 'closed'), at), retain: true, qos: 1 });
    }
  }

  /** Publish the channel's state soon (several changes close together go out once). */
  private changed(server: string, channel: number, delay = this.coalesceMs): void {
    const w = this.watched.get(`${server}/${channel}`);
    if (!w || w.timer || this.closed) return;
    w.timer = setTimeout(() => this.guard(() => {
      w.timer = null;
      this.publishState(w, true);
    }), delay);
  }

  private refresh(): void {
    for (const w of this.watched.values()) if (!w.timer) this.publishState(w, false);
  }

  /** Publish rec-list and status; `force` even when nothing a panel shows changed. */
  private publishState(w: Watched, force: boolean): void {
    if (this.closed || this.watched.get(`${w.server}/${w.channel}`) !== w) return;
    const st = w.ctl.status();
    const lines = w.ctl.lines();
    const print = fingerprint(st, lines);
    if (!force && print === w.published) return;
    w.published = print;
    const at = this.clock();
    const topics = channelTopics(this.prefix, w.server, w.channel);
    const reclist: ReclistState = { server: w.server, channel: w.channel, at, lines: lines.map(panelLine) };
    this.publish({ topic: topics.reclist, payload: reclist, retain: true, qos: 1 });
    this.publish({ topic: topics.status, payload: statusState(w.server, w.channel, st, at), retain: true, qos: 1 });
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.warn(`studio-control: ${errorText(err)}`);
    }
  }
}

/** What a panel shows of a channel, without the running position (that moves every frame). */
function fingerprint(st: ChannelStatus, lines: PresentedLine[]): string {
  const head = `${st.state}|${st.line?.id ?? ''}|${st.line?.status ?? ''}|${st.detail ?? ''}|${st.lines}`;
  return `${head}#${lines.map((l) => `${l.id}:${l.n}:${l.status}:${l.updatedAt}`).join(',')}`;
}

/** The request id of a payload refused before it was read (a bad topic), so the panel can still match the answer. */
function peekRequestId(raw: unknown): string | null {
  try {
    let v = raw;
    if (Buffer.isBuffer(v)) v = v.toString('utf8');
    if (typeof v === 'string') v = v.length <= MAX_COMMAND_BYTES ? JSON.parse(v) : null;
    const id = v && typeof v === 'object' ? (v as Record<string, unknown>).requestId : undefined;
    return typeof id === 'string' && id.length <= 128 ? id : null;
  } catch {
    return null;
  }
}

function safeStatus(ctl: StudioChannel, fallback: ChannelStatus['state']): ChannelStatus {
  try {
    return ctl.status();
  } catch {
    return { state: fallback, line: null, curPoint: null, lines: 0, detail: null };
  }
}
