/**
 * A studio control panel over MQTT against a real Node-RED process and a real
 * Mosquitto: the flow is Node-RED's own `mqtt in -> studio-control -> mqtt out`
 * beside a recorder of the test pattern, and the panel is Mosquitto's command
 * line tools (mosquitto_pub sends requests, mosquitto_sub reads replies and the
 * retained state). A line is added, started (a clip really records), listed,
 * its status read and stopped; malformed requests get error replies, reach a
 * Catch node and change nothing; a command given to the recorder node itself
 * reaches the panels too.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';
const MOSQUITTO_SUB = '/usr/bin/mosquitto_sub';
const P = 'twinrec/studio';
const CH = `${P}/main-1/1`;

interface Received {
  topic: string;
  retain: boolean;

  payload: any;
  raw: string;
}

/** mosquitto_sub printing every message as one JSON line (-F %j). */
class Sub {
  readonly msgs: Received[] = [];
  private child: ChildProcess;
  private buf = '';
  constructor(port: number, topics: string[]) {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-F', '%j'];
    for (const t of topics) args.push('-t', t);
    this.child = spawn(MOSQUITTO_SUB, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.trim()) continue;
        const j = JSON.parse(line) as { topic: string; retain: number; payload: string };
        let payload: unknown = j.payload;
        try {
          payload = JSON.parse(j.payload);
        } catch {
          /* not JSON */
        }
        this.msgs.push({ topic: j.topic, retain: j.retain === 1, payload, raw: j.payload });
      }
    });
  }
  async wait(pred: (m: Received) => boolean, what: string, ms = 15000, from = 0): Promise<Received> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.msgs.slice(from).find(pred);
      if (m) return m;
      if (Date.now() > end)
        throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.msgs.slice(-12).map((x) => `${x.topic} ${x.raw.slice(0, 160)}`))}`);
      await sleep(25);
    }
  }
  stop(): void {
    this.child.kill('SIGTERM');
  }
}

/** mosquitto_pub: one message (from stdin, so any size), QoS 1. */
function pub(port: number, topic: string, payload: string | null, retain = false): Promise<void> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, ...(retain ? ['-r'] : []), ...(payload === null ? ['-n'] : ['-s'])];
  return new Promise((resolve, reject) => {
    const c = spawn(MOSQUITTO_PUB, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d) => (err += d));
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub ${topic} exited ${code}: ${err}`))));
    c.stdin!.end(payload ?? '');
  });
}

/** Every file under a folder (recursive). */
function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(path.join(dir, d.name)) : [path.join(dir, d.name)]));
}

function panelFlow(brokerUrl: string, storageRoot: string, protocolVersion = '4'): object[] {
  const site = recorderSiteFlow({ serverId: 'main-1', storageRoot, recorders: [{ channel: 1 }] });
  return [
    ...site,
    {
      id: 'mb',
      type: 'mqtt-broker',
      name: 'site broker',
      broker: brokerUrl,
      port: '',
      clientid: '',
      autoConnect: true,
      usetls: false,
      protocolVersion,
      keepalive: '15',
      cleansession: true,
      autoUnsubscribe: true,
      birthTopic: '',
      closeTopic: '',
      willTopic: '',
    },
    {
      id: 'min',
      type: 'mqtt in',
      z: 'tab1',
      name: 'panel requests',
      topic: `${P}/+/+/cmd/#`,
      qos: '1',
      datatype: 'auto-detect',
      broker: 'mb',
      nl: false,
      rap: true,
      rh: 0,
      inputs: 0,
      wires: [['sc']],
    },
    { id: 'sc', type: 'studio-control', z: 'tab1', name: '', prefix: P, prefixType: 'str', server: '', serverType: 'str', wires: [['mout']] },
    { id: 'mout', type: 'mqtt out', z: 'tab1', name: 'replies and state', topic: '', qos: '', retain: '', broker: 'mb', wires: [] },
    // what a Catch node sees of studio-control, published where the test can read it
    { id: 'sccatch', type: 'catch', z: 'tab1', scope: ['sc'], uncaught: false, wires: [['scerr']] },
    {
      id: 'scerr',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: "return { topic: 'test/caught', payload: { message: msg.error.message, source: msg.error.source && msg.error.source.id, topic: msg.topic } };",
      wires: [['mout']],
    },
  ];
}

describe('studio-control: a panel over MQTT (mosquitto_pub/sub) drives a recorder in a real Node-RED', function () {
  this.timeout(180000);
  let broker: Broker;
  let nr: NodeRedProcess | null = null;
  let sub: Sub | null = null;
  let userDir = '';

  beforeEach(async function () {
    broker = await startMosquitto();
    userDir = tmpDir('studio-e2e');
  });
  afterEach(async function () {
    sub?.stop();
    sub = null;
    if (nr) await nr.stop();
    nr = null;
    for (const pid of ffmpegPidsFor(userDir)) process.kill(pid, 'SIGKILL');
    fs.rmSync(userDir, { recursive: true, force: true });
    await broker.stop();
  });

  it('answers an MQTT v5 panel on its response topic with its correlation data (mqtt in/out at protocol 5), and refuses a wildcard response topic', async function () {
    nr = await startNodeRed({ userDir, flows: panelFlow(broker.url, 'store', '5') });
    const panel = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'panel-v5', reconnectPeriod: 0 });
    try {
      const got: {
        topic: string;
        payload: { ok: boolean; requestId: string; command: string; error?: { code: string; message: string } };
        correlationData?: Buffer;
      }[] = [];
      panel.on('message', (topic, payload, packet) =>
        got.push({ topic, payload: JSON.parse(payload.toString()), correlationData: packet.properties?.correlationData as Buffer | undefined }),
      );
      await panel.subscribeAsync(['panels/desk-5/answers', `${CH}/reply`], { qos: 1 });
      const waitFor = async (pred: (m: (typeof got)[number]) => boolean, what: string) => {
        for (let i = 0; i < 300; i++) {
          const m = got.find(pred);
          if (m) return m;
          await sleep(50);
        }
        throw new Error(`no ${what}: ${JSON.stringify(got)}`);
      };
      // the recorder comes up with the flow; ask until it answers
      const cd = Buffer.from('desk-5#17');
      let answer: (typeof got)[number] | undefined;
      for (let i = 0; i < 40 && !answer; i++) {
        await panel.publishAsync(`${CH}/cmd`, JSON.stringify({ command: 'add', line: { id: 'v5', title: 'Panel V5' }, requestId: `v5-${i}` }), {
          qos: 1,
          properties: { responseTopic: 'panels/desk-5/answers', correlationData: cd },
        });
        await sleep(250);
        answer = got.find((m) => m.topic === 'panels/desk-5/answers' && m.payload.ok === true);
      }
      assert.ok(answer, `an answer on the response topic: ${JSON.stringify(got)}`);
      assert.equal(answer.payload.command, 'add');
      assert.deepEqual(answer.correlationData, cd, 'its correlation data came back');
      assert.equal(got.filter((m) => m.topic === `${CH}/reply`).length, 0, 'not on the usual reply topic');
      // a wildcard response topic: refused on the usual reply topic, and nothing added
      await panel.publishAsync(`${CH}/cmd`, JSON.stringify({ command: 'add', line: { id: 'never', title: 'Never' }, requestId: 'bad-rt' }), {
        qos: 1,
        properties: { responseTopic: 'panels/+/answers' },
      });
      const refused = await waitFor((m) => m.topic === `${CH}/reply` && m.payload.requestId === 'bad-rt', 'the refusal');
      assert.equal(refused.payload.ok, false);
      assert.equal(refused.payload.error!.code, 'EINVAL');
      assert.match(refused.payload.error!.message, /not a topic to publish to/);
      await panel.publishAsync(`${CH}/cmd`, JSON.stringify({ command: 'list', requestId: 'list-v5' }), {
        qos: 1,
        properties: { responseTopic: 'panels/desk-5/answers', correlationData: cd },
      });
      const list = (await waitFor((m) => m.payload.requestId === 'list-v5', 'the list')) as unknown as { payload: { reclist: { id: string }[] } };
      assert.deepEqual(
        list.payload.reclist.map((l) => l.id),
        ['v5'],
      );
    } finally {
      await panel.endAsync(true);
    }
  });

  it('adds, starts (a clip records), lists, reads status and stops; malformed requests are answered with errors and change nothing', async function () {
    const port = broker.port;
    sub = new Sub(port, [`${P}/#`, 'test/#']);
    // mosquitto_sub has subscribed once a message of ours comes back through it
    for (let i = 0; !sub.msgs.some((m) => m.topic === 'test/ready'); i++) {
      if (i === 50) throw new Error('mosquitto_sub did not subscribe within 50 tries');
      await pub(port, 'test/ready', String(i));
      await sleep(50);
    }
    // a retained request left on the broker must not run when Node-RED connects
    await pub(port, `${CH}/cmd/add`, JSON.stringify({ line: { title: 'Ghost' }, requestId: 'retained-1' }), true);

    nr = await startNodeRed({ userDir, flows: panelFlow(broker.url, 'store') });
    const firstStatus = await sub.wait((m) => m.topic === `${CH}/status` && m.payload.state === 'idle', 'the retained status of channel 1');
    assert.equal(firstStatus.retain, false, 'a live subscriber gets it as a live message');
    const ret = await sub.wait((m) => m.topic === `${CH}/reply` && m.payload.requestId === 'retained-1', 'the answer to the retained request');
    assert.equal(ret.payload.ok, false);
    assert.equal(ret.payload.error.code, 'ERETAINED');
    assert.match(ret.payload.error.message, /retained request is refused: it would run again whenever Node-RED reconnects/);
    await sub.wait((m) => m.topic === 'test/caught' && /retained request is refused/.test(m.payload.message), 'Catch sees the retained request');
    // clearing it (an empty retained message) is not a request: no answer
    let mark = sub.msgs.length;
    await pub(port, `${CH}/cmd/add`, null, true);

    const ask = async (topic: string, payload: string, requestId: string) => {
      await pub(port, topic, payload);
      return sub!.wait((m) => m.topic.endsWith('/reply') && m.payload.requestId === requestId, `reply ${requestId}`);
    };

    // add a line
    const added = await ask(
      `${CH}/cmd`,
      JSON.stringify({ command: 'add', line: { id: 'show', title: 'Morning Show', attributes: { house: 'MS-1' } }, requestId: 'add-1' }),
      'add-1',
    );
    assert.equal(added.topic, `${CH}/reply`);
    assert.deepEqual([added.payload.ok, added.payload.command, added.payload.server, added.payload.channel], [true, 'add', 'main-1', 1]);
    assert.deepEqual(
      added.payload.events.map((e: { event: string }) => e.event),
      ['added'],
    );
    assert.equal(added.payload.events[0].line.title, 'Morning Show');
    const addedEvent = await sub.wait((m) => m.topic === `${CH}/event` && m.payload.event === 'added', 'the added event for every panel');
    assert.ok(sub.msgs.indexOf(addedEvent) > sub.msgs.indexOf(added), 'the requester gets its reply before the event');
    await sub.wait((m) => m.topic === `${CH}/reclist` && m.payload.lines.length === 1 && m.payload.lines[0].id === 'show', 'the rec-list with the new line');
    assert.equal(
      sub.msgs.slice(mark).filter((m) => m.topic.endsWith('/reply') && m.payload.error).length,
      0,
      'the empty message that cleared the retained request was not answered',
    );

    // start it: the reply says armed, the state then says recording, and media is written
    mark = sub.msgs.length;
    const started = await ask(`${CH}/cmd/start`, JSON.stringify({ line: { id: 'show' }, requestId: 'start-1' }), 'start-1');
    assert.equal(started.payload.ok, true, JSON.stringify(started.payload));
    assert.equal(started.payload.events[0].event, 'armed');
    await sub.wait((m) => m.topic === `${CH}/event` && m.payload.event === 'recording', 'the recording event', 30000, mark);
    const recStatus = await sub.wait((m) => m.topic === `${CH}/status` && m.payload.state === 'recording', 'status recording', 15000, mark);
    assert.equal(recStatus.payload.line.id, 'show');
    // the clip records 5 s: the stop below checks it holds at least 100 frames (not a wait for a condition)
    await sleep(5000);
    const segments = walk(path.join(userDir, 'store')).filter((f) => f.endsWith('.ts') && fs.statSync(f).size > 0);
    assert.ok(segments.length >= 2, `segments on disk: ${segments.join(', ')}`);

    // read the rec-list and the status while it records
    const listed = await ask(`${CH}/cmd`, JSON.stringify({ command: 'list', requestId: 'list-1' }), 'list-1');
    assert.deepEqual(
      listed.payload.reclist.map((l: { id: string; status: string }) => [l.id, l.status]),
      [['show', 'recording']],
    );
    assert.ok(listed.payload.reclist[0].clipId);
    const st = await ask(`${CH}/cmd/status`, JSON.stringify({ requestId: 'status-1' }), 'status-1');
    assert.equal(st.payload.status.state, 'recording');
    assert.match(st.payload.status.curPoint, /^\d\d:\d\d:\d\d[:;]\d\d$/);
    assert.equal(st.payload.status.line.title, 'Morning Show');

    // stop: the clip is closed with what was recorded
    mark = sub.msgs.length;
    const stopped = await ask(`${CH}/cmd`, JSON.stringify({ command: 'stop', requestId: 'stop-1' }), 'stop-1');
    assert.equal(stopped.payload.ok, true, JSON.stringify(stopped.payload));
    const ev = stopped.payload.events[0];
    assert.equal(ev.event, 'stopped');
    assert.equal(ev.clip.state, 'closed');
    assert.ok(ev.clip.frames >= 100, `${ev.clip.frames} frames`);
    assert.ok(ev.clip.segments >= 2, `${ev.clip.segments} segments`);
    const sidecar = JSON.parse(fs.readFileSync(path.join(userDir, 'store', ev.clip.dir, 'clip.json'), 'utf8'));
    assert.equal(sidecar.title, 'Morning Show');
    assert.deepEqual(sidecar.attributes, { house: 'MS-1' });
    await sub.wait((m) => m.topic === `${CH}/status` && m.payload.state === 'idle', 'status idle after stop', 15000, mark);
    await sub.wait((m) => m.topic === `${CH}/reclist` && m.payload.lines[0].status === 'stopped', 'rec-list with the stopped line', 15000, mark);

    // malformed requests: an error reply with a clear sentence, the Catch node sees it, nothing changes
    const before = JSON.stringify((await ask(`${CH}/cmd`, JSON.stringify({ command: 'list', requestId: 'before' }), 'before')).payload.reclist);
    const clipsBefore = walk(path.join(userDir, 'store')).filter((f) => f.endsWith('clip.json')).length;
    const bad: [string, string, string, string, RegExp][] = [
      ['bad JSON', `${CH}/cmd`, '{"command": "add", "line": {"title": "Half"', `${CH}/reply`, /^the payload is not valid JSON/],
      [
        'unknown command',
        `${CH}/cmd`,
        JSON.stringify({ command: 'record', requestId: 'bad-2' }),
        `${CH}/reply`,
        /^unknown command "record": the commands are add, update, remove, start, stop, list, get, status$/,
      ],
      [
        'bad line field',
        `${CH}/cmd`,
        JSON.stringify({ command: 'add', line: { title: 'X', n: 'first' }, requestId: 'bad-3' }),
        `${CH}/reply`,
        /^Command refused: line\.n must be a whole number$/,
      ],
      ['unknown line', `${CH}/cmd/start`, JSON.stringify({ line: { id: 'nope' }, requestId: 'bad-4' }), `${CH}/reply`, /no line with id "nope"/],
      [
        'unknown channel',
        `${P}/main-1/5/cmd`,
        JSON.stringify({ command: 'start', line: { id: 'show' }, requestId: 'bad-5' }),
        `${P}/main-1/5/reply`,
        /^server main-1 has no recorder on channel 5 in this Node-RED \(its channels here: 1\)$/,
      ],
      [
        'unknown server',
        `${P}/main-7/1/cmd`,
        JSON.stringify({ command: 'list', requestId: 'bad-6' }),
        `${P}/main-7/1/reply`,
        /^server main-7 has no recorder in this Node-RED \(servers here: main-1\)$/,
      ],
      ['not an object', `${CH}/cmd`, '[{"command": "list"}]', `${CH}/reply`, /^the payload must be a JSON object, not an array/],
    ];
    for (const [what, topic, payload, replyTopic, re] of bad) {
      const from = sub.msgs.length;
      await pub(port, topic, payload);
      const r: Received = await sub.wait((m) => m.topic === replyTopic && m.payload.ok === false, `error reply for ${what}`, 15000, from);
      assert.match(r.payload.error.message, re, what);
      assert.equal(typeof r.payload.error.code, 'string');
      const rid = /"requestId":"([^"]+)"/.exec(payload)?.[1] ?? null;
      assert.equal(r.payload.requestId, rid, `${what}: the reply carries the request id`);
      const c: Received = await sub.wait(
        (m) => m.topic === 'test/caught' && m.payload.message.includes(r.payload.error.message),
        `Catch sees ${what}`,
        15000,
        from,
      );
      assert.equal(c.payload.source, 'sc');
      assert.equal(c.payload.topic, topic, `${what}: the caught message is the request`);
    }
    const after = (await ask(`${CH}/cmd`, JSON.stringify({ command: 'list', requestId: 'after' }), 'after')).payload.reclist;
    assert.equal(JSON.stringify(after), before, 'the rec-list did not change');
    assert.equal(walk(path.join(userDir, 'store')).filter((f) => f.endsWith('clip.json')).length, clipsBefore, 'no clip was made');
    assert.deepEqual(ffmpegPidsFor(userDir), [], 'nothing records');

    // a panel that connects now gets the state at once (retained)
    const late = new Sub(port, [`${CH}/status`, `${CH}/reclist`]);
    try {
      const s = await late.wait((m) => m.topic === `${CH}/status`, 'retained status for a late panel', 5000);
      const l = await late.wait((m) => m.topic === `${CH}/reclist`, 'retained rec-list for a late panel', 5000);
      assert.deepEqual([s.retain, s.payload.state, l.retain], [true, 'idle', true]);
      assert.deepEqual(
        l.payload.lines.map((x: { id: string; status: string }) => [x.id, x.status]),
        [['show', 'stopped']],
      );
    } finally {
      late.stop();
    }

    // a change made without the panel (a command to the recorder node itself, here over its HTTP endpoint) reaches the panels too
    mark = sub.msgs.length;
    const direct = await nr.request('POST', '/cmd/1', { command: 'add', line: { id: 'desk', title: 'From the desk' } });
    assert.equal(direct.status, 200, JSON.stringify(direct.body));
    await sub.wait(
      (m) => m.topic === `${CH}/event` && m.payload.event === 'added' && m.payload.line.id === 'desk',
      'the event of the direct command',
      10000,
      mark,
    );
    await sub.wait(
      (m) => m.topic === `${CH}/reclist` && m.payload.lines.map((l: { id: string }) => l.id).join() === 'show,desk',
      'the rec-list after the direct command',
      10000,
      mark,
    );
    assert.doesNotMatch(nr.log(), /TypeError|uncaught/i);
  });
});
