/**
 * The example flow examples/studio/03 motion event starts a recording.json as shipped, pointed at
 * our ONVIF test device whose stream is GStreamer's RTSP server: the camera's
 * motion (State true) adds a line and starts it, the end of the motion stops
 * it, and the clip is on disk. Only the camera's address and credentials
 * change; every other node, wire and rule is the example's.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../demo/site';
import { Collector, helper, sleep, tmpDir } from '../support/nr';
import { FakeOnvifDevice, startOnvifDevice } from '../support/onvif-device';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

/* eslint-disable @typescript-eslint/no-require-imports */
const CORE = path.dirname(require.resolve('@node-red/nodes/package.json'));
const MODULES = [
  require('../../nodes/redundancy-server/redundancy-server'),
  require('../../nodes/recorder/recorder'),
  require('../../nodes/onvif-camera/onvif-camera'),
  require('../../nodes/onvif-event/onvif-event'),
  require(path.join(CORE, 'core/function/10-switch.js')),
  require(path.join(CORE, 'core/function/15-change.js')),
  require(path.join(CORE, 'core/common/21-debug.js')),
  require(path.join(CORE, 'core/common/25-catch.js')),
];
/* eslint-enable @typescript-eslint/no-require-imports */

helper.init(require.resolve('node-red'));

const EXAMPLE = path.join(PACKAGE_ROOT, 'examples', 'studio', '03 motion event starts a recording.json');

describe('example: record on ONVIF motion (real recorder, RTSP server and ONVIF test device)', function () {
  this.timeout(120000);
  let userDir: string;
  let rtsp: RtspServerHandle | null = null;
  let device: FakeOnvifDevice | null = null;

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('motion');
  });
  afterEach(async function () {
    await helper.unload();
    if (device) await device.stop();
    if (rtsp) await rtsp.stop();
    device = null;
    rtsp = null;
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('motion starts a new line on the camera stream, the end of motion stops it, and the clip is written', async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    device = await startOnvifDevice({
      username: 'operator',
      password: 'lobby',
      profiles: [{ token: 'main', name: 'Main', width: 640, height: 360, rtspUri: rtsp.url }],
    });
    device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: false } });

    const flow = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as Record<string, unknown>[];
    const cam = flow.find((n) => n.type === 'onvif-camera')!;
    cam.host = '127.0.0.1';
    cam.port = device.port;
    // listen to what the recorder says, beside the example's own debug nodes
    const rec = flow.find((n) => n.type === 'recorder')!;
    (rec.wires as string[][])[0].push('out');
    const catcher = flow.find((n) => n.type === 'catch')!;
    (catcher.wires as string[][])[0].push('caught');
    flow.push({ id: 'out', type: 'helper', z: rec.z }, { id: 'caught', type: 'helper', z: rec.z });

    helper.settings({ userDir });
    await helper.load(MODULES, flow, { [String(cam.id)]: { username: 'operator', password: 'lobby' } });
    const out = new Collector(helper.getNode('out'));
    const caught = new Collector(helper.getNode('caught'));
    const camNode = helper.getNode(String(cam.id));
    for (let i = 0; i < 100 && (camNode.camera.state !== 'connected' || device.subscriptions < 1); i++) await sleep(100);
    assert.equal(camNode.camera.state, 'connected');
    assert.equal(device.subscriptions, 1, 'the onvif-event node subscribed');
    await sleep(300);
    assert.deepEqual(out.msgs, [], 'the initial state (no motion) started nothing');

    device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    const added = await out.event('added');
    assert.match(added.payload.line.title, /^Lobby motion \d{4}-\d\d-\d\dT/);
    assert.equal(added.payload.line.attributes.trigger, 'onvif-motion');
    assert.equal(added.payload.line.attributes.topic, 'tns1:VideoSource/MotionAlarm');
    const recording = await out.event('recording', 20000);
    assert.equal(recording.payload.line.id, added.payload.line.id);
    await sleep(3000);

    device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: false } });
    const stopped = await out.event('stopped', 20000);
    assert.equal(stopped.payload.line.id, added.payload.line.id);
    const clip = stopped.payload.clip;
    const dir = path.join(userDir, 'recordings', clip.dir);
    assert.ok(fs.existsSync(path.join(dir, 'clip.json')), `sidecar in ${dir}`);
    assert.ok(clip.segments.length >= 1 && clip.segments.every((s: { file: string }) => fs.statSync(path.join(dir, s.file)).size > 0), 'media written');
    assert.ok(clip.stoppedAt - clip.startedAt >= 2500, `clip of ${clip.stoppedAt - clip.startedAt} ms`);
    assert.deepEqual(caught.msgs, [], 'no errors');
  });
});
