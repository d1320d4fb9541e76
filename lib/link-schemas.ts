/**
 * Topics and payloads between the servers of a redundancy group (MQTT), with
 * the ajv schemas every received payload is checked against.
 *
 *   twinrec/<group>/<server>/state             retained  ServerState (also the Last Will, state "offline")
 *   twinrec/<group>/<server>/heartbeat                   Heartbeat
 *   twinrec/<group>/<server>/settings/<channel> retained  ChannelSettingsMessage (the settings cache)
 */
import { compileSchema } from './schemas';

export const TOPIC_ROOT = 'twinrec';
export const LINK_VERSION = 1;

/** Group and server names: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
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
