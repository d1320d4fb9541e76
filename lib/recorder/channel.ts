/**
 * One recording channel: its rec-list, its clips and the ffmpeg runs that record
 * them, its timed starts and stops, and recovery after a restart or a crash.
 * The recorder node only reads its config, calls this, and maps the results.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Catalogue } from '../store/catalogue';
import { Clip, Container, Gap, Segment, TwinCheck, TwinSummary } from '../model/clip';
import { compareTwins, twinSummaryOf } from '../model/twin';
import { CommandError, errorText, redactUrl } from '../model/errors';
import { countFramesWithFfmpeg, FfmpegInfo, InputSpec, parseSegmentList } from '../media/ffmpeg';
import { FfmpegRun, RunEnd, SegmentOpen } from '../media/ffmpeg-run';
import { AttributeValue, Line, LineOrigin, LineStatus, plannedStop, RecList } from '../model/reclist';
import { Command, LineInput, parseCommand } from '../model/commands';
import { AuxUpdate } from './types';
import { SOURCE_URL } from './config';
import { scanSegment, TsFileFollower, truncateTsAfterFrames, videoFrameDigests } from '../media/mpegts';
import { HANDOVER_WINDOW_FRAMES, handoverKeep } from './handover-cut';
import { insideRoot, newClipDir, sanitizeName, writeSidecar } from '../store/clip-files';
import { addFrames, frameRate, FrameRateId, framesToMs, framesToTimecode, msToFrames, timecodeToFrames, timeOfDayTimecode } from '../model/timecode';

export type LineEventName = 'added' | 'updated' | 'removed' | 'armed' | 'recording' | 'stopped' | 'interrupted' | 'failed' | 'verified' | 'mismatch';

export interface ChannelEvent {
  event: LineEventName | 'reclist';
  server: string;
  channel: number;
  at: number;
  line?: PresentedLine;
  lines?: PresentedLine[];
  clip?: Clip;
  reason?: string;
  requestId?: string;
  /** Where backup-link mirrors Backup=On lines of this channel (the recorder's backup server and channel). */
  backupTarget?: { server: string; channel: number } | null;
}

export type PresentedLine = Line & { startTimeTC: string | null; stopTimeTC: string | null };

/** Where a line's media comes from. 'LIVE' is the channel's own source. */
export interface SourceProvider {
  /** Human label for logs and the sidecar (never with a password). */
  label: string;
  resolve(): Promise<InputSpec>;
}

export interface ChannelSettings {
  serverId: string;
  group: string;
  channel: number;
  channelName: string;
  frameRate: FrameRateId;
  /** Clip timecode: from 00:00:00:00, or the time of day of the first frame. */
  tcMode: 'zero' | 'tod';
  storageRoot: string;
  segmentSeconds: number;
  container: Container;
  videoCodec: 'copy' | 'h264';
  source: SourceProvider;
  backup: { server: string; channel: number } | null;
  /** A start that gives no frame within this time fails. */
  startTimeoutMs?: number;
  /** A source that sends nothing for this long is restarted. */
  stallTimeoutMs?: number;
  restartMinMs?: number;
  restartMaxMs?: number;
  /** Allow Backup=Aux lines on this channel (backup-link). */
  allowAux?: boolean;
  /**
   * ffmpeg starts this long before a planned start (timed lines, Backup=On lines)
   * and the clip begins at the first keyframe after the planned instant.
   */
  prerollMs?: number;
  /** A stop of a Backup=On line takes effect this long after the command, on main and backup alike. */
  syncStopLeadMs?: number;
  /**
   * A planned stop (stop time, duration, the synchronous stop of a twin) of an
   * MPEG-TS recording is frame-exact: the clip holds the frames from its
   * timecode in up to the planned instant. ffmpeg records on until the frame
   * after the last one is on disk, then the clip is cut after the last one.
   * Twins that share the in point and the stop time so end on the same frame,
   * whichever of the two read the source later. This is the longest ffmpeg
   * records on waiting for that frame (a source that stalls at the stop);
   * 0 stops ffmpeg at the planned instant, on the wall clock.
   */
  stopTailMs?: number;
  /** Whether the main server of an Aux line is known to be offline (its line is an orphan an operator may stop). */
  isOrphan?: (origin: LineOrigin) => boolean;
}

export interface ChannelDeps {
  catalogue: Catalogue;
  ffmpeg: FfmpegInfo;
  log: { info(m: string): void; warn(m: string): void; error(m: string): void };
  clock?: () => number;
}

export interface ChannelStatus {
  state: 'idle' | 'armed' | 'recording' | 'interrupted' | 'failed' | 'closed';
  line: PresentedLine | null;
  curPoint: string | null;
  lines: number;
  detail: string | null;
}

/** How often the sidecar of a recording clip is rewritten (its segments are in the catalogue at once). */
const SIDECAR_INTERVAL_MS = 30000;

const TEST_SOURCES = ['TESTPATTERN', 'BARS', 'TEST'];

interface Active {
  line: Line;
  clip: Clip;
  run: FfmpegRun | null;
  runNo: number;
  /** Segment index the next run starts at. */
  nextIndex: number;
  /** Segments of the current run opened, in order. */
  openSegments: SegmentOpen[];
  restartTimer: NodeJS.Timeout | null;
  backoffMs: number;
  armedAt: number;
  stopping: boolean;
  /** Serialises the async work on this recording (hashing, sidecar writes). */
  chain: Promise<void>;
  input: InputSpec | null;
  /** Segments are cut on the wall clock at this instant + k x segment length (synchronous recording). */
  anchorMs: number | null;
  /** The first run records a pre-roll segment that is not part of the clip. */
  prerollFirst: boolean;
  /** An Aux line: the main clip's timecode in, which this twin takes (both begin at the same frame). */
  mainInPoint: string | null;
  /** An Aux line: when the main clip's first frame came, by the main's clock (the reference of a frame-exact stop). */
  mainStartedAt: number | null;
  /** Frame counters of the segments still being written (a frame-exact stop waits for its frame). */
  followers: Map<string, TsFileFollower>;
  /** An Aux line's main clip, to compare with once this clip is closed. */
  twinPending: { summary: TwinSummary; main: { server: string; channel: number; lineId: string } } | null;
}

/** Keep a segment file's sha256, size and picture digest from its scan; returns the frames it counted (null: not MPEG-TS). */
function takeScan(seg: Segment, r: Awaited<ReturnType<typeof scanSegment>>): number | null {
  seg.sha256 = r.sha256;
  seg.bytes = r.bytes;
  seg.esDigest = r.esDigest;
  return r.frames;
}

type TimedLine = Line & { startTime: number };

/** A timed line waiting for its start (armed, no clip yet). */
function waitingTimed(l: Line): l is TimedLine {
  return l.status === 'armed' && l.clipId === null && l.start === 'time' && l.startTime !== null;
}

/** Shortest pre-roll worth discarding: a later anchor than this gets a clean cut. */
const MIN_PREROLL_MS = 500;
/** How often a frame-exact stop looks for its last frame on disk. */
const STOP_POLL_MS = 100;
/** A clip's segments in recording order. */
function inOrder(segments: Segment[]): Segment[] {
  return [...segments].sort((x, y) => x.index - y.index);
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RecorderChannel extends EventEmitter {
  readonly s: Required<Omit<ChannelSettings, 'backup'>> & { backup: ChannelSettings['backup'] };
  private readonly cat: Catalogue;
  private readonly ffmpeg: FfmpegInfo;
  private readonly log: ChannelDeps['log'];
  private readonly clock: () => number;
  private readonly rate;
  private list: RecList;
  private activeRec: Active | null = null;
  /**
   * Back-to-back: the next timed line, its ffmpeg started ahead (pre-roll) while
   * the active line still records. At its first frame it takes the channel and
   * the active line is cut there (handOver), so no frame falls between the two.
   */
  private incoming: Active | null = null;
  /** Lines stopping after a hand-over, until their tail is cut (close() waits for them). */
  private handovers = new Map<Active, Promise<void>>();
  /** A line whose pre-roll failed or came too late: it takes the channel at its start instead. */
  private noPreroll: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastFailure: string | null = null;
  /** When each recording clip's sidecar was last written. */
  private sidecarWritten = new Map<string, { at: number; state: string }>();
  /** Presented form of each (immutable) line object, computed once. */
  private presented = new WeakMap<Line, PresentedLine>();

  /** The recording under way on this channel; the rec-list is told which line owns the channel. */
  private get active(): Active | null {
    return this.activeRec;
  }
  private set active(a: Active | null) {
    this.activeRec = a;
    this.list.setActive(a ? a.line.id : null);
  }

  constructor(settings: ChannelSettings, deps: ChannelDeps) {
    super();
    this.s = {
      startTimeoutMs: 15000,
      stallTimeoutMs: 6000,
      restartMinMs: 500,
      restartMaxMs: 10000,
      allowAux: false,
      isOrphan: () => false,
      prerollMs: 2000,
      syncStopLeadMs: 400,
      stopTailMs: 3000,
      ...settings,
    };
    this.rate = frameRate(settings.frameRate);
    this.cat = deps.catalogue;
    this.ffmpeg = deps.ffmpeg;
    this.log = deps.log;
    this.clock = deps.clock ?? Date.now;
    this.list = new RecList({ frameRate: settings.frameRate, allowAux: this.s.allowAux });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Load the rec-list, recover from an unclean stop, resume a suspended recording, arm timers. */
  async open(): Promise<void> {
    const { serverId, channel } = this.s;
    this.killStaleProcesses();
    this.list = new RecList({ frameRate: this.s.frameRate, allowAux: this.s.allowAux }, this.cat.lines(serverId, channel));
    this.list.setActive(this.activeRec ? this.activeRec.line.id : null);
    for (const clip of this.cat.clipsInState(serverId, channel, ['recording', 'suspended'])) {
      const line = this.list.byId(clip.lineId);
      if (clip.state === 'recording' || !line) {
        await this.recoverInterrupted(clip, line);
      } else {
        this.resumeSuspended(clip, line);
      }
    }
    // lines left active without a clip (crash between arm and first write)
    for (const line of this.list.all()) {
      if ((line.status === 'recording' || line.status === 'interrupted') && (!this.active || this.active.line.id !== line.id)) {
        const l = { ...line, status: 'interrupted' as LineStatus, reason: line.reason ?? 'Node-RED stopped while this line was recording', updatedAt: this.clock() };
        this.saveLine(l);
      }
    }
    this.catchUpTimedLines();
    this.schedule();
  }

  /**
   * Stop everything this channel runs. When the node is only being restarted
   * (redeploy, Node-RED restart), a recording is suspended and resumes in the same
   * clip when the channel opens again; when the node is removed it is stopped.
   */
  async close(removed: boolean): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.cancelIncoming();
    await Promise.all([...this.handovers.values()]);
    const a = this.active;
    if (!a) return;
    if (removed) {
      await this.stopActive('stopped because the recorder node was removed');
    } else {
      await this.suspendActive();
    }
  }

  // ---------------------------------------------------------------- commands

  /**
   * Validate and carry out a command. Throws CommandError when refused (nothing
   * changed). The resulting events are also emitted as 'commanded', so whatever
   * follows the channel (a tally, a control panel) sees changes made by others.
   */
  async execute(raw: unknown): Promise<ChannelEvent[]> {
    const evs = await this.executeCommand(raw);
    this.emitCommanded(evs);
    return evs;
  }

  private emitCommanded(evs: ChannelEvent[]): void {
    if (evs.length === 0) return;
    try {
      this.emit('commanded', evs);
    } catch (err) {
      this.log.warn(`a listener of this channel failed: ${errorText(err)}`);
    }
  }

  private async executeCommand(raw: unknown): Promise<ChannelEvent[]> {
    if (this.closed) throw new CommandError('the recorder is closing; try again when it has restarted', 'ECLOSED');
    const cmd: Command = parseCommand(raw);
    const now = this.clock();
    const rid = cmd.requestId;
    switch (cmd.command) {
      case 'list':
      case 'get': {
        return [this.reclistEvent(rid)];
      }
      case 'add': {
        this.checkSource(cmd.line?.source);
        const { line, renumbered } = this.list.planAdd(cmd.line ?? {}, now);
        const evs = this.cat.transaction(() => {
          this.commitList(renumbered);
          const e = [this.lineEvent('added', line, { requestId: rid })];
          if (line.status === 'armed') e.push(this.lineEvent('armed', line, { requestId: rid }));
          return e;
        });
        if (line.start === 'time') this.schedule();
        return evs;
      }
      case 'update': {
        if (cmd.line?.source !== undefined) this.checkSource(cmd.line.source);
        const before = cmd.line ? this.list.find(cmd.line, 'update') : undefined;
        let plan = this.list.planUpdate(cmd.line ?? {}, now);
        if (before && this.isIncoming(before.id)) {
          // a line pre-rolling to take over: its pre-roll is given up (the schedule starts a new one if still in time)
          await this.cancelIncoming();
          plan = this.list.planUpdate(cmd.line ?? {}, this.clock());
        }
        const { line, renumbered } = plan;
        const evs = this.cat.transaction(() => {
          this.commitList(renumbered);
          if (this.active && this.active.line.id === line.id) {
            this.active.line = line;
            Object.assign(this.active.clip, { title: line.title, attributes: { ...line.attributes }, updatedAt: now });
            this.persistClip(this.active.clip);
          } else if (line.clipId && line.status === 'stopped') {
            this.retitleClip(line);
          }
          const e = [this.lineEvent('updated', line, { requestId: rid })];
          if (before && before.status !== 'armed' && line.status === 'armed') e.push(this.lineEvent('armed', line, { requestId: rid }));
          return e;
        });
        const u = cmd.line!;
        if (u.start !== undefined || u.startTime !== undefined || u.stopTime !== undefined || u.duration !== undefined) this.schedule();
        return evs;
      }
      case 'remove': {
        let plan = this.list.planRemove(cmd.line ?? {});
        if (this.handingOver(plan.line.id)) throw new CommandError(`${lineName(plan.line)} is stopping at the start of the next line; remove it once it has stopped`, 'EBUSY');
        if (this.isIncoming(plan.line.id)) {
          await this.cancelIncoming();
          plan = this.list.planRemove(cmd.line ?? {});
        }
        const { line, renumbered } = plan;
        const ev = this.cat.transaction(() => {
          this.cat.putLines(this.s.serverId, this.s.channel, this.list.changedIn(renumbered), line.id);
          this.list.commit(renumbered);
          return this.lineEvent('removed', line, { requestId: rid });
        });
        this.schedule();
        return [ev];
      }
      case 'start': {
        const line = this.list.checkStart(cmd.line);
        // a Backup=On line starts at a planned instant shortly ahead, that its Aux twin shares
        const anchor = line.backup === 'on' ? now + this.s.prerollMs : undefined;
        return [await this.startLine(line, rid, anchor)];
      }
      case 'stop': {
        // an Aux line stops with its main line; only an orphan (main offline) may be stopped here, with force
        const named = cmd.line && (cmd.line.id !== undefined || cmd.line.n !== undefined) ? this.list.find(cmd.line, 'stop') : undefined;
        let by: 'user' | 'link' = 'user';
        if (named && named.backup === 'aux' && named.origin) {
          const orphan = this.s.isOrphan(named.origin);
          if (orphan && cmd.force) by = 'link';
          else if (orphan) throw new CommandError(`${lineName(named)} is an Aux line of ${named.origin.server}, which is offline: send the stop with "force": true to stop this orphan here`, 'EPERM');
        }
        if (named && this.handingOver(named.id)) {
          return [this.lineEvent('updated', named, { requestId: rid, reason: 'stop already under way (the next line has taken the channel)' })];
        }
        // a line pre-rolling to take over: its pre-roll is given up, then it is disarmed below
        if (named && this.isIncoming(named.id)) await this.cancelIncoming();
        const line = this.list.checkStop(cmd.line, by);
        const a = this.active;
        if (a && a.line.id === line.id) {
          if (line.backup === 'on' && a.clip.startedAt !== null && !a.stopping) {
            // stop at a planned instant shortly ahead, shared with the Aux twin through the line's stop time
            const stopAt = now + this.s.syncStopLeadMs;
            const planned = plannedStop(a.line, this.s.frameRate);
            if (planned !== null && planned <= stopAt) return [this.lineEvent('updated', a.line, { requestId: rid, reason: 'stop already planned' })];
            const next: Line = { ...a.line, stopTime: stopAt, duration: null, updatedAt: now };
            this.saveLine(next);
            this.schedule();
            return [this.lineEvent('updated', next, { requestId: rid, reason: 'stop planned (synchronous with the backup)' })];
          }
          return [await this.stopActive(null, rid)];
        }
        if (line.status === 'interrupted') {
          // cut by a crash and not recording: close it for good; its Aux twin stops with it
          const clip = line.clipId ? this.cat.clip(line.clipId) : undefined;
          const done: Line = { ...line, status: 'stopped', reason: line.reason ?? 'interrupted', stopTime: line.stopTime ?? now, updatedAt: now };
          this.saveLine(done);
          return [this.lineEvent('stopped', done, { requestId: rid, clip, reason: 'closed after an interruption' })];
        }
        // a timed line waiting for its start: disarm it
        const next: Line = { ...line, status: 'ready', start: 'manual', startTime: null, updatedAt: now };
        this.saveLine(next);
        this.schedule();
        return [this.lineEvent('updated', next, { requestId: rid, reason: 'timed start cancelled' })];
      }
    }
  }

  /**
   * backup-link on the backup server: bring the Aux line that mirrors a main line
   * to the state the main reports (add, update, start at the main's planned
   * instant, stop at the main's stop time, remove). A message not newer than the
   * last one applied for that line is ignored, so repeats and reorderings are harmless.
   */
  async applyMirror(m: AuxUpdate): Promise<ChannelEvent[]> {
    const evs = await this.applyMirrorMessage(m);
    this.emitCommanded(evs);
    return evs;
  }

  private async applyMirrorMessage(m: AuxUpdate): Promise<ChannelEvent[]> {
    if (this.closed) throw new CommandError('the recorder is closing', 'ECLOSED');
    const now = this.clock();
    const evs: ChannelEvent[] = [];
    const aux = this.list.all().find((l) => l.origin && l.origin.server === m.from.server && l.origin.channel === m.from.channel && l.origin.lineId === m.lineId);
    if (aux && (aux.origin!.seq ?? -1) >= m.seq) return evs; // a repeat or an older message
    const origin: LineOrigin = { server: m.from.server, channel: m.from.channel, lineId: m.lineId, seq: m.seq };
    if (m.removed || !m.line) {
      if (!aux) return evs;
      const a = this.active;
      if ((a && a.line.id === aux.id) || this.handingOver(aux.id)) {
        // the main removed a line we record: keep recording until its stop time, keep the line
        this.saveLine({ ...aux, origin, updatedAt: now });
        return evs;
      }
      if (this.isIncoming(aux.id)) await this.cancelIncoming();
      const { line, renumbered } = this.list.planRemove({ id: aux.id }, 'link');
      this.cat.transaction(() => {
        this.cat.putLines(this.s.serverId, this.s.channel, this.list.changedIn(renumbered), line.id);
        this.list.commit(renumbered);
        evs.push(this.lineEvent('removed', line));
      });
      this.schedule();
      return evs;
    }
    const ml = m.line;
    let line = aux;
    if (!line) {
      if (this.list.byId(m.lineId)) throw new CommandError(`cannot mirror line ${m.lineId} of ${m.from.server}: this rec-list has a line with that id that is not its Aux twin`, 'EEXIST');
      const { line: added, renumbered } = this.list.planAdd(
        { id: m.lineId, title: ml.title, group: ml.group, attributes: ml.attributes, start: 'manual', backup: 'aux' },
        now,
        'link',
        origin,
      );
      this.cat.transaction(() => {
        this.commitList(renumbered);
        evs.push(this.lineEvent('added', added));
      });
      line = added;
    }
    // a twin pre-rolling to take over is as good as started: it begins at the main's planned instant
    const active = this.active && this.active.line.id === line.id ? this.active : this.isIncoming(line.id);
    const change: LineInput = { id: line.id, title: ml.title, group: ml.group, attributes: mergeAttributes(line.attributes, ml.attributes) };
    const timedAhead = ml.start === 'time' && ml.status === 'armed' && ml.startTime !== null && ml.startTime > now;
    if (!active && line.status !== 'stopped') {
      // a timed main line not started yet: the Aux line is timed too, so it records even if the main dies first
      if (timedAhead) {
        change.start = 'time';
        change.startTime = ml.startTime!;
        if (ml.stopTime !== null) change.stopTime = ml.stopTime;
        else if (ml.duration !== null) change.duration = ml.duration;
      } else if (line.start === 'time' && ml.start === 'manual') {
        change.start = 'manual';
      }
    }
    if (active && ml.inPoint) {
      active.mainInPoint = ml.inPoint;
      if (ml.startTime !== null) active.mainStartedAt = ml.startTime;
      if (this.adoptMainInPoint(active)) this.persistClip(active.clip);
    }
    if (active) {
      if (ml.stopTime !== null && ml.stopTime !== line.stopTime && ml.stopTime > now) change.stopTime = ml.stopTime;
      if (ml.duration !== null && ml.stopTime === null && ml.duration !== line.duration) change.duration = ml.duration;
    }
    const { line: updated, renumbered } = this.list.planUpdate(change, now, 'link');
    const withOrigin: Line = { ...updated, origin };
    this.cat.transaction(() => {
      this.commitList(renumbered.map((l) => (l.id === withOrigin.id ? withOrigin : l)));
      if (active) active.line = withOrigin;
      evs.push(this.lineEvent('updated', withOrigin));
    });
    line = withOrigin;
    const mainRecording = ml.status === 'recording' || ml.status === 'interrupted' || (ml.status === 'armed' && ml.startTime !== null && !timedAhead);
    if (!active && mainRecording && line.status !== 'stopped') {
      const other = this.active;
      if (other) throw new CommandError(`cannot start the Aux twin of ${m.from.server} line ${m.lineId}: ${lineName(other.line)} is recording on this channel`, 'EBUSY');
      const anchor = ml.startTime ?? now;
      evs.push(await this.startLine(this.list.byId(line.id)!, undefined, anchor));
    } else if (active && !active.stopping && (ml.status === 'stopped' || ml.status === 'failed' || ml.status === 'ready')) {
      // the main stops (or stopped) at its stop time: so does the twin, frame-exact, by its own timer;
      // a stop time long past (the main's message came late) stops it now, keeping what it recorded since
      const late = ml.stopTime === null || ml.stopTime + (this.exactStopFrames(active, ml.stopTime) === null ? 0 : this.s.stopTailMs) <= now;
      if (!late) {
        if (line.stopTime !== ml.stopTime) {
          const next: Line = { ...line, stopTime: ml.stopTime, duration: null, updatedAt: now };
          this.saveLine(next);
        }
      } else {
        evs.push(await this.stopActive(`stopped with its main line on ${m.from.server}`, undefined, undefined, active));
      }
    }
    if (m.clip && ml.status === 'stopped') {
      const main = { server: m.from.server, channel: m.from.channel, lineId: m.lineId };
      const still = this.active && this.active.line.id === line.id ? this.active : (this.handingOver(line.id) ?? null);
      if (still) still.twinPending = { summary: m.clip, main };
      else {
        const auxLine = this.list.byId(line.id)!;
        const clip = auxLine.clipId ? this.cat.clip(auxLine.clipId) : undefined;
        if (clip && clip.state !== 'recording' && clip.state !== 'suspended' && !clip.twin) {
          const v = this.verifyTwin(clip, m.clip, main);
          if (v) evs.push(v);
        }
      }
    }
    this.schedule();
    return evs;
  }

  /**
   * An Aux twin begins at the same frame as its main clip, but each server reads
   * the time of that frame off its own clock, and near a frame boundary the two
   * readings can fall on neighbouring frames. The main's timecode in is the
   * reference: taken when the two are within two frames of each other.
   */
  private adoptMainInPoint(a: Active): boolean {
    const main = a.mainInPoint;
    const own = a.clip.tcIn;
    if (!main || !own || main === own || this.s.tcMode !== 'tod') return false;
    let d: number;
    try {
      d = Math.abs(timecodeToFrames(main, this.rate) - timecodeToFrames(own, this.rate));
    } catch {
      return false;
    }
    if (d > 2) return false;
    a.clip.tcIn = main;
    this.totals(a.clip);
    a.line = { ...a.line, inPoint: main };
    this.saveLine(a.line);
    return true;
  }

  /** Compare a closed Aux clip with its main clip; keep the verdict in the clip and the catalogue; tell the main ('twin'). */
  private verifyTwin(clip: Clip, main: TwinSummary, origin: { server: string; channel: number; lineId: string }): ChannelEvent | null {
    // a test pattern is generated on each server: its twins cannot hold the same frames
    const generated = main.source === 'test pattern' || clip.source === 'test pattern';
    const differences = generated ? [] : compareTwins(main, twinSummaryOf(clip));
    const check: TwinCheck = {
      state: generated ? 'skipped' : differences.length ? 'mismatch' : 'verified',
      at: this.clock(),
      differences,
      mainServer: origin.server,
      mainClip: main.name,
      auxServer: this.s.serverId,
      auxClip: clip.name,
    };
    clip.twin = check;
    this.persistClip(clip);
    this.writeSidecarSafe(clip);
    const line = this.list.byId(clip.lineId);
    this.emit('twin', check, origin);
    if (check.state === 'skipped') {
      this.log.info(`twin check of clip ${clip.name} skipped: each server generates its own test pattern`);
      return null;
    }
    return this.lineEvent(check.state, line ?? ({ id: clip.lineId, n: 0, title: clip.title } as Line), {
      clip,
      reason: differences.length ? differences.join('; ') : `identical to ${origin.server}'s clip`,
    });
  }

  /** On the main: the backup's verdict on the twin of one of our Backup=On lines. */
  recordTwinResult(lineId: string, check: TwinCheck): ChannelEvent | null {
    const line = this.list.byId(lineId);
    if (!line || !line.clipId) return null;
    const clip = this.cat.clip(line.clipId);
    if (!clip) return null;
    if (clip.twin && clip.twin.at >= check.at) return null; // already known
    clip.twin = check;
    this.persistClip(clip);
    this.writeSidecarSafe(clip);
    if (check.state === 'skipped') return null;
    return this.lineEvent(check.state, line, { clip, reason: check.differences.length ? check.differences.join('; ') : `identical to the Aux clip on ${check.auxServer}` });
  }

  /** The rec-list as it is now. */
  lines(): PresentedLine[] {
    return this.list.all().map((l) => copyLine(this.present(l)));
  }

  status(): ChannelStatus {
    const a = this.active;
    const lines = this.list.size;
    if (this.closed) return { state: 'closed', line: null, curPoint: null, lines, detail: null };
    if (a) {
      const line = this.present(a.line);
      if (a.line.status === 'recording') return { state: 'recording', line, curPoint: this.curPoint(a), lines, detail: null };
      if (a.line.status === 'interrupted') return { state: 'interrupted', line, curPoint: this.curPoint(a), lines, detail: a.line.reason };
      return { state: 'armed', line, curPoint: null, lines, detail: null };
    }
    const armed = this.list.all().find((l) => l.status === 'armed');
    if (armed) return { state: 'armed', line: this.present(armed), curPoint: null, lines, detail: null };
    if (this.lastFailure) return { state: 'failed', line: null, curPoint: null, lines, detail: this.lastFailure };
    return { state: 'idle', line: null, curPoint: null, lines, detail: null };
  }

  clip(id: string): Clip | undefined {
    return this.cat.clip(id);
  }

  // ---------------------------------------------------------------- recording

  private checkSource(source: string | undefined): void {
    if (source === undefined || source === 'LIVE' || TEST_SOURCES.includes(source.toUpperCase())) return;
    if (!SOURCE_URL.test(source)) {
      throw new CommandError(`line.source "${source}" is not usable: use "LIVE" (the channel's source), "TESTPATTERN", or an rtsp://, srt://, udp://, rtp:// or http(s):// URL`);
    }
  }

  private async inputFor(line: Line): Promise<InputSpec> {
    const src = line.source;
    if (TEST_SOURCES.includes(src.toUpperCase())) return { kind: 'testpattern' };
    if (src !== 'LIVE') return { kind: 'url', url: src, timeoutMs: Math.max(1000, this.s.stallTimeoutMs - 1000) };
    return this.s.source.resolve();
  }

  /** Start a line: resolve its source, open a clip, start ffmpeg. Resolves once armed. */
  /**
   * Start a line: resolve its source, open a clip, start ffmpeg. Resolves once armed.
   * With anchorMs, the clip begins at the first keyframe after that instant and its
   * segments are cut at anchor + k x segment length (twins of one source match).
   */
  private async startLine(line: Line, requestId?: string, anchorMs?: number, incoming = false): Promise<ChannelEvent> {
    const now = this.clock();
    // claim the channel synchronously, so a second start cannot race this one
    const clipId = randomUUID();
    const name = sanitizeName(line.title);
    // named by the planned instant when there is one, so an Aux twin gets the same folder name
    const dir = newClipDir(this.s.storageRoot, this.s.serverId, this.s.channel, name, anchorMs ?? now);
    const clip: Clip = {
      id: clipId,
      name,
      dir,
      serverId: this.s.serverId,
      group: line.group,
      channel: this.s.channel,
      channelName: this.s.channelName,
      lineId: line.id,
      title: line.title,
      attributes: { ...line.attributes },
      backup: line.backup,
      frameRate: this.s.frameRate,
      tcIn: null,
      tcOut: null,
      startedAt: null,
      stoppedAt: null,
      frames: 0,
      durationMs: 0,
      state: 'recording',
      container: this.s.container,
      source: line.source === 'LIVE' ? this.s.source.label : redactUrl(line.source),
      gaps: [],
      segments: [],
      runs: 0,
      reason: null,
      createdAt: now,
      updatedAt: now,
    };
    const armedLine: Line = {
      ...line,
      status: 'armed',
      clipId,
      reason: null,
      startTime: anchorMs ?? line.startTime,
      updatedAt: now,
    };
    const a: Active = {
      line: armedLine,
      clip,
      run: null,
      runNo: 0,
      nextIndex: 0,
      openSegments: [],
      restartTimer: null,
      backoffMs: this.s.restartMinMs,
      armedAt: now,
      stopping: false,
      chain: Promise.resolve(),
      input: null,
      anchorMs: anchorMs ?? null,
      prerollFirst: anchorMs !== undefined && anchorMs - now >= MIN_PREROLL_MS,
      mainInPoint: null,
      twinPending: null,
      followers: new Map(),
      mainStartedAt: null,
    };
    const holds = () => (incoming ? this.incoming === a : this.active === a);
    const release = () => {
      if (incoming && this.incoming === a) this.incoming = null;
      else if (!incoming && this.active === a) this.active = null;
    };
    if (incoming) this.incoming = a;
    else this.active = a;
    if (!incoming && this.noPreroll === line.id) this.noPreroll = null;
    let input: InputSpec;
    try {
      input = await this.inputFor(line);
    } catch (err) {
      release();
      throw new CommandError(`${lineName(line)} cannot start: ${errorText(err)}`, 'ESOURCE');
    }
    if (!holds() || this.closed) {
      release();
      throw new CommandError(`${lineName(line)} cannot start: the recorder is closing`, 'ECLOSED');
    }
    if (input.kind === 'testpattern' && this.s.tcMode === 'tod') input = { ...input, tcStart: timeOfDayTimecode(this.clock(), this.rate) };
    a.input = input;
    try {
      fs.mkdirSync(insideRoot(this.s.storageRoot, dir), { recursive: true });
      this.cat.transaction(() => {
        this.cat.putClip(clip);
        this.saveLine(armedLine);
      });
      writeSidecar(this.s.storageRoot, clip);
    } catch (err) {
      release();
      this.lastFailure = `cannot write to storage: ${errorText(err)}`;
      throw new CommandError(`${lineName(line)} cannot start: the storage root ${this.s.storageRoot} is not writable (${errorText(err)})`, 'ESTORAGE');
    }
    this.lastFailure = null;
    const ev = this.lineEvent('armed', armedLine, { requestId, clip });
    this.startRun(a);
    return ev;
  }

  private startRun(a: Active): void {
    a.restartTimer = null;
    if (a.stopping || this.closed || !a.input) return;
    a.runNo += 1;
    a.clip.runs = a.runNo;
    a.openSegments = [];
    const outDir = insideRoot(this.s.storageRoot, a.clip.dir);
    const run = new FfmpegRun(this.ffmpeg, {
      input: a.input,
      rate: this.rate,
      outDir,
      baseName: a.clip.name,
      container: this.s.container,
      segmentSeconds: this.s.segmentSeconds,
      startNumber: a.nextIndex,
      listFile: path.join(outDir, `.run-${a.runNo}.csv`),
      videoCodec: this.s.videoCodec,
      stallTimeoutMs: a.clip.startedAt === null ? Math.max(this.s.stallTimeoutMs, this.s.startTimeoutMs) : this.s.stallTimeoutMs,
      clock: this.clock,
      clockAnchorMs: a.anchorMs ?? undefined,
      prerollDiscard: a.prerollFirst && a.runNo === 1,
    });
    a.run = run;
    const dropPreroll = () => {
      if (run.prerollFile) fs.promises.unlink(path.join(outDir, run.prerollFile)).catch(() => undefined);
    };
    run.on('end', dropPreroll);
    // 'recording' is reported at the first progress report after the first segment opened,
    // when the start estimate is known (see FfmpegRun.startEstimate); later reports refine it
    let reported = false;
    let fallback: NodeJS.Timeout | null = null;
    const report = () => {
      if (reported || run.firstFrameAt === null) return;
      reported = true;
      if (fallback) clearTimeout(fallback);
      this.onFirstFrame(a, run, Math.min(run.firstFrameAt, run.startEstimate ?? Infinity));
    };
    run.on('first-frame', () => {
      dropPreroll();
      // after a pre-roll, the segment opens when its first keyframe arrives: no estimate needed
      if (run.prerollFile) this.guard(report);
      else fallback = setTimeout(() => this.guard(report), 1500);
    });
    run.on('progress', () =>
      this.guard(() => {
        if (!reported) report();
        else this.refineStart(a, run);
      }),
    );
    run.on('end', () => {
      if (fallback) clearTimeout(fallback);
    });
    run.on('segment-open', (seg: SegmentOpen) => this.guard(() => this.onSegmentOpen(a, run, seg)));
    run.on('end', (end: RunEnd) => this.guard(() => this.onRunEnd(a, run, end)));
    try {
      run.start();
      if (run.pid) this.cat.addProcess(run.pid, a.clip.id, outDir);
    } catch (err) {
      this.log.error(`ffmpeg could not start: ${errorText(err)}`);
    }
  }

  private onFirstFrame(a: Active, run: FfmpegRun, at: number): void {
    if (this.incoming === a && a.run === run) this.promote(a, at);
    if (this.active !== a || a.run !== run) return;
    a.backoffMs = this.s.restartMinMs;
    const gap = a.clip.gaps.find((g) => g.toMs === null);
    if (gap) gap.toMs = at;
    if (a.clip.startedAt === null) {
      a.clip.startedAt = at;
      a.clip.tcIn = this.s.tcMode === 'tod' ? timeOfDayTimecode(at, this.rate) : framesToTimecode(0, this.rate);
      this.adoptMainInPoint(a);
      a.line = { ...a.line, startTime: at, inPoint: a.clip.tcIn };
    }
    a.clip.updatedAt = at;
    const wasInterrupted = a.line.status === 'interrupted';
    a.line = { ...a.line, status: 'recording', reason: null, updatedAt: at };
    this.cat.transaction(() => {
      this.persistClip(a.clip);
      this.saveLine(a.line);
    });
    this.writeSidecarSafe(a.clip);
    this.emitEvent(this.lineEvent('recording', a.line, { clip: a.clip, reason: wasInterrupted ? 'media is arriving again' : undefined }));
    this.schedule();
  }

  /** A later progress report found an earlier first-frame time for this run: correct the clip's start. */
  private refineStart(a: Active, run: FfmpegRun): void {
    if (this.active !== a || a.run !== run || run.startEstimate === null) return;
    if (a.clip.runs === a.runNo && a.runNo === 1 && a.clip.startedAt !== null && run.startEstimate < a.clip.startedAt) {
      const at = run.startEstimate;
      a.clip.startedAt = at;
      if (this.s.tcMode === 'tod') a.clip.tcIn = timeOfDayTimecode(at, this.rate);
      a.line = { ...a.line, startTime: at, inPoint: a.clip.tcIn };
      this.cat.transaction(() => {
        this.persistClip(a.clip);
        this.saveLine(a.line);
      });
    } else {
      const gap = a.clip.gaps[a.clip.gaps.length - 1];
      if (gap && gap.toMs !== null && a.runNo > 1 && run.startEstimate < gap.toMs && run.startEstimate >= gap.fromMs) {
        gap.toMs = run.startEstimate;
        this.persistClip(a.clip);
      }
    }
  }

  private onSegmentOpen(a: Active, run: FfmpegRun, seg: SegmentOpen): void {
    if (a.run !== run) return;
    const prev = a.openSegments[a.openSegments.length - 1];
    a.openSegments.push(seg);
    a.nextIndex = Math.max(a.nextIndex, seg.index + 1);
    const record: Segment = {
      index: seg.index,
      file: seg.file,
      run: a.runNo,
      startSec: null,
      endSec: null,
      frames: null,
      bytes: 0,
      sha256: null,
      complete: false,
      wallStart: seg.at,
    };
    a.clip.segments.push(record);
    this.cat.putSegment(a.clip.id, record);
    if (prev) this.enqueue(a, () => this.finishSegment(a, run, prev.index, null));
  }

  /** Hash and time a closed segment; store it; rewrite the sidecar. */
  private async finishSegment(a: Active, run: FfmpegRun, index: number, lastFrames: number | null, complete = true): Promise<void> {
    const seg = a.clip.segments.find((s) => s.index === index);
    if (!seg) return;
    const file = path.join(insideRoot(this.s.storageRoot, a.clip.dir), seg.file);
    const listed = run.segmentList().find((l) => l.file === seg.file || path.basename(l.file) === seg.file);
    if (listed) {
      seg.startSec = listed.startSec;
      seg.endSec = listed.endSec;
    }
    let scanned: number | null = null;
    try {
      scanned = takeScan(seg, await scanSegment(file, a.clip.container === 'ts'));
    } catch (err) {
      this.log.warn(`segment ${seg.file} could not be read: ${errorText(err)}`);
    }
    if (scanned !== null) seg.frames = scanned;
    else if (lastFrames !== null) seg.frames = lastFrames;
    else if (listed) seg.frames = Math.max(0, Math.round((listed.endSec - listed.startSec) * this.rate.fps));
    else seg.frames = await countFramesWithFfmpeg(file, this.ffmpeg);
    seg.complete = complete && seg.sha256 !== null;
    this.cat.putSegment(a.clip.id, seg);
    this.totals(a.clip);
    a.clip.updatedAt = this.clock();
    this.persistClip(a.clip);
    this.writeSidecarSafe(a.clip);
  }

  private totals(clip: Clip): void {
    clip.frames = clip.segments.reduce((n, s) => n + (s.frames ?? 0), 0);
    clip.durationMs = Math.round(framesToMs(clip.frames, this.rate));
    clip.tcOut = clip.tcIn === null ? null : addFrames(clip.tcIn, clip.frames, this.rate);
  }

  /** After a run: the frames of its last segment, from ffmpeg's own count. */
  private lastSegmentFrames(a: Active, run: FfmpegRun, end: RunEnd): number | null {
    if (!end.clean || end.frames === null) return null;
    const last = a.openSegments[a.openSegments.length - 1];
    const list = run.segmentList();
    let before = 0;
    for (const s of a.openSegments) {
      if (s === last) break;
      const l = list.find((x) => path.basename(x.file) === s.file);
      if (!l) return null;
      before += Math.max(0, Math.round((l.endSec - l.startSec) * this.rate.fps));
    }
    return Math.max(0, end.frames - before);
  }

  private onRunEnd(a: Active, run: FfmpegRun, end: RunEnd): void {
    if (run.pid) this.cat.removeProcess(run.pid, a.clip.id);
    const last = a.openSegments[a.openSegments.length - 1];
    if (last) {
      const frames = this.lastSegmentFrames(a, run, end);
      const complete = end.clean || end.code === 0;
      this.enqueue(a, () => this.finishSegment(a, run, last.index, frames, complete));
    }
    if (a.run === run) a.run = null;
    if (!end.requested && !a.stopping && this.incoming === a) {
      // the pre-roll of the next line broke: it takes the channel at its start instead, from a fresh ffmpeg
      this.log.warn(`channel ${this.s.channel}: the pre-roll of ${lineName(a.line)} ended (${end.reason ?? 'ffmpeg ended'}); it starts at its start time instead`);
      this.noPreroll = a.line.id;
      this.enqueue(a, () => this.cancelIncoming());
      return;
    }
    if (end.requested || a.stopping || this.active !== a) return;
    const now = this.clock();
    const reason = end.reason ?? 'ffmpeg ended';
    if (reason === 'storage full' || reason.startsWith('permission denied')) {
      this.enqueue(a, () => this.failActive(a, `${reason} (${this.s.storageRoot})`));
      return;
    }
    if (a.clip.startedAt === null && now - a.armedAt >= this.s.startTimeoutMs) {
      this.enqueue(a, () => this.failActive(a, `no media from ${a.clip.source} within ${Math.round(this.s.startTimeoutMs / 1000)} s: ${reason}`));
      return;
    }
    if (a.clip.startedAt !== null && !a.clip.gaps.some((g) => g.toMs === null)) {
      const gap: Gap = { fromMs: now, toMs: null, reason, afterSegment: last ? last.index : null };
      a.clip.gaps.push(gap);
      a.line = { ...a.line, status: 'interrupted', reason, updatedAt: now };
      this.cat.transaction(() => {
        this.persistClip(a.clip);
        this.saveLine(a.line);
      });
      this.emitEvent(this.lineEvent('interrupted', a.line, { clip: a.clip, reason }));
    }
    // +-20 % jitter: channels that lost one camera together do not all knock at once
    const delay = Math.round(a.backoffMs * (0.8 + Math.random() * 0.4));
    a.backoffMs = Math.min(this.s.restartMaxMs, a.backoffMs * 2);
    this.log.warn(`channel ${this.s.channel}: ${reason}; restarting ffmpeg in ${delay} ms`);
    a.restartTimer = setTimeout(() => this.guard(() => this.startRun(a)), delay);
  }

  private async failActive(a: Active, reason: string): Promise<void> {
    if (this.active !== a) return;
    a.stopping = true;
    if (a.restartTimer) clearTimeout(a.restartTimer);
    if (a.run) await a.run.kill();
    const now = this.clock();
    a.clip.state = 'failed';
    a.clip.reason = reason;
    a.clip.stoppedAt = a.clip.startedAt === null ? null : now;
    this.closeOpenGap(a.clip, now);
    this.totals(a.clip);
    a.line = {
      ...a.line,
      status: 'failed',
      reason,
      stopTime: a.clip.stoppedAt,
      outPoint: a.clip.tcOut,
      curPoint: null,
      duration: a.clip.startedAt === null ? a.line.duration : framesToTimecode(a.clip.frames, this.rate),
      updatedAt: now,
    };
    this.cat.transaction(() => {
      this.persistClip(a.clip);
      this.saveLine(a.line);
    });
    this.writeSidecarSafe(a.clip);
    this.active = null;
    this.lastFailure = reason;
    this.emitEvent(this.lineEvent('failed', a.line, { clip: a.clip, reason }));
    this.schedule();
  }

  /**
   * The pre-rolled next line takes the channel: at its first frame (at), or at
   * its start + stopTailMs when no frame came. The line recording until then is
   * cut at that instant (handOver); one stopping already is left to its stop.
   */
  private promote(b: Active, at: number | null): void {
    if (this.incoming !== b) return;
    this.incoming = null;
    const a = this.active;
    this.active = b;
    if (a && !a.stopping) this.handOver(a, at ?? b.anchorMs ?? this.clock(), b);
  }

  /**
   * Stop a line that handed the channel over at `at`: it records on until the frame
   * at `at` is on disk (or stopTailMs), then is cut there, frame-exact where it can
   * be: at the next clip's first frame when it is found in this clip's tail
   * (cutByContent), else by the clocks. A planned stop of its own that comes first
   * is kept, unless the next line continues this one (continues): then nothing
   * may fall between them, and it records on to the next one's first frame.
   */
  private handOver(a: Active, at: number, b: Active): void {
    const next = b.line;
    a.stopping = true;
    if (a.restartTimer) clearTimeout(a.restartTimer);
    a.restartTimer = null;
    const own = a.clip.startedAt === null ? null : plannedStop(a.line, this.s.frameRate);
    const stopAt = own !== null && own <= at && !this.continues(b, own) ? own : at;
    const byInstant = stopAt !== own;
    const reason = byInstant ? `stopped at the start of ${lineName(next)}` : null;
    const done = (async () => {
      // the whole window cutByContent looks in is recorded past the clocks' cut before the stop: that cut was
      // measured up to 7 frames off under load (a pre-rolled line's start is when its first segment was noticed)
      const extra = byInstant ? HANDOVER_WINDOW_FRAMES : 0;
      while (!(await this.stopFrameOnDisk(a, stopAt, this.clock(), byInstant, extra))) await pause(STOP_POLL_MS);
      this.emitEvent(await this.stopActive(reason, undefined, stopAt, a, byInstant ? b : undefined));
    })()
      .catch((err) => this.log.error(`channel ${this.s.channel}: stopping ${lineName(a.line)} at the start of ${lineName(next)} failed: ${errorText(err)}`))
      .finally(() => this.handovers.delete(a));
    this.handovers.set(a, done);
  }

  /**
   * Whether the pre-rolling line `b` continues a line planned to stop at `own`:
   * it is to start at that instant (a frame later at most) or before. A stream
   * copy begins at a keyframe, up to a keyframe interval after the start time;
   * the line before then records on to that frame rather than stop at its plan
   * and leave the frames between in neither clip.
   */
  private continues(b: Active, own: number | null): boolean {
    return own !== null && b.anchorMs !== null && b.anchorMs <= own + framesToMs(1, this.rate);
  }

  /** The line that handed the channel over and is stopping, if `lineId` is one. */
  private handingOver(lineId: string): Active | undefined {
    for (const a of this.handovers.keys()) if (a.line.id === lineId) return a;
    return undefined;
  }

  /** Give up the pre-roll of the next line: its ffmpeg is stopped, its empty clip closed as failed, the line armed as before. */
  private async cancelIncoming(): Promise<void> {
    const b = this.incoming;
    if (!b) return;
    this.incoming = null;
    b.stopping = true;
    if (b.restartTimer) clearTimeout(b.restartTimer);
    b.restartTimer = null;
    if (b.run) await b.run.kill();
    await b.chain;
    const now = this.clock();
    b.clip.state = 'failed';
    b.clip.reason = 'pre-roll given up before the line started';
    b.clip.updatedAt = now;
    this.persistClip(b.clip);
    this.writeSidecarSafe(b.clip);
    const cur = this.list.byId(b.line.id);
    if (cur && cur.clipId === b.clip.id) this.saveLine({ ...cur, status: 'armed', clipId: null, updatedAt: now });
    this.schedule();
  }

  /**
   * Stop a recording and close its clip (the active one unless `target`). With
   * `plannedAt`, it is cut frame-exact at that instant where it can be; `next`:
   * it was handed over to that line at `plannedAt`.
   */
  private async stopActive(reason: string | null, requestId?: string, plannedAt?: number, target?: Active, next?: Active): Promise<ChannelEvent> {
    const a = target ?? this.active!;
    const byInstant = next !== undefined;
    let stopAt = this.clock();
    a.stopping = true;
    if (a.restartTimer) clearTimeout(a.restartTimer);
    a.restartTimer = null;
    if (a.run) await a.run.stop();
    await a.chain;
    if (plannedAt !== undefined) {
      let keep = this.exactStopFrames(a, plannedAt, byInstant);
      if (keep !== null && next) {
        const found = await this.cutByContent(a, next, keep);
        if (found !== null) {
          keep = found;
          plannedAt = this.alignNext(a, next, found);
        }
      }
      if (keep !== null && (await this.cutClip(a.clip, keep))) stopAt = plannedAt;
    }
    if (this.active === a) this.active = null;
    if (this.incoming === a) this.incoming = null;
    this.closeOpenGap(a.clip, stopAt);
    this.totals(a.clip);
    const recorded = a.clip.startedAt !== null && a.clip.frames > 0;
    a.clip.state = recorded ? 'closed' : 'failed';
    a.clip.stoppedAt = recorded ? stopAt : null;
    a.clip.reason = recorded ? reason : 'stopped before any media was recorded';
    a.clip.updatedAt = stopAt;
    a.line = recorded
      ? {
          ...a.line,
          status: 'stopped',
          stopTime: stopAt,
          outPoint: a.clip.tcOut,
          curPoint: null,
          duration: framesToTimecode(a.clip.frames, this.rate),
          reason,
          updatedAt: stopAt,
        }
      : { ...a.line, status: 'failed', reason: a.clip.reason, updatedAt: stopAt };
    this.cat.transaction(() => {
      this.persistClip(a.clip);
      this.saveLine(a.line);
    });
    this.writeSidecarSafe(a.clip);
    const ev = this.lineEvent(recorded ? 'stopped' : 'failed', a.line, { clip: a.clip, requestId, reason: a.line.reason ?? undefined });
    this.schedule();
    if (a.twinPending) {
      const pending = a.twinPending;
      const clip = a.clip;
      // after this stop's own event has gone out
      setImmediate(() =>
        this.guard(() => {
          const v = this.verifyTwin(clip, pending.summary, pending.main);
          if (v) this.emitEvent(v);
        }),
      );
    }
    return ev;
  }

  /**
   * Where the clip of `a` ends when `b` took the channel: the frames before b's
   * first frame, found in a's tail by content (handoverKeep), or null when it is
   * not found there (another encoding, a source that differs per client, files
   * gone). `a` has stopped; b records on, so its first segment is read while open.
   */
  private async cutByContent(a: Active, b: Active, clockKeep: number): Promise<number | null> {
    try {
      const first = inOrder(b.clip.segments)[0];
      if (!first || b.clip.container !== 'ts') return null;
      const bFile = path.join(insideRoot(this.s.storageRoot, b.clip.dir), first.file);
      const deadline = this.clock() + this.s.stopTailMs;
      let head: string[] | null;
      // its first three frames, once written (the segment is still open)
      while ((head = await videoFrameDigests(bFile, first.complete)) !== null && head.length < 3 && !first.complete && this.clock() < deadline) {
        await pause(STOP_POLL_MS);
      }
      if (head === null) return null;
      const aDir = insideRoot(this.s.storageRoot, a.clip.dir);
      const lo = clockKeep - HANDOVER_WINDOW_FRAMES;
      const hi = clockKeep + HANDOVER_WINDOW_FRAMES + 2;
      const tail: string[] = [];
      let tailStart: number | null = null;
      let at = 0;
      for (const seg of inOrder(a.clip.segments)) {
        if (seg.frames === null) return null;
        const end = at + seg.frames;
        if (end > lo && at <= hi) {
          const d = await videoFrameDigests(path.join(aDir, seg.file), true);
          if (d === null || d.length !== seg.frames) return null;
          if (tailStart === null) tailStart = at;
          tail.push(...d);
        }
        at = end;
      }
      if (tailStart === null) return null;
      return handoverKeep(tail, tailStart, head.slice(0, 3), clockKeep);
    } catch (err) {
      this.log.warn(`channel ${this.s.channel}: the cut at the start of ${lineName(b.line)} is read off the clocks (${errorText(err)})`);
      return null;
    }
  }

  /**
   * After a cut by content: the next clip begins at frame `keep` of the one
   * before, so its start (and, by time of day, its timecode in) is taken from
   * there, and the one's out point is the other's in point. Returns that instant.
   * An Aux twin does the same from its own clip before, whose in point is its
   * main's: the two servers find the same frame, so they reach the same in point
   * (its main's corrected one, when it comes, is within two frames and taken).
   */
  private alignNext(a: Active, b: Active, keep: number): number {
    const at = Math.round(a.clip.startedAt! + framesToMs(keep, this.rate));
    const c = b.clip;
    if (c.startedAt === null || c.runs !== 1 || c.gaps.length > 0 || c.state !== 'recording') return at;
    const tcIn = this.s.tcMode === 'tod' && a.clip.tcIn !== null ? addFrames(a.clip.tcIn, keep, this.rate) : c.tcIn;
    if (at === c.startedAt && tcIn === c.tcIn) return at;
    c.startedAt = at;
    c.tcIn = tcIn;
    c.updatedAt = this.clock();
    b.line = { ...b.line, startTime: at, inPoint: tcIn, updatedAt: c.updatedAt };
    this.cat.transaction(() => {
      this.persistClip(c);
      this.saveLine(b.line);
    });
    this.writeSidecarSafe(c);
    // told, so a Backup=On line's Aux twin takes the corrected in point (backup-link mirrors it)
    this.emitEvent(this.lineEvent('updated', b.line, { clip: c, reason: `in point taken from the cut of ${lineName(a.line)}` }));
    return at;
  }

  /**
   * The frames a clip stopped at `stopAt` holds, when its stop can be made
   * frame-exact: MPEG-TS, one unbroken run, and a tail to cut (stopTailMs).
   * A duration gives them directly; a stop time counts from the timecode in
   * (an Aux twin has the main's), or from the first frame without one.
   */
  private exactStopFrames(a: Active, stopAt: number, byInstant = false): number | null {
    const c = a.clip;
    if (this.s.stopTailMs <= 0 || c.container !== 'ts' || c.startedAt === null || c.runs !== 1 || c.gaps.length > 0) return null;
    let frames: number;
    if (!byInstant && a.line.stopTime === null && a.line.duration) {
      frames = timecodeToFrames(a.line.duration, this.rate);
    } else if (this.s.tcMode === 'tod' && c.tcIn !== null) {
      const day = msToFrames(86400000, this.rate);
      frames = (((timecodeToFrames(timeOfDayTimecode(stopAt, this.rate), this.rate) - timecodeToFrames(c.tcIn, this.rate)) % day) + day) % day;
    } else {
      // an Aux twin counts from the main's first frame, as the main does (read off two clocks, they may differ by a frame)
      const main = a.mainStartedAt;
      const ref = main !== null && Math.abs(main - c.startedAt) <= 2 * framesToMs(1, this.rate) ? main : c.startedAt;
      frames = msToFrames(stopAt - ref, this.rate);
    }
    return frames > 0 ? frames : null;
  }

  /**
   * Whether a recording at its planned stop can be stopped now: the frame after
   * its last one is on disk (frame-exact stop), it cannot be cut frame-exact, or
   * it has waited stopTailMs for that frame.
   */
  private async stopFrameOnDisk(a: Active, stopAt: number, now: number, byInstant = false, extra = 0): Promise<boolean> {
    const keep = this.exactStopFrames(a, stopAt, byInstant);
    if (keep === null || now >= stopAt + this.s.stopTailMs) return true;
    let frames = 0;
    for (const seg of a.clip.segments) {
      if (seg.frames !== null) {
        frames += seg.frames;
        continue;
      }
      let f = a.followers.get(seg.file);
      if (!f) a.followers.set(seg.file, (f = new TsFileFollower(path.join(insideRoot(this.s.storageRoot, a.clip.dir), seg.file))));
      frames += (await f.frames()) ?? 0;
    }
    return frames > keep + extra;
  }

  /**
   * Cut a closed recording to its first `keep` frames: the segment holding
   * frame `keep` is truncated after it, later segments are deleted. Returns
   * whether the clip now ends there (false: it holds no more than that, or a
   * segment could not be cut; then it is left as recorded).
   */
  private async cutClip(clip: Clip, keep: number): Promise<boolean> {
    if (clip.frames <= keep) return false;
    const dir = insideRoot(this.s.storageRoot, clip.dir);
    const segs = inOrder(clip.segments);
    let before = 0;
    const dropped: Segment[] = [];
    for (const seg of segs) {
      if (before >= keep) {
        dropped.push(seg);
        continue;
      }
      const frames = seg.frames ?? 0;
      if (before + frames > keep) {
        const file = path.join(dir, seg.file);
        try {
          if (!(await truncateTsAfterFrames(file, keep - before))) return false;
          seg.frames = takeScan(seg, await scanSegment(file, true)) ?? keep - before;
          if (seg.startSec !== null) seg.endSec = seg.startSec + framesToMs(seg.frames, this.rate) / 1000;
        } catch (err) {
          this.log.warn(`channel ${this.s.channel}: the tail of ${seg.file} after the planned stop could not be cut: ${errorText(err)}`);
          return false;
        }
        this.cat.putSegment(clip.id, seg);
      }
      before += seg.frames ?? 0;
    }
    for (const seg of dropped) {
      try {
        fs.rmSync(path.join(dir, seg.file), { force: true });
      } catch (err) {
        this.log.warn(`channel ${this.s.channel}: ${seg.file}, recorded after the planned stop, could not be deleted: ${errorText(err)}`);
      }
      this.cat.deleteSegment(clip.id, seg.index);
    }
    clip.segments = clip.segments.filter((s) => !dropped.includes(s));
    this.totals(clip);
    return true;
  }

  private async suspendActive(): Promise<void> {
    const a = this.active!;
    const at = this.clock();
    a.stopping = true;
    if (a.restartTimer) clearTimeout(a.restartTimer);
    if (a.run) await a.run.stop();
    await a.chain;
    this.active = null;
    if (a.clip.startedAt === null) {
      // nothing recorded yet: leave the line as it was before the start
      a.clip.state = 'failed';
      a.clip.reason = 'recorder restarted before any media was recorded';
      a.line = { ...a.line, status: a.line.start === 'time' ? 'armed' : 'ready', clipId: null, updatedAt: at };
    } else {
      a.clip.state = 'suspended';
      if (!a.clip.gaps.some((g) => g.toMs === null)) {
        const lastSeg = a.clip.segments[a.clip.segments.length - 1];
        a.clip.gaps.push({ fromMs: at, toMs: null, reason: 'recorder restarted (redeploy or Node-RED restart)', afterSegment: lastSeg ? lastSeg.index : null });
      }
    }
    a.clip.updatedAt = at;
    this.cat.transaction(() => {
      this.persistClip(a.clip);
      this.saveLine(a.line);
    });
    this.writeSidecarSafe(a.clip);
  }

  private resumeSuspended(clip: Clip, line: Line): void {
    const stopAt = plannedStop(line, this.s.frameRate);
    const now = this.clock();
    if (stopAt !== null && stopAt <= now) {
      // its planned end passed while we were away: close it at the suspension
      const gap = clip.gaps.find((g) => g.toMs === null);
      const at = gap ? gap.fromMs : clip.updatedAt;
      if (gap) gap.toMs = at;
      this.totals(clip);
      clip.state = 'closed';
      clip.stoppedAt = at;
      const l: Line = { ...line, status: 'stopped', stopTime: at, outPoint: clip.tcOut, duration: framesToTimecode(clip.frames, this.rate), curPoint: null, updatedAt: now };
      this.cat.transaction(() => {
        this.persistClip(clip);
        this.saveLine(l);
      });
      this.writeSidecarSafe(clip);
      this.emitEvent(this.lineEvent('stopped', l, { clip, reason: 'planned stop passed while the recorder was restarting' }));
      return;
    }
    clip.state = 'recording';
    const a: Active = {
      line: { ...line, status: 'interrupted', reason: 'resuming after a restart', updatedAt: now },
      clip,
      run: null,
      runNo: clip.runs,
      nextIndex: clip.segments.reduce((m, s) => Math.max(m, s.index + 1), 0),
      openSegments: [],
      restartTimer: null,
      backoffMs: this.s.restartMinMs,
      armedAt: now,
      stopping: false,
      chain: Promise.resolve(),
      input: null,
      anchorMs: null,
      prerollFirst: false,
      mainInPoint: null,
      twinPending: null,
      followers: new Map(),
      mainStartedAt: null,
    };
    this.active = a;
    this.persistClip(clip);
    this.saveLine(a.line);
    this.log.info(`channel ${this.s.channel}: resuming ${lineName(line)} in clip ${clip.name}`);
    this.inputFor(line)
      .then((input) => {
        if (this.active !== a || this.closed) return;
        if (input.kind === 'testpattern' && this.s.tcMode === 'tod') input = { ...input, tcStart: timeOfDayTimecode(this.clock(), this.rate) };
        a.input = input;
        this.startRun(a);
      })
      .catch((err) => this.guard(() => this.failActive(a, `cannot resume: ${errorText(err)}`)));
  }

  /** A clip whose recording was cut by a crash: hash what is on disk and close it as interrupted. */
  private async recoverInterrupted(clip: Clip, line: Line | undefined): Promise<void> {
    const dir = insideRoot(this.s.storageRoot, clip.dir);
    const listed = new Map<string, { startSec: number; endSec: number }>();
    let files: string[] = [];
    try {
      files = fs.readdirSync(dir);
    } catch {
      files = [];
    }
    for (const f of files.filter((f) => /^\.run-\d+\.csv$/.test(f))) {
      for (const e of parseSegmentList(fs.readFileSync(path.join(dir, f), 'utf8'))) listed.set(path.basename(e.file), e);
    }
    const escaped = clip.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const segRe = new RegExp(`^${escaped}_(\\d+)\\.[a-z0-9]+$`);
    const known = new Map(clip.segments.map((s) => [s.file, s]));
    const onDisk = files.filter((f) => segRe.test(f)).sort();
    for (const f of onDisk) {
      const index = Number(segRe.exec(f)![1]);
      const seg: Segment = known.get(f) ?? { index, file: f, run: clip.runs, startSec: null, endSec: null, frames: null, bytes: 0, sha256: null, complete: false, wallStart: null };
      const l = listed.get(f);
      let scanned: number | null = null;
      try {
        scanned = takeScan(seg, await scanSegment(path.join(dir, f), clip.container === 'ts'));
      } catch {
        /* unreadable: leave unhashed */
      }
      if (l) {
        seg.startSec = l.startSec;
        seg.endSec = l.endSec;
        seg.complete = true;
      } else if (!seg.complete) {
        seg.complete = false;
      }
      if (scanned !== null) seg.frames = scanned;
      else if (l) seg.frames = Math.max(0, Math.round((l.endSec - l.startSec) * this.rate.fps));
      else seg.frames = await countFramesWithFfmpeg(path.join(dir, f), this.ffmpeg);
      known.set(f, seg);
    }
    clip.segments = [...known.values()].filter((s) => onDisk.includes(s.file)).sort((x, y) => x.index - y.index);
    this.totals(clip);
    const lastSeg = clip.segments[clip.segments.length - 1];
    const reason = clip.state === 'suspended' ? 'its rec-list line is gone' : 'Node-RED stopped unexpectedly while recording';
    const endGuess = lastSeg?.wallStart != null ? lastSeg.wallStart + framesToMs(lastSeg.frames ?? 0, this.rate) : clip.updatedAt;
    this.closeOpenGap(clip, endGuess);
    clip.state = 'interrupted';
    clip.reason = reason;
    clip.stoppedAt = clip.startedAt === null ? null : Math.round(endGuess);
    clip.updatedAt = this.clock();
    this.cat.transaction(() => {
      for (const s of clip.segments) this.cat.putSegment(clip.id, s);
      this.persistClip(clip);
    });
    this.writeSidecarSafe(clip);
    if (line) {
      const l: Line = {
        ...line,
        status: 'interrupted',
        reason,
        stopTime: clip.stoppedAt,
        outPoint: clip.tcOut,
        curPoint: null,
        duration: framesToTimecode(clip.frames, this.rate),
        updatedAt: this.clock(),
      };
      this.saveLine(l);
      this.emitEvent(this.lineEvent('interrupted', l, { clip, reason }));
    }
  }

  /** ffmpeg processes a crashed Node-RED left behind (if the reaper could not end them). */
  private killStaleProcesses(): void {
    for (const p of this.cat.processes()) {
      const clip = this.cat.clip(p.clipId);
      if (clip && (clip.serverId !== this.s.serverId || clip.channel !== this.s.channel)) continue;
      try {
        const cmdline = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
        if (cmdline.includes(p.marker)) {
          process.kill(p.pid, 'SIGKILL');
          this.log.warn(`killed ffmpeg ${p.pid} left over from before a crash`);
        }
      } catch {
        /* gone already */
      }
      this.cat.removeProcess(p.pid, p.clipId);
    }
  }

  // ---------------------------------------------------------------- timed lines

  /** On open: timed lines whose start passed while Node-RED was down. */
  private catchUpTimedLines(): void {
    const now = this.clock();
    for (const line of this.list.all()) {
      if (line.status !== 'armed' || line.clipId !== null || line.start !== 'time' || line.startTime === null) continue;
      if (line.startTime > now) continue;
      const stop = plannedStop(line, this.s.frameRate);
      if (stop !== null && stop <= now) {
        const l: Line = { ...line, status: 'failed', reason: 'missed: the recorder was not running during the planned time', updatedAt: now };
        this.saveLine(l);
        this.emitEvent(this.lineEvent('failed', l, { reason: l.reason! }));
      }
    }
  }

  /**
   * When a timed line's ffmpeg is started: ahead by the pre-roll on a free channel, and
   * on a busy one too (back-to-back: it takes over at its first frame); at its start
   * when the line recording is stopping, a pre-roll is under way for another line, or
   * its own pre-roll failed or came too late.
   */
  private startDue(line: TimedLine): number {
    const a = this.active;
    if (a && (a.stopping || this.incoming || this.noPreroll === line.id)) return line.startTime;
    return line.startTime - this.s.prerollMs;
  }

  /** The pre-rolling next line, if `lineId` is it. */
  private isIncoming(lineId: string): Active | null {
    return this.incoming && this.incoming.line.id === lineId ? this.incoming : null;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    // the line recording stopped (or failed) while the next one was pre-rolling: that one has the channel now
    if (!this.active && this.incoming) this.promote(this.incoming, null);
    const now = this.clock();
    let due = Infinity;
    const a = this.active;
    for (const line of this.list.all()) {
      if (waitingTimed(line)) due = Math.min(due, this.startDue(line));
    }
    // a pre-rolled line whose first frame has not come takes the channel at its start + the tail
    const b = this.incoming;
    if (b && b.anchorMs !== null) due = Math.min(due, b.anchorMs + this.s.stopTailMs);
    if (a && a.clip.startedAt !== null) {
      const stop = plannedStop(a.line, this.s.frameRate);
      // past the planned stop, a frame-exact stop looks for its last frame on disk every STOP_POLL_MS
      if (stop !== null) due = Math.min(due, stop > now ? stop : now + STOP_POLL_MS);
    }
    if (due === Infinity) return;
    const delay = Math.max(0, Math.min(due - now, 60000));
    this.timer = setTimeout(() => this.guard(() => this.onTimer()), delay);
  }

  private async onTimer(): Promise<void> {
    this.timer = null;
    const now = this.clock();
    const a = this.active;
    if (a && a.clip.startedAt !== null && !a.stopping) {
      const stop = plannedStop(a.line, this.s.frameRate);
      // a line the pre-rolling one continues is stopped by the hand-over, at that one's first frame
      const continued = this.incoming !== null && this.continues(this.incoming, stop);
      if (stop !== null && !continued && stop <= now + 5 && (await this.stopFrameOnDisk(a, stop, now))) {
        if (this.active === a && !a.stopping) this.emitEvent(await this.stopActive(null, undefined, stop));
      }
    }
    const b = this.incoming;
    if (b && b.anchorMs !== null && b.anchorMs + this.s.stopTailMs <= now + 5) this.promote(b, b.anchorMs);
    const busy = this.active !== null && !this.active.stopping;
    const due = this.list
      .all()
      .filter(waitingTimed)
      .filter((l) => this.startDue(l) <= now + 5)
      .sort((x, y) => x.startTime - y.startTime)[0];
    if (due && busy && !this.incoming && this.noPreroll !== due.id && due.startTime > now + 5) {
      if (due.startTime - now >= MIN_PREROLL_MS) {
        // back-to-back: the next line's ffmpeg starts now, while this one records; it takes over at its first frame
        try {
          this.emitEvent(await this.startLine(this.list.byId(due.id)!, undefined, due.startTime, true));
        } catch (err) {
          this.log.warn(`channel ${this.s.channel}: the pre-roll of ${lineName(due)} could not start (${errorText(err)}); it starts at its start time instead`);
          this.noPreroll = due.id;
        }
      } else {
        this.noPreroll = due.id; // too late to pre-roll: it takes the channel at its start
      }
    } else if (due && (!busy || due.startTime <= now + 5)) {
      if (this.active && !this.active.stopping) {
        // a timed line takes the channel from the one still recording (back-to-back schedule);
        // one whose planned end has come (its tail still running) ends there, frame-exact
        const stop = this.active.clip.startedAt === null ? null : plannedStop(this.active.line, this.s.frameRate);
        if (stop !== null && stop <= now + 5) this.emitEvent(await this.stopActive(null, undefined, stop));
        else this.emitEvent(await this.stopActive(`stopped at the start of ${lineName(due)}`));
      }
      if (!this.active) {
        try {
          this.emitEvent(await this.startLine(this.list.byId(due.id)!, undefined, due.startTime));
        } catch (err) {
          const l: Line = { ...this.list.byId(due.id)!, status: 'failed', reason: errorText(err), updatedAt: this.clock() };
          this.saveLine(l);
          this.lastFailure = l.reason;
          this.emitEvent(this.lineEvent('failed', l, { reason: l.reason! }));
        }
      }
    }
    this.schedule();
  }

  // ---------------------------------------------------------------- helpers

  private curPoint(a: Active): string | null {
    if (a.clip.startedAt === null) return null;
    return framesToTimecode(msToFrames(this.clock() - a.clip.startedAt, this.rate), this.rate);
  }

  private present(line: Line): PresentedLine {
    const a = this.active;
    if (a && a.line.id === line.id) return this.presentFresh(line, this.curPoint(a));
    let p = this.presented.get(line);
    if (!p) {
      p = this.presentFresh(line, line.curPoint);
      this.presented.set(line, p);
    }
    return p;
  }

  private presentFresh(line: Line, curPoint: string | null): PresentedLine {
    return {
      ...line,
      curPoint,
      startTimeTC: line.startTime === null ? null : timeOfDayTimecode(line.startTime, this.rate),
      stopTimeTC: line.stopTime === null ? null : timeOfDayTimecode(line.stopTime, this.rate),
    };
  }

  private saveLine(line: Line): void {
    this.list.put(line);
    if (this.active && this.active.line.id === line.id) this.active.line = line;
    this.cat.putLine(this.s.serverId, this.s.channel, line);
  }

  /** Keep a planned rec-list; only the lines that changed (content or number) are written. */
  private commitList(lines: Line[]): void {
    this.cat.putLines(this.s.serverId, this.s.channel, this.list.changedIn(lines));
    this.list.commit(lines);
    if (this.active) {
      const l = lines.find((x) => x.id === this.active!.line.id);
      if (l) this.active.line = l;
    }
  }

  private persistClip(clip: Clip): void {
    this.cat.putClip(clip);
  }

  private retitleClip(line: Line): void {
    const clip = this.cat.clip(line.clipId!);
    if (!clip) return;
    clip.title = line.title;
    clip.attributes = { ...line.attributes };
    clip.updatedAt = this.clock();
    this.persistClip(clip);
    this.writeSidecarSafe(clip);
  }

  private closeOpenGap(clip: Clip, at: number): void {
    for (const g of clip.gaps) if (g.toMs === null) g.toMs = Math.round(at);
  }

  /**
   * Rewrite a clip's sidecar. While it records, at most every SIDECAR_INTERVAL_MS
   * (the catalogue has every segment at once; a sidecar of a long clip is large);
   * every change of state is written at once.
   */
  private writeSidecarSafe(clip: Clip): void {
    const now = this.clock();
    if (clip.state === 'recording') {
      const last = this.sidecarWritten.get(clip.id);
      if (last && last.state === 'recording' && now - last.at < SIDECAR_INTERVAL_MS) return;
    }
    this.sidecarWritten.set(clip.id, { at: now, state: clip.state });
    if (clip.state !== 'recording') this.sidecarWritten.delete(clip.id);
    try {
      writeSidecar(this.s.storageRoot, clip);
    } catch (err) {
      this.log.warn(`sidecar of clip ${clip.name} not written: ${errorText(err)}`);
    }
  }

  private enqueue(a: Active, fn: () => Promise<void> | void): void {
    a.chain = a.chain.then(() => fn()).catch((err) => this.log.error(`channel ${this.s.channel}: ${errorText(err)}`));
  }

  /** Run a callback from a timer or a child process; nothing may escape into Node-RED. */
  private guard(fn: () => unknown): void {
    try {
      const r = fn();
      if (r && typeof (r as Promise<unknown>).catch === 'function') {
        (r as Promise<unknown>).catch((err) => this.log.error(`channel ${this.s.channel}: ${errorText(err)}`));
      }
    } catch (err) {
      this.log.error(`channel ${this.s.channel}: ${errorText(err)}`);
    }
  }

  private reclistEvent(requestId?: string): ChannelEvent {
    return { event: 'reclist', server: this.s.serverId, channel: this.s.channel, at: this.clock(), lines: this.lines(), requestId };
  }

  private lineEvent(event: LineEventName, line: Line, extra: { clip?: Clip; reason?: string; requestId?: string } = {}): ChannelEvent {
    const at = this.clock();
    const ev: ChannelEvent = { event, server: this.s.serverId, channel: this.s.channel, at, line: copyLine(this.present(line)) };
    if (line.backup === 'on') ev.backupTarget = this.s.backup ? { ...this.s.backup } : null;
    if (extra.clip) ev.clip = structuredClone(extra.clip);
    if (extra.reason) ev.reason = extra.reason;
    if (extra.requestId) ev.requestId = extra.requestId;
    try {
      this.cat.addEvent({
        ts: at,
        serverId: this.s.serverId,
        channel: this.s.channel,
        kind: `line.${event}`,
        lineId: line.id,
        clipId: extra.clip?.id ?? line.clipId,
        data: { status: line.status, title: line.title, reason: extra.reason ?? null },
      });
    } catch (err) {
      this.log.warn(`event not logged: ${errorText(err)}`);
    }
    return ev;
  }

  /** Events that happen by themselves (not as the answer to a command). */
  private emitEvent(ev: ChannelEvent): void {
    this.emit('event', ev);
  }
}

/** A line a message may carry: consumers downstream may change it without touching the rec-list. */
function copyLine(l: PresentedLine): PresentedLine {
  return { ...l, attributes: { ...l.attributes }, origin: l.origin ? { ...l.origin } : null };
}

/** Attributes as the main has them: keys the main dropped are dropped here too. */
function mergeAttributes(current: Record<string, AttributeValue>, main: Record<string, AttributeValue>): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = { ...main };
  for (const k of Object.keys(current)) if (!(k in main)) out[k] = null;
  return out;
}

function lineName(line: Line): string {
  return `line ${line.n} ("${line.title}")`;
}


