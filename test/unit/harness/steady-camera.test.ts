/**
 * The e2e tests' guard against GStreamer's test camera aborting mid-take:
 * a failed take is taken again only when the camera dropped during it.
 */
import { strict as assert } from 'node:assert';
import { onSteadyCamera } from '../../support/rtsp';

describe('onSteadyCamera (test support)', function () {
  it('takes a failed take again when the camera dropped during it, and returns the next good take', async function () {
    const camera = { drops: 0 };
    const seen: number[] = [];
    const r = await onSteadyCamera(camera, 3, async (attempt) => {
      seen.push(attempt);
      if (attempt === 1) {
        camera.drops++;
        throw new Error('frames differ');
      }
      return 'clip';
    });
    assert.equal(r, 'clip');
    assert.deepEqual(seen, [1, 2]);
  });

  it('throws a failure at once when the camera stayed up', async function () {
    const camera = { drops: 0 };
    let takes = 0;
    await assert.rejects(
      onSteadyCamera(camera, 3, async () => {
        takes++;
        throw new Error('frames differ');
      }),
      /frames differ/,
    );
    assert.equal(takes, 1);
  });

  it('gives up after the last take even if the camera dropped in each', async function () {
    const camera = { drops: 0 };
    let takes = 0;
    await assert.rejects(
      onSteadyCamera(camera, 3, async () => {
        takes++;
        camera.drops++;
        throw new Error(`take ${takes} failed`);
      }),
      /take 3 failed/,
    );
    assert.equal(takes, 3);
  });
});
