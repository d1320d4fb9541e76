/** Takeover from the settings cache, the pure part: source, channel settings and what happens to each cached line. */
import { strict as assert } from 'node:assert';
import { PresentedLine } from '../../../lib/recorder/types';
import { ChannelSnapshot as CachedChannel, RecorderSnapshot as CachedRecorder } from '../../../lib/recorder/settings-snapshot';
import { TakeoverOptions, channelSettingsFromCache, planLines, sourceFromCache } from '../../../lib/failover/takeover';
import { withLogin } from '../../../lib/model/url';

const NOW = Date.UTC(2026, 10, 22, 20, 0, 0);
const MIN = 60_000;

let seq = 0;
/** A cached line as a recorder presents it; every field can be overridden. */
function line(p: Partial<PresentedLine> = {}): PresentedLine {
  seq++;
  return {
    id: `line-${seq}`,
    n: seq,
    group: 'news',
    title: `Title ${seq}`,
    status: 'ready',
    start: 'manual',
    source: 'LIVE',
    inPoint: null,
    outPoint: null,
    curPoint: null,
    startTime: null,
    stopTime: null,
    duration: null,
    backup: 'off',
    attributes: {},
    clipId: null,
    reason: null,
    origin: null,
    createdAt: NOW - 3_600_000,
    updatedAt: NOW - 3_600_000,
    startTimeTC: null,
    stopTimeTC: null,
    ...p,
  };
}

function channel(lines: PresentedLine[] = [], recorder: Partial<CachedRecorder> = {}, ch = 2): CachedChannel {
  return {
    server: 'main-1',
    channel: ch,
    ts: NOW - 1000,
    recorder: {
      channelName: 'Studio A',
      frameRate: '25',
      sourceType: 'url',
      source: 'Studio A camera',
      sourceUrl: 'rtsp://10.0.0.7:554/live',
      sourceLogin: false,
      ...recorder,
    },
    lines,
  };
}

const opts: TakeoverOptions = {
  failedServer: 'main-1',
  failoverServer: 'fo-1',
  group: 'site',
  epoch: 7,
  entryId: 3,
  storageRoot: '/srv/rec',
  sourceLogin: { username: 'op', password: 'p@ss:w/rd' },
};

const FAILOVER_ATTRS = { failoverOf: 'main-1', failoverChannel: 2, failoverServer: 'fo-1', failoverEpoch: 7 };

describe('takeover (pure)', () => {
  describe('withLogin', () => {
    it('adds an encoded user name and password to a URL that has none', () => {
      assert.equal(withLogin('rtsp://10.0.0.7:554/live', { username: 'op', password: 'secret' }), 'rtsp://op:secret@10.0.0.7:554/live');
      assert.equal(withLogin('rtsp://cam/x', { username: 'a b@c', password: 'p@ss:w/rd' }), 'rtsp://a%20b%40c:p%40ss%3Aw%2Frd@cam/x');
      assert.equal(withLogin('SRT://host:9000', { username: 'u', password: '' }), 'SRT://u:@host:9000');
    });

    it('leaves a URL that has a log in already, or when there is no log in to add', () => {
      assert.equal(withLogin('rtsp://other:pw@cam/x', { username: 'op', password: 'secret' }), 'rtsp://other:pw@cam/x');
      assert.equal(withLogin('rtsp://cam/x', null), 'rtsp://cam/x');
      assert.equal(withLogin('rtsp://cam/x', undefined), 'rtsp://cam/x');
      assert.equal(withLogin('rtsp://cam/x', { username: '', password: 'secret' }), 'rtsp://cam/x');
      assert.equal(withLogin('not a url', { username: 'op', password: 'secret' }), 'not a url');
    });

    it('does not take an @ in the path for a log in', () => {
      assert.equal(withLogin('rtsp://cam/path@x', { username: 'op', password: 'pw' }), 'rtsp://op:pw@cam/path@x');
    });
  });

  describe('sourceFromCache', () => {
    it('records a test pattern for a test-pattern channel', async () => {
      const s = sourceFromCache(channel([], { sourceType: 'testpattern', sourceUrl: null }), opts.sourceLogin, 6000);
      assert.equal(s.label, 'test pattern');
      assert.deepEqual(await s.resolve(), { kind: 'testpattern' });
    });

    it('records the cached URL, with this server’s log in when the source needed one', async () => {
      const s = sourceFromCache(channel([], { sourceLogin: true }), opts.sourceLogin, 6000);
      assert.equal(s.label, 'Studio A camera');
      assert.deepEqual(await s.resolve(), { kind: 'url', url: 'rtsp://op:p%40ss%3Aw%2Frd@10.0.0.7:554/live', timeoutMs: 5000 });
      assert.ok(!s.label.includes('p@ss'), 'the label carries no password');
    });

    it('records the cached URL as it is when the source needed no log in', async () => {
      const s = sourceFromCache(channel([], { sourceLogin: false, source: undefined }), opts.sourceLogin, 1500);
      assert.equal(s.label, 'rtsp://10.0.0.7:554/live');
      assert.deepEqual(await s.resolve(), { kind: 'url', url: 'rtsp://10.0.0.7:554/live', timeoutMs: 1000 });
    });

    it('records without a log in when the source needs one but this server has none', async () => {
      const s = sourceFromCache(channel([], { sourceLogin: true }), null, 6000);
      assert.equal(((await s.resolve()) as { url: string }).url, 'rtsp://10.0.0.7:554/live');
    });

    it('throws an Error naming the channel and server when the cache has no stream address', () => {
      for (const sourceUrl of [null, undefined, '', 'file:///etc/passwd']) {
        assert.throws(
          () => sourceFromCache(channel([], { sourceType: 'onvif', sourceUrl }), opts.sourceLogin, 6000),
          (err: Error) => {
            assert.match(err.message, /^channel 2 of main-1: the settings cache has no stream address for its onvif source/);
            assert.match(err.message, /cannot be recorded here/);
            return true;
          },
        );
      }
    });
  });

  describe('channelSettingsFromCache', () => {
    it('records under the failed server’s id, with the cached settings', async () => {
      const c = channel([], {
        frameRate: '29.97df',
        tcMode: 'tod',
        segmentSeconds: 4,
        container: 'mkv',
        videoCodec: 'h264',
        backup: { server: 'b-1', channel: 5 },
      });
      const s = channelSettingsFromCache(c, opts);
      const { source, ...rest } = s;
      assert.deepEqual(rest, {
        serverId: 'main-1',
        group: 'site',
        channel: 2,
        channelName: 'Studio A',
        frameRate: '29.97df',
        tcMode: 'tod',
        storageRoot: '/srv/rec',
        segmentSeconds: 4,
        container: 'mkv',
        videoCodec: 'h264',
        backup: null,
      });
      assert.deepEqual(await source.resolve(), { kind: 'url', url: 'rtsp://10.0.0.7:554/live', timeoutMs: 5000 });
    });

    it('uses defaults for what the cache lacks or has wrong', () => {
      const c = channel([], { channelName: undefined, tcMode: undefined, segmentSeconds: undefined, container: 'avi', videoCodec: 'hevc' }, 4);
      const s = channelSettingsFromCache(c, opts);
      assert.equal(s.channelName, 'Channel 4');
      assert.equal(s.tcMode, 'zero');
      assert.equal(s.segmentSeconds, 6);
      assert.equal(s.container, 'ts');
      assert.equal(s.videoCodec, 'copy');
    });

    it('keeps the segment length between 1 and 600 seconds', () => {
      assert.equal(channelSettingsFromCache(channel([], { segmentSeconds: 0.2 }), opts).segmentSeconds, 1);
      assert.equal(channelSettingsFromCache(channel([], { segmentSeconds: 9999 }), opts).segmentSeconds, 600);
      assert.equal(channelSettingsFromCache(channel([], { segmentSeconds: NaN }), opts).segmentSeconds, 6);
    });

    it('refuses a frame rate it does not know, naming the channel and the rate', () => {
      assert.throws(
        () => channelSettingsFromCache(channel([], { frameRate: '26' }), opts),
        /^Error: channel 2 of main-1: the cached frame rate "26" is not one this recorder knows$/,
      );
    });

    it('lets tune override settings and shorten the source timeout', async () => {
      const s = channelSettingsFromCache(channel(), opts, { stallTimeoutMs: 3000, startTimeoutMs: 2000 });
      assert.equal(s.stallTimeoutMs, 3000);
      assert.equal(s.startTimeoutMs, 2000);
      assert.equal(((await s.source.resolve()) as { timeoutMs: number }).timeoutMs, 2000);
    });

    it('throws the source error for a channel without a stream address', () => {
      assert.throws(() => channelSettingsFromCache(channel([], { sourceUrl: null }), opts), /channel 2 of main-1: the settings cache has no stream address/);
    });
  });

  describe('planLines', () => {
    const plan = (lines: PresentedLine[], recorder: Partial<CachedRecorder> = {}) => planLines(channel(lines, recorder), opts, NOW);

    it('starts a recording line at once, keeping its planned stop when it is still to come', () => {
      const l = line({
        id: 'rec',
        title: 'Evening news',
        status: 'recording',
        startTime: NOW - 5 * MIN,
        stopTime: NOW + 25 * MIN,
        clipId: 'c1',
        inPoint: '00:00:00:00',
      });
      assert.deepEqual(plan([l]), [
        {
          input: { id: 'rec', group: 'news', title: 'Evening news', backup: 'off', attributes: FAILOVER_ATTRS, start: 'manual', stopTime: NOW + 25 * MIN },
          startNow: true,
        },
      ]);
    });

    it('turns a planned duration of a recording line into its stop time', () => {
      const l = line({ status: 'recording', startTime: NOW - 5 * MIN, duration: '00:10:00:00' });
      const [p] = plan([l]);
      assert.equal(p.startNow, true);
      assert.equal(p.input.stopTime, NOW + 5 * MIN);
      assert.equal(p.input.duration, undefined);
    });

    it('starts a recording line without a planned end with no stop time', () => {
      const [p] = plan([line({ status: 'recording', startTime: NOW - MIN })]);
      assert.equal(p.startNow, true);
      assert.equal(p.input.start, 'manual');
      assert.ok(!('stopTime' in p.input));
    });

    it('skips a recording line whose planned stop has passed', () => {
      assert.deepEqual(plan([line({ status: 'recording', startTime: NOW - 30 * MIN, stopTime: NOW - 1 })]), []);
      assert.deepEqual(plan([line({ status: 'recording', startTime: NOW - 30 * MIN, stopTime: NOW })]), []);
      assert.deepEqual(plan([line({ status: 'recording', startTime: NOW - 30 * MIN, duration: '00:10:00:00' })]), []);
    });

    it('starts an interrupted line at once', () => {
      const [p] = plan([line({ id: 'int', status: 'interrupted', startTime: NOW - MIN, reason: 'ffmpeg died' })]);
      assert.equal(p.startNow, true);
      assert.equal(p.input.id, 'int');
      assert.equal(p.input.start, 'manual');
    });

    it('keeps an armed timed line that is still to come at its start time', () => {
      const withStop = line({ id: 'later', status: 'armed', start: 'time', startTime: NOW + 10 * MIN, stopTime: NOW + 40 * MIN });
      const withDuration = line({ id: 'later2', status: 'armed', start: 'time', startTime: NOW + 60 * MIN, duration: '00:30:00:00' });
      const open = line({ id: 'later3', status: 'armed', start: 'time', startTime: NOW + 2 * MIN });
      const out = plan([withStop, withDuration, open]);
      assert.deepEqual(
        out.map((p) => p.startNow),
        [false, false, false],
      );
      assert.deepEqual(out[0].input, {
        id: 'later',
        group: 'news',
        title: withStop.title,
        backup: 'off',
        attributes: FAILOVER_ATTRS,
        start: 'time',
        startTime: NOW + 10 * MIN,
        stopTime: NOW + 40 * MIN,
      });
      assert.equal(out[1].input.start, 'time');
      assert.equal(out[1].input.startTime, NOW + 60 * MIN);
      assert.equal(out[1].input.duration, '00:30:00:00');
      assert.ok(!('stopTime' in out[1].input));
      assert.equal(out[2].input.startTime, NOW + 2 * MIN);
      assert.ok(!('stopTime' in out[2].input) && !('duration' in out[2].input));
    });

    it('starts an armed line that is due now (or within a second) at once', () => {
      const due = line({ id: 'due', status: 'armed', start: 'time', startTime: NOW - 2000, stopTime: NOW + 10 * MIN });
      const soon = line({ id: 'soon', status: 'armed', start: 'time', startTime: NOW + 1000 });
      const out = plan([due, soon]);
      assert.deepEqual(
        out.map((p) => [p.input.id, p.startNow, p.input.start]),
        [
          ['due', true, 'manual'],
          ['soon', true, 'manual'],
        ],
      );
      assert.equal(out[0].input.stopTime, NOW + 10 * MIN);
      assert.ok(!('startTime' in out[0].input));
    });

    it('adds a ready line without starting it, keeping its duration', () => {
      const out = plan([line({ id: 'r1', status: 'ready', duration: '00:05:00:00' }), line({ id: 'r2', status: 'ready' })]);
      assert.deepEqual(out, [
        {
          input: { id: 'r1', group: 'news', title: out[0].input.title, backup: 'off', attributes: FAILOVER_ATTRS, start: 'manual', duration: '00:05:00:00' },
          startNow: false,
        },
        { input: { id: 'r2', group: 'news', title: out[1].input.title, backup: 'off', attributes: FAILOVER_ATTRS, start: 'manual' }, startNow: false },
      ]);
    });

    it('leaves stopped and failed lines with the failed server', () => {
      const out = plan([
        line({ status: 'stopped', startTime: NOW - 60 * MIN, stopTime: NOW - 30 * MIN }),
        line({ status: 'stopped', startTime: NOW - 60 * MIN }),
        line({ status: 'failed', reason: 'no source' }),
        line({ status: 'failed', start: 'time', startTime: NOW + MIN }),
      ]);
      assert.deepEqual(out, []);
    });

    it('records a Backup=On line as an ordinary line', () => {
      const out = plan([line({ status: 'recording', backup: 'on', startTime: NOW - MIN }), line({ status: 'ready', backup: 'aux' })]);
      assert.deepEqual(
        out.map((p) => p.input.backup),
        ['off', 'off'],
      );
    });

    it('marks each line as a failover recording, keeping its own attributes', () => {
      const l = line({
        status: 'recording',
        startTime: NOW - MIN,
        attributes: { house: 'NWS-1234', live: true, rating: null, failoverOf: 'someone', failoverEpoch: 1 },
      });
      const [p] = plan([l]);
      assert.deepEqual(p.input.attributes, { house: 'NWS-1234', live: true, rating: null, ...FAILOVER_ATTRS });
      assert.deepEqual(
        l.attributes,
        { house: 'NWS-1234', live: true, rating: null, failoverOf: 'someone', failoverEpoch: 1 },
        'the cached line is not changed',
      );
    });

    it('keeps at most 64 attributes, the failover ones among them', () => {
      const many = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`a${i}`, i]));
      const [p] = plan([line({ status: 'ready', attributes: many })]);
      const attrs = p.input.attributes as Record<string, unknown>;
      assert.equal(Object.keys(attrs).length, 64);
      assert.equal(attrs.a0, 0);
      assert.equal(attrs.a59, 59);
      assert.equal(attrs.a60, undefined);
      assert.equal(attrs.failoverOf, 'main-1');
    });

    it('copies a line’s own source, but not LIVE and not one with a hidden password', () => {
      const out = plan([
        line({ id: 's1', status: 'ready', source: 'rtsp://10.0.0.9/alt' }),
        line({ id: 's2', status: 'ready', source: 'rtsp://op:***@10.0.0.9/alt' }),
        line({ id: 's3', status: 'ready', source: 'LIVE' }),
      ]);
      assert.equal(out[0].input.source, 'rtsp://10.0.0.9/alt');
      assert.ok(!('source' in out[1].input));
      assert.ok(!('source' in out[2].input));
    });

    it('shortens a long group and title and names an untitled line', () => {
      const [a, b] = plan([line({ status: 'ready', group: 'g'.repeat(100), title: 't'.repeat(300) }), line({ status: 'ready', title: '' })]);
      assert.equal(a.input.group, 'g'.repeat(64));
      assert.equal(a.input.title, 't'.repeat(200));
      assert.equal(b.input.title, 'untitled');
    });

    it('skips what is not a line', () => {
      const bad = [null, 42, { id: 1, title: 'x', status: 'recording' }, { id: 'x', status: 'recording' }] as unknown as PresentedLine[];
      assert.deepEqual(
        plan([...bad, line({ id: 'ok', status: 'ready' })]).map((p) => p.input.id),
        ['ok'],
      );
    });

    it('uses only the stop time when the cached frame rate is unknown', () => {
      const out = plan(
        [
          line({ id: 'd', status: 'recording', startTime: NOW - 30 * MIN, duration: '00:10:00:00' }),
          line({ id: 's', status: 'recording', startTime: NOW - MIN, stopTime: NOW + MIN }),
        ],
        {
          frameRate: 'bogus',
        },
      );
      assert.deepEqual(
        out.map((p) => [p.input.id, p.input.stopTime]),
        [
          ['d', undefined],
          ['s', NOW + MIN],
        ],
      );
    });

    it('keeps the order of the cached rec-list', () => {
      const out = plan([
        line({ id: 'a', status: 'ready' }),
        line({ id: 'b', status: 'recording', startTime: NOW - MIN }),
        line({ id: 'c', status: 'stopped', stopTime: NOW - MIN }),
        line({ id: 'd', status: 'armed', start: 'time', startTime: NOW + MIN }),
      ]);
      assert.deepEqual(
        out.map((p) => p.input.id),
        ['a', 'b', 'd'],
      );
    });
  });
});
