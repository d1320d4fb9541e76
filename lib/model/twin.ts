/**
 * Twin verification: a Backup=On clip on the main and its Aux twin on the
 * backup should hold the same frames. Compared when both are closed: frame
 * count, timecode in, segment cuts, and per segment the frames and the sha256
 * of the video elementary stream (independent of timestamps and muxing).
 */
import { Clip, TwinSummary } from './clip';

export function twinSummaryOf(clip: Clip): TwinSummary {
  return {
    name: clip.name,
    source: clip.source,
    frames: clip.frames,
    tcIn: clip.tcIn,
    tcOut: clip.tcOut,
    segments: clip.segments.map((s) => ({ index: s.index, frames: s.frames, esDigest: s.esDigest ?? null })),
  };
}

/**
 * What differs between the main clip and its Aux twin (empty: verified). The
 * last segment may differ by one frame (the stop lands on either side of a frame).
 */
export function compareTwins(main: TwinSummary, aux: TwinSummary): string[] {
  const d: string[] = [];
  if (main.name !== aux.name) d.push(`clip names differ: "${main.name}" on the main, "${aux.name}" on the backup`);
  if (main.tcIn !== aux.tcIn) d.push(`timecode in differs: ${main.tcIn} on the main, ${aux.tcIn} on the backup`);
  if (Math.abs(main.frames - aux.frames) > 1) {
    d.push(`frame counts differ: ${main.frames} on the main, ${aux.frames} on the backup`);
    if (main.tcOut !== aux.tcOut) d.push(`timecode out differs: ${main.tcOut} on the main, ${aux.tcOut} on the backup`);
  }
  if (main.segments.length !== aux.segments.length) {
    d.push(`segment counts differ: ${main.segments.length} on the main, ${aux.segments.length} on the backup`);
  }
  const n = Math.min(main.segments.length, aux.segments.length);
  for (let i = 0; i < n; i++) {
    const m = main.segments[i];
    const a = aux.segments[i];
    const last = i === n - 1;
    if (last) {
      if (m.frames !== null && a.frames !== null && Math.abs(m.frames - a.frames) > 1)
        d.push(`last segment: ${m.frames} frames on the main, ${a.frames} on the backup`);
      continue;
    }
    if (m.frames !== a.frames) d.push(`segment ${i + 1}: ${m.frames} frames on the main, ${a.frames} on the backup`);
    else if (m.esDigest && a.esDigest && m.esDigest !== a.esDigest) d.push(`segment ${i + 1}: the frames differ (stream checksums do not match)`);
  }
  return d;
}
