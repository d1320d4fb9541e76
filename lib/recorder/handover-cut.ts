/**
 * Where a clip recorded back to back ends, by content: the line before and the
 * next line record the same source in two ffmpeg runs (stream copy), so the
 * next clip's first frame is also in the tail of the clip before. Found there,
 * it gives the cut to the frame, whatever the two clocks said (the next clip's
 * first frame is noticed tens of milliseconds after it arrived).
 */

/** How far from the clock's cut a match is believed, in frames. */
export const HANDOVER_WINDOW_FRAMES = 12;

/**
 * The number of frames the clip before keeps (the index in it of the next
 * clip's first frame), or null when the content does not tell.
 *
 * @param tail frame digests of the end of the clip before; tail[0] is its frame `tailStart`
 * @param next frame digests of the beginning of the next clip (two or more for a sure match)
 * @param clockKeep the cut read off the clocks
 *
 * A match is the next clip's first frame followed by its second, or (when the
 * first one differs: a keyframe may carry data for one client only) its second
 * and third frames one later. Of several matches (a still picture repeats its
 * frames), the one nearest the clock's cut; none further than `window`.
 */
export function handoverKeep(tail: string[], tailStart: number, next: string[], clockKeep: number, window = HANDOVER_WINDOW_FRAMES): number | null {
  if (next.length < 2) return null;
  let best: number | null = null;
  for (let i = 0; i < tail.length; i++) {
    const keep = tailStart + i;
    if (Math.abs(keep - clockKeep) > window) continue;
    const first = tail[i] === next[0] && (i + 1 >= tail.length || tail[i + 1] === next[1]);
    const later = next.length >= 3 && i + 2 < tail.length && tail[i + 1] === next[1] && tail[i + 2] === next[2];
    if (!first && !later) continue;
    if (best === null || Math.abs(keep - clockKeep) < Math.abs(best - clockKeep)) best = keep;
  }
  return best !== null && best > 0 ? best : null;
}
