/**
 * The rec-list of one recording channel, broadcast style: numbered lines with a
 * title, a start mode (manual or at a time), planned or actual start/stop times,
 * in/out/current points and a backup mode. Pure logic: no I/O, no timers.
 */
import { randomUUID } from 'node:crypto';
import { CommandError } from './errors';
import { LineInput } from './commands';
import { FrameRateId, framesToMs, framesToTimecode, msToFrames, timecodeToFrames } from './timecode';

export type LineStatus = 'ready' | 'armed' | 'recording' | 'stopped' | 'interrupted' | 'failed';
export type BackupMode = 'off' | 'on' | 'aux';
export type AttributeValue = string | number | boolean | null;

export interface LineOrigin {
  server: string;
  channel: number;
  lineId: string;
  /** Sequence number of the last mirror message applied (backup-link). */
  seq?: number;
}

/** Who asks for a change: an operator's command, or backup-link keeping an Aux line. */
export type ChangedBy = 'user' | 'link';

export interface Line {
  id: string;
  n: number;
  group: string;
  title: string;
  status: LineStatus;
  start: 'manual' | 'time';
  source: string;
  /** Timecode of the first recorded frame. */
  inPoint: string | null;
  /** Timecode after the last recorded frame (exclusive). */
  outPoint: string | null;
  /** Current position while recording (duration so far as timecode). */
  curPoint: string | null;
  /** Planned start (timed line) until recording starts, then the actual start; UTC ms. */
  startTime: number | null;
  /** Planned stop until recording stops, then the actual stop; UTC ms. */
  stopTime: number | null;
  /** Planned duration until recording stops, then the actual duration; timecode. */
  duration: string | null;
  backup: BackupMode;
  attributes: Record<string, AttributeValue>;
  clipId: string | null;
  /** Why the line is failed or interrupted. */
  reason: string | null;
  /** For Aux lines: the main server line this one mirrors. */
  origin: LineOrigin | null;
  createdAt: number;
  updatedAt: number;
}

/** Statuses in which the line's recording is under way. */
export const ACTIVE_STATUSES: readonly LineStatus[] = ['armed', 'recording', 'interrupted'];

export interface RecListOptions {
  frameRate: FrameRateId;
  /** Allow Backup=Aux lines (only backup-link sets them). */
  allowAux?: boolean;
  /** How far in the past a timed start may be when the line is added, ms. */
  lateStartToleranceMs?: number;
}

export function parseTime(value: number | string | null | undefined, field: string): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return value;
  const t = Date.parse(value);
  if (!Number.isFinite(t)) {
    throw new CommandError(`line.${field} "${value}" is not a date-time: use UTC epoch milliseconds or ISO 8601 such as 2026-11-22T21:30:00Z`);
  }
  return t;
}

/** Normalise a duration (timecode or seconds) to a timecode at the channel's rate. */
export function parseDuration(value: string | number | null | undefined, rate: FrameRateId): string | null {
  if (value === null || value === undefined) return null;
  let frames: number;
  if (typeof value === 'number') {
    if (!(value < 86400)) throw new CommandError('line.duration must be shorter than 24 hours');
    frames = msToFrames(value * 1000, rate);
  } else {
    try {
      frames = timecodeToFrames(value, rate);
    } catch (err) {
      throw new CommandError(`line.duration "${value}" is not a valid timecode at ${rate} fps: ${(err as Error).message}`);
    }
  }
  if (frames <= 0) throw new CommandError('line.duration must be at least one frame long');
  if (frames >= timecodeToFrames(framesToTimecode(-1, rate), rate) + 1) throw new CommandError('line.duration must be shorter than 24 hours');
  return framesToTimecode(frames, rate);
}

export function durationMs(line: Pick<Line, 'duration'>, rate: FrameRateId): number | null {
  if (!line.duration) return null;
  return framesToMs(timecodeToFrames(line.duration, rate), rate);
}

/** When a line that is recording (or about to) should stop, if it has a planned end. */
export function plannedStop(line: Line, rate: FrameRateId): number | null {
  if (line.stopTime !== null) return line.stopTime;
  const d = durationMs(line, rate);
  if (d !== null && line.startTime !== null) return line.startTime + d;
  return null;
}

function describe(line: Line): string {
  return `line ${line.n} ("${line.title}")`;
}

export class RecList {
  private lines: Line[] = [];
  /** id -> line, rebuilt lazily after a change. */
  private index: Map<string, Line> | null = null;
  private activeId: string | null = null;
  constructor(
    private readonly opts: RecListOptions,
    initial: Line[] = [],
  ) {
    this.lines = [...initial].sort((a, b) => a.n - b.n);
  }

  /**
   * The lines in order. Lines are immutable values: every change makes a new
   * object, so the list hands out its own objects (do not mutate them).
   */
  all(): readonly Line[] {
    return this.lines;
  }

  get size(): number {
    return this.lines.length;
  }

  /** The line a command names, by id or by number; throws CommandError if none. */
  find(ref: LineInput | undefined, what: string): Line {
    if (!ref || (ref.id === undefined && ref.n === undefined)) {
      throw new CommandError(`${what} needs line.id or line.n to say which line`);
    }
    const line = ref.id !== undefined ? this.byId(ref.id) : this.lines[ref.n! - 1];
    if (!line) {
      const which = ref.id !== undefined ? `id "${ref.id}"` : `number ${ref.n}`;
      throw new CommandError(
        `${what}: there is no line with ${which} in this rec-list (it has ${this.lines.length} line${this.lines.length === 1 ? '' : 's'})`,
        'ENOENT',
      );
    }
    return line;
  }

  byId(id: string): Line | undefined {
    if (this.index === null) this.index = new Map(this.lines.map((l) => [l.id, l]));
    return this.index.get(id);
  }

  /**
   * The line that owns the channel (its recording is under way), as the channel
   * says; a line left 'interrupted' by a crash does not own it.
   */
  setActive(id: string | null): void {
    this.activeId = id;
  }

  recording(): Line | undefined {
    return this.activeId === null ? undefined : this.byId(this.activeId);
  }

  /**
   * Build a new line from a command, without storing it. Returns the line and the
   * renumbered list it would make; call commit() to keep it.
   */
  planAdd(input: LineInput, now: number, by: ChangedBy = 'user', origin: LineOrigin | null = null): { line: Line; renumbered: Line[] } {
    const link = by === 'link';
    const rate = this.opts.frameRate;
    if (!input.title) throw new CommandError('add needs line.title (the clip name, e.g. the house number of the programme)');
    if (input.id !== undefined && this.byId(input.id)) {
      throw new CommandError(`add refused: a line with id "${input.id}" already exists; use update to change it`, 'EEXIST');
    }
    this.checkBackup(input.backup, link);
    const start = input.start ?? (input.startTime !== undefined ? 'time' : 'manual');
    const startTime = parseTime(input.startTime, 'startTime');
    const stopTime = parseTime(input.stopTime, 'stopTime');
    const duration = parseDuration(input.duration, rate);
    if (start === 'time') {
      if (startTime === null) throw new CommandError('a line with start "time" needs line.startTime');
      const tolerance = this.opts.lateStartToleranceMs ?? 5000;
      if (!link && startTime < now - tolerance) {
        throw new CommandError(`line.startTime ${new Date(startTime).toISOString()} is in the past; give a future time or use start "manual"`);
      }
    } else if (input.startTime !== undefined) {
      throw new CommandError('line.startTime is only for lines with start "time"; a manual line gets its start time when it starts');
    }
    if (stopTime !== null && startTime !== null && stopTime <= startTime) {
      throw new CommandError('line.stopTime must be after line.startTime');
    }
    if (stopTime !== null && duration !== null) {
      throw new CommandError('give line.stopTime or line.duration, not both');
    }
    const n = input.n ?? this.lines.length + 1;
    if (n > this.lines.length + 1) {
      throw new CommandError(`line.n ${n} would leave a hole: this rec-list has ${this.lines.length} lines, so use 1 to ${this.lines.length + 1}`);
    }
    const line: Line = {
      id: input.id ?? randomUUID(),
      n,
      group: input.group ?? '',
      title: input.title,
      status: start === 'time' ? 'armed' : 'ready',
      start,
      source: input.source ?? 'LIVE',
      inPoint: null,
      outPoint: null,
      curPoint: null,
      startTime,
      stopTime,
      duration,
      backup: input.backup ?? 'off',
      attributes: { ...(input.attributes ?? {}) },
      clipId: null,
      reason: null,
      origin,
      createdAt: now,
      updatedAt: now,
    };
    const renumbered = this.renumber([...this.lines.slice(0, n - 1), line, ...this.lines.slice(n - 1)], n - 1);
    return { line: renumbered[n - 1], renumbered };
  }

  /** Apply changes to a line, without storing them. */
  planUpdate(input: LineInput, now: number, by: ChangedBy = 'user'): { line: Line; renumbered: Line[] } {
    const link = by === 'link';
    const rate = this.opts.frameRate;
    const current = this.find(input, 'update');
    if (current.backup === 'aux' && !this.opts.allowAux && !link) {
      const from = current.origin ? ` (it mirrors line ${current.origin.lineId} of server ${current.origin.server} channel ${current.origin.channel})` : '';
      throw new CommandError(`${describe(current)} is an Aux line kept by backup-link${from}; change it on the main server`, 'EPERM');
    }
    const recording = current.id === this.activeId;
    const done = current.status === 'stopped';
    const next: Line = { ...current, attributes: { ...current.attributes } };
    const changed = (k: keyof LineInput) => input[k] !== undefined && k !== 'id' && !(k === 'n' && input.id === undefined);
    const editableWhileRecording: (keyof LineInput)[] = ['title', 'group', 'attributes', 'stopTime', 'duration', 'n', 'backup'];
    const editableWhenDone: (keyof LineInput)[] = ['title', 'group', 'attributes', 'n'];
    for (const k of Object.keys(input) as (keyof LineInput)[]) {
      if (!changed(k)) continue;
      if (recording && !editableWhileRecording.includes(k)) {
        throw new CommandError(
          `${describe(current)} is recording: line.${k} cannot change now (stop it first); title, group, attributes, stopTime and duration can`,
        );
      }
      if (done && !editableWhenDone.includes(k)) {
        throw new CommandError(`${describe(current)} is already recorded: only title, group, attributes and n can change`);
      }
    }
    if (input.title !== undefined) next.title = input.title;
    if (input.group !== undefined) next.group = input.group;
    if (input.attributes !== undefined) {
      for (const [k, v] of Object.entries(input.attributes)) {
        if (v === null) delete next.attributes[k];
        else next.attributes[k] = v;
      }
      if (Object.keys(next.attributes).length > 64) throw new CommandError('line.attributes would have more than 64 entries');
    }
    if (input.backup !== undefined) {
      this.checkBackup(input.backup, link);
      if (recording && input.backup !== current.backup) {
        throw new CommandError(`${describe(current)} is recording: Backup can only change before the recording starts`);
      }
      next.backup = input.backup;
    }
    if (input.startTime !== undefined && (input.start ?? current.start) === 'manual') {
      throw new CommandError('line.startTime is only for lines with start "time"; send start: "time" with it to make this a timed line');
    }
    if (input.source !== undefined) next.source = input.source;
    if (input.start !== undefined) next.start = input.start;
    if (input.startTime !== undefined) next.startTime = parseTime(input.startTime, 'startTime');
    if (input.stopTime !== undefined) next.stopTime = parseTime(input.stopTime, 'stopTime');
    if (input.duration !== undefined) next.duration = parseDuration(input.duration, rate);
    if (input.stopTime !== undefined && input.stopTime !== null && input.duration === undefined) next.duration = recording ? next.duration : null;
    if (input.duration !== undefined && input.duration !== null && input.stopTime === undefined) next.stopTime = null;
    if (next.stopTime !== null && input.duration !== undefined && input.duration !== null && input.stopTime !== undefined && input.stopTime !== null) {
      throw new CommandError('give line.stopTime or line.duration, not both');
    }
    if (!recording && !done) {
      if (next.start === 'time') {
        if (next.startTime === null) throw new CommandError('a line with start "time" needs line.startTime');
        if (input.startTime !== undefined && next.startTime < now - (this.opts.lateStartToleranceMs ?? 5000)) {
          throw new CommandError(`line.startTime ${new Date(next.startTime).toISOString()} is in the past; give a future time or use start "manual"`);
        }
        if (next.status === 'ready' || next.status === 'failed' || next.status === 'interrupted') {
          next.status = 'armed';
          next.reason = null;
        }
      } else {
        if (input.start === 'manual') next.startTime = null;
        if (next.status === 'armed') next.status = 'ready';
      }
    }
    if (recording && input.stopTime !== undefined && input.stopTime !== null && next.stopTime !== null && next.stopTime <= now) {
      throw new CommandError(`line.stopTime ${new Date(next.stopTime).toISOString()} is already past; use the stop command to stop now`);
    }
    if (next.stopTime !== null && next.startTime !== null && next.stopTime <= next.startTime) {
      throw new CommandError('line.stopTime must be after line.startTime');
    }
    next.updatedAt = now;
    let list = this.lines.slice();
    list[current.n - 1] = next;
    if (input.n !== undefined && input.id !== undefined && input.n !== current.n) {
      if (input.n > this.lines.length) {
        throw new CommandError(`line.n ${input.n} is past the end: this rec-list has ${this.lines.length} lines`);
      }
      list = list.filter((l) => l.id !== next.id);
      list.splice(input.n - 1, 0, next);
    }
    const moved = input.n !== undefined && input.id !== undefined && input.n !== current.n;
    const renumbered = moved ? this.renumber(list, Math.min(current.n, input.n!) - 1) : list;
    return { line: renumbered[(moved ? input.n! : current.n) - 1], renumbered };
  }

  planRemove(input: LineInput, by: ChangedBy = 'user'): { line: Line; renumbered: Line[] } {
    const link = by === 'link';
    const line = this.find(input, 'remove');
    if (line.backup === 'aux' && !this.opts.allowAux && !link) {
      throw new CommandError(`${describe(line)} is an Aux line kept by backup-link; remove it on the main server`, 'EPERM');
    }
    if (line.id === this.activeId) {
      throw new CommandError(`${describe(line)} is recording; stop it before removing it`, 'EBUSY');
    }
    return { line, renumbered: this.renumber(this.lines.filter((l) => l.id !== line.id)) };
  }

  /** Check that a line may start now; returns it. */
  checkStart(input: LineInput | undefined, by: ChangedBy = 'user'): Line {
    const link = by === 'link';
    const line = this.find(input, 'start');
    if (line.backup === 'aux' && !this.opts.allowAux && !link) {
      throw new CommandError(`${describe(line)} is an Aux line: it starts and stops with its main line`, 'EPERM');
    }
    if (line.id === this.activeId) {
      throw new CommandError(`${describe(line)} is already recording`, 'EBUSY');
    }
    if (line.status === 'stopped') {
      throw new CommandError(`${describe(line)} is already recorded (clip ${line.clipId}); add a new line to record again`, 'EBUSY');
    }
    const other = this.recording();
    if (other) {
      throw new CommandError(`${describe(line)} cannot start: ${describe(other)} is recording on this channel; stop it first`, 'EBUSY');
    }
    return line;
  }

  /** The line a stop command names; with no line given, the one recording. */
  checkStop(input: LineInput | undefined, by: ChangedBy = 'user'): Line {
    const link = by === 'link';
    if (!input || (input.id === undefined && input.n === undefined)) {
      const rec = this.recording();
      if (!rec) throw new CommandError('stop: nothing is recording on this channel');
      return rec;
    }
    const line = this.find(input, 'stop');
    if (line.backup === 'aux' && !this.opts.allowAux && !link) {
      throw new CommandError(`${describe(line)} is an Aux line: it stops with its main line`, 'EPERM');
    }
    const waitingTimed = line.status === 'armed' && line.start === 'time' && line.clipId === null;
    // a line left interrupted by a crash can be stopped: it closes it for good (and its Aux twin with it)
    const leftInterrupted = line.status === 'interrupted' && line.clipId !== null;
    if (line.id !== this.activeId && !waitingTimed && !leftInterrupted) {
      throw new CommandError(`${describe(line)} is not recording (status ${line.status})`, 'EINVAL');
    }
    return line;
  }

  /** The lines of a planned list that are new or differ from the current ones (plans keep unchanged lines as the same objects). */
  changedIn(planned: Line[]): Line[] {
    const out: Line[] = [];
    for (let i = 0; i < planned.length; i++) {
      const l = planned[i];
      if (this.lines[i] !== l && this.byId(l.id) !== l) out.push(l);
    }
    return out;
  }

  /** Keep a planned change. */
  commit(renumbered: Line[]): void {
    if (this.index !== null && renumbered.length >= this.lines.length) {
      // keep the index: only entries whose object changed are replaced
      for (let i = 0; i < renumbered.length; i++) {
        if (this.lines[i] !== renumbered[i]) this.index.set(renumbered[i].id, renumbered[i]);
      }
    } else {
      this.index = null;
    }
    this.lines = renumbered;
  }

  /** Replace one line (state changes from the recorder). */
  put(line: Line): void {
    const old = this.byId(line.id);
    const i = old ? old.n - 1 : -1;
    if (i >= 0 && this.lines[i] === old) {
      this.lines = this.lines.slice();
      this.lines[i] = line;
      this.index?.set(line.id, line);
    } else {
      this.lines = this.renumber([...this.lines.filter((l) => l.id !== line.id), line]);
      this.index = null;
    }
  }

  private checkBackup(mode: BackupMode | undefined, link = false): void {
    if (mode === 'aux' && !this.opts.allowAux && !link) {
      throw new CommandError('line.backup "aux" is set by backup-link on the backup server; use "off" or "on"');
    }
  }

  /** Number the lines 1..n from position `from` on (earlier ones are already right). */
  private renumber(list: Line[], from = 0): Line[] {
    for (let i = from; i < list.length; i++) if (list[i].n !== i + 1) list[i] = { ...list[i], n: i + 1 };
    return list;
  }
}
