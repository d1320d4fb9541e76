/**
 * The settings of a failover server's watch as a site writes them (the
 * failover-watch node's fields: numbers as text, seconds where a person thinks
 * in seconds), checked and turned into the controller's options. A value out of
 * range throws a sentence that names it and its range; nothing is clamped.
 */
import type { WatchedServer } from './controller-types';
import { parseWatched } from './commands';

export interface WatchFields {
  watched: string;
  /** ms */
  heartbeatTimeout?: string | number;
  /** s */
  holdDown?: string | number;
  capacity?: string | number;
  rank?: string | number;
  recordOnDoubt?: boolean;
  failoverEnabled?: boolean;
  /** s */
  overlap?: string | number;
  /** s */
  handbackTimeout?: string | number;
}

export interface WatchSettings {
  watched: WatchedServer[];
  heartbeatTimeoutMs: number;
  holdDownMs: number;
  capacity: number;
  rank: number;
  recordOnDoubt: boolean;
  failoverEnabled: boolean;
  overlapMs: number;
  handbackTimeoutMs: number;
}

function num(v: unknown, def: number): number {
  if (v === undefined || v === null || v === '') return def;
  return Number(v);
}

function check(ok: boolean, what: string, range: string): void {
  if (!ok) throw new Error(`${what} must be ${range}`);
}

/** Check the fields; `heartbeatMs` is the interval of the watched servers' heartbeats (the timeout must be longer). */
export function parseWatchSettings(f: WatchFields, heartbeatMs: number): WatchSettings {
  const watched = parseWatched(f.watched);
  const heartbeatTimeoutMs = num(f.heartbeatTimeout, 750);
  const holdDownMs = num(f.holdDown, 10) * 1000;
  const capacity = num(f.capacity, 1);
  const rank = num(f.rank, 0);
  const overlapMs = num(f.overlap, 2) * 1000;
  const handbackTimeoutMs = num(f.handbackTimeout, 15) * 1000;
  check(heartbeatTimeoutMs >= 100 && heartbeatTimeoutMs <= 600000, 'heartbeat timeout', '100 to 600000 ms');
  check(holdDownMs >= 0 && holdDownMs <= 3600000, 'hold-down', '0 to 3600 s');
  check(Number.isInteger(capacity) && capacity >= 1 && capacity <= 100, 'capacity', '1 to 100 servers');
  check(Number.isInteger(rank) && rank >= 0 && rank <= 99, 'rank', '0 to 99');
  check(overlapMs >= 0 && overlapMs <= 60000, 'overlap', '0 to 60 s');
  check(handbackTimeoutMs >= 1000 && handbackTimeoutMs <= 600000, 'failback confirmation timeout', '1 to 600 s');
  if (heartbeatTimeoutMs <= heartbeatMs) {
    throw new Error(`The heartbeat timeout (${heartbeatTimeoutMs} ms) must be longer than the heartbeat interval (${heartbeatMs} ms)`);
  }
  return {
    watched,
    heartbeatTimeoutMs,
    holdDownMs,
    capacity,
    rank,
    recordOnDoubt: f.recordOnDoubt !== false,
    failoverEnabled: f.failoverEnabled !== false,
    overlapMs,
    handbackTimeoutMs,
  };
}
