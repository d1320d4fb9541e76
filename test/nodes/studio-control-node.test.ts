/**
 * The studio-control node in a real Node-RED runtime (node-red-node-test-helper)
 * beside a real recorder: panel requests are answered on the reply topic and the
 * state goes out retained; every malformed request gets an error reply AND
 * done(err) (a Catch node sees it, the status turns red) and changes nothing.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import { Collector, helper, Msg, tmpDir, until } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const serverNode = require('../../nodes/redundancy-server/redundancy-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recorderNode = require('../../nodes/recorder/recorder');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const studioNode = require('../../nodes/studio-control/studio-control');

helper.init(require.resolve('node-red'));

const P = 'twinrec/studio';
const CMD = `${P}/main-1/1/cmd`;
const REPLY = `${P}/main-1/1/reply`;

function flow(sc: Record<string, unknown> = {}) {
  return [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'srv', type: 'redundancy-server', serverId: 'main-1', group: 'studio', role: 'main', storageRoot: 'store' },
    {
      id: 'rec',
      type: 'recorder',
      server: 'srv',
      channel: 1,
      channelName: 'Studio A',
      frameRate: '25',
      sourceType: 'testpattern',
      segmentSeconds: 2,
      container: 'ts',
      videoCodec: 'copy',
      tcMode: 'zero',
      startTimeout: 10,
      stallTimeout: 6,
      wires: [[]],
      z: 'f1',
    },
    { id: 'sc', type: 'studio-control', prefix: P, prefixType: 'str', server: '', serverType: 'str', wires: [['out']], z: 'f1', ...sc },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'catcher', type: 'catch', scope: ['sc'], uncaught: false, wires: [['caught']], z: 'f1' },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];
}

describe('studio-control node', function () {
  this.timeout(60000);
  let userDir: string;
  let out: Collector;
  let caught: Collector;

  let sc: any;

  async function load(cfg: Record<string, unknown> = {}) {
    helper.settings({ userDir });
    await helper.load([serverNode, recorderNode, studioNode], flow(cfg));
    sc = helper.getNode('sc');
    out = new Collector(helper.getNode('out'));
    caught = new Collector(helper.getNode('caught'));
  }
  let seq = 0;
  /** Send a request and wait for its reply (matched by requestId when the request carries one). */
  async function ask(topic: string, payload: unknown, extra: Record<string, unknown> = {}): Promise<Msg> {
    const rid = typeof payload === 'object' && payload !== null && !Buffer.isBuffer(payload) ? `r${++seq}` : null;
    const p = rid ? { ...(payload as object), requestId: rid } : payload;
    const n = out.msgs.length;
    sc.receive({ topic, payload: p, ...extra });
    return out.wait(
      (m) => out.msgs.indexOf(m) >= n && /\/(reply|error)$/.test(m.topic ?? '') && (!rid || m.payload.requestId === rid),
      10000,
      `reply to ${topic}`,
    );
  }
  async function lines(): Promise<{ id: string; title: string }[]> {
    const r = await ask(CMD, { command: 'list' });
    assert.equal(r.payload.ok, true, JSON.stringify(r.payload));
    return r.payload.reclist;
  }
  const redStatuses = (): { fill?: string; text?: string }[] =>
    sc.status
      .getCalls()
      .map((c: { args: [{ fill?: string; text?: string }] }) => c.args[0])
      .filter((s: { fill?: string }) => s.fill === 'red');

  before(function (done) {
    helper.startServer(done);
  });
  after(function (done) {
    helper.stopServer(done);
  });
  beforeEach(function () {
    userDir = tmpDir('studio-node');
  });
  afterEach(async function () {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('answers add, list and status on the reply topic and sends the rec-list and status retained', async function () {
    await load();
    const first = await out.wait((m) => m.topic === `${P}/main-1/1/status`, 10000, 'the first status');
    assert.deepEqual([first.retain, first.qos, first.payload.state], [true, 1, 'idle']);
    const added = await ask(CMD, { command: 'add', line: { id: 'news', title: 'News', attributes: { house: 'N-1' } } });
    assert.equal(added.topic, REPLY);
    assert.deepEqual([added.retain, added.qos], [false, 1]);
    assert.equal(added.payload.ok, true);
    assert.equal(added.payload.command, 'add');
    assert.equal(added.payload.events[0].event, 'added');
    assert.equal(added.payload.events[0].line.title, 'News');
    const rl = await out.wait((m) => m.topic === `${P}/main-1/1/reclist` && m.payload.lines.length === 1, 10000, 'the rec-list with News');
    assert.equal(rl.retain, true);
    assert.deepEqual(await lines(), [{ ...(await lines())[0], id: 'news', title: 'News' }]);
    const st = await ask(`${CMD}/status`, '{}');
    assert.deepEqual([st.payload.ok, st.payload.status.state, st.payload.status.lines], [true, 'idle', 1]);
    assert.equal(caught.msgs.length, 0, JSON.stringify(caught.msgs.map((m) => m.error?.message)));
  });

  it('refuses every malformed request: error reply, done(err) seen by Catch, red status, rec-list unchanged', async function () {
    await load();
    await ask(CMD, { command: 'add', line: { id: 'keep', title: 'Keep' } });
    const before = JSON.stringify(await lines());
    const cases: [string, unknown, Record<string, unknown>, string, string, RegExp][] = [
      ['bad JSON', '{"command": "start"', {}, REPLY, 'EJSON', /payload is not valid JSON/],
      ['not an object', '[1,2]', {}, REPLY, 'EINVAL', /payload must be a JSON object, not an array/],
      [
        'an unknown command',
        { command: 'launch' },
        {},
        REPLY,
        'ECOMMAND',
        /unknown command "launch": the commands are add, update, remove, start, stop, list, get, status/,
      ],
      ['a bad line field', { command: 'add', line: { title: 'X', colour: 'red' } }, {}, REPLY, 'EINVAL', /line has an unknown field "colour"/],
      ['a line that is not there', { command: 'start', line: { id: 'ghost' } }, {}, REPLY, 'ENOENT', /no line with id "ghost"/],
      ['a retained request', { command: 'add', line: { title: 'Again' } }, { retain: true }, REPLY, 'ERETAINED', /retained request is refused/],
      ['a payload too large', JSON.stringify({ command: 'add', line: { title: 'x'.repeat(70000) } }), {}, REPLY, 'ETOOBIG', /larger than 65536 bytes/],
    ];
    for (const [what, payload, extra, replyTopic, code, re] of cases) {
      caught.clear();
      const nRed = redStatuses().length;
      const r = await ask(CMD, payload, extra);
      assert.equal(r.topic, replyTopic, what);
      assert.equal(r.payload.ok, false, what);
      assert.equal(r.payload.error.code, code, `${what}: ${r.payload.error.message}`);
      assert.match(r.payload.error.message, re, what);
      const m = await caught.wait(() => true, 5000, `the error of ${what}`);
      assert.equal(m.error!.source!.id, 'sc', what);
      assert.equal(m.error!.message, `StudioError: ${r.payload.error.message}`, `${what}: the Catch node and the panel get the same sentence`);
      await until(() => redStatuses().length > nRed, `red status for ${what}`);
      assert.equal(JSON.stringify(await lines()), before, `${what} changed the rec-list`);
    }
    // wrong channel or server: answered on their own reply topic
    for (const [topic, re] of [
      [`${P}/main-1/9/cmd`, /server main-1 has no recorder on channel 9 in this Node-RED \(its channels here: 1\)/],
      [`${P}/studio-b/1/cmd`, /server studio-b has no recorder in this Node-RED \(servers here: main-1\)/],
    ] as const) {
      caught.clear();
      const r = await ask(topic, { command: 'list' });
      assert.equal(r.topic, topic.replace(/cmd$/, 'reply'));
      assert.equal(r.payload.error.code, 'ENOCHANNEL');
      assert.match(r.payload.error.message, re);
      await caught.error(re);
    }
    // no server and channel in the topic: answered on <prefix>/error
    caught.clear();
    const r = await ask('panels/main-1/1/cmd', { command: 'list' });
    assert.equal(r.topic, `${P}/error`);
    assert.equal(r.payload.error.code, 'ETOPIC');
    await caught.error(/does not start with the prefix "twinrec\/studio\/"/);
    assert.equal(JSON.stringify(await lines()), before);
  });

  it('with a server filter, a request for another server is neither answered nor an error', async function () {
    await load({ server: 'main-1' });
    await out.wait((m) => m.topic === `${P}/main-1/1/status`, 10000, 'the first status');
    const n = out.msgs.length;
    sc.receive({ topic: `${P}/main-2/1/cmd`, payload: '{bad json' });
    const ok = await ask(CMD, { command: 'status' });
    assert.equal(ok.payload.ok, true);
    assert.deepEqual(
      out.msgs
        .slice(n)
        .map((m) => m.topic)
        .filter((t) => t !== `${P}/main-1/1/status` && t !== `${P}/main-1/1/reclist`),
      [REPLY],
    );
    assert.equal(caught.msgs.length, 0);
  });

  it('a prefix from an environment variable', async function () {
    process.env.TWINREC_TEST_STUDIO_PREFIX = 'site7/panels';
    try {
      await load({ prefix: 'TWINREC_TEST_STUDIO_PREFIX', prefixType: 'env' });
      const r = await ask('site7/panels/main-1/1/cmd', { command: 'list' });
      assert.equal(r.topic, 'site7/panels/main-1/1/reply');
      assert.equal(r.payload.ok, true);
    } finally {
      delete process.env.TWINREC_TEST_STUDIO_PREFIX;
    }
  });

  it('a configuration it cannot work with: red status and an error, and every request refused through done(err)', async function () {
    await load({ prefix: 'studio/#' });
    await until(() => redStatuses().length > 0, 'red status');
    // (the helper does not load the message catalogue: the key stands for the sentence)
    assert.match(redStatuses()[0].text!, /errors\.config|wildcards/);
    caught.clear();
    sc.receive({ topic: 'studio/main-1/1/cmd', payload: { command: 'list' } });
    const m = await caught.error(/errors\.notReady|not configured/);
    assert.equal(m.error!.source!.id, 'sc');
  });
});
