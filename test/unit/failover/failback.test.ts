import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  FAILBACK_CHECKS,
  FailbackCheck,
  FailbackContext,
  FailbackRefused,
  FailbackStepFailed,
  checkFailback,
  finalizeOthers,
  pickAutomaticFailback,
  runFailback,
} from '../../../lib/failover/failback';
import { FailoverEntry, FailoverLog } from '../../../lib/store/failover-log';

const T0 = Date.UTC(2026, 10, 22, 20, 0, 0);

describe('failback', () => {
  let dir: string;
  let log: FailoverLog;
  let now: number;
  /** The world the checks look at; every test starts with all checks passing. */
  let world: { acting: Set<string>; failed: Set<string>; enabled: boolean; maintenance: Set<string> };
  let ctx: FailbackContext;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-failback-'));
    log = new FailoverLog(path.join(dir, 'twinrec', 'failover.sqlite'));
    now = T0 + 3_600_000;
    world = { acting: new Set(['main-1', 'main-2']), failed: new Set(['main-1', 'main-2']), enabled: true, maintenance: new Set() };
    ctx = {
      log,
      actingFor: (s) => world.acting.has(s),
      isMarkedFailed: (s) => world.failed.has(s),
      failoverEnabled: () => world.enabled,
      maintenance: (s) => world.maintenance.has(s),
      clock: () => (now += 1000),
    };
  });

  afterEach(() => {
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function openEntry(p: Partial<Parameters<FailoverLog['open']>[0]> = {}): FailoverEntry {
    return log.open({ group: 'site', failedServer: 'main-1', failoverServer: 'fo-1', channels: [1, 2], epoch: 1, startedAt: T0, ...p });
  }

  function refusal(fn: () => unknown): FailbackRefused {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof FailbackRefused, `expected FailbackRefused, got ${String(err)}`);
      return err;
    }
    assert.fail('expected the failback to be refused');
  }

  const okSteps = () => {
    const calls: string[] = [];
    return {
      calls,
      steps: {
        giveBack: async (e: FailoverEntry) => void calls.push(`giveBack ${e.id} ${log.get(e.id)!.state}`),
        releaseTakeover: async (e: FailoverEntry) => void calls.push(`releaseTakeover ${e.id} ${log.get(e.id)!.state}`),
        notify: async (e: FailoverEntry) => void calls.push(`notify ${e.id} ${log.get(e.id)!.state}`),
      },
    };
  };

  describe('checkFailback', () => {
    it('passes and returns the entry when all five checks hold, changing nothing', () => {
      const e = openEntry();
      const before = JSON.stringify(log.list());
      assert.deepEqual(checkFailback(ctx, e.id), e);
      assert.equal(JSON.stringify(log.list()), before);
    });

    /** Make exactly one check fail; returns the expected words of its reason. */
    const breakers: Record<FailbackCheck, { why: RegExp; breakIt: (e: FailoverEntry) => number }> = {
      entry: { why: /no failover log entry 4242/, breakIt: () => 4242 },
      acting: {
        why: /fo-1 no longer records in place of main-1/,
        breakIt: (e) => (world.acting.delete('main-1'), e.id),
      },
      'still-failed': {
        why: /main-1 is no longer marked failed/,
        breakIt: (e) => (world.failed.delete('main-1'), e.id),
      },
      enabled: { why: /failover is disabled for this site/, breakIt: (e) => ((world.enabled = false), e.id) },
      'not-running': {
        why: /a failback of main-1 is already running \(entry \d+\)/,
        breakIt: (e) => {
          const other = openEntry({ startedAt: T0 - 1000 });
          log.beginFailback(other.id, T0 + 1);
          return e.id;
        },
      },
    };

    for (const check of FAILBACK_CHECKS) {
      it(`refuses with check "${check}" and its own reason, changing nothing`, () => {
        const e = openEntry();
        const id = breakers[check].breakIt(e);
        const before = JSON.stringify(log.list());
        const err = refusal(() => checkFailback(ctx, id));
        assert.equal(err.check, check);
        assert.equal(err.entryId, id);
        assert.match(err.message, /^Failback refused/);
        assert.match(err.message, breakers[check].why);
        if (check !== 'entry') assert.match(err.message, new RegExp(`failover log entry ${e.id} `));
        assert.equal(JSON.stringify(log.list()), before);
      });
    }

    it('refuses an entry in the wrong state (in progress, finalized) with check "entry"', () => {
      const a = openEntry();
      log.beginFailback(a.id, T0 + 1);
      let err = refusal(() => checkFailback(ctx, a.id));
      assert.equal(err.check, 'entry');
      assert.match(err.message, /failback-in-progress: a failback is already in progress/);
      log.finishFailback(a.id, 'ok', null, T0 + 2);
      err = refusal(() => checkFailback(ctx, a.id));
      assert.equal(err.check, 'entry');
      assert.match(err.message, /is finalized/);
      const b = openEntry();
      log.markDoneByNewer([b.id], T0 + 3);
      err = refusal(() => checkFailback(ctx, b.id));
      assert.equal(err.check, 'entry');
      assert.match(err.message, /done-by-newer/);
    });

    it('reports the first failing check in the order entry, acting, still-failed, enabled, not-running', () => {
      const order = [...FAILBACK_CHECKS];
      assert.deepEqual(order, ['entry', 'acting', 'still-failed', 'enabled', 'not-running']);
      // break every pair (i < j): the earlier one is reported
      for (let i = 0; i < order.length; i++) {
        for (let j = i + 1; j < order.length; j++) {
          for (const e of log.active()) {
            if (e.state === 'active') log.markDoneByNewer([e.id], T0);
            else log.finishFailback(e.id, 'ok', null, T0);
          }
          world = { acting: new Set(['main-1']), failed: new Set(['main-1']), enabled: true, maintenance: new Set() };
          const e = openEntry({ startedAt: T0 + i * 10 + j });
          // the later first, so that breaking "entry" (an unknown id) does not hide the other
          const idJ = breakers[order[j]].breakIt(e);
          const idI = breakers[order[i]].breakIt(e);
          const id = order[i] === 'entry' ? idI : idJ;
          const err = refusal(() => checkFailback(ctx, id));
          assert.equal(err.check, order[i], `${order[i]} and ${order[j]} both fail`);
        }
      }
    });

    it('a second failback of the same entry is refused while the first runs', async () => {
      const e = openEntry();
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const { steps } = okSteps();
      const first = runFailback(ctx, e.id, { ...steps, giveBack: () => gate });
      const err = refusal(() => checkFailback(ctx, e.id));
      assert.equal(err.check, 'entry');
      await assert.rejects(runFailback(ctx, e.id, steps), (x: unknown) => x instanceof FailbackRefused && x.check === 'entry');
      release();
      const r = await first;
      assert.equal(r.entry.state, 'finalized');
    });
  });

  describe('automatic failback', () => {
    it('picks the newest eligible entry of the server and reports the others', () => {
      const old = openEntry({ startedAt: T0 });
      const newest = openEntry({ startedAt: T0 + 2000, epoch: 3 });
      const middle = openEntry({ startedAt: T0 + 1000, epoch: 2 });
      openEntry({ failedServer: 'main-2', startedAt: T0 + 5000 });
      const finished = openEntry({ startedAt: T0 + 9000 });
      log.beginFailback(finished.id, T0 + 9001);
      log.finishFailback(finished.id, 'ok', null, T0 + 9002);
      const before = JSON.stringify(log.list());
      const pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('entry' in pick, JSON.stringify(pick));
      assert.equal(pick.entry.id, newest.id);
      assert.deepEqual(
        pick.others.map((e) => e.id),
        [middle.id, old.id],
      );
      assert.equal(JSON.stringify(log.list()), before, 'picking changes nothing');
    });

    it('finalizeOthers marks the others failback done and material copy done', async () => {
      const old = openEntry({ startedAt: T0 });
      const newest = openEntry({ startedAt: T0 + 2000 });
      const pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('entry' in pick);
      const { steps } = okSteps();
      await runFailback(ctx, pick.entry.id, steps);
      const done = finalizeOthers(ctx, pick.others);
      assert.deepEqual(
        done.map((e) => e.id),
        [old.id],
      );
      const o = log.get(old.id)!;
      assert.equal(o.state, 'finalized');
      assert.equal(o.failbackResult, 'done-by-newer');
      assert.equal(o.materialCopy, 'done');
      assert.equal(log.get(newest.id)!.failbackResult, 'ok');
      assert.deepEqual(finalizeOthers(ctx, []), []);
      assert.deepEqual(log.active(), []);
    });

    it('a failed failback stays eligible', async () => {
      const e = openEntry();
      const { steps } = okSteps();
      await assert.rejects(runFailback(ctx, e.id, { ...steps, giveBack: async () => Promise.reject(new Error('no answer')) }));
      const pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('entry' in pick);
      assert.equal(pick.entry.id, e.id);
    });

    it('is refused while the failed server or its failover server is in maintenance mode', () => {
      openEntry();
      const before = JSON.stringify(log.list());
      world.maintenance.add('main-1');
      let pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('refused' in pick);
      assert.match(pick.refused, /main-1: it is in maintenance mode/);
      world.maintenance.clear();
      world.maintenance.add('fo-1');
      pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('refused' in pick);
      assert.match(pick.refused, /failover server fo-1 is in maintenance mode/);
      assert.equal(JSON.stringify(log.list()), before);
      world.maintenance.clear();
      assert.ok('entry' in pickAutomaticFailback(ctx, 'main-1'));
    });

    it('is refused with a reason when there is no eligible entry or a failback is running', () => {
      let pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('refused' in pick);
      assert.match(pick.refused, /no active entry for it/);
      const a = openEntry();
      openEntry({ startedAt: T0 + 1 });
      log.beginFailback(a.id, T0 + 2);
      pick = pickAutomaticFailback(ctx, 'main-1');
      assert.ok('refused' in pick);
      assert.match(pick.refused, new RegExp(`already running \\(entry ${a.id}\\)`));
    });
  });

  describe('runFailback', () => {
    it('happy path: steps in order, entry finalized ok, material copy requested for the failover period', async () => {
      const e = openEntry({ channels: [4, 9], startedAt: T0 });
      const { calls, steps } = okSteps();
      const r = await runFailback(ctx, e.id, steps);
      assert.deepEqual(calls, [`giveBack ${e.id} failback-in-progress`, `releaseTakeover ${e.id} failback-in-progress`, `notify ${e.id} finalized`]);
      const stored = log.get(e.id)!;
      assert.deepEqual(r.entry, stored);
      assert.equal(stored.state, 'finalized');
      assert.equal(stored.failbackResult, 'ok');
      assert.equal(stored.failbackReason, null);
      assert.equal(stored.materialCopy, 'requested');
      assert.ok(stored.failbackStartedAt! > T0);
      assert.ok(stored.endedAt! > stored.failbackStartedAt!);
      assert.deepEqual(r.materialCopy, {
        failedServer: 'main-1',
        failoverServer: 'fo-1',
        channels: [4, 9],
        from: T0,
        to: stored.endedAt,
        entryId: e.id,
      });
      const texts = stored.history.map((h) => h.text);
      const started = texts.indexOf('failback started');
      const performed = texts.indexOf('failback performed');
      assert.ok(started > 0 && performed > started, texts.join(' | '));
      assert.equal(texts.at(-1), 'material copy requested');
      const ats = stored.history.map((h) => h.at);
      assert.deepEqual(
        ats,
        [...ats].sort((x, y) => x - y),
        'history in time order',
      );
    });

    for (const step of ['giveBack', 'releaseTakeover'] as const) {
      it(`a failing ${step} puts the entry back to active with failback failed and the reason kept`, async () => {
        const e = openEntry();
        const { calls, steps } = okSteps();
        const failing = { ...steps, [step]: async () => Promise.reject(new Error('main-1 refused the settings')) };
        await assert.rejects(runFailback(ctx, e.id, failing), (err: unknown) => {
          assert.ok(err instanceof FailbackStepFailed);
          assert.equal(err.step, step);
          assert.equal(err.entryId, e.id);
          assert.match(err.message, new RegExp(`failed at step ${step}: main-1 refused the settings`));
          return true;
        });
        assert.ok(!calls.some((c) => c.startsWith('notify')), 'no notification of a failed failback');
        const stored = log.get(e.id)!;
        assert.equal(stored.state, 'active');
        assert.equal(stored.failbackResult, 'failed');
        assert.equal(stored.failbackReason, `${step}: main-1 refused the settings`);
        assert.equal(stored.endedAt, null);
        assert.equal(stored.materialCopy, 'none');
        assert.deepEqual(stored.history.map((h) => h.text).slice(1), ['failback started', `failback failed: ${step}: main-1 refused the settings`]);
        // it may be tried again, and then succeeds
        const r = await runFailback(ctx, e.id, okSteps().steps);
        assert.equal(r.entry.state, 'finalized');
        assert.equal(r.entry.failbackResult, 'ok');
        assert.equal(r.entry.failbackReason, null);
      });
    }

    it('a failing notify is written to the history and does not undo the failback', async () => {
      const e = openEntry();
      const { steps } = okSteps();
      const r = await runFailback(ctx, e.id, { ...steps, notify: async () => Promise.reject(new Error('no clients')) });
      assert.equal(r.entry.state, 'finalized');
      assert.equal(r.entry.failbackResult, 'ok');
      assert.equal(r.entry.materialCopy, 'requested');
      assert.equal(r.entry.history.at(-1)!.text, 'notify failed: no clients');
      assert.equal(r.materialCopy.to, r.entry.endedAt);
    });

    it('a refused failback runs no step and changes nothing', async () => {
      const e = openEntry();
      world.enabled = false;
      const before = JSON.stringify(log.list());
      const { calls, steps } = okSteps();
      await assert.rejects(runFailback(ctx, e.id, steps), (err: unknown) => err instanceof FailbackRefused && err.check === 'enabled');
      assert.deepEqual(calls, []);
      assert.equal(JSON.stringify(log.list()), before);
    });
  });
});
