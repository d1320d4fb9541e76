/**
 * Material copy end to end: a main and a failover server, each a real Node-RED
 * process with its peer storage API, and mosquitto. The failover server records
 * through a failover period; after the automatic failback the restored main
 * fetches every segment and event of that period, with equal sha256, and the
 * failover log entry says material copy done. A kill -9 of the main, or of the
 * failover server, in the middle of the copy is resumed with no duplicate and
 * nothing lost.
 */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { events, waitCachedLine, waitEvent, walk } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { failoverSiteFlow, ffmpegPidsFor, freePort, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

const SECRET = 'group-peer-secret-0123456789';
const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe('material copy: the restored main fetches what the failover server recorded', function () {
  this.timeout(300000);
  let broker: Broker;
  let dirM: string;
  let dirF: string;
  let main: NodeRedProcess | null = null;
  let fo: NodeRedProcess | null = null;
  let portM: number;
  let portF: number;

  beforeEach(async function () {
    broker = await startMosquitto();
    dirM = tmpDir('main-1');
    dirF = tmpDir('fo-1');
    portM = await freePort();
    portF = await freePort();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const [k, p] of Object.entries({ main, fo })) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-6000)}`);
    }
    for (const p of [main, fo]) if (p) await p.stop();
    main = fo = null;
    for (const d of [dirM, dirF]) {
      for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
    await broker.stop();
  });

  const startMain = async (bandwidth = 0) => {
    main = await startNodeRed({
      userDir: dirM,
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        peerPort: portM,
        materialCopy: { bandwidth },
        recorders: [
          { channel: 1, sourceType: 'testpattern', segmentSeconds: 1 },
          { channel: 2, sourceType: 'testpattern', segmentSeconds: 1 },
        ],
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    return main;
  };
  const startFo = async () => {
    fo = await startNodeRed({
      userDir: dirF,
      flows: failoverSiteFlow({
        serverId: 'fo-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        watched: 'main-1',
        holdDown: 2,
        overlap: 1,
        peerPort: portF,
        materialCopy: true,
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    return fo;
  };
  async function recordLine(p: NodeRedProcess, ch: number, id: string) {
    assert.equal((await p.request('POST', `/cmd/${ch}`, { command: 'add', line: { id, title: `Line ${id}` } })).status, 200);
    assert.equal((await p.request('POST', `/cmd/${ch}`, { command: 'start', line: { id } })).status, 200);
  }
  const cachedRecording = (id: string) => waitCachedLine(dirF, 'main-1', id);

  /** The failover server's media for main-1, relative path -> sha256 (complete segments only: those of closed clips). */
  function foMedia(): Map<string, string> {
    const root = path.join(dirF, 'store');
    return new Map(
      walk(path.join(root, 'main-1'))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => [path.relative(root, f), sha(f)]),
    );
  }
  async function entryState(): Promise<{ id: number; materialCopy: string; startedAt: number; endedAt: number }> {
    const r = await fo!.request('POST', '/fw', { command: 'log', state: 'all' });
    return [...r.body.active, ...r.body.finalized][0];
  }
  async function waitCopy(state: string, ms = 120000) {
    const end = Date.now() + ms;
    for (;;) {
      const e = await entryState();
      if (e?.materialCopy === state) return e;
      if (Date.now() > end)
        throw new Error(`material copy is ${e?.materialCopy}, not ${state}; main events: ${JSON.stringify((await events(main!)).slice(-5))}`);
      await sleep(250);
    }
  }
  /** What the restored main holds now: every copied media file equal to the failover server's, and the catalogue rows. */
  function checkCopied() {
    const want = foMedia();
    assert.ok(want.size >= 4, `the failover server recorded ${want.size} segments`);
    for (const [rel, h] of want) {
      const f = path.join(dirM, 'store', rel);
      assert.ok(fs.existsSync(f), `${rel} was copied`);
      assert.equal(sha(f), h, `${rel} has the same sha256`);
    }
    const db = new Database(path.join(dirM, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    try {
      const clips = db.prepare("SELECT data FROM clips WHERE json_extract(data, '$.attributes.copiedFrom') = 'fo-1'").all() as { data: string }[];
      const segs = clips.flatMap((c) => db.prepare('SELECT data FROM segments WHERE clip_id = ?').all(JSON.parse(c.data).id) as { data: string }[]);
      assert.equal(segs.length, want.size, 'every copied segment is registered');
      assert.ok(segs.every((s) => JSON.parse(s.data).recordedBy === 'fo-1'));
      assert.ok(clips.every((c) => JSON.parse(c.data).attributes.copyState === 'copied'));
      const evs = db.prepare("SELECT data FROM events WHERE json_extract(data, '$.copiedFrom') = 'fo-1'").all() as { data: string }[];
      const seqs = evs.map((e) => JSON.parse(e.data).remoteSeq as number);
      assert.equal(new Set(seqs).size, seqs.length, 'no event copied twice');
      const foDb = new Database(path.join(dirF, 'twinrec', 'catalogue.sqlite'), { readonly: true });
      try {
        const foEvents = foDb.prepare("SELECT COUNT(*) AS n FROM events WHERE server_id = 'main-1'").get() as { n: number };
        assert.ok(foEvents.n > 0);
        assert.equal(seqs.length, foEvents.n, 'every event of the failover period was copied');
      } finally {
        foDb.close();
      }
    } finally {
      db.close();
    }
  }
  async function failOverAndBack(recordMs: number, bandwidth = 0) {
    await startMain(bandwidth);
    await startFo();
    await recordLine(main!, 1, 'news');
    await recordLine(main!, 2, 'promo');
    await cachedRecording('news');
    await cachedRecording('promo');
    await main!.kill9();
    main = null;
    await waitEvent(fo!, (e) => e.topic === 'failover started', 'failover started');
    await sleep(recordMs);
    await startMain(bandwidth);
    await waitEvent(fo!, (e) => e.node === 'failback' && e.port === 0, 'Failback OK', 60000);
    await waitEvent(fo!, (e) => e.node === 'material-copy' && e.topic === 'forwarded', 'request forwarded');
  }

  it('copies every segment and event of the failover period with equal sha256; the log says done', async function () {
    await failOverAndBack(5000);
    const e = await waitCopy('done');
    checkCopied();
    const mainEvents = await events(main!);
    const done = mainEvents.find((x) => x.node === 'material-copy' && x.topic === 'done');
    assert.ok(done, 'the main reported the task done');
    assert.equal(done!.payload.entryId, e.id);
    assert.equal(done!.payload.from, e.startedAt);
    assert.equal(done!.payload.to, e.endedAt);
    const last = mainEvents.filter((x) => x.topic === 'progress').pop()!;
    assert.equal(last.payload.phase, 'done');
    assert.ok(last.payload.bytesTotal > 0);
    assert.equal(last.payload.bytesDone, last.payload.bytesTotal, 'progress ends at the total');
  });

  it('a kill -9 of the main mid-copy, then of the failover server: the copy resumes and ends complete, nothing twice', async function () {
    // slow enough to be cut in the middle: 0.3 MB/s
    await failOverAndBack(5000, 0.3);
    const entry = await waitCopy('running');
    // no second failover when the main is killed now: maintenance mode (it is the copy that is being tested)
    assert.equal((await fo!.request('POST', '/fw', { command: 'maintenance', server: 'main-1', on: true })).status, 200);
    await sleep(2500);
    await main!.kill9();
    main = null;
    await startMain(0.5);
    await sleep(2500);
    await fo!.kill9();
    fo = null;
    await sleep(1500);
    await startFo();
    const e = await waitCopy('done', 180000);
    assert.equal(e.id, entry.id, 'the same failover entry, no second failover');
    checkCopied();
    const done = (await events(main!)).find((x) => x.node === 'material-copy' && x.topic === 'done');
    assert.ok(done, 'the restarted main finished the task');
    const total = foMedia().size;
    assert.equal(done!.payload.segmentsCopied + done!.payload.segmentsSkipped, total, 'each segment once: copied, or found already here after the kill');
    assert.ok(done!.payload.segmentsSkipped <= 1, `at most the segment in flight at the kill is found on disk (${done!.payload.segmentsSkipped})`);
    assert.ok(done!.payload.attempts >= 2, 'the task was resumed');
  });
});
