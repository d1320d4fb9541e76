/**
 * What the failover-watch and failback nodes accept: their settings (the
 * watched servers in priority order) and their commands, validated with ajv.
 * A refusal is a CommandError with one sentence a person can act on.
 */
import { CommandError } from '../model/errors';
import type { WatchedServer } from './controller';
import { NAME_PATTERN } from '../model/names';
import { compileSchema, describeAjvError } from '../model/commands';

const NAME = { type: 'string', pattern: NAME_PATTERN };

export const WATCH_COMMANDS = ['status', 'log', 'drill', 'maintenance', 'enable', 'disable', 'mark', 'release'] as const;
export type WatchCommandName = (typeof WATCH_COMMANDS)[number];

export interface WatchCommand {
  command: WatchCommandName;
  server?: string;
  on?: boolean;
  /** mark: whether the server is marked failed (true) or OK (false). */
  failed?: boolean;
  /** drill: seconds of recording before the drill fails back. */
  duration?: number;
  /** log: which entries. */
  state?: 'active' | 'finalized' | 'all';
  limit?: number;
}

export const watchCommandSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['command'],
  properties: {
    command: { enum: [...WATCH_COMMANDS] },
    server: NAME,
    on: { type: 'boolean' },
    failed: { type: 'boolean' },
    duration: { type: 'number', minimum: 1, maximum: 3600 },
    state: { enum: ['active', 'finalized', 'all'] },
    limit: { type: 'integer', minimum: 1, maximum: 10000 },
  },
};

export interface FailbackCommand {
  /** The failover log entry to fail back (manual). */
  entryId?: number;
  /** Or: the restored server, whose newest eligible entry is used (as automatic failback does). */
  server?: string;
  /** Only run the five checks, change nothing. */
  check?: boolean;
}

export const failbackCommandSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    entryId: { type: 'integer', minimum: 1 },
    server: NAME,
    check: { type: 'boolean' },
  },
  anyOf: [{ required: ['entryId'] }, { required: ['server'] }],
};

const validateWatch = compileSchema(watchCommandSchema);
const validateFailback = compileSchema(failbackCommandSchema);

function asObject(input: unknown, usage: string): Record<string, unknown> {
  let v = input;
  if (Buffer.isBuffer(v)) v = v.toString('utf8');
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw new CommandError(`Command refused: msg.payload is not valid JSON; ${usage}`);
    }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CommandError(`Command refused: msg.payload must be an object, ${usage}`);
  return v as Record<string, unknown>;
}

const WATCH_USAGE = `expected {"command": ${WATCH_COMMANDS.map((c) => `"${c}"`).join('|')}, "server": "...", ...}`;

export function parseWatchCommand(input: unknown): WatchCommand {
  const v = asObject(input, WATCH_USAGE);
  if (!validateWatch(v)) {
    const e = validateWatch.errors?.[0];
    throw new CommandError(`Command refused: ${e ? describeAjvError(e) : 'it is invalid'}; ${WATCH_USAGE}`);
  }
  const c = v as unknown as WatchCommand;
  if ((c.command === 'drill' || c.command === 'maintenance' || c.command === 'mark' || c.command === 'release') && !c.server) {
    throw new CommandError(`Command refused: ${c.command} needs "server" (the server it is for)`);
  }
  if (c.command === 'maintenance' && c.on === undefined) throw new CommandError('Command refused: maintenance needs "on": true or false');
  if (c.command === 'mark' && c.failed === undefined) throw new CommandError('Command refused: mark needs "failed": true (marked failed) or false (marked OK)');
  return c;
}

const FAILBACK_USAGE = 'expected {"entryId": <failover log entry>} or {"server": "<restored server>"}, optionally "check": true';

export function parseFailbackCommand(input: unknown): FailbackCommand {
  const v = asObject(input, FAILBACK_USAGE);
  if (!validateFailback(v)) {
    const errs = validateFailback.errors ?? [];
    const e = errs.find((x) => x.keyword !== 'required' && x.keyword !== 'anyOf') ?? errs[0];
    const sentence = !e || e.keyword === 'required' || e.keyword === 'anyOf' ? 'it names no failover log entry and no server' : describeAjvError(e);
    throw new CommandError(`Failback refused: ${sentence}; ${FAILBACK_USAGE}`);
  }
  return v as FailbackCommand;
}

/**
 * The watched servers, one per line (or comma separated), highest priority
 * first: `name` or `name host:port` (a TCP probe, e.g. its Node-RED port).
 */
export function parseWatched(text: string): WatchedServer[] {
  const out: WatchedServer[] = [];
  const re = new RegExp(NAME_PATTERN);
  for (const raw of String(text ?? '').split(/[\n,;]+/)) {
    const item = raw.trim();
    if (!item) continue;
    const [name, probe, ...rest] = item.split(/\s+/);
    if (rest.length) throw new Error(`watched server "${item}": give a name and at most one probe address (host:port)`);
    if (!re.test(name)) throw new Error(`watched server "${name}" is not a valid server id`);
    if (out.some((w) => w.server === name)) throw new Error(`watched server "${name}" is listed twice`);
    let p: WatchedServer['probe'] = null;
    if (probe) {
      const m = /^\[?([A-Za-z0-9.:_-]+?)\]?:(\d{1,5})$/.exec(probe);
      const port = m ? Number(m[2]) : NaN;
      if (!m || !(port >= 1 && port <= 65535)) throw new Error(`probe "${probe}" of ${name} must be host:port, e.g. 10.0.0.5:1880`);
      p = { host: m[1], port };
    }
    out.push({ server: name, probe: p });
  }
  if (!out.length) throw new Error('list at least one server to watch (one per line, highest priority first)');
  return out;
}
