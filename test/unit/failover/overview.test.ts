/**
 * lib/failover/overview: the change notifier's rate limit and coalescing, the
 * event watching, and what the sidebar is told it may do with a failover log
 * entry (entries from a real FailoverLog).
 */
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { FailoverLog } from '../../../lib/store/failover-log';
import { copyRequestOf } from '../../../lib/copy/copy-request';
import { buildOverview, ChangeNotice, ChangeNotifier, CONTROLLER_EVENTS, copyAction, eventServer, watchEvents } from '../../../lib/failover/overview';
import type { ServerState } from '../../../lib/link/schemas';
import { tmpDir } from '../../support/nr';

/** A clock and timers the test moves by hand. */
function manualTime() {
  let now = 1000;
  const pending: { at: number; fn: () => void; id: number }[] = [];
  let ids = 0;
  return {
    clock: () => now,
    timers: {
      setTimeout: (fn: () => void, ms: number) => {
        const t = { at: now + ms, fn, id: ++ids };
        pending.push(t);
        return t.id;
      },
      clearTimeout: (id: unknown) => {
        const i = pending.findIndex((t) => t.id === id);
        if (i >= 0) pending.splice(i, 1);
      },
    },
    advance(ms: number) {
      const until = now + ms;
      for (;;) {
        pending.sort((a, b) => a.at - b.at);
        const t = pending[0];
        if (!t || t.at > until) break;
        pending.shift();
        now = t.at;
        t.fn();
      }
      now = until;
    },
    get timersPending() {
      return pending.length;
    },
  };
}

describe('redundancy overview (lib)', function () {
  describe('ChangeNotifier', function () {
    it('publishes the first change at once and coalesces the changes within 500 ms into one notice', function () {
      const time = manualTime();
      const out: ChangeNotice[] = [];
      const n = new ChangeNotifier((x) => out.push(x), { clock: time.clock, timers: time.timers });
      n.note('failover', 'main-1');
      assert.deepEqual(out, [{ seq: 1, at: 1000, reasons: ['failover'], servers: ['main-1'] }]);
      time.advance(100);
      n.note('copy-progress', 'main-1');
      n.note('peer', 'main-2');
      n.note('copy-progress', 'main-1');
      assert.equal(out.length, 1, 'held back within the gap');
      time.advance(399);
      assert.equal(out.length, 1);
      time.advance(1);
      assert.deepEqual(out[1], { seq: 2, at: 1500, reasons: ['copy-progress', 'peer'], servers: ['main-1', 'main-2'] });
      // 200 changes in 2 s: at most one notice per 500 ms
      for (let i = 0; i < 200; i++) {
        n.note('transfer-progress');
        time.advance(10);
      }
      time.advance(1000);
      for (let i = 1; i < out.length; i++) assert.ok(out[i].at - out[i - 1].at >= 500, `notices ${i - 1} and ${i}`);
      assert.ok(out.length <= 2 + 5, `${out.length} notices`);
      assert.equal(time.timersPending, 0, 'nothing left scheduled when quiet');
    });

    it('never lets a throwing publish out, and stop drops what is pending', function () {
      const time = manualTime();
      const errors: unknown[] = [];
      let calls = 0;
      const n = new ChangeNotifier(
        () => {
          calls++;
          throw new Error('comms down');
        },
        { clock: time.clock, timers: time.timers, onError: (e) => errors.push(e) },
      );
      n.note('failover');
      assert.equal(calls, 1);
      assert.match(String(errors[0]), /comms down/);
      n.note('failback');
      n.stop();
      time.advance(1000);
      assert.equal(calls, 1, 'nothing after stop');
      assert.equal(time.timersPending, 0);
    });
  });

  it('watchEvents notes the named events of an emitter with the server they are about, and its detach removes every listener', function () {
    const em = new EventEmitter();
    const seen: [string, string | null | undefined][] = [];
    const detach = watchEvents(em, CONTROLLER_EVENTS, (r, s) => seen.push([r, s]), eventServer);
    em.emit('failover', { entry: { failedServer: 'main-1' } });
    em.emit('restored', { server: 'main-2', at: 1 });
    em.emit('recorder', { anything: true });
    assert.deepEqual(seen, [
      ['failover', 'main-1'],
      ['restored', 'main-2'],
    ]);
    detach();
    assert.deepEqual(em.eventNames(), []);
  });

  describe('entries and actions', function () {
    let dir: string;
    let log: FailoverLog;
    beforeEach(function () {
      dir = tmpDir('overview');
      log = new FailoverLog(path.join(dir, 'failover.sqlite'));
    });
    afterEach(function () {
      log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('an active entry may be failed back, not copied; a finalized one may be copied until its copy is done', function () {
      const e = log.open({ group: 'studio', failedServer: 'main-1', failoverServer: 'fo-1', channels: [1, 2], epoch: 3, startedAt: 10000 });
      assert.deepEqual(copyAction(e, null), { canCopy: false, blocked: 'not-over' });
      assert.throws(() => copyRequestOf(e), /is active: its period is not over/);
      log.beginFailback(e.id, 20000);
      const fin = log.finishFailback(e.id, 'ok', null, 21000);
      assert.deepEqual(copyAction(fin, null), { canCopy: true, blocked: null });
      assert.deepEqual(copyRequestOf(fin), { failedServer: 'main-1', failoverServer: 'fo-1', channels: [1, 2], from: 10000, to: 21000, entryId: e.id });
      assert.deepEqual(copyAction(log.setMaterialCopy(e.id, 'running'), null), { canCopy: false, blocked: 'running' });
      assert.deepEqual(copyAction(log.setMaterialCopy(e.id, 'failed'), null), { canCopy: true, blocked: null });
      assert.deepEqual(copyAction(log.setMaterialCopy(e.id, 'done'), null), { canCopy: false, blocked: 'done' });
      const drill = log.open({ group: 'studio', failedServer: 'main-2', failoverServer: 'fo-1', channels: [1], epoch: 3, startedAt: 30000, drill: true });
      assert.deepEqual(copyAction(drill, null), { canCopy: false, blocked: 'drill' });
    });

    it('buildOverview merges what the links and the watcher heard, joins copy tasks to their entries and says who records for whom', function () {
      const active = log.open({ group: 'studio', failedServer: 'main-1', failoverServer: 'fo-1', channels: [1], epoch: 2, startedAt: 5000 });
      const old = log.open({ group: 'studio', failedServer: 'main-2', failoverServer: 'fo-1', channels: [4], epoch: 1, startedAt: 1000 });
      log.beginFailback(old.id, 2000);
      log.finishFailback(old.id, 'ok', null, 3000);
      const state = (server: string, role: ServerState['role'], st: ServerState['state'], epoch: number, ts: number): ServerState => ({
        v: 1,
        server,
        group: 'studio',
        role,
        state: st,
        epoch,
        since: 1,
        ts,
        heartbeatMs: 250,
        ...(st === 'offline' ? { cause: 'lwt' as const } : {}),
      });
      const link = {
        state: 'connected',
        lastError: null,
        epoch: 2,
        peerStates: () => [
          state('main-1', 'main', 'offline', 1, 6000),
          state('fo-1', 'failover', 'online', 2, 6000),
          state('other', 'main', 'online', 0, 6000),
        ],
        takeoverOf: (s: string) =>
          s === 'main-1'
            ? {
                v: 1,
                failedServer: 'main-1',
                failoverServer: 'fo-1',
                epoch: 2,
                active: true,
                channels: [1],
                entryId: active.id,
                since: 5000,
                drill: false,
                ts: 5000,
              }
            : undefined,
      };
      const o = buildOverview({
        now: 7000,
        servers: [{ serverId: 'fo-1', group: 'studio', role: 'failover', configError: null, link }],
        controllers: [
          {
            options: { self: 'fo-1', group: 'studio' },
            isEnabled: () => true,
            isIsolated: () => false,
            watched: () => [
              {
                server: 'main-1',
                status: 'failed',
                maintenance: false,
                takenOver: true,
                markedFailed: true,
                state: null,
                lastHeartbeat: 4000,
                direct: { how: 'none', address: null, answering: null, lastAnswerAt: null, rttMs: null },
              },
            ],
            log,
          },
        ],
        copies: [
          {
            options: { serverId: 'fo-1', group: 'studio' },
            tasks: () => [
              {
                id: 7,
                entryId: old.id,
                failedServer: 'main-2',
                failoverServer: 'fo-1',
                channels: [4],
                from: 1000,
                to: 3000,
                state: 'failed',
                createdAt: 3000,
                updatedAt: 3500,
                startedAt: 3100,
                finishedAt: 3500,
                lastError: 'sha256 mismatch',
                attempts: 1,
                bytesDone: 250,
                segmentsCopied: 1,
                segmentsSkipped: 0,
                eventsCopied: 0,
                bytesTotal: 1000,
                progress: [],
              },
            ],
          },
        ],
        transfers: [],
      });
      assert.deepEqual(
        o.servers.map((s) => [s.server, s.role, s.state, s.epoch, s.local, s.takenOverBy?.server ?? null]),
        [
          ['main-1', 'main', 'offline', 1, false, 'fo-1'],
          ['other', 'main', 'online', 0, false, null],
          ['fo-1', 'failover', 'online', 2, true, null],
        ],
      );
      assert.deepEqual(
        o.servers[0].watchedBy.map((w) => [w.by, w.status, w.takenOver]),
        [['fo-1', 'failed', true]],
      );
      const f = o.failover[0];
      assert.deepEqual(
        f.active.map((e) => [e.id, e.canFailback, e.canCopy, e.copyBlocked]),
        [[active.id, true, false, 'not-over']],
      );
      assert.deepEqual(
        f.finalized.map((e) => [e.id, e.canFailback, e.canCopy, e.copyTask?.id, e.copyTask?.percent]),
        [[old.id, false, true, 7, 25]],
      );
      assert.deepEqual(
        o.copies[0].tasks.map((t) => [t.id, t.state, t.percent, t.lastError]),
        [[7, 'failed', 25, 'sha256 mismatch']],
      );
      // without a material-copy node here, a finalized entry cannot be copied from this server
      const o2 = buildOverview({
        servers: [],
        controllers: [{ options: { self: 'fo-1', group: 'studio' }, isEnabled: () => true, isIsolated: () => false, watched: () => [], log }],
        copies: [],
        transfers: [],
      });
      assert.deepEqual(
        o2.failover[0].finalized.map((e) => [e.canCopy, e.copyBlocked]),
        [[false, 'no-copy-node']],
      );
    });
  });
});
