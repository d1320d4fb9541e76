/**
 * JSON schemas (ajv) for every message a recorder accepts, and a formatter that
 * turns ajv's errors into one sentence an operator can act on.
 */
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import { CommandError } from './errors';

export const COMMANDS = ['add', 'update', 'remove', 'start', 'stop', 'list', 'get'] as const;
export type CommandName = (typeof COMMANDS)[number];

/** Largest command accepted, in bytes of JSON (a rec-list line is small). */
export const MAX_COMMAND_BYTES = 64 * 1024;

const timeValue = {
  description: 'UTC epoch milliseconds, or an ISO 8601 date-time string',
  anyOf: [
    { type: 'integer', minimum: 0, maximum: 8640000000000 },
    { type: 'string', minLength: 10, maxLength: 40 },
  ],
};

const timecodeOrSeconds = {
  description: 'a timecode HH:MM:SS:FF, or a number of seconds',
  anyOf: [
    { type: 'string', pattern: '^\\d{2}[:;.]\\d{2}[:;.]\\d{2}[:;.]\\d{2}$' },
    { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 86400 },
  ],
};

export const lineInputSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' },
    n: { type: 'integer', minimum: 1, maximum: 9999 },
    group: { type: 'string', maxLength: 64 },
    title: { type: 'string', minLength: 1, maxLength: 200 },
    start: { enum: ['manual', 'time'] },
    source: { type: 'string', minLength: 1, maxLength: 2048 },
    startTime: timeValue,
    stopTime: { anyOf: [timeValue, { type: 'null' }] },
    duration: { anyOf: [timecodeOrSeconds, { type: 'null' }] },
    backup: { enum: ['off', 'on', 'aux'] },
    attributes: {
      type: 'object',
      maxProperties: 64,
      propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
      additionalProperties: {
        anyOf: [{ type: 'string', maxLength: 1024 }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }],
      },
    },
  },
};

/** Fields the recorder sets itself; a command that tries to set them is refused. */
export const READ_ONLY_LINE_FIELDS = [
  'status',
  'inPoint',
  'outPoint',
  'curPoint',
  'clipId',
  'reason',
  'origin',
  'createdAt',
  'updatedAt',
  'startTimeTC',
  'stopTimeTC',
] as const;

export const commandSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['command'],
  properties: {
    command: { enum: [...COMMANDS] },
    line: lineInputSchema,
    requestId: { type: 'string', maxLength: 128 },
    force: { type: 'boolean' },
  },
};

export interface LineInput {
  id?: string;
  n?: number;
  group?: string;
  title?: string;
  start?: 'manual' | 'time';
  source?: string;
  startTime?: number | string;
  stopTime?: number | string | null;
  duration?: string | number | null;
  backup?: 'off' | 'on' | 'aux';
  attributes?: Record<string, string | number | boolean | null>;
}

export interface Command {
  command: CommandName;
  line?: LineInput;
  requestId?: string;
  /** stop: also an Aux line whose main server is offline (an orphan). */
  force?: boolean;
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validateCommandFn: ValidateFunction = ajv.compile(commandSchema);

function fieldName(path: string): string {
  if (!path) return 'the command';
  return path.replace(/^\//, '').replace(/\//g, '.');
}

/** One readable sentence from ajv's first error. */
export function describeAjvError(e: ErrorObject, root = ''): string {
  const where = fieldName(root + e.instancePath);
  const p = e.params as Record<string, unknown>;
  const range = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'].includes(e.keyword);
  if (/\.(startTime|stopTime)$/.test(where) && !range) return `${where} must be UTC epoch milliseconds or an ISO 8601 date-time`;
  if (/\.duration$/.test(where)) {
    return range ? `${where} in seconds must be more than 0 and less than 86400 (24 hours)` : `${where} must be a timecode HH:MM:SS:FF or a number of seconds`;
  }
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = String(p.additionalProperty);
      if (where === 'line' && (READ_ONLY_LINE_FIELDS as readonly string[]).includes(extra)) {
        return `line.${extra} is set by the recorder and cannot be given in a command`;
      }
      return `${where} has an unknown field "${extra}"`;
    }
    case 'required':
      return `${where} needs the field "${String(p.missingProperty)}"`;
    case 'enum':
      return `${where} must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'type':
      return `${where} must be ${p.type === 'integer' ? 'a whole number' : `of type ${String(p.type)}`}`;
    case 'pattern':
      if (where.endsWith('.id')) return `${where} must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`;
      if (where.startsWith('line.attributes')) return `attribute names must be 1 to 64 letters, digits, '_', '.' or '-'`;
      return `${where} is not in the expected form (${String(p.pattern)})`;
    case 'propertyNames':
      return `attribute names must be 1 to 64 letters, digits, '_', '.' or '-'`;
    case 'minLength':
      return `${where} must not be empty`;
    case 'maxLength':
      return `${where} is too long (at most ${String(p.limit)} characters)`;
    case 'maxProperties':
      return `${where} has too many entries (at most ${String(p.limit)})`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${where} must be ${String(p.comparison)} ${String(p.limit)}`;
    case 'anyOf':
      if (where.endsWith('Time')) return `${where} must be UTC epoch milliseconds or an ISO 8601 date-time`;
      if (where.endsWith('duration')) return `${where} must be a timecode HH:MM:SS:FF or a number of seconds`;
      if (where.startsWith('line.attributes')) return `${where} must be a string (up to 1024 characters), a number, a boolean or null`;
      return `${where} has a value of the wrong kind`;
    default:
      return `${where} ${e.message ?? 'is invalid'}`;
  }
}

/**
 * The error to tell a person about. For a field that accepts several forms
 * (anyOf), ajv lists what each form rejected before the anyOf itself; the
 * anyOf error names all the forms, so it is the one to show.
 */
function pickError(errors: ErrorObject[]): ErrorObject | undefined {
  const anyOf = errors.filter((e) => e.keyword === 'anyOf').sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
  if (!anyOf) return errors[0];
  // a form whose type matched but whose value did not (too long, out of range) says more
  const valueError = errors.find((e) => e.instancePath === anyOf.instancePath && !['type', 'anyOf'].includes(e.keyword));
  return valueError ?? anyOf;
}

const USAGE = 'expected {"command": "add"|"update"|"remove"|"start"|"stop"|"list"|"get", "line": {...}}';

/**
 * Parse and validate a recorder command. Accepts an object or a JSON string.
 * Throws CommandError with a sentence that names the problem and the fix.
 */
export function parseCommand(input: unknown): Command {
  let value: unknown = input;
  if (Buffer.isBuffer(value)) value = value.toString('utf8');
  if (typeof value === 'string') {
    if (Buffer.byteLength(value) > MAX_COMMAND_BYTES) {
      throw new CommandError(`Command refused: it is larger than ${MAX_COMMAND_BYTES} bytes`);
    }
    try {
      value = JSON.parse(value);
    } catch (err) {
      throw new CommandError(`Command refused: msg.payload is not valid JSON (${(err as Error).message}); ${USAGE}`);
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CommandError(`Command refused: msg.payload must be an object, ${USAGE}`);
  }
  if (Buffer.byteLength(JSON.stringify(value)) > MAX_COMMAND_BYTES) {
    throw new CommandError(`Command refused: it is larger than ${MAX_COMMAND_BYTES} bytes`);
  }
  if (!validateCommandFn(value)) {
    const err = pickError(validateCommandFn.errors ?? []);
    const sentence = err ? describeAjvError(err) : 'it is invalid';
    throw new CommandError(`Command refused: ${sentence}`);
  }
  return value as Command;
}

/** Compile any schema with the shared ajv instance (used by other modules). */
export function compileSchema(schema: object): ValidateFunction {
  return ajv.compile(schema);
}
