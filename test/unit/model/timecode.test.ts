import { strict as assert } from 'node:assert';
import {
  FRAME_RATE_IDS,
  FrameRateId,
  addFrames,
  durationTimecode,
  frameRate,
  framesToMs,
  framesToTimecode,
  isFrameRateId,
  isValidTimecode,
  msToFrames,
  timeOfDayTimecode,
  timecodeToFrames,
} from '../../../lib/model/timecode';

/** Deterministic PRNG (mulberry32) so "random" cases are the same every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Independent reference: frames per 24h, from the published constants. */
const FRAMES_PER_DAY: Record<FrameRateId, number> = {
  '23.976': 24 * 86400,
  '24': 24 * 86400,
  '25': 25 * 86400,
  '29.97df': 2589408,
  '30': 30 * 86400,
  '50': 50 * 86400,
  '59.94df': 215784 * 24,
  '60': 60 * 86400,
};

/** Independent reference: first frame number of minute `m` (0..1439) of the day. */
function minuteStart(id: FrameRateId, m: number): number {
  const r = frameRate(id);
  const drop = id === '29.97df' ? 2 : id === '59.94df' ? 4 : 0;
  // The minute's first label is HH:MM:00;00 on tenth minutes, HH:MM:00;<drop> otherwise.
  const firstLabel = m % 10 === 0 ? 0 : drop;
  return m * r.nominal * 60 + firstLabel - drop * (m - Math.floor(m / 10));
}

/** Exact reference for msToFrames using BigInt (integer ms only). */
function refMsToFrames(ms: number, id: FrameRateId): number {
  const r = frameRate(id);
  const n = BigInt(ms) * BigInt(r.num);
  const d = BigInt(r.den * 1000);
  let q = n / d;
  if (n % d !== 0n && n < 0n) q -= 1n;
  return Number(q);
}

/**
 * Independent reference: step a label counter one frame at a time, applying
 * the drop-frame rule, and compare with framesToTimecode.
 */
function sweep(id: FrameRateId, startFrame: number, startLabel: [number, number, number, number], count: number): void {
  const r = frameRate(id);
  const drop = id === '29.97df' ? 2 : id === '59.94df' ? 4 : 0;
  let [h, m, s, f] = startLabel;
  const sep = r.dropFrame ? ';' : ':';
  const p = (n: number) => String(n).padStart(2, '0');
  for (let i = 0; i < count; i++) {
    const frame = startFrame + i;
    const expected = `${p(h)}:${p(m)}:${p(s)}${sep}${p(f)}`;
    const got = framesToTimecode(frame, id);
    if (got !== expected) assert.fail(`${id} frame ${frame}: got ${got}, expected ${expected}`);
    // advance the label
    f++;
    if (f === r.nominal) {
      f = 0;
      s++;
      if (s === 60) {
        s = 0;
        m++;
        if (m === 60) {
          m = 0;
          h = (h + 1) % 24;
        }
        if (m % 10 !== 0) f = drop;
      }
    }
  }
}

describe('timecode', () => {
  describe('frameRate / isFrameRateId', () => {
    it('lists the eight supported rates in order', () => {
      assert.deepEqual([...FRAME_RATE_IDS], ['23.976', '24', '25', '29.97df', '30', '50', '59.94df', '60']);
    });

    it('describes each rate exactly', () => {
      const expected: Record<FrameRateId, [number, number, number, boolean]> = {
        '23.976': [24000, 1001, 24, false],
        '24': [24, 1, 24, false],
        '25': [25, 1, 25, false],
        '29.97df': [30000, 1001, 30, true],
        '30': [30, 1, 30, false],
        '50': [50, 1, 50, false],
        '59.94df': [60000, 1001, 60, true],
        '60': [60, 1, 60, false],
      };
      for (const id of FRAME_RATE_IDS) {
        const r = frameRate(id);
        assert.equal(r.id, id);
        assert.deepEqual([r.num, r.den, r.nominal, r.dropFrame], expected[id], id);
        assert.equal(r.fps, r.num / r.den);
        assert.equal(typeof r.label, 'string');
        assert.ok(r.label.length > 0);
      }
      assert.equal(frameRate('29.97df').label, '29.97 drop-frame');
      assert.equal(frameRate('59.94df').label, '59.94 drop-frame');
      assert.ok(Math.abs(frameRate('29.97df').fps - 29.97002997) < 1e-8);
    });

    it('accepts aliases and numbers written as strings', () => {
      assert.equal(frameRate('29.97').id, '29.97df');
      assert.equal(frameRate('59.94').id, '59.94df');
      assert.equal(frameRate('23.98').id, '23.976');
      assert.equal(frameRate('25.0').id, '25');
      assert.equal(frameRate(' 50 ').id, '50');
      assert.equal(frameRate('29.97DF').id, '29.97df');
      assert.equal(frameRate('30000/1001').id, '29.97df');
      assert.equal(frameRate('25fps').id, '25');
      assert.equal(frameRate(String(60)).id, '60');
      assert.equal(frameRate(24 as unknown as string).id, '24');
    });

    it('rejects unknown rates with the list of valid ones', () => {
      const msg = 'use one of 23.976, 24, 25, 29.97df, 30, 50, 59.94df, 60';
      assert.throws(() => frameRate('x'), { message: `Unknown frame rate "x": ${msg}` });
      assert.throws(() => frameRate('48'), { message: `Unknown frame rate "48": ${msg}` });
      assert.throws(() => frameRate('29.97ndf'), { message: `Unknown frame rate "29.97ndf": ${msg}` });
      assert.throws(() => frameRate(''), { message: `Unknown frame rate "": ${msg}` });
      assert.throws(() => framesToTimecode(0, '48' as FrameRateId), /Unknown frame rate "48"/);
    });

    it('isFrameRateId recognises only canonical ids', () => {
      for (const id of FRAME_RATE_IDS) assert.equal(isFrameRateId(id), true);
      for (const x of ['29.97', '59.94', '23.98', 25, null, undefined, {}, 'x', 'toString']) {
        assert.equal(isFrameRateId(x), false, String(x));
      }
    });

    it('accepts a FrameRate object wherever a rate is taken', () => {
      assert.equal(framesToTimecode(1800, frameRate('29.97')), '00:01:00;02');
    });
  });

  describe('29.97 drop-frame (published values)', () => {
    const cases: Array<[number, string]> = [
      [0, '00:00:00;00'],
      [1, '00:00:00;01'],
      [29, '00:00:00;29'],
      [30, '00:00:01;00'],
      [1799, '00:00:59;29'],
      [1800, '00:01:00;02'],
      [1801, '00:01:00;03'],
      [3597, '00:01:59;29'],
      [3598, '00:02:00;02'],
      [17981, '00:09:59;29'],
      [17982, '00:10:00;00'],
      [17983, '00:10:00;01'],
      [19781, '00:10:59;29'],
      [19782, '00:11:00;02'],
      [107891, '00:59:59;29'],
      [107892, '01:00:00;00'],
      [1078920, '10:00:00;00'],
      [2589407, '23:59:59;29'],
    ];
    for (const [frames, tc] of cases) {
      it(`${frames} <-> ${tc}`, () => {
        assert.equal(framesToTimecode(frames, '29.97df'), tc);
        assert.equal(timecodeToFrames(tc, '29.97df'), frames);
      });
    }

    it('wraps at 24h (2589408 frames) and negative frames wrap back', () => {
      assert.equal(framesToTimecode(2589408, '29.97df'), '00:00:00;00');
      assert.equal(framesToTimecode(2589408 + 1800, '29.97df'), '00:01:00;02');
      assert.equal(framesToTimecode(-1, '29.97df'), '23:59:59;29');
      assert.equal(framesToTimecode(-2589408, '29.97df'), '00:00:00;00');
    });

    it('rejects dropped labels and accepts every tenth minute', () => {
      assert.throws(
        () => timecodeToFrames('00:01:00;00', '29.97df'),
        (e: Error) => {
          assert.match(e.message, /00:01:00;00/);
          assert.match(e.message, /does not exist/);
          assert.match(e.message, /dropped/);
          assert.match(e.message, /00:01:00;02/); // tells the next valid label
          return true;
        },
      );
      assert.throws(() => timecodeToFrames('00:01:00;01', '29.97df'), /does not exist/);
      assert.throws(() => timecodeToFrames('13:59:00;01', '29.97df'), /does not exist/);
      assert.equal(isValidTimecode('00:01:00;00', '29.97df'), false);
      assert.equal(isValidTimecode('00:01:00;02', '29.97df'), true);
      assert.equal(isValidTimecode('00:01:01;00', '29.97df'), true);
      assert.equal(isValidTimecode('00:10:00;00', '29.97df'), true);
      assert.equal(isValidTimecode('00:10:00;01', '29.97df'), true);
      assert.equal(timecodeToFrames('00:10:00;00', '29.97df'), 17982);
      // Only drop-frame rates drop labels.
      assert.equal(timecodeToFrames('00:01:00:00', '30'), 1800);
      assert.equal(timecodeToFrames('00:01:00:00', '23.976'), 1440);
    });

    it('accepts any of the separators', () => {
      for (const tc of ['01:00:00;00', '01:00:00:00', '01.00.00.00', '01;00;00;00', ' 01:00:00;00 ']) {
        assert.equal(timecodeToFrames(tc, '29.97df'), 107892, tc);
      }
    });

    it('labels every frame of the first hour and across midnight like a frame-by-frame counter', () => {
      sweep('29.97df', 0, [0, 0, 0, 0], 107892 + 100);
      sweep('29.97df', 2589408 - 107892, [23, 0, 0, 0], 107892 + 100);
    });
  });

  describe('59.94 drop-frame (published values)', () => {
    const cases: Array<[number, string]> = [
      [0, '00:00:00;00'],
      [3599, '00:00:59;59'],
      [3600, '00:01:00;04'],
      [35963, '00:09:59;59'],
      [35964, '00:10:00;00'],
      [215783, '00:59:59;59'],
      [215784, '01:00:00;00'],
      [215784 * 24 - 1, '23:59:59;59'],
    ];
    for (const [frames, tc] of cases) {
      it(`${frames} <-> ${tc}`, () => {
        assert.equal(framesToTimecode(frames, '59.94df'), tc);
        assert.equal(timecodeToFrames(tc, '59.94df'), frames);
      });
    }

    it('wraps at 24h and rejects labels 00-03 at non-tenth minutes', () => {
      assert.equal(framesToTimecode(215784 * 24, '59.94df'), '00:00:00;00');
      for (const ff of ['00', '01', '02', '03']) {
        assert.throws(() => timecodeToFrames(`00:01:00;${ff}`, '59.94df'), /does not exist/);
        assert.equal(isValidTimecode(`00:10:00;${ff}`, '59.94df'), true);
      }
      assert.equal(isValidTimecode('00:01:00;04', '59.94df'), true);
    });

    it('labels every frame of the first hour like a frame-by-frame counter', () => {
      sweep('59.94df', 0, [0, 0, 0, 0], 215784 + 100);
    });
  });

  describe('non drop-frame rates', () => {
    it('25 fps: 90000 frames is one hour, wraps at 2160000', () => {
      assert.equal(framesToTimecode(90000, '25'), '01:00:00:00');
      assert.equal(timecodeToFrames('01:00:00:00', '25'), 90000);
      assert.equal(framesToTimecode(2159999, '25'), '23:59:59:24');
      assert.equal(framesToTimecode(2160000, '25'), '00:00:00:00');
      assert.equal(framesToTimecode(-1, '25'), '23:59:59:24');
      assert.equal(framesToTimecode(1500, '25'), '00:01:00:00');
    });

    it('23.976 counts 24 labels per second (not drop-frame)', () => {
      assert.equal(framesToTimecode(86400, '23.976'), '01:00:00:00');
      assert.equal(framesToTimecode(1440, '23.976'), '00:01:00:00');
      assert.equal(framesToTimecode(2073600, '23.976'), '00:00:00:00');
      assert.equal(timecodeToFrames('00:01:00;00', '23.976'), 1440);
    });

    it('24 / 30 / 50 / 60 fps one-hour and last-frame values', () => {
      assert.equal(timecodeToFrames('01:00:00:00', '24'), 86400);
      assert.equal(timecodeToFrames('01:00:00:00', '30'), 108000);
      assert.equal(timecodeToFrames('01:00:00:00', '50'), 180000);
      assert.equal(timecodeToFrames('01:00:00:00', '60'), 216000);
      assert.equal(framesToTimecode(60 * 86400 - 1, '60'), '23:59:59:59');
      assert.equal(framesToTimecode(50 * 86400 - 1, '50'), '23:59:59:49');
      assert.equal(framesToTimecode(30 * 86400 - 1, '30'), '23:59:59:29');
    });

    it('non drop-frame rates never print ";"', () => {
      for (const id of ['23.976', '24', '25', '30', '50', '60'] as FrameRateId[]) {
        assert.ok(!framesToTimecode(123456, id).includes(';'), id);
      }
    });
  });

  describe('round trip for every rate', () => {
    for (const id of FRAME_RATE_IDS) {
      it(`${id}: frames -> timecode -> frames over minute boundaries, wrap and random values`, () => {
        const day = FRAMES_PER_DAY[id];
        const r = frameRate(id);
        const values = new Set<number>([0, 1, day - 1]);
        for (let m = 0; m < 1440; m++) {
          const start = minuteStart(id, m);
          for (const d of [-2, -1, 0, 1, 2, 3, 4, 5, r.nominal - 1, r.nominal]) {
            const v = start + d;
            if (v >= 0 && v < day) values.add(v);
          }
        }
        const rand = mulberry32(0x5eed + r.nominal);
        for (let i = 0; i < 5000; i++) values.add(Math.floor(rand() * day));
        const tenMinutes = minuteStart(id, 10);
        assert.equal(tenMinutes, id === '29.97df' ? 17982 : id === '59.94df' ? 35964 : r.nominal * 600);
        for (const v of values) {
          const tc = framesToTimecode(v, id);
          assert.match(tc, r.dropFrame ? /^\d\d:\d\d:\d\d;\d\d$/ : /^\d\d:\d\d:\d\d:\d\d$/);
          const back = timecodeToFrames(tc, id);
          if (back !== v) assert.fail(`${id}: ${v} -> ${tc} -> ${back}`);
          // Wrapping: the same label one day later and one day earlier.
          if (framesToTimecode(v + day, id) !== tc) assert.fail(`${id}: ${v}+day does not wrap`);
          if (framesToTimecode(v - day, id) !== tc) assert.fail(`${id}: ${v}-day does not wrap`);
        }
        // Every minute starts where the reference says it does.
        for (let m = 0; m < 1440; m++) {
          const label = framesToTimecode(minuteStart(id, m), id);
          const hh = String(Math.floor(m / 60)).padStart(2, '0');
          const mm = String(m % 60).padStart(2, '0');
          const ff = r.dropFrame && m % 10 !== 0 ? (id === '29.97df' ? '02' : '04') : '00';
          assert.equal(label, `${hh}:${mm}:00${r.dropFrame ? ';' : ':'}${ff}`);
        }
      });
    }
  });

  describe('malformed and out-of-range timecode', () => {
    it('throws on malformed text with a message naming the problem', () => {
      for (const bad of ['1:2:3', 'abc', '01:00:00', '1:00:00:00', '01:00:00:00:00', '01-00-00-00', '01:00:00:0a']) {
        assert.throws(
          () => timecodeToFrames(bad, '25'),
          (e: Error) => {
            assert.match(e.message, /Malformed timecode/);
            assert.ok(e.message.includes(`"${bad}"`), e.message);
            assert.match(e.message, /HH:MM:SS:FF/);
            return true;
          },
        );
        assert.equal(isValidTimecode(bad, '25'), false);
      }
      assert.throws(() => timecodeToFrames('', '25'), /Malformed timecode "": empty/);
      assert.throws(() => timecodeToFrames(undefined as unknown as string, '25'), /Malformed timecode/);
      assert.equal(isValidTimecode('', '25'), false);
    });

    it('names the out-of-range field', () => {
      assert.throws(() => timecodeToFrames('00:00:60:00', '25'), /seconds 60 out of range, must be 00-59/);
      assert.throws(() => timecodeToFrames('00:60:00:00', '25'), /minutes 60 out of range, must be 00-59/);
      assert.throws(() => timecodeToFrames('24:00:00:00', '25'), /hours 24 out of range, must be 00-23/);
      assert.throws(() => timecodeToFrames('00:00:00:25', '25'), /frames 25 out of range, must be 00-24/);
      assert.throws(() => timecodeToFrames('00:00:00;30', '29.97df'), /frames 30 out of range, must be 00-29/);
      assert.throws(() => timecodeToFrames('00:00:00:24', '23.976'), /frames 24 out of range, must be 00-23/);
      assert.equal(timecodeToFrames('00:00:00:24', '25'), 24);
      assert.equal(timecodeToFrames('00:00:00:59', '60'), 59);
      assert.equal(isValidTimecode('00:00:60:00', '25'), false);
      assert.equal(isValidTimecode('23:59:59:24', '25'), true);
    });

    it('rejects non-finite frame counts', () => {
      assert.throws(() => framesToTimecode(NaN, '25'), /finite/);
      assert.throws(() => framesToTimecode(Infinity, '25'), /finite/);
    });
  });

  describe('msToFrames / framesToMs', () => {
    it('floors at the real rate', () => {
      assert.equal(msToFrames(1000, '29.97df'), 29);
      assert.equal(msToFrames(1001 * 1000, '29.97df'), 30000);
      assert.equal(msToFrames(1001 * 1000 - 1, '29.97df'), 29999);
      assert.equal(msToFrames(1000, '25'), 25);
      assert.equal(msToFrames(39, '25'), 0);
      assert.equal(msToFrames(40, '25'), 1);
      assert.equal(msToFrames(1001, '23.976'), 24);
      assert.equal(msToFrames(1001, '59.94df'), 60);
      assert.equal(msToFrames(0, '60'), 0);
      assert.equal(msToFrames(-1, '25'), -1);
      assert.equal(msToFrames(-40, '25'), -1);
      assert.equal(msToFrames(40.5, '25'), 1);
      assert.equal(msToFrames(39.99, '25'), 0);
      assert.equal(msToFrames(1000.5, '29.97df'), 29);
    });

    it('is exact for large ms (up to 1e13) where float math would be off', () => {
      assert.equal(msToFrames(1001 * 1e10, '29.97df'), 3e11);
      assert.equal(msToFrames(1001 * 1e10 - 1, '29.97df'), 3e11 - 1);
      assert.equal(msToFrames(1001 * 1e10, '59.94df'), 6e11);
      assert.equal(msToFrames(1e13, '59.94df'), refMsToFrames(1e13, '59.94df'));
      const rand = mulberry32(20260101);
      for (const id of FRAME_RATE_IDS) {
        for (let i = 0; i < 2000; i++) {
          const ms = Math.floor(rand() * 1e13);
          assert.equal(msToFrames(ms, id), refMsToFrames(ms, id), `${id} ${ms}`);
          // multiples of den*1000 ms are exact frame boundaries
          const k = Math.floor(rand() * 1e7);
          const r = frameRate(id);
          assert.equal(msToFrames(k * r.den * 1000, id), k * r.num, `${id} k=${k}`);
          assert.equal(msToFrames(k * r.den * 1000 - 1, id), k * r.num - 1, `${id} k=${k} - 1ms`);
        }
      }
    });

    it('framesToMs is the inverse at frame boundaries', () => {
      assert.equal(framesToMs(30000, '29.97df'), 1001000);
      assert.equal(framesToMs(25, '25'), 1000);
      assert.equal(framesToMs(1, '25'), 40);
      assert.equal(framesToMs(24000, '23.976'), 1001000);
      assert.ok(Math.abs(framesToMs(1, '29.97df') - 33.3666666) < 1e-6);
      for (const id of FRAME_RATE_IDS) {
        for (const f of [0, 1, 2, 29, 1799, 1800, 17982, 107892, 2589407]) {
          assert.equal(msToFrames(Math.ceil(framesToMs(f, id)), id), f, `${id} ${f}`);
        }
      }
    });
  });

  describe('timeOfDayTimecode', () => {
    it('labels the wall-clock time of day (25 fps, UTC)', () => {
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 21, 29, 43, 640), '25', 0), '21:29:43:16');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 0, 0, 0, 0), '25', 0), '00:00:00:00');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 23, 59, 59, 999), '25', 0), '23:59:59:24');
    });

    it('applies the timezone offset (minutes east of UTC)', () => {
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 23, 0, 0, 0), '25', 120), '01:00:00:00');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 0, 30, 0, 0), '25', -60), '23:30:00:00');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 12, 0, 0, 0), '50', 330), '17:30:00:00');
    });

    it("defaults to the process's local offset", () => {
      const t = Date.UTC(2026, 6, 15, 10, 11, 12, 480);
      const local = -new Date(t).getTimezoneOffset();
      assert.equal(timeOfDayTimecode(t, '25'), timeOfDayTimecode(t, '25', local));
    });

    it('drop-frame time of day tracks the wall clock at the hour', () => {
      // 1 h real = floor(3600 s * 30000/1001) = 107892 frames = 01:00:00;00
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 1, 0, 0, 0), '29.97df', 0), '01:00:00;00');
      // Drop-frame is 0.108 frames/hour short of real time: 10 h real = 1078921.08 frames.
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 10, 0, 0, 0), '29.97df', 0), '10:00:00;01');
      // ... and about 2.6 frames short per day: just before midnight the count has already wrapped.
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 23, 59, 59, 990), '29.97df', 0), '00:00:00;02');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 1, 0, 0, 0), '59.94df', 0), '01:00:00;00');
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 0, 0, 1, 0), '29.97df', 0), '00:00:00;29');
    });

    it('23.976 counts real frames since midnight with 24 labels per second', () => {
      // 1001 s real = 24000 frames = 1000 s of labels
      assert.equal(timeOfDayTimecode(Date.UTC(2026, 0, 1, 0, 16, 41, 0), '23.976', 0), '00:16:40:00');
    });
  });

  describe('addFrames / durationTimecode', () => {
    it('adds and subtracts frames across drop-frame boundaries and midnight', () => {
      assert.equal(addFrames('00:00:59;29', 1, '29.97df'), '00:01:00;02');
      assert.equal(addFrames('00:01:00;02', -1, '29.97df'), '00:00:59;29');
      assert.equal(addFrames('00:09:59;29', 1, '29.97df'), '00:10:00;00');
      assert.equal(addFrames('23:59:59;29', 1, '29.97df'), '00:00:00;00');
      assert.equal(addFrames('00:00:00:00', -1, '25'), '23:59:59:24');
      assert.equal(addFrames('00:59:59:24', 1, '25'), '01:00:00:00');
      assert.equal(addFrames('10:00:00:00', 0, '25'), '10:00:00:00');
      assert.equal(addFrames('10:00:00:00', 0, '29.97df'), '10:00:00;00');
      assert.throws(() => addFrames('00:01:00;00', 1, '29.97df'), /does not exist/);
    });

    it('durationTimecode formats elapsed milliseconds', () => {
      assert.equal(durationTimecode(0, '25'), '00:00:00:00');
      assert.equal(durationTimecode(3600000, '25'), '01:00:00:00');
      assert.equal(durationTimecode(90 * 60000 + 1500, '25'), '01:30:01:12');
      assert.equal(durationTimecode(1001000, '29.97df'), framesToTimecode(30000, '29.97df'));
      // 60 s real = floor(1798.2) = 1798 frames, two labels short of the minute
      assert.equal(durationTimecode(60000, '29.97df'), '00:00:59;28');
      assert.equal(durationTimecode(3600000, '29.97df'), '01:00:00;00');
    });
  });
});
