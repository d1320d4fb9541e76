/**
 * The server link against a real Eclipse Mosquitto: retained state and Last
 * Will, heartbeats, the retained settings cache re-published after a broker
 * restart, authentication, and validation of every received payload.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import path from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import { compileSchema } from '../../lib/model/commands';
import { ServerLink, topicMatches, RateLimitedLog } from '../../lib/link/server-link';
import { validateServerState } from '../../lib/link/schemas';
import { Broker, startMosquitto } from '../support/mosquitto';
import { until } from '../support/nr';

function watcher(
  url: string,
  topic: string,
  opts: mqtt.IClientOptions = {},
): Promise<{ client: MqttClient; msgs: { topic: string; text: string; retain: boolean }[] }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 200, ...opts });
    const msgs: { topic: string; text: string; retain: boolean }[] = [];
    client.on('message', (t, p, packet) => msgs.push({ topic: t, text: p.toString(), retain: !!packet.retain }));
    client.once('connect', () => client.subscribe(topic, { qos: 1 }, (err) => (err ? reject(err) : resolve({ client, msgs }))));
    client.once('error', reject);
  });
}

const quietLog = () => {
  const warnings: string[] = [];
  return { warnings, log: { info: () => undefined, warn: (m: string) => warnings.push(m) } };
};

describe('server link (MQTT) against mosquitto', function () {
  this.timeout(60000);
  let broker: Broker;
  const cleanup: (() => Promise<unknown> | void)[] = [];
  afterEach(async function () {
    while (cleanup.length) await cleanup.pop()!();
    if (broker) await broker.stop();
  });

  it('publishes a retained online state, heartbeats, and a retained offline state on a clean stop', async function () {
    broker = await startMosquitto();
    const { log } = quietLog();
    const link = new ServerLink({ url: broker.url, group: 'studio', serverId: 'main-1', role: 'main', heartbeatMs: 100 }, log);
    link.start();
    await until(() => link.state === 'connected', 'connected');
    const w = await watcher(broker.url, 'twinrec/studio/main-1/#');
    cleanup.push(() => w.client.endAsync());
    await until(() => w.msgs.filter((m) => m.topic.endsWith('/heartbeat')).length >= 3, 'three heartbeats');
    const state = w.msgs.find((m) => m.topic === 'twinrec/studio/main-1/state')!;
    assert.ok(state.retain, 'state is retained');
    const s = JSON.parse(state.text) as { state: string; role: string };
    assert.ok(validateServerState(s));
    assert.equal(s.state, 'online');
    assert.equal(s.role, 'main');
    const seqs = w.msgs.filter((m) => m.topic.endsWith('/heartbeat')).map((m) => JSON.parse(m.text).seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
      'heartbeat sequence increases',
    );
    await link.stop();
    await until(() => w.msgs.some((m) => m.topic.endsWith('/state') && JSON.parse(m.text).state === 'offline'), 'offline state');
    const off = JSON.parse(w.msgs.filter((m) => m.topic.endsWith('/state')).pop()!.text);
    assert.equal(off.cause, 'shutdown');
    // a newcomer sees the retained offline state
    const late = await watcher(broker.url, 'twinrec/studio/main-1/state');
    cleanup.push(() => late.client.endAsync());
    await until(() => late.msgs.length > 0, 'retained state for a newcomer');
    assert.equal(JSON.parse(late.msgs[0].text).state, 'offline');
  });

  it('lets the broker announce it offline (Last Will) when its process is killed with SIGKILL', async function () {
    broker = await startMosquitto();
    const w = await watcher(broker.url, 'twinrec/studio/main-2/state');
    cleanup.push(() => w.client.endAsync());
    const script = `
      const { ServerLink } = require(${JSON.stringify(path.resolve(__dirname, '../../lib/link/server-link.js'))});
      const l = new ServerLink({ url: ${JSON.stringify(broker.url)}, group: 'studio', serverId: 'main-2', role: 'main', keepaliveS: 1 }, { info() {}, warn() {} });
      l.on('connected', () => console.log('CONNECTED'));
      l.start();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanup.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    await new Promise<void>((resolve) => child.stdout!.on('data', (d) => /CONNECTED/.test(String(d)) && resolve()));
    await until(() => w.msgs.some((m) => JSON.parse(m.text).state === 'online'), 'online');
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await until(() => w.msgs.some((m) => JSON.parse(m.text).state === 'offline'), 'Last Will', 10000);
    const will = JSON.parse(w.msgs.find((m) => JSON.parse(m.text).state === 'offline')!.text);
    assert.equal(will.cause, 'lwt');
    assert.ok(Date.now() - killedAt < 5000, 'the will came within a few keepalives');
  });

  it('reconnects by itself after a broker restart and publishes its retained settings again', async function () {
    broker = await startMosquitto();
    const { log } = quietLog();
    const link = new ServerLink({ url: broker.url, group: 'studio', serverId: 'main-1', role: 'main', reconnectMinMs: 100, reconnectMaxMs: 500 }, log);
    cleanup.push(() => link.stop());
    const states: string[] = [];
    link.on('state', (s: string) => states.push(s));
    link.start();
    await until(() => link.state === 'connected', 'connected');
    link.publishRetained('twinrec/studio/main-1/settings/1', { v: 1, server: 'main-1', channel: 1, ts: 1, recorder: {}, lines: [] });
    await broker.restart(); // persistence off: the broker forgot every retained message
    await until(() => states.includes('reconnecting'), 'reconnecting');
    await until(() => link.state === 'connected', 'connected again', 15000);
    const w = await watcher(broker.url, 'twinrec/studio/main-1/+/#');
    cleanup.push(() => w.client.endAsync());
    const st = await watcher(broker.url, 'twinrec/studio/main-1/state');
    cleanup.push(() => st.client.endAsync());
    await until(() => w.msgs.some((m) => m.topic.endsWith('/settings/1') && m.retain), 'settings again, retained');
    await until(() => st.msgs.some((m) => JSON.parse(m.text).state === 'online'), 'online state again');
  });

  it('connects with the right credentials and reports wrong ones without throwing', async function () {
    broker = await startMosquitto({ users: { studio: 's3cret' } });
    const good = new ServerLink({ url: broker.url, group: 'studio', serverId: 'main-1', role: 'main', username: 'studio', password: 's3cret' }, quietLog().log);
    cleanup.push(() => good.stop());
    good.start();
    await until(() => good.state === 'connected', 'connected with credentials');
    const bad = new ServerLink(
      { url: broker.url, group: 'studio', serverId: 'main-9', role: 'main', username: 'studio', password: 'wrong', reconnectMinMs: 100 },
      quietLog().log,
    );
    cleanup.push(() => bad.stop());
    bad.start();
    await until(() => bad.state === 'reconnecting' && /refused the user name or password/.test(bad.lastError ?? ''), 'refusal reported');
    assert.ok(!(bad.lastError ?? '').includes('wrong'), 'no password in the error');
    const anon = new ServerLink({ url: broker.url, group: 'studio', serverId: 'main-8', role: 'main', reconnectMinMs: 100 }, quietLog().log);
    cleanup.push(() => anon.stop());
    anon.start();
    await until(() => anon.state === 'reconnecting' && /refused|not authorized/.test(anon.lastError ?? ''), 'anonymous refused');
  });

  it('drops malformed, invalid and oversized payloads, logging them at a limited rate', async function () {
    broker = await startMosquitto();
    const { warnings, log } = quietLog();
    const link = new ServerLink({ url: broker.url, group: 'studio', serverId: 'backup-1', role: 'backup' }, log);
    cleanup.push(() => link.stop());
    const got: unknown[] = [];
    const validate = compileSchema({ type: 'object', required: ['n'], properties: { n: { type: 'integer' } }, additionalProperties: false });
    link.subscribe('twinrec/studio/+/test', validate, (_t, p) => got.push(p));
    link.start();
    await until(() => link.state === 'connected', 'connected');
    const raw = mqtt.connect(broker.url);
    cleanup.push(() => raw.endAsync());
    await new Promise((r) => raw.once('connect', r));
    for (let i = 0; i < 50; i++) raw.publish('twinrec/studio/main-1/test', '{not json');
    for (let i = 0; i < 50; i++) raw.publish('twinrec/studio/main-1/test', JSON.stringify({ n: 'x' }));
    raw.publish('twinrec/studio/main-1/test', Buffer.alloc(5 * 1024 * 1024, 0x20));
    raw.publish('twinrec/studio/main-1/test', JSON.stringify({ n: 7 }));
    await until(() => got.length === 1, 'the one valid message');
    assert.deepEqual(got, [{ n: 7 }]);
    assert.ok(warnings.some((w) => /not JSON/.test(w)));
    assert.ok(
      warnings.some((w) => /payload.n must be a whole number/.test(w)),
      warnings.join('\n'),
    );
    assert.ok(warnings.some((w) => /larger than/.test(w)));
    assert.ok(warnings.length <= 6, `rate-limited: ${warnings.length} warnings for 101 bad messages`);
  });

  it('takes a state only from its own topic: one naming another server or group changes nothing', async function () {
    broker = await startMosquitto();
    const { warnings, log } = quietLog();
    const link = new ServerLink({ url: broker.url, group: 'studio', serverId: 'fo-1', role: 'failover' }, log);
    cleanup.push(() => link.stop());
    link.start();
    await until(() => link.state === 'connected', 'connected');
    const raw = mqtt.connect(broker.url);
    cleanup.push(() => raw.endAsync());
    await new Promise((r) => raw.once('connect', r));
    const state = (server: string, group: string, api: string) =>
      JSON.stringify({ v: 1, server, group, role: 'main', state: 'online', epoch: 0, since: 1, ts: 1, heartbeatMs: 250, api });
    // an attacker's client names main-1 (and another group) in states published on its own topic
    raw.publish('twinrec/studio/mallory/state', state('main-1', 'studio', 'http://attacker.invalid:1'), { qos: 1 });
    raw.publish('twinrec/studio/main-2/state', state('main-2', 'elsewhere', 'http://attacker.invalid:2'), { qos: 1 });
    raw.publish('twinrec/studio/main-3/state', state('main-3', 'studio', 'http://main-3.studio:8080'), { qos: 1 });
    await until(() => link.peerState('main-3') !== undefined, 'the genuine state');
    assert.equal(link.peerState('main-1'), undefined, 'no state of main-1 from another topic');
    assert.equal(link.peerState('mallory'), undefined);
    assert.equal(link.peerState('main-2'), undefined, 'no state of another group');
    assert.equal(link.peerState('main-3')!.api, 'http://main-3.studio:8080');
    assert.ok(
      warnings.some((w) => /dropped a state on twinrec\/studio\/mallory\/state: it names server main-1/.test(w)),
      warnings.join('\n'),
    );
  });

  it('cannot be kicked off the broker by a client taking a predictable id, and says online again over a stale Last Will of its own', async function () {
    broker = await startMosquitto();
    const { warnings, log } = quietLog();
    const link = new ServerLink({ url: broker.url, group: 'studio', serverId: 'main-1', role: 'main' }, log);
    cleanup.push(() => link.stop());
    let drops = 0;
    link.on('disconnected', () => drops++);
    link.start();
    await until(() => link.state === 'connected', 'connected');
    // the id the link used to have: the broker would have dropped the link for it
    const intruder = await mqtt.connectAsync(broker.url, { clientId: 'twinrec-studio-main-1', reconnectPeriod: 0 });
    cleanup.push(() => intruder.endAsync());
    // a Last Will of an earlier session of main-1, given by the broker only now
    const stale = { v: 1, server: 'main-1', group: 'studio', role: 'main', state: 'offline', cause: 'lwt', epoch: 0, since: 1, ts: 1, heartbeatMs: 250 };
    await intruder.publishAsync('twinrec/studio/main-1/state', JSON.stringify(stale), { qos: 1, retain: true });
    await until(() => warnings.some((w) => /announced this server offline \(lwt\) while it is connected/.test(w)), 'the link noticing');
    const w = await watcher(broker.url, 'twinrec/studio/main-1/state');
    cleanup.push(() => w.client.endAsync());
    await until(() => w.msgs.length > 0, 'the retained state');
    assert.equal(JSON.parse(w.msgs[w.msgs.length - 1].text).state, 'online', 'the retained state says online again');
    assert.equal(link.state, 'connected');
    assert.equal(drops, 0, 'never dropped by the broker');
  });

  it('matches MQTT wildcards and rate-limits repeated log lines', function () {
    assert.ok(topicMatches('a/+/c', 'a/b/c'));
    assert.ok(topicMatches('a/#', 'a/b/c'));
    assert.ok(!topicMatches('a/+', 'a/b/c'));
    assert.ok(!topicMatches('a/b/c', 'a/b'));
    let t = 0;
    const out: string[] = [];
    const r = new RateLimitedLog(
      (m) => out.push(m),
      1000,
      () => t,
    );
    r.say('k', 'one');
    r.say('k', 'two');
    r.say('k', 'three');
    t = 1500;
    r.say('k', 'four');
    assert.deepEqual(out, ['one', 'four (and 2 more like it in the last 1 s)']);
  });
});
