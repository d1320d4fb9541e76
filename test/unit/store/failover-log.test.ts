import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FailoverEntry, FailoverLog } from '../../../lib/store/failover-log';

const T0 = Date.UTC(2026, 10, 22, 20, 0, 0);

describe('failover log', () => {
  let dir: string;
  let file: string;
  let log: FailoverLog;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-failover-log-'));
    file = path.join(dir, 'twinrec', 'failover.sqlite');
    log = new FailoverLog(file);
  });

  afterEach(() => {
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function openEntry(p: Partial<Parameters<FailoverLog['open']>[0]> = {}): FailoverEntry {
    return log.open({ group: 'site', failedServer: 'main-1', failoverServer: 'fo-1', channels: [1, 2], epoch: 1, startedAt: T0, ...p });
  }

  describe('open, get, list', () => {
    it('opens an active entry with every field and "failover started" in its history', () => {
      const e = openEntry({ channels: [3, 1, 7], epoch: 4, drill: true });
      assert.ok(e.id > 0);
      assert.deepEqual(
        { ...e, id: 0, history: [] },
        {
          id: 0,
          group: 'site',
          failedServer: 'main-1',
          failoverServer: 'fo-1',
          channels: [3, 1, 7],
          epoch: 4,
          startedAt: T0,
          endedAt: null,
          state: 'active',
          failbackResult: 'none',
          failbackReason: null,
          failbackStartedAt: null,
          materialCopy: 'none',
          drill: true,
          takeoverReleased: null,
          history: [],
        },
      );
      assert.equal(e.history.length, 1);
      assert.equal(e.history[0].at, T0);
      assert.match(e.history[0].text, /^failover started/);
      assert.deepEqual(log.get(e.id), e);
      assert.equal(openEntry().drill, false);
    });

    it('creates the database file and its directory, in WAL mode', () => {
      assert.ok(fs.existsSync(file));
      const db = new Database(file, { readonly: true });
      try {
        assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
        assert.equal(db.pragma('user_version', { simple: true }), 2);
      } finally {
        db.close();
      }
    });

    it('get of an unknown id is undefined', () => {
      assert.equal(log.get(12345), undefined);
    });

    it('refuses malformed entries and stores nothing', () => {
      assert.throws(() => openEntry({ failedServer: '' }), /failed server/);
      assert.throws(() => openEntry({ failoverServer: 'main-1' }), /itself/);
      assert.throws(() => openEntry({ channels: [1.5] }), /channel numbers/);
      assert.throws(() => openEntry({ epoch: -1 }), /epoch/);
      assert.throws(() => openEntry({ startedAt: NaN }), /start time/);
      assert.deepEqual(log.list(), []);
    });

    it('lists newest first and filters by state and failed server', () => {
      const a = openEntry({ startedAt: T0 + 1000 });
      const b = openEntry({ startedAt: T0 + 3000, failedServer: 'main-2' });
      const c = openEntry({ startedAt: T0 + 2000 });
      const d = openEntry({ startedAt: T0 + 3000 }); // same time as b, opened later
      assert.deepEqual(
        log.list().map((e) => e.id),
        [d.id, b.id, c.id, a.id],
      );
      assert.deepEqual(
        log.list({ failedServer: 'main-1' }).map((e) => e.id),
        [d.id, c.id, a.id],
      );
      assert.deepEqual(log.list({ failedServer: 'nobody' }), []);

      log.beginFailback(c.id, T0 + 5000);
      log.beginFailback(a.id, T0 + 5000);
      log.finishFailback(a.id, 'ok', null, T0 + 6000);
      assert.deepEqual(
        log.list({ state: 'active' }).map((e) => e.id),
        [d.id, b.id],
      );
      assert.deepEqual(
        log.list({ state: 'failback-in-progress' }).map((e) => e.id),
        [c.id],
      );
      assert.deepEqual(
        log.list({ state: ['finalized', 'failback-in-progress'] }).map((e) => e.id),
        [c.id, a.id],
      );
      assert.deepEqual(
        log.list({ state: 'active', failedServer: 'main-2' }).map((e) => e.id),
        [b.id],
      );
      assert.deepEqual(log.list({ state: [] }), []);
      assert.deepEqual(
        log.active().map((e) => e.id),
        [d.id, b.id, c.id],
      );
      assert.deepEqual(
        log.finalized().map((e) => e.id),
        [a.id],
      );
    });

    it('finalized(limit) gives the newest finalized entries', () => {
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        const e = openEntry({ startedAt: T0 + i * 1000 });
        log.markDoneByNewer([e.id], T0 + 10_000);
        ids.push(e.id);
      }
      assert.deepEqual(
        log.finalized(2).map((e) => e.id),
        [ids[4], ids[3]],
      );
      assert.equal(log.finalized().length, 5);
      assert.deepEqual(log.finalized(0), []);
    });
  });

  describe('state transitions', () => {
    it('active -> failback in progress -> finalized (ok)', () => {
      const e = openEntry();
      const b = log.beginFailback(e.id, T0 + 60_000);
      assert.equal(b.state, 'failback-in-progress');
      assert.equal(b.failbackStartedAt, T0 + 60_000);
      assert.equal(b.endedAt, null);
      const f = log.finishFailback(e.id, 'ok', null, T0 + 65_000);
      assert.equal(f.state, 'finalized');
      assert.equal(f.failbackResult, 'ok');
      assert.equal(f.failbackReason, null);
      assert.equal(f.endedAt, T0 + 65_000);
      assert.deepEqual(f.history.slice(1), [
        { at: T0 + 60_000, text: 'failback started' },
        { at: T0 + 65_000, text: 'failback performed' },
      ]);
    });

    it('a failed failback goes back to active with the reason kept, and may be tried again', () => {
      const e = openEntry();
      log.beginFailback(e.id, T0 + 1);
      const f = log.finishFailback(e.id, 'failed', 'main-1 did not answer', T0 + 2);
      assert.equal(f.state, 'active');
      assert.equal(f.failbackResult, 'failed');
      assert.equal(f.failbackReason, 'main-1 did not answer');
      assert.equal(f.endedAt, null);
      assert.deepEqual(f.history.at(-1), { at: T0 + 2, text: 'failback failed: main-1 did not answer' });
      log.beginFailback(e.id, T0 + 3);
      const ok = log.finishFailback(e.id, 'ok', null, T0 + 4);
      assert.equal(ok.state, 'finalized');
      assert.equal(ok.failbackResult, 'ok');
      assert.equal(ok.failbackReason, null);
      assert.deepEqual(ok.history.map((h) => h.text).slice(1), [
        'failback started',
        'failback failed: main-1 did not answer',
        'failback started',
        'failback performed',
      ]);
    });

    it('refuses transitions from the wrong state and changes nothing', () => {
      const e = openEntry();
      assert.throws(() => log.finishFailback(e.id, 'ok', null, T0), /is active, not failback-in-progress/);
      log.beginFailback(e.id, T0 + 1);
      const before = JSON.stringify(log.list());
      assert.throws(() => log.beginFailback(e.id, T0 + 2), /is failback-in-progress, not active/);
      assert.throws(() => log.markDoneByNewer([e.id], T0 + 2), /not active/);
      assert.equal(JSON.stringify(log.list()), before);
      log.finishFailback(e.id, 'ok', null, T0 + 3);
      assert.throws(() => log.beginFailback(e.id, T0 + 4), /is finalized/);
      assert.throws(() => log.finishFailback(e.id, 'failed', 'x', T0 + 4), /is finalized/);
      assert.throws(() => log.beginFailback(999, T0), /no failover log entry 999/);
      assert.throws(() => log.appendHistory(999, 'x', T0), /no failover log entry 999/);
    });

    it('markDoneByNewer finalizes with done-by-newer and material copy done, all or none', () => {
      const a = openEntry({ startedAt: T0 });
      const b = openEntry({ startedAt: T0 + 1 });
      const c = openEntry({ startedAt: T0 + 2 });
      log.beginFailback(c.id, T0 + 3);
      const before = JSON.stringify(log.list());
      // c is not active: the whole call is refused, a and b stay as they were
      assert.throws(() => log.markDoneByNewer([a.id, b.id, c.id], T0 + 4), /not active/);
      assert.equal(JSON.stringify(log.list()), before);

      const done = log.markDoneByNewer([a.id, b.id], T0 + 5);
      assert.equal(done.length, 2);
      for (const id of [a.id, b.id]) {
        const e = log.get(id)!;
        assert.equal(e.state, 'finalized');
        assert.equal(e.failbackResult, 'done-by-newer');
        assert.equal(e.materialCopy, 'done');
        assert.equal(e.endedAt, T0 + 5);
        assert.match(e.history.at(-1)!.text, /done by a newer entry/);
      }
    });

    it('setMaterialCopy records the state and its history; refuses an unknown state', () => {
      const e = openEntry();
      assert.equal(log.setMaterialCopy(e.id, 'requested', T0 + 1).materialCopy, 'requested');
      assert.equal(log.setMaterialCopy(e.id, 'running', T0 + 2).materialCopy, 'running');
      assert.equal(log.setMaterialCopy(e.id, 'done', T0 + 3).materialCopy, 'done');
      assert.deepEqual(log.get(e.id)!.history.slice(1), [
        { at: T0 + 1, text: 'material copy requested' },
        { at: T0 + 2, text: 'material copy running' },
        { at: T0 + 3, text: 'material copy done' },
      ]);
      assert.throws(() => log.setMaterialCopy(e.id, 'lost' as never), /material copy state/);
      assert.equal(log.get(e.id)!.materialCopy, 'done');
    });
  });

  describe('takeover released without a failback', () => {
    it('markTakeoverReleased records who ended it and when, keeps the entry active and survives a reopen', () => {
      const e = openEntry();
      const r = log.markTakeoverReleased(e.id, 'hand', 'released by hand', T0 + 5);
      assert.equal(r.state, 'active');
      assert.deepEqual(r.takeoverReleased, { at: T0 + 5, by: 'hand' });
      assert.deepEqual(r.history.at(-1), { at: T0 + 5, text: 'takeover released: released by hand' });
      const p = log.markTakeoverReleased(openEntry({ failedServer: 'main-2' }).id, 'priority', 'a server of higher priority failed', T0 + 6);
      log.close();
      log = new FailoverLog(file);
      assert.deepEqual(log.get(e.id)!.takeoverReleased, { at: T0 + 5, by: 'hand' });
      assert.deepEqual(log.get(p.id)!.takeoverReleased, { at: T0 + 6, by: 'priority' });
      assert.equal(openEntry().takeoverReleased, null);
    });

    it('refuses an entry that is not active, an unknown id and an unknown cause, and changes nothing', () => {
      const e = openEntry();
      log.beginFailback(e.id, T0 + 1);
      const before = log.get(e.id);
      assert.throws(() => log.markTakeoverReleased(e.id, 'hand', 'x', T0 + 2), /failback-in-progress, not active/);
      assert.throws(() => log.markTakeoverReleased(999, 'hand', 'x', T0 + 2), /no failover log entry 999/);
      const a = openEntry({ failedServer: 'main-2' });
      assert.throws(() => log.markTakeoverReleased(a.id, 'operator' as never, 'x', T0 + 2), /by hand or for priority/);
      assert.deepEqual(log.get(e.id), before);
      assert.equal(log.get(a.id)!.takeoverReleased, null);
      assert.equal(log.get(a.id)!.history.length, 1);
    });

    it('a log written before this column existed opens with its entries unreleased and can record a release', () => {
      log.close();
      fs.rmSync(file, { force: true });
      // the first schema only, as an earlier version wrote it
      const old = new Database(file);
      old.exec(`CREATE TABLE failovers (id INTEGER PRIMARY KEY AUTOINCREMENT, grp TEXT NOT NULL, failed_server TEXT NOT NULL, failover_server TEXT NOT NULL,
        channels TEXT NOT NULL, epoch INTEGER NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER, state TEXT NOT NULL, failback_result TEXT NOT NULL DEFAULT 'none',
        failback_reason TEXT, failback_started_at INTEGER, material_copy TEXT NOT NULL DEFAULT 'none', drill INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE failover_history (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry_id INTEGER NOT NULL REFERENCES failovers(id), at INTEGER NOT NULL, text TEXT NOT NULL);
        INSERT INTO failovers (grp, failed_server, failover_server, channels, epoch, started_at, state) VALUES ('site', 'main-1', 'fo-1', '[1]', 4, ${T0}, 'active');
        INSERT INTO failover_history (entry_id, at, text) VALUES (1, ${T0}, 'failover started');`);
      old.pragma('user_version = 1');
      old.close();
      log = new FailoverLog(file);
      const e = log.get(1)!;
      assert.equal(e.epoch, 4);
      assert.equal(e.takeoverReleased, null);
      assert.deepEqual(log.markTakeoverReleased(1, 'hand', 'released by hand', T0 + 1).takeoverReleased, { at: T0 + 1, by: 'hand' });
    });
  });

  describe('history', () => {
    it('appendHistory adds timestamped texts in order', () => {
      const e = openEntry();
      log.appendHistory(e.id, 'operator looked at it', T0 + 10);
      log.appendHistory(e.id, 'and again', T0 + 5);
      assert.deepEqual(log.get(e.id)!.history.slice(1), [
        { at: T0 + 10, text: 'operator looked at it' },
        { at: T0 + 5, text: 'and again' },
      ]);
    });

    it('keeps the histories of entries apart', () => {
      const a = openEntry();
      const b = openEntry({ failedServer: 'main-2' });
      log.appendHistory(a.id, 'for a', T0 + 1);
      assert.equal(log.get(a.id)!.history.length, 2);
      assert.equal(log.get(b.id)!.history.length, 1);
    });
  });

  describe('epochs', () => {
    it('maxEpoch is the highest epoch of the group, 0 when it has none', () => {
      assert.equal(log.maxEpoch('site'), 0);
      openEntry({ epoch: 3 });
      openEntry({ epoch: 7 });
      openEntry({ epoch: 5 });
      openEntry({ group: 'other', epoch: 42 });
      assert.equal(log.maxEpoch('site'), 7);
      assert.equal(log.maxEpoch('other'), 42);
      assert.equal(log.maxEpoch('none'), 0);
    });
  });

  describe('durability', () => {
    it('keeps everything across close and reopen', () => {
      const a = openEntry({ epoch: 2 });
      const b = openEntry({ epoch: 3, startedAt: T0 + 1, drill: true });
      log.beginFailback(a.id, T0 + 2);
      log.finishFailback(a.id, 'ok', null, T0 + 3);
      log.setMaterialCopy(a.id, 'requested', T0 + 3);
      const before = JSON.stringify(log.list());
      log.close();
      log = new FailoverLog(file);
      assert.equal(JSON.stringify(log.list()), before);
      assert.equal(log.maxEpoch('site'), 3);
      assert.equal(log.get(b.id)!.drill, true);
      // ids keep growing after a reopen
      assert.ok(openEntry().id > b.id);
    });

    it('a kill -9 in the middle of writing loses no committed entry', async function () {
      this.timeout(60_000);
      const logJs = path.resolve(__dirname, '../../../lib/store/failover-log.js');
      assert.ok(fs.existsSync(logJs), 'compile first: lib/store/failover-log.js');
      log.close();
      const script = `
        const fs = require('fs');
        const { FailoverLog } = require(${JSON.stringify(logJs)});
        const log = new FailoverLog(process.argv[1]);
        let n = 0;
        function batch() {
          for (let i = 0; i < 10 && n < 1000000; i++) {
            n++;
            const e = log.open({ group: 'site', failedServer: 'main-' + n, failoverServer: 'fo-1', channels: [n % 999 + 1], epoch: n, startedAt: n });
            if (n % 3 === 0) log.beginFailback(e.id, n + 1);
            fs.writeSync(1, 'COMMITTED ' + n + ' ' + e.id + ' ' + (n % 3 === 0 ? 'failback-in-progress' : 'active') + '\\n');
          }
          setImmediate(batch);
        }
        batch();
      `;
      const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'pipe'] });
      const committed = new Map<number, { id: number; state: string }>();
      let stderr = '';
      let buf = '';
      let killedAt = -1;
      const exited = new Promise<{ signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (_code, signal) => resolve({ signal })));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const m = /^COMMITTED (\d+) (\d+) (\S+)$/.exec(buf.slice(0, i));
          buf = buf.slice(i + 1);
          if (m) committed.set(Number(m[1]), { id: Number(m[2]), state: m[3] });
        }
        if (killedAt < 0 && committed.size >= 100) {
          killedAt = committed.size;
          child.kill('SIGKILL');
        }
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
      const { signal } = await exited;
      clearTimeout(timer);
      assert.ok(killedAt >= 100, `the child printed only ${committed.size} commits before it ended; stderr: ${stderr}`);
      assert.equal(signal, 'SIGKILL', `the child ended by itself; stderr: ${stderr}`);
      assert.equal(stderr, '');

      log = new FailoverLog(file);
      const lost: number[] = [];
      for (const [n, c] of committed) {
        const e = log.get(c.id);
        if (!e) {
          lost.push(n);
          continue;
        }
        assert.equal(e.failedServer, `main-${n}`);
        assert.equal(e.epoch, n);
        assert.equal(e.state, c.state);
        assert.equal(e.history.length, c.state === 'active' ? 1 : 2);
      }
      assert.deepEqual(lost, [], `${lost.length} of ${committed.size} committed entries lost`);
      const all = log.list();
      assert.ok(all.length >= committed.size);
      assert.ok(log.maxEpoch('site') >= Math.max(...committed.keys()));
    });
  });
});
