/**
 * backup-link on a backup server (Node-RED runtime + mosquitto), fed raw
 * messages from the broker: malformed, oversized, replayed, out-of-order and
 * stale-epoch messages, and messages for a channel it does not record, are
 * dropped or refused (a Catch node sees the refusals) and change nothing.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import mqtt, { MqttClient } from 'mqtt';
import { LINK_VERSION } from '../../lib/link/schemas';
import { MirrorMessage, mirrorTopic } from '../../lib/backup/mirror';
import { Broker, startMosquitto } from '../support/mosquitto';
import { Collector, helper, sleep, tmpDir } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const backupLinkNode = require('../../nodes/backup-link/backup-link');

helper.init(require.resolve('node-red'));

function mirror(p: Partial<MirrorMessage> & { seq: number }, title = 'Aux me'): MirrorMessage {
  return {
    v: LINK_VERSION,
    from: { server: 'main-1', channel: 1 },
    to: { server: 'backup-1', channel: 1 },
    lineId: 'l1',
    epoch: 0,
    ts: Date.now(),
    removed: false,
    line: { title, group: '', attributes: {}, start: 'manual', status: 'ready', startTime: null, stopTime: null, duration: null },
    ...p,
  };
}

describe('backup-link node (backup side) against mosquitto', function () {
  this.timeout(60000);
  let broker: Broker;
  let userDir: string;
  let pub: MqttClient;

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(async function () {
    userDir = tmpDir('blink');
    broker = await startMosquitto();
    pub = mqtt.connect(broker.url);
    await new Promise((r) => pub.once('connect', r));
  });
  afterEach(async function () {
    await helper.unload();
    await pub.endAsync();
    await broker.stop();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function load() {
    helper.settings({ userDir });
    await helper.load(
      [serverNode, recorderNode, backupLinkNode],
      [
        { id: 'f1', type: 'tab', label: 'backup' },
        {
          id: 'srv',
          type: 'redundancy-server',
          serverId: 'backup-1',
          group: 'studio',
          role: 'backup',
          storageRoot: 'store',
          brokerUrl: broker.url,
          keepalive: 1,
          heartbeatMs: 200,
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
        { id: 'bl', type: 'backup-link', z: 'f1', server: 'srv', wires: [['out']] },
        { id: 'out', type: 'helper', z: 'f1' },
        { id: 'catcher', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper', z: 'f1' },
      ],
    );
    const srv = helper.getNode('srv');
    for (let i = 0; i < 100 && srv.link.state !== 'connected'; i++) await sleep(50);
    return { out: new Collector(helper.getNode('out')), caught: new Collector(helper.getNode('caught')), rec: helper.getNode('rec'), bl: helper.getNode('bl') };
  }
  const lines = (rec: { channelCtl: { lines(): { id: string; title: string; backup: string }[] } }) => rec.channelCtl.lines();
  const send = (m: unknown, topic = mirrorTopic('studio', 'main-1', 1, 'l1')) =>
    new Promise<void>((r) => pub.publish(topic, typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m), { qos: 1 }, () => r()));

  it('applies a valid message, ignores replays and older ones, applies newer ones', async function () {
    const { out, rec } = await load();
    await send(mirror({ seq: 10 }));
    await out.event('added');
    assert.deepEqual(
      lines(rec).map((l) => [l.id, l.title, l.backup]),
      [['l1', 'Aux me', 'aux']],
    );
    await send(mirror({ seq: 10 }, 'replayed'));
    await send(mirror({ seq: 5 }, 'older'));
    await send(mirror({ seq: 20 }, 'newer'));
    await out.event('updated', 5000, (m) => m.payload.line.title === 'newer');
    assert.equal(lines(rec)[0].title, 'newer');
    assert.equal(out.msgs.filter((m) => ['replayed', 'older'].includes(m.payload.line?.title)).length, 0, 'replayed and older messages changed nothing');
  });

  it('drops malformed and oversized payloads, and refuses unknown channels, stale epochs and forged topics', async function () {
    const { out, caught, rec } = await load();
    await send('{not json');
    await send(JSON.stringify({ v: 1, from: 'x' }));
    await send(Buffer.alloc(5 * 1024 * 1024, 0x7b));
    await send(mirror({ seq: 1, to: { server: 'backup-1', channel: 9 } }));
    const noChannel = await caught.error(/no recorder for channel 9/);
    assert.equal(noChannel.error!.source!.id, 'bl');
    await send(mirror({ seq: 2, epoch: 3 }, 'epoch 3'));
    await out.event('added');
    await send(mirror({ seq: 3, epoch: 2 }, 'stale epoch'));
    await caught.error(/epoch 2: the group is at epoch 3/);
    await send(mirror({ seq: 4, epoch: 3 }, 'forged'), mirrorTopic('studio', 'intruder-9', 1, 'l1'));
    await caught.error(/does not match its sender/);
    // a message on a forged topic must not move main-1's epoch: a genuine one of epoch 3 is still taken
    await send(mirror({ seq: 5, epoch: 2 ** 53 - 1 }, 'epoch raised on another topic'), mirrorTopic('studio', 'intruder-9', 1, 'l1'));
    await send(mirror({ seq: 6, epoch: 3 }, 'epoch 3 still'));
    await out.event('updated', 5000, (m) => m.payload.line.title === 'epoch 3 still');
    await sleep(300);
    assert.deepEqual(
      lines(rec).map((l) => l.title),
      ['epoch 3 still'],
      'nothing else changed',
    );
  });

  it('refuses input that is not a recorder event, with an error a Catch node sees', async function () {
    const { caught, bl } = await load();
    bl.receive({ payload: { command: 'start' } });
    await caught.error(/expects the events of a recorder node/);
    bl.receive({ payload: { event: 'added', server: 'backup-1', channel: 1, line: { id: 'x', n: 1, title: 'T', backup: 'on' } } });
    await caught.error(/has no backup recorder server and channel/);
  });
});
