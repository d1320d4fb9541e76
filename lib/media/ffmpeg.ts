/**
 * Which ffmpeg to run and what it can do: the system's when there is one on the
 * PATH, else the binary shipped by @ffmpeg-installer/ffmpeg. Builds the command
 * line for one recording run.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CONTAINER_EXT, CONTAINER_FORMAT, Container } from '../model/clip';
import { FrameRate, framesToTimecode } from '../model/timecode';

export interface FfmpegInfo {
  path: string;
  version: string;
  /** Option name of the RTSP socket timeout: -timeout (ffmpeg >= 5) or -stimeout (4.x). */
  rtspTimeoutOption: '-timeout' | '-stimeout';
  hasDrawtext: boolean;
  hasLibx264: boolean;
  /** ffmpeg >= 4.4 can report progress less often (-stats_period). */
  hasStatsPeriod: boolean;
}

let cached: FfmpegInfo | undefined;

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const f = path.join(dir, name);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Locate ffmpeg: $TWINREC_FFMPEG, then the PATH, then @ffmpeg-installer/ffmpeg. */
export function locateFfmpeg(): string {
  const forced = process.env.TWINREC_FFMPEG;
  if (forced) return forced;
  const sys = onPath('ffmpeg');
  if (sys) return sys;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
  } catch {
    throw new Error('No ffmpeg found: install Debian package ffmpeg, or the npm package @ffmpeg-installer/ffmpeg');
  }
}

/** The ffmpeg the recorders use (located once, then cached). */
export function ffmpegInfo(): FfmpegInfo {
  if (!cached) cached = probeFfmpeg(locateFfmpeg());
  return cached;
}

/** What one ffmpeg binary is and can do (version, option names, filters, encoders). */
export function probeFfmpeg(bin: string): FfmpegInfo {
  const run = (args: string[]) => {
    try {
      return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15000 });
    } catch (err) {
      const e = err as { stdout?: string };
      return e.stdout ?? '';
    }
  };
  const versionText = run(['-hide_banner', '-version']);
  const version = /ffmpeg version (\S+)/.exec(versionText)?.[1] ?? 'unknown';
  const rtspHelp = run(['-hide_banner', '-h', 'demuxer=rtsp']);
  const filters = run(['-hide_banner', '-filters']);
  const encoders = run(['-hide_banner', '-encoders']);
  const full = run(['-hide_banner', '-h', 'full']);
  return {
    path: bin,
    version,
    rtspTimeoutOption: /-stimeout\b/.test(rtspHelp) ? '-stimeout' : '-timeout',
    hasDrawtext: /\bdrawtext\b/.test(filters),
    hasLibx264: /\blibx264\b/.test(encoders),
    hasStatsPeriod: /-stats_period\b/.test(full),
  };
}

const FONT_CANDIDATES = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf',
  '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
  '/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf',
  '/usr/share/fonts/TTF/DejaVuSansMono-Bold.ttf',
];

export function findFont(): string | undefined {
  return FONT_CANDIDATES.find((f) => fs.existsSync(f));
}

export type InputSpec = { kind: 'testpattern'; size?: string; tcStart?: string } | { kind: 'url'; url: string; timeoutMs?: number };

export interface RunArgsOptions {
  input: InputSpec;
  rate: FrameRate;
  outDir: string;
  baseName: string;
  container: Container;
  segmentSeconds: number;
  startNumber: number;
  listFile: string;
  /** 'copy' keeps the source's encoding; 'h264' re-encodes video. */
  videoCodec: 'copy' | 'h264';
  /**
   * Cut segments on the wall clock at this instant plus whole multiples of the
   * segment length (UTC ms): two recorders of one source given the same instant
   * cut at the same keyframes (synchronous recording, timed starts).
   */
  clockAnchorMs?: number;
}

/** -segment_clocktime_offset for cuts at anchor + k * segment length (ffmpeg reads the clock in UTC: TZ=UTC). */
export function clockOffsetUs(anchorMs: number, segmentSeconds: number): number {
  const periodUs = Math.round(segmentSeconds * 1e6);
  const todUs = (((anchorMs % 86400000) + 86400000) % 86400000) * 1000;
  return todUs % periodUs;
}

function escapeFilterValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/'/g, "\\'");
}

/** The argument list for one ffmpeg recording run. */
export function buildRunArgs(o: RunArgsOptions, info: FfmpegInfo): string[] {
  const a: string[] = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info', '-progress', 'pipe:1'];
  // one progress report a second is enough for stall detection and the start estimate (default: two)
  if (info.hasStatsPeriod) a.push('-stats_period', '1');
  let encode = o.videoCodec === 'h264';
  if (o.input.kind === 'testpattern') {
    const size = o.input.size ?? '640x360';
    const rate = `${o.rate.num}/${o.rate.den}`;
    const font = findFont();
    let graph: string;
    if (info.hasDrawtext && font) {
      const tc = o.input.tcStart ?? framesToTimecode(0, o.rate);
      graph =
        `testsrc2=size=${size}:rate=${rate},` +
        `drawtext=fontfile=${escapeFilterValue(font)}:timecode='${escapeFilterValue(tc)}':rate=${rate}:` +
        `fontsize=h/8:fontcolor=white:box=1:boxcolor=black@0.6:x=(w-tw)/2:y=h-th-h/12`;
    } else {
      // testsrc draws a running counter of its own, no font needed
      graph = `testsrc=size=${size}:rate=${rate}`;
    }
    a.push('-re', '-f', 'lavfi', '-i', graph);
    encode = true;
  } else {
    const url = o.input.url;
    const timeoutUs = String((o.input.timeoutMs ?? 5000) * 1000);
    if (/^rtsps?:/i.test(url)) a.push('-rtsp_transport', 'tcp', info.rtspTimeoutOption, timeoutUs);
    else if (/^https?:/i.test(url)) a.push('-rw_timeout', timeoutUs);
    // probe briefly and take the frame rate from the stream's description instead of counting
    // 20 frames: recording begins about a second sooner (a failover takeover is waiting for it)
    a.push('-fpsprobesize', '0', '-analyzeduration', '1000000');
    a.push('-i', url);
  }
  a.push('-map', '0:v:0');
  if (o.input.kind === 'url') a.push('-map', '0:a?');
  if (encode) {
    const g = String(Math.round(o.rate.fps));
    a.push('-c:v', info.hasLibx264 ? 'libx264' : 'mpeg2video');
    if (info.hasLibx264) a.push('-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p');
    a.push('-g', g, '-b:v', '2M');
    if (o.input.kind === 'url') a.push('-c:a', 'copy');
  } else {
    a.push('-c', 'copy');
  }
  const fmt = CONTAINER_FORMAT[o.container];
  a.push(
    '-f',
    'segment',
    '-segment_time',
    String(o.segmentSeconds),
    '-segment_format',
    fmt,
    '-segment_list',
    o.listFile,
    '-segment_list_type',
    'csv',
    '-segment_start_number',
    String(o.startNumber),
    '-reset_timestamps',
    '0',
  );
  if (o.clockAnchorMs !== undefined) {
    a.push('-segment_atclocktime', '1', '-segment_clocktime_offset', `${clockOffsetUs(o.clockAnchorMs, o.segmentSeconds)}us`);
  }
  // write every packet through at once: a segment is on disk as it is recorded (not in 256 KiB
  // blocks, about 2.6 s of a 0.8 Mbit/s stream), so a kill loses nothing buffered and a
  // takeover's first media appears with its first frame. One option string: a second
  // -segment_format_options would replace the first.
  a.push('-segment_format_options', o.container === 'mp4' ? 'movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1' : 'flush_packets=1');
  a.push(path.join(o.outDir, `${o.baseName}_%05d.${CONTAINER_EXT[o.container]}`));
  return a;
}

/** Parse segment-list CSV lines: "file,start,end". Incomplete trailing lines are ignored. */
export function parseSegmentList(text: string): { file: string; startSec: number; endSec: number }[] {
  const out: { file: string; startSec: number; endSec: number }[] = [];
  const lines = text.split('\n');
  lines.pop(); // after the last newline: empty, or a line ffmpeg is still writing
  for (const line of lines) {
    const m = /^(.*),(-?[\d.]+),(-?[\d.]+)\s*$/.exec(line);
    if (!m) continue;
    let file = m[1];
    if (file.startsWith('"') && file.endsWith('"')) file = file.slice(1, -1).replace(/""/g, '"');
    out.push({ file, startSec: Number(m[2]), endSec: Number(m[3]) });
  }
  return out;
}

/** Count the video frames of a media file with ffmpeg itself (no ffprobe needed). */
export function countFramesWithFfmpeg(file: string, info: FfmpegInfo = ffmpegInfo()): Promise<number | null> {
  return new Promise((resolve) => {
    execFile(
      info.path,
      ['-hide_banner', '-nostdin', '-i', file, '-map', '0:v:0', '-c', 'copy', '-f', 'null', '-'],
      { encoding: 'utf8', timeout: 60000, maxBuffer: 16 * 1024 * 1024 },
      (_err, _stdout, stderr) => resolve(lastFrameCount(String(stderr ?? ''))),
    );
  });
}

export function lastFrameCount(stderr: string): number | null {
  const all = [...stderr.matchAll(/frame=\s*(\d+)/g)];
  return all.length ? Number(all[all.length - 1][1]) : null;
}
