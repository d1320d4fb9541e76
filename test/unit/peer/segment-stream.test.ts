/**
 * The segment stream of the peer API (lib/peer/segment-stream.ts): a real
 * PeerApiServer and PeerClient on 127.0.0.1, a real catalogue and real files.
 * A clip's segments come on one connection, in plan order, the peer never more
 * than the window past the copier's acknowledgements; resumes start from the
 * part; bad requests and plans are refused with a sentence; a stream that
 * fails leaves the copy to ordinary GETs.
 */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Catalogue } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { PeerApiServer } from '../../../lib/peer/api';
import { PeerClient } from '../../../lib/peer/client';
import { RateLimiter } from '../../../lib/peer/rate-limiter';
import { copySegments, SegmentDone } from '../../../lib/copy/segment-copy';
import { ackEvery, flushEvery, MIN_WINDOW, parsePlan, streamChunk, STREAM_WINDOW, windowFor } from '../../../lib/peer/segment-stream';
import { StreamClient } from '../../../lib/peer/stream-client';

const SECRET = 'correct horse battery staple';
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('segment stream of the peer API (real HTTP on 127.0.0.1)', function () {
  this.timeout(60000);
  let tmp: string;
  let root: string;
  let dest: string;
  let cat: Catalogue;
  let api: PeerApiServer;
  let port: number;
  let url: string;
  let served: Map<number, number>;
  let client: PeerClient;
  // small (held with a frame head), one chunk, several chunks, and more than a window
  const sizes = [5000, 70000, 1 << 20, (2 << 20) + 12345, 300, (6 << 20) + 7, 4096, (1 << 20) + 1];
  let data: Buffer[];
  let clip: Clip;

  function mkClip(id: string, dir: string, segs: Segment[]): Clip {
    return {
      id,
      name: `clip ${id}`,
      dir,
      serverId: 'fo-1',
      group: 'studio',
      channel: 1,
      channelName: 'Channel 1',
      lineId: 'l',
      title: 'T',
      attributes: {},
      backup: 'off',
      frameRate: '25',
      tcIn: '10:00:00:00',
      tcOut: null,
      startedAt: 1,
      stoppedAt: 2,
      frames: 0,
      durationMs: 0,
      state: 'closed',
      container: 'ts',
      source: 'cam',
      gaps: [],
      segments: segs,
      runs: 1,
      reason: null,
      createdAt: 1,
      updatedAt: 1,
    };
  }
  const seg = (i: number, b: Buffer, file = `seg_${String(i).padStart(5, '0')}.ts`): Segment => ({
    index: i,
    file,
    run: 1,
    startSec: i * 2,
    endSec: i * 2 + 2,
    frames: 50,
    bytes: b.length,
    sha256: sha(b),
    complete: true,
    wallStart: i * 2000,
  });

  async function startApi(p = 0) {
    api = new PeerApiServer({
      host: '127.0.0.1',
      port: p,
      secret: SECRET,
      storageRoot: root,
      catalogue: cat,
      serverId: 'fo-1',
      onServed: (_c, i, n) => served.set(i, (served.get(i) ?? 0) + n),
    });
    ({ port, url } = await api.start());
  }

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-stream-'));
    root = path.join(tmp, 'src');
    dest = path.join(tmp, 'dst');
    cat = new Catalogue(path.join(tmp, 'cat.sqlite'));
    data = sizes.map((n) => crypto.randomBytes(n));
    clip = mkClip(
      'c1',
      'fo-1/ch01/2026-12-05/News_120000',
      data.map((b, i) => seg(i, b)),
    );
    fs.mkdirSync(path.join(root, clip.dir), { recursive: true });
    data.forEach((b, i) => fs.writeFileSync(path.join(root, clip.dir, clip.segments[i].file), b));
    cat.putClip(clip);
    for (const s of clip.segments) cat.putSegment(clip.id, s);
    // a clip whose segment leads outside the storage root
    const evil = mkClip('evil', 'fo-1/ch01/2026-12-05/evil', [seg(0, Buffer.from('x'), '../../../../../outside.ts'), seg(1, Buffer.from('y'))]);
    cat.putClip(evil);
    for (const s of evil.segments) cat.putSegment(evil.id, s);
    fs.writeFileSync(path.join(tmp, 'outside.ts'), 'not yours');
    served = new Map();
    await startApi();
    client = new PeerClient({ url, secret: SECRET, timeoutMs: 5000 });
  });

  afterEach(async () => {
    client.close();
    await api.close();
    cat.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const copy = (segs = clip.segments, o: { limiter?: RateLimiter; signal?: AbortSignal } = {}) => {
    const done: number[] = [];
    return copySegments(client, dest, clip, segs, { ...o, commit: (d: SegmentDone[]) => void done.push(...d.map((x) => x.seg.index)) }).then(() => done);
  };
  const onDisk = (i: number) => fs.readFileSync(path.join(dest, clip.dir, clip.segments[i].file));

  it('brings every segment of a clip on one stream, in order, each byte once, verified', async () => {
    const done = await copy();
    assert.deepEqual(
      done,
      clip.segments.map((s) => s.index),
    );
    for (let i = 0; i < data.length; i++) assert.equal(sha(onDisk(i)), clip.segments[i].sha256, `segment ${i}`);
    assert.deepEqual(client.streamStats, { opened: 1, segments: data.length });
    for (let i = 0; i < data.length; i++) assert.equal(served.get(i), data[i].length, `segment ${i} served once`);
    assert.equal(fs.readdirSync(path.join(dest, clip.dir)).filter((f) => f.endsWith('.part')).length, 0);
  });

  it('never sends more than the window past the last acknowledgement', async () => {
    const window = MIN_WINDOW;
    const c = await StreamClient.open({
      host: '127.0.0.1',
      port,
      hostHeader: `127.0.0.1:${port}`,
      path: `/twinrec/v1/clips/${clip.id}/stream`,
      secret: SECRET,
      plan: [
        [3, 0, null],
        [5, 0, null],
      ],
      window,
      timeoutMs: 5000,
    });
    try {
      const a = await c.take(3);
      assert.equal(a.head.size, data[3].length);
      const buf = Buffer.alloc(a.head.size);
      let filled = 0;
      const target = {
        reserve: (n: number) => buf.subarray(filled, filled + n),
        advance: (n: number) => ((filled += n), 0),
        add: (b: Buffer) => (b.copy(buf, filled), (filled += b.length), 0),
      };
      const receiving = a.receive(target);
      // no acknowledgement: the peer stops at the window
      await sleep(400);
      const sent = () => [...served.values()].reduce((x, y) => x + y, 0);
      assert.equal(sent(), window, 'the peer sent exactly one window and waits');
      assert.equal(filled, window, 'and the copier has it all');
      // acknowledged bytes let the next ones go; every byte of both segments comes
      for (let i = 0; filled < buf.length && i < 200; i++) {
        c.ack(c.received);
        await sleep(10);
        assert.ok(sent() - c.received <= window, `sent ${sent()} - received ${c.received} within the window`);
      }
      await receiving;
      assert.equal(sha(buf), clip.segments[3].sha256);
    } finally {
      c.close();
    }
  });

  it('acknowledges seldom but often enough that the peer never waits for ever, at any window', () => {
    for (const w of [MIN_WINDOW, 100000, 1 << 20, STREAM_WINDOW, 64 << 20]) {
      // stalled peer: more than w - chunk unacknowledged; the copier wrote all but less than flushEvery of it
      assert.ok(w - streamChunk(w) - flushEvery(w) >= ackEvery(w), `window ${w}`);
      assert.ok(ackEvery(w) >= w / 2 - 1, `window ${w}: not an acknowledgement per write`);
    }
    assert.equal(ackEvery(STREAM_WINDOW), STREAM_WINDOW / 2);
    assert.ok(STREAM_WINDOW < 4 << 20, 'under one 4 MiB segment in flight');
    assert.equal(windowFor(undefined), STREAM_WINDOW);
    assert.equal(windowFor(0), STREAM_WINDOW, 'no limit');
    assert.equal(windowFor(40000), MIN_WINDOW, 'a slow limit: the smallest window');
    assert.equal(windowFor(4 << 20), 1 << 20, 'a quarter of a second');
  });

  it('copies under a bandwidth limit with a small window, the peer never more than that window ahead', async () => {
    const limiter = new RateLimiter(1 << 20, { burstBytes: 64 << 10 });
    const window = windowFor(limiter.bytesPerSecond);
    let most = 0;
    let received = 0;
    const timer = setInterval(() => (most = Math.max(most, [...served.values()].reduce((x, y) => x + y, 0) - received)), 5);
    try {
      await copySegments(client, dest, clip, clip.segments.slice(0, 4), { limiter, onBytes: (n) => (received += n), commit: () => undefined });
    } finally {
      clearInterval(timer);
    }
    for (let i = 0; i < 4; i++) assert.equal(sha(onDisk(i)), clip.segments[i].sha256, `segment ${i}`);
    assert.equal(client.streamStats.segments, 4);
    assert.ok(most <= window, `at most ${most} bytes sent ahead of the copier, window ${window}`);
  });

  it('resumes a segment from its part file, and starts over when the part is of another file', async () => {
    fs.mkdirSync(path.join(dest, clip.dir), { recursive: true });
    const part = (i: number) => path.join(dest, clip.dir, `${clip.segments[i].file}.part`);
    fs.writeFileSync(part(3), data[3].subarray(0, 777777));
    // segment 5's part holds bytes of something else, and the plan says so by a sha256 the peer's file does not have
    fs.writeFileSync(part(5), crypto.randomBytes(1000));
    const other = { ...clip.segments[5], sha256: sha(Buffer.from('another file')) };
    await assert.rejects(copy([clip.segments[3], other, clip.segments[6]]), /sha256/, 'the catalogue said another sha256 for 5: refused after the copy');
    assert.equal(served.get(3), data[3].length - 777777, 'segment 3 from where its part ended');
    assert.equal(served.get(5), data[5].length, 'segment 5 from its start');
    assert.equal(sha(onDisk(3)), clip.segments[3].sha256);
    assert.equal(fs.existsSync(part(5)), false, 'the copy with the wrong sha256 was deleted');
  });

  it('refuses a stream without the secret, of a bad or unknown clip, or of another protocol, with a sentence', async () => {
    const ask = (p: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port,
          path: p,
          headers: { Connection: 'Upgrade', Upgrade: 'twinrec-segments/1', ...headers },
          agent: false,
        });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve({ status: res.statusCode!, body: '' });
        });
        req.on('error', reject);
        req.end();
      });
    const auth = { Authorization: `Bearer ${SECRET}` };
    let r = await ask(`/twinrec/v1/clips/${clip.id}/stream`, { Authorization: 'Bearer not the secret of the group' });
    assert.equal(r.status, 401);
    assert.match(JSON.parse(r.body).error, /shared secret/);
    r = await ask('/twinrec/v1/clips/..%2F..%2Fetc/stream', auth);
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /not a clip id/);
    r = await ask('/twinrec/v1/clips/nope/stream', auth);
    assert.equal(r.status, 404);
    assert.match(JSON.parse(r.body).error, /no clip nope/);
    r = await ask(`/twinrec/v1/clips/${clip.id}/stream`, { ...auth, Upgrade: 'websocket' });
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /twinrec-segments\/1/);
    r = await ask(`/twinrec/v1/clips/${clip.id}/segments/0`, auth);
    assert.equal(r.status, 404);
    r = await ask(`/twinrec/v1/clips/${clip.id}/stream`, auth);
    assert.equal(r.status, 101);
    assert.equal(served.size, 0, 'nothing served to a refused stream');
  });

  it('answers a bad plan, a segment it does not have and one outside its storage with an error frame, and ends the stream', async () => {
    const raw = async (clipId: string, planLine: string) => {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      s.on('data', (d) => (text += d.toString('latin1')));
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      s.write(
        `GET /twinrec/v1/clips/${clipId}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\nConnection: Upgrade\r\nUpgrade: twinrec-segments/1\r\n\r\n${planLine}\n`,
      );
      await closed;
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      return JSON.parse(body.split('\n')[0]) as { i: number; status: number; error: string };
    };
    let f = await raw(clip.id, 'not json');
    assert.equal(f.status, 400);
    assert.match(f.error, /bad plan: the plan is not JSON/);
    f = await raw(clip.id, JSON.stringify({ segments: [[-1, 0, null]] }));
    assert.match(f.error, /segment index -1 is not a whole number/);
    f = await raw(clip.id, JSON.stringify({ window: 10, segments: [[0, 0, null]] }));
    assert.match(f.error, /window 10/);
    f = await raw(clip.id, JSON.stringify({ segments: [[0, 0, '../etc/passwd']] }));
    assert.match(f.error, /not 64 hex digits/);
    f = await raw(clip.id, JSON.stringify({ segments: [[99, 0, null]] }));
    assert.deepEqual([f.i, f.status], [99, 404]);
    assert.match(f.error, /has no segment 99/);
    f = await raw('evil', JSON.stringify({ segments: [[0, 0, null]] }));
    assert.deepEqual([f.i, f.status], [0, 403]);
    assert.match(f.error, /outside the storage root/);
    assert.equal(served.size, 0);
    assert.equal(fs.readFileSync(path.join(tmp, 'outside.ts'), 'utf8'), 'not yours');
  });

  it('drops a copier that acknowledges more than it was sent, and goes on serving others', async () => {
    const s = net.connect(port, '127.0.0.1');
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.on('data', () => undefined);
    s.write(
      `GET /twinrec/v1/clips/${clip.id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\nConnection: Upgrade\r\nUpgrade: twinrec-segments/1\r\n\r\n${JSON.stringify({ segments: [[3, 0, null]] })}\n999999999\n`,
    );
    await closed;
    const done = await copy();
    assert.equal(done.length, data.length);
  });

  it('keeps what came when the peer goes away mid-stream, and a later copy asks only for the rest', async () => {
    const limiter = new RateLimiter(4 << 20, { burstBytes: 256 << 10 });
    const first = copy(clip.segments, { limiter });
    // once segment 5 (6 MiB, more than the window the peer may send ahead) is coming, the peer goes away
    const part = path.join(dest, clip.dir, `${clip.segments[5].file}.part`);
    const partBytes = () => fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0;
    for (let i = 0; i < 1000 && partBytes() < 1 << 20; i++) await sleep(10);
    await api.close();
    await assert.rejects(first, (err: Error & { code?: string }) => err.code === 'ETRUNC' || err.code === 'ENET');
    const sentBefore = [...served.values()].reduce((x, y) => x + y, 0);
    assert.ok(sentBefore < data.reduce((n, d) => n + d.length, 0), 'the copy was cut short');
    // every segment is there whole, or its part holds a prefix of it (what came before the break), or nothing
    for (let i = 0; i < data.length; i++) {
      const f = path.join(dest, clip.dir, clip.segments[i].file);
      if (fs.existsSync(f)) assert.equal(sha(fs.readFileSync(f)), clip.segments[i].sha256, `segment ${i}`);
      else if (fs.existsSync(`${f}.part`)) {
        const p = fs.readFileSync(`${f}.part`);
        assert.deepEqual(p, data[i].subarray(0, p.length), `the part of segment ${i} is a prefix of it`);
      }
    }
    await startApi(port);
    await copy();
    for (let i = 0; i < data.length; i++) assert.equal(sha(onDisk(i)), clip.segments[i].sha256, `segment ${i}`);
    // sent twice: at most what the peer had handed to its socket and not yet delivered as it went away, within the window
    const twice = [...served.values()].reduce((x, y) => x + y, 0) - data.reduce((n, d) => n + d.length, 0);
    assert.ok(twice >= 0 && twice <= STREAM_WINDOW, `${twice} bytes sent twice`);
    for (let i = 0; i < 5; i++) assert.equal(served.get(i), data[i].length, `segment ${i}, copied before the break, was not asked again`);
  });

  it('stops on the abort signal mid-stream (EABORT), keeping the part', async () => {
    const ac = new AbortController();
    const limiter = new RateLimiter(4 << 20, { burstBytes: 256 << 10 });
    const p = copy(clip.segments, { limiter, signal: ac.signal });
    // in the middle of segment 5 (more than a window)
    const part = path.join(dest, clip.dir, `${clip.segments[5].file}.part`);
    for (let i = 0; i < 1000 && !((fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0) > 0); i++) await sleep(10);
    ac.abort();
    await assert.rejects(p, (err: Error & { code?: string }) => err.code === 'EABORT');
    const kept = fs.statSync(part).size;
    assert.ok(kept > 0 && kept < data[5].length, `the part holds ${kept} bytes`);
    assert.deepEqual(data[5].subarray(0, kept), fs.readFileSync(part), 'a prefix of the segment');
  });

  it('refuses a segment whose bytes do not match the catalogue (a lying peer), deleting the copy', async () => {
    // the peer's file for segment 2 changed after its catalogue entry was made
    fs.writeFileSync(path.join(root, clip.dir, clip.segments[2].file), crypto.randomBytes(data[2].length));
    await assert.rejects(copy(), /segment 2 of clip "clip c1".*sha256/);
    assert.equal(fs.existsSync(path.join(dest, clip.dir, clip.segments[2].file)), false);
    assert.equal(fs.existsSync(path.join(dest, clip.dir, `${clip.segments[2].file}.part`)), false);
  });

  it('copies by GET from a peer that does not stream (an older version)', async () => {
    // the older API: no upgrade handler
    const server = (api as unknown as { server: http.Server }).server;
    server.removeAllListeners('upgrade');
    const done = await copy();
    assert.equal(done.length, data.length);
    for (let i = 0; i < data.length; i++) assert.equal(sha(onDisk(i)), clip.segments[i].sha256, `segment ${i}`);
    assert.equal(client.streamStats.segments, 0);
  });

  it('times a peer that goes silent from when the copier waits, also after the stream sat idle longer than the timeout', async () => {
    // a peer that opens the stream and then says nothing
    const silent = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: twinrec-segments/1\r\n\r\n'));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const sp = (silent.address() as net.AddressInfo).port;
    try {
      const c = await StreamClient.open({
        host: '127.0.0.1',
        port: sp,
        hostHeader: `127.0.0.1:${sp}`,
        path: '/twinrec/v1/clips/c1/stream',
        secret: SECRET,
        plan: [
          [0, 0, null],
          [1, 0, null],
        ],
        timeoutMs: 200,
      });
      await sleep(500); // idle: the copier is busy elsewhere; not a fault of the peer
      assert.equal(c.failure, null);
      const t0 = Date.now();
      await assert.rejects(c.take(0), (err: Error & { code?: string }) => err.code === 'ETIMEOUT' && /silent for 0\.2 s/.test(err.message));
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      silent.close();
    }
  });

  it('reads a plan and refuses one that names too much', () => {
    assert.deepEqual(parsePlan(JSON.stringify({ segments: [[1, 2, 'A'.repeat(64)]] })), { window: STREAM_WINDOW, segments: [[1, 2, 'a'.repeat(64)]] });
    assert.throws(() => parsePlan(JSON.stringify({ segments: Array.from({ length: 100001 }, (_, i) => [i, 0, null]) })), /at most 100000/);
    assert.throws(() => parsePlan(JSON.stringify({ segments: [[1, 2]] })), /not \[index, from, sha256\]/);
    assert.throws(() => parsePlan('{"segments": {}}'), /no list of segments/);
  });
});
