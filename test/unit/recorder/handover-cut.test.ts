/**
 * The back-to-back cut by content (lib/recorder/handover-cut.ts): where the next clip's
 * first frame is in the tail of the clip before, from frame digests.
 */
import { strict as assert } from 'node:assert';
import { HANDOVER_WINDOW_FRAMES, handoverKeep } from '../../../lib/recorder/handover-cut';

/** Digests of frames `from`..`to` - 1 of a source whose frames all differ. */
const frames = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `f${from + i}`);

describe('back-to-back cut by content (handoverKeep)', function () {
  it("finds the next clip's first frame in the tail and keeps the frames before it, whichever side of it the clocks cut", () => {
    const tail = frames(100, 130); // frames 100..129 of the clip before
    const next = frames(117, 120);
    for (const clock of [110, 116, 117, 118, 125]) assert.equal(handoverKeep(tail, 100, next, clock), 117, `clock ${clock}`);
  });

  it('a first frame that differs (data for one client only): its second and third frames, one later, give the cut', () => {
    const tail = frames(0, 40);
    assert.equal(handoverKeep(tail, 0, ['keyframe with other bytes', 'f21', 'f22'], 20), 21 - 1);
    // with only two frames of the next clip, a differing first frame is not enough
    assert.equal(handoverKeep(tail, 0, ['keyframe with other bytes', 'f21'], 20), null);
  });

  it('the first frame as the last one of the tail is a match (the clip before stopped right after it)', () => {
    assert.equal(handoverKeep(frames(0, 21), 0, frames(20, 23), 19), 20);
  });

  it("a still picture repeats its frames: the match nearest the clocks' cut", () => {
    const tail = ['x', 'y', 'x', 'y', 'x', 'y', 'x', 'y'];
    assert.equal(handoverKeep(tail, 50, ['x', 'y', 'x'], 54), 54);
    assert.equal(handoverKeep(tail, 50, ['x', 'y', 'x'], 53), 52, 'a tie keeps the first found');
    assert.equal(handoverKeep(tail, 50, ['y', 'x', 'y'], 56), 55);
  });

  it('no answer when the content does not tell: not in the tail, too far from the clocks, too little of the next clip, or nothing kept', () => {
    assert.equal(handoverKeep(frames(0, 30), 0, ['a', 'b', 'c'], 20), null, 'another encoding');
    const far = 20 + HANDOVER_WINDOW_FRAMES + 1;
    assert.equal(handoverKeep(frames(0, 60), 0, frames(far, far + 3), 20), null, 'further than the window');
    assert.equal(
      handoverKeep(frames(0, 60), 0, frames(20 + HANDOVER_WINDOW_FRAMES, 23 + HANDOVER_WINDOW_FRAMES), 20),
      20 + HANDOVER_WINDOW_FRAMES,
      'at the window',
    );
    assert.equal(handoverKeep(frames(0, 30), 0, ['f5'], 5), null, 'one frame of the next clip');
    assert.equal(handoverKeep(frames(0, 30), 0, [], 5), null);
    assert.equal(handoverKeep(frames(0, 30), 0, frames(0, 3), 2), null, 'the clip before would keep no frame');
  });
});
