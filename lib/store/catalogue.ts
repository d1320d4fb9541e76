/**
 * The durable catalogue of one server: rec-list lines, clips, segments, events
 * and the ffmpeg processes started for them, in SQLite (better-sqlite3) in the
 * Node-RED user directory. WAL journal: a commit is in the log before the call
 * returns, so a kill -9 of Node-RED at any moment loses nothing committed
 * (synchronous=FULL also survives a power cut, at the cost of an fsync per commit).
 *
 * One Catalogue per database file per process, shared by reference count.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, Transactions } from './sqlite';
import { Clip, Segment } from '../model/clip';
import { Line } from '../model/reclist';

export interface CatalogueEvent {
  seq?: number;
  ts: number;
  serverId: string;
  channel: number | null;
  kind: string;
  lineId: string | null;
  clipId: string | null;
  data: unknown;
}

export interface CatalogueOptions {
  /** 'NORMAL' (default) survives a process kill; 'FULL' also a power cut. */
  synchronous?: 'NORMAL' | 'FULL';
}

const MIGRATIONS: string[] = [
  `CREATE TABLE IF NOT EXISTS lines (
     id TEXT NOT NULL,
     server_id TEXT NOT NULL,
     channel INTEGER NOT NULL,
     n INTEGER NOT NULL,
     data TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (server_id, channel, id)
   );
   CREATE TABLE IF NOT EXISTS clips (
     id TEXT PRIMARY KEY,
     server_id TEXT NOT NULL,
     channel INTEGER NOT NULL,
     line_id TEXT,
     name TEXT NOT NULL,
     dir TEXT NOT NULL,
     state TEXT NOT NULL,
     started_at INTEGER,
     stopped_at INTEGER,
     data TEXT NOT NULL
   );
   CREATE INDEX IF NOT EXISTS clips_by_channel ON clips(server_id, channel, started_at);
   CREATE TABLE IF NOT EXISTS segments (
     clip_id TEXT NOT NULL,
     idx INTEGER NOT NULL,
     data TEXT NOT NULL,
     PRIMARY KEY (clip_id, idx)
   );
   CREATE TABLE IF NOT EXISTS events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     server_id TEXT NOT NULL,
     channel INTEGER,
     kind TEXT NOT NULL,
     line_id TEXT,
     clip_id TEXT,
     data TEXT
   );
   CREATE INDEX IF NOT EXISTS events_by_time ON events(server_id, channel, ts);
   CREATE TABLE IF NOT EXISTS processes (
     pid INTEGER NOT NULL,
     clip_id TEXT NOT NULL,
     marker TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     PRIMARY KEY (pid, clip_id)
   );`,
];

export class Catalogue {
  readonly file: string;
  private db: Database.Database;
  private refs = 1;
  private readonly tx: Transactions;
  private stmts: ReturnType<Catalogue['prepare']>;

  constructor(file: string, opts: CatalogueOptions = {}) {
    this.file = file;
    this.db = openDatabase(file, MIGRATIONS, { synchronous: opts.synchronous });
    this.tx = new Transactions(this.db);
    this.stmts = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      linesOf: db.prepare('SELECT data FROM lines WHERE server_id = ? AND channel = ? ORDER BY n'),
      putLine: db.prepare(
        'INSERT INTO lines (id, server_id, channel, n, data, updated_at) VALUES (@id, @server, @channel, @n, @data, @updated) ' +
          'ON CONFLICT(server_id, channel, id) DO UPDATE SET n = excluded.n, data = excluded.data, updated_at = excluded.updated_at',
      ),
      deleteLine: db.prepare('DELETE FROM lines WHERE server_id = ? AND channel = ? AND id = ?'),
      putClip: db.prepare(
        'INSERT INTO clips (id, server_id, channel, line_id, name, dir, state, started_at, stopped_at, data) ' +
          'VALUES (@id, @server, @channel, @line, @name, @dir, @state, @started, @stopped, @data) ' +
          'ON CONFLICT(id) DO UPDATE SET state = excluded.state, started_at = excluded.started_at, ' +
          'stopped_at = excluded.stopped_at, data = excluded.data, name = excluded.name',
      ),
      getClip: db.prepare('SELECT data FROM clips WHERE id = ?'),
      clipsOf: db.prepare(
        'SELECT data FROM clips WHERE server_id = ? AND channel = ? AND COALESCE(stopped_at, 9e15) >= ? AND COALESCE(started_at, 0) <= ? ORDER BY started_at',
      ),
      clipsInState: db.prepare('SELECT data FROM clips WHERE server_id = ? AND channel = ? AND state IN (SELECT value FROM json_each(?))'),
      putSegment: db.prepare('INSERT INTO segments (clip_id, idx, data) VALUES (?, ?, ?) ON CONFLICT(clip_id, idx) DO UPDATE SET data = excluded.data'),
      segmentsOf: db.prepare('SELECT data FROM segments WHERE clip_id = ? ORDER BY idx'),
      getSegment: db.prepare('SELECT data FROM segments WHERE clip_id = ? AND idx = ?'),
      deleteClip: db.prepare('DELETE FROM clips WHERE id = ?'),
      deleteSegments: db.prepare('DELETE FROM segments WHERE clip_id = ?'),
      deleteSegment: db.prepare('DELETE FROM segments WHERE clip_id = ? AND idx = ?'),
      addEvent: db.prepare(
        'INSERT INTO events (ts, server_id, channel, kind, line_id, clip_id, data) VALUES (@ts, @server, @channel, @kind, @line, @clip, @data)',
      ),
      eventsOf: db.prepare(
        'SELECT seq, ts, server_id, channel, kind, line_id, clip_id, data FROM events WHERE server_id = ? AND (? IS NULL OR channel = ?) AND ts >= ? AND ts <= ? ORDER BY seq',
      ),
      addProcess: db.prepare('INSERT OR REPLACE INTO processes (pid, clip_id, marker, started_at) VALUES (?, ?, ?, ?)'),
      removeProcess: db.prepare('DELETE FROM processes WHERE pid = ? AND clip_id = ?'),
      processes: db.prepare('SELECT pid, clip_id AS clipId, marker, started_at AS startedAt FROM processes'),
    };
  }

  /**
   * Run several writes as one commit. Nested calls join the outer transaction
   * (an exception anywhere rolls the whole of it back).
   */
  transaction<T>(fn: () => T): T {
    return this.tx.run(fn);
  }

  lines(serverId: string, channel: number): Line[] {
    return (this.stmts.linesOf.all(serverId, channel) as { data: string }[]).map((r) => JSON.parse(r.data) as Line);
  }

  putLine(serverId: string, channel: number, line: Line): void {
    this.stmts.putLine.run({ id: line.id, server: serverId, channel, n: line.n, data: JSON.stringify(line), updated: line.updatedAt });
  }

  /** Store a whole rec-list after a change that renumbered it, and drop removed lines. */
  putLines(serverId: string, channel: number, lines: Line[], removedId?: string): void {
    this.transaction(() => {
      if (removedId) this.stmts.deleteLine.run(serverId, channel, removedId);
      for (const l of lines) this.putLine(serverId, channel, l);
    });
  }

  putClip(clip: Clip): void {
    const { segments: _segments, ...rest } = clip;
    this.stmts.putClip.run({
      id: clip.id,
      server: clip.serverId,
      channel: clip.channel,
      line: clip.lineId,
      name: clip.name,
      dir: clip.dir,
      state: clip.state,
      started: clip.startedAt,
      stopped: clip.stoppedAt,
      data: JSON.stringify(rest),
    });
  }

  putSegment(clipId: string, seg: Segment): void {
    this.stmts.putSegment.run(clipId, seg.index, JSON.stringify(seg));
  }

  /** Forget one segment of a clip (its file is the caller's to delete). */
  deleteSegment(clipId: string, index: number): void {
    this.stmts.deleteSegment.run(clipId, index);
  }

  /** Forget a clip and its segments (its files are the caller's to delete). True when it was there. */
  deleteClip(id: string): boolean {
    return this.transaction(() => {
      this.stmts.deleteSegments.run(id);
      return this.stmts.deleteClip.run(id).changes > 0;
    });
  }

  clip(id: string): Clip | undefined {
    const row = this.stmts.getClip.get(id) as { data: string } | undefined;
    if (!row) return undefined;
    return this.withSegments(JSON.parse(row.data));
  }

  /** A clip without its segments (their list stays empty), and one of them: what serving one segment needs, without reading them all. */
  clipAndSegment(id: string, index: number): { clip: Clip; segment: Segment | undefined } | undefined {
    const row = this.stmts.getClip.get(id) as { data: string } | undefined;
    if (!row) return undefined;
    const seg = this.stmts.getSegment.get(id, index) as { data: string } | undefined;
    return { clip: { ...(JSON.parse(row.data) as Clip), segments: [] }, segment: seg ? (JSON.parse(seg.data) as Segment) : undefined };
  }

  clips(serverId: string, channel: number, fromMs = 0, toMs = 9e15): Clip[] {
    return (this.stmts.clipsOf.all(serverId, channel, fromMs, toMs) as { data: string }[]).map((r) => this.withSegments(JSON.parse(r.data)));
  }

  clipsInState(serverId: string, channel: number, states: string[]): Clip[] {
    return (this.stmts.clipsInState.all(serverId, channel, JSON.stringify(states)) as { data: string }[]).map((r) => this.withSegments(JSON.parse(r.data)));
  }

  private withSegments(c: Omit<Clip, 'segments'>): Clip {
    const segments = (this.stmts.segmentsOf.all(c.id) as { data: string }[]).map((r) => JSON.parse(r.data) as Segment);
    return { ...c, segments };
  }

  addEvent(ev: CatalogueEvent): number {
    const r = this.stmts.addEvent.run({
      ts: ev.ts,
      server: ev.serverId,
      channel: ev.channel,
      kind: ev.kind,
      line: ev.lineId,
      clip: ev.clipId,
      data: ev.data === undefined ? null : JSON.stringify(ev.data),
    });
    return Number(r.lastInsertRowid);
  }

  events(serverId: string, channel: number | null, fromMs = 0, toMs = 9e15): CatalogueEvent[] {
    type Row = {
      seq: number;
      ts: number;
      server_id: string;
      channel: number | null;
      kind: string;
      line_id: string | null;
      clip_id: string | null;
      data: string | null;
    };
    return (this.stmts.eventsOf.all(serverId, channel, channel, fromMs, toMs) as Row[]).map((r) => ({
      seq: r.seq,
      ts: r.ts,
      serverId: r.server_id,
      channel: r.channel,
      kind: r.kind,
      lineId: r.line_id,
      clipId: r.clip_id,
      data: r.data === null ? null : JSON.parse(r.data),
    }));
  }

  addProcess(pid: number, clipId: string, marker: string): void {
    this.stmts.addProcess.run(pid, clipId, marker, Date.now());
  }

  removeProcess(pid: number, clipId: string): void {
    this.stmts.removeProcess.run(pid, clipId);
  }

  processes(): { pid: number; clipId: string; marker: string; startedAt: number }[] {
    return this.stmts.processes.all() as { pid: number; clipId: string; marker: string; startedAt: number }[];
  }

  retain(): this {
    this.refs++;
    return this;
  }

  /** Drop one reference; the last one closes the database. */
  release(): void {
    this.refs--;
    if (this.refs <= 0) {
      open.delete(this.file);
      if (this.db.open) this.db.close();
    }
  }
}

const open = new Map<string, Catalogue>();

/** The shared catalogue for a database file (opened on first use). */
export function openCatalogue(file: string, opts?: CatalogueOptions): Catalogue {
  const key = path.resolve(file);
  const existing = open.get(key);
  if (existing) return existing.retain();
  const cat = new Catalogue(key, opts);
  open.set(key, cat);
  return cat;
}
