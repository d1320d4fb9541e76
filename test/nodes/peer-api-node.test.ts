/**
 * The redundancy-server config node serves the peer storage API: it listens
 * with the secret from its credentials, over https when its tls-config has a
 * certificate and key, advertises the URL in its retained state, says in a
 * sentence when its port is taken, and lets the port go when its flows stop.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { openCatalogue } from '../../lib/store/catalogue';
import { PeerClient } from '../../lib/peer/client';
import { PeerError } from '../../lib/peer/peer-error';
import { helper, tmpDir, until } from '../support/nr';
import { Broker, makeTlsFiles, startMosquitto } from '../support/mosquitto';
import { freePort } from '../support/ports';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tlsNode = require('@node-red/nodes/core/network/05-tls.js');

helper.init(require.resolve('node-red'));

const SECRET = 'the group secret, 16+ chars';

describe('redundancy-server peer storage API (node)', function () {
  this.timeout(60000);
  let userDir: string;
  let broker: Broker | null = null;

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(() => {
    userDir = tmpDir('peerapi');
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
    if (broker) await broker.stop();
    broker = null;
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  function server(extra: Record<string, unknown>) {
    return {
      id: 'srv',
      type: 'redundancy-server',
      serverId: 'main-1',
      group: 'studio',
      role: 'main',
      storageRoot: 'store',
      keepalive: 1,
      heartbeatMs: 200,
      ...extra,
    };
  }

  it('serves the catalogue with the secret from the credentials, advertises its URL, and lets the port go on close', async () => {
    broker = await startMosquitto();
    const port = await freePort();
    const cat = openCatalogue(path.join(userDir, 'twinrec', 'catalogue.sqlite'));
    cat.addEvent({ ts: 1000, serverId: 'main-1', channel: 1, kind: 'recording', lineId: 'l1', clipId: null, data: null });
    cat.release();
    await helper.load(
      [serverNode],
      [server({ brokerUrl: broker.url, peerHost: '127.0.0.1', peerPort: String(port), peerUrl: `http://rec-1.studio:${port}` })],
      {
        srv: { peerSecret: SECRET },
      },
    );
    const url = `http://127.0.0.1:${port}`;
    const client = new PeerClient({ url, secret: SECRET });
    await until(() => helper.getNode('srv').peerApi?.port === port, 'the API listening');
    assert.deepEqual(await client.info(), { server: 'main-1', api: 1 });
    assert.equal((await client.events({ channel: 1, to: 2000 })).length, 1);
    const wrong = new PeerClient({ url, secret: 'not the group secret at all' });
    await assert.rejects(wrong.info(), (e: PeerError) => e.code === 'EAUTH');
    wrong.close();
    assert.equal(helper.getNode('srv').peerSecret(), SECRET);

    // other servers learn where to fetch from the retained state
    const watcher = mqtt.connect(broker.url);
    const state = await new Promise<{ api?: string }>((resolve) => {
      watcher.on('message', (_t, p) => {
        const s = JSON.parse(p.toString());
        if (s.state === 'online') resolve(s);
      });
      watcher.subscribe('twinrec/studio/main-1/state');
    });
    await watcher.endAsync();
    assert.equal(state.api, `http://rec-1.studio:${port}`);

    await helper.unload();
    await assert.rejects(client.info(), (e: PeerError) => e.code === 'ENET');
    client.close();
  });

  it('serves https with the certificate and key of its tls-config', async function () {
    if (!fs.existsSync('/usr/bin/openssl')) this.skip();
    const dir = path.join(userDir, 'tls');
    fs.mkdirSync(dir);
    const f = makeTlsFiles(dir);
    const port = await freePort();
    await helper.load(
      [tlsNode, serverNode],
      [
        {
          id: 'tls',
          type: 'tls-config',
          name: '',
          cert: f.certfile,
          key: f.keyfile,
          ca: f.cafile,
          certname: '',
          keyname: '',
          caname: '',
          servername: '',
          verifyservercert: true,
        },
        server({ peerPort: port, tls: 'tls' }),
      ],
      { srv: { peerSecret: SECRET } },
    );
    const srv = helper.getNode('srv');
    await until(() => srv.peerApi?.port === port, 'the API listening');
    assert.equal(srv.identity.peerApi.url, `https://127.0.0.1:${port}`);
    const ca = srv.peerCa();
    assert.ok(ca, 'the CA of the tls-config is what this server trusts peers with');
    const client = new PeerClient({ url: `https://127.0.0.1:${port}`, secret: SECRET, ca });
    assert.equal((await client.info()).server, 'main-1');
    client.close();
  });

  it('says in a sentence that its port is taken, and keeps running', async () => {
    const port = await freePort();
    const other = new PeerClient({ url: `http://127.0.0.1:${port}`, secret: SECRET });
    const blocker = require('node:http').createServer(); // eslint-disable-line @typescript-eslint/no-require-imports
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
    try {
      await helper.load([serverNode], [server({ peerPort: port })], { srv: { peerSecret: SECRET } });
      const srv = helper.getNode('srv');
      const errors = () =>
        (helper.log().args as [{ level: number; id?: string; msg: unknown }][])
          .filter((a) => a[0].level === 20 && a[0].id === 'srv')
          .map((a) => String(a[0].msg));
      await until(() => errors().length > 0, 'the error');
      // the helper has no message catalogue: the key stands for "Peer storage API did not start: <why>" (the why is tested in lib)
      assert.match(errors()[0], /Peer storage API did not start: .*already in use|redundancy-server\.errors\.peerApi/);
      assert.ok(srv.identity, 'the server config itself is fine');
    } finally {
      other.close();
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('refuses a port without a secret of 16 characters, with a readable config error', async () => {
    await helper.load([serverNode], [server({ peerPort: 8470 })], { srv: { peerSecret: 'short' } });
    const srv = helper.getNode('srv');
    assert.equal(srv.identity, null);
    assert.match(srv.configError, /at least 16 characters/);
    assert.equal(srv.peerApi, null);
  });
});
