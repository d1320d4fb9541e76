/**
 * Studio GPIO end to end: a real Node-RED process, a real recorder (ffmpeg) and
 * a Modbus device we did not write (pymodbus over TCP). A GPI flip starts the
 * recording and the REC tally coil follows it; a killed device shows broken and
 * the nodes reconnect to it with no redeploy; 1 000 partial deploys leave no
 * growth in listeners, timers or memory.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { NodeRedProcess, ffmpegPidsFor, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { ModbusServer, startModbusServer } from '../support/modbus';
import { sleep, tmpDir } from '../support/nr';

interface DeviceInfo {
  state: string;
  error: string | null;
  queueDepth: number;
  stats: { connects: number };
  resources: { timers: number; clientListeners: number; watches: number; listeners: number; queue: number };
}
interface Probe {
  heapUsed: number;
  rss: number;
  resources: Record<string, number>;
}

async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, what: string, ms = 30000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('studio GPIO end to end (Node-RED process, recorder, pymodbus)', function () {
  this.timeout(600000);
  let dir = '';
  let p: NodeRedProcess | null = null;
  let modbus: ModbusServer | null = null;
  const argsBefore = process.env.TWINREC_NODE_ARGS;
  const probeBefore = process.env.TWINREC_PROBE_FILE;

  beforeEach(async function () {
    dir = tmpDir('gpio-e2e');
    modbus = await startModbusServer();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && p) console.log(p.log().slice(-3000));
    if (p) await p.stop();
    p = null;
    for (const pid of ffmpegPidsFor(dir)) process.kill(pid, 'SIGKILL');
    if (modbus) await modbus.kill();
    modbus = null;
    fs.rmSync(dir, { recursive: true, force: true });
    if (argsBefore === undefined) delete process.env.TWINREC_NODE_ARGS;
    else process.env.TWINREC_NODE_ARGS = argsBefore;
    if (probeBefore === undefined) delete process.env.TWINREC_PROBE_FILE;
    else process.env.TWINREC_PROBE_FILE = probeBefore;
  });

  const site = (port: number) => [
    ...recorderSiteFlow({ serverId: 'main-1', storageRoot: path.join(dir, 'store'), recorders: [{ channel: 1 }] }),
    { id: 'dev', type: 'gpio-device', transport: 'tcp', host: '127.0.0.1', port, unitId: 1, pollMs: 20, timeoutMs: 500, queueMax: 32 },
    {
      id: 'press',
      type: 'gpio-in',
      z: 'tab1',
      name: 'REC button',
      device: 'dev',
      area: 'discrete',
      address: 0,
      bit: '',
      debounce: 20,
      edges: 'rising',
      sendInitial: false,
      topic: 'rec',
      wires: [['startcmd']],
    },
    {
      id: 'release',
      type: 'gpio-in',
      z: 'tab1',
      device: 'dev',
      area: 'discrete',
      address: 0,
      bit: '',
      debounce: 20,
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
      id: 'tally',
      type: 'gpio-out',
      z: 'tab1',
      name: 'REC tally',
      device: 'dev',
      target: 'coil',
      address: 0,
      follow: 'recording',
      server: 'srv1',
      channel: 1,
      invert: false,
      wires: [],
    },
  ];

  const device = async (): Promise<DeviceInfo> => {
    const r = await p!.request('GET', '/twinrec/gpio');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 1);
    return r.body[0] as DeviceInfo;
  };
  const lineStatus = async (): Promise<string> => {
    const r = await p!.request('POST', '/cmd/1', { command: 'list' });
    return (r.body.lines ?? [])[0]?.status ?? 'none';
  };

  it('a GPI flip starts and stops the recording and the tally coil follows; a killed device shows broken and reconnects with no redeploy', async function () {
    const port = modbus!.port;
    p = await startNodeRed({ userDir: path.join(dir, 'nr'), flows: site(port) });
    const add = await p.request('POST', '/cmd/1', { command: 'add', line: { title: 'GPI take' } });
    assert.equal(add.status, 200, JSON.stringify(add.body));
    await waitFor(async () => (await device()).state === 'connected', 'device connected');
    assert.equal(await modbus!.get('co', 0), 0);

    await modbus!.set('di', 0, 1);
    await waitFor(async () => (await modbus!.get('co', 0)) === 1, 'the tally lit by the recording');
    assert.equal(await lineStatus(), 'recording');
    await modbus!.set('di', 0, 0);
    await waitFor(async () => (await modbus!.get('co', 0)) === 0, 'the tally off after the stop');
    assert.equal(await lineStatus(), 'stopped');

    // the device dies: broken, with a reason, and no crash
    await modbus!.kill();
    modbus = null;
    const broken = await waitFor(async () => {
      const d = await device();
      return d.state === 'broken' || d.state === 'reconnecting' ? d : null;
    }, 'broken');
    assert.ok(broken.error, 'a reason is shown');
    // it comes back on the same port: the nodes reconnect by themselves
    modbus = await startModbusServer(port);
    const back = await waitFor(
      async () => {
        const d = await device();
        return d.state === 'connected' ? d : null;
      },
      'reconnected without a redeploy',
      30000,
    );
    assert.ok(back.stats.connects >= 2);
    // a new take on the same line is refused (stopped lines do not restart), so add a second line and press again
    const add2 = await p.request('POST', '/cmd/1', { command: 'add', line: { n: 1, title: 'GPI take 2' } });
    assert.equal(add2.status, 200, JSON.stringify(add2.body));
    await modbus.set('di', 0, 1);
    await waitFor(async () => (await modbus!.get('co', 0)) === 1, 'the tally lit again after the reconnect');
    await modbus.set('di', 0, 0);
    await waitFor(async () => (await modbus!.get('co', 0)) === 0, 'the tally off again');
    assert.doesNotMatch(p.log(), /Uncaught|TypeError|ReferenceError/);
  });

  it('1 000 partial deploys of the GPIO flow nodes leave no growth in listeners, timers or memory', async function () {
    const probe = path.join(dir, 'probe.json');
    process.env.TWINREC_NODE_ARGS = `${argsBefore ?? ''} --expose-gc --require ${path.join(__dirname, '..', 'support', 'probe.js')}`.trim();
    process.env.TWINREC_PROBE_FILE = probe;
    const flows = site(modbus!.port);
    p = await startNodeRed({ userDir: path.join(dir, 'nr'), flows });
    await waitFor(async () => (await device()).state === 'connected', 'device connected');
    const read = async (): Promise<Probe> => {
      fs.rmSync(probe, { force: true });
      fs.writeFileSync(`${probe}.req`, '');
      return waitFor(async () => (fs.existsSync(probe) ? (JSON.parse(fs.readFileSync(probe, 'utf8')) as Probe) : null), 'probe', 10000);
    };
    const deploy = async (i: number) => {
      const f = flows.map((n) => {
        const id = (n as { id: string }).id;
        if (id === 'press') return { ...n, name: `REC button ${i}`, debounce: 20 + (i % 5) };
        if (id === 'tally') return { ...n, name: `REC tally ${i}` };
        return n;
      });
      const r = await p!.request('POST', '/flows', f, { 'Node-RED-Deployment-Type': 'nodes' }).catch((e: Error) => {
        throw new Error(`deploy ${i} to port ${p!.port}: ${e.message}`);
      });
      assert.equal(r.status, 204, JSON.stringify(r.body));
    };
    for (let i = 0; i < 100; i++) await deploy(i); // warm up: caches, JIT
    await sleep(500);
    const d0 = await device();
    const m0 = await read();
    for (let i = 100; i < 1000; i++) await deploy(i);
    await sleep(500);
    const d1 = await device();
    const m1 = await read();
    const timers = (m: Probe) => m.resources.Timeout ?? 0;
    const growth = (m1.heapUsed - m0.heapUsed) / 1048576;
    console.log(
      `      after 100 and after 1000 partial deploys: heap ${(m0.heapUsed / 1048576).toFixed(1)} -> ${(m1.heapUsed / 1048576).toFixed(1)} MiB, timers ${timers(m0)} -> ${timers(m1)}, device listeners ${d0.resources.listeners} -> ${d1.resources.listeners}`,
    );
    assert.equal(d1.state, 'connected');
    assert.equal(d1.stats.connects, 1, 'the device connection was never rebuilt');
    // listeners and watches are exact; the poll timer and the one request in flight come and go with the poll cycle
    const fixed = (r: DeviceInfo['resources']) => ({ listeners: r.listeners, clientListeners: r.clientListeners, watches: r.watches });
    assert.deepEqual(fixed(d1.resources), fixed(d0.resources));
    assert.ok(d1.resources.timers <= 1 && d1.resources.queue <= 1, JSON.stringify(d1.resources));
    assert.ok(timers(m1) <= timers(m0) + 2, `timers ${timers(m0)} -> ${timers(m1)}`);
    // 900 deploys: a leak of a node's closure per deploy would be several MiB; allow GC noise only
    assert.ok(growth < 4, `heap grew ${growth.toFixed(1)} MiB over 900 partial deploys`);
    // and the flow still works
    await p.request('POST', '/cmd/1', { command: 'add', line: { title: 'after the deploys' } });
    await modbus!.set('di', 0, 1);
    await waitFor(async () => (await modbus!.get('co', 0)) === 1, 'the tally after 1000 deploys');
  });
});
