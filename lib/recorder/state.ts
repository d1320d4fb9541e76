/**
 * The state of a recorder channel and the bookkeeping every part of it does:
 * keeping lines and clips in the rec-list and the catalogue, sidecars, the
 * per-recording work queue, and the events the channel emits.
 */
import type { EventEmitter } from 'node:events';
import { Catalogue } from '../store/catalogue';
import { Clip, TwinCheck } from '../model/clip';
import { errorText } from '../model/errors';
import { FfmpegInfo } from '../media/ffmpeg';
import { Line, RecList } from '../model/reclist';
import { writeSidecar } from '../store/clip-files';
import { addFrames, frameRate, FrameRate, framesToMs } from '../model/timecode';
import { Active, ChannelContext } from './context';
import { schedule } from './schedule';
import { ChannelDeps, ChannelEvent, ChannelSettings, PresentedLine, ResolvedChannelSettings } from './types';

/** How often the sidecar of a recording clip is rewritten (its segments are in the catalogue at once). */
const SIDECAR_INTERVAL_MS = 30000;

export class ChannelState implements ChannelContext {
  readonly settings: ResolvedChannelSettings;
  readonly cat: Catalogue;
  readonly ffmpeg: FfmpegInfo;
  log: ChannelDeps['log'];
  readonly clock: () => number;
  readonly rate: FrameRate;
  list: RecList;
  private activeRec: Active | null = null;
  /**
   * Back-to-back: the next timed line, its ffmpeg started ahead (pre-roll) while
   * the active line still records. At its first frame it takes the channel and
   * the active line is cut there (handOver), so no frame falls between the two.
   */
  incoming: Active | null = null;
  /** Lines stopping after a hand-over, until their tail is cut (close() waits for them). */
  readonly handovers = new Map<Active, Promise<void>>();
  /** A line whose pre-roll failed or came too late: it takes the channel at its start instead. */
  noPreroll: string | null = null;
  timer: NodeJS.Timeout | null = null;
  closed = false;
  lastFailure: string | null = null;
  /** When each recording clip's sidecar was last written. */
  private sidecarWritten = new Map<string, { at: number; state: string }>();
  /** Presented form of each (immutable) line object, computed once. */
  readonly presented = new WeakMap<Line, PresentedLine>();

  constructor(
    settings: ChannelSettings,
    deps: ChannelDeps,
    private readonly emitter: EventEmitter,
  ) {
    this.settings = {
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
    this.list = new RecList({ frameRate: settings.frameRate, allowAux: this.settings.allowAux });
  }

  /** The recording under way on this channel; the rec-list is told which line owns the channel. */
  get active(): Active | null {
    return this.activeRec;
  }
  set active(a: Active | null) {
    this.activeRec = a;
    this.list.setActive(a ? a.line.id : null);
  }

  saveLine(line: Line): void {
    this.list.put(line);
    if (this.active && this.active.line.id === line.id) this.active.line = line;
    this.cat.putLine(this.settings.serverId, this.settings.channel, line);
  }

  /** Keep a planned rec-list; only the lines that changed (content or number) are written. */
  commitList(lines: Line[]): void {
    this.cat.putLines(this.settings.serverId, this.settings.channel, this.list.changedIn(lines));
    this.list.commit(lines);
    if (this.active) {
      const l = lines.find((x) => x.id === this.active!.line.id);
      if (l) this.active.line = l;
    }
  }

  persistClip(clip: Clip): void {
    this.cat.putClip(clip);
  }

  retitleClip(line: Line): void {
    const clip = this.cat.clip(line.clipId!);
    if (!clip) return;
    clip.title = line.title;
    clip.attributes = { ...line.attributes };
    clip.updatedAt = this.clock();
    this.persistClip(clip);
    this.writeSidecarSafe(clip);
  }

  closeOpenGap(clip: Clip, at: number): void {
    for (const g of clip.gaps) if (g.toMs === null) g.toMs = Math.round(at);
  }

  totals(clip: Clip): void {
    clip.frames = clip.segments.reduce((n, s) => n + (s.frames ?? 0), 0);
    clip.durationMs = Math.round(framesToMs(clip.frames, this.rate));
    clip.tcOut = clip.tcIn === null ? null : addFrames(clip.tcIn, clip.frames, this.rate);
  }

  /**
   * Rewrite a clip's sidecar. While it records, at most every SIDECAR_INTERVAL_MS
   * (the catalogue has every segment at once; a sidecar of a long clip is large);
   * every change of state is written at once.
   */
  writeSidecarSafe(clip: Clip): void {
    const now = this.clock();
    if (clip.state === 'recording') {
      const last = this.sidecarWritten.get(clip.id);
      if (last && last.state === 'recording' && now - last.at < SIDECAR_INTERVAL_MS) return;
    }
    this.sidecarWritten.set(clip.id, { at: now, state: clip.state });
    if (clip.state !== 'recording') this.sidecarWritten.delete(clip.id);
    try {
      writeSidecar(this.settings.storageRoot, clip);
    } catch (err) {
      this.log.warn(`sidecar of clip ${clip.name} not written: ${errorText(err)}`);
    }
  }

  enqueue(a: Active, fn: () => Promise<void> | void): void {
    a.chain = a.chain.then(() => fn()).catch((err) => this.log.error(`channel ${this.settings.channel}: ${errorText(err)}`));
  }

  /** Run a callback from a timer or a child process; nothing may escape into Node-RED. */
  guard(fn: () => unknown): void {
    try {
      const r = fn();
      if (r && typeof (r as Promise<unknown>).catch === 'function') {
        (r as Promise<unknown>).catch((err) => this.log.error(`channel ${this.settings.channel}: ${errorText(err)}`));
      }
    } catch (err) {
      this.log.error(`channel ${this.settings.channel}: ${errorText(err)}`);
    }
  }

  /** Events that happen by themselves (not as the answer to a command). */
  emitEvent(ev: ChannelEvent): void {
    this.emitter.emit('event', ev);
  }

  emitTwin(check: TwinCheck, origin: { server: string; channel: number; lineId: string }): void {
    this.emitter.emit('twin', check, origin);
  }

  schedule(): void {
    schedule(this);
  }
}
