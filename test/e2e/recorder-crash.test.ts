/**
 * kill -9 of a real Node-RED process while it records: no ffmpeg outlives it,
 * and after a restart the rec-list and catalogue are intact, the line is marked
 * interrupted and the clip is playable up to its last complete segment.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { alive, ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { walk } from '../support/failover';
import { sleep, tmpDir, waitFor } from '../support/nr';

describe('recorder in a real Node-RED process', function () {
  this.timeout(120000);
  let userDir: string;
  let nr: NodeRedProcess | null = null;

  beforeEach(function () {
    userDir = tmpDir('crash');
  });
  afterEach(async function () {
    if (nr) await nr.stop();
    nr = null;
    for (const pid of ffmpegPidsFor(userDir)) process.kill(pid, 'SIGKILL');
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function listLines(p: NodeRedProcess) {
    const r = await p.request('POST', '/cmd/1', { command: 'list' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.lines;
  }

  /** Media segments on disk (one recording at a time: ffmpeg writes the last one, those before are complete). */
  const segmentFiles = () => walk(path.join(userDir, 'store')).filter((f) => f.endsWith('.ts') && fs.statSync(f).size > 0);

  it('survives kill -9 mid-recording: interrupted line, intact catalogue, playable segments, no orphan ffmpeg', async function () {
    const flows = recorderSiteFlow({ serverId: 'main-1', storageRoot: 'store', recorders: [{ channel: 1 }] });
    nr = await startNodeRed({ userDir, flows });
    for (const title of ['First', 'Second', 'Third']) {
      const r = await nr.request('POST', '/cmd/1', { command: 'add', line: { id: title.toLowerCase(), title, attributes: { t: title } } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const bad = await nr.request('POST', '/cmd/1', { command: 'start', line: { id: 'nope' } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /no line with id "nope"/);
    const started = await nr.request('POST', '/cmd/1', { command: 'start', line: { id: 'second' } });
    assert.equal(started.status, 200);
    assert.equal(started.body.event, 'armed');
    let status = '';
    for (let i = 0; i < 100 && status !== 'recording'; i++) {
      await sleep(200);
      status = (await listLines(nr)).find((l: { id: string }) => l.id === 'second').status;
    }
    assert.equal(status, 'recording');
    // at least two complete 2 s segments before the kill: a third one has begun
    await waitFor(() => segmentFiles().length >= 3, { timeout: 30000, what: 'two complete segments (a third begun)', detail: segmentFiles });
    const ffmpegBefore = ffmpegPidsFor(userDir);
    assert.equal(ffmpegBefore.length, 1, 'one ffmpeg records');
    await nr.kill9();
    // the reaper ends ffmpeg although Node-RED could not
    for (let i = 0; i < 50 && ffmpegPidsFor(userDir).length; i++) await sleep(100);
    assert.deepEqual(ffmpegPidsFor(userDir), [], 'no ffmpeg outlives a kill -9 of Node-RED');
    assert.equal(alive(ffmpegBefore[0]), false);

    nr = await startNodeRed({ userDir });
    let lines = await listLines(nr);
    for (let i = 0; i < 50 && lines.find((l: { id: string }) => l.id === 'second').status !== 'interrupted'; i++) {
      await sleep(200);
      lines = await listLines(nr);
    }
    assert.deepEqual(
      lines.map((l: { title: string }) => l.title),
      ['First', 'Second', 'Third'],
    );
    const line = lines.find((l: { id: string }) => l.id === 'second');
    assert.equal(line.status, 'interrupted');
    assert.match(line.reason, /stopped unexpectedly/);
    assert.equal(lines.find((l: { id: string }) => l.id === 'first').status, 'ready');
    // the interrupted line does not block the channel: another line records, then it can record again
    const next = await nr.request('POST', '/cmd/1', { command: 'start', line: { id: 'first' } });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(next.body.event, 'armed');
    const stopNext = await nr.request('POST', '/cmd/1', { command: 'stop', line: { id: 'first' } });
    assert.equal(stopNext.status, 200, JSON.stringify(stopNext.body));

    await nr.stop();
    nr = null;
    const db = new Database(path.join(userDir, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    const row = db.prepare('SELECT data FROM clips WHERE line_id = ?').get('second') as { data: string };
    db.close();
    const clip = JSON.parse(row.data);
    assert.equal(clip.state, 'interrupted');
    const dir = path.join(userDir, 'store', clip.dir);
    const sidecar = JSON.parse(fs.readFileSync(path.join(dir, 'clip.json'), 'utf8'));
    assert.equal(sidecar.state, 'interrupted');
    assert.deepEqual(sidecar.attributes, { t: 'Second' });
    const complete = sidecar.segments.filter((s: { complete: boolean }) => s.complete);
    assert.ok(complete.length >= 2, `${complete.length} complete segments`);
    for (const seg of complete) {
      const file = path.join(dir, seg.file);
      const probed = JSON.parse(
        execFileSync('ffprobe', [
          '-v',
          'error',
          '-count_packets',
          '-select_streams',
          'v:0',
          '-show_entries',
          'stream=nb_read_packets',
          '-of',
          'json',
          file,
        ]).toString(),
      );
      const n = Number(probed.streams[0].nb_read_packets);
      assert.equal(n, seg.frames, `${seg.file}: ffprobe counts ${n} frames, the sidecar ${seg.frames}`);
      assert.match(seg.sha256, /^[0-9a-f]{64}$/);
    }
    assert.equal(
      sidecar.frames,
      sidecar.segments.reduce((a: number, s: { frames: number }) => a + (s.frames ?? 0), 0),
    );
  });
  it('a graceful restart of Node-RED leaves no ffmpeg and resumes the recording in the same clip', async function () {
    const flows = recorderSiteFlow({ serverId: 'main-1', storageRoot: 'store', recorders: [{ channel: 1 }] });
    nr = await startNodeRed({ userDir, flows });
    await nr.request('POST', '/cmd/1', { command: 'add', line: { id: 'g', title: 'Graceful' } });
    await nr.request('POST', '/cmd/1', { command: 'start', line: { id: 'g' } });
    let line: { status: string; clipId: string } = { status: '', clipId: '' };
    for (let i = 0; i < 100 && line.status !== 'recording'; i++) {
      await sleep(200);
      line = (await listLines(nr))[0];
    }
    assert.equal(line.status, 'recording');
    const clipId = line.clipId;
    await sleep(2500);
    await nr.stop(); // SIGTERM: Node-RED closes its nodes
    assert.deepEqual(ffmpegPidsFor(userDir), [], 'no ffmpeg after Node-RED exits');
    nr = await startNodeRed({ userDir });
    for (let i = 0; i < 100; i++) {
      line = (await listLines(nr))[0];
      if (line.status === 'recording') break;
      await sleep(200);
    }
    assert.equal(line.status, 'recording', 'the line records again after the restart');
    assert.equal(line.clipId, clipId, 'in the same clip');
    await sleep(2500);
    const stopped = await nr.request('POST', '/cmd/1', { command: 'stop' });
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    const clip = stopped.body.clip;
    assert.equal(clip.id, clipId);
    assert.equal(clip.gaps.length, 1);
    assert.match(clip.gaps[0].reason, /recorder restarted/);
    assert.ok(clip.gaps[0].toMs > clip.gaps[0].fromMs);
    assert.equal(clip.runs, 2);
    assert.ok(
      clip.segments.every((s: { complete: boolean }) => s.complete),
      'every segment closed properly',
    );
  });
});
