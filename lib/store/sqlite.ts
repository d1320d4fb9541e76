/**
 * The SQLite plumbing every durable store of this package shares: open a file
 * in WAL mode (a commit survives a kill -9 of the process; synchronous FULL also
 * a power cut), migrate by user_version, and run writes as one transaction with
 * prepared BEGIN/COMMIT (nested calls join the outer one).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export interface OpenOptions {
  synchronous?: 'NORMAL' | 'FULL';
  foreignKeys?: boolean;
}

/** Open (creating folders) and migrate a database: migrations[v] takes user_version v to v + 1. */
export function openDatabase(file: string, migrations: string[], opts: OpenOptions = {}): Database.Database {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL'}`);
  db.pragma('busy_timeout = 5000');
  if (opts.foreignKeys) db.pragma('foreign_keys = ON');
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let v = version; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}

/** One commit for several writes; nested calls join the outer transaction (an exception rolls all of it back). */
export class Transactions {
  private depth = 0;
  private readonly begin: Database.Statement;
  private readonly commit: Database.Statement;
  private readonly rollback: Database.Statement;

  constructor(private readonly db: Database.Database) {
    this.begin = db.prepare('BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
  }

  run<T>(fn: () => T): T {
    if (this.depth > 0) {
      this.depth++;
      try {
        return fn();
      } finally {
        this.depth--;
      }
    }
    this.begin.run();
    this.depth = 1;
    try {
      const r = fn();
      this.commit.run();
      return r;
    } catch (err) {
      if (this.db.inTransaction) this.rollback.run();
      throw err;
    } finally {
      this.depth = 0;
    }
  }
}
