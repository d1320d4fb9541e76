/**
 * One recording channel: its rec-list, its clips and the ffmpeg runs that record
 * them, its timed starts and stops, and recovery after a restart or a crash.
 * The recorder node only reads its config, calls this, and maps the results.
 *
 * This is the channel's public face: its commands and its state (state.ts).
 * The work it orchestrates is in the modules beside it (see context.ts).
 */
import { EventEmitter } from 'node:events';
import { Clip, TwinCheck } from '../model/clip';
import { CommandError, errorText } from '../model/errors';
import { Line, LineStatus, plannedStop, RecList } from '../model/reclist';
import { Command, LineInput, parseCommand } from '../model/commands';
import { lineName } from './context';
import { ChannelState } from './state';
import { applyMirrorMessage } from './aux-mirror';
import { recordTwinResult } from './aux-twin';
import { cancelIncoming, handingOver, isIncoming, stopActive } from './cuts';
import { channelStatus, lineEvent, presentLines, reclistEvent } from './presentation';
import { recoverInterrupted, killStaleProcesses, resumeSuspended, suspendActive } from './recovery';
import { startRecording } from './run';
import type { SoftSettings } from './parking';
import { checkSource } from './sources';
import { catchUpTimedLines } from './schedule';
import {
  AuxUpdate,
  ChannelDeps,
  ChannelEvent,
  ChannelSettings,
  ChannelStatus,
  LineControl,
  LineRef,
  PresentedLine,
  ResolvedChannelSettings,
  SourceProvider,
} from './types';

export class RecorderChannel extends EventEmitter implements LineControl {
  /** The channel's settings, defaults filled in. */
  readonly settings: ResolvedChannelSettings;
  private readonly ctx: ChannelState;

  constructor(settings: ChannelSettings, deps: ChannelDeps) {
    super();
    this.ctx = new ChannelState(settings, deps, this);
    this.settings = this.ctx.settings;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Load the rec-list, recover from an unclean stop, resume a suspended recording, arm timers. */
  async open(): Promise<void> {
    const { serverId, channel } = this.ctx.settings;
    killStaleProcesses(this.ctx);
    this.ctx.list = new RecList({ frameRate: this.ctx.settings.frameRate, allowAux: this.ctx.settings.allowAux }, this.ctx.cat.lines(serverId, channel));
    this.ctx.list.setActive(this.ctx.active ? this.ctx.active.line.id : null);
    for (const clip of this.ctx.cat.clipsInState(serverId, channel, ['recording', 'suspended'])) {
      const line = this.ctx.list.byId(clip.lineId);
      if (clip.state === 'recording' || !line) {
        await recoverInterrupted(this.ctx, clip, line);
      } else {
        resumeSuspended(this.ctx, clip, line);
      }
    }
    // lines left active without a clip (crash between arm and first write)
    for (const line of this.ctx.list.all()) {
      if ((line.status === 'recording' || line.status === 'interrupted') && (!this.ctx.active || this.ctx.active.line.id !== line.id)) {
        const l = {
          ...line,
          status: 'interrupted' as LineStatus,
          reason: line.reason ?? 'Node-RED stopped while this line was recording',
          updatedAt: this.ctx.clock(),
        };
        this.ctx.saveLine(l);
      }
    }
    catchUpTimedLines(this.ctx);
    this.ctx.schedule();
  }

  /**
   * Stop everything this channel runs. When the node is only being restarted
   * (redeploy, Node-RED restart), a recording is suspended and resumes in the same
   * clip when the channel opens again; when the node is removed it is stopped.
   */
  async close(removed: boolean): Promise<void> {
    this.ctx.closed = true;
    if (this.ctx.timer) clearTimeout(this.ctx.timer);
    this.ctx.timer = null;
    await cancelIncoming(this.ctx);
    await Promise.all([...this.ctx.handovers.values()]);
    const a = this.ctx.active;
    if (!a) return;
    if (removed) {
      await stopActive(this.ctx, 'stopped because the recorder node was removed');
    } else {
      await suspendActive(this.ctx);
    }
  }

  /**
   * A new node takes this running channel over (a deploy that changed nothing
   * that needs a new ffmpeg): from now on its source provider, orphan test, log
   * and soft settings (lib/recorder/parking.ts) are the new node's. Nothing that
   * records is touched.
   */
  rebind(next: { source: SourceProvider; isOrphan?: ChannelSettings['isOrphan']; log: ChannelDeps['log']; soft?: SoftSettings }): void {
    Object.assign(this.ctx.settings, next.soft ?? {});
    this.ctx.settings.source = next.source;
    if (next.isOrphan) this.ctx.settings.isOrphan = next.isOrphan;
    this.ctx.log = next.log;
  }

  /**
   * The process ends with this channel still running (parked by a stop that was
   * not a deploy): its ffmpeg processes end with it, and the next start recovers
   * the clip as after a crash.
   */
  killRuns(): void {
    for (const a of [this.ctx.active, this.ctx.incoming]) void a?.run?.kill().catch(() => undefined);
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
      this.ctx.log.warn(`a listener of this channel failed: ${errorText(err)}`);
    }
  }

  private async executeCommand(raw: unknown): Promise<ChannelEvent[]> {
    if (this.ctx.closed) throw new CommandError('the recorder is closing; try again when it has restarted', 'ECLOSED');
    const cmd: Command = parseCommand(raw);
    const now = this.ctx.clock();
    const rid = cmd.requestId;
    switch (cmd.command) {
      case 'list':
      case 'get': {
        return [reclistEvent(this.ctx, rid)];
      }
      case 'add': {
        checkSource(cmd.line?.source);
        const { line, renumbered } = this.ctx.list.planAdd(cmd.line ?? {}, now);
        const evs = this.ctx.cat.transaction(() => {
          this.ctx.commitList(renumbered);
          const e = [lineEvent(this.ctx, 'added', line, { requestId: rid })];
          if (line.status === 'armed') e.push(lineEvent(this.ctx, 'armed', line, { requestId: rid }));
          return e;
        });
        if (line.start === 'time') this.ctx.schedule();
        return evs;
      }
      case 'update': {
        if (cmd.line?.source !== undefined) checkSource(cmd.line.source);
        const before = cmd.line ? this.ctx.list.find(cmd.line, 'update') : undefined;
        let plan = this.ctx.list.planUpdate(cmd.line ?? {}, now);
        if (before && isIncoming(this.ctx, before.id)) {
          // a line pre-rolling to take over: its pre-roll is given up (the schedule starts a new one if still in time)
          await cancelIncoming(this.ctx);
          plan = this.ctx.list.planUpdate(cmd.line ?? {}, this.ctx.clock());
        }
        const { line, renumbered } = plan;
        const evs = this.ctx.cat.transaction(() => {
          this.ctx.commitList(renumbered);
          if (this.ctx.active && this.ctx.active.line.id === line.id) {
            this.ctx.active.line = line;
            Object.assign(this.ctx.active.clip, { title: line.title, attributes: { ...line.attributes }, updatedAt: now });
            this.ctx.persistClip(this.ctx.active.clip);
          } else if (line.clipId && line.status === 'stopped') {
            this.ctx.retitleClip(line);
          }
          const e = [lineEvent(this.ctx, 'updated', line, { requestId: rid })];
          if (before && before.status !== 'armed' && line.status === 'armed') e.push(lineEvent(this.ctx, 'armed', line, { requestId: rid }));
          return e;
        });
        const u = cmd.line!;
        if (u.start !== undefined || u.startTime !== undefined || u.stopTime !== undefined || u.duration !== undefined) this.ctx.schedule();
        return evs;
      }
      case 'remove': {
        let plan = this.ctx.list.planRemove(cmd.line ?? {});
        if (handingOver(this.ctx, plan.line.id))
          throw new CommandError(`${lineName(plan.line)} is stopping at the start of the next line; remove it once it has stopped`, 'EBUSY');
        if (isIncoming(this.ctx, plan.line.id)) {
          await cancelIncoming(this.ctx);
          plan = this.ctx.list.planRemove(cmd.line ?? {});
        }
        const { line, renumbered } = plan;
        const ev = this.ctx.cat.transaction(() => {
          this.ctx.cat.putLines(this.ctx.settings.serverId, this.ctx.settings.channel, this.ctx.list.changedIn(renumbered), line.id);
          this.ctx.list.commit(renumbered);
          return lineEvent(this.ctx, 'removed', line, { requestId: rid });
        });
        this.ctx.schedule();
        return [ev];
      }
      case 'start': {
        const line = this.ctx.list.checkStart(cmd.line);
        // a Backup=On line starts at a planned instant shortly ahead, that its Aux twin shares
        const anchor = line.backup === 'on' ? now + this.ctx.settings.prerollMs : undefined;
        return [await startRecording(this.ctx, line, rid, anchor)];
      }
      case 'stop': {
        // an Aux line stops with its main line; only an orphan (main offline) may be stopped here, with force
        const named = cmd.line && (cmd.line.id !== undefined || cmd.line.n !== undefined) ? this.ctx.list.find(cmd.line, 'stop') : undefined;
        let by: 'user' | 'link' = 'user';
        if (named && named.backup === 'aux' && named.origin) {
          const orphan = this.ctx.settings.isOrphan(named.origin);
          if (orphan && cmd.force) by = 'link';
          else if (orphan)
            throw new CommandError(
              `${lineName(named)} is an Aux line of ${named.origin.server}, which is offline: send the stop with "force": true to stop this orphan here`,
              'EPERM',
            );
        }
        if (named && handingOver(this.ctx, named.id)) {
          return [lineEvent(this.ctx, 'updated', named, { requestId: rid, reason: 'stop already under way (the next line has taken the channel)' })];
        }
        // a line pre-rolling to take over: its pre-roll is given up, then it is disarmed below
        if (named && isIncoming(this.ctx, named.id)) await cancelIncoming(this.ctx);
        const line = this.ctx.list.checkStop(cmd.line, by);
        const a = this.ctx.active;
        if (a && a.line.id === line.id) {
          if (line.backup === 'on' && a.clip.startedAt !== null && !a.stopping) {
            // stop at a planned instant shortly ahead, shared with the Aux twin through the line's stop time
            const stopAt = now + this.ctx.settings.syncStopLeadMs;
            const planned = plannedStop(a.line, this.ctx.settings.frameRate);
            if (planned !== null && planned <= stopAt) return [lineEvent(this.ctx, 'updated', a.line, { requestId: rid, reason: 'stop already planned' })];
            const next: Line = { ...a.line, stopTime: stopAt, duration: null, updatedAt: now };
            this.ctx.saveLine(next);
            this.ctx.schedule();
            return [lineEvent(this.ctx, 'updated', next, { requestId: rid, reason: 'stop planned (synchronous with the backup)' })];
          }
          return [await stopActive(this.ctx, null, rid)];
        }
        if (line.status === 'interrupted') {
          // cut by a crash and not recording: close it for good; its Aux twin stops with it
          const clip = line.clipId ? this.ctx.cat.clip(line.clipId) : undefined;
          const done: Line = { ...line, status: 'stopped', reason: line.reason ?? 'interrupted', stopTime: line.stopTime ?? now, updatedAt: now };
          this.ctx.saveLine(done);
          return [lineEvent(this.ctx, 'stopped', done, { requestId: rid, clip, reason: 'closed after an interruption' })];
        }
        // a timed line waiting for its start: disarm it
        const next: Line = { ...line, status: 'ready', start: 'manual', startTime: null, updatedAt: now };
        this.ctx.saveLine(next);
        this.ctx.schedule();
        return [lineEvent(this.ctx, 'updated', next, { requestId: rid, reason: 'timed start cancelled' })];
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
    const evs = await applyMirrorMessage(this.ctx, m);
    this.emitCommanded(evs);
    return evs;
  }

  /** On the main: the backup's verdict on the twin of one of our Backup=On lines. */
  recordTwinResult(lineId: string, check: TwinCheck): ChannelEvent | null {
    return recordTwinResult(this.ctx, lineId, check);
  }

  /** The rec-list as it is now. */
  lines(): PresentedLine[] {
    return presentLines(this.ctx);
  }

  status(): ChannelStatus {
    return channelStatus(this.ctx);
  }

  clip(id: string): Clip | undefined {
    return this.ctx.cat.clip(id);
  }

  /** The media progress of the recording under way (liveness answers carry it). */
  progress(now = this.ctx.clock()): { recording: boolean; frames: number; sinceProgressMs: number | null } {
    const a = this.ctx.active;
    const run = a?.run ?? null;
    if (!a || !run) return { recording: !!a, frames: 0, sinceProgressMs: null };
    return { recording: true, frames: run.framesWritten, sinceProgressMs: Math.max(0, now - run.progressAt) };
  }

  // ---------------------------------------------------------------- the commands as calls (LineControl)
  // Each is the command itself, through execute: checked and refused exactly as one from a flow.

  addLine(input: LineInput): Promise<ChannelEvent[]> {
    return this.execute({ command: 'add', line: input } satisfies Command);
  }

  updateLine(change: LineInput): Promise<ChannelEvent[]> {
    return this.execute({ command: 'update', line: change } satisfies Command);
  }

  startLine(ref: LineRef): Promise<ChannelEvent[]> {
    return this.execute({ command: 'start', line: ref } satisfies Command);
  }

  stopLine(ref: LineRef, opts: { force?: boolean } = {}): Promise<ChannelEvent[]> {
    return this.execute({ command: 'stop', line: ref, ...(opts.force !== undefined ? { force: opts.force } : {}) } satisfies Command);
  }

  removeLine(ref: LineRef): Promise<ChannelEvent[]> {
    return this.execute({ command: 'remove', line: ref } satisfies Command);
  }
}
