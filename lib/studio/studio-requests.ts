/**
 * Studio control panels over MQTT: the topic layout, and a panel's request
 * read and validated (ajv) before lib/studio/studio-control.ts acts on it.
 * No Node-RED here.
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
import { CommandError } from '../model/errors';
import { NAME_PATTERN } from '../model/names';
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

const validateRequestFn = compileSchema(requestSchema);

// ------------------------------------------------------------------ topics

export const SERVER_RE = new RegExp(NAME_PATTERN);
export const CHANNEL_RE = /^[1-9]\d{0,2}$/;

/** Check a topic prefix: MQTT levels without wildcards, not empty, not a `$` system topic. Returns it trimmed of spaces. */
export function checkPrefix(prefix: unknown): string {
  const p = typeof prefix === 'string' ? prefix.trim() : '';
  if (!p) throw new StudioError('the topic prefix is empty: give one such as "twinrec/studio"', 'EINVAL');
  if (p.length > 200) throw new StudioError('the topic prefix is longer than 200 characters', 'EINVAL');
  if (/[+#\u0000]/.test(p)) throw new StudioError(`the topic prefix "${p}" must not contain the MQTT wildcards + or #`, 'EINVAL');
  if (p.startsWith('/') || p.endsWith('/') || p.includes('//'))
    throw new StudioError(`the topic prefix "${p}" must not start or end with "/" nor have empty levels`, 'EINVAL');
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
  if (!topic.startsWith(`${prefix}/`))
    throw new StudioError(`topic "${clip(topic)}" does not start with the prefix "${prefix}/": ${TOPIC_USAGE}`, 'ETOPIC', errTo);
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
      throw new StudioError(
        `unknown command "${clip(cmd)}" in topic "${clip(topic)}": the commands are ${STUDIO_COMMANDS.join(', ')}`,
        'ECOMMAND',
        replyTopic,
        null,
        cmd,
      );
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
    fail(
      `a retained request is refused: it would run again whenever Node-RED reconnects. Publish commands without the retain flag, and clear this one by publishing an empty retained message to "${String(topic)}"`,
      'ERETAINED',
      requestId,
    );
  }
  const given = obj.command;
  if (given !== undefined && !(typeof given === 'string' && (STUDIO_COMMANDS as readonly string[]).includes(given))) {
    const shown = typeof given === 'string' ? `"${clip(given)}"` : kindOf(given);
    fail(`unknown command ${shown}: the commands are ${STUDIO_COMMANDS.join(', ')}`, 'ECOMMAND', requestId, typeof given === 'string' ? given : t.command);
  }
  if (given !== undefined && t.command !== null && given !== t.command) {
    fail(
      `the topic asks for "${t.command}" but the payload for "${String(given)}": leave "command" out of the payload or make them the same`,
      'EINVAL',
      requestId,
    );
  }
  const command = (t.command ?? given) as StudioCommandName | undefined;
  if (command === undefined)
    fail(`the request needs a command: put "command" in the payload or use the topic .../cmd/<command>; ${USAGE}`, 'ECOMMAND', requestId, null);
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
    throw new StudioError(
      `the MQTT v5 response topic ${typeof responseTopic === 'string' ? `"${clip(responseTopic)}"` : 'given'} ${why}; nothing was done`,
      'EINVAL',
      null,
    );
  };
  if (typeof responseTopic !== 'string') bad('is not text');
  const topic = responseTopic as string;
  if (Buffer.byteLength(topic) > MQTT_MAX || /[+#\0]/.test(topic)) bad('is not a topic to publish to (no wildcards + or #)');
  const own =
    topic === errorTopic(prefix) || (topic.startsWith(`${prefix}/`) && /^[^/]+\/[^/]+\/(cmd|reclist|status|event)(\/|$)/.test(topic.slice(prefix.length + 1)));
  if (own) bad("is one of studio-control's own topics (requests, state, events)");
  if (correlationData === undefined || correlationData === null) return { topic };
  const cd = Buffer.isBuffer(correlationData) ? correlationData : typeof correlationData === 'string' ? Buffer.from(correlationData) : null;
  if (!cd) throw new StudioError('the MQTT v5 correlation data is not bytes (a Buffer or text); nothing was done', 'EINVAL', null);
  if (cd.length > MQTT_MAX) throw new StudioError(`the MQTT v5 correlation data is ${cd.length} bytes; at most ${MQTT_MAX}; nothing was done`, 'EINVAL', null);
  return { topic, correlationData: cd };
}

/** The request id of a payload refused before it was read (a bad topic), so the panel can still match the answer. */
export function peekRequestId(raw: unknown): string | null {
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
