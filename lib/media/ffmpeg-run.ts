/**
 * One ffmpeg recording run: a supervised child process writing segments. It
 * reports the wall-clock time of its first frame (when the muxer opens the first
 * segment), each segment it opens, progress, and why it ended.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { FfmpegInfo, buildRunArgs, parseSegmentList, RunArgsOptions } from './ffmpeg';
import { forgetPid, watchPid } from './reaper';

export interface RunEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when we asked it to stop. */
  requested: boolean;
  /** Frames written according to ffmpeg's last progress report. */
  frames: number | null;
  /** True when ffmpeg printed its final progress report (progress=end). */
  clean: boolean;
  /** A sentence about why it ended when we did not ask. */
  reason: string | null;
  stderrTail: string;
  firstFrameAt: number | null;
}

export interface SegmentOpen {
  file: string;
  index: number;
  at: number;
}

export interface RunOptions extends RunArgsOptions {
  /**
   * With clockAnchorMs in the future: ffmpeg starts early (pre-roll) and its
   * first segment, which ends at the first keyframe after the anchor, is not
   * part of the clip (nor are later ones opened before the anchor, when segments
   * are shorter than the pre-roll). The clip's first frame is that keyframe.
   */
  prerollDiscard?: boolean;
  /** No progress for this long while running: the source is stalled; kill and report. */
  stallTimeoutMs: number;
  clock?: () => number;
}

/** Reasons from ffmpeg's stderr, most specific first. */
const REASONS: [RegExp, string][] = [
  [/No space left on device/i, 'storage full'],
  [/Permission denied/i, 'permission denied writing the clip'],
  [/Connection refused/i, 'the source refused the connection'],
  [/Connection timed out|timed out|Operation timed out/i, 'the source did not answer in time'],
  [/401 Unauthorized|Unauthorized/i, 'the source refused the credentials'],
  [/404 Not Found|not found/i, 'the source has no such stream'],
  [/No route to host|Network is unreachable|Name or service not known|Temporary failure in name resolution/i, 'the source is unreachable'],
  [/Invalid data found when processing input/i, 'the source sent data ffmpeg cannot read'],
  [/Connection reset|Broken pipe|End of file|error while decoding|Server returned 5\d\d/i, 'the source dropped the stream'],
];

export function reasonFromStderr(stderr: string): string | null {
  for (const [re, text] of REASONS) if (re.test(stderr)) return text;
  return null;
}

export class FfmpegRun extends EventEmitter {
  readonly args: string[];
  private child: ChildProcess | null = null;
  private stderrTail = '';
  private stdoutBuf = '';
  private requested = false;
  private frames: number | null = null;
  private clean = false;
  private lastProgressAt = 0;
  private lastOutTime = -1;
  private stallTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private stalled = false;
  private finished = false;
  private ended: Promise<RunEnd>;
  private resolveEnd!: (e: RunEnd) => void;
  /** Wall-clock time the muxer opened its first segment (header written). */
  firstFrameAt: number | null = null;
  /**
   * Best estimate of the wall-clock arrival of the first frame written: ffmpeg
   * buffers what it reads while probing the input (about a second for RTSP) and
   * writes it after the header, so the segment opens later than its first frame.
   * min(report time - media time written) over progress reports finds it.
   */
  startEstimate: number | null = null;
  /** File name of the discarded pre-roll segment, once opened. */
  prerollFile: string | null = null;
  private readonly clock: () => number;
  private readonly segPattern: RegExp;

  constructor(
    private readonly info: FfmpegInfo,
    private readonly opts: RunOptions,
  ) {
    super();
    this.clock = opts.clock ?? Date.now;
    this.args = buildRunArgs(opts, info);
    const base = opts.baseName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.segPattern = new RegExp(`Opening '([^']*${base}_(\\d+)\\.[a-z0-9]+)' for writing`);
    this.ended = new Promise((r) => (this.resolveEnd = r));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    fs.mkdirSync(this.opts.outDir, { recursive: true });
    // TZ=UTC: ffmpeg's -segment_atclocktime reads local time; the anchor is computed in UTC
    const child = spawn(this.info.path, this.args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, TZ: 'UTC' } });
    this.child = child;
    watchPid(child.pid);
    this.lastProgressAt = this.clock();
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => this.onProgress(d));
    child.stderr!.on('data', (d: string) => this.onStderr(d));
    child.on('error', (err) => {
      this.stderrTail += `\nspawn error: ${err.message}`;
      this.finish(null, null);
    });
    child.on('close', (code, signal) => this.finish(code, signal));
    this.stallTimer = setInterval(() => this.checkStall(), Math.min(1000, Math.max(100, this.opts.stallTimeoutMs / 4)));
  }

  private onStderr(d: string): void {
    const now = this.clock();
    this.stderrTail = (this.stderrTail + d).slice(-4000);
    for (const line of d.split(/\r?\n/)) {
      const m = this.segPattern.exec(line);
      if (!m) continue;
      const open: SegmentOpen = { file: path.basename(m[1]), index: Number(m[2]), at: now };
      const anchor = this.opts.clockAnchorMs;
      if (this.opts.prerollDiscard && this.firstFrameAt === null && (this.prerollFile === null || (anchor !== undefined && now < anchor))) {
        // the pre-roll: recorded only to be connected and cut at the anchor. Segments shorter than the
        // pre-roll are cut at anchor - k x length too: each one opened before the anchor is pre-roll,
        // and the one before it (closed now) is deleted
        const older = this.prerollFile;
        this.prerollFile = open.file;
        if (older) fs.promises.unlink(path.join(this.opts.outDir, older)).catch(() => undefined);
        this.emit('preroll', open);
        continue;
      }
      if (this.firstFrameAt === null) {
        this.firstFrameAt = now;
        this.emit('first-frame', now);
      }
      this.emit('segment-open', open);
    }
  }

  private onProgress(d: string): void {
    this.stdoutBuf += d;
    let i: number;
    while ((i = this.stdoutBuf.indexOf('\n')) >= 0) {
      const line = this.stdoutBuf.slice(0, i).trim();
      this.stdoutBuf = this.stdoutBuf.slice(i + 1);
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const k = line.slice(0, eq);
      const v = line.slice(eq + 1);
      if (k === 'frame') this.frames = Number(v);
      else if (k === 'out_time_us' || k === 'out_time_ms') {
        const t = Number(v);
        if (Number.isFinite(t) && t > this.lastOutTime) {
          this.lastOutTime = t;
          this.lastProgressAt = this.clock();
        }
      } else if (k === 'progress') {
        if (v === 'end') this.clean = true;
        if (this.firstFrameAt !== null && !this.opts.prerollDiscard && this.lastOutTime >= 0 && v !== 'end') {
          // media written so far, against the wall clock: the first frame arrived no later than now - out_time
          const est = Math.round(this.clock() - this.lastOutTime / 1000);
          if (this.startEstimate === null || est < this.startEstimate) this.startEstimate = est;
        }
        this.emit('progress', { frames: this.frames, outTimeUs: this.lastOutTime, startEstimate: this.startEstimate });
      }
    }
  }

  /** Frames written so far, by ffmpeg's last progress report (0 before the first). */
  get framesWritten(): number {
    return this.frames ?? 0;
  }

  /** When the media written last grew (by this run's clock); the start time before it has. */
  get progressAt(): number {
    return this.lastProgressAt;
  }

  private checkStall(): void {
    if (!this.running || this.requested) return;
    if (this.clock() - this.lastProgressAt > this.opts.stallTimeoutMs) {
      this.stalled = true;
      this.child?.kill('SIGKILL');
    }
  }

  /** Completed segments according to ffmpeg's segment list. */
  segmentList(): { file: string; startSec: number; endSec: number }[] {
    try {
      return parseSegmentList(fs.readFileSync(this.opts.listFile, 'utf8'));
    } catch {
      return [];
    }
  }

  /** Ask ffmpeg to finish (SIGINT closes the segment properly); SIGKILL if it hangs. */
  stop(graceMs = 5000): Promise<RunEnd> {
    this.requested = true;
    if (this.running) {
      this.child!.kill('SIGINT');
      this.killTimer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    }
    return this.ended;
  }

  /** Kill at once (the run's last segment may be incomplete). */
  kill(): Promise<RunEnd> {
    this.requested = true;
    if (this.running) this.child!.kill('SIGKILL');
    return this.ended;
  }

  whenEnded(): Promise<RunEnd> {
    return this.ended;
  }

  private finish(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.stallTimer) clearInterval(this.stallTimer);
    if (this.killTimer) clearTimeout(this.killTimer);
    this.stallTimer = this.killTimer = null;
    if (this.child) forgetPid(this.child.pid);
    let reason: string | null = null;
    if (!this.requested) {
      reason = this.stalled
        ? `the source sent nothing for ${Math.round(this.opts.stallTimeoutMs / 1000)} s`
        : (reasonFromStderr(this.stderrTail) ??
          (this.firstFrameAt === null ? `ffmpeg ended before recording (exit ${code ?? signal})` : 'the source ended the stream'));
    }
    const end: RunEnd = {
      code,
      signal,
      requested: this.requested,
      frames: this.frames,
      clean: this.clean,
      reason,
      stderrTail: this.stderrTail,
      firstFrameAt: this.firstFrameAt,
    };
    this.resolveEnd(end);
    this.emit('end', end);
  }
}
