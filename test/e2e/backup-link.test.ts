/**
 * backup-link end to end: two Node-RED processes (main and backup, each with its
 * own user directory and storage) and mosquitto. A Backup=On line started on the
 * main records on both, stops on both, with equal names and attributes and the
 * same frames; kill -9 of the main leaves the Aux clip recording without a hole.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { framemd5, maxFrameGapSec } from '../support/media';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed, startNodeReds } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';
import { onSteadyCamera, RtspServerHandle, startRtspServer } from '../support/rtsp';

describe('backup-link: main and backup Node-RED processes with mosquitto', function () {
  this.timeout(180000);
  let broker: Broker;
  let rtsp: RtspServerHandle & { drops: number };
  let dirA: string;
  let dirB: string;
  let main: NodeRedProcess | null = null;
  let backup: NodeRedProcess | null = null;

  beforeEach(async function () {
    broker = await startMosquitto();
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    dirA = tmpDir('main');
    dirB = tmpDir('backup');
  });
  afterEach(async function () {
    for (const p of [main, backup]) if (p) await p.stop();
    main = backup = null;
    for (const d of [dirA, dirB]) {
      for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
    await rtsp.stop();
    await broker.stop();
  });

  const site = (serverId: string, role: string, rec: Record<string, unknown>) =>
    recorderSiteFlow({
      serverId,
      role,
      storageRoot: 'store',
      brokerUrl: broker.url,
      backupLink: true,
      recorders: [{ channel: 1, sourceType: 'url', url: rtsp.url, segmentSeconds: 2, ...rec }],
    });

  async function lineOn(p: NodeRedProcess, id: string) {
    const r = await p.request('POST', '/cmd/1', { command: 'list' });
    return (r.body.lines as { id: string; status: string; backup: string; clipId: string; origin: unknown; reason: string | null }[]).find((l) => l.id === id);
  }
  async function waitStatus(p: NodeRedProcess, id: string, status: string, ms = 30000) {
    const end = Date.now() + ms;
    for (;;) {
      const l = await lineOn(p, id);
      if (l?.status === status) return l;
      if (Date.now() > end || (l?.status === 'failed' && status !== 'failed')) {
        let camera = 'alive';
        try {
          process.kill(rtsp.pid, 0);
        } catch {
          camera = 'dead';
        }
        throw new Error(`line ${id} on ${p.url} is ${l?.status ?? 'absent'} (${l?.reason ?? ''}), not ${status}; the RTSP camera is ${camera}`);
      }
      await sleep(200);
    }
  }
  async function startBoth() {
    [main, backup] = await startNodeReds([
      { userDir: dirA, flows: site('main-1', 'main', { backupServer: 'backup-1', backupChannel: 1 }) },
      { userDir: dirB, flows: site('backup-1', 'backup', {}) },
    ]);
  }

  it('records a Backup=On line on both servers: start and stop together, same name, attributes and frames', async function () {
    await startBoth();
    const clipOf = async (p: NodeRedProcess, dir: string, lineId: string) => {
      const root = path.join(dir, 'store', p === main ? 'main-1' : 'backup-1', 'ch01');
      for (const day of fs.readdirSync(root)) {
        for (const clipDir of fs.readdirSync(path.join(root, day))) {
          const full = path.join(root, day, clipDir);
          const sidecar = JSON.parse(fs.readFileSync(path.join(full, 'clip.json'), 'utf8'));
          if (sidecar.lineId === lineId) return { full, clipDir, sidecar };
        }
      }
      throw new Error(`no clip of line ${lineId} on ${p.url}`);
    };
    // GStreamer's test camera sometimes aborts and is restarted (see support/rtsp):
    // a clip with that hole is, by design, not cut frame-exact. A take that fails
    // while the camera dropped is recorded again on a new line (onSteadyCamera).
    const { a, b } = await onSteadyCamera(rtsp, 3, async (attempt) => {
      const id = attempt === 1 ? 'prog' : `prog${attempt}`;
      const add = await main!.request('POST', '/cmd/1', { command: 'add', line: { id, title: 'Evening Live', backup: 'on', attributes: { house: 'EL-7' } } });
      assert.equal(add.status, 200, JSON.stringify(add.body));
      const aux = await (async () => {
        for (let i = 0; i < 100; i++) {
          const l = await lineOn(backup!, id);
          if (l) return l;
          await sleep(100);
        }
        throw new Error('the Aux line did not appear on the backup');
      })();
      assert.equal(aux.backup, 'aux');
      const edit = await backup!.request('POST', '/cmd/1', { command: 'update', line: { id, title: 'x' } });
      assert.equal(edit.status, 400);
      assert.match(edit.body.error, /Aux line kept by backup-link/);

      const start = await main!.request('POST', '/cmd/1', { command: 'start', line: { id } });
      assert.equal(start.status, 200, JSON.stringify(start.body));
      await waitStatus(main!, id, 'recording');
      await waitStatus(backup!, id, 'recording');
      await sleep(5000);
      const stop = await main!.request('POST', '/cmd/1', { command: 'stop', line: { id } });
      assert.equal(stop.status, 200, JSON.stringify(stop.body));
      await waitStatus(main!, id, 'stopped');
      await waitStatus(backup!, id, 'stopped');
      const a = await clipOf(main!, dirA, id);
      const b = await clipOf(backup!, dirB, id);
      assert.equal(b.clipDir, a.clipDir, 'same clip folder name');
      assert.equal(b.sidecar.name, a.sidecar.name);
      assert.deepEqual(b.sidecar.attributes, a.sidecar.attributes);
      assert.equal(b.sidecar.backup, 'aux');
      // the stop is frame-exact: the same last frame at the planned stop instant both servers share
      assert.equal(b.sidecar.stoppedAt, a.sidecar.stoppedAt, 'the same stop instant');
      assert.equal(b.sidecar.tcIn, a.sidecar.tcIn, 'the same timecode in');
      assert.equal(b.sidecar.frames, a.sidecar.frames, `frames main ${a.sidecar.frames}, aux ${b.sidecar.frames}`);
      assert.equal(b.sidecar.tcOut, a.sidecar.tcOut, 'the same timecode out');
      const h = async (full: string, sc: { segments: { file: string }[] }) =>
        (await framemd5(path.join(full, sc.segments[0].file))).map((f) => f.hash).slice(0, 25);
      assert.deepEqual(await h(b.full, b.sidecar), await h(a.full, a.sidecar), 'the same first frames on both');
      return { a, b };
    });
    // the twin check: made on the backup, kept in both catalogues (and sidecars)
    const twinOf = (full: string) => JSON.parse(fs.readFileSync(path.join(full, 'clip.json'), 'utf8')).twin;
    for (let i = 0; i < 100 && !(twinOf(a.full) && twinOf(b.full)); i++) await sleep(100);
    assert.equal(twinOf(b.full)?.state, 'verified', JSON.stringify(twinOf(b.full)));
    assert.equal(twinOf(a.full)?.state, 'verified', 'the verdict reached the main');
    assert.equal(twinOf(a.full).auxServer, 'backup-1');
  });

  it('keeps the Aux clip recording without a hole when the main is killed with SIGKILL, until the restarted main stops the line', async function () {
    await startBoth();
    await main!.request('POST', '/cmd/1', { command: 'add', line: { id: 'k', title: 'Killed main', backup: 'on' } });
    await main!.request('POST', '/cmd/1', { command: 'start', line: { id: 'k' } });
    await waitStatus(backup!, 'k', 'recording');
    await sleep(3000);
    await main!.kill9();
    main = null;
    await sleep(6000);
    const l = await lineOn(backup!, 'k');
    assert.equal(l!.status, 'recording', 'the Aux line records on after the main died');
    const refused = await backup!.request('POST', '/cmd/1', { command: 'stop', line: { id: 'k' } });
    assert.equal(refused.status, 400, 'an operator cannot stop an Aux line by hand');
    // the main comes back: its line is interrupted; stopping it there stops the Aux twin
    main = await startNodeRed({ userDir: dirA });
    await waitStatus(main, 'k', 'interrupted');
    const stop = await main.request('POST', '/cmd/1', { command: 'stop', line: { id: 'k' } });
    assert.equal(stop.status, 200, JSON.stringify(stop.body));
    await waitStatus(backup!, 'k', 'stopped', 30000);
    const base = path.join(dirB, 'store', 'backup-1', 'ch01');
    const day = fs.readdirSync(base)[0];
    const full = path.join(base, day, fs.readdirSync(path.join(base, day))[0]);
    let sidecar = JSON.parse(fs.readFileSync(path.join(full, 'clip.json'), 'utf8'));
    for (let i = 0; i < 50 && !sidecar.twin; i++) {
      await sleep(100);
      sidecar = JSON.parse(fs.readFileSync(path.join(full, 'clip.json'), 'utf8'));
    }
    assert.equal(sidecar.state, 'closed');
    assert.equal(sidecar.twin?.state, 'mismatch', 'the main clip lost its end: the twin check says so');
    assert.ok(
      sidecar.twin.differences.some((d: string) => /frame counts differ/.test(d)),
      sidecar.twin.differences.join('; '),
    );
    const files = sidecar.segments.map((s: { file: string }) => path.join(full, s.file));
    assert.ok(sidecar.frames >= 200, `${sidecar.frames} frames across the main's death`);
    const gap = await maxFrameGapSec(files);
    assert.ok(gap <= 0.08, `no hole in the Aux clip: largest gap between frames ${gap} s`);
  });
  it('converges after a broker restart mid-recording and after an outage spanning a line change and the stop', async function () {
    await startBoth();
    await main!.request('POST', '/cmd/1', { command: 'add', line: { id: 'c', title: 'Converge', backup: 'on', attributes: { take: 1 } } });
    await main!.request('POST', '/cmd/1', { command: 'start', line: { id: 'c' } });
    await waitStatus(main!, 'c', 'recording');
    await waitStatus(backup!, 'c', 'recording');
    await broker.restart();
    await sleep(3000);
    assert.equal((await lineOn(main!, 'c'))!.status, 'recording');
    assert.equal((await lineOn(backup!, 'c'))!.status, 'recording');
    // an outage: the main changes the line and stops it while the broker is away
    await broker.halt();
    const upd = await main!.request('POST', '/cmd/1', { command: 'update', line: { id: 'c', title: 'Converged', attributes: { take: 2 } } });
    assert.equal(upd.status, 200, JSON.stringify(upd.body));
    await main!.request('POST', '/cmd/1', { command: 'stop', line: { id: 'c' } });
    await waitStatus(main!, 'c', 'stopped');
    assert.equal((await lineOn(backup!, 'c'))!.status, 'recording', 'the Aux line records on while the link is down');
    await broker.resume();
    const aux = await waitStatus(backup!, 'c', 'stopped', 30000);
    const full = (await backup!.request('POST', '/cmd/1', { command: 'list' })).body.lines.find((l: { id: string }) => l.id === 'c');
    assert.equal(full.title, 'Converged', 'the change made during the outage reached the backup');
    assert.deepEqual(full.attributes, { take: 2 });
    assert.equal(aux.backup, 'aux');
  });
  it('lets the backup operator stop an orphaned Aux line, with force, once its main is offline', async function () {
    await startBoth();
    await main!.request('POST', '/cmd/1', { command: 'add', line: { id: 'o', title: 'Orphan', backup: 'on' } });
    await main!.request('POST', '/cmd/1', { command: 'start', line: { id: 'o' } });
    await waitStatus(backup!, 'o', 'recording');
    const early = await backup!.request('POST', '/cmd/1', { command: 'stop', line: { id: 'o' }, force: true });
    assert.equal(early.status, 400, 'refused while the main is online');
    await main!.kill9();
    main = null;
    // the broker announces the main's death (its Last Will) within a few keepalives
    let res = { status: 0, body: {} as { error?: string } };
    for (let i = 0; i < 100; i++) {
      res = await backup!.request('POST', '/cmd/1', { command: 'stop', line: { id: 'o' } });
      if (/offline: send the stop with "force": true/.test(res.body.error ?? '')) break;
      await sleep(100);
    }
    assert.match(res.body.error ?? '', /main-1, which is offline/);
    const forced = await backup!.request('POST', '/cmd/1', { command: 'stop', line: { id: 'o' }, force: true });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    await waitStatus(backup!, 'o', 'stopped');
  });
});
