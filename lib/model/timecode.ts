/**
 * SMPTE timecode for broadcast recording (SMPTE ST 12-1), drop-frame correct.
 *
 * Pure module: no Node-RED import, no runtime dependency.
 *
 * Conventions
 * - A "frame number" is a count of frames from 00:00:00:00 (label 0) at the
 *   rate's *real* frame rate (num/den frames per second).
 * - Non drop-frame rates count `nominal` labels per second (23.976 counts 24
 *   labels per second and is therefore NOT wall-clock accurate: it runs 0.1 %
 *   slow, like 29.97 NDF would).
 * - 29.97df skips the labels ;00 and ;01 at the start of every minute except
 *   minutes divisible by 10 (17982 frames per 10 minutes, 107892 per hour);
 *   59.94df skips ;00 to ;03 (35964 per 10 minutes, 215784 per hour).
 * - Timecode wraps at 24 hours: frame numbers are taken modulo the number of
 *   labels in a day (nominal * 86400 for non drop-frame rates, 24 * frames
 *   per hour for drop-frame rates). Negative frame numbers wrap back from 24h.
 * - Drop-frame timecode is written with ';' before the frames
 *   ('HH:MM:SS;FF'), non drop-frame with ':' ('HH:MM:SS:FF'). Parsing accepts
 *   ':', ';' or '.' as any separator.
 */

export type FrameRateId = '23.976' | '24' | '25' | '29.97df' | '30' | '50' | '59.94df' | '60';

export const FRAME_RATE_IDS: readonly FrameRateId[] = Object.freeze(['23.976', '24', '25', '29.97df', '30', '50', '59.94df', '60'] as FrameRateId[]);

export interface FrameRate {
  id: FrameRateId;
  /** Exact rate numerator: the rate is num/den frames per second (e.g. 30000/1001). */
  num: number;
  /** Exact rate denominator. */
  den: number;
  /** Labels counted per second: 24, 24, 25, 30, 30, 50, 60, 60. */
  nominal: number;
  dropFrame: boolean;
  /** Human-readable name, e.g. '29.97 drop-frame'. */
  label: string;
  /** num/den as a float. */
  fps: number;
}

function makeRate(id: FrameRateId, num: number, den: number, nominal: number, dropFrame: boolean, label: string): FrameRate {
  return Object.freeze({ id, num, den, nominal, dropFrame, label, fps: num / den });
}

const RATES: Readonly<Record<FrameRateId, FrameRate>> = Object.freeze({
  '23.976': makeRate('23.976', 24000, 1001, 24, false, '23.976 fps'),
  '24': makeRate('24', 24, 1, 24, false, '24 fps'),
  '25': makeRate('25', 25, 1, 25, false, '25 fps'),
  '29.97df': makeRate('29.97df', 30000, 1001, 30, true, '29.97 drop-frame'),
  '30': makeRate('30', 30, 1, 30, false, '30 fps'),
  '50': makeRate('50', 50, 1, 50, false, '50 fps'),
  '59.94df': makeRate('59.94df', 60000, 1001, 60, true, '59.94 drop-frame'),
  '60': makeRate('60', 60, 1, 60, false, '60 fps'),
});

const ALIASES: Readonly<Record<string, FrameRateId>> = Object.freeze({
  '23.98': '23.976',
  '23.976': '23.976',
  '24000/1001': '23.976',
  '24': '24',
  '24/1': '24',
  '25': '25',
  '25/1': '25',
  '29.97': '29.97df',
  '29.97df': '29.97df',
  '30000/1001': '29.97df',
  '30': '30',
  '30/1': '30',
  '50': '50',
  '50/1': '50',
  '59.94': '59.94df',
  '59.94df': '59.94df',
  '60000/1001': '59.94df',
  '60': '60',
  '60/1': '60',
});

function unknownRate(x: unknown): Error {
  return new Error(`Unknown frame rate "${String(x)}": use one of ${FRAME_RATE_IDS.join(', ')}`);
}

export function isFrameRateId(x: unknown): x is FrameRateId {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(RATES, x);
}

/**
 * Look up a frame rate by id. Also accepts the aliases '29.97' (-> 29.97df),
 * '59.94' (-> 59.94df), '23.98' (-> 23.976), numbers written as strings
 * ('25', '25.0', ' 50 '), an optional 'fps' suffix, ' df' / 'DF' spelling and
 * exact rationals ('30000/1001'). A number is accepted at run time too.
 */
export function frameRate(id: string): FrameRate {
  if (isFrameRateId(id)) return RATES[id];
  if (typeof id !== 'string' && typeof id !== 'number') throw unknownRate(id);
  let s = String(id).trim().toLowerCase().replace(/\s+/g, '');
  if (s.endsWith('fps')) s = s.slice(0, -3);
  const direct = ALIASES[s];
  if (direct) return RATES[direct];
  // Numbers written differently: '25.0', '29.970', '59.940df', '030'.
  const m = /^(\d+(?:\.\d+)?)(df)?$/.exec(s);
  if (m) {
    const n = Number(m[1]);
    const df = m[2] === 'df';
    const near = (v: number) => Math.abs(n - v) < 1e-9;
    if (df) {
      if (near(29.97)) return RATES['29.97df'];
      if (near(59.94)) return RATES['59.94df'];
    } else {
      if (near(23.976) || near(23.98)) return RATES['23.976'];
      if (near(29.97)) return RATES['29.97df'];
      if (near(59.94)) return RATES['59.94df'];
      for (const v of [24, 25, 30, 50, 60]) if (near(v)) return RATES[String(v) as FrameRateId];
    }
  }
  throw unknownRate(id);
}

function resolve(rate: FrameRate | FrameRateId): FrameRate {
  if (typeof rate === 'string') return frameRate(rate);
  if (rate && typeof rate === 'object' && isFrameRateId((rate as FrameRate).id)) return RATES[(rate as FrameRate).id];
  throw unknownRate(rate && typeof rate === 'object' ? (rate as { id?: unknown }).id : rate);
}

// ---------------------------------------------------------------------------
// Counting helpers

/** Labels dropped at the start of each non-tenth minute (0 for non-df rates). */
function dropCount(r: FrameRate): number {
  return r.dropFrame ? Math.round(r.nominal / 15) : 0; // 2 for 29.97df, 4 for 59.94df
}

/** Frames in one hour of timecode labels. */
function framesPerHour(r: FrameRate): number {
  return r.nominal * 3600 - dropCount(r) * 54; // 54 = 6 * 9 dropping minutes per hour
}

/** Frames in 24 hours of timecode labels (the wrap point). */
function framesPerDay(r: FrameRate): number {
  return framesPerHour(r) * 24;
}

function mod(a: number, n: number): number {
  const m = a % n;
  return m < 0 ? m + n : m;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function checkFrames(frames: number, what = 'frames'): number {
  if (typeof frames !== 'number' || !Number.isFinite(frames)) {
    throw new Error(`Invalid ${what} ${String(frames)}: expected a finite number`);
  }
  return Math.floor(frames);
}

/**
 * Frame number -> 'HH:MM:SS:FF' (non-df) or 'HH:MM:SS;FF' (df). Non-integer
 * frame numbers are floored; the result wraps at 24h, negative frame numbers
 * wrap back from 24h.
 */
export function framesToTimecode(frames: number, rate: FrameRate | FrameRateId): string {
  const r = resolve(rate);
  let f = mod(checkFrames(frames), framesPerDay(r));
  const drop = dropCount(r);
  if (drop > 0) {
    const per10 = r.nominal * 600 - drop * 9;
    const perMin = r.nominal * 60 - drop;
    const tens = Math.floor(f / per10);
    const rem = f % per10;
    // Convert to a label index by adding back the labels skipped so far.
    f += drop * 9 * tens;
    if (rem >= drop) f += drop * Math.floor((rem - drop) / perMin);
  }
  const nom = r.nominal;
  const ff = f % nom;
  const totalSeconds = Math.floor(f / nom);
  const ss = totalSeconds % 60;
  const mm = Math.floor(totalSeconds / 60) % 60;
  const hh = Math.floor(totalSeconds / 3600);
  return `${pad2(hh)}:${pad2(mm)}:${pad2(ss)}${r.dropFrame ? ';' : ':'}${pad2(ff)}`;
}

const TC_RE = /^(\d{2})[:;.](\d{2})[:;.](\d{2})[:;.](\d{2})$/;

/**
 * 'HH:MM:SS:FF' (any of ':', ';', '.' as separators) -> frame number in
 * [0, frames per day). Throws an Error naming the problem for malformed
 * input, out-of-range fields and drop-frame labels that do not exist.
 */
export function timecodeToFrames(tc: string, rate: FrameRate | FrameRateId): number {
  const r = resolve(rate);
  if (typeof tc !== 'string') {
    throw new Error(`Malformed timecode ${String(tc)}: expected a string "HH:MM:SS:FF"`);
  }
  const text = tc.trim();
  if (text === '') throw new Error('Malformed timecode "": empty string, expected "HH:MM:SS:FF"');
  const m = TC_RE.exec(text);
  const fmt = r.dropFrame ? 'HH:MM:SS;FF' : 'HH:MM:SS:FF';
  if (!m) {
    throw new Error(`Malformed timecode "${tc}": expected ${fmt} with two digits per field, separated by ':', ';' or '.'`);
  }
  const hh = Number(m[1]);
  const mm = Number(m[2]);
  const ss = Number(m[3]);
  const ff = Number(m[4]);
  if (hh >= 24) throw new Error(`Invalid timecode "${tc}": hours ${m[1]} out of range, must be 00-23`);
  if (mm >= 60) throw new Error(`Invalid timecode "${tc}": minutes ${m[2]} out of range, must be 00-59`);
  if (ss >= 60) throw new Error(`Invalid timecode "${tc}": seconds ${m[3]} out of range, must be 00-59`);
  if (ff >= r.nominal) {
    throw new Error(`Invalid timecode "${tc}" at ${r.label}: frames ${m[4]} out of range, must be 00-${pad2(r.nominal - 1)}`);
  }
  const drop = dropCount(r);
  if (drop > 0 && ss === 0 && ff < drop && mm % 10 !== 0) {
    throw new Error(
      `Invalid timecode "${tc}" at ${r.label}: that label does not exist; frames 00-${pad2(drop - 1)} are dropped ` +
        `at the start of every minute except minutes 00, 10, 20, 30, 40 and 50 ` +
        `(the next valid label is ${pad2(hh)}:${pad2(mm)}:00;${pad2(drop)})`,
    );
  }
  const totalMinutes = hh * 60 + mm;
  return r.nominal * (hh * 3600 + mm * 60 + ss) + ff - drop * (totalMinutes - Math.floor(totalMinutes / 10));
}

export function isValidTimecode(tc: string, rate: FrameRate | FrameRateId): boolean {
  const r = resolve(rate);
  try {
    timecodeToFrames(tc, r);
    return true;
  } catch {
    return false;
  }
}

/**
 * floor(ms * num / (den * 1000)), exact for any integer ms a Number holds
 * (integer part done in BigInt, sub-millisecond fraction added after).
 */
export function msToFrames(ms: number, rate: FrameRate | FrameRateId): number {
  const r = resolve(rate);
  if (typeof ms !== 'number' || !Number.isFinite(ms)) {
    throw new Error(`Invalid milliseconds ${String(ms)}: expected a finite number`);
  }
  const whole = Math.floor(ms);
  const frac = ms - whole; // exact in floating point, in [0, 1)
  const d = BigInt(r.den * 1000);
  const n = BigInt(whole) * BigInt(r.num);
  // Floor division for BigInt (which truncates toward zero).
  let q = n / d;
  let rem = n % d;
  if (rem < 0n) {
    q -= 1n;
    rem += d;
  }
  // rem < den*1000 and frac*num < num: both small, the float sum is exact enough.
  const extra = Math.floor((Number(rem) + frac * r.num) / (r.den * 1000));
  return Number(q) + extra;
}

/** frames * den * 1000 / num (float milliseconds). */
export function framesToMs(frames: number, rate: FrameRate | FrameRateId): number {
  const r = resolve(rate);
  if (typeof frames !== 'number' || !Number.isFinite(frames)) {
    throw new Error(`Invalid frames ${String(frames)}: expected a finite number`);
  }
  return (frames * r.den * 1000) / r.num;
}

/**
 * Timecode of the wall-clock time of day: the number of frames since local
 * midnight at the real rate, labelled with this rate's labels (drop-frame
 * labels for df rates, which track the wall clock to within a few frames a
 * day). tzOffsetMinutes is minutes east of UTC (e.g. 60 for CET); by default
 * the process's local offset at that instant.
 */
export function timeOfDayTimecode(utcMs: number, rate: FrameRate | FrameRateId, tzOffsetMinutes?: number): string {
  const r = resolve(rate);
  if (typeof utcMs !== 'number' || !Number.isFinite(utcMs)) {
    throw new Error(`Invalid time ${String(utcMs)}: expected milliseconds since the epoch`);
  }
  const offset = tzOffsetMinutes ?? -new Date(utcMs).getTimezoneOffset();
  if (typeof offset !== 'number' || !Number.isFinite(offset)) {
    throw new Error(`Invalid timezone offset ${String(tzOffsetMinutes)}: expected minutes east of UTC`);
  }
  const msOfDay = mod(utcMs + offset * 60000, 86400000);
  return framesToTimecode(msToFrames(msOfDay, r), r);
}

/** Add (or with a negative count, subtract) frames to a timecode; wraps at 24h. */
export function addFrames(tc: string, frames: number, rate: FrameRate | FrameRateId): string {
  const r = resolve(rate);
  return framesToTimecode(timecodeToFrames(tc, r) + checkFrames(frames), r);
}

/** A duration in milliseconds as timecode: framesToTimecode(msToFrames(ms)). */
export function durationTimecode(ms: number, rate: FrameRate | FrameRateId): string {
  const r = resolve(rate);
  return framesToTimecode(msToFrames(ms, r), r);
}
