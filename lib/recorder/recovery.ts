/**
 * Suspend and recovery: a recording suspended when the node restarts and
 * resumed in the same clip, a clip cut by a crash closed as interrupted, and
 * ffmpeg processes a crash left behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Clip, Segment } from '../model/clip';
import { errorText } from '../model/errors';
import { countFramesWithFfmpeg, parseSegmentList } from '../media/ffmpeg';
import { Line, plannedStop } from '../model/reclist';
import { scanSegment } from '../media/mpegts';
import { insideRoot } from '../store/clip-files';
import { framesToMs, framesToTimecode, timeOfDayTimecode } from '../model/timecode';
import { Active, ChannelContext, lineName, takeScan } from './context';
import { lineEvent } from './presentation';
import { failActive, inputFor, startRun } from './run';
import { Backoff } from '../model/backoff';

export async function suspendActive(ch: ChannelContext): Promise<void> {
  const a = ch.active!;
  const at = ch.clock();
  a.stopping = true;
  if (a.restartTimer) clearTimeout(a.restartTimer);
  if (a.run) await a.run.stop();
  await a.chain;
  ch.active = null;
  if (a.clip.startedAt === null) {
    // nothing recorded yet: leave the line as it was before the start
    a.clip.state = 'failed';
    a.clip.reason = 'recorder restarted before any media was recorded';
    a.line = { ...a.line, status: a.line.start === 'time' ? 'armed' : 'ready', clipId: null, updatedAt: at };
  } else {
    a.clip.state = 'suspended';
    if (!a.clip.gaps.some((g) => g.toMs === null)) {
      const lastSeg = a.clip.segments[a.clip.segments.length - 1];
      a.clip.gaps.push({ fromMs: at, toMs: null, reason: 'recorder restarted (redeploy or Node-RED restart)', afterSegment: lastSeg ? lastSeg.index : null });
    }
  }
  a.clip.updatedAt = at;
  ch.cat.transaction(() => {
    ch.persistClip(a.clip);
    ch.saveLine(a.line);
  });
  ch.writeSidecarSafe(a.clip);
}

export function resumeSuspended(ch: ChannelContext, clip: Clip, line: Line): void {
  const stopAt = plannedStop(line, ch.settings.frameRate);
  const now = ch.clock();
  if (stopAt !== null && stopAt <= now) {
    // its planned end passed while we were away: close it at the suspension
    const gap = clip.gaps.find((g) => g.toMs === null);
    const at = gap ? gap.fromMs : clip.updatedAt;
    if (gap) gap.toMs = at;
    ch.totals(clip);
    clip.state = 'closed';
    clip.stoppedAt = at;
    const l: Line = {
      ...line,
      status: 'stopped',
      stopTime: at,
      outPoint: clip.tcOut,
      duration: framesToTimecode(clip.frames, ch.rate),
      curPoint: null,
      updatedAt: now,
    };
    ch.cat.transaction(() => {
      ch.persistClip(clip);
      ch.saveLine(l);
    });
    ch.writeSidecarSafe(clip);
    ch.emitEvent(lineEvent(ch, 'stopped', l, { clip, reason: 'planned stop passed while the recorder was restarting' }));
    return;
  }
  clip.state = 'recording';
  const a: Active = {
    line: { ...line, status: 'interrupted', reason: 'resuming after a restart', updatedAt: now },
    clip,
    run: null,
    runNo: clip.runs,
    nextIndex: clip.segments.reduce((m, s) => Math.max(m, s.index + 1), 0),
    openSegments: [],
    restartTimer: null,
    backoff: new Backoff(ch.settings.restartMinMs, ch.settings.restartMaxMs),
    armedAt: now,
    stopping: false,
    chain: Promise.resolve(),
    input: null,
    anchorMs: null,
    prerollFirst: false,
    mainInPoint: null,
    twinPending: null,
    followers: new Map(),
    mainStartedAt: null,
  };
  ch.active = a;
  ch.persistClip(clip);
  ch.saveLine(a.line);
  ch.log.info(`channel ${ch.settings.channel}: resuming ${lineName(line)} in clip ${clip.name}`);
  inputFor(ch, line)
    .then((input) => {
      if (ch.active !== a || ch.closed) return;
      if (input.kind === 'testpattern' && ch.settings.tcMode === 'tod') input = { ...input, tcStart: timeOfDayTimecode(ch.clock(), ch.rate) };
      a.input = input;
      startRun(ch, a);
    })
    .catch((err) => ch.guard(() => failActive(ch, a, `cannot resume: ${errorText(err)}`)));
}

/** A clip whose recording was cut by a crash: hash what is on disk and close it as interrupted. */
export async function recoverInterrupted(ch: ChannelContext, clip: Clip, line: Line | undefined): Promise<void> {
  const dir = insideRoot(ch.settings.storageRoot, clip.dir);
  const listed = new Map<string, { startSec: number; endSec: number }>();
  let files: string[] = [];
  try {
    files = fs.readdirSync(dir);
  } catch {
    files = [];
  }
  for (const f of files.filter((f) => /^\.run-\d+\.csv$/.test(f))) {
    for (const e of parseSegmentList(fs.readFileSync(path.join(dir, f), 'utf8'))) listed.set(path.basename(e.file), e);
  }
  const escaped = clip.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const segRe = new RegExp(`^${escaped}_(\\d+)\\.[a-z0-9]+$`);
  const known = new Map(clip.segments.map((s) => [s.file, s]));
  const onDisk = files.filter((f) => segRe.test(f)).sort();
  for (const f of onDisk) {
    const index = Number(segRe.exec(f)![1]);
    const seg: Segment = known.get(f) ?? {
      index,
      file: f,
      run: clip.runs,
      startSec: null,
      endSec: null,
      frames: null,
      bytes: 0,
      sha256: null,
      complete: false,
      wallStart: null,
    };
    const l = listed.get(f);
    let scanned: number | null = null;
    try {
      scanned = takeScan(seg, await scanSegment(path.join(dir, f), clip.container === 'ts'));
    } catch {
      /* unreadable: leave unhashed */
    }
    if (l) {
      seg.startSec = l.startSec;
      seg.endSec = l.endSec;
      seg.complete = true;
    } else if (!seg.complete) {
      seg.complete = false;
    }
    if (scanned !== null) seg.frames = scanned;
    else if (l) seg.frames = Math.max(0, Math.round((l.endSec - l.startSec) * ch.rate.fps));
    else seg.frames = await countFramesWithFfmpeg(path.join(dir, f), ch.ffmpeg);
    known.set(f, seg);
  }
  clip.segments = [...known.values()].filter((s) => onDisk.includes(s.file)).sort((x, y) => x.index - y.index);
  ch.totals(clip);
  const lastSeg = clip.segments[clip.segments.length - 1];
  const reason = clip.state === 'suspended' ? 'its rec-list line is gone' : 'Node-RED stopped unexpectedly while recording';
  const endGuess = lastSeg?.wallStart != null ? lastSeg.wallStart + framesToMs(lastSeg.frames ?? 0, ch.rate) : clip.updatedAt;
  ch.closeOpenGap(clip, endGuess);
  clip.state = 'interrupted';
  clip.reason = reason;
  clip.stoppedAt = clip.startedAt === null ? null : Math.round(endGuess);
  clip.updatedAt = ch.clock();
  ch.cat.transaction(() => {
    for (const s of clip.segments) ch.cat.putSegment(clip.id, s);
    ch.persistClip(clip);
  });
  ch.writeSidecarSafe(clip);
  if (line) {
    const l: Line = {
      ...line,
      status: 'interrupted',
      reason,
      stopTime: clip.stoppedAt,
      outPoint: clip.tcOut,
      curPoint: null,
      duration: framesToTimecode(clip.frames, ch.rate),
      updatedAt: ch.clock(),
    };
    ch.saveLine(l);
    ch.emitEvent(lineEvent(ch, 'interrupted', l, { clip, reason }));
  }
}

/** ffmpeg processes a crashed Node-RED left behind (if the reaper could not end them). */
export function killStaleProcesses(ch: ChannelContext): void {
  for (const p of ch.cat.processes()) {
    const clip = ch.cat.clip(p.clipId);
    if (clip && (clip.serverId !== ch.settings.serverId || clip.channel !== ch.settings.channel)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
      if (cmdline.includes(p.marker)) {
        process.kill(p.pid, 'SIGKILL');
        ch.log.warn(`killed ffmpeg ${p.pid} left over from before a crash`);
      }
    } catch {
      /* gone already */
    }
    ch.cat.removeProcess(p.pid, p.clipId);
  }
}
