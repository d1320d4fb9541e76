/**
 * The twin check of an Aux line: its in point taken from the main clip, and
 * its closed clip compared with the main's (on the backup), or the backup's
 * verdict kept (on the main).
 */
import { Clip, TwinCheck, TwinSummary } from '../model/clip';
import { compareTwins, twinSummaryOf } from '../model/twin';
import { Line } from '../model/reclist';
import { timecodeToFrames } from '../model/timecode';
import type { Active, ChannelContext } from './context';
import { lineEvent } from './presentation';
import { ChannelEvent } from './types';

/**
 * An Aux twin begins at the same frame as its main clip, but each server reads
 * the time of that frame off its own clock, and near a frame boundary the two
 * readings can fall on neighbouring frames. The main's timecode in is the
 * reference: taken when the two are within two frames of each other.
 */
export function adoptMainInPoint(ch: ChannelContext, a: Active): boolean {
  const main = a.mainInPoint;
  const own = a.clip.tcIn;
  if (!main || !own || main === own || ch.settings.tcMode !== 'tod') return false;
  let d: number;
  try {
    d = Math.abs(timecodeToFrames(main, ch.rate) - timecodeToFrames(own, ch.rate));
  } catch {
    return false;
  }
  if (d > 2) return false;
  a.clip.tcIn = main;
  ch.totals(a.clip);
  a.line = { ...a.line, inPoint: main };
  ch.saveLine(a.line);
  return true;
}

/** Compare a closed Aux clip with its main clip; keep the verdict in the clip and the catalogue; tell the main ('twin'). */
export function verifyTwin(
  ch: ChannelContext,
  clip: Clip,
  main: TwinSummary,
  origin: { server: string; channel: number; lineId: string },
): ChannelEvent | null {
  // a test pattern is generated on each server: its twins cannot hold the same frames
  const generated = main.source === 'test pattern' || clip.source === 'test pattern';
  const differences = generated ? [] : compareTwins(main, twinSummaryOf(clip));
  const check: TwinCheck = {
    state: generated ? 'skipped' : differences.length ? 'mismatch' : 'verified',
    at: ch.clock(),
    differences,
    mainServer: origin.server,
    mainClip: main.name,
    auxServer: ch.settings.serverId,
    auxClip: clip.name,
  };
  clip.twin = check;
  ch.persistClip(clip);
  ch.writeSidecarSafe(clip);
  const line = ch.list.byId(clip.lineId);
  ch.emitTwin(check, origin);
  if (check.state === 'skipped') {
    ch.log.info(`twin check of clip ${clip.name} skipped: each server generates its own test pattern`);
    return null;
  }
  return lineEvent(ch, check.state, line ?? ({ id: clip.lineId, n: 0, title: clip.title } as Line), {
    clip,
    reason: differences.length ? differences.join('; ') : `identical to ${origin.server}'s clip`,
  });
}

/** On the main: the backup's verdict on the twin of one of our Backup=On lines. */
export function recordTwinResult(ch: ChannelContext, lineId: string, check: TwinCheck): ChannelEvent | null {
  const line = ch.list.byId(lineId);
  if (!line || !line.clipId) return null;
  const clip = ch.cat.clip(line.clipId);
  if (!clip) return null;
  if (clip.twin && clip.twin.at >= check.at) return null; // already known
  clip.twin = check;
  ch.persistClip(clip);
  ch.writeSidecarSafe(clip);
  if (check.state === 'skipped') return null;
  return lineEvent(ch, check.state, line, {
    clip,
    reason: check.differences.length ? check.differences.join('; ') : `identical to the Aux clip on ${check.auxServer}`,
  });
}
