/** Where a server answers liveness (resolveLiveness through resolveIdentity): defaults, "off", the secret, bad ports. */
import { strict as assert } from 'node:assert';
import os from 'node:os';
import { livenessAddress, resolveIdentity } from '../../../lib/link/server-identity';

const base = { group: 'studio', serverId: 'main-1', role: 'main', storageRoot: 'store' };
const SECRET = 'a-group-secret-of-some-length';

describe('liveness settings of a server', () => {
  it("answers on Node-RED's own port and address by default, announced as that address", () => {
    const id = resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880, nodeRedHost: '127.0.0.1' }, '/tmp/u');
    assert.deepEqual(id.liveness, { host: '127.0.0.1', port: 1880, announceHost: '127.0.0.1' });
  });

  it("on every IPv4 address when Node-RED has none, announced by this machine's name or the peer URL's host", () => {
    assert.deepEqual(resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880 }, '/tmp/u').liveness, {
      host: '0.0.0.0',
      port: 1880,
      announceHost: os.hostname(),
    });
    const viaUrl = resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880, peerPort: 8443, peerUrl: 'https://rec-a.studio.example:8443' }, '/tmp/u');
    assert.equal(viaUrl.liveness!.announceHost, 'rec-a.studio.example');
  });

  it('takes a port of its own, or none with "off"; without the secret or a port to use there is none', () => {
    assert.equal(resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880, livePort: '9999' }, '/tmp/u').liveness!.port, 9999);
    assert.equal(resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880, livePort: 'off' }, '/tmp/u').liveness, null);
    assert.equal(resolveIdentity({ ...base, nodeRedPort: 1880 }, '/tmp/u').liveness, null, 'no secret');
    assert.equal(resolveIdentity({ ...base, peerSecret: SECRET }, '/tmp/u').liveness, null, "no port: Node-RED's is not known");
  });

  it('refuses a port that is not one, saying what is allowed', () => {
    for (const bad of ['0', '70000', 'udp', '18 80', '-1']) {
      assert.throws(
        () => resolveIdentity({ ...base, peerSecret: SECRET, nodeRedPort: 1880, livePort: bad }, '/tmp/u'),
        /^Error: liveness port ".*" must be a number from 1 to 65535, "off", or empty \(Node-RED's own port\)$/,
      );
    }
  });

  it('writes an IPv6 address in brackets', () => {
    assert.equal(livenessAddress('::1', 1880), '[::1]:1880');
    assert.equal(livenessAddress('10.0.0.5', 1880), '10.0.0.5:1880');
  });
});
