/**
 * Synchronous parallel recording, the message between main and backup: the
 * whole state of one Backup=On line of the main, published retained per line,
 * so a repeat, a reordering or an outage converge (the newest seq wins), and
 * the backup can rebuild its Aux lines from what the broker keeps.
 *
 *   twinrec/<group>/<main server>/mirror/<main channel>/<line id>   retained, QoS 1
 */
import { compileSchema } from '../model/commands';
import { LINK_VERSION, topicFor } from '../link/schemas';
import { NAME_PATTERN } from '../model/names';
import type { AuxLine, AuxUpdate } from '../recorder/types';
import { Line } from '../model/reclist';
import { TwinCheck } from '../model/clip';

/** A main line as the mirror carries it. */
export type MirrorLine = AuxLine;

/** The mirror of one main line: the update its Aux twin applies, with the link's envelope. */
export interface MirrorMessage extends AuxUpdate {
  v: number;
  to: { server: string; channel: number };
  /** The main's epoch (failover raises it; a stale main is refused). */
  epoch: number;
  ts: number;
}

/** The backup's verdict on a twin, published back to the main. */
export interface TwinResultMessage {
  v: number;
  main: { server: string; channel: number; lineId: string };
  check: TwinCheck;
}

const NAME = NAME_PATTERN;
const endpoint = {
  type: 'object',
  required: ['server', 'channel'],
  additionalProperties: false,
  properties: { server: { type: 'string', pattern: NAME }, channel: { type: 'integer', minimum: 1, maximum: 999 } },
};

export const mirrorSchema = {
  type: 'object',
  required: ['v', 'from', 'to', 'lineId', 'seq', 'epoch', 'ts', 'removed', 'line'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    from: endpoint,
    to: endpoint,
    lineId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' },
    seq: { type: 'integer', minimum: 0 },
    epoch: { type: 'integer', minimum: 0 },
    ts: { type: 'integer', minimum: 0 },
    removed: { type: 'boolean' },
    clip: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['name', 'frames', 'tcIn', 'tcOut', 'segments'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', maxLength: 200 },
            source: { type: 'string', maxLength: 2100 },
            frames: { type: 'integer', minimum: 0 },
            tcIn: { anyOf: [{ type: 'string', maxLength: 16 }, { type: 'null' }] },
            tcOut: { anyOf: [{ type: 'string', maxLength: 16 }, { type: 'null' }] },
            segments: {
              type: 'array',
              maxItems: 100000,
              items: {
                type: 'object',
                required: ['index', 'frames', 'esDigest'],
                additionalProperties: false,
                properties: {
                  index: { type: 'integer', minimum: 0 },
                  frames: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
                  esDigest: { anyOf: [{ type: 'string', pattern: '^[0-9a-f]{64}$' }, { type: 'null' }] },
                },
              },
            },
          },
        },
      ],
    },
    line: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['title', 'group', 'attributes', 'start', 'status', 'startTime', 'stopTime', 'duration'],
          additionalProperties: false,
          properties: {
            title: { type: 'string', minLength: 1, maxLength: 200 },
            group: { type: 'string', maxLength: 64 },
            attributes: {
              type: 'object',
              maxProperties: 64,
              additionalProperties: { anyOf: [{ type: 'string', maxLength: 1024 }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }] },
            },
            start: { enum: ['manual', 'time'] },
            status: { enum: ['ready', 'armed', 'recording', 'stopped', 'interrupted', 'failed'] },
            startTime: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
            stopTime: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
            duration: { anyOf: [{ type: 'string', maxLength: 16 }, { type: 'null' }] },
            inPoint: { anyOf: [{ type: 'string', maxLength: 16 }, { type: 'null' }] },
          },
        },
      ],
    },
  },
};

export const validateMirror = compileSchema(mirrorSchema);

export const twinResultSchema = {
  type: 'object',
  required: ['v', 'main', 'check'],
  additionalProperties: false,
  properties: {
    v: { type: 'integer', minimum: 1 },
    main: {
      type: 'object',
      required: ['server', 'channel', 'lineId'],
      additionalProperties: false,
      properties: {
        server: { type: 'string', pattern: NAME },
        channel: { type: 'integer', minimum: 1, maximum: 999 },
        lineId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' },
      },
    },
    check: {
      type: 'object',
      required: ['state', 'at', 'differences', 'mainServer', 'mainClip', 'auxServer', 'auxClip'],
      additionalProperties: false,
      properties: {
        state: { enum: ['verified', 'mismatch', 'skipped'] },
        at: { type: 'integer', minimum: 0 },
        differences: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 500 } },
        mainServer: { type: 'string', pattern: NAME },
        mainClip: { type: 'string', maxLength: 200 },
        auxServer: { type: 'string', pattern: NAME },
        auxClip: { type: 'string', maxLength: 200 },
      },
    },
  },
};

export const validateTwinResult = compileSchema(twinResultSchema);

/** The backup publishes its verdict here (retained); the main subscribes to those addressed to it. */
export function twinTopic(group: string, backupServer: string, mainServer: string, channel: number, lineId: string): string {
  return topicFor(group, backupServer, 'twin', mainServer, channel, lineId);
}

export function twinPatternFor(group: string, mainServer: string): string {
  return `${topicFor(group, '+', 'twin', mainServer)}/+/+`;
}

export function mirrorTopic(group: string, mainServer: string, channel: number, lineId: string): string {
  return topicFor(group, mainServer, 'mirror', channel, lineId);
}

/** All mirror topics of a group (what a backup subscribes to). */
export function mirrorPattern(group: string): string {
  return `${topicFor(group, '+', 'mirror')}/+/+`;
}

/** Sequence numbers that keep growing across restarts: microseconds of the wall clock, never repeating. */
export class SeqSource {
  private last = 0;
  constructor(private readonly clock: () => number = Date.now) {}
  next(): number {
    this.last = Math.max(this.last + 1, this.clock() * 1000);
    return this.last;
  }
}

export function mirrorOf(line: Line): MirrorLine {
  return {
    title: line.title,
    group: line.group,
    attributes: { ...line.attributes },
    start: line.start,
    status: line.status,
    startTime: line.startTime,
    stopTime: line.stopTime,
    duration: line.duration,
    inPoint: line.inPoint,
  };
}

export function makeMirror(
  o: { from: { server: string; channel: number }; to: { server: string; channel: number }; seq: number; epoch: number; ts: number },
  line: Line | null,
  lineId: string,
): MirrorMessage {
  return { v: LINK_VERSION, from: o.from, to: o.to, lineId, seq: o.seq, epoch: o.epoch, ts: o.ts, removed: line === null, line: line ? mirrorOf(line) : null };
}
