/** Failover decisions on a fake clock: detection, witnesses, isolation, flapping, N+1 priority, several failover servers. */
import { strict as assert } from 'node:assert';
import { Decision, FailoverDetector } from '../../../lib/failover/detector';
import { ServerState } from '../../../lib/link/schemas';

function state(server: string, s: 'online' | 'offline', cause?: 'lwt' | 'shutdown'): ServerState {
  return { v: 1, server, group: 'g', role: 'main', state: s, ...(cause ? { cause } : {}), epoch: 0, since: 0, ts: 0, heartbeatMs: 250 };
}

describe('failover detector', () => {
  let now = 0;
  const clock = () => now;
  function run(d: FailoverDetector, until: number, beat: string[] = [], step = 250): Decision[] {
    const out: Decision[] = [];
    for (; now < until; now += step) {
      for (const s of beat) d.heartbeat(s, now);
      out.push(...d.evaluate(now));
    }
    return out;
  }
  beforeEach(() => {
    now = 0;
  });

  it('declares a silent server failed only when its Last Will agrees, within a second, and takes it over', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'], heartbeatTimeoutMs: 750 }, clock);
    d.broker(true);
    d.serverState(state('m1', 'online'));
    assert.deepEqual(run(d, 5000, ['m1']), []);
    const died = now;
    let out = run(d, died + 3000); // silent, but no witness yet
    assert.deepEqual(out, []);
    assert.equal(d.status('m1'), 'suspect');
    d.serverState(state('m1', 'offline', 'lwt'));
    out = run(d, now + 250);
    assert.deepEqual(
      out.map((x) => x.kind),
      ['failed', 'takeover'],
    );
    assert.match((out[0] as { evidence: string }).evidence, /broker says offline \(lwt\)/);
  });

  it('a direct probe that answers outweighs a Last Will (a broker restart sends every will); a failing probe then decides', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'], heartbeatTimeoutMs: 750 }, clock);
    d.broker(true);
    d.serverState(state('m1', 'online'));
    d.probe('m1', true);
    run(d, 2000, ['m1']);
    d.serverState(state('m1', 'offline', 'lwt'));
    assert.deepEqual(run(d, now + 3000), []);
    assert.equal(d.status('m1'), 'suspect');
    d.probe('m1', false);
    const out = run(d, now + 250);
    assert.deepEqual(
      out.map((x) => x.kind),
      ['failed', 'takeover'],
    );
  });

  it('detects within one second when the Last Will came first (a probe or will plus 750 ms of silence)', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'] }, clock);
    d.broker(true);
    d.serverState(state('m1', 'online'));
    run(d, 2000, ['m1']);
    const died = now;
    d.serverState(state('m1', 'offline', 'lwt'));
    const out = run(d, died + 2000);
    const failed = out.find((x) => x.kind === 'failed')!;
    assert.ok(failed.at - died <= 1000, `detected ${failed.at - died} ms after the last heartbeat`);
  });

  it('accepts a failed direct probe as the witness', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'] }, clock);
    d.broker(true);
    run(d, 1000, ['m1']);
    d.probe('m1', false);
    assert.deepEqual(
      run(d, now + 1500).map((x) => x.kind),
      ['failed', 'takeover'],
    );
  });

  it('declares itself isolated when it has lost the broker and every probe, and records on doubt only if the site chose it', () => {
    for (const recordOnDoubt of [true, false]) {
      now = 0;
      const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'], recordOnDoubt }, clock);
      d.broker(true);
      run(d, 1000, ['m1']);
      d.broker(false);
      d.probe('m1', false);
      const out = run(d, now + 2000);
      assert.equal(out[0].kind, 'isolated');
      assert.equal(
        out.some((x) => x.kind === 'takeover'),
        recordOnDoubt,
        `recordOnDoubt ${recordOnDoubt}`,
      );
    }
  });

  it('damps flapping: restored only after heartbeats are back without a break for the hold-down', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'], holdDownMs: 5000 }, clock);
    d.broker(true);
    run(d, 1000, ['m1']);
    d.serverState(state('m1', 'offline', 'lwt'));
    assert.ok(run(d, now + 1500).some((x) => x.kind === 'failed'));
    d.serverState(state('m1', 'online'));
    assert.deepEqual(run(d, now + 3000, ['m1']), [], 'back for 3 s: not yet');
    run(d, now + 2000); // flaps away again
    d.serverState(state('m1', 'online'));
    assert.deepEqual(run(d, now + 4000, ['m1']), [], 'the hold-down starts again after a break');
    const out = run(d, now + 2000, ['m1']);
    assert.deepEqual(
      out.map((x) => x.kind),
      ['restored'],
    );
  });

  it('a takeover released by hand is not taken again while the server stays failed; after its restore a new failure is', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'], holdDownMs: 1000 }, clock);
    d.broker(true);
    run(d, 1000, ['m1']);
    d.serverState(state('m1', 'offline', 'lwt'));
    assert.deepEqual(
      run(d, now + 1500).map((x) => x.kind),
      ['failed', 'takeover'],
    );
    d.standDown('m1');
    assert.deepEqual(run(d, now + 5000), [], 'still failed, but the operator took it from here');
    assert.equal(d.status('m1'), 'failed');
    assert.deepEqual(d.takenOverServers(), []);
    d.serverState(state('m1', 'online'));
    assert.deepEqual(
      run(d, now + 1500, ['m1']).map((x) => x.kind),
      ['restored'],
    );
    d.serverState(state('m1', 'offline', 'lwt'));
    assert.deepEqual(
      run(d, now + 1500).map((x) => x.kind),
      ['failed', 'takeover'],
      'a new failure is taken over again',
    );
  });

  it('does not fail a server in maintenance mode', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1'] }, clock);
    d.broker(true);
    d.setMaintenance('m1', true);
    run(d, 1000, ['m1']);
    d.serverState(state('m1', 'offline', 'shutdown'));
    assert.deepEqual(run(d, now + 3000), []);
  });

  it('N+1: takes the failed servers by priority within its capacity; a higher priority failure displaces a lower one', () => {
    const d = new FailoverDetector({ self: 'fo-1', watched: ['m1', 'm2', 'm3'], capacity: 1 }, clock);
    d.broker(true);
    run(d, 1000, ['m1', 'm2', 'm3']);
    d.serverState(state('m3', 'offline', 'lwt'));
    let out = run(d, now + 1500, ['m1', 'm2']);
    assert.deepEqual(
      out.filter((x) => x.kind === 'takeover').map((x) => (x as { server: string }).server),
      ['m3'],
    );
    d.serverState(state('m1', 'offline', 'lwt'));
    out = run(d, now + 1500, ['m2']);
    assert.deepEqual(
      out.filter((x) => x.kind !== 'failed').map((x) => `${x.kind}:${(x as { server: string }).server}`),
      ['release:m3', 'takeover:m1'],
    );
    assert.deepEqual(d.takenOverServers(), ['m1']);
  });

  it('with two failover servers, a failed server is taken by one only (lower rank wins)', () => {
    const a = new FailoverDetector({ self: 'fo-a', watched: ['m1'], rank: 0 }, clock);
    const b = new FailoverDetector({ self: 'fo-b', watched: ['m1'], rank: 1 }, clock);
    for (const d of [a, b]) {
      d.broker(true);
    }
    a.claim({ failedServer: 'm1', claimant: 'fo-b', rank: 1, at: 0 });
    b.claim({ failedServer: 'm1', claimant: 'fo-a', rank: 0, at: 0 });
    for (; now < 1000; now += 250) for (const d of [a, b]) d.heartbeat('m1', now);
    for (const d of [a, b]) d.serverState(state('m1', 'offline', 'lwt'));
    const outA: Decision[] = [];
    const outB: Decision[] = [];
    for (const end = now + 1500; now < end; now += 250) {
      outA.push(...a.evaluate(now));
      outB.push(...b.evaluate(now));
    }
    assert.ok(outA.some((x) => x.kind === 'takeover'));
    assert.ok(!outB.some((x) => x.kind === 'takeover'));
    assert.ok(
      outB.some((x) => x.kind === 'failed'),
      'both see the failure',
    );
  });
});
