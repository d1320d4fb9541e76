/**
 * Test helpers over Debian's ffprobe/ffmpeg (never the bundled npm ffmpeg):
 * they are the independent referee that checks what our recorder wrote.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const FFPROBE = '/usr/bin/ffprobe';
export const FFMPEG = '/usr/bin/ffmpeg';

const MAX_BUFFER = 512 * 1024 * 1024;

export interface ProbeResult {
  durationSec: number;
  videoCodec: string;
  width: number;
  height: number;
  avgFrameRate: string;
  formatName: string;
}

export interface FrameHash {
  /** Presentation timestamp in the stream time base (as printed by framemd5). */
  pts: number;
  /** pts in seconds (pts * time base). */
  ptsSec: number;
  /** Packet size in bytes. */
  size: number;
  /** MD5 of the packet payload. */
  hash: string;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: MAX_BUFFER, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { code?: number | string };
        const reason =
          e.code === 'ENOENT'
            ? `${cmd} not found (install the Debian package ffmpeg)`
            : `exit code ${String(e.code)}${(err as { signal?: string }).signal ? `, signal ${(err as { signal?: string }).signal}` : ''}`;
        reject(new Error(`${path.basename(cmd)} failed (${reason}): ${cmd} ${args.join(' ')}\n${String(stderr).trim()}`));
        return;
      }
      resolve(stdout);
    });
  });
}

function assertFiles(files: string[]): void {
  if (files.length === 0) throw new Error('no files given');
  for (const f of files) {
    if (!fs.existsSync(f)) throw new Error(`file does not exist: ${f}`);
  }
}

/** Input spec for several files played one after another, plus cleanup. */
async function concatInput(files: string[]): Promise<{ args: string[]; cleanup: () => Promise<void> }> {
  assertFiles(files);
  if (files.length === 1) return { args: ['-i', files[0]], cleanup: async () => {} };
  const allTs = files.every((f) => /\.(ts|m2ts|mts)$/i.test(f) && !f.includes('|'));
  if (allTs) {
    // MPEG-TS segments from a segment muxer keep continuous timestamps:
    // byte-level concatenation is exact.
    return { args: ['-i', `concat:${files.map((f) => path.resolve(f)).join('|')}`], cleanup: async () => {} };
  }
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'media-concat-'));
  const list = path.join(dir, 'list.txt');
  const body = files.map((f) => `file '${path.resolve(f).replace(/'/g, "'\\''")}'`).join('\n') + '\n';
  await fs.promises.writeFile(list, body);
  return {
    args: ['-f', 'concat', '-safe', '0', '-i', list],
    cleanup: () => fs.promises.rm(dir, { recursive: true, force: true }),
  };
}

function toNumber(v: unknown): number {
  const n = typeof v === 'number' ? v : parseFloat(String(v));
  return Number.isFinite(n) ? n : NaN;
}

async function probeArgs(inputArgs: string[], label: string): Promise<ProbeResult> {
  const out = await run(FFPROBE, ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', '-select_streams', 'v:0', ...inputArgs]);
  let j: { format?: Record<string, unknown>; streams?: Record<string, unknown>[] };
  try {
    j = JSON.parse(out);
  } catch {
    throw new Error(`ffprobe printed invalid JSON for ${label}: ${out.slice(0, 500)}`);
  }
  const s = j.streams?.[0];
  if (!s) throw new Error(`no video stream in ${label}`);
  const fmt = j.format ?? {};
  let durationSec = toNumber(fmt.duration);
  if (!Number.isFinite(durationSec)) durationSec = toNumber(s.duration);
  return {
    durationSec,
    videoCodec: String(s.codec_name ?? ''),
    width: Number(s.width ?? 0),
    height: Number(s.height ?? 0),
    avgFrameRate: String(s.avg_frame_rate ?? ''),
    formatName: String(fmt.format_name ?? ''),
  };
}

/** Container/stream facts of the first video stream. */
export async function probe(file: string): Promise<ProbeResult> {
  assertFiles([file]);
  return probeArgs(['-i', file], file);
}

async function countPacketsArgs(inputArgs: string[], label: string): Promise<number> {
  const out = await run(FFPROBE, [
    '-v',
    'error',
    '-count_packets',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=nb_read_packets',
    '-of',
    'csv=p=0',
    ...inputArgs,
  ]);
  const n = parseInt(out.trim().split(/\r?\n/)[0] ?? '', 10);
  if (!Number.isInteger(n)) throw new Error(`could not count video packets of ${label}: ${JSON.stringify(out)}`);
  return n;
}

/** Number of video frames (= packets, files are stream copies) in v:0. */
export async function countFrames(file: string): Promise<number> {
  assertFiles([file]);
  return countPacketsArgs(['-i', file], file);
}

/** Duration in seconds of the files played back to back, in order. */
export async function concatDuration(files: string[]): Promise<number> {
  const { args, cleanup } = await concatInput(files);
  try {
    const p = await probeArgs(args, files.join(' + '));
    if (!Number.isFinite(p.durationSec)) throw new Error(`no duration for ${files.join(' + ')}`);
    return p.durationSec;
  } finally {
    await cleanup();
  }
}

/** Video frame count of the files played back to back, in order. */
export async function concatFrameCount(files: string[]): Promise<number> {
  const { args, cleanup } = await concatInput(files);
  try {
    return await countPacketsArgs(args, files.join(' + '));
  } finally {
    await cleanup();
  }
}

/**
 * Per-frame MD5 of the first video stream: of each packet as stored (stream
 * copy, the default), or with `decode` of each decoded picture (the first
 * `frames` only, when given). Two recordings of one live stream can differ in
 * the bytes of their first keyframe packet alone (parameter sets the source
 * sent in-band to one client and in its SDP to the other), while every picture
 * is the same: compare decoded pictures to say "the same frames".
 */
export async function framemd5(file: string, o: { decode?: boolean; frames?: number } = {}): Promise<FrameHash[]> {
  assertFiles([file]);
  const out = await run(FFMPEG, [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    '-i',
    file,
    '-map',
    '0:v:0',
    ...(o.frames ? ['-frames:v', String(o.frames)] : []),
    ...(o.decode ? ['-pix_fmt', 'yuv420p'] : ['-c', 'copy']),
    '-f',
    'framemd5',
    '-',
  ]);
  let tbNum = 1;
  let tbDen = 1;
  const frames: FrameHash[] = [];
  for (const raw of out.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const m = /^#tb 0:\s*(\d+)\/(\d+)/.exec(line);
      if (m) {
        tbNum = Number(m[1]);
        tbDen = Number(m[2]);
      }
      continue;
    }
    // stream_index, dts, pts, duration, size, hash
    const parts = line.split(',').map((x) => x.trim());
    if (parts.length < 6) throw new Error(`unexpected framemd5 line for ${file}: ${line}`);
    const pts = Number(parts[2]);
    frames.push({ pts, ptsSec: (pts * tbNum) / tbDen, size: Number(parts[4]), hash: parts[5] });
  }
  return frames;
}

/** Video packet pts (seconds) of one file, in presentation order. */
export async function packetPtsTimes(file: string): Promise<number[]> {
  assertFiles([file]);
  const out = await run(FFPROBE, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', '-i', file]);
  return out
    .split(/\r?\n/)
    .map((l) => parseFloat(l.replace(/,+$/, '')))
    .filter((n) => Number.isFinite(n))
    .sort((a, b) => a - b);
}

/**
 * Largest difference between consecutive video packet pts across the ordered
 * files (pts sorted within each file, file order kept). 0 for < 2 packets.
 */
export async function maxFrameGapSec(files: string[]): Promise<number> {
  assertFiles(files);
  let prev: number | undefined;
  let max = 0;
  for (const f of files) {
    for (const t of await packetPtsTimes(f)) {
      if (prev !== undefined) max = Math.max(max, t - prev);
      prev = t;
    }
  }
  return max;
}
