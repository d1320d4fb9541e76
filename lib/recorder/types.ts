/**
 * What other areas hand a recorder channel and read from it. The channel's own
 * workings stay in this folder; these are its contract.
 */
import type { Line, LineOrigin } from '../model/reclist';
import type { Clip, Container, TwinSummary } from '../model/clip';
import type { LineInput } from '../model/commands';
import type { Catalogue } from '../store/catalogue';
import type { FfmpegInfo, InputSpec } from '../media/ffmpeg';
import type { FrameRateId } from '../model/timecode';

/** The state of a main line that an Aux line on this channel follows (backup-link's mirror carries it). */
export interface AuxLine {
  title: string;
  group: string;
  attributes: Record<string, string | number | boolean | null>;
  start: 'manual' | 'time';
  status: Line['status'];
  startTime: number | null;
  stopTime: number | null;
  duration: string | null;
  /** Timecode of the main clip's first frame (the Aux twin takes it: both begin at that frame). */
  inPoint?: string | null;
}

/** One update of a main line for its Aux twin: the newest seq per line wins, so repeats and reorderings are harmless. */
export interface AuxUpdate {
  from: { server: string; channel: number };
  lineId: string;
  /** Grows with every change of the main line (also across restarts of the main). */
  seq: number;
  removed: boolean;
  line: AuxLine | null;
  /** With a stopped line: the main clip, for the twin check. */
  clip?: TwinSummary | null;
}

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

/** A line named by its id or its number, as a command names it. */
export type LineRef = Pick<LineInput, 'id' | 'n'>;

/**
 * The commands of a recorder channel as calls, for code that drives a channel
 * (takeover, handback). Each is the command of the same name: validated and
 * refused as a message from a flow would be (CommandError, nothing changed),
 * and its events are emitted as 'commanded' too.
 */
export interface LineControl {
  addLine(input: LineInput): Promise<ChannelEvent[]>;
  updateLine(change: LineInput): Promise<ChannelEvent[]>;
  startLine(ref: LineRef): Promise<ChannelEvent[]>;
  /** force: also an Aux line whose main server is offline (an orphan). */
  stopLine(ref: LineRef, opts?: { force?: boolean }): Promise<ChannelEvent[]>;
  removeLine(ref: LineRef): Promise<ChannelEvent[]>;
}

/** A channel's settings with every default filled in (RecorderChannel.settings). */
export type ResolvedChannelSettings = Required<Omit<ChannelSettings, 'backup'>> & { backup: ChannelSettings['backup'] };
