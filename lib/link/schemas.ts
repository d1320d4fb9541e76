/**
 * Topics and payloads between the servers of a redundancy group (MQTT), with
 * the ajv schemas every received payload is checked against.
 *
 *   twinrec/<group>/<server>/state             retained  ServerState (also the Last Will, state "offline")
 *   twinrec/<group>/<server>/heartbeat                   Heartbeat
 *   twinrec/<group>/<server>/settings/<channel> retained  ChannelSettingsMessage (the settings cache)
 */
import { compileSchema } from '../model/commands';
import { NAME_PATTERN } from '../model/names';

export const TOPIC_ROOT = 'twinrec';
export const LINK_VERSION = 1;

/** Group and server names: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
const NAME = NAME_PATTERN;

export function topicFor(group: string, server: string, ...rest: (string | number)[]): string {
  return [TOPIC_ROOT, group, server, ...rest.map(String)].join('/');
}

/** Split a topic of our layout; null when it is not one of ours. */
export function parseTopic(topic: string): { group: string; server: string; kind: string; rest: string[] } | null {
  const parts = topic.split('/');
  if (parts.length < 4 || parts[0] !== TOPIC_ROOT) return null;
  const [, group, server, kind, ...rest] = parts;
  const re = new RegExp(NAME);
  if (!re.test(group) || !re.test(server)) return null;
  return { group, server, kind, rest };
}

export interface ServerState {
  v: number;
  server: string;
  group: string;
  role: 'main' | 'backup' | 'failover';
  state: 'online' | 'offline';
  /** Why offline: 'shutdown' (clean stop) or 'lwt' (the broker lost us). */
  cause?: 'shutdown' | 'lwt';
  /** Raised by each takeover (failover); commands of an older epoch are stale. */
  epoch: number;
  /** When this server's link came up, UTC ms. */
  since: number;
  ts: number;
  heartbeatMs: number;
  /** Where this server's peer storage API answers (http(s)://host:port), when it serves one. */
  api?: string;
  /** Where this server answers liveness questions (UDP host:port, lib/peer/liveness.ts), when it does. */
  live?: string;
}

export interface Heartbeat {
  v: number;
  server: string;
  seq: number;
  ts: number;
}

export const serverStateSchema = {
  type: 'object',
  required: ['v', 'server', 'group', 'role', 'state', 'epoch', 'ts'],
  additionalProperties: true,
  properties: {
    v: { type: 'integer', minimum: 1 },
    server: { type: 'string', pattern: NAME },
    group: { type: 'string', pattern: NAME },
    role: { enum: ['main', 'backup', 'failover'] },
    state: { enum: ['online', 'offline'] },
    cause: { enum: ['shutdown', 'lwt'] },
    epoch: { type: 'integer', minimum: 0 },
    since: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
    heartbeatMs: { type: 'integer', minimum: 10, maximum: 600000 },
    api: { type: 'string', maxLength: 300 },
    live: { type: 'string', maxLength: 300 },
  },
};

export const heartbeatSchema = {
  type: 'object',
  required: ['v', 'server', 'seq', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    server: { type: 'string', pattern: NAME },
    seq: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
  },
};

export const channelSettingsSchema = {
  type: 'object',
  required: ['v', 'server', 'channel', 'ts', 'recorder', 'lines'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    server: { type: 'string', pattern: NAME },
    channel: { type: 'integer', minimum: 1, maximum: 999 },
    ts: { type: 'integer', minimum: 0 },
    recorder: { type: 'object', maxProperties: 64 },
    lines: { type: 'array', maxItems: 10000, items: { type: 'object' } },
  },
};

export const validateServerState = compileSchema(serverStateSchema);
export const validateHeartbeat = compileSchema(heartbeatSchema);
export const validateChannelSettings = compileSchema(channelSettingsSchema);

/** Largest payload accepted from the broker. */
export const MAX_LINK_PAYLOAD = 4 * 1024 * 1024;

/*
 * Failover between the servers of a group:
 *
 *   twinrec/<group>/<failed>/takeover      retained  TakeoverRecord (who records in place of <failed>, at which epoch)
 *   twinrec/<group>/<failed>/handback                Handback (failback: the failover server gives the channels back)
 *   twinrec/<group>/<failover>/handback-ack          HandbackAck (the restored server records again, or why not)
 *   twinrec/<group>/system                           SystemChange (failover started, failback performed: for clients)
 */

export interface TakeoverRecord {
  v: number;
  failedServer: string;
  failoverServer: string;
  /** The group epoch of this takeover: commands of <failed> of an older epoch are stale. */
  epoch: number;
  active: boolean;
  channels: number[];
  entryId: number;
  since: number;
  drill: boolean;
  ts: number;
}

export interface HandbackChannel {
  channel: number;
  /** Lines that record on the failover server now, to record again on the restored server. */
  recording: { id: string; title: string; group: string; n: number; stopTime?: number | null }[];
}

export interface Handback {
  v: number;
  failedServer: string;
  failoverServer: string;
  entryId: number;
  epoch: number;
  drill: boolean;
  channels: HandbackChannel[];
  ts: number;
}

export interface HandbackAck {
  v: number;
  server: string;
  entryId: number;
  ok: boolean;
  /** Per channel: lines started again, or why a channel could not take its lines back. */
  detail: string;
  started: number;
  ts: number;
}

export interface SystemChange {
  v: number;
  group: string;
  kind: 'failover-started' | 'failback-performed' | 'failback-failed' | 'isolated' | 'connected';
  failedServer?: string;
  failoverServer?: string;
  entryId?: number;
  epoch?: number;
  channels?: number[];
  startedAt?: number;
  endedAt?: number;
  drill?: boolean;
  text: string;
  ts: number;
}

const CHANNELS = { type: 'array', maxItems: 999, items: { type: 'integer', minimum: 1, maximum: 999 } };

export const takeoverRecordSchema = {
  type: 'object',
  required: ['v', 'failedServer', 'failoverServer', 'epoch', 'active', 'channels', 'entryId', 'since', 'drill', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    failedServer: { type: 'string', pattern: NAME },
    failoverServer: { type: 'string', pattern: NAME },
    epoch: { type: 'integer', minimum: 0 },
    active: { type: 'boolean' },
    channels: CHANNELS,
    entryId: { type: 'integer', minimum: 0 },
    since: { type: 'integer', minimum: 0 },
    drill: { type: 'boolean' },
    ts: { type: 'integer', minimum: 0 },
  },
};

export const handbackSchema = {
  type: 'object',
  required: ['v', 'failedServer', 'failoverServer', 'entryId', 'epoch', 'drill', 'channels', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    failedServer: { type: 'string', pattern: NAME },
    failoverServer: { type: 'string', pattern: NAME },
    entryId: { type: 'integer', minimum: 0 },
    epoch: { type: 'integer', minimum: 0 },
    drill: { type: 'boolean' },
    ts: { type: 'integer', minimum: 0 },
    channels: {
      type: 'array',
      maxItems: 999,
      items: {
        type: 'object',
        required: ['channel', 'recording'],
        additionalProperties: false,
        properties: {
          channel: { type: 'integer', minimum: 1, maximum: 999 },
          recording: {
            type: 'array',
            maxItems: 100,
            items: {
              type: 'object',
              required: ['id', 'title', 'group', 'n'],
              additionalProperties: false,
              properties: {
                id: { type: 'string', minLength: 1, maxLength: 100 },
                title: { type: 'string', maxLength: 1000 },
                group: { type: 'string', maxLength: 1000 },
                n: { type: 'integer', minimum: 1 },
                stopTime: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
              },
            },
          },
        },
      },
    },
  },
};

export const handbackAckSchema = {
  type: 'object',
  required: ['v', 'server', 'entryId', 'ok', 'detail', 'started', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    server: { type: 'string', pattern: NAME },
    entryId: { type: 'integer', minimum: 0 },
    ok: { type: 'boolean' },
    detail: { type: 'string', maxLength: 10000 },
    started: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
  },
};

export const validateTakeoverRecord = compileSchema(takeoverRecordSchema);
export const validateHandback = compileSchema(handbackSchema);
export const validateHandbackAck = compileSchema(handbackAckSchema);

/*
 * Material copy between the failover server and the restored server:
 *
 *   twinrec/<group>/<restored>/copy-request/<failover>/<entryId>  retained  CopyRequestMessage (the failover period to fetch)
 *   twinrec/<group>/<failover>/copy-state/<entryId>               retained  CopyStateMessage (how the copy goes, from the restored server)
 */

export interface CopyRequestMessage {
  v: number;
  entryId: number;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  from: number;
  to: number;
  ts: number;
}

export interface CopyStateMessage {
  v: number;
  entryId: number;
  server: string;
  taskId: number;
  state: 'queued' | 'running' | 'done' | 'failed';
  bytesDone: number;
  bytesTotal: number | null;
  segmentsCopied: number;
  segmentsSkipped: number;
  eventsCopied: number;
  error: string | null;
  ts: number;
}

export const copyRequestSchema = {
  type: 'object',
  required: ['v', 'entryId', 'failedServer', 'failoverServer', 'channels', 'from', 'to', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    entryId: { type: 'integer', minimum: 1 },
    failedServer: { type: 'string', pattern: NAME },
    failoverServer: { type: 'string', pattern: NAME },
    channels: { ...CHANNELS, minItems: 1 },
    from: { type: 'integer', minimum: 0 },
    to: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
  },
};

export const copyStateSchema = {
  type: 'object',
  required: ['v', 'entryId', 'server', 'taskId', 'state', 'bytesDone', 'bytesTotal', 'segmentsCopied', 'segmentsSkipped', 'eventsCopied', 'error', 'ts'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    entryId: { type: 'integer', minimum: 1 },
    server: { type: 'string', pattern: NAME },
    taskId: { type: 'integer', minimum: 1 },
    state: { enum: ['queued', 'running', 'done', 'failed'] },
    bytesDone: { type: 'integer', minimum: 0 },
    bytesTotal: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
    segmentsCopied: { type: 'integer', minimum: 0 },
    segmentsSkipped: { type: 'integer', minimum: 0 },
    eventsCopied: { type: 'integer', minimum: 0 },
    error: { anyOf: [{ type: 'string', maxLength: 2000 }, { type: 'null' }] },
    ts: { type: 'integer', minimum: 0 },
  },
};

export const validateCopyRequest = compileSchema(copyRequestSchema);
export const validateCopyState = compileSchema(copyStateSchema);
