/**
 * The onvif-event node in a real Node-RED runtime (node-red-node-test-helper)
 * against our ONVIF test device: events out as messages, the status through
 * a camera that is offline, drops its subscription and comes back, a close
 * that leaves nothing running, and bad configuration.
 */
import { strict as assert } from 'node:assert';
import { createHook } from 'node:async_hooks';
import fs from 'node:fs';
import path from 'node:path';
import { Collector, helper, sleep, tmpDir } from '../support/nr';
import { FakeOnvifDevice, freePort, startOnvifDevice } from '../support/onvif-device';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const cameraNode = require('../../nodes/onvif-camera/onvif-camera');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const eventNode = require('../../nodes/onvif-event/onvif-event');

helper.init(require.resolve('node-red'));

/*
 * The helper's RED._ returns the bare key: the nodes get the English texts of
 * their locale files instead (with __x__ substitution), so statuses and errors
 * read as a user sees them, and a missing key shows.
 */
const catalog: Record<string, unknown> = {};
for (const n of ['onvif-camera', 'onvif-event']) {
  Object.assign(catalog, JSON.parse(fs.readFileSync(path.join(__dirname, '../../nodes', n, 'locales/en-US', `${n}.json`), 'utf8')));
}
function translate(key: string, sub?: Record<string, unknown>): string {
  let v: unknown = catalog;
  for (const k of key.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  if (typeof v !== 'string') return `MISSING TEXT ${key}`;
  return v.replace(/__(\w+)__/g, (m, name: string) => (sub && name in sub ? String(sub[name]) : m));
}
type NodeModule = (RED: { _: unknown }) => unknown;
const withTexts = (mod: NodeModule) => (RED: { _: unknown }) => {
  RED._ = translate;
  return mod(RED);
};
const MODULES = [withTexts(cameraNode), withTexts(eventNode)];

const USER = 'admin';
const PASS = 'secret';
const PROFILES = [{ token: 'main', name: 'Main', width: 1920, height: 1080, rtspUri: 'rtsp://127.0.0.1:8554/main' }];

interface Status {
  fill?: string;
  shape?: string;
  text?: string;
}
interface SpyCall {
  thisValue: { id: string };
  args: unknown[];
}

/** Every status the node has shown so far, as 'fill shape text' (the helper spies on Node.prototype.status). */
function statuses(id: string): string[] {
  const spy = (helper as unknown as { _NodePrototype: { status: { getCalls(): SpyCall[] } } })._NodePrototype.status;
  return spy
    .getCalls()
    .filter((c) => c.thisValue?.id === id)
    .map((c) => {
      const s = c.args[0] as Status;
      return s.fill ? `${s.fill} ${s.shape} ${s.text}` : '(cleared)';
    });
}

async function waitStatus(id: string, re: RegExp, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const all = statuses(id);
    if (all.length && re.test(all[all.length - 1])) return;
    await sleep(20);
  }
  throw new Error(`status ${re} not shown within ${ms} ms; shown: ${JSON.stringify(statuses(id))}`);
}

/** Resolves when a status matching `re` has been shown after the first `from` statuses (however briefly). */
async function waitShown(id: string, re: RegExp, from: number, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (
      statuses(id)
        .slice(from)
        .some((s) => re.test(s))
    )
      return;
    await sleep(20);
  }
  throw new Error(`status ${re} not shown within ${ms} ms; shown: ${JSON.stringify(statuses(id))}`);
}

/** Messages logged at error level by the runtime since the flow was loaded. */
function loggedErrors(): string[] {
  const spy = helper.log() as { getCalls(): { args: [{ level: number; msg: unknown }] }[] };
  return spy
    .getCalls()
    .filter((c) => c.args[0]?.level === 20)
    .map((c) => String(c.args[0].msg));
}

describe('onvif-event node', function () {
  this.timeout(60000);
  let device: FakeOnvifDevice | null = null;
  let out: Collector;
  const userDirs: string[] = []; // one per load (some tests load twice), removed after each test

  async function load(port: number, ev: Record<string, unknown> = {}, cam: Record<string, unknown> = {}): Promise<void> {
    const userDir = tmpDir('onvif-event');
    userDirs.push(userDir);
    helper.settings({ userDir });
    await helper.load(
      MODULES,
      [
        { id: 'f1', type: 'tab', label: 'test' },
        { id: 'cam', type: 'onvif-camera', host: '127.0.0.1', port, path: '/onvif/device_service', ...cam },
        { id: 'ev', type: 'onvif-event', z: 'f1', camera: 'cam', filter: '', onlyChanges: true, wires: [['out']], ...ev },
        { id: 'out', type: 'helper', z: 'f1' },
      ],
      { cam: { username: USER, password: PASS } },
    );
    out = new Collector(helper.getNode('out'));
  }

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  afterEach(async () => {
    await helper.unload();
    if (device) await device.stop();
    device = null;
    for (const d of userDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('sends the camera events that pass the filter, with msg.topic the event topic and msg.payload the event', async () => {
    device = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES });
    device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: false } });
    await load(device.port, { filter: 'motion' });
    await waitStatus('ev', /^green dot subscribed$/);
    device.emitEvent({ topic: 'tns1:Device/Trigger/DigitalInput', source: { InputToken: 'DI_0' }, data: { LogicalState: true } });
    device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    const m = await out.wait((x) => x.payload?.data?.State === true);
    assert.equal(m.topic, 'tns1:VideoSource/MotionAlarm');
    assert.deepEqual(
      { ...m.payload, utcTime: typeof m.payload.utcTime, time: typeof m.payload.time },
      {
        topic: 'tns1:VideoSource/MotionAlarm',
        kind: 'motion',
        source: { Source: 'vs0' },
        data: { State: true },
        utcTime: 'string',
        time: 'number',
        property: 'Changed',
      },
    );
    await sleep(200);
    assert.deepEqual(
      out.msgs.map((x) => `${x.topic} ${JSON.stringify(x.payload.data)}`),
      ['tns1:VideoSource/MotionAlarm {"State":true}'],
      'the initial state (only changes) and the digital input (filter) are not sent',
    );
    await waitStatus('ev', /^green dot motion State=true$/);
    assert.deepEqual(loggedErrors(), []);
  });

  it('a camera offline at deploy shows a status, logs no error, and subscribes when it appears', async () => {
    const port = await freePort();
    await load(port, { onlyChanges: false });
    await waitStatus('ev', /^red ring camera offline, retrying$/);
    await sleep(500);
    device = await startOnvifDevice({ port, username: USER, password: PASS, profiles: PROFILES });
    await waitStatus('ev', /^green dot subscribed$/, 15000);
    device.emitEvent({ topic: 'tns1:RuleEngine/TamperDetector/Tamper', source: { Rule: 'T1' }, data: { IsTamper: true } });
    const m = await out.wait((x) => x.payload?.kind === 'tamper');
    assert.equal(m.topic, 'tns1:RuleEngine/TamperDetector/Tamper');
    assert.deepEqual(loggedErrors(), [], 'an absent camera is not an error');
  });

  it('a camera that drops the subscription is resubscribed (status resubscribing, then subscribed) and events still arrive', async () => {
    device = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES });
    await load(device.port, { onlyChanges: false });
    await waitStatus('ev', /^green dot subscribed$/);
    const from = statuses('ev').length;
    device.dropSubscriptions();
    await waitShown('ev', /^yellow ring resubscribing$/, from);
    await waitShown('ev', /^green dot subscribed$/, from + 1);
    device.emitEvent({ topic: 'tns1:Device/Trigger/DigitalInput', source: { InputToken: 'DI_1' }, data: { LogicalState: true } });
    const m = await out.wait((x) => x.payload?.kind === 'digital-input' && x.payload.property === 'Changed');
    assert.deepEqual(m.payload.data, { LogicalState: true });
    assert.equal(device.requests.filter((r) => r === 'CreatePullPointSubscription').length, 2);
    assert.deepEqual(loggedErrors(), []);
  });

  it('close unsubscribes and stops pulling, with no timers or sockets left', async () => {
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type !== 'Timeout' && type !== 'TCPWRAP') return;
        const stack = new Error().stack ?? '';
        if (/lib[\\/]onvif[\\/]events\.js|onvif-event\.js|node_modules[\\/]onvif[\\/]/.test(stack)) live.set(id, type);
      },
      destroy(id) {
        live.delete(id);
      },
    });
    hook.enable();
    try {
      device = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES });
      await load(device.port);
      await waitStatus('ev', /^green dot subscribed$/);
      await sleep(100);
      assert.equal(device.subscriptions, 1);
      await helper.unload();
      assert.equal(device.subscriptions, 0, 'unsubscribed on close');
      assert.equal(device.requests.filter((r) => r === 'Unsubscribe').length, 1);
      await new Promise((r) => setImmediate(r));
      const requests = device.requests.length;
      device.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', data: { State: true } });
      await sleep(1500);
      assert.equal(device.requests.length, requests, 'no requests after close');
      assert.deepEqual(
        [...live.values()].filter((t) => t === 'Timeout' || t === 'TCPWRAP'),
        [],
        'timers or sockets left after close',
      );
    } finally {
      hook.disable();
    }
  });

  it('bad configuration: a clear error and a red status, and nothing is subscribed', async () => {
    device = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES });
    await load(device.port, { filter: 'motion, tns1:Video%Source' });
    await waitStatus('ev', /^red ring Bad topic filter: Topic filter entry "tns1:Video%Source"/);
    assert.ok(
      loggedErrors().some((e) =>
        /Bad topic filter: Topic filter entry "tns1:Video%Source" is neither an event kind \(motion, digital-input, tamper, other\) nor a topic/.test(e),
      ),
      JSON.stringify(loggedErrors()),
    );
    await helper.unload();

    await load(device.port, { camera: '' });
    await waitStatus('ev', /^red ring No ONVIF camera is configured: choose one$/);
    assert.ok(loggedErrors().includes('No ONVIF camera is configured: choose one'), JSON.stringify(loggedErrors()));
    await helper.unload();

    await load(device.port, {}, { host: '' });
    await waitStatus('ev', /^red ring The ONVIF camera's settings are wrong: The camera needs/);
    assert.ok(loggedErrors().includes("The ONVIF camera's settings are wrong: The camera needs a host name or address"), JSON.stringify(loggedErrors()));
    await sleep(300);
    assert.equal(device.requests.filter((r) => r === 'CreatePullPointSubscription').length, 0, 'nothing was subscribed');
  });
});
