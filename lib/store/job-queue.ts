/**
 * What the durable job queues of this package share (lib/store/copy-queue.ts,
 * the material copy tasks; lib/store/transfer-queue.ts, the transfer manager's
 * clips): one SQLite table of jobs, each with a state ('queued', 'running',
 * 'done', 'failed', and what a queue adds), opened in WAL mode and migrated by
 * lib/store/sqlite.ts, its statements prepared once, and the next job to work
 * on: one left running (by a crash or a stop) first, then the queued ones in
 * the queue's own order.
 *
 * The writes themselves (what a claim, a finish or a retry sets, and which of
 * them run as one transaction) stay with each queue: they differ, and what a
 * kill -9 leaves committed depends on them.
 *
 * No Node-RED import.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase, OpenOptions, Transactions } from './sqlite';

/** The states every job queue has. */
export type JobState = 'queued' | 'running' | 'done' | 'failed';

/** SQL: the jobs still to do. */
export const PENDING = "state IN ('running', 'queued')";
/** SQL, an ORDER BY term: a job left running before the queued ones. */
export const RUNNING_FIRST = "CASE state WHEN 'running' THEN 0 ELSE 1 END";

/** The statement of next(): a pending job, one left running first, then by `order`. */
export function nextJobSql(table: string, order: string): string {
  return `SELECT * FROM ${table} WHERE ${PENDING} ORDER BY ${RUNNING_FIRST}, ${order} LIMIT 1`;
}

/** One queue's table: its schema, its statements (`get` by key and `next` among them) and how a row reads. */
export interface JobTable<Row, Job, St extends JobStatements> {
  migrations: string[];
  foreignKeys?: boolean;
  prepare(db: Database.Database): St;
  toJob(r: Row): Job;
}

export interface JobStatements {
  /** SELECT * of one job by its key. */
  get: Database.Statement;
  /** SELECT * of the job to work on (nextJobSql). */
  next: Database.Statement;
}

export abstract class JobQueue<Key, Row, Job, St extends JobStatements> {
  protected readonly db: Database.Database;
  protected readonly tx: Transactions;
  protected readonly st: St;
  private readonly toJob: (r: Row) => Job;

  constructor(
    file: string,
    table: JobTable<Row, Job, St>,
    protected readonly clock: () => number,
    opts: Pick<OpenOptions, 'synchronous'>,
  ) {
    this.db = openDatabase(path.resolve(file), table.migrations, { synchronous: opts.synchronous, foreignKeys: table.foreignKeys });
    this.tx = new Transactions(this.db);
    this.st = table.prepare(this.db);
    this.toJob = table.toJob;
  }

  /** One commit for several writes (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.tx.run(fn);
  }

  get(key: Key): Job | undefined {
    return this.one(this.st.get, key);
  }

  /** The job to work on: one left running (by a crash or a stop), else the first queued in the queue's order. */
  next(): Job | undefined {
    return this.one(this.st.next);
  }

  /** The job of the first row a statement reads, if any. */
  protected one(stmt: Database.Statement, ...params: unknown[]): Job | undefined {
    const r = stmt.get(...params) as Row | undefined;
    return r ? this.toJob(r) : undefined;
  }

  /** The jobs of every row a statement reads. */
  protected many(stmt: Database.Statement, ...params: unknown[]): Job[] {
    return (stmt.all(...params) as Row[]).map(this.toJob);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
