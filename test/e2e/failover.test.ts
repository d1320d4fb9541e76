/**
 * Failover and failback end to end: two main servers and a failover server, each
 * a real Node-RED process with its own user directory and storage, and mosquitto.
 * kill -9 of a main makes the failover server record its channels from the
 * cached settings; when the main is back, automatic failback gives them back,
 * the log says so and a material-copy request is emitted.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { events, retainedState, waitCachedLine, waitEvent, walk } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { failoverSiteFlow, ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed, stopServers } from '../support/nodered';
import { sleep, tmpDir, waitFor } from '../support/nr';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

describe('failover and failback: two mains, a failover server and mosquitto', function () {
  this.timeout(240000);
  let broker: Broker;
  let rtsp: RtspServerHandle;
  const dirs: Record<string, string> = {};
  const procs: Record<string, NodeRedProcess | null> = {};

  beforeEach(async function () {
    broker = await startMosquitto();
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    for (const s of ['main-1', 'main-2', 'fo-1']) dirs[s] = tmpDir(s);
  });
  afterEach(async function () {
    await stopServers(procs, dirs, this.currentTest?.state === 'failed');
    await rtsp.stop();
    await broker.stop();
  });

  const mainFlow = (serverId: string) =>
    recorderSiteFlow({
      serverId,
      storageRoot: 'store',
      brokerUrl: broker.url,
      recorders: [
        { channel: 1, sourceType: 'url', url: rtsp.url, segmentSeconds: 2 },
        { channel: 2, sourceType: 'testpattern', segmentSeconds: 2 },
      ],
    });

  async function startMain(serverId: string, port?: number) {
    procs[serverId] = await startNodeRed({ userDir: dirs[serverId], port, flows: mainFlow(serverId) });
    return procs[serverId]!;
  }
  /** Both mains at once (each start is mostly waiting); each one that started is in procs for afterEach. */
  async function startMains(): Promise<NodeRedProcess[]> {
    const settled = await Promise.allSettled([startMain('main-1'), startMain('main-2')]);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((r) => (r as PromiseFulfilledResult<NodeRedProcess>).value);
  }

  async function record(p: NodeRedProcess, channel: number, id: string, title: string) {
    const add = await p.request('POST', `/cmd/${channel}`, { command: 'add', line: { id, title, attributes: { house: `H-${id}` } } });
    assert.equal(add.status, 200, JSON.stringify(add.body));
    const start = await p.request('POST', `/cmd/${channel}`, { command: 'start', line: { id } });
    assert.equal(start.status, 200, JSON.stringify(start.body));
  }

  async function lineStatus(p: NodeRedProcess, channel: number, id: string): Promise<string | undefined> {
    const r = await p.request('POST', `/cmd/${channel}`, { command: 'list' });
    return (r.body.lines as { id: string; status: string }[]).find((l) => l.id === id)?.status;
  }

  async function waitLine(p: NodeRedProcess, channel: number, id: string, status: string, ms = 30000) {
    const end = Date.now() + ms;
    for (;;) {
      const s = await lineStatus(p, channel, id);
      if (s === status) return;
      if (Date.now() > end) throw new Error(`line ${id} on channel ${channel} is ${s}, not ${status}`);
      await sleep(200);
    }
  }

  /** The failover server's cache holds the line as recording (it was published before the kill). */
  const waitCached = (server: string, lineId: string) => waitCachedLine(dirs['fo-1'], server, lineId);

  /** Media segments the failover server wrote for a failed server's channel. */
  function takeoverSegments(server: string, channel: number): string[] {
    const root = path.join(dirs['fo-1'], 'store', server, `ch${String(channel).padStart(2, '0')}`);
    return walk(root).filter((f) => f.endsWith('.ts') && fs.statSync(f).size > 0);
  }

  it('kill -9 of a main: the failover server records its channels from the cache; restart: automatic failback, log right, material copy requested', async function () {
    const [m1] = await startMains();
    procs['fo-1'] = await startNodeRed({
      userDir: dirs['fo-1'],
      flows: failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: broker.url, watched: 'main-1\nmain-2', holdDown: 3, overlap: 1 }),
    });
    const fo = procs['fo-1']!;
    await record(m1, 1, 'news', 'Evening News');
    await record(m1, 2, 'promo', 'Promo Loop');
    await waitLine(m1, 1, 'news', 'recording');
    await waitCached('main-1', 'news');
    await waitCached('main-1', 'promo');

    const killedAt = Date.now();
    await m1.kill9();
    procs['main-1'] = null;

    const failed = await waitEvent(fo, (e) => e.topic === 'failed' && e.payload.server === 'main-1', 'failed event');
    const started = await waitEvent(fo, (e) => e.topic === 'failover started', 'failover started');
    assert.equal(started.payload.entry.failedServer, 'main-1');
    assert.equal(started.payload.entry.failoverServer, 'fo-1');
    assert.deepEqual(started.payload.entry.channels, [1, 2]);
    assert.equal(started.payload.entry.state, 'active');
    assert.ok(started.payload.entry.epoch >= 1, 'the takeover raised the epoch');
    const byChannel = Object.fromEntries(
      (started.payload.channels as { channel: number; started: string[]; error: string | null }[]).map((c) => [c.channel, c]),
    );
    assert.deepEqual(byChannel[1].started, ['news'], JSON.stringify(byChannel));
    assert.deepEqual(byChannel[2].started, ['promo'], JSON.stringify(byChannel));
    assert.equal(byChannel[1].error, null);
    assert.ok(failed.at - killedAt < 5000, `failure seen ${failed.at - killedAt} ms after the kill`);
    // main-2 is fine: not taken over
    assert.ok(!(await events(fo)).some((e) => e.topic === 'failed' && e.payload.server === 'main-2'));

    // media for both channels, under the failed server's name and channel
    const end = Date.now() + 20000;
    while (takeoverSegments('main-1', 1).length < 2 || takeoverSegments('main-1', 2).length < 2) {
      if (Date.now() > end) throw new Error(`no takeover media: ch1 ${takeoverSegments('main-1', 1).length}, ch2 ${takeoverSegments('main-1', 2).length}`);
      await sleep(200);
    }
    const seg = takeoverSegments('main-1', 1)[0];
    assert.match(seg, /store\/main-1\/ch01\/\d{4}-\d{2}-\d{2}\/Evening News_\d{6}/);
    const sidecar = JSON.parse(fs.readFileSync(path.join(path.dirname(seg), 'clip.json'), 'utf8'));
    assert.equal(sidecar.attributes.failoverOf, 'main-1');
    assert.equal(sidecar.attributes.failoverChannel, 1);
    assert.equal(sidecar.attributes.failoverServer, 'fo-1');
    assert.equal(sidecar.attributes.house, 'H-news');

    // the log, by msg
    const log1 = await fo.request('POST', '/fw', { command: 'log' });
    assert.equal(log1.status, 200, JSON.stringify(log1.body));
    assert.equal(log1.body.active.length, 1);
    const entryId = log1.body.active[0].id as number;
    const epoch = log1.body.active[0].epoch as number;

    // the main comes back (same user directory): its lines are interrupted; automatic failback after the hold-down
    const back = await startMain('main-1');
    const fbOk = await waitEvent(fo, (e) => e.node === 'failback' && e.port === 0, 'Failback OK', 60000);
    assert.equal(fbOk.topic, 'Failback OK');
    assert.equal(fbOk.payload.entryId, entryId);
    assert.equal(fbOk.payload.how, 'automatic');
    assert.ok(fbOk.payload.endTime > fbOk.payload.startTime);
    assert.equal(fbOk.payload.durationMs, fbOk.payload.endTime - fbOk.payload.startTime);
    const copy = await waitEvent(fo, (e) => e.node === 'failback' && e.port === 1, 'material-copy request');
    assert.deepEqual(
      { failedServer: copy.payload.failedServer, failoverServer: copy.payload.failoverServer, channels: copy.payload.channels, entryId: copy.payload.entryId },
      { failedServer: 'main-1', failoverServer: 'fo-1', channels: [1, 2], entryId },
    );
    assert.equal(copy.payload.from, fbOk.payload.startTime);
    assert.equal(copy.payload.to, fbOk.payload.endTime);

    // the restored main records again, and carries the takeover's epoch
    await waitLine(back, 1, 'news', 'recording');
    await waitLine(back, 2, 'promo', 'recording');
    assert.equal((await retainedState(broker, 'main-1')).epoch, epoch);

    // log entry finalized, with its history
    const log2 = await fo.request('POST', '/fw', { command: 'log', state: 'finalized' });
    const entry = (log2.body.finalized as { id: number }[]).find((e) => e.id === entryId) as any;
    assert.ok(entry, JSON.stringify(log2.body));
    assert.equal(entry.state, 'finalized');
    assert.equal(entry.failbackResult, 'ok');
    assert.equal(entry.materialCopy, 'requested');
    const texts = (entry.history as { text: string }[]).map((h) => h.text);
    for (const want of [
      /^failover started/,
      /^evidence: /,
      /^failback requested \(automatic/,
      /^failback started$/,
      /confirmed/,
      /^failback performed$/,
      /^material copy requested$/,
    ]) {
      assert.ok(
        texts.some((t) => want.test(t)),
        `history has ${want}: ${JSON.stringify(texts)}`,
      );
    }
    // the failover server stopped recording for main-1
    const foMain1 = path.join(dirs['fo-1'], 'store', 'main-1');
    await waitFor(() => ffmpegPidsFor(foMain1).length === 0, { timeout: 15000, what: "fo-1's ffmpeg for main-1 to end", detail: () => ffmpegPidsFor(foMain1) });
    assert.deepEqual(ffmpegPidsFor(foMain1), []);
    const status = await fo.request('POST', '/fw', { command: 'status' });
    const w1 = (status.body.watched as { server: string; takenOver: boolean; markedFailed: boolean }[]).find((w) => w.server === 'main-1')!;
    assert.equal(w1.takenOver, false);
    assert.equal(w1.markedFailed, false);
  });

  it('both mains killed: the priority order decides which one the failover server (capacity 1) records for', async function () {
    const [m1, m2] = await startMains();
    procs['fo-1'] = await startNodeRed({
      userDir: dirs['fo-1'],
      flows: failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: broker.url, watched: 'main-1\nmain-2', holdDown: 3, capacity: 1 }),
    });
    const fo = procs['fo-1']!;
    await record(m1, 2, 'a', 'Studio A');
    await record(m2, 2, 'b', 'Studio B');
    await waitCached('main-1', 'a');
    await waitCached('main-2', 'b');
    // main-2 (lower priority) fails first and is taken over ...
    await m2.kill9();
    procs['main-2'] = null;
    await waitEvent(fo, (e) => e.topic === 'failover started' && e.payload.entry.failedServer === 'main-2', 'takeover of main-2');
    // ... then main-1 (higher priority) fails: it displaces main-2
    await m1.kill9();
    procs['main-1'] = null;
    const t1 = await waitEvent(fo, (e) => e.topic === 'failover started' && e.payload.entry.failedServer === 'main-1', 'takeover of main-1');
    const rel = await waitEvent(fo, (e) => e.topic === 'released' && e.payload.server === 'main-2', 'release of main-2');
    assert.match(rel.payload.reason, /higher priority/);
    assert.deepEqual(
      t1.payload.channels.map((c: { channel: number; started: string[] }) => [c.channel, c.started]),
      [
        [1, []],
        [2, ['a']],
      ],
    );
    const st = await fo.request('POST', '/fw', { command: 'status' });
    const taken = (st.body.watched as { server: string; takenOver: boolean }[]).filter((w) => w.takenOver).map((w) => w.server);
    assert.deepEqual(taken, ['main-1']);
    const foMain2 = path.join(dirs['fo-1'], 'store', 'main-2');
    await waitFor(() => takeoverSegments('main-1', 2).length > 0 && ffmpegPidsFor(foMain2).length === 0, {
      timeout: 15000,
      what: 'media of main-1 and no ffmpeg for main-2 on fo-1',
      detail: () => [takeoverSegments('main-1', 2).length, ffmpegPidsFor(foMain2)],
    });
    assert.ok(takeoverSegments('main-1', 2).length > 0, 'main-1 is recorded');
    assert.deepEqual(ffmpegPidsFor(foMain2), [], 'main-2 is no longer recorded');
    // the log keeps both: main-2's entry says it was released
    const log = await fo.request('POST', '/fw', { command: 'log', state: 'active' });
    const e2 = (log.body.active as { failedServer: string; history: { text: string }[] }[]).find((e) => e.failedServer === 'main-2')!;
    assert.ok(
      e2.history.some((h) => /takeover released: .*higher priority/.test(h.text)),
      JSON.stringify(e2.history),
    );
  });

  it('kill -9 of the failover server during a takeover: it resumes recording for the failed main on restart, and fails back later', async function () {
    const m1 = await startMain('main-1');
    const foFlow = failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: broker.url, watched: 'main-1', holdDown: 2, overlap: 1 });
    procs['fo-1'] = await startNodeRed({ userDir: dirs['fo-1'], flows: foFlow });
    const sys: { kind: string; entryId?: number }[] = [];
    const watcher = await mqtt.connectAsync(broker.url, { clientId: `sys-${process.pid}` });
    watcher.on('message', (_t, p) => sys.push(JSON.parse(p.toString())));
    await watcher.subscribeAsync('twinrec/studio/+/system');
    try {
      await record(m1, 2, 'promo', 'Promo Loop');
      await waitCached('main-1', 'promo');
      await m1.kill9();
      procs['main-1'] = null;
      const started = await waitEvent(procs['fo-1']!, (e) => e.topic === 'failover started', 'failover started');
      const entryId = started.payload.entry.id as number;
      await waitFor(() => takeoverSegments('main-1', 2).length > 0, {
        timeout: 15000,
        what: 'takeover media of main-1 channel 2 before the failover server is killed',
      });
      const before = takeoverSegments('main-1', 2).length;
      assert.ok(before > 0);
      // the failover server dies too, and comes back
      await procs['fo-1']!.kill9();
      const port = procs['fo-1']!.port;
      procs['fo-1'] = await startNodeRed({ userDir: dirs['fo-1'], port, flows: foFlow });
      const fo = procs['fo-1']!;
      const end = Date.now() + 20000;
      while (takeoverSegments('main-1', 2).length <= before + 1) {
        if (Date.now() > end) throw new Error('the takeover did not resume recording after the failover server restarted');
        await sleep(200);
      }
      const log = await fo.request('POST', '/fw', { command: 'log', state: 'active' });
      const e = (log.body.active as { id: number; state: string; history: { text: string }[] }[]).find((x) => x.id === entryId)!;
      assert.ok(e, 'the log entry survived the kill -9');
      assert.equal(e.state, 'active');
      assert.ok(
        e.history.some((h) => /takeover resumed after fo-1 restarted/.test(h.text)),
        JSON.stringify(e.history),
      );
      const st = await fo.request('POST', '/fw', { command: 'status' });
      assert.equal(st.body.watched[0].takenOver, true);
      // the main returns: automatic failback of the same entry
      const back = await startMain('main-1');
      const ok = await waitEvent(fo, (x) => x.node === 'failback' && x.port === 0, 'Failback OK', 60000);
      assert.equal(ok.payload.entryId, entryId);
      await waitLine(back, 2, 'promo', 'recording');
      // clients were told on MQTT: failover started, failback performed
      const until = Date.now() + 5000;
      while (!sys.some((x) => x.kind === 'failback-performed') && Date.now() < until) await sleep(100);
      assert.deepEqual(
        sys.filter((x) => x.entryId === entryId).map((x) => x.kind),
        ['failover-started', 'failback-performed'],
      );
    } finally {
      await watcher.endAsync();
    }
  });
});
