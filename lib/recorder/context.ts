/**
 * What the parts of a recorder channel share: the recording in hand (Active)
 * and the context each part works in (ChannelContext), which the channel's
 * state implements (state.ts). The parts are modules of functions over it:
 * run supervision (run.ts), back-to-back cuts and frame-exact stops (cuts.ts),
 * timed lines (schedule.ts), suspend and crash recovery (recovery.ts), the Aux
 * line (aux-mirror.ts, aux-twin.ts) and presentation (presentation.ts).
 */
import type { Catalogue } from '../store/catalogue';
import type { Clip, Segment, TwinCheck, TwinSummary } from '../model/clip';
import type { FfmpegInfo, InputSpec } from '../media/ffmpeg';
import type { FfmpegRun, SegmentOpen } from '../media/ffmpeg-run';
import type { Line, RecList } from '../model/reclist';
import type { scanSegment, TsFileFollower } from '../media/mpegts';
import type { FrameRate } from '../model/timecode';
import type { ChannelDeps, ChannelEvent, PresentedLine, ResolvedChannelSettings } from './types';
import type { Backoff } from '../model/backoff';

export interface Active {
  line: Line;
  clip: Clip;
  run: FfmpegRun | null;
  runNo: number;
  /** Segment index the next run starts at. */
  nextIndex: number;
  /** Segments of the current run opened, in order. */
  openSegments: SegmentOpen[];
  restartTimer: NodeJS.Timeout | null;
  /** The wait before ffmpeg is started again after a run ended early (reset at each first frame). */
  backoff: Backoff;
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

/** The state of a channel and the bookkeeping its parts share. */
export interface ChannelContext {
  readonly settings: ResolvedChannelSettings;
  readonly cat: Catalogue;
  readonly ffmpeg: FfmpegInfo;
  readonly log: ChannelDeps['log'];
  readonly clock: () => number;
  readonly rate: FrameRate;
  list: RecList;
  /** The recording under way on this channel; the rec-list is told which line owns the channel. */
  active: Active | null;
  /**
   * Back-to-back: the next timed line, its ffmpeg started ahead (pre-roll) while
   * the active line still records. At its first frame it takes the channel and
   * the active line is cut there (handOver), so no frame falls between the two.
   */
  incoming: Active | null;
  /** Lines stopping after a hand-over, until their tail is cut (close() waits for them). */
  readonly handovers: Map<Active, Promise<void>>;
  /** A line whose pre-roll failed or came too late: it takes the channel at its start instead. */
  noPreroll: string | null;
  timer: NodeJS.Timeout | null;
  closed: boolean;
  lastFailure: string | null;
  /** Presented form of each (immutable) line object, computed once. */
  readonly presented: WeakMap<Line, PresentedLine>;

  saveLine(line: Line): void;
  /** Keep a planned rec-list; only the lines that changed (content or number) are written. */
  commitList(lines: Line[]): void;
  persistClip(clip: Clip): void;
  retitleClip(line: Line): void;
  closeOpenGap(clip: Clip, at: number): void;
  totals(clip: Clip): void;
  /** Rewrite a clip's sidecar (at most every so often while it records). */
  writeSidecarSafe(clip: Clip): void;
  enqueue(a: Active, fn: () => Promise<void> | void): void;
  /** Run a callback from a timer or a child process; nothing may escape into Node-RED. */
  guard(fn: () => unknown): void;
  /** Events that happen by themselves (not as the answer to a command). */
  emitEvent(ev: ChannelEvent): void;
  /** An Aux clip's twin check, for backup-link to tell the main. */
  emitTwin(check: TwinCheck, origin: { server: string; channel: number; lineId: string }): void;
  /** Arm the timer for the next timed start or planned stop (schedule.ts). */
  schedule(): void;
}

/** Keep a segment file's sha256, size and picture digest from its scan; returns the frames it counted (null: not MPEG-TS). */
export function takeScan(seg: Segment, r: Awaited<ReturnType<typeof scanSegment>>): number | null {
  seg.sha256 = r.sha256;
  seg.bytes = r.bytes;
  seg.esDigest = r.esDigest;
  return r.frames;
}

/** Shortest pre-roll worth discarding: a later anchor than this gets a clean cut. */
export const MIN_PREROLL_MS = 500;
/** How often a frame-exact stop looks for its last frame on disk. */
export const STOP_POLL_MS = 100;

export function lineName(line: Line): string {
  return `line ${line.n} ("${line.title}")`;
}
