/**
 * Run supervision: a line started (its source resolved, its clip opened), the
 * ffmpeg runs that record it, their first frames, segments and ends, restarts
 * with backoff, and the failure of a recording.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Clip, Gap, Segment } from '../model/clip';
import { CommandError, errorText } from '../model/errors';
import { redactUrl } from '../model/url';
import { countFramesWithFfmpeg, InputSpec } from '../media/ffmpeg';
import { FfmpegRun, RunEnd, SegmentOpen } from '../media/ffmpeg-run';
import { Line } from '../model/reclist';
import { scanSegment } from '../media/mpegts';
import { insideRoot, newClipDir, sanitizeName, writeSidecar } from '../store/clip-files';
import { framesToTimecode, timeOfDayTimecode } from '../model/timecode';
import { Active, ChannelContext, lineName, MIN_PREROLL_MS, takeScan } from './context';
import { adoptMainInPoint } from './aux-twin';
import { cancelIncoming, promote } from './cuts';
import { lineEvent } from './presentation';
import { ChannelEvent } from './types';
import { Backoff } from '../model/backoff';
import { lineInput } from './sources';

export async function inputFor(ch: ChannelContext, line: Line): Promise<InputSpec> {
  return lineInput(line.source, ch.settings.source, ch.settings.stallTimeoutMs);
}

/**
 * Start a line: resolve its source, open a clip, start ffmpeg. Resolves once armed.
 * With anchorMs, the clip begins at the first keyframe after that instant and its
 * segments are cut at anchor + k x segment length (twins of one source match).
 */
export async function startRecording(ch: ChannelContext, line: Line, requestId?: string, anchorMs?: number, incoming = false): Promise<ChannelEvent> {
  const now = ch.clock();
  // claim the channel synchronously, so a second start cannot race this one
  const clipId = randomUUID();
  const name = sanitizeName(line.title);
  // named by the planned instant when there is one, so an Aux twin gets the same folder name
  const dir = newClipDir(ch.settings.storageRoot, ch.settings.serverId, ch.settings.channel, name, anchorMs ?? now);
  const clip: Clip = {
    id: clipId,
    name,
    dir,
    serverId: ch.settings.serverId,
    group: line.group,
    channel: ch.settings.channel,
    channelName: ch.settings.channelName,
    lineId: line.id,
    title: line.title,
    attributes: { ...line.attributes },
    backup: line.backup,
    frameRate: ch.settings.frameRate,
    tcIn: null,
    tcOut: null,
    startedAt: null,
    stoppedAt: null,
    frames: 0,
    durationMs: 0,
    state: 'recording',
    container: ch.settings.container,
    source: line.source === 'LIVE' ? ch.settings.source.label : redactUrl(line.source),
    gaps: [],
    segments: [],
    runs: 0,
    reason: null,
    createdAt: now,
    updatedAt: now,
  };
  const armedLine: Line = {
    ...line,
    status: 'armed',
    clipId,
    reason: null,
    startTime: anchorMs ?? line.startTime,
    updatedAt: now,
  };
  const a: Active = {
    line: armedLine,
    clip,
    run: null,
    runNo: 0,
    nextIndex: 0,
    openSegments: [],
    restartTimer: null,
    backoff: new Backoff(ch.settings.restartMinMs, ch.settings.restartMaxMs),
    armedAt: now,
    stopping: false,
    chain: Promise.resolve(),
    input: null,
    anchorMs: anchorMs ?? null,
    prerollFirst: anchorMs !== undefined && anchorMs - now >= MIN_PREROLL_MS,
    mainInPoint: null,
    twinPending: null,
    followers: new Map(),
    mainStartedAt: null,
  };
  const holds = () => (incoming ? ch.incoming === a : ch.active === a);
  const release = () => {
    if (incoming && ch.incoming === a) ch.incoming = null;
    else if (!incoming && ch.active === a) ch.active = null;
  };
  if (incoming) ch.incoming = a;
  else ch.active = a;
  if (!incoming && ch.noPreroll === line.id) ch.noPreroll = null;
  let input: InputSpec;
  try {
    input = await inputFor(ch, line);
  } catch (err) {
    release();
    throw new CommandError(`${lineName(line)} cannot start: ${errorText(err)}`, 'ESOURCE');
  }
  if (!holds() || ch.closed) {
    release();
    throw new CommandError(`${lineName(line)} cannot start: the recorder is closing`, 'ECLOSED');
  }
  if (input.kind === 'testpattern' && ch.settings.tcMode === 'tod') input = { ...input, tcStart: timeOfDayTimecode(ch.clock(), ch.rate) };
  a.input = input;
  try {
    fs.mkdirSync(insideRoot(ch.settings.storageRoot, dir), { recursive: true });
    ch.cat.transaction(() => {
      ch.cat.putClip(clip);
      ch.saveLine(armedLine);
    });
    writeSidecar(ch.settings.storageRoot, clip);
  } catch (err) {
    release();
    ch.lastFailure = `cannot write to storage: ${errorText(err)}`;
    throw new CommandError(`${lineName(line)} cannot start: the storage root ${ch.settings.storageRoot} is not writable (${errorText(err)})`, 'ESTORAGE');
  }
  ch.lastFailure = null;
  const ev = lineEvent(ch, 'armed', armedLine, { requestId, clip });
  startRun(ch, a);
  return ev;
}

export function startRun(ch: ChannelContext, a: Active): void {
  a.restartTimer = null;
  if (a.stopping || ch.closed || !a.input) return;
  a.runNo += 1;
  a.clip.runs = a.runNo;
  a.openSegments = [];
  const outDir = insideRoot(ch.settings.storageRoot, a.clip.dir);
  const run = new FfmpegRun(ch.ffmpeg, {
    input: a.input,
    rate: ch.rate,
    outDir,
    baseName: a.clip.name,
    container: ch.settings.container,
    segmentSeconds: ch.settings.segmentSeconds,
    startNumber: a.nextIndex,
    listFile: path.join(outDir, `.run-${a.runNo}.csv`),
    videoCodec: ch.settings.videoCodec,
    stallTimeoutMs: a.clip.startedAt === null ? Math.max(ch.settings.stallTimeoutMs, ch.settings.startTimeoutMs) : ch.settings.stallTimeoutMs,
    clock: ch.clock,
    clockAnchorMs: a.anchorMs ?? undefined,
    prerollDiscard: a.prerollFirst && a.runNo === 1,
  });
  a.run = run;
  const dropPreroll = () => {
    if (run.prerollFile) fs.promises.unlink(path.join(outDir, run.prerollFile)).catch(() => undefined);
  };
  run.on('end', dropPreroll);
  // 'recording' is reported at the first progress report after the first segment opened,
  // when the start estimate is known (see FfmpegRun.startEstimate); later reports refine it
  let reported = false;
  let fallback: NodeJS.Timeout | null = null;
  const report = () => {
    if (reported || run.firstFrameAt === null) return;
    reported = true;
    if (fallback) clearTimeout(fallback);
    onFirstFrame(ch, a, run, Math.min(run.firstFrameAt, run.startEstimate ?? Infinity));
  };
  run.on('first-frame', () => {
    dropPreroll();
    // after a pre-roll, the segment opens when its first keyframe arrives: no estimate needed
    if (run.prerollFile) ch.guard(report);
    else fallback = setTimeout(() => ch.guard(report), 1500);
  });
  run.on('progress', () =>
    ch.guard(() => {
      if (!reported) report();
      else refineStart(ch, a, run);
    }),
  );
  run.on('end', () => {
    if (fallback) clearTimeout(fallback);
  });
  run.on('segment-open', (seg: SegmentOpen) => ch.guard(() => onSegmentOpen(ch, a, run, seg)));
  run.on('end', (end: RunEnd) => ch.guard(() => onRunEnd(ch, a, run, end)));
  try {
    run.start();
    if (run.pid) ch.cat.addProcess(run.pid, a.clip.id, outDir);
  } catch (err) {
    ch.log.error(`ffmpeg could not start: ${errorText(err)}`);
  }
}

export function onFirstFrame(ch: ChannelContext, a: Active, run: FfmpegRun, at: number): void {
  if (ch.incoming === a && a.run === run) promote(ch, a, at);
  if (ch.active !== a || a.run !== run) return;
  a.backoff.reset();
  const gap = a.clip.gaps.find((g) => g.toMs === null);
  if (gap) gap.toMs = at;
  if (a.clip.startedAt === null) {
    a.clip.startedAt = at;
    a.clip.tcIn = ch.settings.tcMode === 'tod' ? timeOfDayTimecode(at, ch.rate) : framesToTimecode(0, ch.rate);
    adoptMainInPoint(ch, a);
    a.line = { ...a.line, startTime: at, inPoint: a.clip.tcIn };
  }
  a.clip.updatedAt = at;
  const wasInterrupted = a.line.status === 'interrupted';
  a.line = { ...a.line, status: 'recording', reason: null, updatedAt: at };
  ch.cat.transaction(() => {
    ch.persistClip(a.clip);
    ch.saveLine(a.line);
  });
  ch.writeSidecarSafe(a.clip);
  ch.emitEvent(lineEvent(ch, 'recording', a.line, { clip: a.clip, reason: wasInterrupted ? 'media is arriving again' : undefined }));
  ch.schedule();
}

/** A later progress report found an earlier first-frame time for this run: correct the clip's start. */
export function refineStart(ch: ChannelContext, a: Active, run: FfmpegRun): void {
  if (ch.active !== a || a.run !== run || run.startEstimate === null) return;
  if (a.clip.runs === a.runNo && a.runNo === 1 && a.clip.startedAt !== null && run.startEstimate < a.clip.startedAt) {
    const at = run.startEstimate;
    a.clip.startedAt = at;
    if (ch.settings.tcMode === 'tod') a.clip.tcIn = timeOfDayTimecode(at, ch.rate);
    a.line = { ...a.line, startTime: at, inPoint: a.clip.tcIn };
    ch.cat.transaction(() => {
      ch.persistClip(a.clip);
      ch.saveLine(a.line);
    });
  } else {
    const gap = a.clip.gaps[a.clip.gaps.length - 1];
    if (gap && gap.toMs !== null && a.runNo > 1 && run.startEstimate < gap.toMs && run.startEstimate >= gap.fromMs) {
      gap.toMs = run.startEstimate;
      ch.persistClip(a.clip);
    }
  }
}

export function onSegmentOpen(ch: ChannelContext, a: Active, run: FfmpegRun, seg: SegmentOpen): void {
  if (a.run !== run) return;
  const prev = a.openSegments[a.openSegments.length - 1];
  a.openSegments.push(seg);
  a.nextIndex = Math.max(a.nextIndex, seg.index + 1);
  const record: Segment = {
    index: seg.index,
    file: seg.file,
    run: a.runNo,
    startSec: null,
    endSec: null,
    frames: null,
    bytes: 0,
    sha256: null,
    complete: false,
    wallStart: seg.at,
  };
  a.clip.segments.push(record);
  ch.cat.putSegment(a.clip.id, record);
  if (prev) ch.enqueue(a, () => finishSegment(ch, a, run, prev.index, null));
}

/** Hash and time a closed segment; store it; rewrite the sidecar. */
export async function finishSegment(ch: ChannelContext, a: Active, run: FfmpegRun, index: number, lastFrames: number | null, complete = true): Promise<void> {
  const seg = a.clip.segments.find((s) => s.index === index);
  if (!seg) return;
  const file = path.join(insideRoot(ch.settings.storageRoot, a.clip.dir), seg.file);
  const listed = run.segmentList().find((l) => l.file === seg.file || path.basename(l.file) === seg.file);
  if (listed) {
    seg.startSec = listed.startSec;
    seg.endSec = listed.endSec;
  }
  let scanned: number | null = null;
  try {
    scanned = takeScan(seg, await scanSegment(file, a.clip.container === 'ts'));
  } catch (err) {
    ch.log.warn(`segment ${seg.file} could not be read: ${errorText(err)}`);
  }
  if (scanned !== null) seg.frames = scanned;
  else if (lastFrames !== null) seg.frames = lastFrames;
  else if (listed) seg.frames = Math.max(0, Math.round((listed.endSec - listed.startSec) * ch.rate.fps));
  else seg.frames = await countFramesWithFfmpeg(file, ch.ffmpeg);
  seg.complete = complete && seg.sha256 !== null;
  ch.cat.putSegment(a.clip.id, seg);
  ch.totals(a.clip);
  a.clip.updatedAt = ch.clock();
  ch.persistClip(a.clip);
  ch.writeSidecarSafe(a.clip);
}

/** After a run: the frames of its last segment, from ffmpeg's own count. */
export function lastSegmentFrames(ch: ChannelContext, a: Active, run: FfmpegRun, end: RunEnd): number | null {
  if (!end.clean || end.frames === null) return null;
  const last = a.openSegments[a.openSegments.length - 1];
  const list = run.segmentList();
  let before = 0;
  for (const s of a.openSegments) {
    if (s === last) break;
    const l = list.find((x) => path.basename(x.file) === s.file);
    if (!l) return null;
    before += Math.max(0, Math.round((l.endSec - l.startSec) * ch.rate.fps));
  }
  return Math.max(0, end.frames - before);
}

export function onRunEnd(ch: ChannelContext, a: Active, run: FfmpegRun, end: RunEnd): void {
  if (run.pid) ch.cat.removeProcess(run.pid, a.clip.id);
  const last = a.openSegments[a.openSegments.length - 1];
  if (last) {
    const frames = lastSegmentFrames(ch, a, run, end);
    const complete = end.clean || end.code === 0;
    ch.enqueue(a, () => finishSegment(ch, a, run, last.index, frames, complete));
  }
  if (a.run === run) a.run = null;
  if (!end.requested && !a.stopping && ch.incoming === a) {
    // the pre-roll of the next line broke: it takes the channel at its start instead, from a fresh ffmpeg
    ch.log.warn(
      `channel ${ch.settings.channel}: the pre-roll of ${lineName(a.line)} ended (${end.reason ?? 'ffmpeg ended'}); it starts at its start time instead`,
    );
    ch.noPreroll = a.line.id;
    ch.enqueue(a, () => cancelIncoming(ch));
    return;
  }
  if (end.requested || a.stopping || ch.active !== a) return;
  const now = ch.clock();
  const reason = end.reason ?? 'ffmpeg ended';
  if (reason === 'storage full' || reason.startsWith('permission denied')) {
    ch.enqueue(a, () => failActive(ch, a, `${reason} (${ch.settings.storageRoot})`));
    return;
  }
  if (a.clip.startedAt === null && now - a.armedAt >= ch.settings.startTimeoutMs) {
    ch.enqueue(a, () => failActive(ch, a, `no media from ${a.clip.source} within ${Math.round(ch.settings.startTimeoutMs / 1000)} s: ${reason}`));
    return;
  }
  if (a.clip.startedAt !== null && !a.clip.gaps.some((g) => g.toMs === null)) {
    const gap: Gap = { fromMs: now, toMs: null, reason, afterSegment: last ? last.index : null };
    a.clip.gaps.push(gap);
    a.line = { ...a.line, status: 'interrupted', reason, updatedAt: now };
    ch.cat.transaction(() => {
      ch.persistClip(a.clip);
      ch.saveLine(a.line);
    });
    ch.emitEvent(lineEvent(ch, 'interrupted', a.line, { clip: a.clip, reason }));
  }
  // jittered: channels that lost one camera together do not all knock at once
  const delay = a.backoff.next();
  ch.log.warn(`channel ${ch.settings.channel}: ${reason}; restarting ffmpeg in ${delay} ms`);
  a.restartTimer = setTimeout(() => ch.guard(() => startRun(ch, a)), delay);
}

export async function failActive(ch: ChannelContext, a: Active, reason: string): Promise<void> {
  if (ch.active !== a) return;
  a.stopping = true;
  if (a.restartTimer) clearTimeout(a.restartTimer);
  if (a.run) await a.run.kill();
  const now = ch.clock();
  a.clip.state = 'failed';
  a.clip.reason = reason;
  a.clip.stoppedAt = a.clip.startedAt === null ? null : now;
  ch.closeOpenGap(a.clip, now);
  ch.totals(a.clip);
  a.line = {
    ...a.line,
    status: 'failed',
    reason,
    stopTime: a.clip.stoppedAt,
    outPoint: a.clip.tcOut,
    curPoint: null,
    duration: a.clip.startedAt === null ? a.line.duration : framesToTimecode(a.clip.frames, ch.rate),
    updatedAt: now,
  };
  ch.cat.transaction(() => {
    ch.persistClip(a.clip);
    ch.saveLine(a.line);
  });
  ch.writeSidecarSafe(a.clip);
  ch.active = null;
  ch.lastFailure = reason;
  ch.emitEvent(lineEvent(ch, 'failed', a.line, { clip: a.clip, reason }));
  ch.schedule();
}
