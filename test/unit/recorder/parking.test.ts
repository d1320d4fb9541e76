/** A running channel parked through a deploy: taken back, replaced, expired after the grace; what the fingerprint sees. */
import { strict as assert } from 'node:assert';
import { channelFingerprint, ChannelParking, softSettings } from '../../../lib/recorder/parking';
import type { ChannelSettings } from '../../../lib/recorder/types';
import { until } from '../../support/nr';

const settings = (over: Partial<ChannelSettings> = {}): ChannelSettings =>
  ({
    serverId: 'main-1',
    group: 'studio',
    channel: 1,
    channelName: 'Studio A',
    frameRate: '25',
    storageRoot: '/srv/rec',
    segmentSeconds: 2,
    source: { label: 'test pattern', input: async () => ({ args: [] }) },
    isOrphan: () => false,
    ...over,
  }) as unknown as ChannelSettings;
const where = { group: 'studio', storageRoot: '/srv/rec', catalogueFile: '/u/twinrec/catalogue.sqlite' };

describe('channel parking (a recording through a deploy)', () => {
  it('gives the parked item to the next taker with its fingerprint, once', () => {
    const expired: string[] = [];
    const p = new ChannelParking<string>((item) => expired.push(item));
    p.park('main-1/1', 'fp', 'channel-1', 1000);
    assert.equal(p.size, 1);
    assert.deepEqual(p.take('main-1/1'), { item: 'channel-1', fingerprint: 'fp' });
    assert.equal(p.take('main-1/1'), null);
    assert.deepEqual(expired, []);
  });

  it('expires an item nobody takes within the grace, and one parked over by another', async () => {
    const expired: string[] = [];
    const p = new ChannelParking<string>((item) => expired.push(item));
    p.park('main-1/1', 'fp', 'old', 60000);
    p.park('main-1/1', 'fp', 'new', 30);
    assert.deepEqual(expired, ['old'], 'the one parked before expires at once');
    await until(() => expired.length === 2, 'the grace to end');
    assert.deepEqual(expired, ['old', 'new']);
    assert.equal(p.take('main-1/1'), null);
  });

  it('takeAll empties the parking without expiring anything (the process is ending)', () => {
    const expired: string[] = [];
    const p = new ChannelParking<string>((item) => expired.push(item));
    p.park('a', 'x', 'one', 60000);
    p.park('b', 'x', 'two', 60000);
    assert.deepEqual(p.takeAll().sort(), ['one', 'two']);
    assert.equal(p.size, 0);
    assert.deepEqual(expired, []);
  });

  it('the fingerprint ignores the functions given anew and the soft settings, and sees every other value, the source and the storage', () => {
    const base = channelFingerprint(settings(), 'testpattern', where);
    assert.equal(channelFingerprint(settings({ isOrphan: () => true, source: { label: 'other' } as never }), 'testpattern', where), base);
    assert.notEqual(channelFingerprint(settings({ segmentSeconds: 4 }), 'testpattern', where), base);
    assert.equal(channelFingerprint(settings({ channelName: 'Studio B', stallTimeoutMs: 9000 }), 'testpattern', where), base, 'soft settings apply in place');
    assert.notEqual(channelFingerprint(settings({ frameRate: '50' }), 'testpattern', where), base);
    assert.notEqual(channelFingerprint(settings(), 'url rtsp://cam/1', where), base);
    assert.notEqual(channelFingerprint(settings(), 'testpattern', { ...where, storageRoot: '/srv/other' }), base);
  });

  it('the soft settings of a channel: name, backup target and timeouts, a cleared backup target included', () => {
    assert.deepEqual(softSettings(settings({ channelName: 'B', startTimeoutMs: 1, stallTimeoutMs: 2 })), {
      channelName: 'B',
      startTimeoutMs: 1,
      stallTimeoutMs: 2,
    });
    const cleared = softSettings(settings({ backup: null }));
    assert.ok('backup' in cleared && cleared.backup === null);
  });
});
