/**
 * lib/studio/studio-control: the MQTT topic layout and request validation for studio
 * control panels, the reply and state payloads (checked against their own
 * schemas), and the controller over a real RecorderChannel (catalogue in a
 * temporary SQLite file) found through a real ControllerRegistry.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { Catalogue, openCatalogue } from '../../../lib/store/catalogue';
import { ffmpegInfo } from '../../../lib/media/ffmpeg';
import { RecorderChannel } from '../../../lib/recorder/channel';
import { MAX_COMMAND_BYTES } from '../../../lib/model/commands';
import { ControllerRegistry } from '../../../lib/link/server-identity';
import { Outgoing, StudioControl } from '../../../lib/studio/studio-control';
import { reclistStateSchema, replySchema, statusStateSchema } from '../../../lib/studio/studio-replies';
import {
  channelTopics,
  checkPrefix,
  DEFAULT_PREFIX,
  errorTopic,
  parseRequest,
  parseTopic,
  STUDIO_COMMANDS,
  StudioError,
  subscription,
} from '../../../lib/studio/studio-requests';
import { sleep, tmpDir, until } from '../../support/nr';

const P = DEFAULT_PREFIX;
const T = `${P}/main-1/1/cmd`;
const ajv = new Ajv({ strict: false, allErrors: true });
const validReply = ajv.compile(replySchema);
const validReclist = ajv.compile(reclistStateSchema);
const validStatus = ajv.compile(statusStateSchema);

function refused(fn: () => unknown, code: string, ...patterns: RegExp[]): StudioError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StudioError, `expected a StudioError, got ${String(caught)}`);
  const e = caught as StudioError;
  assert.equal(e.code, code, e.message);
  assert.doesNotMatch(e.message, /must NOT|instancePath|undefined|\[object/, `raw wording in: ${e.message}`);
  for (const p of patterns) assert.match(e.message, p, `"${e.message}" does not match ${String(p)}`);
  return e;
}

describe('studio-control topics', function () {
  it('the default prefix and the subscription an mqtt in node needs', function () {
    assert.equal(DEFAULT_PREFIX, 'twinrec/studio');
    assert.equal(subscription(P), 'twinrec/studio/+/+/cmd/#');
    assert.equal(subscription(P, 'main-1'), 'twinrec/studio/main-1/+/cmd/#');
    assert.deepEqual(channelTopics(P, 'main-1', 2), {
      cmd: 'twinrec/studio/main-1/2/cmd',
      reply: 'twinrec/studio/main-1/2/reply',
      reclist: 'twinrec/studio/main-1/2/reclist',
      status: 'twinrec/studio/main-1/2/status',
      event: 'twinrec/studio/main-1/2/event',
    });
    assert.equal(errorTopic(P), 'twinrec/studio/error');
  });

  it('a prefix is refused with wildcards, empty levels, a leading $ or /, or nothing', function () {
    assert.equal(checkPrefix(' site/a '), 'site/a');
    for (const [p, re] of [
      ['', /empty/],
      ['a/+/b', /wildcards/],
      ['a/#', /wildcards/],
      ['/a', /start or end/],
      ['a/', /start or end/],
      ['a//b', /empty levels/],
      ['$SYS/x', /broker/],
      [42, /empty/],
    ] as const) {
      refused(() => checkPrefix(p), 'EINVAL', re);
    }
  });

  it('splits <prefix>/<server>/<channel>/cmd and .../cmd/<command>', function () {
    assert.deepEqual(parseTopic(P, T), { server: 'main-1', channel: 1, command: null, replyTopic: `${P}/main-1/1/reply` });
    assert.deepEqual(parseTopic(P, `${P}/srv.b_2/999/cmd/start`), { server: 'srv.b_2', channel: 999, command: 'start', replyTopic: `${P}/srv.b_2/999/reply` });
    assert.equal(parseTopic('a', 'a/s/3/cmd/status').command, 'status');
  });

  it('a topic without server and channel is answered on <prefix>/error; a wrong server, channel or command on its own reply topic', function () {
    const cases: [unknown, string, RegExp, string][] = [
      [undefined, 'ETOPIC', /no topic/, `${P}/error`],
      ['other/main-1/1/cmd', 'ETOPIC', /does not start with the prefix "twinrec\/studio\/"/, `${P}/error`],
      [`${P}/main-1/cmd`, 'ETOPIC', /not a request topic.*<prefix>\/<server>\/<channel>\/cmd/, `${P}/error`],
      [`${P}/main-1/1/reply`, 'ETOPIC', /not a request topic/, `${P}/error`],
      [`${P}/main-1/1/cmd/start/now`, 'ETOPIC', /not a request topic/, `${P}/error`],
      [`${P}/main-1//cmd`, 'ETOPIC', /not a request topic/, `${P}/error`],
      [`${P}/main-1/0/cmd`, 'ETOPIC', /"0" .* not a channel number \(1 to 999\)/, `${P}/main-1/0/reply`],
      [`${P}/main-1/one/cmd`, 'ETOPIC', /"one" .* not a channel number/, `${P}/main-1/one/reply`],
      [`${P}/main-1/1000/cmd`, 'ETOPIC', /not a channel number/, `${P}/main-1/1000/reply`],
      [`${P}/-bad/1/cmd`, 'ETOPIC', /"-bad" .* not a server id/, `${P}/-bad/1/reply`],
      [
        `${P}/main-1/1/cmd/launch`,
        'ECOMMAND',
        /unknown command "launch" in topic.*the commands are add, update, remove, start, stop, list, get, status/,
        `${P}/main-1/1/reply`,
      ],
    ];
    for (const [topic, code, re, replyTopic] of cases) {
      const e = refused(() => parseTopic(P, topic), code, re);
      assert.equal(e.replyTopic, replyTopic, String(topic));
    }
  });
});

describe('studio-control requests', function () {
  it('accepts every command, as an object, a JSON string or a Buffer', function () {
    for (const c of STUDIO_COMMANDS) {
      const r = parseRequest(P, T, { command: c, requestId: `r-${c}` });
      assert.equal(r.command, c);
      assert.equal(r.requestId, `r-${c}`);
      assert.deepEqual(r.recorderCommand, c === 'status' ? null : { command: c, requestId: `r-${c}` });
    }
    const add = { command: 'add', line: { id: 'x1', title: 'News', attributes: { house: 'N-1' } }, requestId: 'q' };
    assert.deepEqual(parseRequest(P, T, JSON.stringify(add)).recorderCommand, add);
    assert.deepEqual(parseRequest(P, T, Buffer.from(JSON.stringify(add))).recorderCommand, add);
  });

  it('takes the command from the topic; payload may then leave it out, or must agree', function () {
    const r = parseRequest(P, `${T}/start`, { line: { n: 2 } });
    assert.equal(r.command, 'start');
    assert.deepEqual(r.recorderCommand, { command: 'start', line: { n: 2 } });
    assert.equal(parseRequest(P, `${T}/list`, '{}').command, 'list');
    assert.equal(parseRequest(P, `${T}/stop`, { command: 'stop' }).command, 'stop');
    refused(() => parseRequest(P, `${T}/start`, { command: 'stop' }), 'EINVAL', /topic asks for "start" but the payload for "stop"/);
  });

  it('refuses bad JSON, non-objects, empty and oversized payloads, naming the problem', function () {
    const e = refused(() => parseRequest(P, T, '{"command": "start"'), 'EJSON', /not valid JSON/, /expected \{"command"/);
    assert.equal(e.replyTopic, `${P}/main-1/1/reply`);
    refused(() => parseRequest(P, T, ''), 'EJSON', /payload is empty/);
    refused(() => parseRequest(P, `${T}/list`, Buffer.alloc(0)), 'EJSON', /payload is empty/);
    refused(() => parseRequest(P, T, '[1,2]'), 'EINVAL', /must be a JSON object, not an array/);
    refused(() => parseRequest(P, T, 42), 'EINVAL', /not a number/);
    refused(() => parseRequest(P, T, null), 'EINVAL', /not null/);
    refused(() => parseRequest(P, T, '"start"'), 'EINVAL', /not the string "start"/);
    const big = JSON.stringify({ command: 'add', line: { title: 'x'.repeat(MAX_COMMAND_BYTES) } });
    refused(() => parseRequest(P, T, big), 'ETOOBIG', /larger than 65536 bytes/);
    refused(() => parseRequest(P, T, JSON.parse(big)), 'ETOOBIG', /larger than 65536 bytes/);
  });

  it('refuses an unknown or missing command, keeping the request id for the reply', function () {
    let e = refused(
      () => parseRequest(P, T, { command: 'record', requestId: 'abc' }),
      'ECOMMAND',
      /unknown command "record": the commands are add, update, remove, start, stop, list, get, status/,
    );
    assert.equal(e.requestId, 'abc');
    assert.equal(e.command, 'record');
    refused(() => parseRequest(P, T, { command: 7 }), 'ECOMMAND', /unknown command a number/);
    e = refused(() => parseRequest(P, T, { requestId: 'r2', line: { n: 1 } }), 'ECOMMAND', /needs a command.*\.\.\.\/cmd\/<command>/);
    assert.equal(e.requestId, 'r2');
  });

  it("refuses what the recorder command schema refuses, in the recorder's words", function () {
    const cases: [unknown, RegExp][] = [
      [{ command: 'add', line: { n: 'one' } }, /line\.n must be a whole number/],
      [{ command: 'add', line: { title: '' } }, /line\.title must not be empty/],
      [{ command: 'add', line: { colour: 'red' } }, /line has an unknown field "colour"/],
      [{ command: 'add', line: { status: 'recording' } }, /line\.status is set by the recorder/],
      [{ command: 'start', line: { id: '../etc' } }, /line\.id must be 1 to 64 letters/],
      [{ command: 'add', line: { startTime: true } }, /line\.startTime must be UTC epoch milliseconds or an ISO 8601 date-time/],
      [{ command: 'list', extra: 1 }, /the command has an unknown field "extra"/],
      [{ command: 'list', requestId: 5 }, /requestId must be of type string/],
      [{ command: 'stop', force: 'yes' }, /force must be of type boolean/],
    ];
    for (const [payload, re] of cases) {
      const e = refused(() => parseRequest(P, T, payload), 'EINVAL', /^Command refused: /, re);
      assert.equal(e.replyTopic, `${P}/main-1/1/reply`);
    }
  });

  it('refuses a retained request (it would run again at every reconnect) and says how to clear it', function () {
    refused(
      () => parseRequest(P, `${T}/start`, { line: { n: 1 } }, { retained: true }),
      'ERETAINED',
      /retained request is refused/,
      /empty retained message to "twinrec\/studio\/main-1\/1\/cmd\/start"/,
    );
  });
});

describe('studio-control controller over a real recorder channel', function () {
  this.timeout(30000);
  let dir: string;
  let cat: Catalogue;
  let registry: ControllerRegistry<RecorderChannel>;
  let channels: RecorderChannel[];
  let control: StudioControl | null;
  let out: Outgoing[];

  async function addChannel(serverId: string, channel: number): Promise<RecorderChannel> {
    const ch = new RecorderChannel(
      {
        serverId,
        group: 'studio',
        channel,
        channelName: `Ch ${channel}`,
        frameRate: '25',
        tcMode: 'zero',
        storageRoot: path.join(dir, 'store'),
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        source: { label: 'test pattern', resolve: async () => ({ kind: 'testpattern' }) },
        backup: null,
      },
      { catalogue: cat, ffmpeg: ffmpegInfo(), log: { info: () => undefined, warn: () => undefined, error: () => undefined } },
    );
    await ch.open();
    channels.push(ch);
    registry.set(serverId, channel, ch);
    return ch;
  }
  const start = (opts: { server?: string; refreshMs?: number } = {}) => {
    control = new StudioControl({ prefix: P, coalesceMs: 10, refreshMs: opts.refreshMs ?? 0, server: opts.server }, registry, (m) => out.push(m));
    return control;
  };
  const published = (topic: string) => out.filter((m) => m.topic === topic);

  beforeEach(function () {
    dir = tmpDir('studio-unit');
    cat = openCatalogue(path.join(dir, 'catalogue.sqlite'));
    registry = new ControllerRegistry<RecorderChannel>();
    channels = [];
    control = null;
    out = [];
  });
  afterEach(async function () {
    control?.close();
    for (const ch of channels) await ch.close(true);
    cat.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers add, list, status and remove; publishes rec-list and status (retained) and the events after each change', async function () {
    await addChannel('main-1', 1);
    const c = start();
    await until(() => published(`${P}/main-1/1/status`).length === 1, 'the first state');
    out.length = 0;
    const added = await c.handle(T, { command: 'add', line: { id: 'n1', title: 'News', attributes: { house: 'N-1' } }, requestId: 'a1' });
    assert.equal(added.kind, 'ok');
    if (added.kind !== 'ok') return;
    assert.equal(added.reply.topic, `${P}/main-1/1/reply`);
    assert.equal(added.reply.retain, false);
    assert.ok(validReply(added.reply.payload), JSON.stringify(validReply.errors));
    const p = added.reply.payload as { ok: boolean; requestId: string; command: string; events: { event: string; line: { id: string } }[] };
    assert.deepEqual([p.ok, p.requestId, p.command, p.events.map((e) => e.event), p.events[0].line.id], [true, 'a1', 'add', ['added'], 'n1']);
    await until(() => published(`${P}/main-1/1/reclist`).length === 1, 'the rec-list after add');
    const rl = published(`${P}/main-1/1/reclist`)[0];
    assert.equal(rl.retain, true);
    assert.ok(validReclist(rl.payload), JSON.stringify(validReclist.errors));
    assert.deepEqual(
      (rl.payload as { lines: { title: string }[] }).lines.map((l) => l.title),
      ['News'],
    );
    const st = published(`${P}/main-1/1/status`)[0];
    assert.ok(validStatus(st.payload), JSON.stringify(validStatus.errors));
    assert.deepEqual([st.retain, (st.payload as { state: string; lines: number }).state, (st.payload as { lines: number }).lines], [true, 'idle', 1]);
    assert.deepEqual(
      published(`${P}/main-1/1/event`).map((m) => (m.payload as { event: string }).event),
      ['added'],
    );

    const list = await c.handle(`${T}/list`, '{}');
    assert.equal(list.kind, 'ok');
    if (list.kind === 'ok') {
      assert.ok(validReply(list.reply.payload), JSON.stringify(validReply.errors));
      assert.deepEqual(
        (list.reply.payload as { reclist: { id: string }[] }).reclist.map((l) => l.id),
        ['n1'],
      );
    }
    const status = await c.handle(T, Buffer.from('{"command":"status","requestId":"s"}'));
    assert.equal(status.kind, 'ok');
    if (status.kind === 'ok') {
      assert.ok(validReply(status.reply.payload), JSON.stringify(validReply.errors));
      assert.deepEqual((status.reply.payload as { status: { state: string; lines: number; server: string; channel: number } }).status, {
        ...(status.reply.payload as { status: object }).status,
        state: 'idle',
        lines: 1,
        server: 'main-1',
        channel: 1,
      });
    }
    const removed = await c.handle(`${T}/remove`, { line: { id: 'n1' } });
    assert.equal(removed.kind, 'ok');
    await until(() => published(`${P}/main-1/1/reclist`).some((m) => (m.payload as { lines: unknown[] }).lines.length === 0), 'the empty rec-list');
  });

  it('refusals change nothing and are answered on the right topic with code and sentence', async function () {
    const ch = await addChannel('main-1', 1);
    await ch.execute({ command: 'add', line: { id: 'keep', title: 'Keep' } });
    const c = start();
    const before = JSON.stringify(ch.lines());
    const cases: [unknown, unknown, string, string, RegExp][] = [
      [T, '{bad json', `${P}/main-1/1/reply`, 'EJSON', /not valid JSON/],
      [T, { command: 'explode' }, `${P}/main-1/1/reply`, 'ECOMMAND', /unknown command "explode"/],
      [T, { command: 'add', line: { n: 'x' } }, `${P}/main-1/1/reply`, 'EINVAL', /line\.n must be a whole number/],
      [T, { command: 'start', line: { id: 'nope' } }, `${P}/main-1/1/reply`, 'ENOENT', /no line with id "nope"/],
      [
        `${P}/main-1/7/cmd`,
        { command: 'list' },
        `${P}/main-1/7/reply`,
        'ENOCHANNEL',
        /server main-1 has no recorder on channel 7 in this Node-RED \(its channels here: 1\)/,
      ],
      [
        `${P}/main-9/1/cmd`,
        { command: 'list' },
        `${P}/main-9/1/reply`,
        'ENOCHANNEL',
        /server main-9 has no recorder in this Node-RED \(servers here: main-1\)/,
      ],
      ['elsewhere/x', { command: 'list' }, `${P}/error`, 'ETOPIC', /does not start with the prefix/],
    ];
    for (const [topic, payload, replyTopic, code, re] of cases) {
      const r = await c.handle(topic, payload);
      assert.equal(r.kind, 'refused', JSON.stringify(r));
      if (r.kind !== 'refused') continue;
      assert.equal(r.error.code, code);
      assert.match(r.error.message, re);
      assert.ok(r.reply);
      assert.equal(r.reply.topic, replyTopic);
      assert.ok(validReply(r.reply.payload), JSON.stringify(validReply.errors));
      const pl = r.reply.payload as { ok: boolean; error: { code: string; message: string } };
      assert.equal(pl.ok, false);
      assert.deepEqual(pl.error, { code, message: r.error.message });
    }
    assert.equal(JSON.stringify(ch.lines()), before, 'the rec-list did not change');
    // an empty message clears a retained message on the broker: not a request, not answered
    assert.equal((await c.handle(`${T}/start`, '')).kind, 'ignored');
    assert.equal((await c.handle(`${T}/start`, Buffer.alloc(0))).kind, 'ignored');
    const blank = await c.handle(T, '  ');
    assert.equal(blank.kind === 'refused' && blank.error.code, 'EJSON');
  });

  it('answers an MQTT v5 request on its response topic with its correlation data; refuses a response topic it cannot answer on, changing nothing', async function () {
    const ch = await addChannel('main-1', 1);
    const c = start();
    const cd = Buffer.from([0, 1, 2, 250]);
    const r = await c.handle(
      T,
      { command: 'add', line: { id: 'v5', title: 'V5' }, requestId: 'q' },
      { responseTopic: 'panels/desk-2/answers', correlationData: cd },
    );
    assert.equal(r.kind, 'ok');
    if (r.kind === 'ok') {
      assert.equal(r.reply.topic, 'panels/desk-2/answers');
      assert.deepEqual(r.reply.correlationData, cd);
      assert.equal((r.reply.payload as { requestId: string }).requestId, 'q');
    }
    // a refusal goes there too
    const no = await c.handle(T, { command: 'start', line: { id: 'nope' } }, { responseTopic: 'panels/desk-2/answers', correlationData: 'text' });
    assert.equal(no.kind === 'refused' && no.reply?.topic, 'panels/desk-2/answers');
    assert.deepEqual(no.kind === 'refused' && no.reply?.correlationData, Buffer.from('text'));
    const before = JSON.stringify(ch.lines());
    const bad: [unknown, unknown, RegExp][] = [
      ['panels/+/answers', undefined, /not a topic to publish to/],
      ['panels/#', undefined, /not a topic to publish to/],
      [`${P}/main-1/1/status`, undefined, /studio-control's own topics/],
      [`${P}/main-1/1/cmd/start`, undefined, /studio-control's own topics/],
      [`${P}/error`, undefined, /studio-control's own topics/],
      [42, undefined, /is not text/],
      ['panels/ok', { not: 'bytes' }, /correlation data is not bytes/],
      ['panels/ok', Buffer.alloc(70000), /at most 65535/],
    ];
    for (const [responseTopic, correlationData, re] of bad) {
      const x = await c.handle(T, { command: 'add', line: { id: 'never', title: 'Never' }, requestId: 'b' }, { responseTopic, correlationData });
      assert.equal(x.kind, 'refused', String(responseTopic));
      if (x.kind !== 'refused') continue;
      assert.equal(x.error.code, 'EINVAL');
      assert.match(x.error.message, re);
      assert.equal(x.reply?.topic, `${P}/main-1/1/reply`, 'told on the usual reply topic');
      assert.equal(x.reply?.correlationData, undefined);
      assert.equal((x.reply?.payload as { requestId: string }).requestId, 'b');
    }
    assert.equal(JSON.stringify(ch.lines()), before, 'the rec-list did not change');
    // no response topic: the usual reply topic, no correlation data
    const plain = await c.handle(T, { command: 'list' }, { responseTopic: '', correlationData: cd });
    assert.equal(plain.kind === 'ok' && plain.reply.topic, `${P}/main-1/1/reply`);
    assert.equal(plain.kind === 'ok' && plain.reply.correlationData, undefined);
  });

  it('with a server filter, requests for other servers are left alone; channels of other servers are not published', async function () {
    await addChannel('main-1', 1);
    await addChannel('main-2', 1);
    const c = start({ server: 'main-1' });
    assert.deepEqual(c.channels(), ['main-1/1']);
    const other = await c.handle(`${P}/main-2/1/cmd`, '{bad');
    assert.equal(other.kind, 'ignored');
    const mine = await c.handle(`${P}/main-1/3/cmd`, { command: 'list' });
    assert.equal(mine.kind, 'refused');
    if (mine.kind === 'refused') assert.equal(mine.reply?.topic, `${P}/main-1/3/reply`);
    await sleep(300);
    assert.deepEqual([...new Set(out.map((m) => m.topic))].sort(), [`${P}/main-1/1/reclist`, `${P}/main-1/1/status`]);
  });

  it('follows recorders that come and go in the registry, and publishes commands that others gave the recorder', async function () {
    const c = start({ refreshMs: 100 });
    assert.deepEqual(c.channels(), []);
    const ch = await addChannel('main-1', 2);
    await until(() => published(`${P}/main-1/2/status`).length === 1, 'state of the recorder that appeared');
    // a command given to the recorder directly (its node's input, a GPI): the channel emits 'commanded'
    await ch.execute({ command: 'add', line: { id: 'gpi', title: 'From a GPI' } });
    await until(() => published(`${P}/main-1/2/reclist`).some((m) => (m.payload as { lines: unknown[] }).lines.length === 1), 'the change made elsewhere');
    await until(() => published(`${P}/main-1/2/event`).some((m) => (m.payload as { event: string }).event === 'added'), 'its event');
    // a query changes nothing: no event, no state
    const n = out.length;
    await ch.execute({ command: 'list' });
    await sleep(350);
    assert.equal(out.length, n, 'nothing is published again while nothing changes (refresh every 100 ms)');
    await ch.close(true);
    registry.delete('main-1', 2, ch);
    const last = published(`${P}/main-1/2/status`).pop()!;
    assert.equal((last.payload as { state: string }).state, 'closed');
    assert.deepEqual(c.channels(), []);
    c.close();
    assert.equal(registry.listenerCount('set') + registry.listenerCount('delete'), 0, 'close removes its listeners');
    assert.equal(ch.listenerCount('event') + ch.listenerCount('commanded'), 0);
  });

  it('publishes source URLs without their password', async function () {
    const ch = await addChannel('main-1', 1);
    await ch.execute({ command: 'add', line: { id: 's', title: 'Cam', source: 'rtsp://op:secret@10.0.0.5/live' } });
    const c = start();
    const r = await c.handle(T, { command: 'list' });
    assert.equal(r.kind, 'ok');
    if (r.kind === 'ok') assert.equal((r.reply.payload as { reclist: { source: string }[] }).reclist[0].source, 'rtsp://op:***@10.0.0.5/live');
    await until(() => published(`${P}/main-1/1/reclist`).length > 0, 'state');
    assert.doesNotMatch(JSON.stringify(out), /secret/);
  });
});
