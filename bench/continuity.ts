/**
 * `npm run bench -- continuity`: how fast a failover server tells the failures
 * a site really has, on real processes (mosquitto, two Node-RED processes,
 * ffmpeg recording a test pattern on the main), with the group's secret so the
 * failover server asks the main's liveness directly (lib/peer/liveness.ts):
 *
 *   kill -9 of the main              detection (kill -> 'failed'), first failover media
 *   main frozen (SIGSTOP of Node-RED and its ffmpeg), the address named in the watch
 *   main frozen, the address the main announces
 *   network of the main cut (a network namespace, its veth pair down)
 *   main paused 0.5 s (SIGSTOP, SIGCONT)   failovers (goal 0)
 *   full deploy of unchanged flows   ffmpeg replaced (goal 0: the recording goes on), failovers
 *   two busy loops and heavy disk writes for 10 min   false failovers (goal 0)
 *   broker stopped for 30 s          failovers (goal 0), the main's media going on
 *
 * Each detection row runs TWINREC_BENCH_CONTINUITY_RUNS times (default 10);
 * the pause row as many times; the broker row TWINREC_BENCH_CONTINUITY_BROKER_RUNS
 * (default 2, 30 s each); the load row TWINREC_BENCH_CONTINUITY_LOAD_S seconds
 * (default 600). TWINREC_BENCH_CONTINUITY_ONLY=named,announced,cut,quiet picks rows. After each failure the main is killed if need be,
 * started again on the same port and failed back (automatic, hold-down 1 s).
 * A benchmark: it prints figures and asserts nothing.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ev, events, freezeServer, thawServer, walk } from '../test/support/failover';
import { Broker, startMosquitto } from '../test/support/mosquitto';
import { Netns } from '../test/support/netns';
import { fmt, goal } from './failover';
import { failoverSiteFlow, ffmpegPidsFor, freePort, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../test/support/nodered';

const SECRET = 'continuity-bench-group-secret';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Site {
  broker!: Broker;
  main: NodeRedProcess | null = null;
  fo: NodeRedProcess | null = null;
  mainPort = 0;
  readonly mainDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-bench-cont-main-'));
  readonly foDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-bench-cont-fo-'));
  frozen: number[] = [];

  constructor(
    private readonly watched: (port: number, nsAddr: string) => string,
    /** The main in a network namespace of its own (to be cut off), joined to the host by a veth pair. */
    readonly netns: Netns | null = null,
  ) {}

  async start(): Promise<void> {
    if (this.netns) this.netns.create();
    this.broker = await startMosquitto(this.netns ? { listen: ['127.0.0.1', this.netns.hostAddr] } : {});
    this.mainPort = await freePort();
    this.fo = await startNodeRed({
      userDir: this.foDir,
      flows: failoverSiteFlow({
        serverId: 'fo-1',
        storageRoot: 'store',
        brokerUrl: this.broker.url,
        watched: this.watched(this.mainPort, this.netns?.nsAddr ?? ''),
        holdDown: 1,
        overlap: 1,
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    await this.startMain();
    await this.command({ command: 'add', line: { id: 'air', title: 'On Air' } });
    await this.command({ command: 'start', line: { id: 'air' } });
    await this.ready();
  }

  async startMain(): Promise<void> {
    const ns = this.netns;
    this.main = await startNodeRed({
      userDir: this.mainDir,
      port: this.mainPort,
      ...(ns ? { host: '0.0.0.0', reachAt: ns.nsAddr, wrap: ns.wrap } : {}),
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: ns ? `mqtt://${ns.hostAddr}:${this.broker.port}` : this.broker.url,
        recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 2 }],
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
  }

  async command(cmd: object): Promise<void> {
    const r = await this.main!.request('POST', '/cmd/1', cmd);
    if (r.status !== 200) throw new Error(`${JSON.stringify(cmd)}: ${r.status} ${JSON.stringify(r.body)}`);
  }

  async status(): Promise<{ status: string; takenOver: boolean; direct: { answering: boolean | null } }> {
    const r = await this.fo!.request('POST', '/fw', { command: 'status' });
    return r.body.watched[0];
  }

  /** The main records, the failover server has it ok, not taken over, and hears its liveness. */
  async ready(ms = 60000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const w = await this.status();
      const list = (await this.main!.request('POST', '/cmd/1', { command: 'list' })).body;
      if (w.status === 'ok' && !w.takenOver && w.direct.answering === true && JSON.stringify(list).includes('"recording"')) return;
      if (Date.now() > end) throw new Error(`not ready after ${ms / 1000} s: ${JSON.stringify(w)}`);
      await sleep(200);
    }
  }

  async waitEvent(from: number, pred: (e: Ev) => boolean, what: string, ms = 20000): Promise<Ev> {
    const end = Date.now() + ms;
    for (;;) {
      const ev = (await events(this.fo!)).slice(from).find(pred);
      if (ev) return ev;
      if (Date.now() > end) throw new Error(`no ${what} within ${ms / 1000} s`);
      await sleep(20);
    }
  }

  foSegments(): string[] {
    return walk(path.join(this.foDir, 'store', 'main-1')).filter((f) => f.endsWith('.ts') && fs.statSync(f).size > 0);
  }

  mainSegments(): number {
    return walk(path.join(this.mainDir, 'store', 'main-1')).filter((f) => f.endsWith('.ts')).length;
  }

  /** After a failure: the main killed (frozen or not), started again, failed back. */
  async restore(): Promise<void> {
    this.netns?.heal();
    if (this.main) {
      await this.main.kill9();
      thawServer(this.frozen);
      this.frozen = [];
    }
    for (const pid of ffmpegPidsFor(this.mainDir)) process.kill(pid, 'SIGKILL');
    await this.startMain();
    await this.ready();
  }

  async stop(): Promise<void> {
    thawServer(this.frozen);
    for (const p of [this.main, this.fo]) if (p) await p.stop().catch(() => undefined);
    for (const d of [this.mainDir, this.foDir]) for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
    await this.broker?.stop().catch(() => undefined);
    this.netns?.destroy();
    for (const d of [this.mainDir, this.foDir]) fs.rmSync(d, { recursive: true, force: true });
  }
}

/** A failure that should fail over: the time to 'failed' and to the first failover media. */
async function failureRun(site: Site, fail: () => Promise<void> | void): Promise<{ detection: number; media: number; evidence: string }> {
  const from = (await events(site.fo!)).length;
  const before = new Set(site.foSegments());
  await sleep(1000);
  const at = Date.now();
  await fail();
  const failed = await site.waitEvent(from, (e) => e.topic === 'failed', "'failed'");
  let mediaAt = 0;
  const end = Date.now() + 20000;
  while (!mediaAt) {
    if (site.foSegments().some((f) => !before.has(f))) mediaAt = Date.now();
    else if (Date.now() > end) throw new Error('no failover media within 20 s');
    else await sleep(5);
  }
  return { detection: failed.payload.at - at, media: mediaAt - at, evidence: String(failed.payload.evidence) };
}

/** One failure row: `runs` times fail the main, measure, restore it; print detection and first failover media. */
async function failureRow(site: Site, name: string, fail: () => Promise<void> | void, runs: number): Promise<void> {
  const det: number[] = [];
  const media: number[] = [];
  let evidence = '';
  for (let i = 0; i < runs; i++) {
    try {
      const r = await failureRun(site, fail);
      det.push(r.detection);
      media.push(r.media);
      evidence = r.evidence;
    } catch (err) {
      console.log(`    ${name}, run ${i}: FAILURE ${(err as Error).message}`);
    }
    await site.restore();
  }
  console.log(`  ${name}:`);
  console.log(`    detection: ${fmt(det)} -> ${goal(det, 1000)} (evidence: ${evidence})`);
  console.log(`    first failover media: ${fmt(media)} -> ${goal(media, 2000)}`);
}

async function detectionRows(label: string, watched: (port: number, nsAddr: string) => string, runs: number, withKill: boolean): Promise<void> {
  const site = new Site(watched);
  try {
    await site.start();
    if (withKill) await failureRow(site, 'kill -9 of the main', () => void site.main!.kill9(), runs);
    await failureRow(site, `main frozen (SIGSTOP of Node-RED and its ffmpeg), ${label}`, () => void (site.frozen = freezeServer(site.main!)), runs);
  } finally {
    await site.stop();
  }
}

/** The main's network cut (its namespace's veth pair down, both directions): detection and first failover media. */
async function cutRow(runs: number): Promise<void> {
  const site = new Site((port, nsAddr) => `main-1 ${nsAddr}:${port}`, new Netns());
  try {
    await site.start();
    await failureRow(site, 'network of the main cut (network namespace, veth down), the address named in the watch', () => site.netns!.cut(), runs);
  } finally {
    await site.stop();
  }
}

async function noFailoverRows(runs: number, brokerRuns: number, loadS: number): Promise<void> {
  const site = new Site((port) => `main-1 127.0.0.1:${port}`);
  try {
    await site.start();
    const from = (await events(site.fo!)).length;
    for (let i = 0; i < runs; i++) {
      site.frozen = freezeServer(site.main!);
      await sleep(500);
      thawServer(site.frozen);
      site.frozen = [];
      await sleep(2000);
    }
    const paused = (await events(site.fo!)).slice(from).filter((e) => e.topic === 'failed').length;
    console.log(`  main paused 0.5 s (SIGSTOP, SIGCONT), ${runs} times: ${paused} failovers (goal 0)`);
    // full deploys of unchanged flows on the main while it records: the same ffmpeg goes on (no frame lost)
    const pids = ffmpegPidsFor(site.mainDir).join(',');
    let changed = 0;
    const deployMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      const flows = (await site.main!.request('GET', '/flows')).body;
      const t = Date.now();
      await site.main!.request('POST', '/flows', flows, { 'Node-RED-Deployment-Type': 'full' });
      for (;;) {
        const r = await site.main!.request('POST', '/cmd/1', { command: 'list' }).catch(() => ({ status: 0, body: null }));
        if (r.status === 200) break;
        await sleep(20);
      }
      deployMs.push(Date.now() - t);
      if (ffmpegPidsFor(site.mainDir).join(',') !== pids) changed++;
      await sleep(1000);
    }
    const lines = (await site.main!.request('POST', '/cmd/1', { command: 'list' })).body.lines as { id: string; status: string }[];
    const deployFailovers = (await events(site.fo!)).slice(from).filter((e) => e.topic === 'failed').length - paused;
    console.log(
      `  full deploy of unchanged flows on the main, ${runs} times: ffmpeg replaced ${changed} times (0: no frame lost), line ${lines.find((l) => l.id === 'air')?.status}, ${deployFailovers} failovers; deploy to recorder answering: ${fmt(deployMs)}`,
    );
    // the main's machine at full CPU (two busy loops, one a core) and heavy disk writes beside the recording
    if (loadS > 0) {
      const f = (await events(site.fo!)).length;
      const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
      const junk = path.join(site.mainDir, 'junk.bin');
      const disk = spawn('sh', ['-c', `while :; do dd if=/dev/zero of='${junk}' bs=1M count=512 conv=fsync status=none; rm -f '${junk}'; done`], {
        stdio: 'ignore',
      });
      const suspects: number[] = [];
      const end = Date.now() + loadS * 1000;
      try {
        while (Date.now() < end) {
          await sleep(1000);
          const w = await site.status().catch(() => null);
          if (w && w.status !== 'ok') suspects.push(Date.now());
        }
      } finally {
        for (const h of hogs) h.kill('SIGKILL');
        disk.kill('SIGKILL');
        fs.rmSync(junk, { force: true });
      }
      const failed = (await events(site.fo!)).slice(f).filter((e) => e.topic === 'failed').length;
      console.log(
        `  ${loadS} s with two busy loops and dd writing 512 MiB with fsync in a loop: ${failed} false failovers (goal 0); fo-1 saw main-1 not ok in ${suspects.length} of its checks (once a second)`,
      );
      if ((await site.status()).takenOver) await site.restore();
    }
    let outageFailovers = 0;
    const growth: number[] = [];
    for (let i = 0; i < brokerRuns; i++) {
      const f = (await events(site.fo!)).length;
      const segs = site.mainSegments();
      await site.broker.halt();
      await sleep(30000);
      await site.broker.resume();
      await sleep(5000);
      outageFailovers += (await events(site.fo!)).slice(f).filter((e) => e.topic === 'failed').length;
      growth.push(site.mainSegments() - segs);
      if ((await site.status()).takenOver) await site.restore();
    }
    console.log(
      `  broker stopped for 30 s, ${brokerRuns} times: ${outageFailovers} failovers (goal 0); the main's 2 s segments went on: ${growth.join(', ')} new in each 35 s`,
    );
  } finally {
    await site.stop();
  }
}

export async function benchContinuity(): Promise<void> {
  const runs = Number(process.env.TWINREC_BENCH_CONTINUITY_RUNS ?? 10);
  const brokerRuns = Number(process.env.TWINREC_BENCH_CONTINUITY_BROKER_RUNS ?? 2);
  const loadS = Number(process.env.TWINREC_BENCH_CONTINUITY_LOAD_S ?? 600);
  const only = (process.env.TWINREC_BENCH_CONTINUITY_ONLY ?? '').split(',').filter(Boolean);
  const want = (row: string) => !only.length || only.includes(row);
  const t0 = Date.now();
  console.log(
    `\ncontinuity: mosquitto, main-1 (test pattern, 2 s segments) and fo-1, with the group secret (liveness over UDP every 200 ms), heartbeat 250 ms, timeout 750 ms, keepalive 1 s; ${runs} runs a row:`,
  );
  if (want('named')) await detectionRows('the address named in the watch', (port) => `main-1 127.0.0.1:${port}`, runs, true);
  if (want('announced')) await detectionRows('the address the main announces', () => 'main-1', runs, false);
  if (want('cut')) await cutRow(runs);
  if (want('quiet')) await noFailoverRows(runs, brokerRuns, loadS);
  console.log(`  (continuity section took ${Math.round((Date.now() - t0) / 1000)} s)`);
}
