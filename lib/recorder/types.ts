/**
 * What other areas hand a recorder channel and read from it. The channel's own
 * workings stay in this folder; these are its contract.
 */
import type { Line } from '../model/reclist';
import type { TwinSummary } from '../model/clip';

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
