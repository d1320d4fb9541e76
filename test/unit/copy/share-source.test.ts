/**
 * Segments from a mounted share (lib/copy/share-source.ts) on real files, and the
 * fetch-ahead copy (lib/copy/segment-copy.ts copySegments) that both copiers use.
 */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalogue, CatalogueEvent } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { CopyQueue } from '../../../lib/store/copy-queue';
import { CopySource, MaterialCopier } from '../../../lib/copy/material-copy';
import { PeerError } from '../../../lib/peer/peer-error';
import { CopyRefused, copySegment, copySegments, retryable, SegmentDone, SegmentSource } from '../../../lib/copy/segment-copy';
import { shareFolderFor, ShareSource, withShareMedia } from '../../../lib/copy/share-source';

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('mounted share as a segment source (lib)', () => {
  let tmp: string;
  let share: string;
  let local: string;
  const dir = 'main-1/ch01/2026-11-22/News_120000';
  const file = 'News_00000.ts';
  let data: Buffer;
  let seg: Segment;
  const clip = { id: 'c1', name: 'News', dir };

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-share-'));
    share = path.join(tmp, 'share');
    local = path.join(tmp, 'local');
    fs.mkdirSync(path.join(share, dir), { recursive: true });
    data = crypto.randomBytes(5 * 1024 * 1024 + 123); // more than one read of the share
    fs.writeFileSync(path.join(share, dir, file), data);
    seg = { index: 0, file, run: 1, startSec: 0, endSec: 2, frames: 50, bytes: data.length, sha256: sha(data), complete: true, wallStart: 0 };
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('copies a segment from the share, verified, with no part file left', async () => {
    const r = await copySegment(new ShareSource(share), local, clip, seg);
    assert.deepEqual(r, { copied: 1, skipped: 0, bytes: data.length });
    const dest = path.join(local, dir, file);
    assert.equal(sha(fs.readFileSync(dest)), seg.sha256);
    assert.equal(fs.existsSync(`${dest}.part`), false);
    // a second copy finds it here, identical
    assert.deepEqual(await copySegment(new ShareSource(share), local, clip, seg), { copied: 0, skipped: 1, bytes: 0 });
  });

  it('has written every byte it read when it says the segment is received (a kill then loses nothing read), reading at most two chunks ahead of the disk', async () => {
    const dest = path.join(local, dir, file);
    let partAtReceived = -1;
    let read = 0;
    let aheadMax = 0;
    const r = await new ShareSource(share).fetchSegment('c1', 0, dest, {
      expectedSha256: seg.sha256,
      expectedBytes: seg.bytes,
      where: { dir, file },
      onBytes: (n) => {
        // what was read before this chunk, against what is in the part file now
        aheadMax = Math.max(aheadMax, read - fs.statSync(`${dest}.part`).size);
        read += n;
      },
      onReceived: () => (partAtReceived = fs.statSync(`${dest}.part`).size),
    });
    assert.equal(r.sha256, seg.sha256);
    assert.equal(partAtReceived, data.length);
    assert.ok(aheadMax <= 2 * 1024 * 1024, `read ${aheadMax} bytes ahead of the part file`);
  });

  it('resumes from the part a break left, reading only the rest', async () => {
    const dest = path.join(local, dir, file);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const cut = 1024 * 1024 + 7;
    fs.writeFileSync(`${dest}.part`, data.subarray(0, cut));
    let read = 0;
    const r = await new ShareSource(share).fetchSegment('c1', 0, dest, {
      expectedSha256: seg.sha256,
      expectedBytes: seg.bytes,
      where: { dir, file },
      onBytes: (n) => (read += n),
    });
    assert.equal(r.resumedFrom, cut);
    assert.equal(read, data.length - cut);
    assert.equal(r.sha256, seg.sha256);
    assert.ok(fs.readFileSync(dest).equals(data));
  });

  it('told there is no part file (partBytes 0) while a stale one is there, starts the part over and still gives the segment whole', async () => {
    const dest = path.join(local, dir, file);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(`${dest}.part`, crypto.randomBytes(2 * 1024 * 1024)); // not a prefix of the segment
    let read = 0;
    const r = await new ShareSource(share).fetchSegment('c1', 0, dest, {
      expectedSha256: seg.sha256,
      expectedBytes: seg.bytes,
      where: { dir, file },
      partBytes: 0,
      onBytes: (n) => (read += n),
    });
    assert.equal(r.resumedFrom, 0);
    assert.equal(read, data.length, 'every byte read from the share, none taken from the stale part');
    assert.equal(r.sha256, seg.sha256);
    assert.ok(fs.readFileSync(dest).equals(data));
    assert.equal(fs.existsSync(`${dest}.part`), false);
  });

  it('refuses a segment whose bytes are not what the catalogue says, and deletes the copy', async () => {
    const bad = { ...seg, sha256: sha(Buffer.from('something else')) };
    await assert.rejects(copySegment(new ShareSource(share), local, clip, bad), (err: Error) => {
      assert.ok(err instanceof CopyRefused, String(err));
      assert.match(err.message, /segment 0 of clip "News" \(c1\).*sha256 .* not .* as the catalogue says; the copy was deleted/);
      return true;
    });
    assert.equal(fs.existsSync(path.join(local, dir, file)), false);
    assert.equal(fs.existsSync(path.join(local, dir, `${file}.part`)), false);
  });

  it('refuses a place outside the share and writes nothing', async () => {
    fs.writeFileSync(path.join(tmp, 'secret.ts'), 'x');
    const dest = path.join(local, 'x.ts');
    await assert.rejects(new ShareSource(share).fetchSegment('c1', 0, dest, { where: { dir: '..', file: 'secret.ts' } }), (err: PeerError) => {
      assert.equal(err.code, 'EREFUSED');
      assert.match(err.message, /outside the share/);
      return true;
    });
    assert.equal(fs.existsSync(local), false);
  });

  it('does not follow a segment that is a symbolic link (to a file outside the share), and writes nothing', async () => {
    const outside = path.join(tmp, 'outside.ts');
    fs.writeFileSync(outside, data);
    fs.rmSync(path.join(share, dir, file));
    fs.symlinkSync(outside, path.join(share, dir, file));
    const dest = path.join(local, 'y.ts');
    await assert.rejects(new ShareSource(share).fetchSegment('c1', 0, dest, { where: { dir, file } }), (err: PeerError) => {
      assert.equal(err.code, 'EREFUSED');
      assert.match(err.message, /is a symbolic link, which a copy does not follow/);
      return true;
    });
    assert.equal(fs.existsSync(dest) || fs.existsSync(`${dest}.part`), false);
  });

  it('a share that is not mounted is worth waiting for; a missing segment is not', async () => {
    const away = new ShareSource(path.join(tmp, 'not-mounted'));
    await assert.rejects(copySegment(away, local, clip, seg), (err: PeerError) => {
      assert.equal(err.code, 'EUNAVAILABLE');
      assert.match(err.message, /not mounted or not readable/);
      assert.ok(retryable(err));
      return true;
    });
    // an empty mount point (nothing mounted on it) is a readable, empty folder: also waited for
    fs.mkdirSync(path.join(tmp, 'mountpoint'));
    await assert.rejects(copySegment(new ShareSource(path.join(tmp, 'mountpoint')), local, clip, seg), (err: PeerError) => {
      assert.equal(err.code, 'EUNAVAILABLE');
      assert.match(err.message, /has no folder "main-1": not mounted yet\?/);
      assert.ok(retryable(err));
      return true;
    });
    fs.rmSync(path.join(share, dir, file));
    await assert.rejects(copySegment(new ShareSource(share), local, clip, seg), (err: Error) => {
      assert.ok(err instanceof CopyRefused);
      assert.match(err.message, /is not on the share/);
      assert.equal(retryable(err), false);
      return true;
    });
  });

  it('a file on the share shorter than the catalogue says is a truncated copy, retried later', async () => {
    fs.truncateSync(path.join(share, dir, file), 1000);
    await assert.rejects(copySegment(new ShareSource(share), local, clip, seg), (err: PeerError) => {
      assert.equal(err.code, 'ETRUNC');
      assert.match(err.message, /1000 bytes, not \d+ as the catalogue says/);
      return true;
    });
  });

  it('takes an absolute folder only, and fills {server} in a folder template', () => {
    assert.throws(() => new ShareSource('relative/path'), /absolute path/);
    assert.equal(shareFolderFor('/mnt/{server}/store', 'fo-1'), '/mnt/fo-1/store');
  });

  it('material copy with media from the share and lists and events from the peer', async () => {
    const t0 = Date.UTC(2026, 10, 22, 12, 0, 0);
    const c: Clip = {
      id: 'c1',
      name: 'News',
      dir,
      serverId: 'main-1',
      group: '',
      channel: 1,
      channelName: 'Channel 1',
      lineId: 'news',
      title: 'News',
      attributes: {},
      backup: 'off',
      frameRate: '25',
      tcIn: '00:00:00:00',
      tcOut: '00:00:02:00',
      startedAt: t0,
      stoppedAt: t0 + 2000,
      frames: 50,
      durationMs: 2000,
      state: 'closed',
      container: 'ts',
      source: 'cam',
      gaps: [],
      segments: [{ ...seg, wallStart: t0 }],
      runs: 1,
      reason: null,
      createdAt: t0,
      updatedAt: t0,
    };
    const events: CatalogueEvent[] = [{ seq: 1, ts: t0 + 10, serverId: 'main-1', channel: 1, kind: 'recording', lineId: 'news', clipId: 'c1', data: null }];
    let apiFetches = 0;
    const api: CopySource = {
      clips: async () => [JSON.parse(JSON.stringify(c)) as Clip],
      events: async () => events,
      fetchSegment: async () => {
        apiFetches++;
        throw new Error('the API is not asked for bytes');
      },
      planStream: () => {
        apiFetches++;
        throw new Error('no segment stream is opened to the API');
      },
    };
    assert.equal(withShareMedia(api, new ShareSource(share)).planStream, undefined, 'media from the share: no stream to plan');
    const cat = new Catalogue(path.join(tmp, 'cat.sqlite'));
    const queue = new CopyQueue(path.join(tmp, 'queue.sqlite'));
    try {
      const m = new MaterialCopier(queue, cat, {
        serverId: 'main-1',
        storageRoot: local,
        source: () => withShareMedia(api, new ShareSource(share)),
        retryMinMs: 5,
        retryMaxMs: 20,
      });
      const done = new Promise<string>((resolve) => {
        m.once('done', () => resolve('done'));
        m.once('failed', (t: { lastError: string }) => resolve(`failed: ${t.lastError}`));
      });
      m.request({ entryId: 1, failedServer: 'main-1', failoverServer: 'fo-1', channels: [1], from: t0 - 1000, to: t0 + 60000 });
      assert.equal(await done, 'done');
      await m.stop();
      assert.equal(apiFetches, 0);
      assert.equal(sha(fs.readFileSync(path.join(local, dir, file))), seg.sha256);
      assert.equal(cat.clip('c1')!.segments.length, 1);
      assert.equal(cat.events('main-1', 1).length, 1);
    } finally {
      queue.close();
      cat.release();
    }
  });
});

describe('fetch-ahead copy of a clip (lib)', () => {
  let tmp: string;
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-ahead-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const segs = (n: number): Segment[] =>
    Array.from({ length: n }, (_, i) => ({
      index: i,
      file: `s${i}.ts`,
      run: 1,
      startSec: i,
      endSec: i + 1,
      frames: 25,
      bytes: 3,
      sha256: sha(Buffer.from(`s${i}`)),
      complete: true,
      wallStart: i,
    }));

  /** A source whose fetches receive, then finish, when the test says so. */
  class Gate implements SegmentSource {
    started: number[] = [];
    private rx = new Map<number, () => void>();
    private fin = new Map<number, { ok: () => void; fail: (e: Error) => void }>();
    async fetchSegment(_clipId: string, index: number, dest: string, o: { onReceived?: () => void }) {
      this.started.push(index);
      await new Promise<void>((ok) => this.rx.set(index, ok));
      o.onReceived?.();
      await new Promise<void>((ok, fail) => this.fin.set(index, { ok, fail }));
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.writeFileSync(dest, `s${index}`);
      return { bytes: 3, sha256: sha(Buffer.from(`s${index}`)), resumedFrom: 0 };
    }
    /** every byte of segment i arrived (its fsync and hash go on) */
    async receive(i: number) {
      await until(() => this.rx.has(i));
      this.rx.get(i)!();
      await tick();
    }
    async finish(i: number) {
      await until(() => this.fin.has(i));
      this.fin.get(i)!.ok();
      await tick();
    }
    async fail(i: number, code: string) {
      await until(() => this.fin.has(i));
      this.fin.get(i)!.fail(Object.assign(new Error(`segment ${i} broke`), { code }));
      await tick();
    }
  }
  const tick = () => new Promise((r) => setTimeout(r, 5));
  async function until(cond: () => boolean) {
    const end = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  it('has one segment receiving at a time, up to depth under way, and commits in index order whatever order they finish in', async () => {
    const g = new Gate();
    const committed: number[] = [];
    const calls: number[][] = [];
    const p = copySegments(g, tmp, { id: 'c', name: 'C', dir: 'd' }, segs(5), {
      depth: 3,
      commit: (done) => {
        calls.push(done.map((d) => d.seg.index));
        done.forEach((d) => committed.push(d.seg.index));
      },
    });
    await tick();
    assert.deepEqual(g.started, [0], 'one at a time while it receives');
    await g.receive(0);
    assert.deepEqual(g.started, [0, 1], 'the next starts once the first has all its bytes');
    await g.receive(1);
    await g.receive(2);
    assert.deepEqual(g.started, [0, 1, 2], 'three under way, not more');
    await g.finish(2);
    await g.finish(1);
    assert.deepEqual(committed, [], 'nothing is committed before segment 0');
    await g.finish(0);
    assert.deepEqual(committed, [0, 1, 2]);
    assert.deepEqual(g.started, [0, 1, 2, 3]);
    await g.receive(3);
    await g.receive(4);
    await g.finish(4);
    await g.finish(3);
    await p;
    assert.deepEqual(committed, [0, 1, 2, 3, 4]);
    assert.deepEqual(
      calls,
      [
        [0, 1, 2],
        [3, 4],
      ],
      'those done when the one before them ends are committed with it, in one call',
    );
  });

  it('starts the next fetch from within the callback that says the one before has all its bytes (before that one hashes and syncs)', async () => {
    const started: number[] = [];
    const whenReceived: number[][] = [];
    const src: SegmentSource = {
      async fetchSegment(_clipId, index, dest, o) {
        started.push(index);
        await tick();
        o.onReceived?.();
        whenReceived.push([...started]); // what had started by the time the callback returned
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, `s${index}`);
        return { bytes: 2, sha256: sha(Buffer.from(`s${index}`)), resumedFrom: 0 };
      },
    };
    const committed: number[] = [];
    await copySegments(src, tmp, { id: 'c', name: 'C', dir: 'd' }, segs(3), { commit: (done) => done.forEach((d) => committed.push(d.seg.index)) });
    assert.deepEqual(whenReceived, [
      [0, 1],
      [0, 1, 2],
      [0, 1, 2],
    ]);
    assert.deepEqual(committed, [0, 1, 2]);
  });

  it('lists the clip folder once: a segment already there and identical is kept, one there but different is fetched again, the rest fetched', async () => {
    const fetched: number[] = [];
    const src: SegmentSource = {
      async fetchSegment(_clipId, index, dest, o) {
        fetched.push(index);
        o.onReceived?.();
        fs.writeFileSync(dest, `s${index}`);
        return { bytes: 2, sha256: sha(Buffer.from(`s${index}`)), resumedFrom: 0 };
      },
    };
    fs.mkdirSync(path.join(tmp, 'd'));
    fs.writeFileSync(path.join(tmp, 'd', 's0.ts'), 's0'); // a resume: renamed into place before the kill, not committed
    fs.writeFileSync(path.join(tmp, 'd', 's1.ts'), 'something else');
    const done: [number, number][] = [];
    await copySegments(src, tmp, { id: 'c', name: 'C', dir: 'd' }, segs(3), { commit: (batch) => batch.forEach((d) => done.push([d.seg.index, d.r.skipped])) });
    assert.deepEqual(fetched, [1, 2]);
    assert.deepEqual(done, [
      [0, 1],
      [1, 0],
      [2, 0],
    ]);
    assert.equal(fs.readFileSync(path.join(tmp, 'd', 's1.ts'), 'utf8'), 's1');
  });

  it('says from its one listing which segments have no part file (partBytes 0); a segment with one is left to look, and resumes from it', async () => {
    const told = new Map<number, number | undefined>();
    const src: SegmentSource = {
      async fetchSegment(_clipId, index, dest, o) {
        told.set(index, o.partBytes);
        o.onReceived?.();
        fs.writeFileSync(dest, `s${index}`);
        return { bytes: 2, sha256: sha(Buffer.from(`s${index}`)), resumedFrom: 0 };
      },
    };
    fs.mkdirSync(path.join(tmp, 'd'));
    fs.writeFileSync(path.join(tmp, 'd', 's1.ts.part'), 's'); // a kill -9 left a part
    await copySegments(src, tmp, { id: 'c', name: 'C', dir: 'd' }, segs(3), { commit: () => undefined });
    assert.deepEqual(
      [...told.entries()].sort((a, b) => a[0] - b[0]),
      [
        [0, 0],
        [1, undefined],
        [2, 0],
      ],
    );
    // and without a listing (the folder could not be read) every fetch looks for itself
    told.clear();
    await copySegment(src, path.join(tmp, 'other'), { id: 'c', name: 'C', dir: 'd' }, segs(1)[0]);
    assert.deepEqual([...told.entries()], [[0, undefined]]);
  });

  it('from a real share: the segment a kill -9 left a part of is resumed from it, the others are read whole, all verified', async () => {
    const share = path.join(tmp, 'share');
    const local = path.join(tmp, 'local');
    const dir = 'main-1/ch01/2026-11-22/News_120000';
    fs.mkdirSync(path.join(share, dir), { recursive: true });
    fs.mkdirSync(path.join(local, dir), { recursive: true });
    const datas = [0, 1, 2].map(() => crypto.randomBytes(3 * 1024 * 1024 + 17));
    const list: Segment[] = datas.map((d, i) => {
      fs.writeFileSync(path.join(share, dir, `s${i}.ts`), d);
      return { index: i, file: `s${i}.ts`, run: 1, startSec: i, endSec: i + 1, frames: 25, bytes: d.length, sha256: sha(d), complete: true, wallStart: i };
    });
    const cut = 1024 * 1024 + 5;
    fs.writeFileSync(path.join(local, dir, 's1.ts.part'), datas[1].subarray(0, cut));
    let read = 0;
    const done: [number, number][] = [];
    await copySegments(new ShareSource(share), local, { id: 'c1', name: 'News', dir }, list, {
      onBytes: (n) => (read += n),
      commit: (batch) => batch.forEach((d) => done.push([d.seg.index, d.r.bytes])),
    });
    assert.deepEqual(done, [
      [0, datas[0].length],
      [1, datas[1].length - cut],
      [2, datas[2].length],
    ]);
    assert.equal(read, datas[0].length + datas[1].length - cut + datas[2].length, 'only the rest of the part was read');
    datas.forEach((d, i) => assert.ok(fs.readFileSync(path.join(local, dir, `s${i}.ts`)).equals(d), `segment ${i} is whole`));
    assert.deepEqual(
      fs.readdirSync(path.join(local, dir)).filter((f) => f.endsWith('.part')),
      [],
    );
  });

  it('after a failure it starts nothing new, lets those under way end, commits none past the hole, and throws that failure', async () => {
    const g = new Gate();
    const committed: number[] = [];
    let settled = false;
    const p = copySegments(g, tmp, { id: 'c', name: 'C', dir: 'd' }, segs(6), {
      depth: 3,
      commit: (done: SegmentDone[]) => done.forEach((d) => committed.push(d.seg.index)),
    }).finally(() => (settled = true));
    p.catch(() => undefined);
    await g.receive(0);
    await g.receive(1);
    await g.fail(1, 'ENET'); // segment 2 is receiving now
    await g.finish(0);
    assert.deepEqual(committed, [0]);
    assert.equal(settled, false, 'it waits for the fetch still under way');
    await g.receive(2);
    await g.finish(2);
    await assert.rejects(p, /segment 1 broke/);
    assert.deepEqual(committed, [0]);
    assert.deepEqual(g.started, [0, 1, 2], 'nothing new after the failure');
    // what finished meanwhile is on disk: a resume finds it and does not fetch it again
    assert.equal(fs.readFileSync(path.join(tmp, 'd', 's2.ts'), 'utf8'), 's2');
  });
});
