import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalogue, openCatalogue } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { Line } from '../../../lib/model/reclist';

const T0 = Date.UTC(2026, 10, 22, 20, 0, 0);

function mkLine(id: string, n: number, p: Partial<Line> = {}): Line {
  return {
    id,
    n,
    group: '',
    title: `Title ${id}`,
    status: 'ready',
    start: 'manual',
    source: 'LIVE',
    inPoint: null,
    outPoint: null,
    curPoint: null,
    startTime: null,
    stopTime: null,
    duration: null,
    backup: 'off',
    attributes: {},
    clipId: null,
    reason: null,
    origin: null,
    createdAt: T0,
    updatedAt: T0,
    ...p,
  };
}

function mkClip(id: string, p: Partial<Clip> = {}): Clip {
  return {
    id,
    name: `clip ${id}`,
    dir: `srv/ch01/2026-11-22/clip ${id}_200000`,
    serverId: 'srv',
    group: '',
    channel: 1,
    channelName: 'Channel 1',
    lineId: `line-${id}`,
    title: `Clip ${id}`,
    attributes: { house: id },
    backup: 'off',
    frameRate: '25',
    tcIn: '10:00:00:00',
    tcOut: null,
    startedAt: T0,
    stoppedAt: null,
    frames: 0,
    durationMs: 0,
    state: 'recording',
    container: 'ts',
    source: 'TESTPATTERN',
    gaps: [],
    segments: [],
    runs: 1,
    reason: null,
    createdAt: T0,
    updatedAt: T0,
    ...p,
  };
}

function mkSegment(index: number, p: Partial<Segment> = {}): Segment {
  return {
    index,
    file: `x_${String(index).padStart(5, '0')}.ts`,
    run: 1,
    startSec: index * 6,
    endSec: index * 6 + 6,
    frames: 150,
    bytes: 1000 + index,
    sha256: null,
    complete: true,
    wallStart: T0 + index * 6000,
    ...p,
  };
}

const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

describe('catalogue', () => {
  let tmp: string;
  let file: string;
  const opened: Catalogue[] = [];
  /** Open and remember, so afterEach can release whatever a failing test left open. */
  const open = (f = file) => {
    const c = openCatalogue(f);
    opened.push(c);
    return c;
  };

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-cat-'));
    file = path.join(tmp, 'sub', 'catalogue.db');
  });
  afterEach(() => {
    for (const c of opened.splice(0)) {
      try {
        c.release();
      } catch {
        /* already closed */
      }
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('openCatalogue', () => {
    it('creates the folder and the database file', () => {
      const cat = open();
      assert.ok(fs.existsSync(file));
      assert.equal(cat.file, path.resolve(file));
      assert.deepEqual(cat.lines('srv', 1), []);
    });

    it('shares one instance per file (also by a relative path) and closes on the last release', () => {
      const a = openCatalogue(file);
      const b = openCatalogue(file);
      const c = openCatalogue(path.relative(process.cwd(), file));
      assert.equal(a, b);
      assert.equal(a, c);
      a.putLine('srv', 1, mkLine('l1', 1));
      a.release();
      b.release();
      assert.equal(c.lines('srv', 1).length, 1, 'still open while one reference is left');
      c.release();
      assert.throws(() => c.lines('srv', 1), /not open/);
      const d = open();
      assert.notEqual(d, a, 'a new instance after the last release');
      assert.deepEqual(ids(d.lines('srv', 1)), ['l1']);
    });

    it('different files are different instances', () => {
      const a = open();
      const b = open(path.join(tmp, 'other.db'));
      assert.notEqual(a, b);
      a.putLine('srv', 1, mkLine('only-a', 1));
      assert.deepEqual(b.lines('srv', 1), []);
    });

    it('reopens an existing file without losing data or failing the migration', () => {
      const a = openCatalogue(file);
      a.putLine('srv', 1, mkLine('l1', 1));
      a.release();
      const b = open();
      assert.deepEqual(ids(b.lines('srv', 1)), ['l1']);
    });
  });

  describe('lines', () => {
    it('are kept per (server, channel) and ordered by n', () => {
      const cat = open();
      cat.putLine('srv', 1, mkLine('c', 3));
      cat.putLine('srv', 1, mkLine('a', 1));
      cat.putLine('srv', 1, mkLine('b', 2));
      cat.putLine('srv', 2, mkLine('x', 1));
      cat.putLine('other', 1, mkLine('y', 1));
      assert.deepEqual(ids(cat.lines('srv', 1)), ['a', 'b', 'c']);
      assert.deepEqual(ids(cat.lines('srv', 2)), ['x']);
      assert.deepEqual(ids(cat.lines('other', 1)), ['y']);
      assert.deepEqual(cat.lines('srv', 3), []);
    });

    it('round-trip every field', () => {
      const cat = open();
      const line = mkLine('full', 1, {
        title: 'Nachrichten – ニュース',
        status: 'stopped',
        start: 'time',
        startTime: T0,
        stopTime: T0 + 60_000,
        duration: '00:01:00:00',
        inPoint: '10:00:00:00',
        outPoint: '10:01:00:00',
        backup: 'aux',
        attributes: { a: 'x', b: 2, c: true, d: null },
        clipId: 'clip-1',
        reason: 'r',
        origin: { server: 'main', channel: 2, lineId: 'L7' },
      });
      cat.putLine('srv', 1, line);
      assert.deepEqual(cat.lines('srv', 1), [line]);
    });

    it('putLine replaces a line with the same id (same server and channel)', () => {
      const cat = open();
      cat.putLine('srv', 1, mkLine('a', 1));
      cat.putLine('srv', 1, mkLine('a', 1, { title: 'changed', status: 'armed' }));
      const lines = cat.lines('srv', 1);
      assert.equal(lines.length, 1);
      assert.equal(lines[0].title, 'changed');
      assert.equal(lines[0].status, 'armed');
      cat.putLine('srv', 2, mkLine('a', 1, { title: 'other channel' }));
      assert.equal(cat.lines('srv', 1)[0].title, 'changed');
      assert.equal(cat.lines('srv', 2)[0].title, 'other channel');
    });

    it('putLines stores a renumbered list and drops the removed id', () => {
      const cat = open();
      cat.putLines('srv', 1, [mkLine('a', 1), mkLine('b', 2), mkLine('c', 3)]);
      assert.deepEqual(ids(cat.lines('srv', 1)), ['a', 'b', 'c']);
      cat.putLines('srv', 1, [mkLine('a', 1), mkLine('c', 2)], 'b');
      const lines = cat.lines('srv', 1);
      assert.deepEqual(ids(lines), ['a', 'c']);
      assert.deepEqual(
        lines.map((l) => l.n),
        [1, 2],
      );
      cat.putLines('srv', 1, [mkLine('c', 1), mkLine('a', 2)]);
      assert.deepEqual(ids(cat.lines('srv', 1)), ['c', 'a']);
      cat.putLines('srv', 1, [], 'zz');
      assert.deepEqual(ids(cat.lines('srv', 1)), ['c', 'a']);
    });

    it('a failing transaction leaves nothing behind', () => {
      const cat = open();
      cat.putLine('srv', 1, mkLine('a', 1));
      assert.throws(
        () =>
          cat.transaction(() => {
            cat.putLine('srv', 1, mkLine('b', 2));
            cat.putLine('srv', 1, mkLine('a', 1, { title: 'changed' }));
            throw new Error('boom');
          }),
        /boom/,
      );
      const lines = cat.lines('srv', 1);
      assert.deepEqual(ids(lines), ['a']);
      assert.equal(lines[0].title, 'Title a');
    });
  });

  describe('clips', () => {
    it('put and get with segments, in index order', () => {
      const cat = open();
      const clip = mkClip('c1');
      cat.putClip(clip);
      assert.deepEqual(cat.clip('c1'), clip);
      cat.putSegment('c1', mkSegment(1));
      cat.putSegment('c1', mkSegment(0));
      cat.putSegment('c1', mkSegment(2, { complete: false, sha256: null, frames: null }));
      const got = cat.clip('c1')!;
      assert.deepEqual(
        got.segments.map((s) => s.index),
        [0, 1, 2],
      );
      assert.deepEqual(got.segments[2], mkSegment(2, { complete: false, sha256: null, frames: null }));
      // a segment is updated in place
      cat.putSegment('c1', mkSegment(2, { complete: true, sha256: 'ab'.repeat(32), bytes: 5 }));
      assert.equal(cat.clip('c1')!.segments.length, 3);
      assert.equal(cat.clip('c1')!.segments[2].sha256, 'ab'.repeat(32));
      assert.equal(cat.clip('nope'), undefined);
    });

    it('gives a clip and one of its segments without the others (what serving a segment needs)', () => {
      const cat = open();
      cat.putClip(mkClip('c1'));
      for (const i of [0, 1, 2]) cat.putSegment('c1', mkSegment(i));
      const got = cat.clipAndSegment('c1', 1)!;
      assert.deepEqual(got.segment, mkSegment(1));
      assert.equal(got.clip.id, 'c1');
      assert.equal(got.clip.dir, mkClip('c1').dir);
      assert.deepEqual(got.clip.segments, []);
      assert.equal(cat.clipAndSegment('c1', 7)!.segment, undefined);
      assert.equal(cat.clipAndSegment('nope', 0), undefined);
    });

    it('putClip updates state, times and data; segments are kept apart', () => {
      const cat = open();
      cat.putClip(mkClip('c1'));
      cat.putSegment('c1', mkSegment(0));
      const closed = mkClip('c1', {
        state: 'closed',
        stoppedAt: T0 + 6000,
        tcOut: '10:00:06:00',
        frames: 150,
        gaps: [{ fromMs: T0 + 1000, toMs: T0 + 2000, reason: 'source lost', afterSegment: 0 }],
        segments: [mkSegment(0)],
      });
      cat.putClip(closed);
      assert.deepEqual(cat.clip('c1'), closed);
    });

    it('clipsInState', () => {
      const cat = open();
      cat.putClip(mkClip('r1', { state: 'recording' }));
      cat.putClip(mkClip('s1', { state: 'suspended' }));
      cat.putClip(mkClip('c1', { state: 'closed' }));
      cat.putClip(mkClip('f1', { state: 'failed' }));
      cat.putClip(mkClip('r2', { state: 'recording', channel: 2 }));
      cat.putClip(mkClip('r3', { state: 'recording', serverId: 'other' }));
      assert.deepEqual(ids(cat.clipsInState('srv', 1, ['recording', 'suspended'])).sort(), ['r1', 's1']);
      assert.deepEqual(ids(cat.clipsInState('srv', 1, ['closed'])), ['c1']);
      assert.deepEqual(cat.clipsInState('srv', 1, []), []);
      assert.deepEqual(ids(cat.clipsInState('srv', 2, ['recording'])), ['r2']);
      cat.putSegment('r1', mkSegment(0));
      assert.equal(cat.clipsInState('srv', 1, ['recording'])[0].segments.length, 1);
    });

    it('clips by time range: those overlapping it, ordered by start', () => {
      const cat = open();
      cat.putClip(mkClip('b', { startedAt: 3000, stoppedAt: 4000, state: 'closed' }));
      cat.putClip(mkClip('a', { startedAt: 1000, stoppedAt: 2000, state: 'closed' }));
      cat.putClip(mkClip('c', { startedAt: 5000, stoppedAt: null, state: 'recording' }));
      cat.putClip(mkClip('other-channel', { startedAt: 1000, stoppedAt: 9000, channel: 2 }));
      assert.deepEqual(ids(cat.clips('srv', 1)), ['a', 'b', 'c']);
      assert.deepEqual(ids(cat.clips('srv', 1, 2500, 3500)), ['b']);
      assert.deepEqual(ids(cat.clips('srv', 1, 1500, 3500)), ['a', 'b']);
      assert.deepEqual(ids(cat.clips('srv', 1, 4500, 4800)), []);
      assert.deepEqual(ids(cat.clips('srv', 1, 100_000, 200_000)), ['c'], 'a clip still recording reaches into the future');
      assert.deepEqual(ids(cat.clips('srv', 1, 0, 999)), []);
      assert.deepEqual(ids(cat.clips('srv', 1, 2000, 3000)), ['a', 'b'], 'bounds are inclusive');
      assert.deepEqual(ids(cat.clips('srv', 2, 0, 10_000)), ['other-channel']);
    });
  });

  describe('events', () => {
    it('append with increasing seq and query by time window and channel', () => {
      const cat = open();
      const s1 = cat.addEvent({ ts: 1000, serverId: 'srv', channel: 1, kind: 'added', lineId: 'l1', clipId: null, data: { n: 1 } });
      const s2 = cat.addEvent({ ts: 2000, serverId: 'srv', channel: 2, kind: 'armed', lineId: 'l2', clipId: null, data: ['x'] });
      const s3 = cat.addEvent({ ts: 3000, serverId: 'srv', channel: 1, kind: 'recording', lineId: 'l1', clipId: 'c1', data: undefined });
      const s4 = cat.addEvent({ ts: 4000, serverId: 'srv', channel: null, kind: 'server', lineId: null, clipId: null, data: 'up' });
      cat.addEvent({ ts: 2500, serverId: 'other', channel: 1, kind: 'added', lineId: null, clipId: null, data: null });
      assert.ok(s1 < s2 && s2 < s3 && s3 < s4);

      const ch1 = cat.events('srv', 1);
      assert.deepEqual(
        ch1.map((e) => [e.seq, e.kind]),
        [
          [s1, 'added'],
          [s3, 'recording'],
        ],
      );
      assert.deepEqual(ch1[0], { seq: s1, ts: 1000, serverId: 'srv', channel: 1, kind: 'added', lineId: 'l1', clipId: null, data: { n: 1 } });
      assert.equal(ch1[1].data, null, 'undefined data is stored as null');
      assert.equal(ch1[1].clipId, 'c1');

      assert.deepEqual(
        cat.events('srv', null).map((e) => e.seq),
        [s1, s2, s3, s4],
        'null channel: every channel',
      );
      assert.deepEqual(
        cat.events('srv', null, 2000, 3000).map((e) => e.seq),
        [s2, s3],
        'inclusive window',
      );
      assert.deepEqual(cat.events('srv', 1, 1001, 2999), []);
      assert.deepEqual(
        cat.events('srv', 2, 0, 10_000).map((e) => e.data),
        [['x']],
      );
      assert.deepEqual(
        cat.events('other', null).map((e) => e.ts),
        [2500],
      );
    });

    it('keeps insertion order (seq), not time order', () => {
      const cat = open();
      cat.addEvent({ ts: 5000, serverId: 'srv', channel: 1, kind: 'late', lineId: null, clipId: null, data: null });
      cat.addEvent({ ts: 1000, serverId: 'srv', channel: 1, kind: 'early', lineId: null, clipId: null, data: null });
      assert.deepEqual(
        cat.events('srv', 1).map((e) => e.kind),
        ['late', 'early'],
      );
    });
  });

  describe('processes', () => {
    it('add, replace, list and remove', () => {
      const cat = open();
      const before = Date.now();
      cat.addProcess(1234, 'c1', '/storage/srv/ch01/a');
      cat.addProcess(1235, 'c2', '/storage/srv/ch02/b');
      let ps = cat.processes().sort((x, y) => x.pid - y.pid);
      assert.deepEqual(
        ps.map((p) => [p.pid, p.clipId, p.marker]),
        [
          [1234, 'c1', '/storage/srv/ch01/a'],
          [1235, 'c2', '/storage/srv/ch02/b'],
        ],
      );
      assert.ok(ps[0].startedAt >= before && ps[0].startedAt <= Date.now());
      cat.addProcess(1234, 'c1', '/storage/new-marker');
      ps = cat.processes();
      assert.equal(ps.length, 2);
      assert.equal(ps.find((p) => p.pid === 1234)!.marker, '/storage/new-marker');
      cat.removeProcess(1234, 'c1');
      assert.deepEqual(
        cat.processes().map((p) => p.pid),
        [1235],
      );
      cat.removeProcess(1235, 'not-that-clip');
      assert.deepEqual(
        cat.processes().map((p) => p.pid),
        [1235],
      );
      cat.removeProcess(1235, 'c2');
      assert.deepEqual(cat.processes(), []);
    });
  });

  describe('durability', () => {
    it('a kill -9 in the middle of writing loses nothing that was committed', async function () {
      this.timeout(60_000);
      const catalogueJs = path.resolve(__dirname, '../../../lib/store/catalogue.js');
      assert.ok(fs.existsSync(catalogueJs), 'compile first: lib/store/catalogue.js');
      const script = `
        const fs = require('fs');
        const { openCatalogue } = require(${JSON.stringify(catalogueJs)});
        const cat = openCatalogue(process.argv[1]);
        let n = 0;
        function line(n) {
          return { id: 'line-' + n, n, group: '', title: 'Title ' + n + ' ' + 'x'.repeat(200), status: 'ready', start: 'manual',
            source: 'LIVE', inPoint: null, outPoint: null, curPoint: null, startTime: null, stopTime: null, duration: null,
            backup: 'off', attributes: { k: n }, clipId: null, reason: null, origin: null, createdAt: n, updatedAt: n };
        }
        function batch() {
          for (let i = 0; i < 20 && n < 1000000; i++) {
            n++;
            cat.putLine('srv', 7, line(n));
            fs.writeSync(1, 'COMMITTED ' + n + '\\n');
          }
          setImmediate(batch);
        }
        fs.writeSync(1, 'READY\\n');
        batch();
      `;
      const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'pipe'] });
      const committed = new Set<number>();
      let stderr = '';
      let buf = '';
      let killedAt = -1;
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on('exit', (code, signal) => resolve({ code, signal })),
      );
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const m = /^COMMITTED (\d+)$/.exec(buf.slice(0, i));
          buf = buf.slice(i + 1);
          if (m) committed.add(Number(m[1]));
        }
        if (killedAt < 0 && committed.size >= 200) {
          killedAt = committed.size;
          child.kill('SIGKILL');
        }
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
      const { signal } = await exited;
      clearTimeout(timer);
      assert.ok(killedAt >= 200, `the child printed only ${committed.size} commits before it ended; stderr: ${stderr}`);
      assert.equal(signal, 'SIGKILL', `the child ended by itself; stderr: ${stderr}`);
      assert.equal(stderr, '');

      const cat = open();
      const stored = cat.lines('srv', 7);
      const byId = new Map(stored.map((l) => [l.id, l]));
      const lost = [...committed].filter((n) => !byId.has(`line-${n}`));
      assert.deepEqual(lost, [], `${lost.length} of ${committed.size} committed lines lost`);
      for (const n of committed) {
        const l = byId.get(`line-${n}`)!;
        assert.equal(l.n, n);
        assert.deepEqual(l.attributes, { k: n });
      }
      assert.ok(stored.length >= committed.size);
      // the stored lines are a prefix 1..k: commits happen in order
      assert.deepEqual(
        stored.map((l) => l.n),
        stored.map((_l, i) => i + 1),
      );
    });
  });
});
