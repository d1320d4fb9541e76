/**
 * Timed lines: those missed while Node-RED was down, the timer for the next
 * timed start (or pre-roll) and planned stop, and what it does when it fires.
 */
import { errorText } from '../model/errors';
import { Line, plannedStop } from '../model/reclist';
import { ChannelContext, lineName, MIN_PREROLL_MS, STOP_POLL_MS } from './context';
import { continues, promote, stopActive, stopFrameOnDisk } from './cuts';
import { lineEvent } from './presentation';
import { startRecording } from './run';

type TimedLine = Line & { startTime: number };

/** A timed line waiting for its start (armed, no clip yet). */
function waitingTimed(l: Line): l is TimedLine {
  return l.status === 'armed' && l.clipId === null && l.start === 'time' && l.startTime !== null;
}

/** On open: timed lines whose start passed while Node-RED was down. */
export function catchUpTimedLines(ch: ChannelContext): void {
  const now = ch.clock();
  for (const line of ch.list.all()) {
    if (line.status !== 'armed' || line.clipId !== null || line.start !== 'time' || line.startTime === null) continue;
    if (line.startTime > now) continue;
    const stop = plannedStop(line, ch.settings.frameRate);
    if (stop !== null && stop <= now) {
      const l: Line = { ...line, status: 'failed', reason: 'missed: the recorder was not running during the planned time', updatedAt: now };
      ch.saveLine(l);
      ch.emitEvent(lineEvent(ch, 'failed', l, { reason: l.reason! }));
    }
  }
}

/**
 * When a timed line's ffmpeg is started: ahead by the pre-roll on a free channel, and
 * on a busy one too (back-to-back: it takes over at its first frame); at its start
 * when the line recording is stopping, a pre-roll is under way for another line, or
 * its own pre-roll failed or came too late.
 */
export function startDue(ch: ChannelContext, line: TimedLine): number {
  const a = ch.active;
  if (a && (a.stopping || ch.incoming || ch.noPreroll === line.id)) return line.startTime;
  return line.startTime - ch.settings.prerollMs;
}

export function schedule(ch: ChannelContext): void {
  if (ch.timer) clearTimeout(ch.timer);
  ch.timer = null;
  if (ch.closed) return;
  // the line recording stopped (or failed) while the next one was pre-rolling: that one has the channel now
  if (!ch.active && ch.incoming) promote(ch, ch.incoming, null);
  const now = ch.clock();
  let due = Infinity;
  const a = ch.active;
  for (const line of ch.list.all()) {
    if (waitingTimed(line)) due = Math.min(due, startDue(ch, line));
  }
  // a pre-rolled line whose first frame has not come takes the channel at its start + the tail
  const b = ch.incoming;
  if (b && b.anchorMs !== null) due = Math.min(due, b.anchorMs + ch.settings.stopTailMs);
  if (a && a.clip.startedAt !== null) {
    const stop = plannedStop(a.line, ch.settings.frameRate);
    // past the planned stop, a frame-exact stop looks for its last frame on disk every STOP_POLL_MS
    if (stop !== null) due = Math.min(due, stop > now ? stop : now + STOP_POLL_MS);
  }
  if (due === Infinity) return;
  const delay = Math.max(0, Math.min(due - now, 60000));
  ch.timer = setTimeout(() => ch.guard(() => onTimer(ch)), delay);
}

export async function onTimer(ch: ChannelContext): Promise<void> {
  ch.timer = null;
  const now = ch.clock();
  const a = ch.active;
  if (a && a.clip.startedAt !== null && !a.stopping) {
    const stop = plannedStop(a.line, ch.settings.frameRate);
    // a line the pre-rolling one continues is stopped by the hand-over, at that one's first frame
    const continued = ch.incoming !== null && continues(ch, ch.incoming, stop);
    if (stop !== null && !continued && stop <= now + 5 && (await stopFrameOnDisk(ch, a, stop, now))) {
      if (ch.active === a && !a.stopping) ch.emitEvent(await stopActive(ch, null, undefined, stop));
    }
  }
  const b = ch.incoming;
  if (b && b.anchorMs !== null && b.anchorMs + ch.settings.stopTailMs <= now + 5) promote(ch, b, b.anchorMs);
  const busy = ch.active !== null && !ch.active.stopping;
  const due = ch.list
    .all()
    .filter(waitingTimed)
    .filter((l) => startDue(ch, l) <= now + 5)
    .sort((x, y) => x.startTime - y.startTime)[0];
  if (due && busy && !ch.incoming && ch.noPreroll !== due.id && due.startTime > now + 5) {
    if (due.startTime - now >= MIN_PREROLL_MS) {
      // back-to-back: the next line's ffmpeg starts now, while this one records; it takes over at its first frame
      try {
        ch.emitEvent(await startRecording(ch, ch.list.byId(due.id)!, undefined, due.startTime, true));
      } catch (err) {
        ch.log.warn(
          `channel ${ch.settings.channel}: the pre-roll of ${lineName(due)} could not start (${errorText(err)}); it starts at its start time instead`,
        );
        ch.noPreroll = due.id;
      }
    } else {
      ch.noPreroll = due.id; // too late to pre-roll: it takes the channel at its start
    }
  } else if (due && (!busy || due.startTime <= now + 5)) {
    if (ch.active && !ch.active.stopping) {
      // a timed line takes the channel from the one still recording (back-to-back schedule);
      // one whose planned end has come (its tail still running) ends there, frame-exact
      const stop = ch.active.clip.startedAt === null ? null : plannedStop(ch.active.line, ch.settings.frameRate);
      if (stop !== null && stop <= now + 5) ch.emitEvent(await stopActive(ch, null, undefined, stop));
      else ch.emitEvent(await stopActive(ch, `stopped at the start of ${lineName(due)}`));
    }
    if (!ch.active) {
      try {
        ch.emitEvent(await startRecording(ch, ch.list.byId(due.id)!, undefined, due.startTime));
      } catch (err) {
        const l: Line = { ...ch.list.byId(due.id)!, status: 'failed', reason: errorText(err), updatedAt: ch.clock() };
        ch.saveLine(l);
        ch.lastFailure = l.reason;
        ch.emitEvent(lineEvent(ch, 'failed', l, { reason: l.reason! }));
      }
    }
  }
  ch.schedule();
}
