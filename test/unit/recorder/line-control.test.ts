/** The typed calls of a recorder channel (LineControl) are its commands: the same events, the same refusals. */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { Catalogue, openCatalogue } from '../../../lib/store/catalogue';
import { ffmpegInfo } from '../../../lib/media/ffmpeg';
import { CommandError } from '../../../lib/model/errors';
import { RecorderChannel } from '../../../lib/recorder/channel';
import { ChannelEvent } from '../../../lib/recorder/types';
import { tmpDir } from '../../support/nr';

describe('recorder channel: the commands as calls (LineControl)', function () {
  this.timeout(30000);
  let dir: string;
  let cat: Catalogue;
  let ch: RecorderChannel;
  let commanded: ChannelEvent[][];

  beforeEach(async function () {
    dir = tmpDir('line-control');
    cat = openCatalogue(path.join(dir, 'catalogue.sqlite'));
    ch = new RecorderChannel(
      {
        serverId: 'main-1',
        group: 'news',
        channel: 1,
        channelName: 'Ch 1',
        frameRate: '25',
        tcMode: 'zero',
        storageRoot: path.join(dir, 'store'),
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        source: { label: 'test pattern', resolve: async () => ({ kind: 'testpattern' }) },
        backup: null,
      },
      { catalogue: cat, ffmpeg: ffmpegInfo(), log: { info: () => undefined, warn: () => undefined, error: () => undefined } },
    );
    await ch.open();
    commanded = [];
    ch.on('commanded', (evs: ChannelEvent[]) => commanded.push(evs));
  });
  afterEach(async function () {
    await ch.close(true);
    cat.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The refusal a call gives, to compare with the command's. */
  async function refusal(p: Promise<unknown>): Promise<{ message: string; code: string | undefined }> {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof CommandError, `a CommandError, not ${String(err)}`);
      return { message: err.message, code: (err as CommandError & { code?: string }).code };
    }
    throw new Error('not refused');
  }

  it('adds, updates, disarms and removes a line with the events of the commands, also emitted as commanded', async () => {
    const startTime = Date.now() + 3600000;
    const added = await ch.addLine({ id: 'a', title: 'Evening news', start: 'time', startTime });
    assert.deepEqual(
      added.map((e) => e.event),
      ['added', 'armed'],
    );
    const updated = await ch.updateLine({ id: 'a', title: 'Late news' });
    assert.deepEqual(
      updated.map((e) => [e.event, e.line?.title]),
      [['updated', 'Late news']],
    );
    const stopped = await ch.stopLine({ id: 'a' });
    assert.deepEqual(
      stopped.map((e) => [e.event, e.reason, e.line?.status]),
      [['updated', 'timed start cancelled', 'ready']],
    );
    const removed = await ch.removeLine({ n: 1 });
    assert.deepEqual(
      removed.map((e) => [e.event, e.line?.id]),
      [['removed', 'a']],
    );
    assert.deepEqual(commanded, [added, updated, stopped, removed]);
    assert.equal(ch.lines().length, 0);
  });

  it('refuses what the command refuses, with the same words, and changes nothing', async () => {
    const long = 'x'.repeat(201);
    assert.deepEqual(await refusal(ch.addLine({ title: long })), await refusal(ch.execute({ command: 'add', line: { title: long } })));
    assert.deepEqual(await refusal(ch.startLine({ id: 'nope' })), await refusal(ch.execute({ command: 'start', line: { id: 'nope' } })));
    assert.deepEqual(await refusal(ch.stopLine({ id: 'nope' })), await refusal(ch.execute({ command: 'stop', line: { id: 'nope' } })));
    assert.deepEqual(await refusal(ch.removeLine({ id: 'nope' })), await refusal(ch.execute({ command: 'remove', line: { id: 'nope' } })));
    assert.deepEqual(
      await refusal(ch.updateLine({ id: 'nope', title: 'T' })),
      await refusal(ch.execute({ command: 'update', line: { id: 'nope', title: 'T' } })),
    );
    assert.deepEqual(ch.lines(), []);
    assert.deepEqual(commanded, []);
  });
});
