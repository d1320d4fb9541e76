/**
 * Redeploys, node removal and a full disk, in a real Node-RED runtime: a full
 * deploy with unchanged settings leaves the recording running (same ffmpeg, no
 * gap, no new event); a redeploy that changes the settings suspends a recording
 * and resumes it in the same clip (the gap in the ledger); a channel no node
 * takes back is suspended; removing the node stops it, no ffmpeg is left behind, and a full
 * disk fails the line with a clear reason while Node-RED keeps running.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ffmpegPidsFor } from '../support/nodered';
import { Collector, helper, sleep, tmpDir } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');

helper.init(require.resolve('node-red'));

/** The site; `rec` changes the recorder's settings. */
function flow(storageRoot: string, withRecorder = true, rec: Record<string, unknown> = {}) {
  const nodes: object[] = [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'srv', type: 'redundancy-server', serverId: 'main-1', group: 'studio', role: 'main', storageRoot },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'catcher', type: 'catch', scope: null, uncaught: false, wires: [['caught']], z: 'f1' },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];
  if (withRecorder) {
    nodes.push({
      id: 'rec',
      type: 'recorder',
      z: 'f1',
      server: 'srv',
      channel: 1,
      channelName: 'Studio A',
      frameRate: '25',
      sourceType: 'testpattern',
      segmentSeconds: 1,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'zero',
      startTimeout: 10,
      stallTimeout: 6,
      wires: [['out']],
      ...rec,
    });
  }
  return nodes;
}

async function deploy(nodes: object[]): Promise<void> {
  try {
    await helper.setFlows(nodes, 'full');
  } catch (err) {
    // the helper gives up waiting for 'flows:started' after 300 ms; a recorder may take longer to close
    if (!/timeout waiting event/.test((err as Error).message)) throw err;
  }
}

async function until<T>(fn: () => T | undefined, what: string, timeoutMs = 10000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('recorder lifecycle', function () {
  this.timeout(90000);
  let userDir: string;
  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('life');
  });
  afterEach(async function () {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('resumes a recording in the same clip after a redeploy that changes a setting ffmpeg records with, and stops it when the node is removed', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow('store'));
    let out = new Collector(helper.getNode('out'));
    const rec1 = helper.getNode('rec');
    rec1.receive({ payload: { command: 'add', line: { id: 'r', title: 'Redeploy me' } } });
    rec1.receive({ payload: { command: 'start', line: { id: 'r' } } });
    const first = await out.event('recording', 15000);
    const clipId = first.payload.clip.id;
    await sleep(2500);
    const pidsBefore = ffmpegPidsFor(userDir);
    assert.equal(pidsBefore.length, 1);

    await deploy(flow('store', true, { segmentSeconds: 2 }));
    await until(() => {
      const n = helper.getNode('rec');
      return n && n !== rec1 ? n : undefined;
    }, 'the redeployed recorder');
    out = new Collector(helper.getNode('out'));
    const resumed = await out.event('recording', 15000);
    assert.equal(resumed.payload.clip.id, clipId, 'the same clip goes on');
    assert.equal(resumed.payload.reason, 'media is arriving again');
    const gap = resumed.payload.clip.gaps[0];
    assert.match(gap.reason, /recorder restarted/);
    assert.ok(gap.toMs >= gap.fromMs);
    for (const pid of pidsBefore) assert.ok(!ffmpegPidsFor(userDir).includes(pid), 'the first ffmpeg is gone');
    assert.equal(ffmpegPidsFor(userDir).length, 1, 'exactly one ffmpeg records after the redeploy');
    await sleep(1500);

    // remove the recorder node: its line is stopped and its ffmpeg ends
    const dbFile = path.join(userDir, 'twinrec', 'catalogue.sqlite');
    await deploy(flow('store', false));
    await until(() => (ffmpegPidsFor(userDir).length === 0 ? true : undefined), 'ffmpeg to end after the node was removed');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3');
    const db = new Database(dbFile, { readonly: true });
    const clip = JSON.parse(db.prepare('SELECT data FROM clips WHERE id = ?').get(clipId).data);
    const line = JSON.parse(db.prepare("SELECT data FROM lines WHERE id = 'r'").get().data);
    db.close();
    assert.equal(clip.state, 'closed');
    assert.equal(line.status, 'stopped');
    assert.equal(clip.runs, 2, 'two ffmpeg runs wrote the clip');
  });

  it('full deploys with unchanged settings, or only a new name and timeouts, leave the recording running: same ffmpeg, same clip, no gap, no new event', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow('store'));
    const out1 = new Collector(helper.getNode('out'));
    const rec1 = helper.getNode('rec');
    rec1.receive({ payload: { command: 'add', line: { id: 'r', title: 'Through deploys' } } });
    rec1.receive({ payload: { command: 'start', line: { id: 'r' } } });
    const first = await out1.event('recording', 15000);
    const clipId = first.payload.clip.id;
    const pids = ffmpegPidsFor(userDir);
    assert.equal(pids.length, 1);
    let node = rec1;
    const collectors: Collector[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(1200);
      // the third deploy renames the channel and changes its timeouts: applied in place, no new ffmpeg
      await deploy(i < 2 ? flow('store') : flow('store', true, { channelName: 'Studio A (renamed)', stallTimeout: 8 }));
      const before = node;
      node = await until(() => {
        const n = helper.getNode('rec');
        return n && n !== before ? n : undefined;
      }, 'the redeployed recorder');
      collectors.push(new Collector(helper.getNode('out')));
      assert.deepEqual(ffmpegPidsFor(userDir), pids, `the same ffmpeg records after deploy ${i + 1}`);
    }
    const outN = collectors[collectors.length - 1];
    await sleep(1500);
    node.receive({ payload: { command: 'stop', line: { id: 'r' } } });
    const stopped = await outN.event('stopped', 15000);
    assert.equal(stopped.payload.clip.id, clipId, 'one clip throughout');
    assert.deepEqual(stopped.payload.clip.gaps, [], 'no gap in the ledger');
    assert.equal(stopped.payload.clip.runs, 1, 'one ffmpeg run wrote the clip');
    assert.deepEqual(
      collectors.flatMap((c) => c.msgs.map((m) => (m.payload as { event?: string } | undefined)?.event)).filter((e) => e !== 'stopped'),
      [],
      'no recording, suspended or resumed event from the deploys',
    );
    // the new name is the next clip's
    node.receive({ payload: { command: 'add', line: { id: 'next', title: 'After the rename' } } });
    node.receive({ payload: { command: 'start', line: { id: 'next' } } });
    const next = await outN.event('recording', 15000, (m) => m.payload.line.id === 'next');
    assert.equal(next.payload.clip.channelName, 'Studio A (renamed)');
    node.receive({ payload: { command: 'stop', line: { id: 'next' } } });
    await outN.event('stopped', 15000, (m) => m.payload.line.id === 'next');
  });

  it('a channel no node takes back after a deploy (its channel number changed) is suspended after the grace, its ffmpeg ended', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow('store'));
    const out = new Collector(helper.getNode('out'));
    const rec1 = helper.getNode('rec');
    rec1.receive({ payload: { command: 'add', line: { id: 'r', title: 'Left behind' } } });
    rec1.receive({ payload: { command: 'start', line: { id: 'r' } } });
    const first = await out.event('recording', 15000);
    const moved = flow('store').map((n) => ((n as { id: string }).id === 'rec' ? { ...n, channel: 2 } : n));
    await deploy(moved);
    await until(() => (ffmpegPidsFor(userDir).length === 0 ? true : undefined), 'the parked channel suspended, its ffmpeg ended', 20000);
    // the clip is marked suspended once ffmpeg has closed its segment (just after it ends)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3');
    const stateOf = () => {
      const db = new Database(path.join(userDir, 'twinrec', 'catalogue.sqlite'), { readonly: true });
      try {
        return JSON.parse(db.prepare('SELECT data FROM clips WHERE id = ?').get(first.payload.clip.id).data).state as string;
      } finally {
        db.close();
      }
    };
    await until(() => (stateOf() === 'suspended' ? true : undefined), 'the clip suspended in the catalogue', 10000);
    assert.equal(stateOf(), 'suspended');
  });

  it('a redeploy while the next line pre-rolls stops that pre-roll, resumes the line recording, and the next line still takes over at its start', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow('store'));
    let out = new Collector(helper.getNode('out'));
    const rec1 = helper.getNode('rec');
    rec1.receive({ payload: { command: 'add', line: { id: 'a', title: 'First' } } });
    rec1.receive({ payload: { command: 'start', line: { id: 'a' } } });
    const first = await out.event('recording', 15000);
    const T = Date.now() + 6000;
    rec1.receive({ payload: { command: 'add', line: { id: 'b', title: 'Second', start: 'time', startTime: T, duration: 2 } } });
    const preroll = await out.event('armed', 10000, (m) => m.payload.line.id === 'b' && !!m.payload.clip);
    await until(() => (ffmpegPidsFor(userDir).length === 2 ? true : undefined), 'the pre-roll ffmpeg');

    await deploy(flow('store', true, { segmentSeconds: 2 }));
    await until(() => {
      const n = helper.getNode('rec');
      return n && n !== rec1 ? n : undefined;
    }, 'the redeployed recorder');
    out = new Collector(helper.getNode('out'));
    const resumed = await out.event('recording', 15000, (m) => m.payload.line.id === 'a');
    assert.equal(resumed.payload.clip.id, first.payload.clip.id, 'line 1 goes on in its clip');
    const recB = await out.event('recording', 15000, (m) => m.payload.line.id === 'b');
    assert.notEqual(recB.payload.clip.id, preroll.payload.clip.id, 'a new pre-roll, in a clip of its own');
    assert.ok(
      recB.payload.clip.startedAt >= T,
      `line 2 began ${T - recB.payload.clip.startedAt} ms before its start; ${JSON.stringify(out.msgs.map((m) => [m.payload?.event, m.payload?.line?.id, m.payload?.line?.status, m.payload?.clip?.id?.slice(0, 8)]))}`,
    );
    const stoppedA = await out.event('stopped', 15000, (m) => m.payload.line.id === 'a');
    assert.match(stoppedA.payload.line.reason, /stopped at the start of line 2/);
    await out.event('stopped', 15000, (m) => m.payload.line.id === 'b');
    await until(() => (ffmpegPidsFor(userDir).length === 0 ? true : undefined), 'every ffmpeg to end');
    // the pre-roll given up at the redeploy is a failed clip with nothing in it, held by no line
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3');
    const db = new Database(path.join(userDir, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    const given = JSON.parse(db.prepare('SELECT data FROM clips WHERE id = ?').get(preroll.payload.clip.id).data);
    db.close();
    assert.equal(given.state, 'failed');
    assert.equal(given.frames, 0);
    assert.equal(given.reason, 'pre-roll given up before the line started');
  });

  it('fails the line with "storage full" on a full disk, and Node-RED keeps running', async function () {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a 2 MB tmpfs and must run as root (CI does)');
    const mnt = path.join(userDir, 'small');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    try {
      helper.settings({ userDir });
      await helper.load([serverNode, recorderNode], flow(mnt));
      const out = new Collector(helper.getNode('out'));
      const caught = new Collector(helper.getNode('caught'));
      const rec = helper.getNode('rec');
      rec.receive({ payload: { command: 'add', line: { id: 'big', title: 'Too big' } } });
      rec.receive({ payload: { command: 'add', line: { id: 'next', title: 'Next' } } });
      rec.receive({ payload: { command: 'start', line: { id: 'big' } } });
      await out.event('recording', 15000);
      const failed = await out.event('failed', 60000);
      assert.match(failed.payload.reason, /storage full/);
      assert.equal(failed.payload.line.status, 'failed');
      await caught.error(/failed: storage full/);
      assert.equal(ffmpegPidsFor(mnt).length, 0, 'no ffmpeg left writing');
      // the node still answers, the other line is untouched
      out.clear();
      rec.receive({ payload: { command: 'list' } });
      const list = await out.event('reclist');
      assert.equal(list.payload.lines.find((l: { id: string }) => l.id === 'next').status, 'ready');
      assert.equal(list.payload.lines.find((l: { id: string }) => l.id === 'big').status, 'failed');
    } finally {
      await helper.unload();
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
