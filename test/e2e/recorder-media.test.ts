/**
 * Real recordings checked with ffprobe: from GStreamer's RTSP server (stream
 * copy) and from the test pattern. The clip's duration matches stop minus start
 * within 2 frames, its frame count matches the sidecar, there is no hole; a
 * camera that dies mid-recording leaves a gap in the ledger and the recording
 * goes on in the same clip when it returns; an ONVIF camera is recorded through
 * the stream address it gives.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { concatDuration, concatFrameCount, countFrames, framemd5, maxFrameGapSec } from '../support/media';
import { Collector, helper, Msg, sleep, tmpDir } from '../support/nr';
import { startOnvifDevice } from '../support/onvif-device';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cameraNode = require('../../nodes/onvif-camera/onvif-camera');

helper.init(require.resolve('node-red'));

const FRAME_MS = 40;

function flow(rec: Record<string, unknown>, extra: object[] = []) {
  return [
    { id: 'f1', type: 'tab', label: 'media' },
    { id: 'srv', type: 'redundancy-server', serverId: 'main-1', group: 'studio', role: 'main', storageRoot: 'store' },
    {
      id: 'rec',
      type: 'recorder',
      z: 'f1',
      server: 'srv',
      channel: 1,
      channelName: 'Studio A',
      frameRate: '25',
      segmentSeconds: 2,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'tod',
      startTimeout: 15,
      stallTimeout: 4,
      wires: [['out']],
      ...rec,
    },
    { id: 'out', type: 'helper', z: 'f1' },
    ...extra,
  ];
}

describe('recorder media (real ffmpeg, real RTSP server, ffprobe)', function () {
  this.timeout(120000);
  let userDir: string;
  let rtsp: RtspServerHandle | null = null;
  let out: Collector;

  let rec: any;

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('media');
  });
  afterEach(async function () {
    await helper.unload();
    if (rtsp) await rtsp.stop();
    rtsp = null;
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function load(recCfg: Record<string, unknown>, extra: object[] = [], creds: object = {}) {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode, cameraNode], flow(recCfg, extra), creds);
    rec = helper.getNode('rec');
    out = new Collector(helper.getNode('out'));
  }

  async function recordFor(ms: number): Promise<Msg> {
    rec.receive({ payload: { command: 'add', line: { id: 'm', title: 'Media check', attributes: { k: 'v' } } } });
    await out.event('added');
    rec.receive({ payload: { command: 'start', line: { id: 'm' } } });
    await out.event('recording', 20000);
    await sleep(ms);
    rec.receive({ payload: { command: 'stop', line: { id: 'm' } } });
    return out.event('stopped', 20000);
  }

  async function checkClip(stopped: Msg) {
    const clip = stopped.payload.clip;
    const dir = path.join(userDir, 'store', clip.dir);
    const files = clip.segments.map((s: { file: string }) => path.join(dir, s.file));
    const sidecar = JSON.parse(fs.readFileSync(path.join(dir, 'clip.json'), 'utf8'));
    const duration = await concatDuration(files);
    const frames = await concatFrameCount(files);
    const wall = clip.stoppedAt - clip.startedAt;
    assert.ok(Math.abs(duration * 1000 - wall) <= 2 * FRAME_MS, `media ${Math.round(duration * 1000)} ms vs stop-start ${wall} ms: more than 2 frames apart`);
    assert.equal(frames, sidecar.frames, `ffprobe counts ${frames} frames, the sidecar ${sidecar.frames}`);
    for (const seg of sidecar.segments) assert.equal(await countFrames(path.join(dir, seg.file)), seg.frames, `frames of ${seg.file}`);
    const gap = await maxFrameGapSec(files);
    assert.ok(gap <= (2 * FRAME_MS) / 1000, `largest gap between frames ${gap} s`);
    assert.equal(sidecar.tcIn, stopped.payload.line.inPoint);
    assert.equal(sidecar.tcOut, stopped.payload.line.outPoint);
    return { clip, sidecar, dir, files };
  }

  it('records a live RTSP stream in stream copy: duration within 2 frames of stop-start, frame count as in the sidecar', async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    await load({ sourceType: 'url', url: rtsp.url });
    const stopped = await recordFor(5000);
    const { sidecar } = await checkClip(stopped);
    assert.ok(sidecar.frames >= 100, `${sidecar.frames} frames in about 5 s`);
    assert.equal(sidecar.gaps.length, 0);
  });

  it("back-to-back lines on a live camera (a timed line after a manual one, then one planned to start at the stop time of the one before): each clip's first picture is the one right after the last of the clip before, as a third recording of the camera shows", async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    const reference = {
      id: 'ref',
      type: 'recorder',
      z: 'f1',
      server: 'srv',
      channel: 2,
      channelName: 'Reference',
      frameRate: '25',
      sourceType: 'url',
      url: rtsp.url,
      segmentSeconds: 2,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'tod',
      startTimeout: 15,
      stallTimeout: 4,
      wires: [['outref']],
    };
    await load({ sourceType: 'url', url: rtsp.url }, [reference, { id: 'outref', type: 'helper', z: 'f1' }]);
    const ref = helper.getNode('ref');
    const outRef = new Collector(helper.getNode('outref'));
    ref.receive({ payload: { command: 'add', line: { id: 'r', title: 'Reference' } } });
    ref.receive({ payload: { command: 'start', line: { id: 'r' } } });
    await outRef.event('recording', 20000);
    rec.receive({ payload: { command: 'add', line: { id: 'a', title: 'First' } } });
    rec.receive({ payload: { command: 'start', line: { id: 'a' } } });
    await out.event('recording', 20000, (m) => m.payload.line.id === 'a');
    // the second line's stop is a time of day, the third starts then: the third's first keyframe comes up to a second later
    const T = Date.now() + 4000;
    rec.receive({ payload: { command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, stopTime: T + 3000 } } });
    rec.receive({ payload: { command: 'add', line: { id: 'c', title: 'Third', start: 'time', startTime: T + 3000, duration: '00:00:02:00' } } });
    const stopped: Msg[] = [];
    for (const id of ['a', 'b', 'c']) stopped.push(await out.event('stopped', 20000, (m) => m.payload.line.id === id));
    ref.receive({ payload: { command: 'stop', line: { id: 'r' } } });
    const stoppedRef = await outRef.event('stopped', 20000);

    // the packets as stored (stream copy): every recording of the shared stream holds the same bytes per frame,
    // but for a first keyframe, which may carry the parameter sets in-band for one client only
    const frames = async (clip: { dir: string; segments: { file: string }[] }) => {
      const all: string[] = [];
      for (const sg of clip.segments) all.push(...(await framemd5(path.join(userDir, 'store', clip.dir, sg.file))).map((f) => f.hash));
      return all;
    };
    const r = await frames(stoppedRef.payload.clip);
    const clips: string[][] = [];
    for (const st of stopped) clips.push(await frames(st.payload.clip));
    clips.forEach((c, i) => assert.equal(c.length, stopped[i].payload.clip.frames, `clip ${i + 1} holds the frames it says`));
    assert.equal(clips[2].length, 50, 'the third clip holds its 2 s');
    for (let i = 0; i < 3; i++) {
      const c = clips[i];
      const at = r.indexOf(c[1]) - 1; // where the clip begins in the reference (its second frame: see above)
      assert.ok(at > 0, `clip ${i + 1} is in the reference recording`);
      assert.equal(r.lastIndexOf(c[1]), at + 1, 'frames are unique (the camera overlays its running time)');
      assert.deepEqual(r.slice(at + 1, at + c.length), c.slice(1), `clip ${i + 1} is the camera's frames from there on, none missing`);
      if (i === 0) continue;
      const before = clips[i - 1];
      const lastBefore = r.indexOf(before[before.length - 1]);
      assert.equal(at, lastBefore + 1, `clip ${i + 1} begins ${at - lastBefore - 1} frame(s) after clip ${i} ends`);
      assert.equal(stopped[i - 1].payload.line.outPoint, stopped[i].payload.line.inPoint);
      assert.match(stopped[i - 1].payload.line.reason, new RegExp(`stopped at the start of line ${i + 1}`));
    }
  });

  it('records the test pattern: duration within 2 frames of stop-start, frame count as in the sidecar', async function () {
    await load({ sourceType: 'testpattern' });
    const stopped = await recordFor(4000);
    await checkClip(stopped);
  });

  it('keeps recording into the same clip when the camera dies and returns, with the gap in the ledger', async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    const port = rtsp.port;
    await load({ sourceType: 'url', url: rtsp.url });
    rec.receive({ payload: { command: 'add', line: { id: 'g', title: 'Gap' } } });
    rec.receive({ payload: { command: 'start', line: { id: 'g' } } });
    const first = await out.event('recording', 20000);
    await sleep(3000);
    rtsp.kill9();
    const interrupted = await out.event('interrupted', 20000);
    assert.equal(interrupted.payload.line.status, 'interrupted');
    assert.equal(interrupted.payload.clip.gaps.length, 1);
    await sleep(1500);
    rtsp = await startRtspServer({ port, fps: '25', gop: 25 });
    const again = await out.event('recording', 30000, (m) => m !== first);
    assert.equal(again.payload.clip.id, first.payload.clip.id, 'same clip');
    await sleep(3000);
    rec.receive({ payload: { command: 'stop' } });
    const stopped = await out.event('stopped', 20000);
    const clip = stopped.payload.clip;
    assert.equal(clip.gaps.length, 1);
    const gap = clip.gaps[0];
    assert.ok(gap.toMs > gap.fromMs, 'the gap closed when media returned');
    assert.match(gap.reason, /source/);
    assert.ok(clip.runs >= 2);
    const dir = path.join(userDir, 'store', clip.dir);
    const sidecar = JSON.parse(fs.readFileSync(path.join(dir, 'clip.json'), 'utf8'));
    assert.deepEqual(sidecar.gaps, clip.gaps);
    for (const seg of sidecar.segments) assert.equal(await countFrames(path.join(dir, seg.file)), seg.frames, `frames of ${seg.file}`);
    assert.ok(new Set(sidecar.segments.map((s: { run: number }) => s.run)).size >= 2, 'segments from both runs');
  });

  it('records an ONVIF camera through the RTSP address from GetStreamUri, even when the camera appears after deploy', async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    const { freePort } = await import('../support/onvif-device');
    const port = await freePort();
    await load(
      { sourceType: 'onvif', camera: 'cam' },
      [{ id: 'cam', type: 'onvif-camera', host: '127.0.0.1', port, path: '/onvif/device_service', profileToken: '', resolution: '640x360' }],
      {
        cam: { username: 'operator', password: 'p@ss word' },
      },
    );
    // the camera is not there yet: start is refused, nothing changes
    rec.receive({ payload: { command: 'add', line: { id: 'o', title: 'Onvif' } } });
    await out.event('added');
    const device = await startOnvifDevice({
      port,
      username: 'operator',
      password: 'p@ss word',
      profiles: [
        { token: 'main', name: 'Main', width: 1920, height: 1080, rtspUri: rtsp.url.replace('/cam', '/none') },
        { token: 'sub', name: 'Sub', width: 640, height: 360, rtspUri: rtsp.url },
      ],
    });
    try {
      const cam = helper.getNode('cam');
      for (let i = 0; i < 100 && cam.camera.state !== 'connected'; i++) await sleep(100);
      assert.equal(cam.camera.state, 'connected', 'the camera connected by itself');
      assert.equal(cam.camera.profile.token, 'sub', 'profile chosen by resolution');
      rec.receive({ payload: { command: 'start', line: { id: 'o' } } });
      const recording = await out.event('recording', 20000);
      assert.ok(!JSON.stringify(recording.payload).includes('p@ss'), 'no password in events');
      await sleep(3000);
      rec.receive({ payload: { command: 'stop' } });
      const stopped = await out.event('stopped', 20000);
      await checkClip(stopped);
      assert.ok(device.requests.includes('GetStreamUri'));
    } finally {
      await device.stop();
    }
  });
});
