import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { JobQueue, JobState, JobTable, nextJobSql, PENDING, RUNNING_FIRST } from '../../../lib/store/job-queue';
import { CopyQueue } from '../../../lib/store/copy-queue';
import { TransferQueue } from '../../../lib/store/transfer-queue';

interface Row {
  id: number;
  state: JobState;
  rank: number;
}
interface Job {
  id: number;
  state: JobState;
  rank: number;
  read: true;
}

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT * FROM jobs WHERE id = ?'),
    next: db.prepare(nextJobSql('jobs', 'rank, id')),
    all: db.prepare('SELECT * FROM jobs ORDER BY id'),
    insert: db.prepare('INSERT INTO jobs (state, rank) VALUES (?, ?)'),
    setState: db.prepare('UPDATE jobs SET state = ? WHERE id = ?'),
  };
}

const TABLE: JobTable<Row, Job, ReturnType<typeof prepare>> = {
  migrations: [`CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT NOT NULL, rank INTEGER NOT NULL DEFAULT 0)`],
  prepare,
  toJob: (r) => ({ ...r, read: true }),
};

class TestQueue extends JobQueue<number, Row, Job, ReturnType<typeof prepare>> {
  constructor(file: string, opts: { synchronous?: 'NORMAL' | 'FULL' } = {}, table = TABLE) {
    super(file, table, () => 1000, opts);
  }
  add(state: JobState, rank = 0): number {
    return Number(this.st.insert.run(state, rank).lastInsertRowid);
  }
  set(id: number, state: JobState): void {
    this.st.setState.run(state, id);
  }
  all(): Job[] {
    return this.many(this.st.all);
  }
  pragma(name: string): unknown {
    return this.db.pragma(name, { simple: true });
  }
  now(): number {
    return this.clock();
  }
}

describe('job queue base (lib/store/job-queue)', () => {
  let dir: string;
  const open: { close(): void }[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-job-queue-'));
  });

  afterEach(() => {
    for (const q of open.splice(0)) q.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function queue(opts: { synchronous?: 'NORMAL' | 'FULL' } = {}, table = TABLE): TestQueue {
    const q = new TestQueue(path.join(dir, 'sub', 'jobs.sqlite'), opts, table);
    open.push(q);
    return q;
  }

  it('builds the statement of the next job: pending ones, one left running first, then the queue order', () => {
    assert.equal(PENDING, "state IN ('running', 'queued')");
    assert.equal(RUNNING_FIRST, "CASE state WHEN 'running' THEN 0 ELSE 1 END");
    assert.equal(
      nextJobSql('copy_tasks', 'id'),
      "SELECT * FROM copy_tasks WHERE state IN ('running', 'queued') ORDER BY CASE state WHEN 'running' THEN 0 ELSE 1 END, id LIMIT 1",
    );
  });

  it('opens the file (creating its folder) in WAL mode, synchronous NORMAL by default or FULL, and migrates it', () => {
    const q = queue();
    assert.equal(q.pragma('journal_mode'), 'wal');
    assert.equal(q.pragma('synchronous'), 1);
    assert.equal(q.pragma('user_version'), 1);
    q.close();
    const full = queue({ synchronous: 'FULL' }, { ...TABLE, foreignKeys: true });
    assert.equal(full.pragma('synchronous'), 2);
    assert.equal(full.pragma('foreign_keys'), 1);
    assert.equal(full.pragma('user_version'), 1, 'not migrated twice');
  });

  it('reads jobs through toJob: get by key, many, and next (running, then queued by order; none when nothing is pending)', () => {
    const q = queue();
    assert.equal(q.next(), undefined);
    const a = q.add('queued', 5);
    const b = q.add('queued', 1);
    const c = q.add('done', 0);
    assert.deepEqual(q.get(a), { id: a, state: 'queued', rank: 5, read: true });
    assert.equal(q.get(999), undefined);
    assert.equal(q.next()!.id, b);
    q.set(a, 'running');
    assert.equal(q.next()!.id, a);
    q.set(a, 'failed');
    q.set(b, 'done');
    assert.equal(q.next(), undefined);
    assert.deepEqual(
      q.all().map((j) => [j.id, j.state]),
      [
        [a, 'failed'],
        [b, 'done'],
        [c, 'done'],
      ],
    );
    assert.equal(q.now(), 1000);
  });

  it('runs a transaction as one commit; nested ones join it and an exception rolls all of it back', () => {
    const q = queue();
    assert.throws(() =>
      q.transaction(() => {
        q.add('queued');
        q.transaction(() => q.add('queued'));
        throw new Error('no');
      }),
    );
    assert.equal(q.all().length, 0);
    assert.equal(
      q.transaction(() => q.transaction(() => q.add('queued'))),
      1,
    );
    assert.equal(q.all().length, 1);
  });

  it('closes once (a second close does nothing)', () => {
    const q = queue();
    q.close();
    q.close();
  });

  it('the copy and the transfer queue keep their pragmas on it', () => {
    const cq = new CopyQueue(path.join(dir, 'copy.sqlite'), Date.now, { synchronous: 'FULL' });
    const tq = new TransferQueue(path.join(dir, 'transfer.sqlite'));
    open.push(cq, tq);
    const pragmas = (q: object) => {
      const db = (q as unknown as { db: Database.Database }).db;
      return [db.pragma('journal_mode', { simple: true }), db.pragma('synchronous', { simple: true }), db.pragma('user_version', { simple: true })];
    };
    assert.deepEqual(pragmas(cq), ['wal', 2, 1]);
    assert.deepEqual(pragmas(tq), ['wal', 1, 1]);
  });
});
