/**
 * The durable queue of copy tasks of one server (material copy after a
 * failover; the transfer manager keeps its own per-clip queue in
 * lib/store/transfer-queue.ts, on the same base: lib/store/job-queue.ts), with the progress of every
 * channel and kind of data, in SQLite (WAL; every change one commit, so a
 * kill -9 loses nothing committed and a copy resumes from its last copied item).
 *
 * A task is processed one at a time; a task that fails keeps its last state
 * and its progress, and the queue goes on with the next one. A task can be
 * started again by hand while it is not done.
 *
 * No Node-RED import.
 */
import Database from 'better-sqlite3';
import { CommandError } from '../model/errors';
import { JobQueue, JobState, JobTable, nextJobSql } from './job-queue';

export type TaskState = JobState;
export type ProgressKind = 'media' | 'events';

export interface CopyTask {
  id: number;
  /** What asked for it: the failover log entry on the failover server (unique per failover server). */
  entryId: number;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  from: number;
  to: number;
  state: TaskState;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  lastError: string | null;
  attempts: number;
  bytesDone: number;
  segmentsCopied: number;
  segmentsSkipped: number;
  eventsCopied: number;
  /** Bytes to copy in all, once known (after the listing). */
  bytesTotal: number | null;
}

export interface ChannelProgress {
  channel: number;
  kind: ProgressKind;
  /** Media: wall-clock end of the last segment copied; events: time of the last event copied. UTC ms. */
  lastTime: number | null;
  /** Media: the clip and segment index last copied; events: the peer's sequence number. */
  lastClip: string | null;
  lastIndex: number | null;
  done: boolean;
}

export interface TaskRequest {
  entryId: number;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  from: number;
  to: number;
}

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS copy_tasks (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     entry_id INTEGER NOT NULL,
     failed_server TEXT NOT NULL,
     failover_server TEXT NOT NULL,
     channels TEXT NOT NULL,
     from_ms INTEGER NOT NULL,
     to_ms INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     started_at INTEGER,
     finished_at INTEGER,
     last_error TEXT,
     attempts INTEGER NOT NULL DEFAULT 0,
     bytes_done INTEGER NOT NULL DEFAULT 0,
     bytes_total INTEGER,
     segments_copied INTEGER NOT NULL DEFAULT 0,
     segments_skipped INTEGER NOT NULL DEFAULT 0,
     events_copied INTEGER NOT NULL DEFAULT 0,
     UNIQUE (failover_server, entry_id)
   );
   CREATE TABLE IF NOT EXISTS copy_progress (
     task_id INTEGER NOT NULL REFERENCES copy_tasks(id),
     channel INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('media', 'events')),
     last_time INTEGER,
     last_clip TEXT,
     last_index INTEGER,
     done INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (task_id, channel, kind)
   );`,
];

interface Row {
  id: number;
  entry_id: number;
  failed_server: string;
  failover_server: string;
  channels: string;
  from_ms: number;
  to_ms: number;
  state: TaskState;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  last_error: string | null;
  attempts: number;
  bytes_done: number;
  bytes_total: number | null;
  segments_copied: number;
  segments_skipped: number;
  events_copied: number;
}

function toTask(r: Row): CopyTask {
  return {
    id: r.id,
    entryId: r.entry_id,
    failedServer: r.failed_server,
    failoverServer: r.failover_server,
    channels: JSON.parse(r.channels) as number[],
    from: r.from_ms,
    to: r.to_ms,
    state: r.state,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    lastError: r.last_error,
    attempts: r.attempts,
    bytesDone: r.bytes_done,
    bytesTotal: r.bytes_total,
    segmentsCopied: r.segments_copied,
    segmentsSkipped: r.segments_skipped,
    eventsCopied: r.events_copied,
  };
}

function prepare(db: Database.Database) {
  return {
    insert: db.prepare(
      "INSERT INTO copy_tasks (entry_id, failed_server, failover_server, channels, from_ms, to_ms, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
    ),
    byEntry: db.prepare('SELECT * FROM copy_tasks WHERE failover_server = ? AND entry_id = ?'),
    get: db.prepare('SELECT * FROM copy_tasks WHERE id = ?'),
    list: db.prepare('SELECT * FROM copy_tasks ORDER BY id DESC LIMIT ?'),
    // after one left running, the oldest queued
    next: db.prepare(nextJobSql('copy_tasks', 'id')),
    setState: db.prepare('UPDATE copy_tasks SET state = ?, updated_at = ?, last_error = ? WHERE id = ?'),
    begin: db.prepare(
      "UPDATE copy_tasks SET state = 'running', updated_at = ?, started_at = COALESCE(started_at, ?), attempts = attempts + 1, last_error = NULL WHERE id = ?",
    ),
    finish: db.prepare("UPDATE copy_tasks SET state = 'done', updated_at = ?, finished_at = ?, last_error = NULL WHERE id = ?"),
    counters: db.prepare(
      'UPDATE copy_tasks SET bytes_done = bytes_done + ?, segments_copied = segments_copied + ?, segments_skipped = segments_skipped + ?, events_copied = events_copied + ?, updated_at = ? WHERE id = ?',
    ),
    total: db.prepare('UPDATE copy_tasks SET bytes_total = ? WHERE id = ?'),
    progress: db.prepare('SELECT channel, kind, last_time, last_clip, last_index, done FROM copy_progress WHERE task_id = ? ORDER BY channel, kind'),
    putProgress: db.prepare(
      'INSERT INTO copy_progress (task_id, channel, kind, last_time, last_clip, last_index, done) VALUES (@task, @channel, @kind, @time, @clip, @index, @done) ' +
        'ON CONFLICT(task_id, channel, kind) DO UPDATE SET last_time = excluded.last_time, last_clip = excluded.last_clip, last_index = excluded.last_index, done = excluded.done',
    ),
  };
}

const TABLE: JobTable<Row, CopyTask, ReturnType<typeof prepare>> = { migrations: MIGRATIONS, foreignKeys: true, prepare, toJob: toTask };

export class CopyQueue extends JobQueue<number, Row, CopyTask, ReturnType<typeof prepare>> {
  constructor(file: string, clock: () => number = Date.now, opts: { synchronous?: 'NORMAL' | 'FULL' } = {}) {
    super(file, TABLE, clock, opts);
  }

  /** Add a task for a failover period; the same request again (same failover server and entry) returns the task it made. */
  enqueue(r: TaskRequest): { task: CopyTask; created: boolean } {
    if (!(Number.isInteger(r.entryId) && r.entryId > 0)) throw new CommandError('A material copy request needs entryId, the failover log entry it belongs to.');
    if (!(r.from >= 0 && r.to > r.from)) throw new CommandError('A material copy request needs a period: from before to, UTC ms.');
    if (!Array.isArray(r.channels) || r.channels.length === 0 || !r.channels.every((c) => Number.isInteger(c) && c >= 1 && c <= 999)) {
      throw new CommandError('A material copy request needs the channels to copy (numbers 1 to 999).');
    }
    return this.transaction(() => {
      const old = this.st.byEntry.get(r.failoverServer, r.entryId) as Row | undefined;
      if (old) return { task: toTask(old), created: false };
      const now = this.clock();
      const id = Number(
        this.st.insert.run(r.entryId, r.failedServer, r.failoverServer, JSON.stringify([...r.channels].sort((a, b) => a - b)), r.from, r.to, now, now)
          .lastInsertRowid,
      );
      return { task: this.must(id), created: true };
    });
  }

  private must(id: number): CopyTask {
    const t = this.get(id);
    if (!t) throw new CommandError(`There is no copy task ${id}.`, 'ENOENT');
    return t;
  }

  list(limit = 100): CopyTask[] {
    return this.many(this.st.list, limit);
  }

  begin(id: number): CopyTask {
    return this.transaction(() => {
      const t = this.must(id);
      if (t.state === 'done') throw new CommandError(`Copy task ${id} is done; nothing to copy again.`, 'ESTATE');
      const now = this.clock();
      this.st.begin.run(now, now, id);
      return this.must(id);
    });
  }

  finish(id: number): CopyTask {
    return this.transaction(() => {
      const now = this.clock();
      this.st.finish.run(now, now, id);
      return this.must(id);
    });
  }

  /** The task failed: it keeps its progress and its reason; the queue goes on. */
  fail(id: number, reason: string): CopyTask {
    return this.transaction(() => {
      this.st.setState.run('failed', this.clock(), reason, id);
      return this.must(id);
    });
  }

  /** A failed task queued again by hand (it resumes from its progress). */
  retry(id: number): CopyTask {
    return this.transaction(() => {
      const t = this.must(id);
      if (t.state === 'done') throw new CommandError(`Copy task ${id} is done; nothing to copy again.`, 'ESTATE');
      if (t.state === 'failed') this.st.setState.run('queued', this.clock(), t.lastError, id);
      return this.must(id);
    });
  }

  setTotal(id: number, bytes: number): void {
    this.st.total.run(bytes, id);
  }

  progress(id: number): ChannelProgress[] {
    type P = { channel: number; kind: ProgressKind; last_time: number | null; last_clip: string | null; last_index: number | null; done: number };
    return (this.st.progress.all(id) as P[]).map((p) => ({
      channel: p.channel,
      kind: p.kind,
      lastTime: p.last_time,
      lastClip: p.last_clip,
      lastIndex: p.last_index,
      done: p.done !== 0,
    }));
  }

  channelProgress(id: number, channel: number, kind: ProgressKind): ChannelProgress {
    return (
      this.progress(id).find((p) => p.channel === channel && p.kind === kind) ?? { channel, kind, lastTime: null, lastClip: null, lastIndex: null, done: false }
    );
  }

  /** Record one copied (or skipped) item and the counters, as one commit. */
  advance(id: number, p: ChannelProgress, counters: { bytes?: number; copied?: number; skipped?: number; events?: number } = {}): void {
    this.transaction(() => {
      this.st.putProgress.run({ task: id, channel: p.channel, kind: p.kind, time: p.lastTime, clip: p.lastClip, index: p.lastIndex, done: p.done ? 1 : 0 });
      this.st.counters.run(counters.bytes ?? 0, counters.copied ?? 0, counters.skipped ?? 0, counters.events ?? 0, this.clock(), id);
    });
  }
}
