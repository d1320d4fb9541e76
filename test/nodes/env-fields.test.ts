/**
 * One flow file for every server of a site: the redundancy-server's server id,
 * group, storage and broker may come from environment variables (typedInput
 * env). An unset variable is a configuration error that names it.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { helper, tmpDir } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cameraNode = require('../../nodes/onvif-camera/onvif-camera');

helper.init(require.resolve('node-red'));

describe('redundancy-server fields from the environment', function () {
  let userDir = '';
  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('envf');
    helper.settings({ userDir });
  });
  afterEach(async function () {
    await helper.unload();
    delete process.env.TWINREC_T_SERVER;
    delete process.env.TWINREC_T_STORE;
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('takes the server id and storage root from the variables this host sets', async function () {
    process.env.TWINREC_T_SERVER = 'main-7';
    process.env.TWINREC_T_STORE = path.join(userDir, 'rec7');
    await helper.load(serverNode, [
      {
        id: 'srv',
        type: 'redundancy-server',
        group: 'studio',
        serverId: 'TWINREC_T_SERVER',
        serverIdType: 'env',
        role: 'main',
        storageRoot: 'TWINREC_T_STORE',
        storageRootType: 'env',
        brokerUrl: '',
      },
    ]);
    const srv = helper.getNode('srv');
    assert.equal(srv.configError, null);
    assert.equal(srv.identity.serverId, 'main-7');
    assert.equal(srv.identity.storageRoot, path.join(userDir, 'rec7'));
  });

  it('keeps a plain value as it is (flows saved before the field had a type)', async function () {
    await helper.load(serverNode, [
      { id: 'srv', type: 'redundancy-server', group: 'studio', serverId: 'main-2', role: 'main', storageRoot: 'recordings', brokerUrl: '' },
    ]);
    assert.equal(helper.getNode('srv').identity.serverId, 'main-2');
  });

  it('reports an unset variable by its name and builds no identity', async function () {
    await helper.load(serverNode, [
      {
        id: 'srv',
        type: 'redundancy-server',
        group: 'studio',
        serverId: 'TWINREC_T_SERVER',
        serverIdType: 'env',
        role: 'main',
        storageRoot: 'recordings',
        brokerUrl: '',
      },
    ]);
    const srv = helper.getNode('srv');
    assert.equal(srv.identity, null);
    assert.match(srv.configError, /serverId comes from the environment variable "TWINREC_T_SERVER", which is not set/);
  });

  it('takes an ONVIF camera host from a variable, and names the variable when it is not set', async function () {
    process.env.TWINREC_T_SERVER = '127.0.0.1';
    await helper.load(cameraNode, [
      { id: 'cam', type: 'onvif-camera', host: 'TWINREC_T_SERVER', hostType: 'env', port: 1, path: '/onvif/device_service' },
      { id: 'cam2', type: 'onvif-camera', host: 'TWINREC_T_NOT_SET', hostType: 'env', port: 1, path: '/onvif/device_service' },
    ]);
    assert.equal(helper.getNode('cam').configError, null);
    assert.match(helper.getNode('cam').label, /127\.0\.0\.1:1/);
    assert.equal(helper.getNode('cam2').camera, null);
    assert.match(helper.getNode('cam2').configError, /"TWINREC_T_NOT_SET", which is not set/);
  });
});
