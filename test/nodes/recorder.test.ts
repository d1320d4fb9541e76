/**
 * The recorder node in a real Node-RED runtime (node-red-node-test-helper):
 * every command, every refusal (seen by a Catch node, nothing changed), real
 * recording with ffmpeg from the test pattern, timed lines, restart survival.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { scanSegment } from '../../lib/media/mpegts';
import { ffmpegPidsFor } from '../support/nodered';
import { Collector, helper, Msg, sleep, tmpDir, until } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cameraNode = require('../../nodes/onvif-camera/onvif-camera');

helper.init(require.resolve('node-red'));

function flow(rec: Record<string, unknown> = {}, extra: object[] = []) {
  return [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'srv', type: 'redundancy-server', serverId: 'main-1', group: 'studio', role: 'main', storageRoot: 'store' },
    {
      id: 'rec',
      type: 'recorder',
      name: 'Recorder 1',
      server: 'srv',
      channel: 1,
      channelName: 'Studio A',
      frameRate: '25',
      sourceType: 'testpattern',
      segmentSeconds: 2,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'zero',
      startTimeout: 10,
      stallTimeout: 6,
      wires: [['out']],
      z: 'f1',
      ...rec,
    },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'catcher', type: 'catch', scope: null, uncaught: false, wires: [['caught']], z: 'f1' },
    { id: 'caught', type: 'helper', z: 'f1' },
    ...extra,
  ];
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('recorder node', function () {
  this.timeout(60000);
  let userDir: string;
  let out: Collector;
  let caught: Collector;

  let rec: any;

  async function load(recCfg: Record<string, unknown> = {}, extra: object[] = [], creds: object = {}) {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode, cameraNode], flow(recCfg, extra), creds);
    rec = helper.getNode('rec');
    out = new Collector(helper.getNode('out'));
    caught = new Collector(helper.getNode('caught'));
  }
  const send = (payload: unknown) => rec.receive({ payload });
  const lines = async (): Promise<Msg['payload'][]> => {
    out.clear();
    send({ command: 'list' });
    return (await out.event('reclist')).payload.lines;
  };
  /** The rec-list without the running timecode of a line that records (it moves on by itself). */
  const still = (ls: Msg['payload'][]) =>
    JSON.stringify(ls.map((l: Record<string, unknown>) => ({ ...l, curPoint: l.status === 'recording' ? '(running)' : l.curPoint })));
  async function refused(payload: unknown, re: RegExp): Promise<void> {
    const before = still(await lines());
    caught.clear();
    send(payload);
    const m = await caught.error(re);
    assert.equal(m.error!.source!.id, 'rec', 'the error comes from the recorder');
    assert.equal(still(await lines()), before, 'the rec-list did not change');
  }

  /** Line 1 (id "a", "First") added and recording: the line a back-to-back test hands over from. */
  async function firstLineRecording(): Promise<Msg> {
    send({ command: 'add', line: { id: 'a', title: 'First' } });
    await out.event('added');
    send({ command: 'start', line: { id: 'a' } });
    return out.event('recording', 15000, (m) => m.payload.line.id === 'a');
  }

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('node');
  });
  afterEach(async function () {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('adds, lists, updates, moves and removes lines by msg', async function () {
    await load();
    send({ command: 'add', line: { title: 'News 1', group: 'news', attributes: { house: 'N001' } } });
    const added = await out.event('added');
    assert.equal(added.payload.line.title, 'News 1');
    assert.equal(added.payload.line.status, 'ready');
    assert.equal(added.payload.line.n, 1);
    assert.equal(added.topic, 'main-1/1/added');
    send(JSON.stringify({ command: 'add', line: { id: 'sport', title: 'Sport', backup: 'on' } }));
    await out.event('added', 5000, (m) => m.payload.line.id === 'sport');
    let l = await lines();
    assert.deepEqual(
      l.map((x: { title: string }) => x.title),
      ['News 1', 'Sport'],
    );
    out.clear();
    send({ command: 'update', line: { id: 'sport', n: 1, title: 'Sport live', attributes: { house: 'S9' } } });
    const upd = await out.event('updated');
    assert.equal(upd.payload.line.n, 1);
    assert.equal(upd.payload.line.title, 'Sport live');
    l = await lines();
    assert.deepEqual(
      l.map((x: { title: string }) => x.title),
      ['Sport live', 'News 1'],
    );
    out.clear();
    send({ command: 'remove', line: { n: 1 } });
    const rem = await out.event('removed');
    assert.equal(rem.payload.line.id, 'sport');
    l = await lines();
    assert.equal(l.length, 1);
    assert.equal(l[0].n, 1);
  });

  it('refuses bad commands with a clear error a Catch node sees, changing nothing', async function () {
    await load();
    send({ command: 'add', line: { id: 'a', title: 'A' } });
    await out.event('added');
    await refused('{not json', /not valid JSON/);
    await refused(42, /must be an object/);
    await refused({ command: 'explode' }, /command must be one of/);
    await refused({ command: 'add', line: { titel: 'typo' } }, /unknown field "titel"/);
    await refused({ command: 'add', line: { title: 'x', status: 'recording' } }, /line.status is set by the recorder/);
    await refused({ command: 'add', line: {} }, /add needs line.title/);
    await refused({ command: 'add', line: { id: 'a', title: 'dup' } }, /already exists/);
    await refused({ command: 'update', line: { id: 'nope', title: 'x' } }, /no line with id "nope"/);
    await refused({ command: 'remove', line: { n: 7 } }, /no line with number 7/);
    await refused({ command: 'start', line: { id: 'ghost' } }, /no line with id "ghost"/);
    await refused({ command: 'stop' }, /nothing is recording/);
    await refused({ command: 'add', line: { title: 'x', backup: 'aux' } }, /set by backup-link/);
    await refused({ command: 'add', line: { title: 'x', start: 'time', startTime: Date.now() - 3600000 } }, /in the past/);
    await refused({ command: 'add', line: { title: 'x', duration: '00:00:61:00' } }, /not a valid timecode/);
    await refused({ command: 'add', line: { title: 'x', source: 'file:///etc/passwd' } }, /not usable/);
    await refused({ command: 'add', line: { title: 'x'.repeat(201) } }, /too long/);
    await refused({ command: 'add', line: { title: 'x', attributes: { 'a/b': 1 } } }, /attribute names/);
    await refused({ command: 'update', line: { id: 'a', title: 'y', stopTime: Date.now() + 5000, duration: 10 } }, /not both/);
  });

  it('records the test pattern for real: armed, recording, REC status, stopped with a clip on disk', async function () {
    await load();
    const statuses: string[] = [];
    rec.on('call:status', (call: { args: [{ text?: string; fill?: string }] }) => statuses.push(`${call.args[0].fill}:${call.args[0].text}`));
    send({ command: 'add', line: { id: 'l1', title: 'Evening News', attributes: { house: 'EN-2211' } } });
    await out.event('added');
    send({ command: 'start', line: { id: 'l1' } });
    const armed = await out.event('armed');
    assert.equal(armed.payload.line.status, 'armed');
    const recording = await out.event('recording', 15000);
    assert.equal(recording.payload.line.status, 'recording');
    assert.equal(recording.payload.line.inPoint, '00:00:00:00');
    await refused({ command: 'start', line: { id: 'l1' } }, /already recording/);
    await refused({ command: 'remove', line: { id: 'l1' } }, /stop it before removing/);
    await refused({ command: 'update', line: { id: 'l1', source: 'TESTPATTERN' } }, /is recording: line.source cannot change/);
    await sleep(3000);
    assert.ok(
      statuses.some((t) => /^red:REC 00:00:0[0-9]:\d\d Evening News$/.test(t)),
      `REC with running timecode in ${JSON.stringify(statuses)}`,
    );
    send({ command: 'stop', line: { id: 'l1' } });
    const stopped = await out.event('stopped', 15000);
    const clip = stopped.payload.clip;
    assert.equal(stopped.payload.line.status, 'stopped');
    assert.equal(clip.state, 'closed');
    assert.equal(clip.title, 'Evening News');
    assert.deepEqual(clip.attributes, { house: 'EN-2211' });
    assert.ok(clip.frames > 50, `recorded ${clip.frames} frames`);
    assert.equal(stopped.payload.line.outPoint, clip.tcOut);
    const dir = path.join(userDir, 'store', clip.dir);
    const sidecar = JSON.parse(fs.readFileSync(path.join(dir, 'clip.json'), 'utf8'));
    assert.equal(sidecar.frames, clip.frames);
    assert.equal(sidecar.segments.length, clip.segments.length);
    for (const seg of sidecar.segments) {
      assert.ok(fs.existsSync(path.join(dir, seg.file)), `segment ${seg.file} exists`);
      assert.match(seg.sha256, /^[0-9a-f]{64}$/);
      assert.equal(seg.complete, true);
    }
    assert.ok(clip.dir.startsWith('main-1/ch01/'), clip.dir);
  });

  it('keeps titles with path traversal inside the storage root', async function () {
    await load();
    send({ command: 'add', line: { id: 't', title: '../../../../etc/passwd\u0000' } });
    await out.event('added');
    send({ command: 'start', line: { id: 't' } });
    await out.event('recording', 15000);
    send({ command: 'stop' });
    const stopped = await out.event('stopped', 15000);
    const clip = stopped.payload.clip;
    const root = path.join(userDir, 'store');
    const abs = path.resolve(root, clip.dir);
    assert.ok(abs.startsWith(root + path.sep), `${abs} is inside ${root}`);
    assert.ok(!clip.name.includes('/') && !clip.name.includes('..'), clip.name);
    assert.ok(fs.existsSync(path.join(abs, 'clip.json')));
  });

  it('starts and stops a timed line by itself', async function () {
    await load();
    send({ command: 'add', line: { id: 'timed', title: 'Timed', start: 'time', startTime: Date.now() + 1500, duration: 2 } });
    const armed = await out.event('armed');
    assert.equal(armed.payload.line.start, 'time');
    const recEv = await out.event('recording', 15000);
    assert.equal(recEv.payload.line.id, 'timed');
    const stopped = await out.event('stopped', 15000);
    assert.equal(stopped.payload.line.duration, stopped.payload.clip ? stopped.payload.line.duration : null);
    // a planned duration is frame-exact: 2 s at 25 fps is 50 frames, in the clip and in its files
    assert.equal(stopped.payload.clip.frames, 50, `2 s at 25 fps gave ${stopped.payload.clip.frames} frames`);
    assert.equal(stopped.payload.line.duration, '00:00:02:00');
    let onDisk = 0;
    for (const sg of stopped.payload.clip.segments) onDisk += (await scanSegment(path.join(userDir, 'store', stopped.payload.clip.dir, sg.file), true)).frames!;
    assert.equal(onDisk, 50, 'the segment files hold 50 frames');
  });

  it('back-to-back: the next timed line pre-rolls while the one before records and takes over at its first frame, the two clips meeting there', async function () {
    await load({ tcMode: 'tod' });
    const startedA = await firstLineRecording();
    const T = Date.now() + 4000;
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: '00:00:02:00' } });
    // armed with a clip: its ffmpeg is running, while line 1 still records
    const preroll = await out.event('armed', 10000, (m) => m.payload.line.id === 'b' && !!m.payload.clip);
    const prerolledAt = Date.now();
    assert.ok(prerolledAt <= T - 1000, `the pre-roll began ${T - prerolledAt} ms before the start`);
    const during = await lines();
    assert.deepEqual(
      during.map((x: Record<string, unknown>) => [x.id, x.status]),
      [
        ['a', 'recording'],
        ['b', 'armed'],
      ],
      'line 1 records on while line 2 pre-rolls',
    );
    const recB = await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    const stoppedB = await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
    assert.equal(preroll.payload.clip.id, recB.payload.clip.id, 'the pre-rolled clip is the one that records');
    // the second clip begins at its first keyframe at or after its start (the test pattern has one a second)
    const lateBy = recB.payload.clip.startedAt - T;
    assert.ok(lateBy >= 0 && lateBy <= 1200, `line 2's first frame came ${lateBy} ms after its start`);
    // line 1 is cut at that frame: its out point is line 2's in point, nothing between them, nothing twice
    assert.equal(stoppedA.payload.clip.stoppedAt, recB.payload.clip.startedAt);
    assert.equal(stoppedA.payload.line.outPoint, recB.payload.line.inPoint);
    assert.match(stoppedA.payload.line.reason, /stopped at the start of line 2 \("Second"\)/);
    assert.ok(stoppedA.payload.clip.frames > startedA.payload.clip.frames, 'line 1 recorded');
    let onDisk = 0;
    for (const sg of stoppedA.payload.clip.segments)
      onDisk += (await scanSegment(path.join(userDir, 'store', stoppedA.payload.clip.dir, sg.file), true)).frames!;
    assert.equal(onDisk, stoppedA.payload.clip.frames, "line 1's files hold the frames its clip says, its tail past the hand-over cut off");
    // line 2 keeps its planned duration, frame-exact
    assert.equal(stoppedB.payload.clip.frames, 50);
    assert.equal(stoppedB.payload.line.duration, '00:00:02:00');
    const l = await lines();
    assert.deepEqual(
      l.map((x: Record<string, unknown>) => [x.id, x.status]),
      [
        ['a', 'stopped'],
        ['b', 'stopped'],
      ],
    );
  });

  it("back-to-back: a line planned to stop where the next one starts records on to that one's first frame (a keyframe after the start), so nothing falls between them", async function () {
    await load({ tcMode: 'tod' });
    await firstLineRecording();
    const T = Date.now() + 4000;
    send({ command: 'update', line: { id: 'a', stopTime: T } });
    await out.event('updated', 5000, (m) => m.payload.line.id === 'a' && m.payload.line.stopTime === T);
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: '00:00:02:00' } });
    const recB = await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    const stoppedB = await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
    const lateBy = recB.payload.clip.startedAt - T;
    assert.ok(lateBy >= 0 && lateBy <= 1200, `line 2's first frame came ${lateBy} ms after its start`);
    assert.equal(stoppedA.payload.clip.stoppedAt, recB.payload.clip.startedAt, `line 1 ends at line 2's first frame, ${lateBy} ms past its planned stop`);
    assert.equal(stoppedA.payload.line.outPoint, stoppedB.payload.line.inPoint);
    assert.match(stoppedA.payload.line.reason, /stopped at the start of line 2/);
    let onDisk = 0;
    for (const sg of stoppedA.payload.clip.segments)
      onDisk += (await scanSegment(path.join(userDir, 'store', stoppedA.payload.clip.dir, sg.file), true)).frames!;
    assert.equal(onDisk, stoppedA.payload.clip.frames);
    assert.equal(stoppedB.payload.clip.frames, 50, 'line 2 keeps its planned duration');
  });

  it('back-to-back: a line planned to stop before the next one starts stops at its plan (a gap in the schedule is kept)', async function () {
    await load({ tcMode: 'tod' });
    await firstLineRecording();
    const T = Date.now() + 4000;
    send({ command: 'update', line: { id: 'a', stopTime: T - 600 } });
    await out.event('updated', 5000, (m) => m.payload.line.id === 'a' && m.payload.line.stopTime === T - 600);
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: 1 } });
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    assert.equal(stoppedA.payload.clip.stoppedAt, T - 600, 'at its planned stop');
    assert.equal(stoppedA.payload.line.reason, null);
    const recB = await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
    assert.ok(recB.payload.clip.startedAt >= T);
    await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
  });

  it('back-to-back: a stop of the line that pre-rolls gives its pre-roll up (its ffmpeg ends, the line is disarmed), and the line recording goes on', async function () {
    await load();
    await firstLineRecording();
    assert.equal(ffmpegPidsFor(userDir).length, 1);
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: Date.now() + 3500, duration: 2 } });
    const preroll = await out.event('armed', 10000, (m) => m.payload.line.id === 'b' && !!m.payload.clip);
    await until(() => ffmpegPidsFor(userDir).length === 2, 'the pre-roll ffmpeg');
    send({ command: 'stop', line: { id: 'b' } });
    const disarmed = await out.event('updated', 10000, (m) => m.payload.line.id === 'b');
    assert.equal(disarmed.payload.reason, 'timed start cancelled');
    assert.equal(disarmed.payload.line.status, 'ready');
    assert.equal(disarmed.payload.line.clipId, null);
    assert.equal(ffmpegPidsFor(userDir).length, 1, 'the pre-roll ffmpeg has ended');
    await sleep(3000); // past line 2's start
    const l = await lines();
    assert.deepEqual(
      l.map((x: Record<string, unknown>) => [x.id, x.status]),
      [
        ['a', 'recording'],
        ['b', 'ready'],
      ],
    );
    const given = preroll.payload.clip.id;
    send({ command: 'stop', line: { id: 'a' } });
    await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    assert.equal(ffmpegPidsFor(userDir).length, 0);
    assert.ok(!l.some((x: Record<string, unknown>) => x.clipId === given), 'no line holds the given-up clip');
  });

  it('back-to-back: when the line recording is stopped while the next one pre-rolls, the next one has the channel at once and records at its start', async function () {
    await load();
    await firstLineRecording();
    const T = Date.now() + 3500;
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: 2 } });
    const preroll = await out.event('armed', 10000, (m) => m.payload.line.id === 'b' && !!m.payload.clip);
    send({ command: 'stop', line: { id: 'a' } });
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    assert.equal(stoppedA.payload.line.reason, null, 'stopped by the command, not by the hand-over');
    // line 2 is the channel's line now: a start of another line is refused because of it
    await refused({ command: 'start', line: { id: 'a' } }, /already recorded/);
    send({ command: 'add', line: { id: 'c', title: 'Third' } });
    await out.event('added', 10000, (m) => m.payload.line.id === 'c');
    await refused({ command: 'start', line: { id: 'c' } }, /line 2 \("Second"\) is recording on this channel/);
    const recB = await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
    assert.equal(recB.payload.clip.id, preroll.payload.clip.id);
    assert.ok(recB.payload.clip.startedAt >= T, 'it began at its start, not when the channel became free');
    const stoppedB = await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
    assert.equal(stoppedB.payload.clip.frames, 50);
    assert.equal(ffmpegPidsFor(userDir).length, 0);
  });

  it("back-to-back: while the line before is being cut at the next line's start, its remove is refused (nothing changed) and its stop answers that the stop is under way", async function () {
    await load({ tcMode: 'tod' });
    await firstLineRecording();
    const [pidA] = ffmpegPidsFor(userDir);
    const T = Date.now() + 4000;
    send({ command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: 2 } });
    await out.event('armed', 10000, (m) => m.payload.line.id === 'b' && !!m.payload.clip);
    // line 1's ffmpeg held just before line 2's start: the cut waits for frames that do not come (up to 3 s),
    // which keeps the hand-over open long enough to send commands into it
    await sleep(Math.max(0, T - 300 - Date.now()));
    process.kill(pidA, 'SIGSTOP');
    try {
      await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
      assert.equal(out.msgs.filter((m) => m.payload.event === 'stopped').length, 0, 'line 1 is still being cut');
      await refused({ command: 'remove', line: { id: 'a' } }, /line 1 \("First"\) is stopping at the start of the next line; remove it once it has stopped/);
      out.clear();
      send({ command: 'stop', line: { id: 'a' } });
      const answer = await out.event('updated', 5000, (m) => m.payload.line.id === 'a');
      assert.equal(answer.payload.reason, 'stop already under way (the next line has taken the channel)');
      assert.equal(answer.payload.line.status, 'recording');
    } finally {
      process.kill(pidA, 'SIGCONT');
    }
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    assert.match(stoppedA.payload.line.reason, /stopped at the start of line 2/, 'stopped by the hand-over, once');
    const stoppedB = await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
    assert.equal(stoppedB.payload.clip.frames, 50);
    assert.equal(out.msgs.filter((m) => m.payload.event === 'stopped' && m.payload.line.id === 'a').length, 1);
    const l = await lines();
    assert.deepEqual(
      l.map((x: Record<string, unknown>) => [x.id, x.status]),
      [
        ['a', 'stopped'],
        ['b', 'stopped'],
      ],
      'line 1 is still there',
    );
    send({ command: 'remove', line: { id: 'a' } });
    await out.event('removed', 5000, (m) => m.payload.line.id === 'a');
  });

  it('keeps the rec-list across a restart of the flows', async function () {
    await load();
    send({ command: 'add', line: { id: 'keep', title: 'Keep me', attributes: { k: 'v' } } });
    await out.event('added');
    await helper.unload();
    await load();
    const l = await lines();
    assert.equal(l.length, 1);
    assert.equal(l[0].id, 'keep');
    assert.deepEqual(l[0].attributes, { k: 'v' });
  });

  it('fails a line whose source does not answer, with an error a Catch node sees', async function () {
    const port = await closedPort();
    await load({ sourceType: 'url', url: `rtsp://127.0.0.1:${port}/none`, startTimeout: 2 });
    send({ command: 'add', line: { id: 'x', title: 'No source' } });
    await out.event('added');
    send({ command: 'start', line: { id: 'x' } });
    const failed = await out.event('failed', 20000);
    assert.match(failed.payload.reason, /no media .* within 2 s/);
    assert.match(failed.payload.reason, /refused/);
    await caught.error(/line 1 \("No source"\) failed: no media/, 5000);
    const l = await lines();
    assert.equal(l[0].status, 'failed');
  });

  it('refuses to start when the ONVIF camera is unreachable, leaving the line ready', async function () {
    const port = await closedPort();
    await load({ sourceType: 'onvif', camera: 'cam' }, [{ id: 'cam', type: 'onvif-camera', host: '127.0.0.1', port, path: '/onvif/device_service' }], {
      cam: { username: 'op', password: 'secret' },
    });
    send({ command: 'add', line: { id: 'c', title: 'Cam' } });
    await out.event('added');
    await refused({ command: 'start', line: { id: 'c' } }, /cannot start/);
    const l = await lines();
    assert.equal(l[0].status, 'ready');
    assert.equal(
      caught.msgs.some((m) => /secret/.test(m.error?.message ?? '')),
      false,
      'no password in errors',
    );
  });

  it('reports a configuration error instead of crashing', async function () {
    await load({ channel: 0 });
    caught.clear();
    send({ command: 'list' });
    await caught.error(/recorder\.errors\.notReady|not configured/);
  });
});
