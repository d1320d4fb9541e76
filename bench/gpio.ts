/**
 * Studio GPIO figures (npm run bench -- gpio), against pymodbus over TCP on loopback:
 *  - GPI edge to recording started: the input is flipped on the device at t0; a
 *    real Node-RED process polls it (gpio-in, poll interval BENCH_GPIO_POLL_MS,
 *    default 20 ms, debounce 0), a change node sends "start" to a recorder on
 *    the test pattern, and the line's "recording" event (first frame written)
 *    carries the end time. Also the part up to gpio-in's message (the poll).
 *  - Modbus requests per second through lib/studio/gpio-device (one request on the wire
 *    at a time, the queue kept full): coil writes and 16-input reads.
 * Options: BENCH_GPIO_RUNS=20, BENCH_GPIO_POLL_MS=20, BENCH_GPIO_REQUESTS=3000.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GpioDevice } from '../lib/studio/gpio-device';
import { ffmpegPidsFor, recorderSiteFlow, startNodeRed } from '../test/support/nodered';
import { startModbusServer } from '../test/support/modbus';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function edgeToRecording(runs: number, pollMs: number): Promise<{ detect: number[]; recording: number[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-bench-gpio-'));
  const modbus = await startModbusServer();
  const flows = recorderSiteFlow({ serverId: 'main-1', storageRoot: path.join(dir, 'store'), recorders: [{ channel: 1, segmentSeconds: 2 }] }).map((n) =>
    (n as { id: string }).id === 'rec1' ? { ...n, wires: [['resp1', 'col']] } : n,
  );
  flows.push(
    { id: 'dev', type: 'gpio-device', transport: 'tcp', host: '127.0.0.1', port: modbus.port, unitId: 1, pollMs, timeoutMs: 500, queueMax: 32 },
    {
      id: 'press',
      type: 'gpio-in',
      z: 'tab1',
      device: 'dev',
      area: 'discrete',
      address: 0,
      bit: '',
      debounce: 0,
      edges: 'rising',
      sendInitial: false,
      topic: 'rec',
      wires: [['startcmd', 'col']],
    },
    {
      id: 'release',
      type: 'gpio-in',
      z: 'tab1',
      device: 'dev',
      area: 'discrete',
      address: 0,
      bit: '',
      debounce: 0,
      edges: 'falling',
      sendInitial: false,
      topic: 'rec',
      wires: [['stopcmd']],
    },
    {
      id: 'startcmd',
      type: 'change',
      z: 'tab1',
      rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"command":"start","line":{"n":1}}', tot: 'json' }],
      wires: [['rec1']],
    },
    {
      id: 'stopcmd',
      type: 'change',
      z: 'tab1',
      rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"command":"stop","line":{"n":1}}', tot: 'json' }],
      wires: [['rec1']],
    },
    {
      id: 'col',
      type: 'function',
      z: 'tab1',
      outputs: 0,
      func: "const t = flow.get('t') || [];\nif (msg.topic === 'rec') t.push({ k: 'gpi', at: msg.seenAt, sent: Date.now() });\nelse if (msg.payload && msg.payload.event === 'recording') t.push({ k: 'recording', at: msg.payload.at });\nflow.set('t', t);\nreturn null;",
      wires: [],
    },
    { id: 'tin', type: 'http in', z: 'tab1', url: '/times', method: 'get', upload: false, wires: [['tout']] },
    { id: 'tout', type: 'function', z: 'tab1', outputs: 1, func: "msg.payload = flow.get('t') || [];\nflow.set('t', []);\nreturn msg;", wires: [['tresp']] },
    { id: 'tresp', type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
  );
  const p = await startNodeRed({ userDir: path.join(dir, 'nr'), flows });
  const detect: number[] = [];
  const recording: number[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      const d = await p.request('GET', '/twinrec/gpio');
      if (d.body?.[0]?.state === 'connected') break;
      await sleep(100);
    }
    for (let i = 0; i < runs; i++) {
      await p.request('POST', '/cmd/1', { command: 'add', line: { n: 1, title: `take ${i}` } });
      await p.request('GET', '/times');
      await sleep(200 + Math.random() * pollMs); // a random phase against the poll
      const t0 = Date.now();
      await modbus.set('di', 0, 1);
      let times: { k: string; at: number }[] = [];
      for (let w = 0; w < 300; w++) {
        await sleep(20);
        times = times.concat((await p.request('GET', '/times')).body as { k: string; at: number }[]);
        if (times.some((t) => t.k === 'recording')) break;
      }
      const gpi = times.find((t) => t.k === 'gpi');
      const rec = times.find((t) => t.k === 'recording');
      if (gpi) detect.push(gpi.at - t0);
      if (rec) recording.push(rec.at - t0);
      await modbus.set('di', 0, 0);
      await sleep(600);
    }
  } finally {
    await p.stop();
    for (const pid of ffmpegPidsFor(dir)) process.kill(pid, 'SIGKILL');
    await modbus.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { detect, recording };
}

async function requestsPerSecond(n: number): Promise<{ writes: number; reads: number }> {
  const modbus = await startModbusServer();
  const dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: modbus.port, queueMax: 32 });
  dev.start();
  try {
    while (dev.state !== 'connected') await sleep(20);
    const run = async (op: (i: number) => Promise<unknown>): Promise<number> => {
      let next = 0;
      const t = process.hrtime.bigint();
      // 16 callers keep the queue full; the device still gets one request at a time
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < n) await op(next++);
        }),
      );
      return n / (Number(process.hrtime.bigint() - t) / 1e9);
    };
    const writes = await run((i) => dev.writeCoil(i % 500, i % 2 === 0));
    const reads = await run((i) => dev.read('discrete', (i * 16) % 960, 16));
    return { writes, reads };
  } finally {
    await dev.stop();
    await modbus.kill();
  }
}

export async function benchGpio(): Promise<void> {
  const runs = Number(process.env.BENCH_GPIO_RUNS ?? 20);
  const pollMs = Number(process.env.BENCH_GPIO_POLL_MS ?? 20);
  const n = Number(process.env.BENCH_GPIO_REQUESTS ?? 3000);
  const lat = await edgeToRecording(runs, pollMs);
  console.log(`\nGPI edge to recording started (pymodbus over TCP, poll ${pollMs} ms, debounce 0, ${runs} presses, test-pattern recorder):`);
  console.log('| span | p50 (ms) | p95 (ms) | samples |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| edge -> gpio-in message (poll) | ${pct(lat.detect, 50)} | ${pct(lat.detect, 95)} | ${lat.detect.length} |`);
  console.log(`| edge -> recording started (first frame on disk) | ${pct(lat.recording, 50)} | ${pct(lat.recording, 95)} | ${lat.recording.length} |`);
  const rps = await requestsPerSecond(n);
  console.log(
    `\nModbus requests per second through lib/studio/gpio-device (one on the wire, queue full, ${n} each): coil writes ${Math.round(rps.writes)}/s, reads of 16 inputs ${Math.round(rps.reads)}/s`,
  );
}
