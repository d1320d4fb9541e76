/**
 * The peer storage API (lib/peer/api.ts) and its client (lib/peer/client.ts)
 * over real HTTP(S) on 127.0.0.1, with a real catalogue and real segment files.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Catalogue } from '../../../lib/store/catalogue';
import { Clip, Segment } from '../../../lib/model/clip';
import { validateServerState } from '../../../lib/link/schemas';
import { FIRST_REQUEST_MS, MAX_PER_ADDRESS, PeerApiServer } from '../../../lib/peer/api';
import { parseRange } from '../../../lib/peer/api-files';
import { PeerClient } from '../../../lib/peer/client';
import { PeerError } from '../../../lib/peer/peer-error';
import { RateLimiter } from '../../../lib/peer/rate-limiter';
import { resolveIdentity } from '../../../lib/link/server-identity';
import { ServerLink } from '../../../lib/link/server-link';
import { writeSidecar } from '../../../lib/store/clip-files';
import { makeTlsFiles } from '../../support/mosquitto';
import { until } from '../../support/nr';

const SECRET = 'correct horse battery staple';
const T0 = Date.UTC(2024, 10, 22, 20, 0, 0);

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

function mkClip(id: string, p: Partial<Clip> = {}): Clip {
  return {
    id,
    name: `clip ${id}`,
    dir: `main-1/ch01/2024-11-22/clip ${id}_200000`,
    serverId: 'main-1',
    group: 'studio',
    channel: 1,
    channelName: 'Channel 1',
    lineId: `line-${id}`,
    title: `Clip ${id}`,
    attributes: {},
    backup: 'off',
    frameRate: '25',
    tcIn: '10:00:00:00',
    tcOut: null,
    startedAt: T0,
    stoppedAt: T0 + 60000,
    frames: 1500,
    durationMs: 60000,
    state: 'closed',
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

function mkSeg(index: number, data: Buffer, p: Partial<Segment> = {}): Segment {
  return {
    index,
    file: `seg_${String(index).padStart(5, '0')}.ts`,
    run: 1,
    startSec: index * 6,
    endSec: index * 6 + 6,
    frames: 150,
    bytes: data.length,
    sha256: sha(data),
    complete: true,
    wallStart: T0 + index * 6000,
    ...p,
  };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: () => { error?: string } & Record<string, unknown>;
}

/** A raw request (the path goes on the wire as written, nothing normalised). */
function call(port: number, p: string, o: { method?: string; secret?: string | null; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.secret !== null) headers.Authorization = `Bearer ${o.secret ?? SECRET}`;
    const req = http.request({ host: '127.0.0.1', port, path: p, method: o.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function assertSentence(a: Answer, status: number, re?: RegExp): string {
  assert.equal(a.status, status, a.body.toString());
  assert.match(String(a.headers['content-type']), /application\/json/);
  const e = a.json().error;
  assert.equal(typeof e, 'string');
  assert.ok((e as string).length > 10, `a sentence, not "${e}"`);
  if (re) assert.match(e as string, re);
  return e as string;
}

describe('peer storage API (lib, real HTTP)', function () {
  this.timeout(30000);
  let tmp: string;
  let root: string;
  let cat: Catalogue;
  let api: PeerApiServer;
  let port: number;
  let url: string;
  const data: Buffer[] = [crypto.randomBytes(3000), crypto.randomBytes(4096), crypto.randomBytes(1500)];
  const growing = crypto.randomBytes(2222);
  let c1: Clip;

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-peer-'));
    root = path.join(tmp, 'store');
    fs.mkdirSync(root);
    cat = new Catalogue(path.join(tmp, 'cat.sqlite'));
    c1 = mkClip('c1', { segments: data.map((d, i) => mkSeg(i, d)) });
    c1.segments.push(mkSeg(3, growing, { complete: false, sha256: null, bytes: 0 }));
    c1.segments[1].file = 'seg_00001.mkv';
    const clips = [
      c1,
      mkClip('c2', { startedAt: T0 + 120000, stoppedAt: null, state: 'recording', dir: 'main-1/ch01/2024-11-22/c2' }),
      mkClip('c0', { startedAt: T0 - 120000, stoppedAt: T0 - 60000, dir: 'main-1/ch01/2024-11-22/c0' }),
      mkClip('c3', { channel: 2, dir: 'main-1/ch02/2024-11-22/c3' }),
      mkClip('f1', { serverId: 'main-2', dir: 'main-2/ch01/2024-11-22/f1' }),
      mkClip('evil1', { channel: 9, dir: '../../etc', segments: [mkSeg(0, Buffer.from('x'), { file: 'passwd' })] }),
      mkClip('evil2', { channel: 9, dir: 'main-1/ch09/x', segments: [mkSeg(0, Buffer.from('x'), { file: 'link.ts' })] }),
      mkClip('evil3', { channel: 9, dir: 'main-1/ch09/y', segments: [mkSeg(0, Buffer.from('x'), { file: '../../../../outside.ts' })] }),
      mkClip('evil4', { channel: 9, dir: 'main-1/ch09/z', segments: [mkSeg(0, Buffer.from('x'), { file: 'seg.ts' })] }),
    ];
    for (const c of clips) {
      cat.putClip(c);
      for (const s of c.segments) cat.putSegment(c.id, s);
    }
    const dir = path.join(root, c1.dir);
    fs.mkdirSync(dir, { recursive: true });
    c1.segments.forEach((s, i) => fs.writeFileSync(path.join(dir, s.file), i < 3 ? data[i] : growing));
    writeSidecar(root, c1);
    // outside the root: a secret file, reached by a symlinked segment and by a symlinked folder
    fs.writeFileSync(path.join(tmp, 'outside.ts'), 'not yours');
    fs.mkdirSync(path.join(root, 'main-1/ch09/x'), { recursive: true });
    fs.symlinkSync(path.join(tmp, 'outside.ts'), path.join(root, 'main-1/ch09/x/link.ts'));
    fs.mkdirSync(path.join(tmp, 'elsewhere'));
    fs.writeFileSync(path.join(tmp, 'elsewhere', 'seg.ts'), 'not yours either');
    fs.symlinkSync(path.join(tmp, 'elsewhere'), path.join(root, 'main-1/ch09/z'));
    cat.addEvent({ ts: T0 + 10, serverId: 'main-1', channel: 1, kind: 'recording', lineId: 'l1', clipId: 'c1', data: { a: 1 } });
    cat.addEvent({ ts: T0 + 60000, serverId: 'main-1', channel: 1, kind: 'stopped', lineId: 'l1', clipId: 'c1', data: null });
    cat.addEvent({ ts: T0 + 20, serverId: 'main-1', channel: 2, kind: 'recording', lineId: 'l3', clipId: 'c3', data: null });
    cat.addEvent({ ts: T0 + 30, serverId: 'main-2', channel: 1, kind: 'failover', lineId: null, clipId: null, data: null });
    api = new PeerApiServer({ host: '127.0.0.1', port: 0, secret: SECRET, storageRoot: root, catalogue: cat, serverId: 'main-1' });
    ({ port, url } = await api.start());
  });

  afterEach(async () => {
    await api.close();
    cat.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('server', () => {
    it('refuses a secret shorter than 16 characters, with a sentence', () => {
      assert.throws(
        () => new PeerApiServer({ host: '127.0.0.1', port: 0, secret: 'short', storageRoot: root, catalogue: cat, serverId: 'main-1' }),
        /at least 16 characters/,
      );
    });

    it('answers 401 with WWW-Authenticate to a request without the secret or with a wrong one, and serves nothing', async () => {
      for (const secret of [null, 'wrong secret of enough length', `${SECRET}x`, '']) {
        const a = await call(port, '/twinrec/v1/clips/c1/segments/0', { secret });
        assertSentence(a, 401, /secret/);
        assert.match(String(a.headers['www-authenticate']), /^Bearer/);
      }
      const basic = await call(port, '/twinrec/v1/info', {
        secret: null,
        headers: { Authorization: `Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}` },
      });
      assert.equal(basic.status, 401);
      const ok = await call(port, '/twinrec/v1/info');
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.json(), { server: 'main-1', api: 1 });
      assert.equal(url, `http://127.0.0.1:${port}`);
    });

    it('allows only GET and HEAD (405 with Allow), and says 404 for an unknown path', async () => {
      const a = await call(port, '/twinrec/v1/info', { method: 'DELETE' });
      assertSentence(a, 405, /read-only/);
      assert.equal(a.headers.allow, 'GET, HEAD');
      assertSentence(await call(port, '/twinrec/v1/nothing'), 404);
      assertSentence(await call(port, '/'), 404);
      assertSentence(await call(port, '/twinrec/v1/clips/c1/whatever'), 404);
    });

    it('lists the clips of a channel overlapping [from, to), sorted by start, a recording clip being open-ended', async () => {
      const ids = async (q: string) => ((await call(port, `/twinrec/v1/clips?${q}`)).json().clips as Clip[]).map((c) => c.id);
      assert.deepEqual(await ids('channel=1'), ['c0', 'c1', 'c2']);
      assert.deepEqual(await ids(`channel=1&from=${T0}&to=${T0 + 60000}`), ['c1']);
      assert.deepEqual(await ids(`channel=1&from=${T0 - 60000}&to=${T0 + 1}`), ['c1'], 'c0 ended at from: [from, to) excludes it');
      assert.deepEqual(await ids(`channel=1&from=${T0 + 59999}&to=${T0 + 120001}`), ['c1', 'c2']);
      assert.deepEqual(await ids(`channel=1&from=${T0 + 10 ** 9}&to=${T0 + 10 ** 9 + 1}`), ['c2'], 'still recording');
      assert.deepEqual(await ids('channel=2'), ['c3']);
      assert.deepEqual(await ids('channel=1&server=main-2'), ['f1'], 'clips recorded in place of another server under its name');
      assert.deepEqual(await ids('channel=5'), []);
      const list = (await call(port, '/twinrec/v1/clips?channel=1')).json().clips as Clip[];
      const one = list.find((c) => c.id === 'c1')!;
      assert.equal(one.segments.length, 4);
      assert.equal(one.segments[0].sha256, sha(data[0]));
    });

    it('answers a bad query parameter with 400 and a sentence', async () => {
      const bad: [string, RegExp][] = [
        ['', /channel is missing/],
        ['channel=0', /out of range/],
        ['channel=1000', /out of range/],
        ['channel=abc', /not a channel number/],
        ['channel=1.5', /not a channel number/],
        ['channel=-1', /not a channel number/],
        ['channel=1&channel=2', /given 2 times/],
        ['channel=1&from=-5', /not a time/],
        ['channel=1&from=1e9', /not a time/],
        ['channel=1&to=99999999999999999', /not a time/],
        ['channel=1&from=10&to=5', /before from/],
        ['channel=1&server=..%2Fetc', /not a server name/],
        ['channel=1&server=a%20b', /not a server name/],
        ['channel=1&chanel=2', /unknown query parameter "chanel"/],
      ];
      for (const [q, re] of bad) assertSentence(await call(port, `/twinrec/v1/clips?${q}`), 400, re);
      assertSentence(await call(port, '/twinrec/v1/events?channel=x'), 400, /channel/);
      assertSentence(await call(port, '/twinrec/v1/clips/c1?x=1'), 400, /unknown query parameter/);
    });

    it('gives one clip (404 for an unknown one, 400 for a malformed id) and its sidecar', async () => {
      const a = await call(port, '/twinrec/v1/clips/c1');
      assert.equal(a.status, 200);
      const c = a.json() as unknown as Clip;
      assert.equal(c.id, 'c1');
      assert.equal(c.segments.length, 4);
      assertSentence(await call(port, '/twinrec/v1/clips/nope'), 404, /no clip nope/);
      assertSentence(await call(port, '/twinrec/v1/clips/-x'), 400, /not a clip id/);
      assertSentence(await call(port, `/twinrec/v1/clips/${'a'.repeat(65)}`), 400, /not a clip id/);
      const sc = await call(port, '/twinrec/v1/clips/c1/sidecar');
      assert.equal(sc.status, 200);
      assert.deepEqual(sc.body, fs.readFileSync(path.join(root, c1.dir, 'clip.json')));
      assert.equal((sc.json() as { id: string }).id, 'c1');
      assertSentence(await call(port, '/twinrec/v1/clips/c2/sidecar'), 404, /not on storage/);
    });

    it('serves a segment whole, with its type, length, sha256, ETag and completeness', async () => {
      const a = await call(port, '/twinrec/v1/clips/c1/segments/0');
      assert.equal(a.status, 200);
      assert.deepEqual(a.body, data[0]);
      assert.equal(a.headers['content-type'], 'video/mp2t');
      assert.equal(a.headers['content-length'], String(data[0].length));
      assert.equal(a.headers['accept-ranges'], 'bytes');
      assert.equal(a.headers['x-sha256'], sha(data[0]));
      assert.equal(a.headers.etag, `"${sha(data[0])}"`);
      assert.equal(a.headers['x-segment-complete'], 'true');
      const mkv = await call(port, '/twinrec/v1/clips/c1/segments/1');
      assert.equal(mkv.headers['content-type'], 'video/x-matroska');
      assert.deepEqual(mkv.body, data[1]);
      const open = await call(port, '/twinrec/v1/clips/c1/segments/3');
      assert.equal(open.status, 200);
      assert.equal(open.headers['x-segment-complete'], 'false');
      assert.equal(open.headers['x-sha256'], undefined);
      assert.deepEqual(open.body, growing, 'a segment still written is served as it is now');
      assertSentence(await call(port, '/twinrec/v1/clips/c1/segments/9'), 404, /no segment 9/);
      assertSentence(await call(port, '/twinrec/v1/clips/c1/segments/x1'), 400, /not a whole number/);
      assertSentence(await call(port, '/twinrec/v1/clips/nope/segments/0'), 404);
    });

    it('serves byte ranges a-b, a- and -n with 206 and Content-Range, and 416 for what cannot be served', async () => {
      const d = data[1];
      const n = d.length;
      const r1 = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=100-199' } });
      assert.equal(r1.status, 206);
      assert.deepEqual(r1.body, d.subarray(100, 200));
      assert.equal(r1.headers['content-range'], `bytes 100-199/${n}`);
      assert.equal(r1.headers['content-length'], '100');
      assert.equal(r1.headers['x-sha256'], sha(d), 'the sha256 of the whole segment');
      const r2 = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=4000-' } });
      assert.equal(r2.status, 206);
      assert.deepEqual(r2.body, d.subarray(4000));
      assert.equal(r2.headers['content-range'], `bytes 4000-${n - 1}/${n}`);
      const r3 = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=-10' } });
      assert.equal(r3.status, 206);
      assert.deepEqual(r3.body, d.subarray(n - 10));
      const r4 = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: `bytes=10-${n + 500}` } });
      assert.equal(r4.status, 206, 'an end past the file is clipped');
      assert.deepEqual(r4.body, d.subarray(10));
      for (const bad of [`bytes=${n}-`, 'bytes=50-10', 'bytes=-0', 'bytes=abc', 'lines=1-2', 'bytes=-', 'bytes=1-2-3']) {
        const r = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: bad } });
        assertSentence(r, 416);
        assert.equal(r.headers['content-range'], `bytes */${n}`, bad);
      }
      const multi = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=0-9,20-29' } });
      assert.equal(multi.status, 200, 'several ranges: the whole segment');
      assert.deepEqual(multi.body, d);
      // If-Range: the range only when the client holds a prefix of this very file
      const same = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=10-', 'If-Range': `"${sha(d)}"` } });
      assert.equal(same.status, 206);
      const other = await call(port, '/twinrec/v1/clips/c1/segments/1', { headers: { Range: 'bytes=10-', 'If-Range': `"${sha(data[0])}"` } });
      assert.equal(other.status, 200);
      assert.deepEqual(other.body, d);
    });

    it('answers HEAD with the headers of GET and no body', async () => {
      const a = await call(port, '/twinrec/v1/clips/c1/segments/2', { method: 'HEAD' });
      assert.equal(a.status, 200);
      assert.equal(a.body.length, 0);
      assert.equal(a.headers['content-length'], String(data[2].length));
      assert.equal(a.headers['x-sha256'], sha(data[2]));
      const r = await call(port, '/twinrec/v1/clips/c1/segments/2', { method: 'HEAD', headers: { Range: 'bytes=0-99' } });
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-length'], '100');
      assert.equal(r.body.length, 0);
    });

    it('refuses every way out of the storage root: ids with dots, encoded slashes, a tampered catalogue, symlinks', async () => {
      for (const p of [
        '/twinrec/v1/clips/..%2F..',
        '/twinrec/v1/clips/..%2F..%2Fetc%2Fpasswd/sidecar',
        '/twinrec/v1/clips/../x',
        '/twinrec/v1/clips/..',
        '/twinrec/v1/clips/%2e%2e/segments/0',
        '/twinrec/v1/clips/c1%2F..%2F..',
      ]) {
        const a = await call(port, p);
        assert.ok(a.status === 400 || a.status === 404, `${p}: ${a.status}`);
        assert.equal(typeof a.json().error, 'string');
      }
      assertSentence(await call(port, '/twinrec/v1/clips/%E0%A4%A'), 400, /percent-encoding/);
      assertSentence(await call(port, '/twinrec/v1/clips/evil1/segments/0'), 403, /outside the storage root/);
      assertSentence(await call(port, '/twinrec/v1/clips/evil1/sidecar'), 403, /outside the storage root/);
      assertSentence(await call(port, '/twinrec/v1/clips/evil3/segments/0'), 403, /outside the storage root/);
      const link = await call(port, '/twinrec/v1/clips/evil2/segments/0');
      assertSentence(link, 403, /leads outside the storage root/);
      assert.ok(!link.body.includes('not yours'));
      assertSentence(await call(port, '/twinrec/v1/clips/evil4/segments/0'), 403, /leads outside the storage root/);
    });

    it('refuses a segment that is a FIFO or a folder (403) at once: the open does not wait for a writer to the FIFO', async () => {
      const dir = path.join(root, 'main-1/ch09/f');
      fs.mkdirSync(path.join(dir, 'folder.ts'), { recursive: true });
      execFileSync('mkfifo', [path.join(dir, 'pipe.ts')]);
      for (const [id, file] of [
        ['fifo1', 'pipe.ts'],
        ['dir1', 'folder.ts'],
      ]) {
        const c = mkClip(id, { channel: 9, dir: 'main-1/ch09/f', segments: [mkSeg(0, Buffer.from('x'), { file })] });
        cat.putClip(c);
        cat.putSegment(c.id, c.segments[0]);
      }
      assertSentence(await call(port, '/twinrec/v1/clips/fifo1/segments/0'), 403, /not a plain file/);
      assertSentence(await call(port, '/twinrec/v1/clips/dir1/segments/0'), 403, /not a plain file/);
      assert.equal((await call(port, '/twinrec/v1/info')).status, 200, 'the server answers on');
    });

    it('lists events by server, channel (optional) and [from, to)', async () => {
      const kinds = async (q: string) =>
        ((await call(port, `/twinrec/v1/events?${q}`)).json().events as { kind: string; channel: number }[]).map((e) => `${e.kind}/${e.channel}`);
      assert.deepEqual(await kinds(''), ['recording/1', 'stopped/1', 'recording/2']);
      assert.deepEqual(await kinds('channel=1'), ['recording/1', 'stopped/1']);
      assert.deepEqual(await kinds(`channel=1&from=${T0}&to=${T0 + 60000}`), ['recording/1'], 'to is not included');
      assert.deepEqual(await kinds('server=main-2'), ['failover/1']);
      const ev = (await call(port, '/twinrec/v1/events?channel=1')).json().events as { data: unknown; clipId: string }[];
      assert.deepEqual(ev[0].data, { a: 1 });
      assert.equal(ev[0].clipId, 'c1');
    });

    it('survives clients that go away mid-stream, and closes kept-alive connections on close', async () => {
      const big = crypto.randomBytes(8 * 1024 * 1024);
      fs.writeFileSync(path.join(root, c1.dir, 'seg_00000.ts'), big);
      for (let i = 0; i < 5; i++) {
        await new Promise<void>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/twinrec/v1/clips/c1/segments/0', headers: { Authorization: `Bearer ${SECRET}` } }, (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', () => undefined);
        });
      }
      const ok = await call(port, '/twinrec/v1/info');
      assert.equal(ok.status, 200, 'still serving');
      // a kept-alive connection does not hold close() up
      const agent = new http.Agent({ keepAlive: true });
      await new Promise<void>((resolve) =>
        http.get({ host: '127.0.0.1', port, path: '/twinrec/v1/info', agent, headers: { Authorization: `Bearer ${SECRET}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        }),
      );
      const t = Date.now();
      await api.close();
      assert.ok(Date.now() - t < 2000, 'close did not wait for the idle connection');
      agent.destroy();
      await assert.rejects(call(port, '/twinrec/v1/info'), /ECONNREFUSED/);
    });

    it('idle and slow sockets cannot block it: one address holds at most a few connections, silent ones are closed', async () => {
      // 300 connections from another address (127.0.0.2) that never send a byte
      const idle: net.Socket[] = [];
      let closedByServer = 0;
      await Promise.all(
        Array.from(
          { length: 300 },
          () =>
            new Promise<void>((resolve) => {
              const sock = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () => resolve());
              sock.on('error', () => resolve());
              sock.on('close', () => {
                closedByServer++;
                resolve();
              });
              idle.push(sock);
            }),
        ),
      );
      try {
        // the API still answers another host at once
        const ok = await call(port, '/twinrec/v1/info');
        assert.equal(ok.status, 200, 'still serving');
        // every silent socket is closed by the server (those over the per-address limit at once, the rest after FIRST_REQUEST_MS without a request)
        await until(() => closedByServer === 300, 'every idle socket closed by the server', FIRST_REQUEST_MS + 10000);
        assert.ok(300 - MAX_PER_ADDRESS > 0);
        // headers dripped a byte at a time never finish a request: the connection is closed, not kept
        const slow = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.3' });
        slow.on('error', () => undefined);
        const text = 'GET /twinrec/v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ';
        let i = 0;
        const drip = setInterval(() => slow.write(text[i++ % text.length]), 200);
        await new Promise<void>((resolve) => slow.on('close', () => resolve()));
        clearInterval(drip);
      } finally {
        for (const sock of idle) sock.destroy();
      }
    });

    it('says in a sentence when its port is taken', async () => {
      const other = new PeerApiServer({ host: '127.0.0.1', port, secret: SECRET, storageRoot: root, catalogue: cat, serverId: 'main-1' });
      await assert.rejects(other.start(), /cannot listen on 127\.0\.0\.1:\d+: port \d+ on 127\.0\.0\.1 is already in use/);
      await other.close();
    });
  });

  describe('client', () => {
    let client: PeerClient;
    beforeEach(() => {
      client = new PeerClient({ url, secret: SECRET, timeoutMs: 5000 });
    });
    afterEach(() => client.close());

    it('reads info, clips, a clip, a sidecar and events', async () => {
      assert.deepEqual(await client.info(), { server: 'main-1', api: 1 });
      assert.deepEqual(
        (await client.clips({ channel: 1, from: T0, to: T0 + 60000 })).map((c) => c.id),
        ['c1'],
      );
      assert.deepEqual(
        (await client.clips({ server: 'main-2', channel: 1 })).map((c) => c.id),
        ['f1'],
      );
      assert.equal((await client.clip('c1')).segments.length, 4);
      assert.equal(JSON.parse((await client.sidecar('c1')).toString()).id, 'c1');
      assert.equal((await client.events({ channel: 2 })).length, 1);
      await assert.rejects(client.clip('nope'), (e: PeerError) => e.code === 'ENOENT' && e.status === 404);
      await assert.rejects(client.clips({ channel: 0 }), (e: PeerError) => e.code === 'EINVAL' && /out of range/.test(e.message));
    });

    it('fetches a segment, verifies its sha256 and renames it into place', async () => {
      const dest = path.join(tmp, 'local', 'a', 'seg_00000.ts');
      let seen = 0;
      const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(data[0]), expectedBytes: data[0].length, onBytes: (n) => (seen += n) });
      assert.deepEqual(r, { bytes: data[0].length, sha256: sha(data[0]), resumedFrom: 0 });
      assert.deepEqual(fs.readFileSync(dest), data[0]);
      assert.equal(seen, data[0].length);
      assert.ok(!fs.existsSync(`${dest}.part`));
      // a segment still being written: no sha256 anywhere, taken as it is
      const open = await client.fetchSegment('c1', 3, path.join(tmp, 'local', 'open.ts'), {});
      assert.equal(open.sha256, sha(growing));
    });

    it('verifies a part that already holds the whole segment without fetching it again', async () => {
      const dest = path.join(tmp, 'local', 'whole.ts');
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.writeFileSync(`${dest}.part`, data[2]);
      const r = await client.fetchSegment('c1', 2, dest, { expectedSha256: sha(data[2]) });
      assert.deepEqual(r, { bytes: data[2].length, sha256: sha(data[2]), resumedFrom: data[2].length });
      assert.deepEqual(fs.readFileSync(dest), data[2]);
    });

    it('refuses a segment whose sha256 is not the expected one (EHASH), deleting the copy', async () => {
      const dest = path.join(tmp, 'local', 'x.ts');
      await assert.rejects(
        client.fetchSegment('c1', 0, dest, { expectedSha256: sha(data[1]) }),
        (e: PeerError) => e.code === 'EHASH' && /not .* as the catalogue says/.test(e.message),
      );
      assert.ok(!fs.existsSync(dest));
      assert.ok(!fs.existsSync(`${dest}.part`));
    });

    it('says EAUTH for a wrong secret, ENOENT for a missing segment, ENET for a peer that is not there', async () => {
      const wrong = new PeerClient({ url, secret: 'a wrong secret, long enough' });
      await assert.rejects(
        wrong.fetchSegment('c1', 0, path.join(tmp, 'w.ts')),
        (e: PeerError) => e instanceof PeerError && e.code === 'EAUTH' && e.status === 401 && /refused the shared secret/.test(e.message),
      );
      await assert.rejects(wrong.info(), (e: PeerError) => e.code === 'EAUTH');
      wrong.close();
      await assert.rejects(client.fetchSegment('c1', 42, path.join(tmp, 'n.ts')), (e: PeerError) => e.code === 'ENOENT');
      await assert.rejects(client.fetchSegment('evil2', 0, path.join(tmp, 'n.ts')), (e: PeerError) => e.code === 'EREFUSED');
      const free = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const gone = new PeerClient({ url: `http://127.0.0.1:${free}`, secret: SECRET });
      await assert.rejects(gone.fetchSegment('c1', 0, path.join(tmp, 'g.ts')), (e: PeerError) => e.code === 'ENET');
      gone.close();
      assert.throws(() => new PeerClient({ url: 'ftp://x:1', secret: SECRET }), /http:\/\/host:port/);
      assert.throws(() => new PeerClient({ url, secret: 'short' }), /at least 16/);
    });

    it('resumes a transfer cut off mid-segment with a Range from the part size, and the result is whole', async () => {
      // a proxy in front of the API that cuts the first segment transfer after 1500 bytes
      const ranges: (string | undefined)[] = [];
      let cut = true;
      const proxy = http.createServer((req, res) => {
        ranges.push(req.headers.range);
        const up = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
          res.writeHead(ur.statusCode!, ur.headers);
          if (!cut) {
            ur.pipe(res);
            return;
          }
          cut = false;
          let sent = 0;
          ur.on('data', (c: Buffer) => {
            if (sent >= 1500) return;
            const part = c.subarray(0, 1500 - sent);
            sent += part.length;
            // what was sent reaches the client before the connection breaks
            res.write(part, () => {
              if (sent >= 1500) setTimeout(() => res.socket?.destroy(), 200);
            });
          });
        });
        up.end();
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
      const via = new PeerClient({ url: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`, secret: SECRET });
      try {
        const dest = path.join(tmp, 'local', 'resumed.ts');
        const d = data[1];
        await assert.rejects(
          via.fetchSegment('c1', 1, dest, { expectedSha256: sha(d) }),
          (e: PeerError) => e.code === 'ETRUNC' && /closed after \d+ of 4096 bytes/.test(e.message),
        );
        const have = fs.statSync(`${dest}.part`).size;
        assert.ok(have > 0 && have <= 1500, `the part holds what came (${have} bytes)`);
        assert.ok(!fs.existsSync(dest));
        const limiter = new RateLimiter(0);
        const r = await via.fetchSegment('c1', 1, dest, { expectedSha256: sha(d), limiter });
        assert.deepEqual(ranges, [undefined, `bytes=${have}-`], 'the second request asked for the rest from the part size');
        assert.deepEqual(r, { bytes: d.length, sha256: sha(d), resumedFrom: have });
        assert.deepEqual(fs.readFileSync(dest), d);
        assert.equal(limiter.taken, d.length - have, 'only the rest went through the limiter');
        assert.ok(!fs.existsSync(`${dest}.part`));
      } finally {
        via.close();
        proxy.closeAllConnections();
        await new Promise<void>((r) => proxy.close(() => r()));
      }
    });

    it('refuses a peer that lies about the sha256 (EHASH) and keeps nothing of it', async () => {
      const body = crypto.randomBytes(5000);
      const liar = http.createServer((_req, res) => {
        res.writeHead(200, { 'Content-Length': String(body.length), 'X-Sha256': sha(crypto.randomBytes(5000)), 'Content-Type': 'video/mp2t' });
        res.end(body);
      });
      await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
      const c = new PeerClient({ url: `http://127.0.0.1:${(liar.address() as net.AddressInfo).port}`, secret: SECRET });
      try {
        const dest = path.join(tmp, 'local', 'lie.ts');
        await assert.rejects(c.fetchSegment('c1', 0, dest, {}), (e: PeerError) => e.code === 'EHASH' && /as the peer announced/.test(e.message));
        assert.ok(!fs.existsSync(dest));
        assert.ok(!fs.existsSync(`${dest}.part`));
      } finally {
        c.close();
        liar.closeAllConnections();
        await new Promise<void>((r) => liar.close(() => r()));
      }
    });

    it('stops a transfer when its signal is aborted, keeping the part for later (EABORT)', async () => {
      const ac = new AbortController();
      const dest = path.join(tmp, 'local', 'abort.ts');
      const limiter = {
        async take() {
          ac.abort();
        },
      };
      await assert.rejects(client.fetchSegment('c1', 1, dest, { limiter, signal: ac.signal }), (e: PeerError) => e.code === 'EABORT');
      assert.ok(!fs.existsSync(dest));
      assert.ok(fs.existsSync(`${dest}.part`), 'the part stays for a later resume');
    });
  });

  describe('https', () => {
    it('serves over TLS with a certificate, and a client that trusts the CA fetches; one that does not is told so', async function () {
      if (!fs.existsSync('/usr/bin/openssl')) this.skip();
      const dir = path.join(tmp, 'tls');
      fs.mkdirSync(dir);
      const f = makeTlsFiles(dir);
      const secure = new PeerApiServer({
        host: '127.0.0.1',
        port: 0,
        secret: SECRET,
        tls: { key: fs.readFileSync(f.keyfile), cert: fs.readFileSync(f.certfile) },
        storageRoot: root,
        catalogue: cat,
        serverId: 'main-1',
      });
      const s = await secure.start();
      try {
        assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
        const c = new PeerClient({ url: s.url, secret: SECRET, ca: fs.readFileSync(f.cafile) });
        const dest = path.join(tmp, 'local', 'tls.ts');
        const r = await c.fetchSegment('c1', 0, dest, { expectedSha256: sha(data[0]) });
        assert.equal(r.sha256, sha(data[0]));
        assert.deepEqual(fs.readFileSync(dest), data[0]);
        c.close();
        const untrusting = new PeerClient({ url: s.url, secret: SECRET });
        await assert.rejects(untrusting.info(), (e: PeerError) => e.code === 'ETLS' && /certificate/.test(e.message));
        untrusting.close();
        const plain = new PeerClient({ url: s.url.replace('https', 'http'), secret: SECRET, timeoutMs: 2000 });
        await assert.rejects(plain.info(), (e: PeerError) => e instanceof PeerError);
        plain.close();
      } finally {
        await secure.close();
      }
    });
  });
});

describe('rate limiter (token bucket, injected clock)', () => {
  function bucket(bps: number, burst?: number) {
    let now = 1000;
    const waits: number[] = [];
    const l = new RateLimiter(bps, {
      burstBytes: burst,
      clock: () => now,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    return { l, waits, advance: (ms: number) => (now += ms) };
  }

  it('lets a full bucket through at once, then makes the caller wait for the debt at the rate', async () => {
    const { l, waits, advance } = bucket(1000);
    await l.take(1000);
    assert.deepEqual(waits, [], 'a full bucket (one second) passes');
    await l.take(500);
    assert.deepEqual(waits, [500], '500 bytes of debt at 1000 B/s');
    await l.take(250);
    assert.deepEqual(waits, [500, 750], 'a second taker queues behind the first');
    advance(750);
    await l.take(1000);
    assert.deepEqual(waits, [500, 750, 1000]);
    advance(10000);
    await l.take(1000);
    assert.equal(waits.length, 3, 'the bucket refilled, but to one second only');
    await l.take(1);
    assert.deepEqual(waits.slice(3), [1]);
    assert.equal(l.taken, 3751);
  });

  it('respects a burst size and a rate change, and 0 means unlimited', async () => {
    const { l, waits, advance } = bucket(2000, 500);
    await l.take(500);
    await l.take(1000);
    assert.deepEqual(waits, [500]);
    advance(500);
    l.setRate(0);
    await l.take(10 ** 9);
    assert.deepEqual(waits, [500]);
    assert.equal(l.taken, 1500 + 10 ** 9);
    assert.throws(() => new RateLimiter(-1), /0 \(unlimited\) or more/);
  });
});

describe('peer API settings of a server (resolveIdentity) and its advertised URL', () => {
  const base = { group: 'studio', serverId: 'main-1', role: 'main', storageRoot: 'rec' };

  it('is off without a port, and resolves host, port, secret and URL with it', () => {
    const off = resolveIdentity(base, '/tmp/u');
    assert.equal(off.peerApi, null);
    assert.equal(off.peerSecret, null);
    const on = resolveIdentity({ ...base, peerPort: '8470', peerSecret: SECRET }, '/tmp/u');
    assert.deepEqual(on.peerApi, { host: '127.0.0.1', port: 8470, url: 'http://127.0.0.1:8470', tls: false });
    assert.equal(on.peerSecret, SECRET);
    const tls = resolveIdentity({ ...base, peerHost: '::1', peerPort: 8471, peerSecret: SECRET, peerTls: true }, '/tmp/u');
    assert.equal(tls.peerApi!.url, 'https://[::1]:8471');
    const any = resolveIdentity({ ...base, peerHost: '0.0.0.0', peerPort: 8471, peerSecret: SECRET }, '/tmp/u');
    assert.equal(any.peerApi!.url, `http://${os.hostname()}:8471`);
    const named = resolveIdentity({ ...base, peerPort: 8471, peerSecret: SECRET, peerUrl: 'https://rec-1.studio.example:443/' }, '/tmp/u');
    assert.equal(named.peerApi!.url, 'https://rec-1.studio.example');
    // a secret alone: this server does not serve, but fetches from peers
    assert.equal(resolveIdentity({ ...base, peerSecret: SECRET }, '/tmp/u').peerSecret, SECRET);
    // a port without the secret: the API stays off and says why; the server itself is valid (it records all the same)
    const noSecret = resolveIdentity({ ...base, peerPort: '8470' }, '/tmp/u');
    assert.equal(noSecret.peerApi, null);
    assert.match(noSecret.peerProblem!, /peer API on port 8470 is off: it needs the group's shared secret \(at least 16 characters\)/);
  });

  it('refuses bad settings with readable errors', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ peerPort: '0', peerSecret: SECRET }, /port "0" must be a number from 1 to 65535/],
      [{ peerPort: '70000', peerSecret: SECRET }, /1 to 65535/],
      [{ peerPort: 'http', peerSecret: SECRET }, /1 to 65535/],
      [{ peerPort: '8470', peerSecret: 'short' }, /at least 16 characters/],
      [{ peerPort: '8470', peerSecret: SECRET, peerHost: 'bad host!' }, /not an IP address or a host name/],
      [{ peerPort: '8470', peerSecret: SECRET, peerUrl: 'ftp://x' }, /http:\/\/host:port/],
      [{ peerPort: '8470', peerSecret: SECRET, peerUrl: 'http://h:1/path' }, /http:\/\/host:port/],
      [{ peerUrl: 'http://h:1' }, /port is empty/],
    ];
    for (const [cfg, re] of bad) assert.throws(() => resolveIdentity({ ...base, ...cfg } as never, '/tmp/u'), re, JSON.stringify(cfg));
  });

  it('puts the API URL into the retained server state, which the schema accepts', () => {
    const link = new ServerLink(
      { url: 'mqtt://127.0.0.1:1', group: 'studio', serverId: 'main-1', role: 'main', apiUrl: 'http://rec-1:8470' },
      { info: () => undefined, warn: () => undefined },
    );
    const st = (link as unknown as { statePayload(s: string): Record<string, unknown> }).statePayload('online');
    assert.equal(st.api, 'http://rec-1:8470');
    assert.ok(validateServerState(st), JSON.stringify(validateServerState.errors));
    assert.ok(!validateServerState({ ...st, api: 'x'.repeat(301) }));
    const none = new ServerLink(
      { url: 'mqtt://127.0.0.1:1', group: 'studio', serverId: 'main-1', role: 'main' },
      { info: () => undefined, warn: () => undefined },
    );
    assert.ok(!('api' in (none as unknown as { statePayload(s: string): Record<string, unknown> }).statePayload('online')));
  });
});

describe('parseRange', () => {
  it('reads the three forms and clips the end', () => {
    assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
    assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
    assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
    assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=2-100', 10), { start: 2, end: 9 });
    assert.equal(parseRange(undefined, 10), null);
    assert.equal(parseRange('bytes=0-1,3-4', 10), null);
    assert.throws(() => parseRange('bytes=0-', 0));
  });
});
