/** Material copy against a scripted peer (the peer API itself is tested against real HTTP elsewhere). */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalogue, CatalogueEvent } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { CopyQueue } from '../../../lib/store/copy-queue';
import { CopySource, MaterialCopier } from '../../../lib/copy/material-copy';
import { CopyLink, MaterialCopyService } from '../../../lib/copy/material-copy-service';
import { LINK_VERSION } from '../../../lib/link/schemas';

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function makeClip(root: string, id: string, dir: string, n: number, t0: number): { clip: Clip; data: Buffer[] } {
  const data: Buffer[] = [];
  const segments: Segment[] = [];
  fs.mkdirSync(path.join(root, dir), { recursive: true });
  for (let i = 0; i < n; i++) {
    const b = crypto.randomBytes(4096 + i * 100);
    data.push(b);
    const file = `News_${String(i).padStart(5, '0')}.ts`;
    fs.writeFileSync(path.join(root, dir, file), b);
    segments.push({
      index: i,
      file,
      run: 1,
      startSec: i * 2,
      endSec: i * 2 + 2,
      frames: 50,
      bytes: b.length,
      sha256: sha(b),
      complete: true,
      wallStart: t0 + i * 2000,
    });
  }
  const clip: Clip = {
    id,
    name: 'News',
    dir,
    serverId: 'main-1',
    group: '',
    channel: 1,
    channelName: 'Channel 1',
    lineId: 'news',
    title: 'News',
    attributes: { failoverOf: 'main-1', failoverServer: 'fo-1' },
    backup: 'off',
    frameRate: '25',
    tcIn: '00:00:00:00',
    tcOut: '00:00:06:00',
    startedAt: t0,
    stoppedAt: t0 + n * 2000,
    frames: 50 * n,
    durationMs: n * 2000,
    state: 'closed',
    container: 'ts',
    source: 'cam',
    gaps: [],
    segments,
    runs: 1,
    reason: null,
    createdAt: t0,
    updatedAt: t0,
  };
  return { clip, data };
}

class FakePeer implements CopySource {
  /** Segments delivered (a failed attempt is not one). */
  fetches: { clipId: string; index: number }[] = [];
  /** Every fetch asked for, delivered or not. */
  attempts = 0;
  failAt: number | null = null;
  failCode = 'ENET';
  lie = false;
  constructor(
    public root: string,
    public clipList: Clip[],
    public evs: CatalogueEvent[],
  ) {}
  async clips() {
    return JSON.parse(JSON.stringify(this.clipList)) as Clip[];
  }
  async events() {
    return this.evs;
  }
  async fetchSegment(clipId: string, index: number, dest: string, o: { expectedSha256?: string | null }) {
    this.attempts++;
    if (this.failAt !== null && this.attempts === this.failAt) {
      this.failAt = null;
      throw Object.assign(new Error('the peer went away'), { code: this.failCode });
    }
    const clip = this.clipList.find((c) => c.id === clipId)!;
    const seg = clip.segments.find((s) => s.index === index)!;
    let b = fs.readFileSync(path.join(this.root, clip.dir, seg.file));
    if (this.lie) b = Buffer.concat([b, Buffer.from('x')]);
    if (o.expectedSha256 && sha(b) !== o.expectedSha256) throw Object.assign(new Error('sha256 does not match'), { code: 'EHASH' });
    fs.writeFileSync(dest, b);
    this.fetches.push({ clipId, index });
    return { bytes: b.length, sha256: sha(b), resumedFrom: 0 };
  }
}

describe('material copy (lib)', () => {
  let tmp: string;
  let remoteRoot: string;
  let localRoot: string;
  let cat: Catalogue;
  let queue: CopyQueue;
  const t0 = Date.UTC(2026, 10, 22, 12, 0, 0);
  const events: CatalogueEvent[] = [
    { seq: 10, ts: t0 + 100, serverId: 'main-1', channel: 1, kind: 'recording', lineId: 'news', clipId: 'c1', data: { a: 1 } },
    { seq: 11, ts: t0 + 5000, serverId: 'main-1', channel: 1, kind: 'stopped', lineId: 'news', clipId: 'c1', data: null },
  ];

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-mc-'));
    remoteRoot = path.join(tmp, 'remote');
    localRoot = path.join(tmp, 'local');
    cat = new Catalogue(path.join(tmp, 'cat.sqlite'));
    queue = new CopyQueue(path.join(tmp, 'queue.sqlite'));
  });
  afterEach(() => {
    queue.close();
    cat.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const request = { entryId: 7, failedServer: 'main-1', failoverServer: 'fo-1', channels: [1], from: t0 - 1000, to: t0 + 60000 };
  function copier(peer: CopySource) {
    return new MaterialCopier(queue, cat, { serverId: 'main-1', storageRoot: localRoot, source: () => peer, retryMinMs: 5, retryMaxMs: 20 });
  }
  const finished = (c: MaterialCopier) =>
    new Promise<string>((resolve) => {
      c.once('done', () => resolve('done'));
      c.once('failed', () => resolve('failed'));
    });

  it('copies every segment with equal sha256, registers the clip as it goes, and the events once', async () => {
    const { clip, data } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 3, t0);
    const peer = new FakePeer(remoteRoot, [clip], events);
    const c = copier(peer);
    c.request(request);
    assert.equal(await finished(c), 'done');
    for (let i = 0; i < 3; i++) assert.equal(sha(fs.readFileSync(path.join(localRoot, clip.dir, clip.segments[i].file))), sha(data[i]));
    const local = cat.clip('c1')!;
    assert.equal(local.serverId, 'main-1');
    assert.equal(local.segments.length, 3);
    assert.equal(local.attributes.copiedFrom, 'fo-1');
    assert.equal(local.attributes.copyState, 'copied');
    assert.ok(local.segments.every((s) => (s as Segment & { recordedBy?: string }).recordedBy === 'fo-1'));
    assert.ok(fs.existsSync(path.join(localRoot, clip.dir, 'clip.json')));
    const evs = cat.events('main-1', 1);
    assert.deepEqual(
      evs.map((e) => [e.kind, (e.data as { remoteSeq: number }).remoteSeq]),
      [
        ['recording', 10],
        ['stopped', 11],
      ],
    );
    const task = queue.list()[0];
    assert.equal(task.state, 'done');
    assert.equal(task.segmentsCopied, 3);
    assert.equal(task.eventsCopied, 2);
    assert.equal(
      task.bytesDone,
      data.reduce((n, b) => n + b.length, 0),
    );
    assert.equal(task.bytesTotal, task.bytesDone);
    // the same request again is the same task: nothing more happens
    const again = c.request(request);
    assert.equal(again.id, task.id);
    assert.equal(queue.list().length, 1);
  });

  it('tells media progress at most every 250 ms while segments come, and at the end of each clip', async () => {
    const { clip, data } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 20, t0);
    const peer = new FakePeer(remoteRoot, [clip], events);
    let now = t0;
    // one segment at a time, so each is its own commit; the clock moves 100 ms per segment fetched
    const fetch = peer.fetchSegment.bind(peer);
    peer.fetchSegment = async (...a: Parameters<FakePeer['fetchSegment']>) => {
      now += 100;
      return fetch(...a);
    };
    const c = new MaterialCopier(queue, cat, {
      serverId: 'main-1',
      storageRoot: localRoot,
      source: () => peer,
      retryMinMs: 5,
      retryMaxMs: 20,
      fetchAhead: 1,
      clock: () => now,
    });
    const media: { bytesDone: number; at: number }[] = [];
    c.on('progress', (p: { phase: string; bytesDone: number }) => {
      if (p.phase === 'media') media.push({ bytesDone: p.bytesDone, at: now });
    });
    c.request(request);
    assert.equal(await finished(c), 'done');
    // 20 commits over 2 s: the first, then one per 250 ms (every third segment), and the clip's end
    assert.ok(media.length >= 7 && media.length <= 9, `${media.length} media progress events`);
    for (let i = 1; i < media.length - 1; i++) assert.ok(media[i].at - media[i - 1].at >= 250, 'not more often than every 250 ms');
    assert.equal(
      media[media.length - 1].bytesDone,
      data.reduce((n, b) => n + b.length, 0),
      'the clip end tells every byte',
    );
  });

  it('waits for a peer that went away mid-copy and goes on where it stopped, with nothing copied twice', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 4, t0);
    const peer = new FakePeer(remoteRoot, [clip], events);
    peer.failAt = 3;
    const c = copier(peer);
    c.request(request);
    assert.equal(await finished(c), 'done');
    // the third fetch failed; it was asked again and every segment was delivered once (fetches run ahead, so the order may vary)
    assert.equal(peer.attempts, 5);
    assert.deepEqual(peer.fetches.map((f) => f.index).sort(), [0, 1, 2, 3]);
    // and registered in index order
    assert.deepEqual(
      cat.clip('c1')!.segments.map((x) => x.index),
      [0, 1, 2, 3],
    );
    // a segment fetched ahead and already on disk when the copy went on is verified and counted as skipped, not fetched again
    assert.equal(queue.list()[0].segmentsCopied + queue.list()[0].segmentsSkipped, 4);
  });

  it('resumes after a restart from its committed progress (a kill -9 between items)', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 4, t0);
    const peer = new FakePeer(remoteRoot, [clip], events);
    const c1 = copier(peer);
    // the first process copied two segments, then died (simulated: its progress is what it committed)
    const { task } = queue.enqueue(request);
    queue.begin(task.id);
    for (const i of [0, 1]) {
      const seg = clip.segments[i];
      fs.mkdirSync(path.join(localRoot, clip.dir), { recursive: true });
      fs.copyFileSync(path.join(remoteRoot, clip.dir, seg.file), path.join(localRoot, clip.dir, seg.file));
      queue.advance(task.id, { channel: 1, kind: 'media', lastTime: null, lastClip: 'c1', lastIndex: i, done: false }, { copied: 1, bytes: seg.bytes });
    }
    // segment 2 reached the disk but its progress was not committed when the process died
    fs.copyFileSync(path.join(remoteRoot, clip.dir, clip.segments[2].file), path.join(localRoot, clip.dir, clip.segments[2].file));
    void c1;
    const c2 = copier(peer);
    c2.kick();
    assert.equal(await finished(c2), 'done');
    assert.deepEqual(
      peer.fetches.map((f) => f.index),
      [3],
      'only the missing segment is fetched; the one on disk is verified and skipped',
    );
    const t = queue.get(task.id)!;
    assert.equal(t.segmentsCopied, 3);
    assert.equal(t.segmentsSkipped, 1);
    assert.equal(cat.clip('c1')!.segments.length, 2, 'segments 2 and 3 are registered (0 and 1 were by the first process)');
  });

  it('fails a task whose peer lies about a hash, keeping the reason, and goes on with the next task', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 2, t0);
    const liar = new FakePeer(remoteRoot, [clip], events);
    liar.lie = true;
    const { clip: clip2 } = makeClip(remoteRoot, 'c2', 'main-1/ch01/2026-11-22/Other_130000', 1, t0 + 3600000);
    const honest = new FakePeer(remoteRoot, [clip2], []);
    const c = new MaterialCopier(queue, cat, { serverId: 'main-1', storageRoot: localRoot, source: (s) => (s === 'fo-1' ? liar : honest), retryMinMs: 5 });
    const outcomes: string[] = [];
    c.on('failed', (t) => outcomes.push(`failed ${t.entryId}: ${t.lastError}`));
    c.on('done', (t) => outcomes.push(`done ${t.entryId}`));
    c.request(request);
    c.request({ ...request, entryId: 8, failoverServer: 'fo-2', from: t0 + 3600000 - 1000, to: t0 + 3700000 });
    const until = Date.now() + 5000;
    while (outcomes.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(outcomes.length, 2, JSON.stringify(outcomes));
    assert.match(outcomes[0], /^failed 7: segment 0 of clip "News" \(c1\): sha256 does not match/);
    assert.equal(outcomes[1], 'done 8');
    assert.ok(!fs.existsSync(path.join(localRoot, clip.dir, clip.segments[0].file)), 'nothing of the lying segment is kept');
    // a failed task can be started again by hand, and resumes
    liar.lie = false;
    c.retry(queue.list().find((t) => t.entryId === 7)!.id);
    await finished(c);
    assert.equal(queue.list().find((t) => t.entryId === 7)!.state, 'done');
  });

  it('a copy request sent again after its task failed starts it again; the same retained request delivered again only reports the state', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 2, t0);
    const liar = new FakePeer(remoteRoot, [clip], events);
    liar.lie = true;
    // the link as the service uses it: subscriptions by pattern, retained publishes recorded
    const handlers: { pattern: string; handler: (topic: string, p: unknown) => void }[] = [];
    const published: { topic: string; payload: unknown }[] = [];
    const link: CopyLink = {
      subscribe: (pattern, _v, handler) => {
        handlers.push({ pattern, handler });
        return () => undefined;
      },
      publishRetained: (topic, payload) => void published.push({ topic, payload }),
    };
    const svc = new MaterialCopyService(
      { group: 'studio', serverId: 'main-1', storageRoot: localRoot, stateDir: tmp, retryMinMs: 5, retryMaxMs: 20 },
      { link, catalogue: cat, source: () => liar, log: { info: () => undefined, warn: () => undefined } },
    );
    const states: string[] = [];
    svc.on('failed', () => states.push('failed'));
    svc.on('done', () => states.push('done'));
    svc.start();
    try {
      const deliver = (ts: number) => {
        const topic = `twinrec/studio/main-1/copy-request/fo-1/${request.entryId}`;
        for (const h of handlers.filter((x) => x.pattern.includes('copy-request'))) h.handler(topic, { v: LINK_VERSION, ...request, ts });
      };
      const waitStates = async (n: number) => {
        const until = Date.now() + 5000;
        while (states.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        assert.equal(states.length, n, JSON.stringify(states));
      };
      const sent = Date.now();
      deliver(sent);
      await waitStates(1);
      assert.equal(svc.tasks()[0].state, 'failed');
      const reports = published.length;
      // the retained request again (a reconnect): older than the failure, so the task stays failed and its state is reported again
      deliver(sent);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(svc.tasks()[0].state, 'failed');
      assert.equal(published.length, reports + 1);
      assert.equal(svc.tasks().length, 1);
      // "Start material copying" on the failover server sends it again, newer than the failure: the task runs again, now from an honest peer
      liar.lie = false;
      deliver(Date.now() + 1);
      await waitStates(2);
      assert.deepEqual(states, ['failed', 'done']);
      assert.equal(svc.tasks().length, 1, 'the same task, not a second one');
      assert.equal(svc.tasks()[0].state, 'done');
    } finally {
      await svc.stop();
    }
  });

  it('refuses a clip the peer places outside the storage, writing nothing', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 1, t0);
    const evil = { ...clip, dir: '../../escape' };
    const peer = new FakePeer(remoteRoot, [evil], []);
    peer.fetchSegment = async () => {
      throw new Error('must not fetch');
    };
    const c = copier(peer);
    c.request(request);
    assert.equal(await finished(c), 'failed');
    assert.match(queue.list()[0].lastError!, /the peer listed clip c1 in the folder "..\/..\/escape", not under main-1\/ch01\//);
    assert.ok(!fs.existsSync(path.join(tmp, 'escape')));
  });

  it('refuses to copy over a clip id this server holds for a recording of its own, and leaves that clip as it was', async () => {
    const { clip } = makeClip(remoteRoot, 'c1', 'main-1/ch01/2026-11-22/News_120000', 1, t0);
    // this server's own clip under the same id (its own recording, not a copy)
    const mine = { ...clip, name: 'Mine', dir: 'main-1/ch01/2026-11-22/Mine_110000', attributes: { house: 'own' } };
    cat.putClip(mine);
    const peer = new FakePeer(remoteRoot, [clip], events);
    peer.fetchSegment = async () => {
      throw new Error('must not fetch');
    };
    const c = copier(peer);
    c.request(request);
    assert.equal(await finished(c), 'failed');
    assert.match(queue.list()[0].lastError!, /an id this server already holds for its clip Mine \(main-1\/ch01\/2026-11-22\/Mine_110000\): not copied over it/);
    const after = cat.clip('c1')!;
    assert.deepEqual([after.name, after.dir, after.attributes], ['Mine', mine.dir, { house: 'own' }]);
  });
});
