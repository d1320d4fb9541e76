/**
 * Where recordings end: the back-to-back hand-over (the pre-rolled next line
 * takes the channel at its first frame and the line before is cut there, by
 * content where it can be), frame-exact planned stops, and the stop itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Clip, Segment } from '../model/clip';
import { errorText } from '../model/errors';
import { plannedStop } from '../model/reclist';
import { scanSegment, truncateTsAfterFrames, TsFileFollower, videoFrameDigests } from '../media/mpegts';
import { insideRoot } from '../store/clip-files';
import { addFrames, framesToMs, framesToTimecode, msToFrames, timecodeToFrames, timeOfDayTimecode } from '../model/timecode';
import { HANDOVER_WINDOW_FRAMES, handoverKeep } from './handover-cut';
import { Active, ChannelContext, lineName, STOP_POLL_MS, takeScan } from './context';
import { verifyTwin } from './aux-twin';
import { lineEvent } from './presentation';
import { ChannelEvent } from './types';

/** A clip's segments in recording order. */
function inOrder(segments: Segment[]): Segment[] {
  return [...segments].sort((x, y) => x.index - y.index);
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The pre-rolled next line takes the channel: at its first frame (at), or at
 * its start + stopTailMs when no frame came. The line recording until then is
 * cut at that instant (handOver); one stopping already is left to its stop.
 */
export function promote(ch: ChannelContext, b: Active, at: number | null): void {
  if (ch.incoming !== b) return;
  ch.incoming = null;
  const a = ch.active;
  ch.active = b;
  if (a && !a.stopping) handOver(ch, a, at ?? b.anchorMs ?? ch.clock(), b);
}

/**
 * Stop a line that handed the channel over at `at`: it records on until the frame
 * at `at` is on disk (or stopTailMs), then is cut there, frame-exact where it can
 * be: at the next clip's first frame when it is found in this clip's tail
 * (cutByContent), else by the clocks. A planned stop of its own that comes first
 * is kept, unless the next line continues this one (continues): then nothing
 * may fall between them, and it records on to the next one's first frame.
 */
export function handOver(ch: ChannelContext, a: Active, at: number, b: Active): void {
  const next = b.line;
  a.stopping = true;
  if (a.restartTimer) clearTimeout(a.restartTimer);
  a.restartTimer = null;
  const own = a.clip.startedAt === null ? null : plannedStop(a.line, ch.settings.frameRate);
  const stopAt = own !== null && own <= at && !continues(ch, b, own) ? own : at;
  const byInstant = stopAt !== own;
  const reason = byInstant ? `stopped at the start of ${lineName(next)}` : null;
  const done = (async () => {
    // the whole window cutByContent looks in is recorded past the clocks' cut before the stop: that cut was
    // measured up to 7 frames off under load (a pre-rolled line's start is when its first segment was noticed)
    const extra = byInstant ? HANDOVER_WINDOW_FRAMES : 0;
    while (!(await stopFrameOnDisk(ch, a, stopAt, ch.clock(), byInstant, extra))) await pause(STOP_POLL_MS);
    ch.emitEvent(await stopActive(ch, reason, undefined, stopAt, a, byInstant ? b : undefined));
  })()
    .catch((err) => ch.log.error(`channel ${ch.settings.channel}: stopping ${lineName(a.line)} at the start of ${lineName(next)} failed: ${errorText(err)}`))
    .finally(() => ch.handovers.delete(a));
  ch.handovers.set(a, done);
}

/**
 * Whether the pre-rolling line `b` continues a line planned to stop at `own`:
 * it is to start at that instant (a frame later at most) or before. A stream
 * copy begins at a keyframe, up to a keyframe interval after the start time;
 * the line before then records on to that frame rather than stop at its plan
 * and leave the frames between in neither clip.
 */
export function continues(ch: ChannelContext, b: Active, own: number | null): boolean {
  return own !== null && b.anchorMs !== null && b.anchorMs <= own + framesToMs(1, ch.rate);
}

/** The line that handed the channel over and is stopping, if `lineId` is one. */
export function handingOver(ch: ChannelContext, lineId: string): Active | undefined {
  for (const a of ch.handovers.keys()) if (a.line.id === lineId) return a;
  return undefined;
}

/** The pre-rolling next line, if `lineId` is it. */
export function isIncoming(ch: ChannelContext, lineId: string): Active | null {
  return ch.incoming && ch.incoming.line.id === lineId ? ch.incoming : null;
}

/** Give up the pre-roll of the next line: its ffmpeg is stopped, its empty clip closed as failed, the line armed as before. */
export async function cancelIncoming(ch: ChannelContext): Promise<void> {
  const b = ch.incoming;
  if (!b) return;
  ch.incoming = null;
  b.stopping = true;
  if (b.restartTimer) clearTimeout(b.restartTimer);
  b.restartTimer = null;
  if (b.run) await b.run.kill();
  await b.chain;
  const now = ch.clock();
  b.clip.state = 'failed';
  b.clip.reason = 'pre-roll given up before the line started';
  b.clip.updatedAt = now;
  ch.persistClip(b.clip);
  ch.writeSidecarSafe(b.clip);
  const cur = ch.list.byId(b.line.id);
  if (cur && cur.clipId === b.clip.id) ch.saveLine({ ...cur, status: 'armed', clipId: null, updatedAt: now });
  ch.schedule();
}

/**
 * Stop a recording and close its clip (the active one unless `target`). With
 * `plannedAt`, it is cut frame-exact at that instant where it can be; `next`:
 * it was handed over to that line at `plannedAt`.
 */
export async function stopActive(
  ch: ChannelContext,
  reason: string | null,
  requestId?: string,
  plannedAt?: number,
  target?: Active,
  next?: Active,
): Promise<ChannelEvent> {
  const a = target ?? ch.active!;
  const byInstant = next !== undefined;
  let stopAt = ch.clock();
  a.stopping = true;
  if (a.restartTimer) clearTimeout(a.restartTimer);
  a.restartTimer = null;
  if (a.run) await a.run.stop();
  await a.chain;
  if (plannedAt !== undefined) {
    let keep = exactStopFrames(ch, a, plannedAt, byInstant);
    if (keep !== null && next) {
      const found = await cutByContent(ch, a, next, keep);
      if (found !== null) {
        keep = found;
        plannedAt = alignNext(ch, a, next, found);
      }
    }
    if (keep !== null && (await cutClip(ch, a.clip, keep))) stopAt = plannedAt;
  }
  if (ch.active === a) ch.active = null;
  if (ch.incoming === a) ch.incoming = null;
  ch.closeOpenGap(a.clip, stopAt);
  ch.totals(a.clip);
  const recorded = a.clip.startedAt !== null && a.clip.frames > 0;
  a.clip.state = recorded ? 'closed' : 'failed';
  a.clip.stoppedAt = recorded ? stopAt : null;
  a.clip.reason = recorded ? reason : 'stopped before any media was recorded';
  a.clip.updatedAt = stopAt;
  a.line = recorded
    ? {
        ...a.line,
        status: 'stopped',
        stopTime: stopAt,
        outPoint: a.clip.tcOut,
        curPoint: null,
        duration: framesToTimecode(a.clip.frames, ch.rate),
        reason,
        updatedAt: stopAt,
      }
    : { ...a.line, status: 'failed', reason: a.clip.reason, updatedAt: stopAt };
  ch.cat.transaction(() => {
    ch.persistClip(a.clip);
    ch.saveLine(a.line);
  });
  ch.writeSidecarSafe(a.clip);
  const ev = lineEvent(ch, recorded ? 'stopped' : 'failed', a.line, { clip: a.clip, requestId, reason: a.line.reason ?? undefined });
  ch.schedule();
  if (a.twinPending) {
    const pending = a.twinPending;
    const clip = a.clip;
    // after this stop's own event has gone out
    setImmediate(() =>
      ch.guard(() => {
        const v = verifyTwin(ch, clip, pending.summary, pending.main);
        if (v) ch.emitEvent(v);
      }),
    );
  }
  return ev;
}

/**
 * Where the clip of `a` ends when `b` took the channel: the frames before b's
 * first frame, found in a's tail by content (handoverKeep), or null when it is
 * not found there (another encoding, a source that differs per client, files
 * gone). `a` has stopped; b records on, so its first segment is read while open.
 */
export async function cutByContent(ch: ChannelContext, a: Active, b: Active, clockKeep: number): Promise<number | null> {
  try {
    const first = inOrder(b.clip.segments)[0];
    if (!first || b.clip.container !== 'ts') return null;
    const bFile = path.join(insideRoot(ch.settings.storageRoot, b.clip.dir), first.file);
    const deadline = ch.clock() + ch.settings.stopTailMs;
    let head: string[] | null;
    // its first three frames, once written (the segment is still open)
    while ((head = await videoFrameDigests(bFile, first.complete)) !== null && head.length < 3 && !first.complete && ch.clock() < deadline) {
      await pause(STOP_POLL_MS);
    }
    if (head === null) return null;
    const aDir = insideRoot(ch.settings.storageRoot, a.clip.dir);
    const lo = clockKeep - HANDOVER_WINDOW_FRAMES;
    const hi = clockKeep + HANDOVER_WINDOW_FRAMES + 2;
    const tail: string[] = [];
    let tailStart: number | null = null;
    let at = 0;
    for (const seg of inOrder(a.clip.segments)) {
      if (seg.frames === null) return null;
      const end = at + seg.frames;
      if (end > lo && at <= hi) {
        const d = await videoFrameDigests(path.join(aDir, seg.file), true);
        if (d === null || d.length !== seg.frames) return null;
        if (tailStart === null) tailStart = at;
        tail.push(...d);
      }
      at = end;
    }
    if (tailStart === null) return null;
    return handoverKeep(tail, tailStart, head.slice(0, 3), clockKeep);
  } catch (err) {
    ch.log.warn(`channel ${ch.settings.channel}: the cut at the start of ${lineName(b.line)} is read off the clocks (${errorText(err)})`);
    return null;
  }
}

/**
 * After a cut by content: the next clip begins at frame `keep` of the one
 * before, so its start (and, by time of day, its timecode in) is taken from
 * there, and the one's out point is the other's in point. Returns that instant.
 * An Aux twin does the same from its own clip before, whose in point is its
 * main's: the two servers find the same frame, so they reach the same in point
 * (its main's corrected one, when it comes, is within two frames and taken).
 */
export function alignNext(ch: ChannelContext, a: Active, b: Active, keep: number): number {
  const at = Math.round(a.clip.startedAt! + framesToMs(keep, ch.rate));
  const c = b.clip;
  if (c.startedAt === null || c.runs !== 1 || c.gaps.length > 0 || c.state !== 'recording') return at;
  const tcIn = ch.settings.tcMode === 'tod' && a.clip.tcIn !== null ? addFrames(a.clip.tcIn, keep, ch.rate) : c.tcIn;
  if (at === c.startedAt && tcIn === c.tcIn) return at;
  c.startedAt = at;
  c.tcIn = tcIn;
  c.updatedAt = ch.clock();
  b.line = { ...b.line, startTime: at, inPoint: tcIn, updatedAt: c.updatedAt };
  ch.cat.transaction(() => {
    ch.persistClip(c);
    ch.saveLine(b.line);
  });
  ch.writeSidecarSafe(c);
  // told, so a Backup=On line's Aux twin takes the corrected in point (backup-link mirrors it)
  ch.emitEvent(lineEvent(ch, 'updated', b.line, { clip: c, reason: `in point taken from the cut of ${lineName(a.line)}` }));
  return at;
}

/**
 * The frames a clip stopped at `stopAt` holds, when its stop can be made
 * frame-exact: MPEG-TS, one unbroken run, and a tail to cut (stopTailMs).
 * A duration gives them directly; a stop time counts from the timecode in
 * (an Aux twin has the main's), or from the first frame without one.
 */
export function exactStopFrames(ch: ChannelContext, a: Active, stopAt: number, byInstant = false): number | null {
  const c = a.clip;
  if (ch.settings.stopTailMs <= 0 || c.container !== 'ts' || c.startedAt === null || c.runs !== 1 || c.gaps.length > 0) return null;
  let frames: number;
  if (!byInstant && a.line.stopTime === null && a.line.duration) {
    frames = timecodeToFrames(a.line.duration, ch.rate);
  } else if (ch.settings.tcMode === 'tod' && c.tcIn !== null) {
    const day = msToFrames(86400000, ch.rate);
    frames = (((timecodeToFrames(timeOfDayTimecode(stopAt, ch.rate), ch.rate) - timecodeToFrames(c.tcIn, ch.rate)) % day) + day) % day;
  } else {
    // an Aux twin counts from the main's first frame, as the main does (read off two clocks, they may differ by a frame)
    const main = a.mainStartedAt;
    const ref = main !== null && Math.abs(main - c.startedAt) <= 2 * framesToMs(1, ch.rate) ? main : c.startedAt;
    frames = msToFrames(stopAt - ref, ch.rate);
  }
  return frames > 0 ? frames : null;
}

/**
 * Whether a recording at its planned stop can be stopped now: the frame after
 * its last one is on disk (frame-exact stop), it cannot be cut frame-exact, or
 * it has waited stopTailMs for that frame.
 */
export async function stopFrameOnDisk(ch: ChannelContext, a: Active, stopAt: number, now: number, byInstant = false, extra = 0): Promise<boolean> {
  const keep = exactStopFrames(ch, a, stopAt, byInstant);
  if (keep === null || now >= stopAt + ch.settings.stopTailMs) return true;
  let frames = 0;
  for (const seg of a.clip.segments) {
    if (seg.frames !== null) {
      frames += seg.frames;
      continue;
    }
    let f = a.followers.get(seg.file);
    if (!f) a.followers.set(seg.file, (f = new TsFileFollower(path.join(insideRoot(ch.settings.storageRoot, a.clip.dir), seg.file))));
    frames += (await f.frames()) ?? 0;
  }
  return frames > keep + extra;
}

/**
 * Cut a closed recording to its first `keep` frames: the segment holding
 * frame `keep` is truncated after it, later segments are deleted. Returns
 * whether the clip now ends there (false: it holds no more than that, or a
 * segment could not be cut; then it is left as recorded).
 */
export async function cutClip(ch: ChannelContext, clip: Clip, keep: number): Promise<boolean> {
  if (clip.frames <= keep) return false;
  const dir = insideRoot(ch.settings.storageRoot, clip.dir);
  const segs = inOrder(clip.segments);
  let before = 0;
  const dropped: Segment[] = [];
  for (const seg of segs) {
    if (before >= keep) {
      dropped.push(seg);
      continue;
    }
    const frames = seg.frames ?? 0;
    if (before + frames > keep) {
      const file = path.join(dir, seg.file);
      try {
        if (!(await truncateTsAfterFrames(file, keep - before))) return false;
        seg.frames = takeScan(seg, await scanSegment(file, true)) ?? keep - before;
        if (seg.startSec !== null) seg.endSec = seg.startSec + framesToMs(seg.frames, ch.rate) / 1000;
      } catch (err) {
        ch.log.warn(`channel ${ch.settings.channel}: the tail of ${seg.file} after the planned stop could not be cut: ${errorText(err)}`);
        return false;
      }
      ch.cat.putSegment(clip.id, seg);
    }
    before += seg.frames ?? 0;
  }
  for (const seg of dropped) {
    try {
      fs.rmSync(path.join(dir, seg.file), { force: true });
    } catch (err) {
      ch.log.warn(`channel ${ch.settings.channel}: ${seg.file}, recorded after the planned stop, could not be deleted: ${errorText(err)}`);
    }
    ch.cat.deleteSegment(clip.id, seg.index);
  }
  clip.segments = clip.segments.filter((s) => !dropped.includes(s));
  ch.totals(clip);
  return true;
}
