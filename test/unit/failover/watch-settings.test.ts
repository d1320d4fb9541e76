/** lib/failover/watch-settings: a failover-watch node's fields, checked and turned into the controller's options. */
import assert from 'node:assert/strict';
import { parseWatchSettings } from '../../../lib/failover/watch-settings';

describe('failover watch settings (lib/failover/watch-settings)', () => {
  it('takes the defaults and converts seconds to ms', () => {
    const s = parseWatchSettings({ watched: 'main-1 127.0.0.1:1880\nmain-2' }, 250);
    assert.deepEqual(
      s.watched.map((w) => w.server),
      ['main-1', 'main-2'],
    );
    assert.deepEqual(s.watched[0].probe, { host: '127.0.0.1', port: 1880 });
    assert.deepEqual(
      { ...s, watched: undefined },
      {
        watched: undefined,
        heartbeatTimeoutMs: 750,
        holdDownMs: 10000,
        capacity: 1,
        rank: 0,
        recordOnDoubt: true,
        failoverEnabled: true,
        overlapMs: 2000,
        handbackTimeoutMs: 15000,
      },
    );
    const t = parseWatchSettings(
      {
        watched: 'm',
        heartbeatTimeout: '2000',
        holdDown: '0',
        capacity: '4',
        rank: 2,
        overlap: 0,
        handbackTimeout: '60',
        recordOnDoubt: false,
        failoverEnabled: false,
      },
      250,
    );
    assert.equal(t.heartbeatTimeoutMs, 2000);
    assert.equal(t.holdDownMs, 0);
    assert.equal(t.capacity, 4);
    assert.equal(t.rank, 2);
    assert.equal(t.overlapMs, 0);
    assert.equal(t.handbackTimeoutMs, 60000);
    assert.equal(t.recordOnDoubt, false);
    assert.equal(t.failoverEnabled, false);
  });

  it('refuses a value out of range with a sentence naming it and its range', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ heartbeatTimeout: 50 }, /heartbeat timeout must be 100 to 600000 ms$/],
      [{ heartbeatTimeout: 'x' }, /heartbeat timeout must be/],
      [{ holdDown: 3601 }, /hold-down must be 0 to 3600 s$/],
      [{ capacity: 1.5 }, /capacity must be 1 to 100 servers$/],
      [{ capacity: 0 }, /capacity must be/],
      [{ rank: 100 }, /rank must be 0 to 99$/],
      [{ overlap: 61 }, /overlap must be 0 to 60 s$/],
      [{ handbackTimeout: 0.5 }, /failback confirmation timeout must be 1 to 600 s$/],
      [{ heartbeatTimeout: 200 }, /The heartbeat timeout \(200 ms\) must be longer than the heartbeat interval \(250 ms\)$/],
    ];
    for (const [fields, re] of bad) assert.throws(() => parseWatchSettings({ watched: 'main-1', ...fields }, 250), re, JSON.stringify(fields));
    assert.throws(() => parseWatchSettings({ watched: '' }, 250));
  });
});
