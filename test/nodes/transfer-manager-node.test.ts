/**
 * The transfer-manager node: a configuration it cannot work with says so in a
 * red status and an error; commands are answered; a bad message is refused
 * through done(err), so Catch nodes see it, and changes nothing.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import { helper, tmpDir, until } from '../support/nr';
import { Broker, startMosquitto } from '../support/mosquitto';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tmNode = require('../../nodes/transfer-manager/transfer-manager');

helper.init(require.resolve('node-red'));

describe('transfer-manager (node)', function () {
  this.timeout(60000);
  let userDir: string;
  let broker: Broker;

  before(async function () {
    broker = await startMosquitto();
    await new Promise<void>((r) => helper.startServer(() => r()));
  });
  after(async function () {
    await new Promise<void>((r) => helper.stopServer(() => r()));
    await broker.stop();
  });
  beforeEach(() => {
    userDir = tmpDir('tmnode');
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  const flow = (tm: Record<string, unknown>) => [
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
      id: 'tm',
      type: 'transfer-manager',
      server: 'srv',
      mainServer: 'main-1',
      channels: '1-2',
      bandwidth: 0,
      pollInterval: 60,
      retentionDays: 0,
      wires: [['out']],
      ...tm,
    },
    { id: 'out', type: 'helper' },
  ];

  for (const [what, bad, sentence] of [
    ['channels that are not channels', { channels: '1,x' }, /"x" is not a channel/],
    // (the helper does not load the message catalogue: the key stands for the sentence)
    ['itself as the main', { mainServer: 'backup-1' }, /errors\.self|cannot be this server/],
    ['a main that is not a server id', { mainServer: '../etc' }, /errors\.mainServer|server id/],
    ['a negative retention', { retentionDays: -1 }, /errors\.retention|retention/],
    ['a share folder that is not an absolute path', { shareFolder: 'mnt/main' }, /share folder "mnt\/main" must be an absolute path/],
    ['a share folder that climbs out with ..', { shareFolder: '/mnt/../etc' }, /share folder "\/mnt\/\.\.\/etc" has "\.\."/],
  ] as const) {
    it(`refuses ${what} with a red status and an error`, async () => {
      await helper.load([serverNode, tmNode], flow(bad));
      const n = helper.getNode('tm');
      const errors: string[] = [];
      n.on('call:error', (c: { args: [unknown] }) => errors.push(String(c.args[0])));
      // the error may already be out: the status says it too
      await until(() => errors.length > 0 || n.status.getCalls?.().some((c: { args: [{ fill?: string }] }) => c.args[0].fill === 'red'), 'refused');
      const red = n.status
        .getCalls()
        .map((c: { args: [{ fill?: string; text?: string }] }) => c.args[0])
        .filter((s: { fill?: string }) => s.fill === 'red');
      assert.ok(red.length > 0);
      assert.match(red[0].text, sentence);
      let e: Error | null = null;
      n.on('call:error', (c: { args: [Error] }) => (e = c.args[0]));
      n.receive({ payload: { command: 'list' } });
      await until(() => e !== null, 'the command refused');
      assert.match(String(e), /errors\.notReady|not configured/);
    });
  }

  it('answers list, pause, resume and scan, and refuses anything else through done(err)', async () => {
    await helper.load([serverNode, tmNode], flow({}), { srv: { peerSecret: 'the group secret, 16+ chars' } });
    const n = helper.getNode('tm');
    const out = helper.getNode('out');
    const got: { topic: string; payload: Record<string, unknown> }[] = [];
    out.on('input', (m: { topic: string; payload: Record<string, unknown> }) => got.push(m));
    const errors: Error[] = [];
    n.on('call:error', (c: { args: [Error] }) => errors.push(c.args[0]));
    for (const command of ['list', 'pause', 'resume', 'scan']) n.receive({ payload: { command } });
    await until(() => got.filter((m) => m.topic !== 'progress').length >= 4, 'four answers');
    assert.deepEqual(
      got.filter((m) => m.topic !== 'progress').map((m) => m.topic),
      ['transfers', 'paused', 'resumed', 'scanning'],
    );
    assert.deepEqual(got[0].payload.transfers, []);
    for (const payload of [{ command: 'delete-everything' }, 'hello', null, [1], { command: 'retry' }, { command: 'retry', clipId: 'nope' }])
      n.receive({ payload });
    await until(() => errors.length >= 6, 'six refusals');
    assert.match(String(errors[0]), /unknown command "delete-everything"/);
    assert.match(String(errors[1]), /must be a command object/);
    assert.match(String(errors[4]), /needs clipId/);
    assert.match(String(errors[5]), /no transfer of clip nope/);
  });
});
