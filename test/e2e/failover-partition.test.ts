/**
 * Partition end to end: a main server cut off the broker by a network partition
 * (it runs in its own network namespace, joined to the host by a veth pair)
 * while it still records. The failover server takes it over; the main, which
 * never stopped, keeps recording and its operator stops a Backup=On line during
 * the partition. On healing, the main's stale mirror commands (old epoch) are
 * refused by the backup, automatic failback converges: the main takes the
 * takeover's epoch, its line that never stopped counts as recording again, the
 * backup's Aux lines follow the main's real state, the log entry is finalized.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { Broker, startMosquitto } from '../support/mosquitto';
import { failoverSiteFlow, ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed, stopServers } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';
import { Netns, tryRun } from '../support/netns';

interface Ev {
  node: string;
  port: number;
  topic: string;
  payload: any;
  at: number;
}

interface LinkError {
  message: string;
  from: string | null;
  lineId: string | null;
  epoch: number | null;
  at: number;
}

interface Applied {
  event: string;
  lineId: string;
  status: string;
  epoch: number | null;
  at: number;
}

interface ListedLine {
  id: string;
  title: string;
  status: string;
  backup: string;
  clipId: string | null;
}

/** Every file under a directory, recursively. */
function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function segments(root: string): string[] {
  return walk(root).filter((f) => f.endsWith('.ts') && fs.statSync(f).size > 0);
}

async function events(p: NodeRedProcess): Promise<Ev[]> {
  return (await p.request('GET', '/events')).body as Ev[];
}

async function waitEvent(p: NodeRedProcess, pred: (e: Ev) => boolean, what: string, ms = 30000): Promise<Ev> {
  const end = Date.now() + ms;
  for (;;) {
    const ev = (await events(p)).find(pred);
    if (ev) return ev;
    if (Date.now() > end)
      throw new Error(`no ${what} within ${ms} ms; events: ${JSON.stringify((await events(p)).map((e) => `${e.node}:${e.port}:${e.topic}`))}`);
    await sleep(100);
  }
}

/** The retained state a server announced on the broker. */
async function retainedState(broker: Broker, server: string): Promise<{ epoch: number; state: string }> {
  const c = await mqtt.connectAsync(broker.url, { clientId: `probe-${process.pid}-${Date.now()}` });
  try {
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no retained state of ${server}`)), 5000);
      c.on('message', (_topic, payload) => {
        clearTimeout(t);
        resolve(JSON.parse(payload.toString()));
      });
      void c.subscribeAsync(`twinrec/studio/${server}/state`);
    });
  } finally {
    await c.endAsync();
  }
}

describe('failover under a network partition: a main cut off the broker while it records', function () {
  this.timeout(180000);
  let broker: Broker | null = null;
  const netns = new Netns();
  const dirs: Record<string, string> = {};
  const procs: Record<string, NodeRedProcess | null> = {};

  beforeEach(async function () {
    netns.create();
    broker = await startMosquitto({ listen: ['127.0.0.1', netns.hostAddr] });
    for (const s of ['main-1', 'backup-1', 'fo-1']) dirs[s] = tmpDir(s);
  });
  afterEach(async function () {
    const failed = this.currentTest?.state === 'failed';
    if (failed && broker) console.log(`---- mosquitto log (tail)\n${broker.log().slice(-3000)}`);
    // the namespace's end must be reachable for a graceful stop of main-1 (it says goodbye on the broker)
    if (netns.exists) tryRun(['ip', 'link', 'set', netns.hostIf, 'up']);
    await stopServers(procs, dirs, failed);
    netns.destroy();
    if (broker) await broker.stop();
    broker = null;
  });

  const recorders = (backupServer?: string) =>
    [1, 2].map((channel) => ({ channel, sourceType: 'testpattern', segmentSeconds: 2, ...(backupServer ? { backupServer, backupChannel: channel } : {}) }));

  /**
   * The backup's flow: recorderSiteFlow, plus what its backup-link node did:
   *   GET /link-errors  every error it raised (refused mirrors), in order
   *   GET /link-applied every Aux change it applied, in order
   */
  function backupFlow(brokerUrl: string): object[] {
    const nodes = recorderSiteFlow({ serverId: 'backup-1', role: 'backup', storageRoot: 'store', brokerUrl, backupLink: true, recorders: recorders() }) as {
      id: string;
      wires?: string[][];
    }[];
    nodes.find((n) => n.id === 'blink')!.wires = [['blapplied']];
    const store = (key: string, expr: string) => `const list = flow.get('${key}') || [];\nlist.push(${expr});\nflow.set('${key}', list);\nreturn null;`;
    const serve = (id: string, url: string, key: string) => [
      { id: `${id}in`, type: 'http in', z: 'tab1', url, method: 'get', upload: false, wires: [[`${id}out`]] },
      { id: `${id}out`, type: 'function', z: 'tab1', outputs: 1, func: `msg.payload = flow.get('${key}') || [];\nreturn msg;`, wires: [['blresp']] },
    ];
    return [
      ...nodes,
      { id: 'blcatch', type: 'catch', z: 'tab1', scope: ['blink'], uncaught: false, wires: [['blerr']] },
      {
        id: 'blerr',
        type: 'function',
        z: 'tab1',
        outputs: 1,
        func: store(
          'linkErrors',
          '{ message: msg.error.message, from: msg.payload && msg.payload.from ? msg.payload.from.server : null, lineId: msg.payload ? msg.payload.lineId : null, epoch: msg.payload ? msg.payload.epoch : null, at: Date.now() }',
        ),
        wires: [[]],
      },
      {
        id: 'blapplied',
        type: 'function',
        z: 'tab1',
        outputs: 1,
        func: store(
          'linkApplied',
          '{ event: msg.payload.event, lineId: msg.payload.line ? msg.payload.line.id : null, status: msg.payload.line ? msg.payload.line.status : null, epoch: null, at: Date.now() }',
        ),
        wires: [[]],
      },
      ...serve('ble', '/link-errors', 'linkErrors'),
      ...serve('bla', '/link-applied', 'linkApplied'),
      { id: 'blresp', type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
    ];
  }

  async function lines(
    p: NodeRedProcess | ((m: string, u: string, b?: unknown) => Promise<{ status: number; body: any }>),
    channel: number,
  ): Promise<ListedLine[]> {
    const r =
      typeof p === 'function' ? await p('POST', `/cmd/${channel}`, { command: 'list' }) : await p.request('POST', `/cmd/${channel}`, { command: 'list' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.lines as ListedLine[];
  }

  async function waitLine(
    p: NodeRedProcess | ((m: string, u: string, b?: unknown) => Promise<{ status: number; body: any }>),
    who: string,
    channel: number,
    id: string,
    status: string,
    ms = 30000,
  ): Promise<ListedLine> {
    const end = Date.now() + ms;
    for (;;) {
      const l = (await lines(p, channel)).find((x) => x.id === id);
      if (l?.status === status) return l;
      if (Date.now() > end) throw new Error(`line ${id} on ${who} channel ${channel} is ${l?.status ?? 'absent'}, not ${status}`);
      await sleep(200);
    }
  }

  /** The failover server's cache holds the line as recording. */
  async function waitCached(server: string, lineId: string) {
    const file = path.join(dirs['fo-1'], 'twinrec', 'settings-cache', `${server}.json`);
    const end = Date.now() + 15000;
    for (;;) {
      try {
        const list = JSON.parse(fs.readFileSync(file, 'utf8')) as { lines: { id: string; status: string }[] }[];
        if (list.some((c) => c.lines.some((l) => l.id === lineId && l.status === 'recording'))) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > end) throw new Error(`the settings cache of fo-1 has no recording line ${lineId} of ${server}`);
      await sleep(100);
    }
  }

  async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, what: string, ms = 30000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(200);
    }
  }

  it('the failover server takes over the cut-off main; on healing its stale commands are refused by epoch and failback converges', async function () {
    const b = broker!;
    const [m1, bk, fo] = await Promise.all([
      startNodeRed({
        userDir: dirs['main-1'],
        host: '0.0.0.0', // inside the namespace: its loopback and its end of the veth pair
        reachAt: netns.nsAddr,
        wrap: netns.wrap,
        flows: recorderSiteFlow({
          serverId: 'main-1',
          storageRoot: 'store',
          brokerUrl: `mqtt://${netns.hostAddr}:${b.port}`,
          backupLink: true,
          recorders: recorders('backup-1'),
        }),
      }),
      startNodeRed({ userDir: dirs['backup-1'], flows: backupFlow(b.url) }),
      startNodeRed({
        userDir: dirs['fo-1'],
        flows: failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: b.url, watched: 'main-1', holdDown: 3, overlap: 1 }),
      }),
    ]);
    procs['main-1'] = m1;
    procs['backup-1'] = bk;
    procs['fo-1'] = fo;
    // main-1 really is in the namespace: its process's network namespace is not ours
    assert.notEqual(fs.readlinkSync(`/proc/${m1.pid}/ns/net`), fs.readlinkSync('/proc/self/ns/net'), 'main-1 runs in its own network namespace');
    const inNs = (method: string, urlPath: string, body?: unknown) => netns.request(m1.port, method, urlPath, body);

    // two Backup=On lines on main-1, mirrored to backup-1
    for (const [ch, id, title] of [
      [1, 'news', 'Evening News'],
      [2, 'promo', 'Promo Loop'],
    ] as const) {
      const add = await m1.request('POST', `/cmd/${ch}`, { command: 'add', line: { id, title, backup: 'on', attributes: { house: `H-${id}` } } });
      assert.equal(add.status, 200, JSON.stringify(add.body));
      const start = await m1.request('POST', `/cmd/${ch}`, { command: 'start', line: { id } });
      assert.equal(start.status, 200, JSON.stringify(start.body));
    }
    await waitLine(m1, 'main-1', 1, 'news', 'recording');
    const promoBefore = await waitLine(m1, 'main-1', 2, 'promo', 'recording');
    assert.equal((await waitLine(bk, 'backup-1', 1, 'news', 'recording')).backup, 'aux');
    assert.equal((await waitLine(bk, 'backup-1', 2, 'promo', 'recording')).backup, 'aux');
    await waitCached('main-1', 'news');
    await waitCached('main-1', 'promo');
    const epochBefore = (await retainedState(b, 'main-1')).epoch;

    // ---- the partition
    const cutAt = Date.now();
    netns.cut();
    const failed = await waitEvent(fo, (e) => e.topic === 'failed' && e.payload.server === 'main-1', 'failed event for main-1');
    assert.match(failed.payload.evidence, /no heartbeat .* broker says offline \(lwt\)/, 'the broker gave the Last Will of the cut-off main');
    // mosquitto notices the silent client after 1.5 keepalives, checked every few seconds (2.0.11): a few seconds
    assert.ok(failed.at - cutAt < 12000, `failure seen ${failed.at - cutAt} ms after the cut`);
    const started = await waitEvent(fo, (e) => e.topic === 'failover started' && e.payload.entry.failedServer === 'main-1', 'failover started');
    const entryId = started.payload.entry.id as number;
    const epoch = started.payload.entry.epoch as number;
    assert.ok(epoch > epochBefore, `the takeover raised the epoch (${epochBefore} -> ${epoch})`);
    assert.deepEqual(
      (started.payload.channels as { channel: number; started: string[]; error: string | null }[]).map((c) => [c.channel, c.started, c.error]),
      [
        [1, ['news'], null],
        [2, ['promo'], null],
      ],
    );
    // the failover server records main-1's channels ...
    const foStore = (ch: number) => path.join(dirs['fo-1'], 'store', 'main-1', `ch0${ch}`);
    await waitFor(() => (segments(foStore(1)).length >= 1 && segments(foStore(2)).length >= 1 ? true : undefined), 'takeover media on fo-1 for both channels');
    // ... while main-1, cut off, records on: its storage grows, its lines record (asked from inside its namespace)
    const mainStore = (ch: number) => path.join(dirs['main-1'], 'store', 'main-1', `ch0${ch}`);
    const mainSegsAtTakeover = segments(mainStore(2)).length;
    const listed = await lines(inNs, 2);
    assert.equal(listed.find((l) => l.id === 'promo')?.status, 'recording', 'main-1 records on during the partition');

    // main-1's operator stops the news line during the partition: a mirror message of the old epoch, held for the broker
    const stop = await inNs('POST', '/cmd/1', { command: 'stop', line: { id: 'news' } });
    assert.equal(stop.status, 200, JSON.stringify(stop.body));
    await waitLine(inNs, 'main-1', 1, 'news', 'stopped');
    await sleep(4000); // a fixed wait: main-1 records on, and the backup hears nothing of the stop, while cut off
    assert.ok(
      segments(mainStore(2)).length >= mainSegsAtTakeover + 1,
      `main-1 wrote media during the partition (${mainSegsAtTakeover} -> ${segments(mainStore(2)).length} segments)`,
    );
    // the backup has not heard of the stop: its Aux twin records on
    assert.equal((await lines(bk, 1)).find((l) => l.id === 'news')?.status, 'recording', 'the Aux news line records on while main-1 is cut off');
    assert.deepEqual((await bk.request('GET', '/link-errors')).body, [], 'no refusal before the partition heals');

    // ---- healing
    const healAt = Date.now();
    netns.heal();
    // main-1 reconnects and republishes its retained mirrors, still of its old epoch: the backup refuses them
    const refused = await waitFor(
      async () => ((await bk.request('GET', '/link-errors')).body as LinkError[]).find((e) => e.from === 'main-1' && e.lineId === 'news'),
      "the backup refusing main-1's stale mirror of the news line",
      40000,
    );
    assert.match(
      refused.message,
      new RegExp(`refused a mirror message from main-1 of epoch ${epochBefore}: the group is at epoch ${epoch} \\(a stale main\\)`),
    );
    assert.equal(refused.epoch, epochBefore);
    // then automatic failback after the hold-down
    const fbOk = await waitEvent(fo, (e) => e.node === 'failback' && e.port === 0, 'Failback OK', 60000);
    assert.equal(fbOk.topic, 'Failback OK');
    assert.equal(fbOk.payload.entryId, entryId);
    assert.equal(fbOk.payload.how, 'automatic');
    assert.ok(refused.at < fbOk.at, 'the stale mirror was refused before the failback');
    assert.ok(fbOk.at - healAt >= 3000, `failback waited for the hold-down (${fbOk.at - healAt} ms after healing)`);
    // main-1 carries the takeover's epoch now
    assert.equal((await retainedState(b, 'main-1')).epoch, epoch);

    // the backup converges to main-1's state: news stopped (the mirror restamped with the new epoch), promo recording
    const newsAux = await waitLine(bk, 'backup-1', 1, 'news', 'stopped', 20000);
    assert.equal(newsAux.backup, 'aux');
    const applied = (await bk.request('GET', '/link-applied')).body as Applied[];
    const auxStop = applied.find((a) => a.lineId === 'news' && a.event === 'stopped');
    assert.ok(auxStop, JSON.stringify(applied));
    assert.ok(auxStop.at > refused.at, 'the Aux news line stopped only once main-1 carried the new epoch');
    assert.equal((await lines(bk, 2)).find((l) => l.id === 'promo')?.status, 'recording');
    const errors = (await bk.request('GET', '/link-errors')).body as LinkError[];
    assert.ok(
      errors.every((e) => /a stale main/.test(e.message) && e.epoch === epochBefore),
      `the only refusals are of main-1's old epoch: ${JSON.stringify(errors)}`,
    );

    // main-1 after the failback: promo never stopped (the same clip goes on); news records again as the failover recorded it
    const promoAfter = (await lines(m1, 2)).find((l) => l.id === 'promo')!;
    assert.equal(promoAfter.status, 'recording');
    assert.equal(promoAfter.clipId, promoBefore.clipId, 'the line that never stopped was not restarted');
    const ch1 = await lines(m1, 1);
    assert.equal(ch1.find((l) => l.id === 'news')?.status, 'stopped', 'the line main-1 stopped stays stopped');
    const again = ch1.find((l) => l.id === `news-fb${entryId}`);
    assert.equal(again?.status, 'recording', `the failover server recorded news to the end: main-1 records it again (${JSON.stringify(ch1)})`);
    assert.equal(again!.backup, 'off');

    // the log entry is finalized, failback ok, with what main-1 confirmed
    const log = await fo.request('POST', '/fw', { command: 'log', state: 'finalized' });
    assert.equal(log.status, 200, JSON.stringify(log.body));
    const entry = (log.body.finalized as { id: number }[]).find((e) => e.id === entryId) as any;
    assert.ok(entry, JSON.stringify(log.body));
    assert.equal(entry.failbackResult, 'ok');
    assert.equal(entry.epoch, epoch);
    const texts = (entry.history as { text: string }[]).map((h) => h.text);
    const confirmed = texts.find((t) => /^main-1 confirmed: /.test(t));
    assert.ok(confirmed, JSON.stringify(texts));
    assert.match(confirmed, /channel 2: "Promo Loop" was still recording here/);
    assert.match(confirmed, /channel 1: "Evening News" records again/);
    // the failover server stopped recording for main-1, and has not taken it over a second time
    await sleep(1500);
    assert.deepEqual(ffmpegPidsFor(path.join(dirs['fo-1'], 'store', 'main-1')), []);
    const evs = await events(fo);
    assert.equal(evs.filter((e) => e.topic === 'failover started').length, 1, JSON.stringify(evs.map((e) => e.topic)));
    const status = await fo.request('POST', '/fw', { command: 'status' });
    const w1 = (status.body.watched as { server: string; takenOver: boolean; markedFailed: boolean; status: string }[]).find((w) => w.server === 'main-1')!;
    assert.deepEqual([w1.takenOver, w1.markedFailed, w1.status], [false, false, 'ok']);
    console.log(
      `      partition: failed after ${failed.at - cutAt} ms, takeover after ${started.at - cutAt} ms; ` +
        `healed: refusal after ${refused.at - healAt} ms, Failback OK after ${fbOk.at - healAt} ms, Aux stop after ${auxStop.at - healAt} ms`,
    );
  });
});
