/**
 * A recording outlives a deploy, with real processes (mosquitto, a GStreamer
 * RTSP camera, two Node-RED processes with backup-link): full deploys of
 * unchanged flows, five on the main and five on the backup, leave a Backup=On
 * line recording on both in the same ffmpeg processes, one clip each with no
 * gap and one run, and the twin verified. A stop of Node-RED is no deploy: the
 * recording is suspended and resumes in the same clip when it starts again.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed, startNodeReds } from '../support/nodered';
import { sleep, tmpDir, waitFor } from '../support/nr';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

interface Sidecar {
  id: string;
  lineId: string;
  segments: { run: number }[];
  gaps: unknown[];
  state: string;
  twin?: { state: string };
  frames: number;
}

describe('a recording outlives a deploy', function () {
  this.timeout(240000);
  let broker: Broker;
  let rtsp: RtspServerHandle;
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
    if (this.currentTest?.state === 'failed') {
      for (const [k, p] of Object.entries({ main, backup })) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-4000)}`);
    }
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

  async function status(p: NodeRedProcess, id: string): Promise<string | undefined> {
    const r = await p.request('POST', '/cmd/1', { command: 'list' });
    return (r.body.lines as { id: string; status: string }[]).find((l) => l.id === id)?.status;
  }

  /** A full deploy of the flows the process runs now, unchanged; resolves once the recorder answers again. */
  async function fullDeploy(p: NodeRedProcess): Promise<void> {
    const flows = (await p.request('GET', '/flows')).body;
    const r = await p.request('POST', '/flows', flows, { 'Node-RED-Deployment-Type': 'full' });
    assert.ok(r.status === 200 || r.status === 204, `deploy: ${r.status} ${JSON.stringify(r.body)}`);
    await waitFor(async () => (await p.request('POST', '/cmd/1', { command: 'list' }).catch(() => ({ status: 0 }))).status === 200, {
      what: 'the recorder answering after the deploy',
    });
  }

  const runs = (sc: Sidecar) => new Set(sc.segments.map((x) => x.run)).size;

  function sidecarOf(dir: string, server: string, lineId: string): Sidecar {
    const root = path.join(dir, 'store', server, 'ch01');
    for (const day of fs.readdirSync(root)) {
      for (const clipDir of fs.readdirSync(path.join(root, day))) {
        const sc = JSON.parse(fs.readFileSync(path.join(root, day, clipDir, 'clip.json'), 'utf8')) as Sidecar;
        if (sc.lineId === lineId) return sc;
      }
    }
    throw new Error(`no clip of line ${lineId} under ${root}`);
  }

  it('ten full deploys (five of the main, five of the backup): same ffmpeg on both, no gap, one run, the twin verified', async function () {
    [main, backup] = await startNodeReds([
      { userDir: dirA, flows: site('main-1', 'main', { backupServer: 'backup-1', backupChannel: 1 }) },
      { userDir: dirB, flows: site('backup-1', 'backup', {}) },
    ]);
    const add = await main.request('POST', '/cmd/1', { command: 'add', line: { id: 'live', title: 'Through deploys', backup: 'on' } });
    assert.equal(add.status, 200, JSON.stringify(add.body));
    await waitFor(async () => (await status(backup!, 'live')) !== undefined, { what: 'the Aux line on the backup' });
    assert.equal((await main.request('POST', '/cmd/1', { command: 'start', line: { id: 'live' } })).status, 200);
    await waitFor(async () => (await status(main!, 'live')) === 'recording' && (await status(backup!, 'live')) === 'recording', {
      what: 'recording on both',
      timeout: 30000,
    });
    const pidsA = ffmpegPidsFor(dirA);
    const pidsB = ffmpegPidsFor(dirB);
    assert.equal(pidsA.length, 1);
    assert.equal(pidsB.length, 1);
    for (let i = 0; i < 10; i++) {
      await sleep(700);
      await fullDeploy(i % 2 === 0 ? main : backup);
      assert.deepEqual(ffmpegPidsFor(dirA), pidsA, `the main's ffmpeg after deploy ${i + 1}`);
      assert.deepEqual(ffmpegPidsFor(dirB), pidsB, `the backup's ffmpeg after deploy ${i + 1}`);
      assert.equal(await status(main, 'live'), 'recording');
      assert.equal(await status(backup, 'live'), 'recording');
    }
    await sleep(2000);
    assert.equal((await main.request('POST', '/cmd/1', { command: 'stop', line: { id: 'live' } })).status, 200);
    await waitFor(async () => (await status(main!, 'live')) === 'stopped' && (await status(backup!, 'live')) === 'stopped', {
      what: 'stopped on both',
      timeout: 30000,
    });
    const a = await waitFor(
      () => {
        const sc = sidecarOf(dirA, 'main-1', 'live');
        return sc.twin ? sc : null;
      },
      { what: "the twin's verdict on the main", timeout: 20000 },
    );
    const b = sidecarOf(dirB, 'backup-1', 'live');
    assert.deepEqual([runs(a), a.gaps], [1, []], 'the main clip: one ffmpeg run, no gap');
    assert.deepEqual([runs(b), b.gaps], [1, []], 'the Aux clip: one ffmpeg run, no gap');
    assert.equal(b.frames, a.frames, `the same frames on both (main ${a.frames}, Aux ${b.frames})`);
    assert.equal(a.twin!.state, 'verified');
  });

  it('a stop of Node-RED is no deploy: the recording is suspended, its ffmpeg ends, and it resumes in the same clip', async function () {
    const flows = recorderSiteFlow({ serverId: 'main-1', storageRoot: 'store', recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 2 }] });
    main = await startNodeRed({ userDir: dirA, flows });
    await main.request('POST', '/cmd/1', { command: 'add', line: { id: 'r', title: 'Restarted' } });
    await main.request('POST', '/cmd/1', { command: 'start', line: { id: 'r' } });
    await waitFor(async () => (await status(main!, 'r')) === 'recording', { what: 'recording', timeout: 20000 });
    await sleep(1500);
    const port = main.port;
    await main.stop();
    main = null;
    assert.deepEqual(ffmpegPidsFor(dirA), [], 'no ffmpeg left after the stop');
    // the catalogue is the durable record of the clip's state
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3');
    const db = new Database(path.join(dirA, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    const clip = JSON.parse(db.prepare('SELECT data FROM clips WHERE id = ?').get(sidecarOf(dirA, 'main-1', 'r').id).data);
    db.close();
    assert.equal(clip.state, 'suspended');
    main = await startNodeRed({ userDir: dirA, port });
    await waitFor(async () => (await status(main!, 'r')) === 'recording', { what: 'recording again', timeout: 20000 });
    await main.request('POST', '/cmd/1', { command: 'stop', line: { id: 'r' } });
    await waitFor(async () => (await status(main!, 'r')) === 'stopped', { what: 'stopped', timeout: 20000 });
    const sc = sidecarOf(dirA, 'main-1', 'r');
    assert.equal(runs(sc), 2, 'one clip, written by the run before the stop and the one after');
  });
});
