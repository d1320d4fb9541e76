/** The receiving side of a segment copy: the folder fsync shared by those who ask at once, the buffer let go before the fsync ends, the part's folder made on demand. */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fsyncHandle, fsyncPath, stopFsyncWorkers } from '../../../lib/io/fsync-worker';
import { readFull } from '../../../lib/io/buffers';
import {
  DIRECT_SLOW_MS,
  directWrites,
  GroupRun,
  hashAndSync,
  noteDirectWrite,
  openPart,
  openSink,
  receiveIntoPart,
  resetDirectWrites,
  settlePart,
  syncDir,
  WholeSink,
} from '../../../lib/io/part-file';

const tick = () => new Promise((r) => setTimeout(r, 20));

describe('part files (lib)', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-part-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A job per key that counts its runs and is held until released. */
  function heldJob() {
    const st = { runs: [] as string[], waiting: [] as (() => void)[] };
    const job = async (key: string) => {
      st.runs.push(key);
      await new Promise<void>((r) => st.waiting.push(r));
    };
    return { st, job, releaseAll: () => st.waiting.splice(0).forEach((w) => w()) };
  }

  it('while a folder fsync runs, everyone who asks waits for one next fsync that starts after it', async () => {
    const h = heldJob();
    const g = new GroupRun(h.job);
    const done: number[] = [];
    const first = g.run('/d').then(() => done.push(0));
    await tick();
    assert.equal(h.st.runs.length, 1);
    const later = [1, 2, 3, 4].map((i) => g.run('/d').then(() => done.push(i)));
    await tick();
    assert.equal(h.st.runs.length, 1, 'the four wait: none starts while the first runs');
    h.releaseAll();
    await first;
    await tick();
    assert.deepEqual(done, [0], 'the four are not done by the fsync that began before they asked');
    assert.equal(h.st.runs.length, 2, 'one next fsync for all four');
    h.releaseAll();
    await Promise.all(later);
    assert.deepEqual(done.sort(), [0, 1, 2, 3, 4]);
    // idle again: the next caller gets an fsync of its own at once
    const again = g.run('/d');
    await tick();
    assert.equal(h.st.runs.length, 3);
    h.releaseAll();
    await again;
  });

  it('keys are run independently, and a job that fails does not hold anyone', async () => {
    const runs: string[] = [];
    const g = new GroupRun(async (k) => {
      runs.push(k);
      if (k === '/bad') throw new Error('cannot open');
    });
    await Promise.all([g.run('/a'), g.run('/bad'), g.run('/a'), g.run('/bad')]);
    assert.deepEqual(runs.sort(), ['/a', '/a', '/bad', '/bad']);
  });

  it('syncs a real folder, and a missing one without an error (the rename stands)', async () => {
    fs.mkdirSync(path.join(tmp, 'a'));
    await Promise.all([syncDir(path.join(tmp, 'a')), syncDir(path.join(tmp, 'missing')), syncDir(path.join(tmp, 'a'))]);
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
    let releasedBeforeSyncEnded = false;
    const p = hashAndSync(sink, fh, async (h) => {
      await new Promise<void>((r) => (endSync = r));
      releasedBeforeSyncEnded = released;
      await fsyncHandle(h);
    });
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
    await assert.rejects(
      hashAndSync(sink, fh, () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))),
      /EIO/,
    );
    await fh.close();
  });

  it('a hash that fails fails the segment only after its fsync ended (the caller then closes the file)', async () => {
    let synced = false;
    let released = false;
    const sink = {
      add: () => 0,
      flush: async () => undefined,
      drain: async () => undefined,
      digest: () => Promise.reject(new Error('sha256 worker exited (1)')),
      release: () => (released = true),
    };
    const fh = await openPart(path.join(tmp, 'y.part'), 'w');
    await assert.rejects(
      hashAndSync(sink, fh, async () => {
        await tick();
        synced = true;
      }),
      /worker exited/,
    );
    assert.ok(synced && released);
    await fh.close();
  });

  describe('writes of a segment held whole', () => {
    afterEach(() => resetDirectWrites());

    async function wholeSink(part: string, total: number): Promise<WholeSink> {
      const sink = await openSink(part, total, 0);
      assert.ok(sink instanceof WholeSink);
      return sink;
    }

    it('on quick storage, a flush has written its bytes when it returns, in order, and the part is the segment', async () => {
      const part = path.join(tmp, 'a.part');
      const body = crypto.randomBytes(3 << 20);
      const sink = await wholeSink(part, body.length);
      const fh = await openPart(part, 'w');
      try {
        assert.equal(directWrites(), true);
        for (let off = 0; off < body.length; off += 1 << 20) {
          sink.add(body.subarray(off, off + (1 << 20)));
          void sink.flush(fh);
          // no await between the flush and the look: the write was made on the spot
          assert.equal(fs.fstatSync(fh.fd).size, off + (1 << 20));
        }
        await sink.drain();
        assert.ok(fs.readFileSync(part).equals(body));
      } finally {
        sink.release();
        await fh.close();
      }
    });

    it('a write that fails is kept and thrown by drain(), not by flush(); nothing more is written after it', async () => {
      const part = path.join(tmp, 'b.part');
      fs.writeFileSync(part, '');
      const sink = await wholeSink(part, 2048);
      const ro = await fs.promises.open(part, 'r'); // a descriptor that cannot be written: EBADF
      try {
        sink.add(Buffer.alloc(1024, 1));
        await sink.flush(ro);
        sink.add(Buffer.alloc(1024, 2));
        await sink.flush(ro);
        await assert.rejects(sink.drain(), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
        assert.equal(fs.statSync(part).size, 0);
      } finally {
        sink.release();
        await ro.close();
      }
    });

    it('after a slow write, the writes go to the thread pool (the flush returns before its bytes are written) and still land in order', async () => {
      noteDirectWrite(DIRECT_SLOW_MS / 2);
      assert.equal(directWrites(), true, 'a quick write changes nothing');
      noteDirectWrite(DIRECT_SLOW_MS + 1);
      assert.equal(directWrites(), false);
      const part = path.join(tmp, 'c.part');
      const body = crypto.randomBytes(2 << 20);
      const sink = await wholeSink(part, body.length);
      const fh = await openPart(part, 'w');
      try {
        sink.add(body.subarray(0, 1 << 20));
        void sink.flush(fh);
        assert.equal(fs.fstatSync(fh.fd).size, 0, 'not written on the spot');
        sink.add(body.subarray(1 << 20));
        void sink.flush(fh);
        await sink.drain();
        assert.ok(fs.readFileSync(part).equals(body));
      } finally {
        sink.release();
        await fh.close();
      }
    });
  });

  it('settles a part: with a wrong sha256 deleted and refused with the sentence, else renamed into place', async () => {
    const part = path.join(tmp, 's.ts.part');
    const dest = path.join(tmp, 's.ts');
    fs.writeFileSync(part, 'abc');
    await assert.rejects(
      settlePart(part, dest, 'segment 3 has sha256 x, not y', (sentence) => Object.assign(new Error(sentence), { code: 'EHASH' })),
      (err: NodeJS.ErrnoException) => err.code === 'EHASH' && err.message === 'segment 3 has sha256 x, not y; the copy was deleted',
    );
    assert.ok(!fs.existsSync(part) && !fs.existsSync(dest));
    fs.writeFileSync(part, 'abc');
    await settlePart(part, dest, null, () => new Error('not called'));
    assert.ok(!fs.existsSync(part));
    assert.equal(fs.readFileSync(dest, 'utf8'), 'abc');
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
  it('a body received into its part: the sha256 of all of it, a resumed prefix included; `received` before the hash, the sink let go', async () => {
    const body = crypto.randomBytes(300_000);
    const part = path.join(tmp, 's.part');
    fs.writeFileSync(part, body.subarray(0, 1000));
    const fh = await openPart(part, 'a');
    const sink = await openSink(part, body.length, 1000);
    const order: string[] = [];
    let released = 0;
    const release = sink.release.bind(sink);
    sink.release = () => {
      released++;
      release();
    };
    const sha = await receiveIntoPart(
      sink,
      fh,
      async () => {
        sink.add(body.subarray(1000, 200_000));
        await sink.flush(fh);
        sink.add(body.subarray(200_000));
        order.push('receive');
      },
      { kept: () => order.push('kept'), received: () => order.push('received') },
    );
    await fh.close();
    assert.equal(sha, crypto.createHash('sha256').update(body).digest('hex'));
    assert.deepEqual(order, ['receive', 'kept', 'received']);
    assert.ok(released >= 1, 'the sink was let go');
    assert.deepEqual(fs.readFileSync(part), body, 'the last bytes were written without the receiver flushing them');
  });

  it("a body that breaks off keeps what came in its part and throws the receiver's error; no hash, no `received`", async () => {
    const part = path.join(tmp, 'b.part');
    const fh = await openPart(part, 'w');
    const sink = await openSink(part, 100_000, 0);
    const order: string[] = [];
    await assert.rejects(
      receiveIntoPart(
        sink,
        fh,
        async () => {
          sink.add(Buffer.alloc(4000, 7));
          throw Object.assign(new Error('the connection closed after 4000 of 100000 bytes'), { code: 'ETRUNC' });
        },
        { kept: () => order.push('kept'), received: () => order.push('received') },
      ),
      (err: NodeJS.ErrnoException) => err.code === 'ETRUNC',
    );
    await fh.close();
    assert.deepEqual(order, ['kept']);
    assert.deepEqual(fs.readFileSync(part), Buffer.alloc(4000, 7), 'the prefix that came is in the part, for a resume');
  });

  it("a write that fails is thrown as the disk's error, not as the receiver's", async () => {
    const part = path.join(tmp, 'w.part');
    fs.writeFileSync(part, '');
    const fh = await fs.promises.open(part, 'r'); // writes to it fail (EBADF)
    const sink = await openSink(part, 10_000, 0);
    await assert.rejects(
      receiveIntoPart(sink, fh, async () => {
        sink.add(Buffer.alloc(10_000, 1));
      }),
      (err: NodeJS.ErrnoException) => err.code === 'EBADF',
    );
    await fh.close();
    assert.equal(fs.statSync(part).size, 0);
  });

  it('reads a file range whole, and says so when the file is shorter than asked', async () => {
    const f = path.join(tmp, 'r.bin');
    const data = crypto.randomBytes(50_000);
    fs.writeFileSync(f, data);
    const fd = fs.openSync(f, 'r');
    try {
      assert.deepEqual(await readFull(fd, Buffer.alloc(20_000), 30_000), data.subarray(30_000));
      await assert.rejects(readFull(fd, Buffer.alloc(20_001), 30_000), /became shorter while it was sent/);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('fsync workers (lib)', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-fsync-'));
  });
  after(async () => {
    await stopFsyncWorkers();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('fsyncs many open files at once and folders by path; the files keep what was written', async () => {
    const handles = await Promise.all(Array.from({ length: 10 }, (_, i) => fs.promises.open(path.join(tmp, `f${i}`), 'w')));
    await Promise.all(handles.map((h, i) => h.write(Buffer.alloc(1000 + i, i))));
    await Promise.all([...handles.map((h) => fsyncHandle(h)), fsyncPath(tmp)]);
    await Promise.all(handles.map((h) => h.close()));
    for (let i = 0; i < 10; i++) assert.deepEqual(fs.readFileSync(path.join(tmp, `f${i}`)), Buffer.alloc(1000 + i, i));
  });

  it('gives the system error of a failed fsync with its code, and goes on serving', async () => {
    const fd = 1_000_000; // no such descriptor (a closed one could be reused meanwhile)
    await assert.rejects(fsyncHandle({ fd } as fs.promises.FileHandle), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
    await assert.rejects(fsyncPath(path.join(tmp, 'nothing-here')), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
    await fsyncPath(tmp);
  });

  it('starts new workers after they were stopped', async () => {
    await stopFsyncWorkers();
    await fsyncPath(tmp);
  });
});
