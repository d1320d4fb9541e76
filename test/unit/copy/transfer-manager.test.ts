/** The transfer manager (lib) against a scripted main (the peer API itself is tested against real HTTP elsewhere). */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalogue } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { TransferManager } from '../../../lib/copy/transfer-manager';
import { parseChannels, spanText, TransferSource } from '../../../lib/copy/transfer-settings';
import { TransferQueue } from '../../../lib/store/transfer-queue';

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const DAY = 86400000;

function makeClip(
  root: string,
  id: string,
  o: {
    channel?: number;
    name?: string;
    n?: number;
    t0: number;
    backup?: 'off' | 'on' | 'aux';
    state?: Clip['state'];
    attributes?: Clip['attributes'];
    serverId?: string;
  },
): Clip {
  const n = o.n ?? 2;
  const name = o.name ?? id;
  const serverId = o.serverId ?? 'main-1';
  const dir = `${serverId}/ch${String(o.channel ?? 1).padStart(2, '0')}/2026-11-22/${name}`;
  const segments: Segment[] = [];
  fs.mkdirSync(path.join(root, dir), { recursive: true });
  for (let i = 0; i < n; i++) {
    const b = crypto.randomBytes(2048 + i * 10);
    const file = `${name}_${String(i).padStart(5, '0')}.ts`;
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
      wallStart: o.t0 + i * 2000,
    });
  }
  return {
    id,
    name,
    dir,
    serverId,
    group: 'studio',
    channel: o.channel ?? 1,
    channelName: 'Channel 1',
    lineId: id,
    title: name,
    attributes: o.attributes ?? {},
    backup: o.backup ?? 'off',
    frameRate: '25',
    tcIn: '00:00:00:00',
    tcOut: null,
    startedAt: o.t0,
    stoppedAt: o.state === 'recording' ? null : o.t0 + n * 2000,
    frames: 50 * n,
    durationMs: n * 2000,
    state: o.state ?? 'closed',
    container: 'ts',
    source: 'cam',
    gaps: [],
    segments,
    runs: 1,
    reason: null,
    createdAt: o.t0,
    updatedAt: o.t0,
  };
}

class FakeMain implements TransferSource {
  /** Segments delivered (a failed attempt is not one). */
  fetches: { clipId: string; index: number }[] = [];
  /** Every fetch asked for, delivered or not. */
  attempts = 0;
  /** Fail the nth fetch (1-based) with this code. */
  failAt: number | null = null;
  failCode = 'ENET';
  away = false;
  liar: string | null = null;
  constructor(
    public root: string,
    public list: Clip[],
  ) {}
  async clips(q: { channel: number }) {
    if (this.away) throw Object.assign(new Error('cannot reach the peer'), { code: 'ENET' });
    return JSON.parse(JSON.stringify(this.list.filter((c) => c.channel === q.channel))) as Clip[];
  }
  async fetchSegment(clipId: string, index: number, dest: string, o: { expectedSha256?: string | null }) {
    this.attempts++;
    if (this.away) throw Object.assign(new Error('cannot reach the peer'), { code: 'ENET' });
    if (this.failAt !== null && this.attempts === this.failAt) {
      this.failAt = null;
      throw Object.assign(new Error('the peer went away'), { code: this.failCode });
    }
    const clip = this.list.find((c) => c.id === clipId)!;
    const seg = clip.segments.find((s) => s.index === index)!;
    let b = fs.readFileSync(path.join(this.root, clip.dir, seg.file));
    if (this.liar === clipId) b = Buffer.concat([b, Buffer.from('x')]);
    if (o.expectedSha256 && sha(b) !== o.expectedSha256) throw Object.assign(new Error('sha256 does not match'), { code: 'EHASH' });
    fs.writeFileSync(dest, b);
    this.fetches.push({ clipId, index });
    return { bytes: b.length, sha256: sha(b), resumedFrom: 0 };
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('transfer manager (lib)', () => {
  let tmp: string;
  let mainRoot: string;
  let localRoot: string;
  let cat: Catalogue;
  let queue: TransferQueue;
  let tm: TransferManager | null;
  const now = Date.UTC(2026, 10, 22, 18, 0, 0);
  let clock = now;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-tm-'));
    mainRoot = path.join(tmp, 'main');
    localRoot = path.join(tmp, 'backup');
    cat = new Catalogue(path.join(tmp, 'cat.sqlite'));
    queue = new TransferQueue(path.join(tmp, 'transfers.sqlite'));
    clock = now;
    tm = null;
  });
  afterEach(async () => {
    await tm?.stop();
    queue.close();
    cat.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function manager(peer: TransferSource, o: { retentionDays?: number; channels?: number[]; q?: TransferQueue } = {}) {
    tm = new TransferManager(o.q ?? queue, cat, {
      serverId: 'backup-1',
      mainServer: 'main-1',
      channels: o.channels ?? [1, 2],
      storageRoot: localRoot,
      source: () => peer,
      pollMs: 60000,
      retryMinMs: 5,
      retryMaxMs: 20,
      retentionDays: o.retentionDays ?? 0,
      clock: () => clock,
    });
    return tm;
  }
  const settled = (q = queue) => q.depth() === 0;

  it('copies finished ordinary clips, needed-on-air soonest first then newest, and skips twins and clips still recording', async () => {
    const clips = [
      makeClip(mainRoot, 'old', { t0: now - 5 * 3600000 }),
      makeClip(mainRoot, 'newest', { t0: now - 1 * 3600000, channel: 2 }),
      makeClip(mainRoot, 'middle', { t0: now - 3 * 3600000 }),
      makeClip(mainRoot, 'airlater', { t0: now - 4 * 3600000, attributes: { onAir: new Date(now + 2 * 3600000).toISOString() } }),
      makeClip(mainRoot, 'airsoon', { t0: now - 6 * 3600000, attributes: { onAir: now + 600000 } }),
      makeClip(mainRoot, 'twin', { t0: now - 2 * 3600000, backup: 'on' }),
      makeClip(mainRoot, 'live', { t0: now - 60000, state: 'recording' }),
    ];
    const peer = new FakeMain(mainRoot, clips);
    const m = manager(peer);
    const skipped: string[] = [];
    const transferred: string[] = [];
    m.on('skipped', (t) => skipped.push(`${t.clipId}: ${t.reason}`));
    m.on('transferred', (t) => transferred.push(t.clipId));
    m.start();
    await until('all transferred', () => transferred.length === 5 && settled());
    assert.deepEqual(transferred, ['airsoon', 'airlater', 'newest', 'middle', 'old']);
    assert.deepEqual([...new Set(peer.fetches.map((f) => f.clipId))], transferred, 'fetched in that order, one clip after the other');
    assert.equal(skipped.length, 1);
    assert.match(skipped[0], /^twin: Backup=On/);
    assert.ok(!peer.fetches.some((f) => f.clipId === 'twin' || f.clipId === 'live'), 'neither the twin nor the clip still recording was fetched');
    assert.ok(!fs.existsSync(path.join(localRoot, clips[5].dir)), 'nothing of the twin is written');
    for (const c of clips.slice(0, 5)) {
      for (const s of c.segments) assert.equal(sha(fs.readFileSync(path.join(localRoot, c.dir, s.file))), s.sha256);
      const local = cat.clip(c.id)!;
      assert.equal(local.serverId, 'main-1');
      assert.equal(local.attributes.transferredFrom, 'main-1');
      assert.equal(local.attributes.transferState, 'transferred');
      assert.equal(local.segments.length, c.segments.length);
      assert.ok(fs.existsSync(path.join(localRoot, c.dir, 'clip.json')));
    }
    assert.equal(queue.get('twin')!.state, 'skipped');
    assert.equal(queue.get('live'), undefined, 'a clip still recording waits for a later scan');
    // it stops recording: the next scan takes it
    const live = clips[6];
    live.state = 'closed';
    live.stoppedAt = now;
    m.scanNow();
    await until('live transferred', () => transferred.includes('live'));
  });

  it('waits for a main that went away mid-transfer, and goes on where it stopped', async () => {
    const c = makeClip(mainRoot, 'c1', { t0: now - 3600000, n: 4 });
    const peer = new FakeMain(mainRoot, [c]);
    peer.failAt = 3;
    const m = manager(peer);
    const waiting: string[] = [];
    m.on('progress', (p) => p.phase === 'waiting' && waiting.push(p.detail));
    m.start();
    await until('done', () => queue.get('c1')?.state === 'done');
    // the third fetch failed; it was asked again and every segment was delivered once (fetches run ahead, so the order may vary)
    assert.equal(peer.attempts, 5);
    assert.deepEqual(peer.fetches.map((f) => f.index).sort(), [0, 1, 2, 3]);
    assert.deepEqual(
      cat.clip('c1')!.segments.map((x) => x.index),
      [0, 1, 2, 3],
      'registered in index order',
    );
    assert.equal(waiting.length, 1);
    assert.match(waiting[0], /waiting for main-1/);
    const t = queue.get('c1')!;
    assert.equal(t.segmentsCopied + t.segmentsSkipped, 4, 'a segment fetched ahead and already on disk is verified and counted as skipped');
    assert.equal(t.attempts, 2);
  });

  it('keeps waiting while the main is away (growing pauses) and copies when it returns', async () => {
    const c = makeClip(mainRoot, 'c1', { t0: now - 3600000, n: 2 });
    const peer = new FakeMain(mainRoot, [c]);
    peer.away = true;
    const m = manager(peer);
    m.start();
    await until('waiting', () => m.peer.state === 'waiting');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(queue.get('c1'), undefined);
    peer.away = false;
    await until('done', () => queue.get('c1')?.state === 'done');
    assert.equal(m.peer.state, 'ok');
  });

  it('fails a clip whose hash does not match, with the reason, and goes on with the next', async () => {
    const bad = makeClip(mainRoot, 'bad', { t0: now - 1000000 });
    const good = makeClip(mainRoot, 'good', { t0: now - 2000000 });
    const peer = new FakeMain(mainRoot, [bad, good]);
    peer.liar = 'bad';
    const m = manager(peer);
    const failed: string[] = [];
    m.on('failed', (t) => failed.push(`${t.clipId}: ${t.reason}`));
    m.start();
    await until('good done', () => queue.get('good')?.state === 'done' && settled());
    assert.equal(failed.length, 1);
    assert.match(failed[0], /^bad: segment 0 of clip "bad" \(bad\): sha256 does not match/);
    assert.equal(queue.get('bad')!.state, 'failed');
    assert.ok(!fs.existsSync(path.join(localRoot, bad.dir, bad.segments[0].file)), 'nothing of the wrong segment is kept');
    // started again by hand once the main serves the right bytes
    peer.liar = null;
    m.retry('bad');
    await until('bad done', () => queue.get('bad')?.state === 'done');
  });

  it("refuses a clip the main lists in another server's or another channel's folder, writing nothing there", async () => {
    // the backup's own Aux recordings live under backup-1/: a listing must not send a copy (or the retention) there
    const own = makeClip(localRoot, 'aux1', { t0: now - 3000000, serverId: 'backup-1' });
    const before = fs.readFileSync(path.join(localRoot, own.dir, own.segments[0].file));
    const evil = { ...makeClip(mainRoot, 'evil', { t0: now - 1000000 }), dir: own.dir };
    fs.cpSync(path.join(mainRoot, 'main-1/ch01/2026-11-22/evil'), path.join(mainRoot, own.dir), { recursive: true });
    const wrongChannel = { ...makeClip(mainRoot, 'ch2', { t0: now - 2000000, channel: 2 }), channel: 1 };
    const good = makeClip(mainRoot, 'good', { t0: now - 4000000 });
    const peer = new FakeMain(mainRoot, [evil, wrongChannel, good]);
    const m = manager(peer);
    const failed: string[] = [];
    m.on('failed', (t) => failed.push(`${t.clipId}: ${t.reason}`));
    m.start();
    await until('good done', () => queue.get('good')?.state === 'done' && settled());
    assert.deepEqual(failed.sort(), [
      'ch2: the main listed clip ch2 in the folder "main-1/ch02/2026-11-22/ch2", not under main-1/ch01/',
      'evil: the main listed clip evil in the folder "backup-1/ch01/2026-11-22/aux1", not under main-1/ch01/',
    ]);
    assert.ok(fs.readFileSync(path.join(localRoot, own.dir, own.segments[0].file)).equals(before), "the backup's own clip is untouched");
    assert.equal(cat.clip('evil'), undefined);
  });

  it('after a restart copies nothing again, and resumes a clip from its last committed segment', async () => {
    const a = makeClip(mainRoot, 'a', { t0: now - 1000000, n: 2 });
    const b = makeClip(mainRoot, 'b', { t0: now - 2000000, n: 3 });
    const peer = new FakeMain(mainRoot, [a]);
    const m1 = manager(peer);
    m1.start();
    await until('a done', () => queue.get('a')?.state === 'done');
    await m1.stop();
    // b appears; the first process copied its segment 0 and died (its committed state, made by hand)
    peer.list.push(b);
    queue.add(b, 'queued');
    queue.begin(b);
    fs.mkdirSync(path.join(localRoot, b.dir), { recursive: true });
    fs.copyFileSync(path.join(mainRoot, b.dir, b.segments[0].file), path.join(localRoot, b.dir, b.segments[0].file));
    queue.advance('b', 0, { bytes: b.segments[0].bytes, copied: 1, skipped: 0 });
    // segment 1 reached the disk, its progress was not committed
    fs.copyFileSync(path.join(mainRoot, b.dir, b.segments[1].file), path.join(localRoot, b.dir, b.segments[1].file));
    queue.close();
    queue = new TransferQueue(path.join(tmp, 'transfers.sqlite'));
    peer.fetches = [];
    const m2 = manager(peer);
    m2.start();
    await until('b done', () => queue.get('b')?.state === 'done' && settled());
    assert.deepEqual(peer.fetches, [{ clipId: 'b', index: 2 }], 'a is not copied again; b fetches only its missing segment');
    const t = queue.get('b')!;
    assert.equal(t.segmentsCopied + t.segmentsSkipped, 3);
    assert.equal(t.segmentsSkipped, 1, 'the segment found on disk is verified and kept');
    for (const s of b.segments) assert.equal(sha(fs.readFileSync(path.join(localRoot, b.dir, s.file))), s.sha256);
  });

  it('retention deletes only transferred copies older than the limit, and never copies them again', async () => {
    const oldC = makeClip(mainRoot, 'old', { t0: now - 2 * DAY });
    const recent = makeClip(mainRoot, 'recent', { t0: now - 3600000 });
    const peer = new FakeMain(mainRoot, [oldC, recent]);
    const m = manager(peer, { retentionDays: 3 });
    m.start();
    await until('both done', () => queue.get('old')?.state === 'done' && queue.get('recent')?.state === 'done');
    await m.stop();
    // old things of this server that are not transferred copies: its own recording, an Aux twin, a material-copied clip
    const own = makeClip(localRoot, 'own', { t0: now - 10 * DAY, serverId: 'backup-1' });
    const aux = makeClip(localRoot, 'aux', { t0: now - 10 * DAY, serverId: 'backup-1', backup: 'aux', channel: 2 });
    const copied = makeClip(localRoot, 'copied', { t0: now - 10 * DAY, serverId: 'main-1', name: 'copied', attributes: { copiedFrom: 'fo-1' } });
    for (const c of [own, aux, copied]) {
      cat.putClip(c);
      for (const s of c.segments) cat.putSegment(c.id, s);
    }
    // time passes: "old" ended more than 3 days ago, "recent" did not
    clock = now + 2 * DAY;
    const m2 = manager(peer, { retentionDays: 3 });
    const deleted: string[] = [];
    m2.on('deleted', (t) => deleted.push(t.clipId));
    assert.deepEqual(m2.applyRetention(), ['old']);
    assert.deepEqual(deleted, ['old']);
    assert.equal(cat.clip('old'), undefined);
    assert.ok(!fs.existsSync(path.join(localRoot, oldC.dir)), 'its files and folder are gone');
    assert.equal(queue.get('old')!.state, 'deleted');
    assert.equal(queue.get('old')!.reason, 'retention: recording ended more than 3 days ago');
    assert.ok(cat.clip('recent') && fs.existsSync(path.join(localRoot, recent.dir, recent.segments[0].file)), 'a recent copy is kept');
    for (const c of [own, aux, copied]) {
      assert.ok(cat.clip(c.id), `${c.id} is still in the catalogue`);
      assert.ok(fs.existsSync(path.join(localRoot, c.dir, c.segments[0].file)), `${c.id} is still on storage`);
    }
    // the main still lists it: it is not copied again; a clip already older than the retention is not copied at all
    const ancient = makeClip(mainRoot, 'ancient', { t0: now - 5 * DAY });
    peer.list.push(ancient);
    peer.fetches = [];
    const r = await m2.scan();
    assert.equal(r.queued, 0);
    assert.equal(queue.get('old')!.state, 'deleted');
    assert.equal(queue.get('ancient'), undefined);
    assert.deepEqual(peer.fetches, []);
  });

  it('pause stops between segments and keeps the clip running; resume goes on from there (asking the main for the one clip)', async () => {
    const c = makeClip(mainRoot, 'c1', { t0: now - 3600000, n: 10 });
    const peer = new FakeMain(mainRoot, [c]);
    const asked: string[] = [];
    const slow = Object.assign(Object.create(peer) as FakeMain, {
      async clip(id: string) {
        asked.push(id);
        return JSON.parse(JSON.stringify(peer.list.find((x) => x.id === id))) as Clip;
      },
      async fetchSegment(...a: Parameters<FakeMain['fetchSegment']>) {
        await new Promise((r) => setTimeout(r, 20));
        return peer.fetchSegment(...a);
      },
    });
    const m = manager(slow);
    m.start();
    await until('first segment', () => (queue.get('c1')?.segmentsCopied ?? 0) >= 1);
    m.pause();
    assert.ok(m.isPaused);
    await new Promise((r) => setTimeout(r, 80));
    const held = queue.get('c1')!;
    assert.equal(held.state, 'running', 'a paused clip stays running: it resumes first');
    assert.ok(held.segmentsCopied < 10);
    const fetched = peer.fetches.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(peer.fetches.length, fetched, 'nothing is fetched while paused');
    m.resume();
    await until('done', () => queue.get('c1')?.state === 'done');
    assert.equal(queue.get('c1')!.segmentsCopied + queue.get('c1')!.segmentsSkipped, 10);
    assert.deepEqual(
      peer.fetches.map((f) => f.index).sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      'each segment delivered once',
    );
    assert.deepEqual([...new Set(asked)], ['c1']);
  });

  it('says a retention as a person reads it', () => {
    assert.deepEqual([7, 1, 1.5, 0.5, 1 / 48, 30 / 86400].map(spanText), ['7 days', '1 day', '1.5 days', '12 h', '30 min', '30 s']);
  });

  it('refuses channels that are not channels', () => {
    assert.deepEqual(parseChannels('1-4, 7'), [1, 2, 3, 4, 7]);
    assert.deepEqual(parseChannels(3), [3]);
    for (const bad of ['', 'x', '0', '5-2', '1-1000', '1;2', null]) assert.throws(() => parseChannels(bad), /channel/i, String(bad));
  });
});
