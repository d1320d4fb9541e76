/**
 * gpio-device, gpio-in and gpio-out in Node-RED (node-red-node-test-helper)
 * against a pymodbus device: inputs arrive as messages, msg.payload sets a
 * coil, bad input is refused through done(err) with a red status and writes
 * nothing, and partial deploys of the flow nodes leave nothing behind.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import { helper, sleep, tmpDir, until } from '../support/nr';
import { ModbusServer, startModbusServer } from '../support/modbus';
import type { GpioDevice } from '../../lib/studio/gpio-device';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const deviceNode = require('../../nodes/gpio-device/gpio-device');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const inNode = require('../../nodes/gpio-in/gpio-in');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const outNode = require('../../nodes/gpio-out/gpio-out');

helper.init(require.resolve('node-red'));

type Status = { fill?: string; shape?: string; text?: string };
/** The statuses one node showed (the helper's spy is shared by every node: keep this node's calls). */
const statuses = (n: { status: { getCalls(): { args: [Status]; thisValue: unknown }[] } }): Status[] =>
  n.status
    .getCalls()
    .filter((c) => c.thisValue === n)
    .map((c) => c.args[0]);

const pick = (st: Status) => ({ fill: st.fill, shape: st.shape });

describe('gpio nodes (Node-RED) against pymodbus', function () {
  this.timeout(60000);
  let server: ModbusServer;
  let userDir: string;

  before(async function () {
    await new Promise<void>((r) => helper.startServer(() => r()));
  });
  after(async function () {
    await new Promise<void>((r) => helper.stopServer(() => r()));
  });
  beforeEach(async function () {
    server = await startModbusServer();
    userDir = tmpDir('gpio');
    helper.settings({ userDir });
  });
  afterEach(async function () {
    await helper.unload();
    await server.kill();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  const flow = (extra: object[] = []) => [
    { id: 'tab', type: 'tab', label: 'gpio' },
    { id: 'dev', type: 'gpio-device', transport: 'tcp', host: '127.0.0.1', port: server.port, unitId: 1, pollMs: 20, timeoutMs: 500, queueMax: 16 },
    {
      id: 'gin',
      type: 'gpio-in',
      z: 'tab',
      device: 'dev',
      area: 'discrete',
      address: 2,
      bit: '',
      debounce: 0,
      edges: 'both',
      sendInitial: false,
      topic: 'rec-button',
      wires: [['got']],
    },
    { id: 'got', type: 'helper', z: 'tab' },
    { id: 'gout', type: 'gpio-out', z: 'tab', device: 'dev', target: 'coil', address: 4, follow: '', server: '', channel: 1, invert: false, wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: ['gout', 'gin'], uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
    ...extra,
  ];

  it('sends a message when the discrete input flips, with the edge and the topic', async function () {
    await helper.load([deviceNode, inNode, outNode], flow());
    const got: Record<string, unknown>[] = [];
    helper.getNode('got').on('input', (m: Record<string, unknown>) => got.push(m));
    const dev = helper.getNode('dev').device as GpioDevice;
    await until(() => dev.state === 'connected' && dev.value({ area: 'discrete', address: 2 }) !== undefined, 'first poll');
    await server.set('di', 2, 1);
    await until(() => got.length === 1, 'the rising edge');
    assert.equal(got[0].payload, true);
    assert.equal(got[0].edge, 'rising');
    assert.equal(got[0].topic, 'rec-button');
    assert.deepEqual(pick(statuses(helper.getNode('gin')).at(-1)!), { fill: 'green', shape: 'dot' }, 'the status shows the input on');
    await server.set('di', 2, 0);
    await until(() => got.length === 2, 'the falling edge');
    assert.equal(got[1].edge, 'falling');
    assert.deepEqual(pick(statuses(helper.getNode('gin')).at(-1)!), { fill: 'green', shape: 'ring' }, 'the status shows the input off');
    assert.ok(statuses(helper.getNode('gin')).some((s) => s.fill === 'green'));
  });

  it('sets the coil from msg.payload, and refuses a payload it cannot use with done(err), a red status and no write', async function () {
    await helper.load([deviceNode, inNode, outNode], flow());
    const dev = helper.getNode('dev').device as GpioDevice;
    await until(() => dev.state === 'connected', 'connected');
    const gout = helper.getNode('gout');
    const caught: { error: { message: string } }[] = [];
    helper.getNode('caught').on('input', (m: { error: { message: string } }) => caught.push(m));
    gout.receive({ payload: 'on' });
    await until(() => dev.stats.answered > 0 && statuses(gout).some((s) => s.shape === 'dot' && s.fill === 'green'), 'coil set');
    assert.equal(await server.get('co', 4), 1);
    gout.receive({ payload: 'maybe' });
    await until(() => caught.length === 1, 'the refusal reaches Catch');
    assert.match(caught[0].error.message, /msg\.payload must be true\/false, 1\/0 or "on"\/"off" to set a coil, not "maybe"/);
    assert.equal(statuses(gout).at(-1)!.fill, 'red');
    assert.equal(await server.get('co', 4), 1, 'nothing written');
  });

  it('refuses a write while the device is broken with an offline error Catch sees, and sets the output again after the reconnect', async function () {
    await helper.load([deviceNode, inNode, outNode], flow());
    const dev = helper.getNode('dev').device as GpioDevice;
    await until(() => dev.state === 'connected', 'connected');
    const gout = helper.getNode('gout');
    gout.receive({ payload: true });
    // written on the device (not just any answer: the polls count too), so no write is in flight at the kill
    const until0 = Date.now() + 10000;
    while ((await server.get('co', 4)) !== 1) {
      assert.ok(Date.now() < until0, 'the first write did not reach the device');
      await sleep(50);
    }
    const port = server.port;
    await server.kill();
    await until(() => dev.state !== 'connected', 'broken');
    const caught: { error: { message: string } }[] = [];
    helper.getNode('caught').on('input', (m: { error: { message: string } }) => caught.push(m));
    gout.receive({ payload: true });
    await until(() => caught.length >= 1, 'refused');
    for (const c of caught) assert.match(c.error.message, /is offline/);
    await until(() => statuses(helper.getNode('gin')).some((s) => s.fill === 'red' && /broken/.test(s.text ?? '')), 'gpio-in shows broken');
    // a fresh device (all coils 0) on the same port: the node's wanted value (true, the last asked) is written again
    server = await startModbusServer(port);
    await until(() => dev.state === 'connected', 'reconnected without a redeploy', 20000);
    const until1 = Date.now() + 10000;
    while ((await server.get('co', 4)) !== 1) {
      assert.ok(Date.now() < until1, 'the wanted output was not written again after the reconnect');
      await sleep(50);
    }
  });

  it('shows a red status and an error for a node without a device or with a bad address', async function () {
    await helper.load(
      [deviceNode, inNode, outNode],
      [
        { id: 'tab', type: 'tab' },
        { id: 'gin', type: 'gpio-in', z: 'tab', device: 'nope', area: 'discrete', address: 0, debounce: 0, wires: [[]] },
        { id: 'dev', type: 'gpio-device', transport: 'tcp', host: '127.0.0.1', port: server.port },
        { id: 'gout', type: 'gpio-out', z: 'tab', device: 'dev', target: 'coil', address: 99999, follow: '', wires: [] },
        { id: 'gout2', type: 'gpio-out', z: 'tab', device: 'dev', target: 'coil', address: 1, follow: 'recording', server: '', channel: 1, wires: [] },
      ],
    );
    assert.match(statuses(helper.getNode('gin'))[0].text!, /noDevice|No GPIO device/);
    assert.match(statuses(helper.getNode('gout'))[0].text!, /errors\.point|address 99999/);
    assert.match(statuses(helper.getNode('gout2'))[0].text!, /noServer|redundancy-server/);
    let err: Error | null = null;
    helper.getNode('gout').on('call:error', (c: { args: [Error] }) => (err = c.args[0]));
    helper.getNode('gout').receive({ payload: true });
    await until(() => err !== null, 'refused');
    assert.equal(await server.get('co', 1), 0);
  });

  it('takes the device host from an environment variable, and names the variable when it is not set', async function () {
    process.env.TWINREC_T_GPIO_HOST = '127.0.0.1';
    try {
      await helper.load(
        [deviceNode, inNode, outNode],
        [
          { id: 'dev', type: 'gpio-device', transport: 'tcp', host: 'TWINREC_T_GPIO_HOST', hostType: 'env', port: server.port, unitId: 1 },
          { id: 'dev2', type: 'gpio-device', transport: 'tcp', host: 'TWINREC_T_NOT_SET', hostType: 'env', port: server.port, unitId: 1 },
        ],
      );
      const dev = helper.getNode('dev').device as GpioDevice;
      await until(() => dev.state === 'connected', 'connected to the host from the environment');
      assert.equal(helper.getNode('dev2').device, null);
      assert.match(helper.getNode('dev2').configError, /"TWINREC_T_NOT_SET", which is not set/);
    } finally {
      delete process.env.TWINREC_T_GPIO_HOST;
    }
  });

  it('leaves no listener, timer or watch behind after 200 partial deploys of the flow nodes', async function () {
    const base = flow();
    await helper.load([deviceNode, inNode, outNode], base);
    const dev = helper.getNode('dev').device as GpioDevice;
    await until(() => dev.state === 'connected', 'connected');
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await sleep(200);
    const before = { ...dev.resources(), timers: timers() };
    for (let i = 0; i < 200; i++) {
      const f = base.map((n) =>
        (n as { id: string }).id === 'gin'
          ? { ...n, debounce: i % 7, name: `press ${i}` }
          : (n as { id: string }).id === 'gout'
            ? { ...n, name: `lamp ${i}` }
            : n,
      );
      await helper.setFlows(f, 'nodes');
    }
    assert.equal(helper.getNode('dev').device, dev, 'the device (config node) was not restarted');
    await sleep(300);
    const after = { ...dev.resources(), timers: timers() };
    assert.equal(after.watches, before.watches);
    assert.equal(after.listeners, before.listeners);
    assert.equal(after.clientListeners, before.clientListeners);
    assert.ok(after.timers <= before.timers + 2, `timers ${before.timers} -> ${after.timers}`);
    assert.equal(dev.state, 'connected');
    // and the new gpio-in still works
    const got: unknown[] = [];
    helper.getNode('got').on('input', (m: { payload: unknown }) => got.push(m.payload));
    await server.set('di', 2, 1);
    await until(() => got.includes(true), 'the flip after the deploys');
  });
});
