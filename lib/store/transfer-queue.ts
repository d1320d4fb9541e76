/**
 * The durable queue of the transfer manager (lib/copy/transfer-manager.ts), in
 * SQLite on the base of lib/store/job-queue.ts: one row per clip of the main,
 * with its state and progress. Each write is one statement (its own commit):
 * a clip's progress is committed after every segment, so a restart copies
 * nothing again.
 *
 * No Node-RED import.
 */
import Database from 'better-sqlite3';
import { Clip } from '../model/clip';
import { CommandError } from '../model/errors';
import { JobQueue, JobState, JobTable, nextJobSql, PENDING } from './job-queue';

export type TransferState = JobState | 'skipped' | 'deleted';

export interface Transfer {
  clipId: string;
  mainServer: string;
  channel: number;
  name: string;
  dir: string;
  state: TransferState;
  /** Why it failed, was skipped or deleted. */
  reason: string | null;
  /** When it is needed on air (UTC ms), from the clip's `onAir` attribute. */
  onAir: number | null;
  startedAt: number | null;
  stoppedAt: number | null;
  bytesTotal: number;
  bytesDone: number;
  segmentsTotal: number;
  segmentsCopied: number;
  segmentsSkipped: number;
  /** Index of the last segment committed here (null: none yet). */
  lastIndex: number | null;
  attempts: number;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

/** The `onAir` attribute as UTC ms (number, or an ISO time); null when absent or not a time. */
export function onAirOf(clip: Pick<Clip, 'attributes'>): number | null {
  const v = (clip.attributes ?? {})['onAir'] as unknown;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  if (typeof v === 'string' && v.trim()) {
    const t = /^\d+$/.test(v.trim()) ? Number(v) : Date.parse(v);
    return Number.isFinite(t) && t > 0 ? t : null;
  }
  return null;
}

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS transfers (
     clip_id TEXT PRIMARY KEY,
     main_server TEXT NOT NULL,
     channel INTEGER NOT NULL,
     name TEXT NOT NULL,
     dir TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'skipped', 'deleted')),
     reason TEXT,
     on_air INTEGER,
     started_at INTEGER,
     stopped_at INTEGER,
     bytes_total INTEGER NOT NULL DEFAULT 0,
     bytes_done INTEGER NOT NULL DEFAULT 0,
     segments_total INTEGER NOT NULL DEFAULT 0,
     segments_copied INTEGER NOT NULL DEFAULT 0,
     segments_skipped INTEGER NOT NULL DEFAULT 0,
     last_index INTEGER,
     attempts INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     finished_at INTEGER
   );
   CREATE INDEX IF NOT EXISTS transfers_by_state ON transfers(state);`,
];

interface Row {
  clip_id: string;
  main_server: string;
  channel: number;
  name: string;
  dir: string;
  state: TransferState;
  reason: string | null;
  on_air: number | null;
  started_at: number | null;
  stopped_at: number | null;
  bytes_total: number;
  bytes_done: number;
  segments_total: number;
  segments_copied: number;
  segments_skipped: number;
  last_index: number | null;
  attempts: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

function toTransfer(r: Row): Transfer {
  return {
    clipId: r.clip_id,
    mainServer: r.main_server,
    channel: r.channel,
    name: r.name,
    dir: r.dir,
    state: r.state,
    reason: r.reason,
    onAir: r.on_air,
    startedAt: r.started_at,
    stoppedAt: r.stopped_at,
    bytesTotal: r.bytes_total,
    bytesDone: r.bytes_done,
    segmentsTotal: r.segments_total,
    segmentsCopied: r.segments_copied,
    segmentsSkipped: r.segments_skipped,
    lastIndex: r.last_index,
    attempts: r.attempts,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT * FROM transfers WHERE clip_id = ?'),
    insert: db.prepare(
      'INSERT INTO transfers (clip_id, main_server, channel, name, dir, state, reason, on_air, started_at, stopped_at, bytes_total, segments_total, created_at, updated_at, finished_at) ' +
        'VALUES (@clip, @main, @channel, @name, @dir, @state, @reason, @onAir, @started, @stopped, @bytes, @segments, @now, @now, @finished)',
    ),
    // priority: one left running first, then needed on air soonest, then the newest
    next: db.prepare(nextJobSql('transfers', 'on_air IS NULL, on_air, started_at DESC, clip_id')),
    ordered: db.prepare(
      "SELECT * FROM transfers ORDER BY CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, on_air IS NULL, on_air, started_at DESC, clip_id LIMIT ?",
    ),
    depth: db.prepare(`SELECT COUNT(*) AS n FROM transfers WHERE ${PENDING}`),
    inState: db.prepare('SELECT * FROM transfers WHERE state = ?'),
    begin: db.prepare(
      "UPDATE transfers SET state = 'running', attempts = attempts + 1, reason = NULL, updated_at = ?, bytes_total = ?, segments_total = ?, on_air = ? WHERE clip_id = ?",
    ),
    advance: db.prepare(
      'UPDATE transfers SET last_index = ?, bytes_done = bytes_done + ?, segments_copied = segments_copied + ?, segments_skipped = segments_skipped + ?, updated_at = ? WHERE clip_id = ?',
    ),
    setState: db.prepare('UPDATE transfers SET state = ?, reason = ?, updated_at = ?, finished_at = ? WHERE clip_id = ?'),
    requeue: db.prepare("UPDATE transfers SET state = 'queued', updated_at = ? WHERE clip_id = ? AND state IN ('failed', 'running')"),
  };
}

const TABLE: JobTable<Row, Transfer, ReturnType<typeof prepare>> = { migrations: MIGRATIONS, prepare, toJob: toTransfer };

/** The durable transfer queue: one row per clip of the main, with its state and progress. */
export class TransferQueue extends JobQueue<string, Row, Transfer, ReturnType<typeof prepare>> {
  constructor(file: string, clock: () => number = Date.now, opts: { synchronous?: 'NORMAL' | 'FULL' } = {}) {
    super(file, TABLE, clock, opts);
  }

  /** A clip of the main seen for the first time: queued, or noted as skipped with the reason. Known clips are left as they are. */
  add(clip: Clip, state: 'queued' | 'skipped', reason: string | null = null): { transfer: Transfer; created: boolean } {
    return this.tx.run(() => {
      const old = this.get(clip.id);
      if (old) return { transfer: old, created: false };
      const now = this.clock();
      this.st.insert.run({
        clip: clip.id,
        main: clip.serverId,
        channel: clip.channel,
        name: clip.name,
        dir: clip.dir,
        state,
        reason,
        onAir: onAirOf(clip),
        started: clip.startedAt,
        stopped: clip.stoppedAt,
        bytes: clip.segments.reduce((n, s) => n + (s.bytes || 0), 0),
        segments: clip.segments.length,
        now,
        finished: state === 'skipped' ? now : null,
      });
      return { transfer: this.get(clip.id)!, created: true };
    });
  }

  /** Queued and running clips. */
  depth(): number {
    return (this.st.depth.get() as { n: number }).n;
  }

  list(limit = 500): Transfer[] {
    return this.many(this.st.ordered, limit);
  }

  inState(state: TransferState): Transfer[] {
    return this.many(this.st.inState, state);
  }

  begin(clip: Clip): Transfer {
    this.st.begin.run(
      this.clock(),
      clip.segments.reduce((n, s) => n + (s.bytes || 0), 0),
      clip.segments.length,
      onAirOf(clip),
      clip.id,
    );
    return this.get(clip.id)!;
  }

  /** One segment committed here (copied, or found here already). */
  advance(clipId: string, index: number, c: { bytes: number; copied: number; skipped: number }): void {
    this.st.advance.run(index, c.bytes, c.copied, c.skipped, this.clock(), clipId);
  }

  finish(clipId: string, state: 'done' | 'failed' | 'deleted', reason: string | null = null): Transfer {
    const now = this.clock();
    this.st.setState.run(state, reason, now, state === 'failed' ? null : now, clipId);
    return this.get(clipId)!;
  }

  /** A failed (or stopped) clip queued again; it resumes from its progress. */
  retry(clipId: string): Transfer {
    const t = this.get(clipId);
    if (!t) throw new CommandError(`There is no transfer of clip ${clipId}; see {"command": "list"}.`, 'ENOENT');
    if (t.state !== 'failed' && t.state !== 'running' && t.state !== 'queued') {
      throw new CommandError(`The transfer of clip ${clipId} is ${t.state}; only a failed transfer can be started again.`, 'ESTATE');
    }
    this.st.requeue.run(this.clock(), clipId);
    return this.get(clipId)!;
  }
}
