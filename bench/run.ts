/**
 * `npm run bench`: figures for the README, printed as a table. Not a test: it
 * asserts nothing and tests never depend on it.
 *
 *  1. Validated commands per second through one recorder node (embedded
 *     Node-RED runtime, no test spies): update and add commands, each validated
 *     by ajv, applied to the rec-list, committed to SQLite and answered.
 *  2. CPU and memory of the Node-RED process and of all its ffmpeg processes
 *     with 1, 8, 32 and 64 channels recording one RTSP stream (GStreamer's RTSP
 *     server, shared media) in stream copy.
 *  3. Synchronous parallel recording (backup-link.ts): main/Aux start and stop
 *     offsets, frames lost on the Aux across a kill -9 of the main.
 *  4. Failover (failover.ts): detection time and time to the first takeover
 *     media on the failover server after a kill -9 of a main.
 *  4b. Continuity (continuity.ts): detection of a kill -9 and of a frozen main
 *     on the direct path (liveness), failovers after short pauses and a broker outage.
 *  5. Copy (copy.ts): material copy and the transfer manager
 *     throughput on 2 GB of segments against cp of the same files on the same
 *     disk, and the bytes copied twice after a kill -9 of the copier.
 *  6. Studio GPIO (gpio.ts): GPI edge to recording started p50/p95 with the
 *     poll interval, and Modbus requests per second.
 *
 * Sections: all by default; name some on the command line to run only those
 * (commands, channels, twin, failover, continuity, copy, gpio), e.g. `node bench/run.js failover`
 * or `npm run bench -- failover`.
 * Options (environment): BENCH_CHANNELS="1,8,32,64", BENCH_SAMPLE_S=20, BENCH_COMMANDS=20000,
 * BENCH_TWIN=0 (skip 3), BENCH_TWIN_CLIPS=30, BENCH_TWIN_SECONDS=3, BENCH_TWIN_KILLS=3,
 * BENCH_FAILOVER=0 (skip 4), TWINREC_BENCH_FAILOVER_RUNS=20 (see failover.ts for the others),
 * BENCH_CONTINUITY=0 (skip 4b), TWINREC_BENCH_CONTINUITY_RUNS=10, TWINREC_BENCH_CONTINUITY_BROKER_RUNS=2,
 * BENCH_COPY=0 (skip 5), BENCH_COPY_MB=2048, BENCH_COPY_SEGMENT_MB=4, BENCH_COPY_KILLS=3, BENCH_COPY_BREAKDOWN=1 (see copy.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareUserDir } from '../demo/site';
import { ffmpegInfo } from '../lib/media/ffmpeg';
import { ffmpegPidsFor, recorderSiteFlow, startNodeRed } from '../test/support/nodered';
import { startRtspServer } from '../test/support/rtsp';
import { benchBackupLink } from './backup-link';
import { benchCopy } from './copy';
import { benchContinuity } from './continuity';
import { benchFailover } from './failover';
import { benchGpio } from './gpio';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return 0;
  }
}

function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function machine(): string {
  const cpu = os.cpus();
  return `${cpu.length} x ${cpu[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}, ffmpeg ${ffmpegInfo().version}`;
}

async function benchCommands(n: number): Promise<{ update: number; add: number; list: number }> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-bench-cmd-'));
  const flows = [
    { id: 'tab1', type: 'tab', label: 'bench' },
    { id: 'srv1', type: 'redundancy-server', group: 'bench', serverId: 'bench-1', role: 'main', storageRoot: 'store', durability: 'NORMAL' },
    {
      id: 'rec1',
      type: 'recorder',
      z: 'tab1',
      server: 'srv1',
      channel: 1,
      channelName: 'bench',
      frameRate: '25',
      sourceType: 'testpattern',
      url: '',
      camera: '',
      segmentSeconds: 6,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'zero',
      backupServer: '',
      backupChannel: '',
      startTimeout: 15,
      stallTimeout: 6,
      wires: [[]],
    },
  ];
  prepareUserDir({ userDir, port: 0, flows, logLevel: 'warn' });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require('node-red');
  RED.init(null, {
    userDir,
    flowFile: 'flows.json',
    httpAdminRoot: false,
    httpNodeRoot: false,
    logging: { console: { level: 'warn' } },
    credentialSecret: 'bench',
  });
  await RED.start();
  for (let i = 0; i < 100 && !RED.nodes.getNode('rec1'); i++) await sleep(50);
  const node = RED.nodes.getNode('rec1');
  let completed = 0;
  let failed = 0;
  RED.hooks.add('onComplete.bench', (ev: { node: { id: string }; error?: unknown }) => {
    if (ev.node.id !== 'rec1') return;
    completed++;
    if (ev.error) failed++;
  });
  const run = async (count: number, make: (i: number) => unknown): Promise<number> => {
    completed = 0;
    failed = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      node.receive({ payload: make(i) });
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    while (completed < count) await new Promise((r) => setImmediate(r));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (failed) throw new Error(`${failed} commands failed in the bench`);
    return count / s;
  };
  const add = await run(Math.min(n, 2000), (i) => ({ command: 'add', line: { id: `b${i}`, title: `Bench line ${i}`, attributes: { i } } }));
  const update = await run(n, (i) => ({ command: 'update', line: { id: `b${i % 100}`, attributes: { v: i } } }));
  const list = await run(Math.min(n, 500), () => ({ command: 'list' }));
  RED.hooks.remove('onComplete.bench');
  await RED.stop();
  fs.rmSync(userDir, { recursive: true, force: true });
  return { update, add, list };
}

interface ChannelFigures {
  channels: number;
  nodeRedCpu: number;
  nodeRedRss: number;
  ffmpegCpu: number;
  ffmpegRss: number;
  ffmpegCount: number;
}

async function benchChannels(channels: number, rtspUrl: string, sampleS: number): Promise<ChannelFigures> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-bench-ch-'));
  const recorders = Array.from({ length: channels }, (_, i) => ({ channel: i + 1, sourceType: 'url', url: rtspUrl, segmentSeconds: 6, startTimeout: 30 }));
  const nr = await startNodeRed({ userDir, flows: recorderSiteFlow({ serverId: 'bench-1', storageRoot: 'store', recorders }) });
  try {
    // start in batches of 8, each batch recording before the next (one camera serving 64 new clients at once drops some)
    const waitRecording = async (ch: number) => {
      const until = Date.now() + 120000;
      for (;;) {
        const r = await nr.request('POST', `/cmd/${ch}`, { command: 'list' });
        if (r.body.lines?.[0]?.status === 'recording') return;
        if (Date.now() > until) throw new Error(`channel ${ch} not recording: ${JSON.stringify(r.body)}`);
        await sleep(250);
      }
    };
    for (let first = 1; first <= channels; first += 8) {
      const batch = Array.from({ length: Math.min(8, channels - first + 1) }, (_, i) => first + i);
      for (const ch of batch) {
        const a = await nr.request('POST', `/cmd/${ch}`, { command: 'add', line: { id: 'l', title: `Bench ch${ch}` } });
        if (a.status !== 200) throw new Error(`add on ${ch}: ${JSON.stringify(a.body)}`);
        const s = await nr.request('POST', `/cmd/${ch}`, { command: 'start', line: { id: 'l' } });
        if (s.status !== 200) throw new Error(`start on ${ch}: ${JSON.stringify(s.body)}`);
      }
      for (const ch of batch) await waitRecording(ch);
    }
    await sleep(5000); // settle
    const pids = ffmpegPidsFor(userDir);
    const nr0 = cpuTicks(nr.pid);
    const ff0 = pids.map(cpuTicks);
    const t0 = Date.now();
    await sleep(sampleS * 1000);
    const secs = (Date.now() - t0) / 1000;
    const nrCpu = ((cpuTicks(nr.pid) - nr0) / CLK_TCK / secs) * 100;
    const ffCpu = (pids.reduce((sum, p, i) => sum + (cpuTicks(p) - ff0[i]), 0) / CLK_TCK / secs) * 100;
    const fig: ChannelFigures = {
      channels,
      nodeRedCpu: nrCpu,
      nodeRedRss: rssMB(nr.pid),
      ffmpegCpu: ffCpu,
      ffmpegRss: pids.reduce((s, p) => s + rssMB(p), 0),
      ffmpegCount: pids.length,
    };
    for (let ch = 1; ch <= channels; ch++) await nr.request('POST', `/cmd/${ch}`, { command: 'stop' });
    return fig;
  } finally {
    await nr.stop();
    for (const pid of ffmpegPidsFor(userDir)) process.kill(pid, 'SIGKILL');
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

const SECTIONS = ['commands', 'channels', 'twin', 'failover', 'continuity', 'copy', 'gpio'];

async function main(): Promise<void> {
  const named = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = named.filter((a) => !SECTIONS.includes(a));
  if (unknown.length) throw new Error(`unknown bench section ${unknown.join(', ')}; sections: ${SECTIONS.join(', ')}`);
  const want = (s: string) => named.length === 0 || named.includes(s);
  const channelSets = (process.env.BENCH_CHANNELS ?? '1,8,32,64').split(',').filter(Boolean).map(Number);
  const sampleS = Number(process.env.BENCH_SAMPLE_S ?? 20);
  const commands = Number(process.env.BENCH_COMMANDS ?? 20000);
  console.log(`machine: ${machine()}`);
  console.log(`date: ${new Date().toISOString()}`);

  if (want('commands')) {
    const cmd = await benchCommands(commands);
    console.log('\nvalidated commands per second through one recorder node (ajv + rec-list + SQLite commit + answer):');
    console.log(`  update: ${Math.round(cmd.update)}/s   add: ${Math.round(cmd.add)}/s   list of 2000 lines: ${Math.round(cmd.list)}/s`);
  }

  if (want('channels') && channelSets.length) {
    console.log(`\nchannels recording one RTSP stream (1280x720 H.264, 25 fps) in stream copy, ${sampleS} s sample:`);
    console.log('| channels | Node-RED CPU (% of one core) | Node-RED RSS (MB) | ffmpeg processes | all ffmpeg CPU (% of one core) | all ffmpeg RSS (MB) |');
    console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const n of channelSets) {
      // a fresh camera for each run, so one run cannot disturb the next
      const rtsp = await startRtspServer({ fps: '25', gop: 25, size: '1280x720' });
      try {
        const f = await benchChannels(n, rtsp.url, sampleS);
        console.log(
          `| ${f.channels} | ${f.nodeRedCpu.toFixed(1)} | ${f.nodeRedRss.toFixed(0)} | ${f.ffmpegCount} | ${f.ffmpegCpu.toFixed(1)} | ${f.ffmpegRss.toFixed(0)} |`,
        );
      } finally {
        await rtsp.stop();
      }
    }
  }

  // ---- 3. synchronous parallel recording (backup-link), see backup-link.ts; BENCH_TWIN=0 skips it ----
  if (want('twin') && process.env.BENCH_TWIN !== '0') await benchBackupLink();

  // ---- 4. failover after kill -9 of a main, see failover.ts; BENCH_FAILOVER=0 skips it ----
  if (want('failover') && process.env.BENCH_FAILOVER !== '0') await benchFailover();

  // ---- 4b. continuity: kill -9, a frozen main, a short pause, a broker outage, see continuity.ts ----
  if (want('continuity') && process.env.BENCH_CONTINUITY !== '0') await benchContinuity();

  // ---- 5. material copy (and transfer manager) vs cp, bytes copied twice after a kill -9, see copy.ts; BENCH_COPY=0 skips it ----
  if (want('copy') && process.env.BENCH_COPY !== '0') await benchCopy();

  // ---- 6. studio GPIO: GPI edge to recording started, Modbus requests per second, see gpio.ts ----
  if (want('gpio')) await benchGpio();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
