/**
 * The direct witness with the detector, over real UDP on 127.0.0.1: while the
 * server answers liveness, silent heartbeats and a Last Will (a broker outage)
 * fail nothing; once it stops answering (hung, cut), silence is a failure. The
 * address a server announces is asked when the watch names none; without the
 * group's key nothing is asked over UDP.
 */
import { strict as assert } from 'node:assert';
import { FailoverDetector } from '../../../lib/failover/detector';
import { DirectWitness } from '../../../lib/failover/witness';
import type { ServerState } from '../../../lib/link/schemas';
import { LivenessResponder, livenessKey } from '../../../lib/peer/liveness';
import { until } from '../../support/nr';

const SECRET = 'a-group-secret-of-some-length';
const log = { warn: () => undefined };

function state(server: string, s: 'online' | 'offline', live?: string): ServerState {
  return {
    v: 1,
    server,
    group: 'studio',
    role: 'main',
    state: s,
    ...(s === 'offline' ? { cause: 'lwt' as const } : {}),
    epoch: 0,
    since: 0,
    ts: 0,
    heartbeatMs: 250,
    ...(live ? { live } : {}),
  };
}

describe('direct witness (liveness) with the failover detector', function () {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });

  async function responder() {
    const r = new LivenessResponder({ host: '127.0.0.1', port: 0 });
    const port = await r.start();
    r.serve({ group: 'studio', serverId: 'main-1', key: livenessKey(SECRET), progress: () => [] });
    closers.push(() => r.close());
    return { r, port };
  }

  function watch(probe: { host: string; port: number } | null, key: Buffer | null) {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['main-1'], heartbeatTimeoutMs: 300 });
    const w = new DirectWitness(
      [{ server: 'main-1', probe }],
      { self: 'fo-1', group: 'studio', key, probeMs: 100, livenessMs: 50, timeoutMs: 300, clock: Date.now },
      d,
      log,
    );
    closers.push(() => w.close());
    w.start();
    return { d, w };
  }

  it('a broker outage (silent heartbeats, a Last Will) fails nothing while the server answers; a hung one is failed', async () => {
    const { r, port } = await responder();
    const { d, w } = watch({ host: '127.0.0.1', port }, livenessKey(SECRET));
    d.broker(true);
    d.serverState(state('main-1', 'online'));
    d.heartbeat('main-1');
    await until(() => w.status('main-1').answering === true, 'liveness answers');
    // the broker goes: no more heartbeats, and it sends the Last Will of every client
    d.broker(false);
    d.serverState(state('main-1', 'offline'));
    const end = Date.now() + 1000;
    while (Date.now() < end) {
      w.feed(false);
      assert.deepEqual(
        d.evaluate().filter((x) => x.kind === 'failed'),
        [],
      );
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(d.status('main-1'), 'suspect');
    // the server stops answering (its process frozen): failed within the timeout
    await r.close();
    const stopped = Date.now();
    let failedAt = 0;
    await until(() => {
      w.feed(false);
      if (d.evaluate().some((x) => x.kind === 'failed')) failedAt = Date.now();
      return failedAt > 0;
    }, 'failed once liveness stops');
    assert.ok(failedAt - stopped < 2000);
    assert.equal(w.status('main-1').how, 'liveness');
  });

  it('asks the address a server announces when the watch names none', async () => {
    const { port } = await responder();
    const { w } = watch(null, livenessKey(SECRET));
    assert.equal(w.status('main-1').how, 'none');
    w.peerState(state('main-1', 'online', `127.0.0.1:${port}`), log);
    await until(() => w.status('main-1').answering === true, 'the announced address answers');
    assert.equal(w.status('main-1').address, `127.0.0.1:${port}`);
  });

  it('without the key: a named address is a TCP probe and announced addresses are not asked', async () => {
    const { port } = await responder();
    const { w } = watch({ host: '127.0.0.1', port: 9 }, null);
    assert.equal(w.status('main-1').how, 'tcp');
    w.peerState(state('main-1', 'online', `127.0.0.1:${port}`), log);
    assert.equal(w.status('main-1').how, 'tcp');
    assert.equal(w.view('main-1'), undefined);
  });
});
