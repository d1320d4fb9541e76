/**
 * The ffmpeg from @ffmpeg-installer/ffmpeg (a 2018 static 4.x build, used when
 * the system has no ffmpeg, e.g. for `npm start` on a bare machine) records the
 * test pattern and an RTSP stream as well as Debian's ffmpeg 5 does: its option
 * names differ (-stimeout), and its log and progress lines must still be read.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { openCatalogue, Catalogue } from '../../lib/store/catalogue';
import { locateFfmpeg, probeFfmpeg } from '../../lib/media/ffmpeg';
import { RecorderChannel } from '../../lib/recorder/channel';
import { ChannelEvent } from '../../lib/recorder/types';
import { InputSpec } from '../../lib/media/ffmpeg';
import { concatDuration, concatFrameCount } from '../support/media';
import { sleep, tmpDir } from '../support/nr';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const BUNDLED: string = require('@ffmpeg-installer/ffmpeg').path;

describe('recorder with the bundled ffmpeg (@ffmpeg-installer)', function () {
  this.timeout(90000);
  let root: string;
  let cat: Catalogue;
  let rtsp: RtspServerHandle | null = null;

  beforeEach(function () {
    root = tmpDir('bundled');
    cat = openCatalogue(path.join(root, 'cat.sqlite'));
  });
  afterEach(async function () {
    cat.release();
    if (rtsp) await rtsp.stop();
    rtsp = null;
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('is found when the PATH has no ffmpeg', function () {
    const saved = process.env.PATH;
    const forced = process.env.TWINREC_FFMPEG;
    try {
      process.env.PATH = '/nonexistent';
      delete process.env.TWINREC_FFMPEG;
      assert.equal(locateFfmpeg(), BUNDLED);
    } finally {
      process.env.PATH = saved;
      if (forced !== undefined) process.env.TWINREC_FFMPEG = forced;
    }
    const info = probeFfmpeg(BUNDLED);
    assert.equal(info.rtspTimeoutOption, '-stimeout', 'the 4.x build names the RTSP socket timeout -stimeout');
    assert.equal(info.hasLibx264, true);
  });

  async function record(input: InputSpec, ms: number) {
    const info = probeFfmpeg(BUNDLED);
    const events: ChannelEvent[] = [];
    const ch = new RecorderChannel(
      {
        serverId: 'main-1',
        group: 'g',
        channel: 1,
        channelName: 'A',
        frameRate: '25',
        tcMode: 'zero',
        storageRoot: path.join(root, 'store'),
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        source: { label: 'src', resolve: async () => input },
        backup: null,
      },
      {
        catalogue: cat,
        ffmpeg: info,
        log: { info: () => undefined, warn: () => undefined, error: (m) => events.push({ event: 'failed', reason: m } as ChannelEvent) },
      },
    );
    ch.on('event', (e: ChannelEvent) => events.push(e));
    await ch.open();
    await ch.execute({ command: 'add', line: { id: 'b', title: 'Bundled' } });
    await ch.execute({ command: 'start', line: { id: 'b' } });
    for (let i = 0; i < 200 && !events.some((e) => e.event === 'recording'); i++) await sleep(50);
    assert.ok(
      events.some((e) => e.event === 'recording'),
      `recording with the bundled ffmpeg: ${JSON.stringify(events)}`,
    );
    await sleep(ms);
    const [stopped] = await ch.execute({ command: 'stop' });
    await ch.close(false);
    assert.equal(stopped.event, 'stopped');
    const clip = stopped.clip!;
    const files = clip.segments.map((s) => path.join(root, 'store', clip.dir, s.file));
    const frames = await concatFrameCount(files);
    const duration = await concatDuration(files);
    assert.equal(frames, clip.frames, `ffprobe ${frames} frames, sidecar ${clip.frames}`);
    assert.ok(
      Math.abs(duration * 1000 - (clip.stoppedAt! - clip.startedAt!)) <= 80,
      `media ${duration} s vs stop-start ${clip.stoppedAt! - clip.startedAt!} ms`,
    );
    assert.ok(clip.segments.every((s) => /^[0-9a-f]{64}$/.test(s.sha256 ?? '')));
  }

  it('records the test pattern', async function () {
    await record({ kind: 'testpattern' }, 3000);
  });

  it('records an RTSP stream in stream copy', async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    await record({ kind: 'url', url: rtsp.url, timeoutMs: 5000 }, 4000);
  });
});
