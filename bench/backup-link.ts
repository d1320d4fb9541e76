/**
 * Bench of synchronous parallel recording (backup-link): two real Node-RED
 * processes (main-1 and backup-1, each with its own user directory and storage),
 * mosquitto, and one GStreamer RTSP camera (shared media: both recorders receive
 * the same encoded frames). Not a test: it prints figures and asserts nothing.
 *
 *  1. Start and stop offsets between a Backup=On clip on the main and its Aux
 *     twin on the backup, measured on the media: the per-frame hashes (framemd5,
 *     stream copy) of both clips are aligned on the frames they share.
 *       start offset = position of the Aux clip's first frame minus position of
 *                      the main clip's first frame in the shared frame sequence
 *                      (positive: the Aux started later, it misses frames the main has);
 *       stop offset  = position of the Aux clip's last frame minus position of
 *                      the main clip's last frame (positive: the Aux stopped later).
 *     p50/p95/max are over the absolute values.
 *  2. Frames lost on the Aux clip across a kill -9 of the main: the Aux clip's
 *     packet timestamps, expected = round((last - first) x 25) + 1, lost =
 *     expected - present, and the largest gap between consecutive frames.
 *
 * Options (environment): BENCH_TWIN_CLIPS=30, BENCH_TWIN_SECONDS=3, BENCH_TWIN_KILLS=3.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FFMPEG, packetPtsTimes } from '../test/support/media';
import { Broker, startMosquitto } from '../test/support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../test/support/nodered';
import { RtspServerHandle, startRtspServer } from '../test/support/rtsp';

const FPS = 25;
/** A clip's first frame is looked for this far into the other clip. */
const SEARCH_FRAMES = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ListedLine {
  id: string;
  status: string;
  backup: string;
  clipId: string | null;
  reason: string | null;
}

interface Sidecar {
  id: string;
  dir: string;
  state: string;
  frames: number;
  startedAt: number | null;
  stoppedAt: number | null;
  gaps: { fromMs: number; toMs: number | null; reason: string }[];
  segments: { index: number; file: string; frames: number | null; run: number }[];
}

interface ClipOnDisk {
  full: string;
  sidecar: Sidecar;
  files: string[];
}

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `twinrec-bench-${prefix}-`));
}

async function lineOn(p: NodeRedProcess, id: string): Promise<ListedLine | undefined> {
  const r = await p.request('POST', '/cmd/1', { command: 'list' });
  return (r.body?.lines as ListedLine[] | undefined)?.find((l) => l.id === id);
}

async function waitStatus(p: NodeRedProcess, who: string, id: string, status: string, ms = 30000): Promise<ListedLine> {
  const end = Date.now() + ms;
  for (;;) {
    const l = await lineOn(p, id);
    if (l?.status === status) return l;
    if (l && status === 'recording' && (l.status === 'failed' || l.status === 'stopped')) {
      throw new Error(`line ${id} on ${who} is ${l.status}${l.reason ? ` (${l.reason})` : ''}, not ${status}`);
    }
    if (Date.now() > end)
      throw new Error(`line ${id} on ${who} is ${l?.status ?? 'absent'}${l?.reason ? ` (${l.reason})` : ''} after ${ms / 1000} s, not ${status}`);
    await sleep(200);
  }
}

async function command(p: NodeRedProcess, who: string, cmd: object): Promise<void> {
  const r = await p.request('POST', '/cmd/1', cmd);
  if (r.status !== 200) throw new Error(`${JSON.stringify(cmd)} on ${who}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** The clip folder whose sidecar has this clip id, under <userDir>/store/<server>/ch01/<day>/. */
function clipOnDisk(userDir: string, server: string, clipId: string): ClipOnDisk {
  const base = path.join(userDir, 'store', server, 'ch01');
  for (const day of fs.existsSync(base) ? fs.readdirSync(base) : []) {
    for (const folder of fs.readdirSync(path.join(base, day))) {
      const full = path.join(base, day, folder);
      let sidecar: Sidecar;
      try {
        sidecar = JSON.parse(fs.readFileSync(path.join(full, 'clip.json'), 'utf8'));
      } catch {
        continue;
      }
      if (sidecar.id !== clipId) continue;
      const segs = [...sidecar.segments].sort((a, b) => a.index - b.index);
      const files = segs.map((s) => path.join(full, s.file));
      const missing = files.filter((f) => !fs.existsSync(f));
      if (missing.length)
        throw new Error(`clip ${clipId} on ${server}: segments listed in its sidecar are missing: ${missing.map((f) => path.basename(f)).join(', ')}`);
      return { full, sidecar, files };
    }
  }
  throw new Error(`no clip folder with clip.json of clip ${clipId} under ${base}`);
}

/** The only clip of a user directory (the kill runs record one clip per directory). */
function onlyClip(userDir: string, server: string): ClipOnDisk {
  const base = path.join(userDir, 'store', server, 'ch01');
  const ids: string[] = [];
  for (const day of fs.existsSync(base) ? fs.readdirSync(base) : []) {
    for (const folder of fs.readdirSync(path.join(base, day))) {
      try {
        ids.push(JSON.parse(fs.readFileSync(path.join(base, day, folder, 'clip.json'), 'utf8')).id);
      } catch {
        /* not a clip folder */
      }
    }
  }
  if (ids.length !== 1) throw new Error(`expected one clip under ${base}, found ${ids.length}`);
  return clipOnDisk(userDir, server, ids[0]);
}

/** Per-packet MD5 of the video stream of one file (stream copy, packet order). */
function packetHashes(file: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(
      FFMPEG,
      ['-nostdin', '-hide_banner', '-v', 'error', '-i', file, '-map', '0:v:0', '-c', 'copy', '-f', 'framemd5', '-'],
      { maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`framemd5 of ${file} failed: ${String(stderr).trim() || err.message}`));
        const out: string[] = [];
        for (const raw of stdout.split(/\r?\n/)) {
          const line = raw.trim();
          if (!line || line.startsWith('#')) continue;
          const parts = line.split(',').map((x) => x.trim());
          if (parts.length >= 6) out.push(parts[5]);
        }
        resolve(out);
      },
    );
  });
}

/** The hashes of a clip's frames: its segments one after the other, in index order. */
async function clipHashes(c: ClipOnDisk): Promise<string[]> {
  const all: string[] = [];
  for (const f of c.files) all.push(...(await packetHashes(f)));
  return all;
}

interface Alignment {
  start: number;
  stop: number;
  /** Frames of the shared span that one clip has and the other lacks (both ways). */
  unmatched: number;
  mainFrames: number;
  auxFrames: number;
}

/**
 * Align two hash lists of the same source. Positions are in the main clip's
 * frame numbering (its first frame is 0); returns { error } when the clips
 * share no first (or last) frame within SEARCH_FRAMES of their ends.
 */
function align(mainH: string[], auxH: string[]): Alignment | { error: string } {
  if (!mainH.length || !auxH.length) return { error: `empty clip (main ${mainH.length} frames, Aux ${auxH.length} frames)` };
  const firstIndex = (list: string[], hash: string, limit: number) => {
    for (let i = 0; i < Math.min(limit, list.length); i++) if (list[i] === hash) return i;
    return -1;
  };
  // position of the Aux's first frame in the main's numbering
  let auxFirst: number;
  const inAux = firstIndex(auxH, mainH[0], SEARCH_FRAMES);
  if (inAux >= 0)
    auxFirst = inAux === 0 ? 0 : -inAux; // the Aux has inAux frames before the main's first
  else {
    const inMain = firstIndex(mainH, auxH[0], SEARCH_FRAMES);
    if (inMain < 0) return { error: `no common first frame within ${SEARCH_FRAMES} frames (main ${mainH.length} frames, Aux ${auxH.length} frames)` };
    auxFirst = inMain;
  }
  // last frames: find each clip's last frame in the other, searching back from the end
  const lastIndex = (list: string[], hash: string, limit: number) => {
    for (let i = list.length - 1; i >= Math.max(0, list.length - limit); i--) if (list[i] === hash) return i;
    return -1;
  };
  const mainLast = mainH.length - 1;
  let auxLast: number;
  const auxEndInMain = lastIndex(mainH, auxH[auxH.length - 1], SEARCH_FRAMES);
  if (auxEndInMain >= 0) auxLast = auxEndInMain;
  else {
    const mainEndInAux = lastIndex(auxH, mainH[mainLast], SEARCH_FRAMES);
    if (mainEndInAux < 0)
      return { error: `no common last frame within ${SEARCH_FRAMES} frames of the ends (main ${mainH.length} frames, Aux ${auxH.length} frames)` };
    auxLast = mainLast + (auxH.length - 1 - mainEndInAux);
  }
  // the span both clips cover: every frame of one should be in the other
  const mainSet = new Set(mainH);
  const auxSet = new Set(auxH);
  const lo = Math.max(0, auxFirst);
  const hi = Math.min(mainLast, auxLast);
  let unmatched = 0;
  for (let i = lo; i <= hi; i++) if (!auxSet.has(mainH[i])) unmatched++;
  for (let j = Math.max(0, -auxFirst); j < auxH.length && j + auxFirst <= hi; j++) if (!mainSet.has(auxH[j])) unmatched++;
  return { start: auxFirst, stop: auxLast - mainLast, unmatched, mainFrames: mainH.length, auxFrames: auxH.length };
}

/** Nearest-rank percentile. */
function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function histogram(values: number[]): string {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([v, n]) => `${v > 0 ? '+' : ''}${v}: ${n}`)
    .join(', ');
}

function summary(label: string, values: number[]): string {
  const abs = values.map(Math.abs).sort((a, b) => a - b);
  if (!abs.length) return `  ${label} (frames): no clip measured`;
  return `  ${label} (frames): p50 ${percentile(abs, 50)}, p95 ${percentile(abs, 95)}, max ${abs[abs.length - 1]} over ${values.length} clips   (signed value: clips) ${histogram(values)}`;
}

/**
 * The RTSP camera, restarted on the same port (same URL for the recorders) when
 * its process is gone: GStreamer's RTSP server 1.22 of the test support aborts
 * now and then when clients of its shared media come and go
 * ("gst_rtsp_media_get_rates: assertion failed"); every restart is counted and printed.
 */
class Camera {
  restarts: string[] = [];
  private constructor(private h: RtspServerHandle) {}
  static async start(): Promise<Camera> {
    return new Camera(await startRtspServer({ fps: '25', gop: 25 }));
  }
  get url(): string {
    return this.h.url;
  }
  alive(): boolean {
    try {
      process.kill(this.h.pid, 0);
      const stat = fs.readFileSync(`/proc/${this.h.pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  }
  /** Restart the camera if it died; returns a note when it did. */
  async ensure(when: string): Promise<string | null> {
    if (this.alive()) return null;
    const note = `the RTSP camera (pid ${this.h.pid}) had died ${when}; restarted on port ${this.h.port}`;
    this.restarts.push(note);
    console.log(`  ${note}`);
    await this.h.stop();
    this.h = await startRtspServer({ fps: '25', gop: 25, port: this.h.port });
    return note;
  }
  stop(): Promise<void> {
    return this.h.stop();
  }
}

interface Twin {
  broker: Broker;
  dirA: string;
  dirB: string;
  main: NodeRedProcess | null;
  backup: NodeRedProcess | null;
}

async function startTwin(rtsp: Camera, label: string): Promise<Twin> {
  const t: Twin = { broker: await startMosquitto(), dirA: tmp(`${label}-main`), dirB: tmp(`${label}-backup`), main: null, backup: null };
  try {
    const site = (serverId: string, role: string, rec: Record<string, unknown>) =>
      recorderSiteFlow({
        serverId,
        role,
        storageRoot: 'store',
        brokerUrl: t.broker.url,
        backupLink: true,
        recorders: [{ channel: 1, sourceType: 'url', url: rtsp.url, segmentSeconds: 2, ...rec }],
      });
    t.main = await startNodeRed({ userDir: t.dirA, flows: site('main-1', 'main', { backupServer: 'backup-1', backupChannel: 1 }) });
    t.backup = await startNodeRed({ userDir: t.dirB, flows: site('backup-1', 'backup', {}) });
  } catch (err) {
    await stopTwin(t);
    throw err;
  }
  return t;
}

async function stopTwin(t: Twin): Promise<void> {
  for (const p of [t.main, t.backup]) {
    try {
      if (p) await p.stop();
    } catch (err) {
      console.error(`  could not stop Node-RED ${p?.pid}: ${String(err)}`);
    }
  }
  t.main = t.backup = null;
  for (const d of [t.dirA, t.dirB]) {
    for (const pid of ffmpegPidsFor(d)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    fs.rmSync(d, { recursive: true, force: true });
  }
  await t.broker.stop();
}

async function waitAuxLine(backup: NodeRedProcess, id: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await lineOn(backup, id)) return;
    await sleep(100);
  }
  throw new Error(`the Aux line ${id} did not appear on the backup within 10 s`);
}

/** Part 1: start and stop offsets over n clips. */
async function offsets(rtsp: Camera, n: number, seconds: number): Promise<void> {
  const t = await startTwin(rtsp, 'twin');
  const starts: number[] = [];
  const stops: number[] = [];
  const failures: string[] = [];
  let unmatchedClips = 0;
  let unmatchedFrames = 0;
  let discarded = 0;
  try {
    const main = t.main!;
    const backup = t.backup!;
    // a clip during which the camera died is discarded and recorded again (at most 10 times)
    for (let i = 0, attempt = 0; i < n && discarded <= 10; attempt++) {
      const id = `t${attempt}`;
      await rtsp.ensure(`before clip ${i}`);
      const cameraRestarts = rtsp.restarts.length;
      try {
        await command(main, 'main-1', { command: 'add', line: { id, title: `Twin bench ${attempt}`, backup: 'on' } });
        await waitAuxLine(backup, id);
        await command(main, 'main-1', { command: 'start', line: { id } });
        await waitStatus(main, 'main-1', id, 'recording');
        await waitStatus(backup, 'backup-1', id, 'recording');
        await sleep(seconds * 1000);
        await command(main, 'main-1', { command: 'stop', line: { id } });
        const lm = await waitStatus(main, 'main-1', id, 'stopped');
        const lb = await waitStatus(backup, 'backup-1', id, 'stopped');
        if (!rtsp.alive()) throw new Error('the RTSP camera died during this clip');
        if (!lm.clipId || !lb.clipId) throw new Error(`no clip id in the list (main ${lm.clipId}, Aux ${lb.clipId})`);
        const cm = clipOnDisk(t.dirA, 'main-1', lm.clipId);
        const cb = clipOnDisk(t.dirB, 'backup-1', lb.clipId);
        const r = align(await clipHashes(cm), await clipHashes(cb));
        if ('error' in r) {
          failures.push(`clip ${i}: ${r.error}`);
          console.log(`  clip ${i}: FAILURE ${r.error}`);
          i++;
          continue;
        }
        starts.push(r.start);
        stops.push(r.stop);
        if (r.unmatched) {
          unmatchedClips++;
          unmatchedFrames += r.unmatched;
        }
        const gaps = cm.sidecar.gaps.length + cb.sidecar.gaps.length;
        console.log(
          `  clip ${i}${id === `t${i}` ? '' : ` (line ${id})`}: start ${r.start > 0 ? '+' : ''}${r.start}, stop ${r.stop > 0 ? '+' : ''}${r.stop} frames (main ${r.mainFrames}, Aux ${r.auxFrames} frames${r.unmatched ? `, ${r.unmatched} frames of the shared span in one clip only` : ''}${gaps ? `, gaps in the ledgers: main ${JSON.stringify(cm.sidecar.gaps)}, Aux ${JSON.stringify(cb.sidecar.gaps)}` : ''})`,
        );
        i++;
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (!rtsp.alive() || rtsp.restarts.length !== cameraRestarts) {
          discarded++;
          console.log(`  clip ${i} (line ${id}): discarded, the RTSP camera died during it (${msg}); recorded again`);
        } else {
          failures.push(`clip ${i}: ${msg}`);
          console.log(`  clip ${i}: FAILURE ${msg}`);
          i++;
        }
        // leave the channels free for the next clip
        await main.request('POST', '/cmd/1', { command: 'stop', line: { id } }).catch(() => undefined);
        await waitStatus(main, 'main-1', id, 'stopped', 10000).catch(() => undefined);
        await waitStatus(backup, 'backup-1', id, 'stopped', 10000).catch(() => undefined);
      }
    }
  } finally {
    await stopTwin(t);
  }
  console.log(summary('start offset', starts));
  console.log(summary('stop offset', stops));
  if (discarded) console.log(`  clips discarded because the RTSP camera died during them (recorded again): ${discarded}`);
  console.log(`  failures: ${failures.length}${failures.length ? `\n    ${failures.join('\n    ')}` : ''}`);
  if (unmatchedClips) console.log(`  frames inside the shared span found in one clip only: ${unmatchedFrames} over ${unmatchedClips} clips`);
}

/** Part 2: frames lost on the Aux clip across a kill -9 of the main, one run. */
async function killRun(rtsp: Camera, run: number): Promise<{ lost: number; gap: number; present: number; expected: number; note: string }> {
  await rtsp.ensure(`before kill run ${run}`);
  const t = await startTwin(rtsp, `kill${run}`);
  try {
    const main = t.main!;
    const backup = t.backup!;
    const id = `k${run}`;
    await command(main, 'main-1', { command: 'add', line: { id, title: `Kill bench ${run}`, backup: 'on' } });
    await waitAuxLine(backup, id);
    await command(main, 'main-1', { command: 'start', line: { id } });
    await waitStatus(main, 'main-1', id, 'recording');
    await waitStatus(backup, 'backup-1', id, 'recording');
    await sleep(3000);
    await main.kill9();
    t.main = null;
    const notes: string[] = [];
    await sleep(1000);
    const orphans = ffmpegPidsFor(t.dirA);
    if (orphans.length) notes.push(`ffmpeg of the killed main still running 1 s later: ${orphans.join(', ')}`);
    await sleep(4000);
    const l = await lineOn(backup, id);
    if (l?.status !== 'recording') notes.push(`Aux line ${l?.status ?? 'absent'}${l?.reason ? ` (${l.reason})` : ''} 5 s after the kill`);
    await backup.stop();
    t.backup = null;
    const c = onlyClip(t.dirB, 'backup-1');
    // the graceful stop of the backup suspends the Aux clip: that last, open gap is expected
    const gaps = c.sidecar.gaps.filter((g) => !(g.toMs === null && /recorder restarted/.test(g.reason)));
    if (gaps.length) notes.push(`gap ledger: ${JSON.stringify(gaps)}`);
    if (new Set(c.sidecar.segments.map((s) => s.run)).size > 1) notes.push(`${new Set(c.sidecar.segments.map((s) => s.run)).size} ffmpeg runs`);
    const pts: number[] = [];
    for (const f of c.files) pts.push(...(await packetPtsTimes(f)));
    let gap = 0;
    let backwards = 0;
    for (let i = 1; i < pts.length; i++) {
      const d = pts[i] - pts[i - 1];
      if (d < 0) backwards++;
      gap = Math.max(gap, d);
    }
    if (backwards) notes.push(`timestamps go back ${backwards} times between frames`);
    const expected = pts.length ? Math.round((pts[pts.length - 1] - pts[0]) * FPS) + 1 : 0;
    return { lost: expected - pts.length, gap, present: pts.length, expected, note: notes.join('; ') };
  } finally {
    await stopTwin(t);
  }
}

export async function benchBackupLink(): Promise<void> {
  const clips = Number(process.env.BENCH_TWIN_CLIPS ?? 30);
  const seconds = Number(process.env.BENCH_TWIN_SECONDS ?? 3);
  const kills = Number(process.env.BENCH_TWIN_KILLS ?? 3);
  const t0 = Date.now();
  console.log(
    `\nsynchronous parallel recording (backup-link): main-1 and backup-1 Node-RED processes, mosquitto, one RTSP camera (640x360 H.264, 25 fps, GOP 25, shared media), Backup=On lines of ${seconds} s, 2 s segments:`,
  );
  const rtsp = await Camera.start();
  try {
    if (clips > 0) {
      console.log(`  offsets measured on the media (framemd5 of both clips aligned; + = the Aux started / stopped later), ${clips} clips:`);
      await offsets(rtsp, clips, seconds);
    }
    if (kills > 0) {
      const lost: number[] = [];
      const gaps: number[] = [];
      // a run during which the camera died is discarded and run again (at most 3 times)
      let discarded = 0;
      for (let k = 0, attempt = 0; k < kills && discarded <= 3; attempt++) {
        const label = attempt === k ? `${k}` : `${k} (attempt ${attempt})`;
        let line: string;
        try {
          const r = await killRun(rtsp, attempt);
          line = `Aux clip ${r.present} frames present, ${r.expected} expected from its first to its last pts, lost ${r.lost}, largest gap ${r.gap.toFixed(3)} s${r.note ? ` (${r.note})` : ''}`;
          if (rtsp.alive()) {
            lost.push(r.lost);
            gaps.push(r.gap);
          }
        } catch (err) {
          line = `FAILURE ${err instanceof Error ? err.message : String(err)}`;
        }
        if (!rtsp.alive()) {
          discarded++;
          console.log(`  kill run ${label}: discarded, the RTSP camera died during it (${line}); run again`);
          continue;
        }
        console.log(`  kill run ${label}: ${line}`);
        k++;
      }
      console.log(
        `  frames lost on the Aux across kill -9 of the main: [${lost.join(', ')}] (largest gap between frames: ${gaps.map((g) => g.toFixed(3)).join(', ')} s; one frame is ${(1 / FPS).toFixed(3)} s)`,
      );
    }
    if (rtsp.restarts.length) console.log(`  the RTSP camera died ${rtsp.restarts.length} times during this section and was restarted`);
  } finally {
    await rtsp.stop();
  }
  console.log(`  (backup-link section took ${Math.round((Date.now() - t0) / 1000)} s)`);
}
