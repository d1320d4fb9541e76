/**
 * What a transfer manager (lib/copy/transfer-manager.ts) is given: the main it
 * copies from, its options, and how its settings are read ("1-4,7") and said
 * ("7 days").
 *
 * No Node-RED import.
 */
import { Clip } from '../model/clip';
import { CommandError } from '../model/errors';
import { SegmentSource } from './segment-copy';

/** What the transfer manager needs of the main (lib/peer/client.ts PeerClient has it). */
export interface TransferSource extends SegmentSource {
  clips(q: { server?: string; channel: number; from?: number; to?: number }): Promise<Clip[]>;
  /** One clip (a peer without it is asked for the channel's list). */
  clip?(id: string): Promise<Clip>;
}

export interface TransferManagerOptions {
  /** This (backup) server. */
  serverId: string;
  /** The main server whose clips are copied here. */
  mainServer: string;
  channels: number[];
  storageRoot: string;
  /** The main's peer storage API (throws, code EUNAVAILABLE, while its address is not known). */
  source(): TransferSource;
  limiter?: { take(bytes: number): Promise<void> };
  /** Segments fetched at once (default FETCH_AHEAD, 1 = one after another). */
  fetchAhead?: number;
  /** Time between two scans of the main's clip lists. */
  pollMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** 0 = keep transferred copies for ever. */
  retentionDays?: number;
  /** A clip that is being played or otherwise used here (never deleted then). */
  inUse?(clipId: string): boolean;
  clock?: () => number;
  log?: { info(m: string): void; warn(m: string): void };
}

/** "1-4,7" -> [1, 2, 3, 4, 7]; throws a CommandError that says what is wrong. */
export function parseChannels(spec: unknown): number[] {
  const text = typeof spec === 'number' ? String(spec) : typeof spec === 'string' ? spec.trim() : '';
  const usage = 'give the channels of the main to copy as numbers and ranges from 1 to 999, e.g. "1-4,7"';
  if (!text) throw new CommandError(`No channels: ${usage}`);
  const out = new Set<number>();
  for (const part of text.split(',').map((p) => p.trim())) {
    const m = /^(\d{1,3})(?:\s*-\s*(\d{1,3}))?$/.exec(part);
    if (!m) throw new CommandError(`"${part.slice(0, 40)}" is not a channel or a range: ${usage}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a < 1 || b < a || b > 999) throw new CommandError(`"${part}" is not a channel range from 1 to 999: ${usage}`);
    for (let c = a; c <= b; c++) out.add(c);
  }
  return [...out].sort((x, y) => x - y);
}

/** A retention in days as a person reads it: "7 days", "1 day", "12 h", "30 s". */
export function spanText(days: number): string {
  if (days >= 1) {
    const d = Math.round(days * 100) / 100;
    return `${d} day${d === 1 ? '' : 's'}`;
  }
  const s = days * 86400;
  if (s >= 3600) return `${Math.round((s / 3600) * 10) / 10} h`;
  if (s >= 60) return `${Math.round((s / 60) * 10) / 10} min`;
  return `${Math.round(s * 10) / 10} s`;
}
