/** The clip model: what one recording of a rec-list line leaves on storage. */
import { AttributeValue, BackupMode } from './reclist';
import { FrameRateId } from './timecode';

export type ClipState = 'recording' | 'suspended' | 'closed' | 'interrupted' | 'failed';
export type Container = 'ts' | 'mkv' | 'mp4';

export interface Segment {
  index: number;
  /** File name inside the clip folder. */
  file: string;
  /** Which ffmpeg run wrote it (a restart after a source loss starts a new run). */
  run: number;
  /** Media time of the first and after the last frame, seconds, as the muxer saw them. */
  startSec: number | null;
  endSec: number | null;
  frames: number | null;
  bytes: number;
  sha256: string | null;
  /** False for the last segment of a run that ended without closing it (crash). */
  complete: boolean;
  /** Wall-clock time of the segment's first frame, UTC ms. */
  wallStart: number | null;
  /** sha256 of the video elementary stream (MPEG-TS only): equal for the same frames on twins. */
  esDigest?: string | null;
}

/** What a main clip tells its Aux twin, to check that both hold the same frames. */
export interface TwinSummary {
  name: string;
  /** The source label ('test pattern' is generated on each server: twins cannot match). */
  source?: string;
  frames: number;
  tcIn: string | null;
  tcOut: string | null;
  segments: { index: number; frames: number | null; esDigest: string | null }[];
}

export interface TwinCheck {
  state: 'verified' | 'mismatch' | 'skipped';
  at: number;
  /** Sentences saying what differs (empty when verified). */
  differences: string[];
  mainServer: string;
  mainClip: string;
  auxServer: string;
  auxClip: string;
}

export interface Gap {
  /** Wall clock when media stopped arriving, UTC ms. */
  fromMs: number;
  /** Wall clock when media arrived again (null while the gap is open). */
  toMs: number | null;
  reason: string;
  /** Index of the last segment before the gap. */
  afterSegment: number | null;
}

export interface Clip {
  id: string;
  name: string;
  /** Folder of the clip relative to the storage root (forward slashes). */
  dir: string;
  serverId: string;
  group: string;
  channel: number;
  channelName: string;
  lineId: string;
  title: string;
  attributes: Record<string, AttributeValue>;
  backup: BackupMode;
  frameRate: FrameRateId;
  tcIn: string | null;
  tcOut: string | null;
  startedAt: number | null;
  stoppedAt: number | null;
  frames: number;
  durationMs: number;
  state: ClipState;
  container: Container;
  source: string;
  gaps: Gap[];
  segments: Segment[];
  runs: number;
  reason: string | null;
  /** Result of comparing a Backup=On clip with its Aux twin. */
  twin?: TwinCheck | null;
  createdAt: number;
  updatedAt: number;
}

export const CONTAINER_EXT: Record<Container, string> = { ts: 'ts', mkv: 'mkv', mp4: 'mp4' };
export const CONTAINER_FORMAT: Record<Container, string> = { ts: 'mpegts', mkv: 'matroska', mp4: 'mp4' };
