/**
 * The redundancy-server node answers liveness (node-red-node-test-helper, a
 * real UDP socket): with the group secret on the port it is given, signed
 * answers a prober accepts; its port released on a redeploy; a bad port is a
 * configuration error that builds no identity; without the secret, no answers.
 */
import { strict as assert } from 'node:assert';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { LivenessProber, livenessKey } from '../../lib/peer/liveness';
import { helper, tmpDir, until } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');

helper.init(require.resolve('node-red'));

const SECRET = 'node-test-group-secret-long';

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise((r) => s.close(() => r(undefined)));
  return port;
}

describe('redundancy-server: liveness answers', function () {
  let userDir = '';
  const probers: LivenessProber[] = [];
  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('live');
    helper.settings({ userDir, uiHost: '127.0.0.1' });
  });
  afterEach(async function () {
    for (const p of probers.splice(0)) await p.close();
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  const flow = (livePort: string) => [
    { id: 'srv', type: 'redundancy-server', group: 'studio', serverId: 'main-1', role: 'main', storageRoot: 'store', livePort },
  ];
  function prober(port: number) {
    const p = new LivenessProber({ self: 'fo-1', group: 'studio', key: livenessKey(SECRET), intervalMs: 50, timeoutMs: 300 });
    probers.push(p);
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    p.start();
    return p;
  }

  it('answers signed questions on its liveness port, and lets the port go on a redeploy', async function () {
    const port = await freeUdpPort();
    await helper.load(serverNode, flow(String(port)), { srv: { peerSecret: SECRET } });
    const srv = helper.getNode('srv') as unknown as { configError: string | null; identity: { liveness: unknown } };
    assert.equal(srv.configError, null);
    assert.deepEqual(srv.identity.liveness, { host: '127.0.0.1', port, announceHost: '127.0.0.1' });
    const p = prober(port);
    await until(() => p.alive('main-1') === true, 'main-1 answers');
    assert.deepEqual(p.view('main-1')!.channels, [], 'no recorder, no channel');
    await helper.unload();
    await until(() => p.alive('main-1') === false, 'no answers once the node is gone');
    // the port is free again
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r, j) => {
      s.once('error', j);
      s.bind(port, '127.0.0.1', () => r());
    });
    await new Promise((r) => s.close(() => r(undefined)));
  });

  it('without the secret it answers nothing', async function () {
    const port = await freeUdpPort();
    await helper.load(serverNode, flow(String(port)));
    assert.equal((helper.getNode('srv') as unknown as { identity: { liveness: unknown } }).identity.liveness, null);
    const p = prober(port);
    await until(() => p.alive('main-1') === false, 'a verdict: no answer');
  });

  it('a liveness port that is not one is a configuration error that says what is allowed', async function () {
    await helper.load(serverNode, flow('udp:1880'), { srv: { peerSecret: SECRET } });
    const srv = helper.getNode('srv') as unknown as { configError: string | null; identity: unknown };
    assert.equal(srv.identity, null);
    assert.match(srv.configError ?? '', /liveness port "udp:1880" must be a number from 1 to 65535, "off", or empty/);
  });
});
