/**
 * Bench of failover: how long after a kill -9 of a main the failover server
 * (a) has detected the failure and (b) has media of the failed main's channels
 * on its storage. Real processes: mosquitto, one GStreamer RTSP camera, the
 * failover server fo-1 (failover-watch + failback, failoverSiteFlow) and main-1
 * (recorderSiteFlow: channel 1 records the RTSP camera, sourceType 'url', so the
 * failover server's ffmpeg connects to RTSP as in production; channel 2, unless
 * TWINREC_BENCH_FAILOVER_TESTPATTERN=0, records ffmpeg's test pattern, encoded).
 * Not a test: it prints figures and asserts nothing.
 *
 * mosquitto, the camera and fo-1 run for the whole section; per run:
 *   1. main-1 records (first run: lines added and started; later runs: the line
 *      it took back at failback) and fo-1's settings cache holds its lines as recording;
 *   2. kill -9 of main-1 (Date.now() read just before and just after SIGKILL is sent);
 *   3. detection time = payload.at of failover-watch's 'failed' event (the
 *      detector's clock on fo-1, same machine, UTC ms) minus the kill time;
 *   4. media time = the time the bench first saw a new .ts segment under
 *      <fo-1 userDir>/store/main-1/chNN/ with size > 0 (tight poll), minus the
 *      kill time; the breakdown notes when the clip folder and the (still empty)
 *      segment file were first seen and when fo-1's ffmpeg process started
 *      (/proc/<pid>/stat starttime, 10 ms resolution);
 *   5. main-1 restarted (same user directory), automatic failback after the
 *      hold-down (1 s), until failover-watch's status shows main-1 ok and not taken over.
 *
 * The test camera (GStreamer's RTSP server) sends a keyframe to each new client
 * about 120 ms after PLAY, whatever its GOP: a camera that does not waits for
 * its next keyframe before the first frame can be written (stream copy), up to a
 * GOP more.
 *
 * Options (environment): TWINREC_BENCH_FAILOVER_RUNS=20, TWINREC_BENCH_FAILOVER_POLL_MS=5,
 * TWINREC_BENCH_FAILOVER_TESTPATTERN=1 (0: channel 1 only), TWINREC_BENCH_FAILOVER_GOP=25
 * (the camera's keyframe interval in frames, 25 fps).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Broker, startMosquitto } from '../test/support/mosquitto';
import { alive, failoverSiteFlow, ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../test/support/nodered';
import { RtspServerHandle, startRtspServer } from '../test/support/rtsp';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const DETECTION_GOAL_MS = 1000;
const MEDIA_GOAL_MS = 2000;
const HOLD_DOWN_S = 1;
const OVERLAP_S = 1;
const MAIN = 'main-1';
const FO = 'fo-1';

interface Ev {
  node: string;
  port: number;
  topic: string;
  payload: any;
  at: number;
}

interface ChannelSpec {
  channel: number;
  lineId: string;
  title: string;
  label: string;
}

/** When the bench first saw each step of a channel's first takeover segment (epoch ms). */
interface MediaSeen {
  folderAt: number | null;
  fileAt: number | null;
  nonEmptyAt: number | null;
  file: string | null;
  /** fo-1's ffmpeg for this channel: process start (epoch ms, from /proc), when found. */
  ffmpegStartAt: number | null;
  /** Its command line. */
  ffmpegArgs: string | null;
}

interface RunResult {
  killAt: number;
  killSentAt: number;
  detectionMs: number;
  /** The 'failed' event's own `at` (when the flow's function node stored it) minus the kill. */
  eventAtMs: number;
  evidence: string;
  /** Failover log entry opened (takeover begins), minus the kill. */
  takeoverStartMs: number | null;
  /** 'failover started' event (every channel armed, ffmpeg spawned), minus the kill. */
  takeoverArmedMs: number | null;
  media: Map<number, MediaSeen>;
  notes: string[];
}

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `twinrec-bench-fo-${prefix}-`));
}

/** Nearest-rank percentile of a sorted list. */
function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function stats(values: number[]): { n: number; p50: number; p95: number; max: number; min: number } {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN };
}

export function fmt(values: number[]): string {
  if (!values.length) return 'no run measured';
  const st = stats(values);
  return `p50 ${st.p50} ms, p95 ${st.p95} ms, max ${st.max} ms (min ${st.min} ms) over ${st.n} runs`;
}

export function goal(values: number[], goalMs: number): string {
  if (!values.length) return 'goal not checked (no run measured)';
  const within = values.filter((v) => v <= goalMs).length;
  const st = stats(values);
  const met = st.max <= goalMs;
  return `${met ? 'goal met' : 'goal missed'} (within ${goalMs} ms: ${within}/${values.length} runs${met ? '' : `; p50 ${st.p50} ms, max ${st.max} ms`})`;
}

/** Epoch ms at which a process started, from /proc/<pid>/stat starttime (clock ticks since boot). */
function processStartEpochMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(f[19]); // field 22 of stat, counted after "pid (comm)"
    const uptimeS = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    const now = Date.now();
    return Math.round(now - (uptimeS - startTicks / CLK_TCK) * 1000);
  } catch {
    return null;
  }
}

function chDir(foDir: string, channel: number): string {
  return path.join(foDir, 'store', MAIN, `ch${String(channel).padStart(2, '0')}`);
}

/** Clip folders under <fo>/store/main-1/chNN/<day>/. */
function clipFolders(root: string): string[] {
  const out: string[] = [];
  let days: string[];
  try {
    days = fs.readdirSync(root);
  } catch {
    return out;
  }
  for (const d of days) {
    try {
      for (const f of fs.readdirSync(path.join(root, d))) out.push(path.join(root, d, f));
    } catch {
      /* not a folder, or gone */
    }
  }
  return out;
}

/**
 * Watches fo-1's storage for the first segment of a new takeover clip of each
 * channel, polling every pollMs with synchronous calls (a few readdir/stat).
 */
class MediaWatch {
  readonly seen = new Map<number, MediaSeen>();
  private known = new Map<number, Set<string>>();
  private timer: NodeJS.Timeout | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly foDir: string,
    private readonly channels: number[],
    private readonly pollMs: number,
  ) {
    for (const ch of channels) {
      this.known.set(ch, new Set(clipFolders(chDir(foDir, ch))));
      this.seen.set(ch, { folderAt: null, fileAt: null, nonEmptyAt: null, file: null, ffmpegStartAt: null, ffmpegArgs: null });
    }
  }

  start(): void {
    const tick = () => {
      this.poll();
      if (this.done()) {
        this.timer = null;
        for (const w of this.waiters.splice(0)) w();
        return;
      }
      this.timer = setTimeout(tick, this.pollMs);
    };
    tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  done(): boolean {
    return this.channels.every((ch) => this.seen.get(ch)!.nonEmptyAt !== null);
  }

  /** Resolves when every channel has a non-empty segment, or after ms (then what is seen so far). */
  wait(ms: number): Promise<void> {
    if (this.done()) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push(done);
    });
  }

  private poll(): void {
    for (const ch of this.channels) {
      const s = this.seen.get(ch)!;
      if (s.nonEmptyAt !== null) continue;
      const known = this.known.get(ch)!;
      for (const folder of clipFolders(chDir(this.foDir, ch))) {
        if (known.has(folder)) continue;
        const now = Date.now();
        if (s.folderAt === null) s.folderAt = now;
        let files: string[];
        try {
          files = fs.readdirSync(folder).filter((f) => f.endsWith('.ts'));
        } catch {
          continue;
        }
        for (const f of files) {
          if (s.fileAt === null) {
            s.fileAt = now;
            s.file = path.join(folder, f);
          }
          try {
            if (fs.statSync(path.join(folder, f)).size > 0) {
              s.nonEmptyAt = Date.now();
              s.file = path.join(folder, f);
              break;
            }
          } catch {
            /* gone */
          }
        }
        if (s.nonEmptyAt !== null) break;
      }
      if (s.ffmpegStartAt === null && s.folderAt !== null) {
        // fo-1's ffmpeg of this channel: its command line names the channel's folder
        const pid = ffmpegPidsFor(chDir(this.foDir, ch) + path.sep)[0];
        if (pid) {
          s.ffmpegStartAt = processStartEpochMs(pid);
          try {
            s.ffmpegArgs = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
          } catch {
            /* gone */
          }
        }
      }
    }
  }
}

class Site {
  broker: Broker | null = null;
  rtsp: (RtspServerHandle & { restarts: number }) | null = null;
  fo: NodeRedProcess | null = null;
  main: NodeRedProcess | null = null;
  readonly foDir = tmp('fo');
  readonly mainDir = tmp('main');

  constructor(
    readonly channels: ChannelSpec[],
    readonly gop: number,
  ) {}

  mainFlow(): object[] {
    const recorders: Record<string, unknown>[] = [{ channel: 1, sourceType: 'url', url: this.rtsp!.url, segmentSeconds: 2 }];
    if (this.channels.some((c) => c.channel === 2)) recorders.push({ channel: 2, sourceType: 'testpattern', segmentSeconds: 2 });
    return recorderSiteFlow({ serverId: MAIN, storageRoot: 'store', brokerUrl: this.broker!.url, recorders });
  }

  async start(): Promise<void> {
    this.broker = await startMosquitto();
    this.rtsp = await startRtspServer({ fps: '25', gop: this.gop });
    this.fo = await startNodeRed({
      userDir: this.foDir,
      flows: failoverSiteFlow({ serverId: FO, storageRoot: 'store', brokerUrl: this.broker.url, watched: MAIN, holdDown: HOLD_DOWN_S, overlap: OVERLAP_S }),
    });
    await this.startMain();
  }

  async startMain(): Promise<NodeRedProcess> {
    this.main = await startNodeRed({ userDir: this.mainDir, flows: this.mainFlow() });
    return this.main;
  }

  /** Everything stopped by PID, ffmpeg of both user directories killed, temp directories removed. */
  async stop(): Promise<void> {
    for (const k of ['main', 'fo'] as const) {
      const p = this[k];
      this[k] = null;
      try {
        if (p) await p.stop();
      } catch (err) {
        console.error(`  could not stop Node-RED ${p?.pid}: ${String(err)}`);
      }
    }
    for (const d of [this.mainDir, this.foDir]) {
      for (const pid of ffmpegPidsFor(d)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    try {
      await this.rtsp?.stop();
    } catch (err) {
      console.error(`  could not stop the RTSP camera: ${String(err)}`);
    }
    this.rtsp = null;
    try {
      await this.broker?.stop();
    } catch (err) {
      console.error(`  could not stop mosquitto: ${String(err)}`);
    }
    this.broker = null;
    for (const d of [this.mainDir, this.foDir]) fs.rmSync(d, { recursive: true, force: true });
  }

  /** Synchronous last resort (signal handler): SIGKILL every process of the site by PID. */
  killAllSync(): void {
    const pids = [this.main?.pid, this.fo?.pid, this.rtsp?.pid, this.broker?.pid, ...ffmpegPidsFor(this.mainDir), ...ffmpegPidsFor(this.foDir)];
    for (const pid of pids) {
      if (!pid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const d of [this.mainDir, this.foDir, this.broker?.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  }

  async events(): Promise<Ev[]> {
    const r = await this.fo!.request('GET', '/events');
    return r.body as Ev[];
  }

  async waitEvent(from: number, pred: (e: Ev) => boolean, what: string, ms: number): Promise<Ev> {
    const end = Date.now() + ms;
    for (;;) {
      const ev = (await this.events()).slice(from).find(pred);
      if (ev) return ev;
      if (Date.now() > end)
        throw new Error(
          `no ${what} within ${ms / 1000} s; events since the kill: ${JSON.stringify((await this.events()).slice(from).map((e) => `${e.node}:${e.port}:${e.topic}`))}`,
        );
      await sleep(50);
    }
  }

  async lineStatus(channel: number, id: string): Promise<string | undefined> {
    const r = await this.main!.request('POST', `/cmd/${channel}`, { command: 'list' });
    return (r.body?.lines as { id: string; status: string }[] | undefined)?.find((l) => l.id === id)?.status;
  }

  async waitLine(channel: number, id: string, status: string, ms = 30000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const s = await this.lineStatus(channel, id);
      if (s === status) return;
      if (Date.now() > end) throw new Error(`line ${id} on ${MAIN} channel ${channel} is ${s ?? 'absent'} after ${ms / 1000} s, not ${status}`);
      await sleep(200);
    }
  }

  /** fo-1's settings cache holds the line as recording (as in test/e2e/failover.test.ts). */
  async waitCached(lineId: string, ms = 15000): Promise<void> {
    const file = path.join(this.foDir, 'twinrec', 'settings-cache', `${MAIN}.json`);
    const end = Date.now() + ms;
    for (;;) {
      try {
        const list = JSON.parse(fs.readFileSync(file, 'utf8')) as { lines: { id: string; status: string }[] }[];
        if (list.some((c) => c.lines.some((l) => l.id === lineId && l.status === 'recording'))) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > end) throw new Error(`the settings cache of ${FO} has no recording line ${lineId} of ${MAIN}`);
      await sleep(100);
    }
  }

  async watchStatus(): Promise<{ status: string; takenOver: boolean; markedFailed: boolean } | undefined> {
    const r = await this.fo!.request('POST', '/fw', { command: 'status' });
    return (r.body?.watched as { server: string; status: string; takenOver: boolean; markedFailed: boolean }[] | undefined)?.find((w) => w.server === MAIN);
  }

  /** failover-watch says main-1 is ok and neither taken over nor marked failed. */
  async waitNotTakenOver(ms = 60000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const w = await this.watchStatus();
      if (w && w.status === 'ok' && !w.takenOver && !w.markedFailed) return;
      if (Date.now() > end) throw new Error(`${FO} still reports ${MAIN} as ${JSON.stringify(w)} after ${ms / 1000} s`);
      await sleep(200);
    }
  }
}

async function command(p: NodeRedProcess, channel: number, cmd: object): Promise<void> {
  const r = await p.request('POST', `/cmd/${channel}`, cmd);
  if (r.status !== 200) throw new Error(`${JSON.stringify(cmd)} on ${MAIN} channel ${channel}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** main-1 records every channel's line and fo-1 has them cached as recording. */
async function ready(site: Site): Promise<void> {
  for (const c of site.channels) await site.waitLine(c.channel, c.lineId, 'recording');
  for (const c of site.channels) await site.waitCached(c.lineId);
  await site.waitNotTakenOver();
}

async function oneRun(site: Site, pollMs: number): Promise<RunResult> {
  const notes: string[] = [];
  const from = (await site.events()).length;
  const watch = new MediaWatch(
    site.foDir,
    site.channels.map((c) => c.channel),
    pollMs,
  );
  const main = site.main!;
  const restartsBefore = site.rtsp!.restarts;
  // kill -9: Date.now() just before and just after SIGKILL is sent (kill9() sends it synchronously)
  const killAt = Date.now();
  const gone = main.kill9();
  const killSentAt = Date.now();
  site.main = null;
  watch.start();
  await gone;
  try {
    const failed = await site.waitEvent(from, (e) => e.topic === 'failed' && e.payload?.server === MAIN, "failover-watch 'failed' event", 15000);
    const started = await site.waitEvent(
      from,
      (e) => e.topic === 'failover started' && e.payload?.entry?.failedServer === MAIN,
      "'failover started' event",
      20000,
    );
    for (const c of started.payload.channels as { channel: number; started: string[]; error: string | null }[]) {
      if (c.error) notes.push(`channel ${c.channel}: takeover error ${c.error}`);
    }
    await watch.wait(20000);
    for (const c of site.channels) {
      if (watch.seen.get(c.channel)!.nonEmptyAt === null) notes.push(`channel ${c.channel}: no non-empty segment on ${FO} within 20 s`);
    }
    if (site.rtsp!.restarts !== restartsBefore) notes.push('the RTSP camera died and was restarted during this run');
    return {
      killAt,
      killSentAt,
      detectionMs: failed.payload.at - killAt,
      eventAtMs: failed.at - killAt,
      evidence: String(failed.payload.evidence ?? ''),
      takeoverStartMs: typeof started.payload?.entry?.startedAt === 'number' ? started.payload.entry.startedAt - killAt : null,
      takeoverArmedMs: started.at - killAt,
      media: watch.seen,
      notes,
    };
  } finally {
    watch.stop();
  }
}

/** After a run: main-1 back (same user directory), automatic failback, main-1 records again. */
async function failBack(site: Site): Promise<void> {
  try {
    if (!site.main) await site.startMain();
    await site.waitNotTakenOver(60000);
    await ready(site);
  } catch (err) {
    for (const [who, p] of [
      [MAIN, site.main],
      [FO, site.fo],
    ] as const) {
      if (p) console.log(`  ---- ${who} (pid ${p.pid}${alive(p.pid) ? '' : ', not running'}) log, tail:\n${p.log().slice(-4000)}`);
    }
    throw err;
  }
}

export async function benchFailover(): Promise<void> {
  const runs = Number(process.env.TWINREC_BENCH_FAILOVER_RUNS ?? 20);
  const pollMs = Number(process.env.TWINREC_BENCH_FAILOVER_POLL_MS ?? 5);
  const withPattern = process.env.TWINREC_BENCH_FAILOVER_TESTPATTERN !== '0';
  const gop = Number(process.env.TWINREC_BENCH_FAILOVER_GOP ?? 25);
  if (!(runs > 0)) return;
  const t0 = Date.now();
  const channels: ChannelSpec[] = [
    { channel: 1, lineId: 'news', title: 'Bench News', label: `channel 1, RTSP camera (GStreamer, 640x360 H.264, 25 fps, GOP ${gop}), stream copy` },
  ];
  if (withPattern)
    channels.push({
      channel: 2,
      lineId: 'promo',
      title: 'Bench Promo',
      label: 'channel 2, ffmpeg test pattern (lavfi testsrc2 + drawtext, libx264 ultrafast)',
    });
  console.log(
    `\nfailover after kill -9 of a main: mosquitto, ${MAIN} and ${FO} Node-RED processes (heartbeat 250 ms, heartbeat timeout 750 ms, MQTT keepalive 1 s, hold-down ${HOLD_DOWN_S} s, overlap ${OVERLAP_S} s), 2 s segments, ${runs} runs:`,
  );
  const site = new Site(channels, gop);
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`\n  ${sig}: killing the failover bench's processes`);
    site.killAllSync();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: RunResult[] = [];
  const failures: string[] = [];
  let discarded = 0;
  try {
    await site.start();
    for (const c of channels) {
      await command(site.main!, c.channel, { command: 'add', line: { id: c.lineId, title: c.title } });
      await command(site.main!, c.channel, { command: 'start', line: { id: c.lineId } });
    }
    await ready(site);
    const setupS = Math.round((Date.now() - t0) / 1000);
    for (let i = 0, attempt = 0; i < runs && discarded <= 5; attempt++) {
      const runStart = Date.now();
      await sleep(1000); // main-1 records steadily before the kill
      let r: RunResult | null = null;
      try {
        r = await oneRun(site, pollMs);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        failures.push(`run ${i}: ${msg}`);
        console.log(`  run ${i}: FAILURE ${msg}`);
        i++;
      }
      await failBack(site); // throws (ends the section) when the site cannot be brought back
      if (!r) continue;
      const rel = (t: number | null) => (t === null ? '-' : `${t - r!.killAt}`);
      const parts = channels.map((c) => {
        const m = r!.media.get(c.channel)!;
        return `ch${c.channel} ffmpeg started ${rel(m.ffmpegStartAt)}, folder ${rel(m.folderAt)}, segment file ${rel(m.fileAt)}, non-empty ${rel(m.nonEmptyAt)}`;
      });
      const line = `detection ${r.detectionMs} ms; takeover began ${r.takeoverStartMs ?? '-'}, armed ${r.takeoverArmedMs ?? '-'}; ${parts.join('; ')} (ms after the kill; SIGKILL sent within ${r.killSentAt - r.killAt} ms)${r.notes.length ? ` [${r.notes.join('; ')}]` : ''}; cycle ${Math.round((Date.now() - runStart) / 100) / 10} s`;
      if (r.notes.some((n) => /RTSP camera died/.test(n))) {
        discarded++;
        console.log(`  run ${i} (attempt ${attempt}): discarded, ${line}`);
        continue;
      }
      console.log(`  run ${i}: ${line}`);
      results.push(r);
      i++;
    }
    const det = results.map((r) => r.detectionMs);
    const evAt = results.map((r) => r.eventAtMs);
    console.log(
      `  setup (mosquitto, camera, ${FO}, ${MAIN} recording): ${setupS} s; ${results.length} runs measured, ${failures.length} failed, ${discarded} discarded (camera died)`,
    );
    console.log(`  detection (kill -9 -> payload.at of the 'failed' event, the detector's decision): ${fmt(det)} -> ${goal(det, DETECTION_GOAL_MS)}`);
    console.log(
      `    ('failed' event as the flow stored it, its own at: ${fmt(evAt)}; evidence of the last run: ${results[results.length - 1]?.evidence ?? '-'})`,
    );
    for (const c of channels) {
      const ms = results
        .map((r) => r.media.get(c.channel)!.nonEmptyAt)
        .map((t, k) => (t === null ? null : t - results[k].killAt))
        .filter((v): v is number => v !== null);
      console.log(`  media, ${c.label}:`);
      const missing = results.length - ms.length;
      console.log(
        `    kill -9 -> first takeover segment seen non-empty on ${FO}'s storage (polled every ${pollMs} ms): ${fmt(ms)} -> ${goal(ms, MEDIA_GOAL_MS)}${missing ? `; ${missing} runs had no media within 20 s` : ''}`,
      );
      const phase = (name: string, a: (r: RunResult) => number | null, b: (r: RunResult) => number | null) => {
        const v = results.map((r) => (a(r) !== null && b(r) !== null ? b(r)! - a(r)! : null)).filter((x): x is number => x !== null);
        if (v.length) console.log(`      ${name}: p50 ${stats(v).p50} ms, p95 ${stats(v).p95} ms, max ${stats(v).max} ms`);
      };
      const m = (r: RunResult) => r.media.get(c.channel)!;
      phase(
        'kill -> failed (detection)',
        (r) => r.killAt,
        (r) => r.killAt + r.detectionMs,
      );
      phase(
        'failed -> takeover began (log entry opened)',
        (r) => r.killAt + r.detectionMs,
        (r) => (r.takeoverStartMs === null ? null : r.killAt + r.takeoverStartMs),
      );
      phase(
        'takeover began -> ffmpeg process started (/proc starttime)',
        (r) => (r.takeoverStartMs === null ? null : r.killAt + r.takeoverStartMs),
        (r) => m(r).ffmpegStartAt,
      );
      phase(
        'ffmpeg started -> segment file created (connect, probe, header)',
        (r) => m(r).ffmpegStartAt,
        (r) => m(r).fileAt,
      );
      phase(
        'segment file created -> non-empty (first bytes flushed)',
        (r) => m(r).fileAt,
        (r) => m(r).nonEmptyAt,
      );
      const args = results
        .map((r) => m(r).ffmpegArgs)
        .filter(Boolean)
        .pop();
      if (args) console.log(`      ${FO}'s ffmpeg: ${args}`);
    }
    if (failures.length) console.log(`  failures:\n    ${failures.join('\n    ')}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await site.stop();
  }
  console.log(`  (failover section took ${Math.round((Date.now() - t0) / 1000)} s)`);
}
