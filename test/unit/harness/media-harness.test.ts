/**
 * Proves the test harness itself against the real peers: GStreamer's RTSP
 * server (test/support/rtsp-server.py), Debian's ffmpeg as recorder and
 * Debian's ffprobe as referee.
 */
import { strict as assert } from 'node:assert';
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { startRtspServer, freePort, RtspServerHandle } from '../../support/rtsp';
import { probe, countFrames, concatDuration, concatFrameCount, framemd5, maxFrameGapSec, FFMPEG } from '../../support/media';
import { missingSystemTools } from '../../support/ensure-system';

const FPS = 25;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Run ffmpeg to completion (or kill it after timeoutMs), collecting stderr. */
async function ffmpeg(args: string[], cwd: string, timeoutMs = 20000): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(FFMPEG, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  const t = setTimeout(() => child.pid && alive(child.pid) && process.kill(child.pid, 'SIGKILL'), timeoutMs);
  const { code } = await waitExit(child);
  clearTimeout(t);
  return { code, stderr };
}

describe('media harness (GStreamer RTSP server + Debian ffmpeg/ffprobe)', function () {
  this.timeout(60000);

  let tmp = '';
  let server: RtspServerHandle | undefined;
  const children: ChildProcess[] = [];
  let segments: string[] = [];

  before(async function () {
    const missing = missingSystemTools();
    if (missing.length > 0) {
      throw new Error(`missing system tools: ${missing.join(', ')} (see test/support/ensure-system.ts)`);
    }
    tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'media-harness-'));
  });

  after(async function () {
    for (const c of children) {
      if (c.pid && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        await waitExit(c);
      }
    }
    if (server) await server.stop();
    if (tmp) await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  it('freePort() returns a usable port', async function () {
    const p = await freePort();
    assert.ok(Number.isInteger(p) && p > 0 && p < 65536, `port ${p}`);
  });

  it('starts the RTSP server and prints READY', async function () {
    const t0 = Date.now();
    server = await startRtspServer({ fps: String(FPS), size: '640x360' });
    const ms = Date.now() - t0;
    assert.match(server.url, /^rtsp:\/\/127\.0\.0\.1:\d+\/cam$/);
    assert.deepEqual(server.urls, [server.url]);
    assert.equal(server.url, `rtsp://127.0.0.1:${server.port}/cam`);
    assert.ok(alive(server.pid));
    assert.ok(ms < 20000, `READY took ${ms} ms`);
  });

  it('records ~3 s with ffmpeg -f segment; frame counts match the duration', async function () {
    assert.ok(server, 'server not started');
    const rec = spawn(
      FFMPEG,
      [
        '-nostdin',
        '-hide_banner',
        '-loglevel',
        'warning',
        '-rtsp_transport',
        'tcp',
        '-i',
        server.url,
        '-map',
        '0:v:0',
        '-c',
        'copy',
        '-f',
        'segment',
        '-segment_time',
        '1',
        '-segment_format',
        'mpegts',
        '-segment_list',
        'list.csv',
        '-segment_list_type',
        'csv',
        'out_%05d.ts',
      ],
      { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(rec);
    let stderr = '';
    rec.stderr!.setEncoding('utf8');
    rec.stderr!.on('data', (d: string) => (stderr += d));

    // Wait for the first segment to appear (recording has started), then 3 s.
    const deadline = Date.now() + 15000;
    while (!fs.existsSync(path.join(tmp, 'out_00000.ts'))) {
      if (rec.exitCode !== null) assert.fail(`ffmpeg exited early (${rec.exitCode}):\n${stderr}`);
      if (Date.now() > deadline) assert.fail(`no segment after 15 s:\n${stderr}`);
      await sleep(50);
    }
    await sleep(3000);
    process.kill(rec.pid!, 'SIGINT');
    const { code, signal } = await waitExit(rec);
    assert.equal(signal, null, `ffmpeg killed by ${signal}:\n${stderr}`);
    // Debian's ffmpeg 5.1 exits 255 after a clean shutdown on SIGINT/SIGTERM
    // ("Exiting normally, received signal 2"); 0 if the input ended first.
    assert.ok(code === 0 || code === 255, `ffmpeg exit ${code}:\n${stderr}`);

    segments = (await fs.promises.readdir(tmp))
      .filter((f) => /^out_\d{5}\.ts$/.test(f))
      .sort()
      .map((f) => path.join(tmp, f));
    assert.ok(segments.length >= 3, `expected >= 3 segments, got ${segments.length}`);

    const csv = (await fs.promises.readFile(path.join(tmp, 'list.csv'), 'utf8')).trim().split('\n');
    assert.equal(csv.length, segments.length, `list.csv:\n${csv.join('\n')}`);
    csv.forEach((line, i) => assert.equal(line.split(',')[0], path.basename(segments[i])));

    const p = await probe(segments[0]);
    assert.equal(p.videoCodec, 'h264');
    assert.equal(p.width, 640);
    assert.equal(p.height, 360);
    assert.equal(p.avgFrameRate, '25/1');
    assert.equal(p.formatName, 'mpegts');

    let sum = 0;
    for (const s of segments) {
      const n = await countFrames(s);
      assert.ok(n > 0, `${s} has no frames`);
      sum += n;
    }
    const total = await concatFrameCount(segments);
    assert.equal(total, sum, 'concat frame count = sum of segment frame counts');

    const dur = await concatDuration(segments);
    assert.ok(dur > 2.5 && dur < 6, `duration ${dur}`);
    assert.ok(Math.abs(total - dur * FPS) <= 2, `frames ${total} vs duration ${dur} s * ${FPS}`);

    const gap = await maxFrameGapSec(segments);
    assert.ok(gap > 0 && gap < 0.1, `max frame gap ${gap} s`);
  });

  it('framemd5 returns one entry per frame', async function () {
    assert.ok(segments.length > 0, 'no segments recorded');
    for (const s of segments.slice(0, 2)) {
      const frames = await framemd5(s);
      assert.equal(frames.length, await countFrames(s));
      for (const f of frames) {
        assert.match(f.hash, /^[0-9a-f]{32}$/);
        assert.ok(Number.isFinite(f.pts));
      }
      for (let i = 1; i < frames.length; i++) assert.ok(frames[i].pts > frames[i - 1].pts, 'pts increasing');
    }
  });

  it('serves a second client after the first disconnected', async function () {
    assert.ok(server, 'server not started');
    const out = path.join(tmp, 'second.ts');
    const r = await ffmpeg(
      [
        '-nostdin',
        '-hide_banner',
        '-loglevel',
        'warning',
        '-rtsp_transport',
        'tcp',
        '-i',
        server.url,
        '-map',
        '0:v:0',
        '-c',
        'copy',
        '-t',
        '1',
        '-f',
        'mpegts',
        '-y',
        out,
      ],
      tmp,
    );
    assert.equal(r.code, 0, r.stderr);
    const n = await countFrames(out);
    assert.ok(n >= FPS - 2, `second client got ${n} frames`);
  });

  it('stop() leaves no process', async function () {
    assert.ok(server, 'server not started');
    const pid = server.pid;
    await server.stop();
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    server = undefined;
  });
});
