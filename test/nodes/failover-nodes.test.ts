/**
 * The failover-watch and failback nodes in a Node-RED runtime (test helper)
 * with a real mosquitto: configuration errors show red and refuse input, bad
 * commands are refused (a Catch node sees them) and change nothing, the
 * commands work (maintenance survives a restart of the node), and a simulated
 * main that dies (its Last Will) is taken over: its channel records here from
 * the settings cache, and stops with the flows. In maintenance, it is not.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import { LINK_VERSION, topicFor } from '../../lib/link/schemas';
import { walk } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor } from '../support/nodered';
import { Collector, helper, Msg, sleep, tmpDir, until } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const watchNode = require('../../nodes/failover-watch/failover-watch');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const failbackNode = require('../../nodes/failback/failback');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { failoverControllers } = require('../../nodes/shared/registry') as typeof import('../../nodes/shared/registry');

helper.init(require.resolve('node-red'));

/*
 * The helper's RED._ returns the bare key. These tests give the nodes the
 * English texts of their locale files instead (with __x__ substitution), so
 * the statuses and errors read as a user sees them, and a missing key shows.
 */
const catalog: Record<string, unknown> = {};
for (const n of ['redundancy-server', 'failover-watch', 'failback']) {
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
const MODULES = [withTexts(serverNode), withTexts(watchNode), withTexts(failbackNode)];

interface Status {
  fill?: string;
  shape?: string;
  text?: string;
}
/** Every status a node showed (the helper spies on Node.prototype.status), oldest first. */
function statuses(id: string): Status[] {
  const spy = helper._NodePrototype.status as { getCalls(): { thisValue: { id?: string }; args: [Status] }[] };
  return spy
    .getCalls()
    .filter((c) => c.thisValue?.id === id)
    .map((c) => c.args[0]);
}
const lastStatus = (id: string): Status | undefined => statuses(id).at(-1);

const SELF = 'fo-1';
let groupN = 0;
let reqN = 0;

interface Site {
  fw: NodeLike;
  fb: NodeLike | null;
  out: Collector;
  restored: Collector;
  isolation: Collector;
  fbOk: Collector | null;
  caught: Collector;
}
interface NodeLike {
  id: string;
  receive(msg: Record<string, unknown>): void;
}

describe('failover-watch and failback nodes (node, mosquitto)', function () {
  this.timeout(120000);
  let broker: Broker;
  let userDir: string;
  let group: string;
  const clients: MqttClient[] = [];

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(async function () {
    userDir = tmpDir('fonodes');
    group = `fo${process.pid}x${++groupN}`;
    broker = await startMosquitto();
  });
  afterEach(async function () {
    await helper.unload();
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
    await broker.stop();
    for (const pid of ffmpegPidsFor(userDir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  function serverDef(extra: Record<string, unknown> = {}) {
    return {
      id: 'srv1',
      type: 'redundancy-server',
      serverId: SELF,
      group,
      role: 'failover',
      storageRoot: 'store',
      brokerUrl: broker.url,
      keepalive: 1,
      heartbeatMs: 250,
      ...extra,
    };
  }
  function watchDef(extra: Record<string, unknown> = {}) {
    return {
      id: 'fw1',
      type: 'failover-watch',
      z: 'f1',
      server: 'srv1',
      watched: 'main-1\nmain-2',
      heartbeatTimeout: 1000,
      holdDown: 1,
      capacity: 1,
      rank: 0,
      recordOnDoubt: false,
      failoverEnabled: true,
      overlap: 0,
      handbackTimeout: 5,
      wires: [['o0'], ['o1'], ['o2']],
      ...extra,
    };
  }
  const catchNodes = [
    { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];

  /** A failover server fo-1 with a failover-watch (and a manual failback node). */
  async function load(watch: Record<string, unknown> = {}, withFailback = true): Promise<Site> {
    helper.settings({ userDir });
    const flow: object[] = [
      { id: 'f1', type: 'tab', label: 'failover' },
      serverDef(),
      watchDef(watch),
      { id: 'o0', type: 'helper', z: 'f1' },
      { id: 'o1', type: 'helper', z: 'f1' },
      { id: 'o2', type: 'helper', z: 'f1' },
      ...catchNodes,
    ];
    if (withFailback)
      flow.push(
        { id: 'fb1', type: 'failback', z: 'f1', server: 'srv1', automatic: false, wires: [['fbok'], ['fbcopy']] },
        { id: 'fbok', type: 'helper', z: 'f1' },
        { id: 'fbcopy', type: 'helper', z: 'f1' },
      );
    await helper.load(MODULES, flow);
    const srv = helper.getNode('srv1');
    await until(() => srv.link?.state === 'connected', 'the failover server linked to the broker');
    return {
      fw: helper.getNode('fw1'),
      fb: withFailback ? helper.getNode('fb1') : null,
      out: new Collector(helper.getNode('o0')),
      restored: new Collector(helper.getNode('o1')),
      isolation: new Collector(helper.getNode('o2')),
      fbOk: withFailback ? new Collector(helper.getNode('fbok')) : null,
      caught: new Collector(helper.getNode('caught')),
    };
  }

  /** Send a command; resolves with the reply (output 1) or the refusal (the Catch node), whichever comes. */
  async function ask(node: NodeLike, replies: Collector, caught: Collector, payload: unknown): Promise<{ reply?: Msg; error?: Msg }> {
    const req = `q${++reqN}`;
    node.receive({ payload, req });
    let found: { reply?: Msg; error?: Msg } | undefined;
    await until(
      () => {
        const reply = replies.msgs.find((m) => m.req === req);
        const error = caught.msgs.find((m) => m.req === req);
        if (reply || error) found = { reply, error };
        return !!found;
      },
      `an answer to ${JSON.stringify(payload)} from ${node.id}`,
    );
    return found!;
  }
  async function reply(node: NodeLike, replies: Collector, caught: Collector, payload: unknown): Promise<Msg> {
    const a = await ask(node, replies, caught, payload);
    assert.ok(a.reply, `${JSON.stringify(payload)} was refused: ${a.error?.error?.message}`);
    return a.reply!;
  }
  async function refused(node: NodeLike, replies: Collector, caught: Collector, payload: unknown, re: RegExp, errorName?: string): Promise<string> {
    const a = await ask(node, replies, caught, payload);
    assert.ok(a.error, `${JSON.stringify(payload)} should be refused, got ${JSON.stringify(a.reply?.payload)}`);
    assert.ok(!a.reply, 'no reply besides the refusal');
    // the Catch node's msg.error.message is the error as a string: "<ErrorClass>: <message>"
    const m = /^([A-Za-z]\w*): ([^]*)$/.exec(a.error!.error!.message);
    assert.ok(m, `an error name and message: ${a.error!.error!.message}`);
    const [, name, message] = m;
    assert.match(message, re);
    if (errorName) assert.equal(name, errorName);
    assert.equal(a.error!.error!.source!.id, node.id, 'the Catch node names the refusing node');
    await until(() => lastStatus(node.id)?.fill === 'red' && lastStatus(node.id)?.text === message.slice(0, 60), `the refusal on the status of ${node.id}`);
    return message;
  }

  // ------------------------------------------------------------------ a simulated main server

  interface FakeMain {
    client: MqttClient;
    beat: NodeJS.Timeout;
  }
  const line = (now: number) => ({
    id: 'l-show',
    n: 1,
    group: '',
    title: 'Show',
    status: 'recording',
    start: 'manual',
    source: 'LIVE',
    inPoint: null,
    outPoint: null,
    curPoint: null,
    startTime: now - 5000,
    stopTime: null,
    duration: null,
    backup: 'off',
    attributes: {},
    clipId: 'c1',
    reason: null,
    origin: null,
    createdAt: now - 60000,
    updatedAt: now - 5000,
    startTimeTC: null,
    stopTimeTC: null,
  });
  const state = (s: 'online' | 'offline', cause?: 'lwt') => ({
    v: LINK_VERSION,
    server: 'main-1',
    group,
    role: 'main',
    state: s,
    ...(cause ? { cause } : {}),
    epoch: 0,
    since: Date.now(),
    ts: Date.now(),
    heartbeatMs: 250,
  });

  /** main-1 as its server link would be: Last Will, retained state online, heartbeats, the settings cache of channel 1. */
  async function startFakeMain(): Promise<FakeMain> {
    const client = await mqtt.connectAsync(broker.url, {
      clientId: `twinrec-${group}-main-1`,
      keepalive: 1,
      reconnectPeriod: 0,
      clean: true,
      protocolVersion: 4,
      will: { topic: topicFor(group, 'main-1', 'state'), payload: Buffer.from(JSON.stringify(state('offline', 'lwt'))), qos: 1, retain: true },
    });
    clients.push(client);
    await client.publishAsync(topicFor(group, 'main-1', 'state'), JSON.stringify(state('online')), { qos: 1, retain: true });
    const now = Date.now();
    const settings = {
      v: LINK_VERSION,
      server: 'main-1',
      channel: 1,
      ts: now,
      recorder: {
        channelName: 'Studio A',
        frameRate: '25',
        sourceType: 'testpattern',
        source: 'test pattern',
        sourceUrl: null,
        sourceLogin: false,
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        tcMode: 'zero',
        backup: null,
      },
      lines: [line(now)],
    };
    await client.publishAsync(topicFor(group, 'main-1', 'settings', 1), JSON.stringify(settings), { qos: 1, retain: true });
    let seq = 0;
    const beat = setInterval(() => {
      if (client.connected)
        client.publish(topicFor(group, 'main-1', 'heartbeat'), JSON.stringify({ v: LINK_VERSION, server: 'main-1', seq: seq++, ts: Date.now() }), { qos: 0 });
    }, 250);
    return { client, beat };
  }

  /** Watch a topic from the outside; returns every payload seen on it. */
  async function observe(topic: string): Promise<unknown[]> {
    const seen: unknown[] = [];
    const c = await mqtt.connectAsync(broker.url, { clientId: `observer-${process.pid}-${++reqN}` });
    clients.push(c);
    c.on('message', (_t, p) => seen.push(p.length ? JSON.parse(p.toString()) : null));
    await c.subscribeAsync(topic, { qos: 1 });
    return seen;
  }

  /** main-1 dies: the socket is cut without DISCONNECT, so the broker publishes its Last Will. */
  async function killFakeMain(m: FakeMain, stateSeen: unknown[]): Promise<void> {
    clearInterval(m.beat);
    m.client.stream.destroy();
    await until(
      () => stateSeen.some((s) => (s as { state?: string; cause?: string }).state === 'offline' && (s as { cause?: string }).cause === 'lwt'),
      'the Last Will of main-1 (state offline, cause lwt) on the broker',
    );
  }

  /** Wait until the failover server has seen main-1 alive and holds its channel 1 in the settings cache. */
  async function mainSeen(): Promise<void> {
    await until(
      () => {
        const c = failoverControllers.get(SELF);
        return !!c && c.cache.channels('main-1').length === 1 && c.watched()[0].status === 'ok';
      },
      'main-1 ok and its settings in the cache of fo-1',
      20000,
    );
  }

  // ------------------------------------------------------------------ 1. configuration errors

  it('shows a configuration error in red and refuses input with an error a Catch node sees', async function () {
    helper.settings({ userDir });
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['fwnosrv', { server: '' }, /^Choose a redundancy-server configuration$/],
      ['fwnobroker', { server: 'srvlocal' }, /^The server has no broker: set the broker URL in its redundancy-server configuration$/],
      ['fwbadsrv', { server: 'srvbad' }, /^The redundancy-server configuration is invalid: server id "bad id" is not valid/],
      ['fwempty', { watched: '  \n ' }, /^list at least one server to watch/],
      ['fwspace', { watched: 'main 1' }, /^probe "1" of main must be host:port/],
      ['fwdup', { watched: 'main-1\nmain-2\nmain-1' }, /^watched server "main-1" is listed twice$/],
      ['fwport', { watched: 'main-1 10.0.0.5:70000' }, /^probe "10.0.0.5:70000" of main-1 must be host:port/],
      ['fwname', { watched: '-main' }, /^watched server "-main" is not a valid server id$/],
      ['fwthree', { watched: 'main-1 10.0.0.5:1880 extra' }, /^watched server "main-1 10.0.0.5:1880 extra": give a name and at most one probe/],
      ['fwself', { watched: `main-1\n${SELF}` }, /^a failover server cannot watch itself \(fo-1\)$/],
      ['fwshort', { heartbeatTimeout: 200 }, /^The heartbeat timeout \(200 ms\) must be longer than the heartbeat interval \(250 ms\)$/],
      ['fwequal', { heartbeatTimeout: 250 }, /^The heartbeat timeout \(250 ms\) must be longer than the heartbeat interval \(250 ms\)$/],
      ['fwcap', { capacity: 0 }, /^capacity must be 1 to 100 servers$/],
      ['fwcapword', { capacity: 'two' }, /^capacity must be 1 to 100 servers$/],
      ['fwrank', { rank: 100 }, /^rank must be 0 to 99$/],
    ];
    const flow: object[] = [
      { id: 'f1', type: 'tab', label: 'config errors' },
      serverDef(),
      { id: 'srvlocal', type: 'redundancy-server', serverId: 'local-1', group, role: 'failover', storageRoot: 'store', brokerUrl: '' },
      { id: 'srvbad', type: 'redundancy-server', serverId: 'bad id', group, role: 'failover', storageRoot: 'store', brokerUrl: broker.url },
      ...bad.map(([id, extra]) => watchDef({ id, wires: [[], [], []], ...extra })),
      { id: 'replies', type: 'helper', z: 'f1' },
      ...catchNodes,
    ];
    await helper.load(MODULES, flow);
    const caught = new Collector(helper.getNode('caught'));
    const replies = new Collector(helper.getNode('replies'));
    assert.equal(failoverControllers.get(SELF), undefined, 'no failover watch runs for fo-1');
    for (const [id, , re] of bad) {
      const st = lastStatus(id);
      assert.equal(st?.fill, 'red', `${id}: red status, got ${JSON.stringify(st)}`);
      assert.equal(st?.shape, 'ring');
      const node = helper.getNode(id) as NodeLike;
      const message = await refused(node, replies, caught, { command: 'status' }, /^failover-watch is not configured: /);
      const why = message.replace(/^failover-watch is not configured: /, '');
      assert.match(why, re, `${id}: the refusal says why`);
      assert.equal(st?.text, why.slice(0, 60), `${id}: the status says why`);
    }
    assert.equal(replies.msgs.length, 0, 'no command was carried out');
  });

  it('refuses a second failover-watch node on the same server, and that node refuses input', async function () {
    helper.settings({ userDir });
    await helper.load(MODULES, [
      { id: 'f1', type: 'tab', label: 'two watches' },
      serverDef(),
      watchDef({ id: 'fwa', wires: [['replies'], [], []] }),
      watchDef({ id: 'fwb', wires: [['replies'], [], []] }),
      { id: 'replies', type: 'helper', z: 'f1' },
      ...catchNodes,
    ]);
    const caught = new Collector(helper.getNode('caught'));
    const replies = new Collector(helper.getNode('replies'));
    const red = ['fwa', 'fwb'].filter((id) => lastStatus(id)?.fill === 'red');
    assert.equal(red.length, 1, `exactly one of the two is refused: ${JSON.stringify(['fwa', 'fwb'].map(lastStatus))}`);
    const [second] = red;
    const first = second === 'fwa' ? 'fwb' : 'fwa';
    assert.match(lastStatus(second)!.text!, /already has a failover-watch node/);
    await refused(
      helper.getNode(second),
      replies,
      caught,
      { command: 'status' },
      /failover-watch is not configured: server fo-1 already has a failover-watch node; use one per server/,
    );
    await refused(helper.getNode(second), replies, caught, { command: 'maintenance', server: 'main-1', on: true }, /already has a failover-watch node/);
    const st = await reply(helper.getNode(first), replies, caught, { command: 'status' });
    assert.equal(st.payload.self, SELF);
    assert.equal(st.payload.watched[0].maintenance, false, 'the refused node changed nothing');
    assert.ok(!fs.existsSync(path.join(userDir, 'twinrec', 'maintenance.json')), 'no maintenance flag written');
  });

  it('failback without a server or without a failover-watch on its server refuses input with a clear error', async function () {
    helper.settings({ userDir });
    await helper.load(MODULES, [
      { id: 'f1', type: 'tab', label: 'failback alone' },
      serverDef(),
      { id: 'fbnowatch', type: 'failback', z: 'f1', server: 'srv1', automatic: true, wires: [['replies'], []] },
      { id: 'fbnosrv', type: 'failback', z: 'f1', server: '', automatic: false, wires: [['replies'], []] },
      { id: 'replies', type: 'helper', z: 'f1' },
      ...catchNodes,
    ]);
    const caught = new Collector(helper.getNode('caught'));
    const replies = new Collector(helper.getNode('replies'));
    assert.deepEqual(lastStatus('fbnosrv'), { fill: 'red', shape: 'ring', text: 'Choose a redundancy-server configuration' });
    assert.equal(lastStatus('fbnowatch')?.text, 'automatic', 'the failback node itself is configured');
    await refused(helper.getNode('fbnosrv'), replies, caught, { entryId: 1 }, /^Choose a redundancy-server configuration$/);
    for (const p of [{ entryId: 1 }, { server: 'main-1' }, { entryId: 1, check: true }]) {
      await refused(helper.getNode('fbnowatch'), replies, caught, p, /^There is no failover-watch node for server fo-1 in this Node-RED: add one/);
    }
    assert.equal(replies.msgs.length, 0);
  });

  // ------------------------------------------------------------------ 2. and 3. bad commands

  it('refuses bad commands to failover-watch (Catch sees them, red status) and changes nothing', async function () {
    const site = await load();
    const { fw, out, caught } = site;
    const before = await reply(fw, out, caught, { command: 'status' });
    const bad: [unknown, RegExp][] = [
      [42, /^Command refused: msg\.payload must be an object, expected \{"command": "status"\|"log"/],
      [[{ command: 'status' }], /msg\.payload must be an object/],
      [null, /msg\.payload must be an object/],
      ['{not json', /^Command refused: msg\.payload is not valid JSON/],
      [{}, /^Command refused: the command needs the field "command"/],
      [{ command: 'explode' }, /^Command refused: command must be one of: "status", "log", "drill"/],
      [{ command: 'status', extra: 1 }, /^Command refused: the command has an unknown field "extra"/],
      [{ command: 'drill' }, /^Command refused: drill needs "server"/],
      [{ command: 'drill', server: 'main-1', duration: 0 }, /^Command refused: duration /],
      [{ command: 'maintenance', server: 'main-1' }, /^Command refused: maintenance needs "on": true or false$/],
      [{ command: 'maintenance', server: 'main-1', on: 'yes' }, /^Command refused: on must be of type boolean/],
      [{ command: 'maintenance', on: true }, /^Command refused: maintenance needs "server"/],
      [{ command: 'maintenance', server: 'main 1', on: true }, /^Command refused: server /],
      [{ command: 'maintenance', server: 'nobody', on: true }, /^nobody is neither this failover server nor one it watches \(main-1, main-2\)$/],
      [{ command: 'drill', server: 'nobody' }, /^nobody is not watched by fo-1; watched: main-1, main-2$/],
      [{ command: 'mark', server: 'main-1' }, /^Command refused: mark needs "failed"/],
      [{ command: 'mark', server: 'nobody', failed: true }, /^nobody is not watched by fo-1/],
      [{ command: 'release', server: 'main-1' }, /^fo-1 does not record in place of main-1$/],
      [{ command: 'log', state: 'open' }, /^Command refused: state must be one of/],
      [{ command: 'log', limit: 0 }, /^Command refused: limit /],
    ];
    for (const [payload, re] of bad) await refused(fw, out, caught, payload, re);
    const after = await reply(fw, out, caught, { command: 'status' });
    assert.deepEqual(after.payload, before.payload, 'the watched servers are as they were');
    assert.ok(after.payload.watched.every((w: { maintenance: boolean; markedFailed: boolean }) => !w.maintenance && !w.markedFailed));
    assert.equal(after.payload.enabled, true);
    assert.ok(!fs.existsSync(path.join(userDir, 'twinrec', 'maintenance.json')), 'no maintenance flag written');
    const log = await reply(fw, out, caught, { command: 'log' });
    assert.deepEqual(log.payload, { active: [], finalized: [] }, 'no drill or takeover was started');
    assert.deepEqual(walk(path.join(userDir, 'store')), [], 'nothing recorded');
    // the red refusal gives way to the normal status again
    await until(() => lastStatus('fw1')?.fill === 'green', 'the watching status again', 10000);
    assert.equal(lastStatus('fw1')?.text, 'watching 2 (0 ok)');
  });

  it('refuses bad failback commands (Catch sees them) and changes nothing', async function () {
    const site = await load();
    const { fb, fbOk, caught, fw, out } = site;
    assert.equal(lastStatus('fb1')?.text, 'manual');
    await refused(fb!, fbOk!, caught, {}, /^Failback refused: it names no failover log entry and no server; expected \{"entryId"/, 'CommandError');
    await refused(fb!, fbOk!, caught, 'nonsense', /^Command refused: msg\.payload is not valid JSON; expected \{"entryId"/);
    await refused(fb!, fbOk!, caught, { entryId: 'x' }, /^Failback refused: entryId must be a whole number/);
    await refused(fb!, fbOk!, caught, { entryId: 0 }, /^Failback refused: entryId /);
    await refused(fb!, fbOk!, caught, { entryId: 1, how: 'now' }, /^Failback refused: the command has an unknown field "how"/);
    await refused(fb!, fbOk!, caught, { entryId: 999 }, /^Failback refused: there is no failover log entry 999; pick an active entry/, 'FailbackRefused');
    await refused(fb!, fbOk!, caught, { entryId: 999, check: true }, /^Failback refused: there is no failover log entry 999/);
    await refused(fb!, fbOk!, caught, { server: 'main-1', check: true }, /^Failback refused: the failover log has no active entry for main-1$/);
    await refused(fb!, fbOk!, caught, { server: 'main-1' }, /main-1/);
    assert.equal(fbOk!.msgs.length, 0, 'no failback reported');
    const log = await reply(fw, out, caught, { command: 'log' });
    assert.deepEqual(log.payload, { active: [], finalized: [] });
  });

  // ------------------------------------------------------------------ 4. the commands

  it('answers status and log, sets maintenance (kept across a restart of the node) and enables/disables failover', async function () {
    let site = await load();
    const st = await reply(site.fw, site.out, site.caught, { command: 'status' });
    assert.equal(st.topic, 'status');
    assert.equal(st.payload.self, SELF);
    assert.equal(st.payload.enabled, true);
    assert.equal(st.payload.isolated, false);
    assert.deepEqual(
      st.payload.watched.map((w: { server: string; status: string; maintenance: boolean; takenOver: boolean; state: unknown; lastHeartbeat: unknown }) => [
        w.server,
        w.status,
        w.maintenance,
        w.takenOver,
        w.state,
        w.lastHeartbeat,
      ]),
      [
        ['main-1', 'unknown', false, false, null, null],
        ['main-2', 'unknown', false, false, null, null],
      ],
      'the watched servers in priority order, unknown before any heartbeat',
    );
    await until(() => lastStatus('fw1')?.text === 'watching 2 (0 ok)', 'the watching status');
    assert.equal(lastStatus('fw1')?.fill, 'green');

    const log = await reply(site.fw, site.out, site.caught, { command: 'log' });
    assert.equal(log.topic, 'log');
    assert.deepEqual(log.payload, { active: [], finalized: [] });
    assert.deepEqual((await reply(site.fw, site.out, site.caught, { command: 'log', state: 'active' })).payload, { active: [] });
    assert.deepEqual((await reply(site.fw, site.out, site.caught, { command: 'log', state: 'finalized', limit: 5 })).payload, { finalized: [] });

    const on = await reply(site.fw, site.out, site.caught, { command: 'maintenance', server: 'main-2', on: true });
    assert.equal(on.topic, 'maintenance');
    assert.deepEqual(on.payload, { server: 'main-2', maintenance: true });
    const file = path.join(userDir, 'twinrec', 'maintenance.json');
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), ['main-2']);
    let watched = (await reply(site.fw, site.out, site.caught, { command: 'status' })).payload.watched;
    assert.deepEqual(
      watched.map((w: { maintenance: boolean }) => w.maintenance),
      [false, true],
    );

    const off = await reply(site.fw, site.out, site.caught, { command: 'disable' });
    assert.deepEqual(off.payload, { enabled: false });
    assert.equal((await reply(site.fw, site.out, site.caught, { command: 'status' })).payload.enabled, false);
    assert.deepEqual(lastStatus('fw1'), { fill: 'grey', shape: 'ring', text: 'failover disabled' });
    const enabled = await reply(site.fw, site.out, site.caught, { command: 'enable' });
    assert.deepEqual(enabled.payload, { enabled: true });
    assert.equal((await reply(site.fw, site.out, site.caught, { command: 'status' })).payload.enabled, true);
    assert.equal(lastStatus('fw1')?.fill, 'green');

    // maintenance of this failover server itself is allowed (it pauses takeovers)
    assert.deepEqual((await reply(site.fw, site.out, site.caught, { command: 'maintenance', server: SELF, on: true })).payload, {
      server: SELF,
      maintenance: true,
    });
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).sort(), [SELF, 'main-2'].sort());
    await reply(site.fw, site.out, site.caught, { command: 'maintenance', server: SELF, on: false });

    // a restart of the node (flows stopped and started with the same user directory) keeps the maintenance flag
    await helper.unload();
    assert.equal(failoverControllers.get(SELF), undefined, 'the controller left the registry');
    site = await load();
    watched = (await reply(site.fw, site.out, site.caught, { command: 'status' })).payload.watched;
    assert.deepEqual(
      watched.map((w: { server: string; maintenance: boolean }) => [w.server, w.maintenance]),
      [
        ['main-1', false],
        ['main-2', true],
      ],
    );
    await reply(site.fw, site.out, site.caught, { command: 'maintenance', server: 'main-2', on: false });
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), []);
    watched = (await reply(site.fw, site.out, site.caught, { command: 'status' })).payload.watched;
    assert.deepEqual(
      watched.map((w: { maintenance: boolean }) => w.maintenance),
      [false, false],
    );
    assert.equal(site.caught.msgs.length, 0, 'nothing was refused');
  });

  // ------------------------------------------------------------------ 5. and 6. a main that dies

  it('takes over a main whose Last Will says it died: records its channel from the settings cache, and stops with the flows', async function () {
    const site = await load({ watched: 'main-1' });
    const stateSeen = await observe(topicFor(group, 'main-1', 'state'));
    const takeoverSeen = await observe(topicFor(group, 'main-1', 'takeover'));
    const main = await startFakeMain();
    await mainSeen();
    await until(() => lastStatus('fw1')?.text === 'watching 1 (1 ok)', 'main-1 ok on the status');
    assert.equal(site.out.msgs.length, 0, 'nothing happens while main-1 is alive');

    await killFakeMain(main, stateSeen);
    const failed = await site.out.wait((m) => m.topic === 'failed', 20000, 'failed');
    assert.equal(failed.payload.server, 'main-1');
    assert.match(failed.payload.evidence, /no heartbeat for .* s and the broker says offline \(lwt\)/);
    const started = await site.out.wait((m) => m.topic === 'failover started', 30000, 'failover started');
    assert.ok(site.out.msgs.indexOf(failed) < site.out.msgs.indexOf(started), 'failed comes first');
    const f = started.payload;
    assert.equal(f.entry.failedServer, 'main-1');
    assert.equal(f.entry.failoverServer, SELF);
    assert.equal(f.entry.drill, false);
    assert.deepEqual(f.entry.channels, [1]);
    assert.equal(f.entry.epoch, 1, 'the takeover raised the group epoch');
    assert.deepEqual(f.channels, [{ channel: 1, started: ['l-show'], error: null }]);
    assert.equal(site.caught.msgs.length, 0, 'the takeover was complete (no error)');

    await until(() => lastStatus('fw1')?.text === 'recording for main-1', 'the "recording for main-1" status', 10000);
    assert.deepEqual(lastStatus('fw1'), { fill: 'red', shape: 'dot', text: 'recording for main-1' });
    await until(
      () =>
        takeoverSeen.some(
          (r) => (r as { active?: boolean; failoverServer?: string }).active === true && (r as { failoverServer?: string }).failoverServer === SELF,
        ),
      'the retained takeover record on the broker',
    );

    // main-1's channel records here, in main-1's place in the storage
    const chDir = path.join(userDir, 'store', 'main-1', 'ch01');
    await until(() => walk(chDir).some((p) => p.endsWith('.ts') && fs.statSync(p).size > 0), `a .ts segment under ${chDir}`, 30000);
    assert.equal(ffmpegPidsFor(userDir).length, 1, 'one ffmpeg records for main-1');

    const st = await reply(site.fw, site.out, site.caught, { command: 'status' });
    const w = st.payload.watched[0];
    assert.equal(w.server, 'main-1');
    assert.equal(w.status, 'failed');
    assert.equal(w.takenOver, true);
    assert.equal(w.markedFailed, true);
    assert.equal(w.state.state, 'offline');
    assert.equal(w.state.cause, 'lwt');
    const log = await reply(site.fw, site.out, site.caught, { command: 'log' });
    assert.equal(log.payload.active.length, 1);
    assert.equal(log.payload.active[0].id, f.entry.id);
    assert.equal(log.payload.active[0].state, 'active');
    assert.deepEqual(log.payload.finalized, []);
    // the failback node finds it: its five checks pass (a check changes nothing)
    const check = await reply(site.fb!, site.fbOk!, site.caught, { entryId: f.entry.id, check: true });
    assert.equal(check.topic, 'failback check');
    assert.equal(check.payload.ok, true);
    assert.equal(check.payload.entry.id, f.entry.id);
    assert.equal(check.payload.entry.state, 'active');

    // the flows stop: the takeover recording is suspended, no ffmpeg is left
    await helper.unload();
    await until(() => ffmpegPidsFor(userDir).length === 0, 'no ffmpeg left after the flows stopped', 15000);
    assert.equal(failoverControllers.get(SELF), undefined);
  });

  it('does not take over a main in maintenance when it dies: it stays suspect', async function () {
    const site = await load({ watched: 'main-1' });
    const stateSeen = await observe(topicFor(group, 'main-1', 'state'));
    const main = await startFakeMain();
    await mainSeen();
    assert.deepEqual((await reply(site.fw, site.out, site.caught, { command: 'maintenance', server: 'main-1', on: true })).payload, {
      server: 'main-1',
      maintenance: true,
    });

    await killFakeMain(main, stateSeen);
    // an absence: give it well over the heartbeat timeout (1 s) and the evaluation period
    await sleep(3000);
    assert.deepEqual(
      site.out.msgs.filter((m) => m.topic !== 'maintenance' && m.topic !== 'status').map((m) => m.topic),
      [],
      'no failed and no failover started',
    );
    const st = await reply(site.fw, site.out, site.caught, { command: 'status' });
    const w = st.payload.watched[0];
    assert.equal(w.status, 'suspect');
    assert.equal(w.maintenance, true);
    assert.equal(w.takenOver, false);
    assert.equal(w.state.state, 'offline');
    assert.equal(w.state.cause, 'lwt');
    assert.deepEqual((await reply(site.fw, site.out, site.caught, { command: 'log' })).payload, { active: [], finalized: [] });
    assert.equal(ffmpegPidsFor(userDir).length, 0, 'nothing records');
    assert.deepEqual(walk(path.join(userDir, 'store')), []);
    assert.equal(lastStatus('fw1')?.fill, 'green');
  });
});
