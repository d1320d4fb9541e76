/**
 * The durable failover log of a redundancy group: one entry per failover (failed
 * server, failover server, channels taken, epoch, start and end times), its state
 * (active, failback in progress, finalized), the failback result and the state of
 * the material copy for the failover period, with a timestamped history.
 *
 * SQLite (better-sqlite3) in its own file, e.g. `<userDir>/twinrec/failover.sqlite`.
 * WAL journal: every state change is one transaction, committed before the call
 * returns, so a kill -9 at any moment loses nothing committed.
 *
 * Pure domain module: no Node-RED import.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, Transactions } from './sqlite';
import { CommandError } from '../model/errors';

export type FailoverState = 'active' | 'failback-in-progress' | 'finalized';
export type FailbackResult = 'none' | 'ok' | 'failed' | 'done-by-newer';
export type MaterialCopyState = 'none' | 'requested' | 'running' | 'done' | 'failed';

export interface FailoverEntry {
  id: number;
  group: string;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  epoch: number;
  startedAt: number;
  endedAt: number | null;
  state: FailoverState;
  failbackResult: FailbackResult;
  failbackReason: string | null;
  failbackStartedAt: number | null;
  materialCopy: MaterialCopyState;
  drill: boolean;
  /** Set when the takeover ended without a failback: the entry stays active, but nothing records for it any more. */
  takeoverReleased: { at: number; by: TakeoverRelease } | null;
  history: { at: number; text: string }[];
}

export interface FailoverOpen {
  group: string;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  epoch: number;
  startedAt: number;
  drill?: boolean;
}

export interface FailoverFilter {
  state?: FailoverState | FailoverState[];
  failedServer?: string;
}

export interface FailoverLogOptions {
  /** 'NORMAL' (default) survives a process kill; 'FULL' also a power cut. */
  synchronous?: 'NORMAL' | 'FULL';
}

export const FAILOVER_STATES: readonly FailoverState[] = ['active', 'failback-in-progress', 'finalized'];
export const MATERIAL_COPY_STATES: readonly MaterialCopyState[] = ['none', 'requested', 'running', 'done', 'failed'];

const MIGRATIONS: string[] = [
  `CREATE TABLE IF NOT EXISTS failovers (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     grp TEXT NOT NULL,
     failed_server TEXT NOT NULL,
     failover_server TEXT NOT NULL,
     channels TEXT NOT NULL,
     epoch INTEGER NOT NULL,
     started_at INTEGER NOT NULL,
     ended_at INTEGER,
     state TEXT NOT NULL CHECK (state IN ('active', 'failback-in-progress', 'finalized')),
     failback_result TEXT NOT NULL DEFAULT 'none' CHECK (failback_result IN ('none', 'ok', 'failed', 'done-by-newer')),
     failback_reason TEXT,
     failback_started_at INTEGER,
     material_copy TEXT NOT NULL DEFAULT 'none' CHECK (material_copy IN ('none', 'requested', 'running', 'done', 'failed')),
     drill INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX IF NOT EXISTS failovers_by_server ON failovers(failed_server, state);
   CREATE INDEX IF NOT EXISTS failovers_by_group ON failovers(grp, epoch);
   CREATE TABLE IF NOT EXISTS failover_history (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     entry_id INTEGER NOT NULL REFERENCES failovers(id),
     at INTEGER NOT NULL,
     text TEXT NOT NULL
   );
   CREATE INDEX IF NOT EXISTS failover_history_by_entry ON failover_history(entry_id, seq);`,
  // 2: a takeover ended without a failback (by hand, or for a failed server of higher priority) is not resumed after a restart
  `ALTER TABLE failovers ADD COLUMN takeover_released_at INTEGER;
   ALTER TABLE failovers ADD COLUMN takeover_released_by TEXT CHECK (takeover_released_by IS NULL OR takeover_released_by IN ('hand', 'priority'));`,
];

/** Why a takeover ended without a failback: released by hand, or for a failed server of higher priority. */
export type TakeoverRelease = 'hand' | 'priority';

interface Row {
  id: number;
  grp: string;
  failed_server: string;
  failover_server: string;
  channels: string;
  epoch: number;
  started_at: number;
  ended_at: number | null;
  state: FailoverState;
  failback_result: FailbackResult;
  failback_reason: string | null;
  failback_started_at: number | null;
  material_copy: MaterialCopyState;
  drill: number;
  takeover_released_at: number | null;
  takeover_released_by: TakeoverRelease | null;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

export class FailoverLog {
  readonly file: string;
  private db: Database.Database;
  private readonly tx: Transactions;
  private stmts: ReturnType<FailoverLog['prepare']>;

  constructor(file: string, opts: FailoverLogOptions = {}) {
    this.file = path.resolve(file);
    this.db = openDatabase(this.file, MIGRATIONS, { synchronous: opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL', foreignKeys: true });
    this.tx = new Transactions(this.db);
    this.stmts = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      insert: db.prepare(
        'INSERT INTO failovers (grp, failed_server, failover_server, channels, epoch, started_at, state, drill) ' +
          "VALUES (@group, @failedServer, @failoverServer, @channels, @epoch, @startedAt, 'active', @drill)",
      ),
      get: db.prepare('SELECT * FROM failovers WHERE id = ?'),
      list: db.prepare(
        'SELECT * FROM failovers WHERE (@states IS NULL OR state IN (SELECT value FROM json_each(@states))) ' +
          'AND (@failedServer IS NULL OR failed_server = @failedServer) ORDER BY started_at DESC, id DESC LIMIT @limit',
      ),
      history: db.prepare('SELECT at, text FROM failover_history WHERE entry_id = ? ORDER BY seq'),
      addHistory: db.prepare('INSERT INTO failover_history (entry_id, at, text) VALUES (?, ?, ?)'),
      beginFailback: db.prepare("UPDATE failovers SET state = 'failback-in-progress', failback_started_at = ? WHERE id = ?"),
      finishOk: db.prepare("UPDATE failovers SET state = 'finalized', ended_at = ?, failback_result = 'ok', failback_reason = NULL WHERE id = ?"),
      finishFailed: db.prepare("UPDATE failovers SET state = 'active', failback_result = 'failed', failback_reason = ? WHERE id = ?"),
      doneByNewer: db.prepare("UPDATE failovers SET state = 'finalized', ended_at = ?, failback_result = 'done-by-newer', material_copy = 'done' WHERE id = ?"),
      setMaterialCopy: db.prepare('UPDATE failovers SET material_copy = ? WHERE id = ?'),
      releaseTakeover: db.prepare('UPDATE failovers SET takeover_released_at = ?, takeover_released_by = ? WHERE id = ?'),
      maxEpoch: db.prepare('SELECT MAX(epoch) AS m FROM failovers WHERE grp = ?'),
    };
  }

  /**
   * Run several writes as one commit. Nested calls join the outer transaction
   * (an exception anywhere rolls the whole of it back).
   */
  transaction<T>(fn: () => T): T {
    return this.tx.run(fn);
  }

  private toEntry(r: Row): FailoverEntry {
    return {
      id: r.id,
      group: r.grp,
      failedServer: r.failed_server,
      failoverServer: r.failover_server,
      channels: JSON.parse(r.channels) as number[],
      epoch: r.epoch,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      state: r.state,
      failbackResult: r.failback_result,
      failbackReason: r.failback_reason,
      failbackStartedAt: r.failback_started_at,
      materialCopy: r.material_copy,
      drill: r.drill !== 0,
      takeoverReleased: r.takeover_released_at !== null && r.takeover_released_by !== null ? { at: r.takeover_released_at, by: r.takeover_released_by } : null,
      history: this.stmts.history.all(r.id) as { at: number; text: string }[],
    };
  }

  /** The entry, or a CommandError naming the id when there is none. */
  private must(id: number): FailoverEntry {
    const e = this.get(id);
    if (!e) throw new CommandError(`There is no failover log entry ${id}.`, 'ENOENT');
    return e;
  }

  private mustBe(e: FailoverEntry, state: FailoverState, doing: string): void {
    if (e.state !== state) {
      throw new CommandError(`Failover log entry ${e.id} (${e.failedServer} on ${e.failoverServer}) is ${e.state}, not ${state}: cannot ${doing}.`, 'ESTATE');
    }
  }

  /** Record a new failover (state active) with "failover started" in its history. */
  open(e: FailoverOpen): FailoverEntry {
    for (const k of ['group', 'failedServer', 'failoverServer'] as const) {
      if (typeof e[k] !== 'string') throw new CommandError(`A failover log entry needs ${k} as a string.`);
    }
    if (!e.failedServer || !e.failoverServer) throw new CommandError('A failover log entry needs a failed server and a failover server.');
    if (e.failedServer === e.failoverServer) {
      throw new CommandError(`A server cannot fail over to itself (${e.failedServer}).`);
    }
    if (!Array.isArray(e.channels) || !e.channels.every((c) => Number.isInteger(c))) {
      throw new CommandError('The channels of a failover log entry must be a list of channel numbers.');
    }
    if (!Number.isInteger(e.epoch) || e.epoch < 0) throw new CommandError('The epoch of a failover log entry must be a whole number >= 0.');
    if (!isTime(e.startedAt)) throw new CommandError('The start time of a failover log entry must be UTC epoch milliseconds.');
    return this.transaction(() => {
      const r = this.stmts.insert.run({
        group: e.group,
        failedServer: e.failedServer,
        failoverServer: e.failoverServer,
        channels: JSON.stringify(e.channels),
        epoch: e.epoch,
        startedAt: e.startedAt,
        drill: e.drill ? 1 : 0,
      });
      const id = Number(r.lastInsertRowid);
      const what = `failover started: ${e.failoverServer} records channels ${e.channels.join(', ') || '(none)'} of ${e.failedServer}, epoch ${e.epoch}${e.drill ? ' (drill)' : ''}`;
      this.stmts.addHistory.run(id, e.startedAt, what);
      return this.must(id);
    });
  }

  get(id: number): FailoverEntry | undefined {
    const r = this.stmts.get.get(id) as Row | undefined;
    return r ? this.toEntry(r) : undefined;
  }

  /** Entries newest first (by start time, then by id). */
  list(filter: FailoverFilter = {}, limit = -1): FailoverEntry[] {
    const states = filter.state === undefined ? null : JSON.stringify(Array.isArray(filter.state) ? filter.state : [filter.state]);
    const rows = this.stmts.list.all({ states, failedServer: filter.failedServer ?? null, limit }) as Row[];
    return rows.map((r) => this.toEntry(r));
  }

  /** Active failovers, including those with a failback in progress. */
  active(): FailoverEntry[] {
    return this.list({ state: ['active', 'failback-in-progress'] });
  }

  finalized(limit?: number): FailoverEntry[] {
    return this.list({ state: 'finalized' }, limit === undefined ? -1 : Math.max(0, Math.floor(limit)));
  }

  appendHistory(id: number, text: string, at: number): void {
    this.transaction(() => {
      this.must(id);
      this.stmts.addHistory.run(id, at, text);
    });
  }

  /** active -> failback-in-progress; refused (CommandError, nothing changed) in any other state. */
  beginFailback(id: number, at: number): FailoverEntry {
    return this.transaction(() => {
      const e = this.must(id);
      this.mustBe(e, 'active', 'start a failback');
      this.stmts.beginFailback.run(at, id);
      this.stmts.addHistory.run(id, at, 'failback started');
      return this.must(id);
    });
  }

  /**
   * failback-in-progress -> finalized (ok, endedAt = at) or back to active
   * (failed, with the reason kept).
   */
  finishFailback(id: number, result: 'ok' | 'failed', reason: string | null, at: number): FailoverEntry {
    return this.transaction(() => {
      const e = this.must(id);
      this.mustBe(e, 'failback-in-progress', 'finish a failback');
      if (result === 'ok') {
        this.stmts.finishOk.run(at, id);
        this.stmts.addHistory.run(id, at, 'failback performed');
      } else if (result === 'failed') {
        const why = reason || 'no reason given';
        this.stmts.finishFailed.run(why, id);
        this.stmts.addHistory.run(id, at, `failback failed: ${why}`);
      } else {
        throw new CommandError(`A failback result is ok or failed, not ${String(result)}.`);
      }
      return this.must(id);
    });
  }

  /**
   * Entries made obsolete by the failback of a newer entry for the same server:
   * finalized, failback done-by-newer, material copy done. All or none (one
   * transaction); each must be active.
   */
  markDoneByNewer(ids: number[], at: number): FailoverEntry[] {
    return this.transaction(() =>
      ids.map((id) => {
        const e = this.must(id);
        this.mustBe(e, 'active', 'mark it done by a newer failback');
        this.stmts.doneByNewer.run(at, id);
        this.stmts.addHistory.run(id, at, 'failback done by a newer entry; material copy marked done');
        return this.must(id);
      }),
    );
  }

  setMaterialCopy(id: number, state: MaterialCopyState, at: number = Date.now()): FailoverEntry {
    if (!MATERIAL_COPY_STATES.includes(state)) {
      throw new CommandError(`A material copy state is one of ${MATERIAL_COPY_STATES.join(', ')}, not ${String(state)}.`);
    }
    return this.transaction(() => {
      this.must(id);
      this.stmts.setMaterialCopy.run(state, id);
      this.stmts.addHistory.run(id, at, `material copy ${state}`);
      return this.must(id);
    });
  }

  /**
   * The takeover of an active entry ended without a failback (`reason` goes to its history):
   * the entry stays active, and a restart of the failover server does not resume its takeover.
   */
  markTakeoverReleased(id: number, by: TakeoverRelease, reason: string, at: number = Date.now()): FailoverEntry {
    if (by !== 'hand' && by !== 'priority') throw new CommandError(`A takeover is released by hand or for priority, not ${String(by)}.`);
    return this.transaction(() => {
      this.mustBe(this.must(id), 'active', 'release its takeover');
      this.stmts.releaseTakeover.run(at, by, id);
      this.stmts.addHistory.run(id, at, `takeover released: ${reason}`);
      return this.must(id);
    });
  }

  /** The highest epoch recorded for the group, 0 when it has no entry. */
  maxEpoch(group: string): number {
    const r = this.stmts.maxEpoch.get(group) as { m: number | null };
    return r.m ?? 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
