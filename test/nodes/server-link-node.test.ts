/**
 * The redundancy-server config node's link in a Node-RED runtime with a real
 * mosquitto: recorders publish their settings and rec-list retained (the
 * settings cache), every user shows when the link is down, and the server says
 * goodbye (retained offline) when its flows stop.
 */
import { strict as assert } from 'node:assert';
import mqtt, { MqttClient } from 'mqtt';
import { Collector, helper, tmpDir, until } from '../support/nr';
import { Broker, makeClientCert, startMosquitto } from '../support/mosquitto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');

helper.init(require.resolve('node-red'));

describe('redundancy-server link (node, mosquitto)', function () {
  this.timeout(60000);
  let broker: Broker;
  let userDir: string;
  let watcher: MqttClient | null = null;
  const retained = new Map<string, unknown>();

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(async function () {
    userDir = tmpDir('link');
    broker = await startMosquitto({ users: { studio: 'pw-1' } });
    retained.clear();
  });
  afterEach(async function () {
    await helper.unload();
    if (watcher) await watcher.endAsync();
    watcher = null;
    await broker.stop();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  function flow(brokerUrl: string) {
    return [
      { id: 'f1', type: 'tab', label: 'link' },
      {
        id: 'srv',
        type: 'redundancy-server',
        serverId: 'main-1',
        group: 'studio',
        role: 'main',
        storageRoot: 'store',
        brokerUrl,
        keepalive: 1,
        heartbeatMs: 200,
      },
      {
        id: 'rec',
        type: 'recorder',
        z: 'f1',
        server: 'srv',
        channel: 3,
        channelName: 'Studio C',
        frameRate: '25',
        sourceType: 'testpattern',
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        tcMode: 'zero',
        backupServer: 'backup-1',
        backupChannel: 1,
        wires: [['out']],
      },
      { id: 'out', type: 'helper', z: 'f1' },
    ];
  }

  async function watch() {
    watcher = mqtt.connect(broker.url, { username: 'studio', password: 'pw-1', reconnectPeriod: 200 });
    watcher.on('message', (t, p) => retained.set(t, p.length ? JSON.parse(p.toString()) : null));
    await new Promise<void>((resolve) => watcher!.once('connect', () => watcher!.subscribe('twinrec/#', { qos: 1 }, () => resolve())));
  }

  it('publishes each recorder settings and rec-list retained, and goes offline cleanly when the flows stop', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow(broker.url), { srv: { user: 'studio', password: 'pw-1' } });
    const out = new Collector(helper.getNode('out'));
    const rec = helper.getNode('rec');
    rec.receive({ payload: { command: 'add', line: { id: 'n1', title: 'News at nine', backup: 'on' } } });
    await out.event('added');
    await watch();
    const topic = 'twinrec/studio/main-1/settings/3';
    await until(() => {
      const v = retained.get(topic) as { lines?: { title: string }[] } | undefined;
      return !!v?.lines?.some((l) => l.title === 'News at nine');
    }, 'the line in the settings cache');
    const cache = retained.get(topic) as { server: string; channel: number; recorder: Record<string, unknown>; lines: { id: string; backup: string }[] };
    assert.equal(cache.server, 'main-1');
    assert.equal(cache.channel, 3);
    assert.equal(cache.recorder.channelName, 'Studio C');
    assert.deepEqual(cache.recorder.backup, { server: 'backup-1', channel: 1 });
    assert.equal(cache.lines[0].backup, 'on');
    assert.equal((retained.get('twinrec/studio/main-1/state') as { state: string }).state, 'online');

    await helper.unload();
    await until(() => (retained.get('twinrec/studio/main-1/state') as { state: string }).state === 'offline', 'offline state');
    assert.equal((retained.get('twinrec/studio/main-1/state') as { cause: string }).cause, 'shutdown');
  });

  it('shows on the recorder when the link is down and when it is back, without a redeploy', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow(broker.url), { srv: { user: 'studio', password: 'pw-1' } });
    const rec = helper.getNode('rec');
    const statuses: { fill?: string; text?: string }[] = [];
    rec.on('call:status', (c: { args: [{ fill?: string; text?: string }] }) => statuses.push(c.args[0]));
    const srv = helper.getNode('srv');
    await until(() => srv.link.state === 'connected', 'connected');
    await broker.restart(); // mosquitto stops then starts again on the same port
    await until(() => statuses.some((s) => /no link/.test(s.text ?? '') && s.fill === 'yellow'), 'a link-down status');
    await until(() => srv.link.state === 'connected', 'reconnected', 20000);
    await until(() => !/no link/.test(statuses[statuses.length - 1]?.text ?? 'no link'), 'the plain ready status again');
    assert.equal(statuses[statuses.length - 1].fill, 'green');
  });

  it('reports wrong broker credentials on the recorder status, without crashing', async function () {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode], flow(broker.url), { srv: { user: 'studio', password: 'nope' } });
    const rec = helper.getNode('rec');
    const statuses: string[] = [];
    rec.on('call:status', (c: { args: [{ text?: string }] }) => statuses.push(c.args[0].text ?? ''));
    await until(() => statuses.some((s) => /no link: broker refused the login/.test(s)), 'the refusal on the status');
    assert.ok(!statuses.some((s) => s.includes('nope')), 'no password in a status');
  });

  it('links over TLS with the broker CA from a tls-config node, and refuses a broker it cannot verify', async function () {
    await broker.stop();
    broker = await startMosquitto({ tls: true });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tlsNode = require('@node-red/nodes/core/network/05-tls.js');
    helper.settings({ userDir });
    const nodes = (tls: string) => [
      { id: 'f1', type: 'tab', label: 'tls' },
      {
        id: 'tlsok',
        type: 'tls-config',
        name: '',
        cert: '',
        key: '',
        ca: broker.cafile,
        certname: '',
        keyname: '',
        caname: '',
        servername: '',
        verifyservercert: true,
      },
      { id: 'tlsnone', type: 'tls-config', name: '', cert: '', key: '', ca: '', certname: '', keyname: '', caname: '', servername: '', verifyservercert: true },
      {
        id: 'srv',
        type: 'redundancy-server',
        serverId: 'main-1',
        group: 'studio',
        role: 'main',
        storageRoot: 'store',
        brokerUrl: broker.url,
        keepalive: 1,
        heartbeatMs: 200,
        tls,
      },
      {
        id: 'rec',
        type: 'recorder',
        z: 'f1',
        server: 'srv',
        channel: 1,
        frameRate: '25',
        sourceType: 'testpattern',
        segmentSeconds: 2,
        container: 'ts',
        wires: [[]],
      },
    ];
    await helper.load([tlsNode, serverNode, recorderNode], nodes('tlsok'));
    let srv = helper.getNode('srv');
    await until(() => srv.link.state === 'connected', 'connected over TLS');
    assert.match(broker.url, /^mqtts:/);
    await helper.unload();
    await helper.load([tlsNode, serverNode, recorderNode], nodes('tlsnone'));
    srv = helper.getNode('srv');
    await until(
      () => srv.link.state === 'reconnecting' && /certificate|self[- ]signed|verify/i.test(srv.link.lastError ?? ''),
      'the unverifiable broker refused',
    );
  });

  it('links to a broker that requires a client certificate with the one of its tls-config node; is refused without one, and with one of another CA, each said in words', async function () {
    await broker.stop();
    broker = await startMosquitto({ tls: true, requireClientCert: true });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tlsNode = require('@node-red/nodes/core/network/05-tls.js');
    helper.settings({ userDir });
    const nodes = (tls: string) => [
      { id: 'f1', type: 'tab', label: 'mutual tls' },
      {
        id: 'tlscert',
        type: 'tls-config',
        name: '',
        cert: broker.clientCert!.certfile,
        key: broker.clientCert!.keyfile,
        ca: broker.cafile,
        certname: '',
        keyname: '',
        caname: '',
        servername: '',
        verifyservercert: true,
      },
      {
        id: 'tlsca',
        type: 'tls-config',
        name: '',
        cert: '',
        key: '',
        ca: broker.cafile,
        certname: '',
        keyname: '',
        caname: '',
        servername: '',
        verifyservercert: true,
      },
      {
        id: 'srv',
        type: 'redundancy-server',
        serverId: 'main-1',
        group: 'studio',
        role: 'main',
        storageRoot: 'store',
        brokerUrl: broker.url,
        keepalive: 1,
        heartbeatMs: 200,
        tls,
      },
      {
        id: 'rec',
        type: 'recorder',
        z: 'f1',
        server: 'srv',
        channel: 1,
        frameRate: '25',
        sourceType: 'testpattern',
        segmentSeconds: 2,
        container: 'ts',
        wires: [[]],
      },
    ];
    await helper.load([tlsNode, serverNode, recorderNode], nodes('tlscert'));
    let srv = helper.getNode('srv');
    await until(() => srv.link.state === 'connected', 'connected with the client certificate');
    assert.match(broker.log(), /New client connected from 127\.0\.0\.1/);
    await helper.unload();
    await helper.load([tlsNode, serverNode, recorderNode], nodes('tlsca'));
    srv = helper.getNode('srv');
    await until(() => srv.link.state === 'reconnecting' && !!srv.link.lastError, 'refused without a client certificate');
    assert.equal(srv.link.lastError, 'the broker requires a client certificate: give one (certificate and private key) in the TLS configuration');
    assert.equal(srv.linkSummary(), 'no link: broker wants a client certificate');
    // a certificate the broker does not trust (signed by another CA): refused, and said so
    await helper.unload();
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-otherca-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=another CA',
          '-keyout',
          path.join(other, 'ca.key'),
          '-out',
          path.join(other, 'ca.crt'),
        ],
        { stdio: 'pipe' },
      );
      const stranger = makeClientCert(other, 'stranger');
      const flow = nodes('tlsstranger');
      flow.splice(2, 0, {
        id: 'tlsstranger',
        type: 'tls-config',
        name: '',
        cert: stranger.certfile,
        key: stranger.keyfile,
        ca: broker.cafile,
        certname: '',
        keyname: '',
        caname: '',
        servername: '',
        verifyservercert: true,
      });
      await helper.load([tlsNode, serverNode, recorderNode], flow);
      srv = helper.getNode('srv');
      await until(() => srv.link.state === 'reconnecting' && /client certificate/.test(srv.link.lastError ?? ''), 'refused with a certificate of another CA');
      assert.equal(srv.link.lastError, 'the broker refused the client certificate (unknown ca): give one signed by a CA the broker trusts, and still valid');
      assert.equal(srv.linkSummary(), 'no link: broker refused the client certificate');
      assert.match(broker.log(), /certificate verify failed/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
