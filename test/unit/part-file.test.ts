/** The receiving side of a segment copy: the folder fsync shared by those who ask at once, the buffer let go before the fsync ends, the part's folder made on demand. */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hashAndSync, openPart, openSink, syncDir } from '../../lib/part-file';

describe('part files (lib)', () => {
  let tmp: string;
  const realOpen = fs.promises.open;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-part-'));
  });
  afterEach(() => {
    fs.promises.open = realOpen;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Count the fsyncs of a folder, each held until `release()` when `hold` is set. */
  function spyDirSyncs(dir: string, hold: boolean) {
    const st = { syncs: 0, waiting: [] as (() => void)[] };
    fs.promises.open = async function (this: unknown, ...args: Parameters<typeof realOpen>) {
      const fh = await realOpen.apply(fs.promises, args);
      if (path.resolve(String(args[0])) !== path.resolve(dir)) return fh;
      const sync = fh.sync.bind(fh);
      fh.sync = async () => {
        st.syncs++;
        if (hold) await new Promise<void>((r) => st.waiting.push(r));
        return sync();
      };
      return fh;
    } as typeof realOpen;
    return {
      st,
      releaseAll: () => {
        for (const w of st.waiting.splice(0)) w();
      },
    };
  }

  const tick = () => new Promise((r) => setTimeout(r, 20));

  it('while a folder fsync runs, everyone who asks waits for one next fsync that starts after it', async () => {
    const spy = spyDirSyncs(tmp, true);
    const done: number[] = [];
    const first = syncDir(tmp).then(() => done.push(0));
    await tick();
    assert.equal(spy.st.syncs, 1);
    const later = [1, 2, 3, 4].map((i) => syncDir(tmp).then(() => done.push(i)));
    await tick();
    assert.equal(spy.st.syncs, 1, 'the four wait: none starts while the first runs');
    spy.releaseAll();
    await first;
    await tick();
    assert.deepEqual(done, [0], 'the four are not done by the fsync that began before they asked');
    assert.equal(spy.st.syncs, 2, 'one next fsync for all four');
    spy.releaseAll();
    await Promise.all(later);
    assert.deepEqual(done.sort(), [0, 1, 2, 3, 4]);
    // idle again: the next caller gets a fsync of its own at once
    const again = syncDir(tmp);
    await tick();
    assert.equal(spy.st.syncs, 3);
    spy.releaseAll();
    await again;
  });

  it('folders are synced independently, and a folder that cannot be opened does not hold anyone', async () => {
    const a = path.join(tmp, 'a');
    fs.mkdirSync(a);
    const spy = spyDirSyncs(a, false);
    await Promise.all([syncDir(a), syncDir(path.join(tmp, 'missing')), syncDir(a)]);
    assert.equal(spy.st.syncs, 2);
  });

  it('lets the segment buffer go once it is hashed, before its fsync ends, and gives the sha256', async () => {
    const body = crypto.randomBytes(300000);
    const part = path.join(tmp, 'seg.ts.part');
    const fh = await openPart(part, 'w');
    const sink = await openSink(part, body.length, 0);
    sink.add(body);
    await sink.flush(fh);
    await sink.drain();
    let released = false;
    const release = sink.release.bind(sink);
    sink.release = () => {
      released = true;
      release();
    };
    let endSync!: () => void;
    const sync = fh.sync.bind(fh);
    let releasedBeforeSyncEnded = false;
    fh.sync = async () => {
      await new Promise<void>((r) => (endSync = r));
      releasedBeforeSyncEnded = released;
      return sync();
    };
    const p = hashAndSync(sink, fh);
    // the hash worker may be starting: wait for the release, the fsync held all along
    for (let i = 0; i < 250 && !released; i++) await tick();
    assert.ok(released, 'released while the fsync still runs');
    endSync();
    assert.equal(await p, crypto.createHash('sha256').update(body).digest('hex'));
    assert.ok(releasedBeforeSyncEnded);
    await fh.close();
    assert.deepEqual(fs.readFileSync(part), body);
  });

  it('an fsync that fails fails the segment, after the buffer was let go', async () => {
    const part = path.join(tmp, 'x.part');
    const fh = await openPart(part, 'w');
    const sink = await openSink(part, 10, 0);
    sink.add(Buffer.alloc(10, 7));
    await sink.flush(fh);
    await sink.drain();
    fh.sync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    await assert.rejects(hashAndSync(sink, fh), /EIO/);
    await fh.close();
  });

  it('opens a part in a folder that is not there yet, making the folder', async () => {
    const part = path.join(tmp, 'main-1', 'ch01', 'Clip_1', 'seg00000.ts.part');
    const fh = await openPart(part, 'w');
    await fh.write(Buffer.from('abc'));
    await fh.close();
    assert.equal(fs.readFileSync(part, 'utf8'), 'abc');
    const again = await openPart(part, 'a');
    await again.write(Buffer.from('d'));
    await again.close();
    assert.equal(fs.readFileSync(part, 'utf8'), 'abcd');
  });
});
