/**
 * The segment fetch that reads the body straight into memory (lib/peer/raw-get.ts,
 * used by PeerClient.fetchSegment for a plain-HTTP segment of known size),
 * against real HTTP servers on 127.0.0.1: each a small node:http or node:net
 * server that answers as a peer would, or as a broken peer would.
 */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PeerClient } from '../../../lib/peer/client';
import { PeerError } from '../../../lib/peer/peer-error';
import { RateLimiter } from '../../../lib/peer/rate-limiter';
import { rawGet, RawGetError } from '../../../lib/peer/raw-get';
import { RawPool } from '../../../lib/peer/raw-pool';
import { until } from '../../support/nr';

const SECRET = 'correct horse battery staple';
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
/** Crosses the write batch and the pacing batch (1 MiB) several times. */
const body = crypto.randomBytes(3 * 1024 * 1024 + 12345);
const SEG_PATH = '/twinrec/v1/clips/c1/segments/0';

interface Seen {
  url: string;
  /** The first header name as sent: lib/peer/raw-get.ts sends Host first, Node's HTTP client the caller's headers first. */
  firstHeader: string;
  connection?: string;
  range?: string;
  ifRange?: string;
  auth?: string;
}

/** An HTTP server whose handler is swapped per test; it records what each request asked. */
async function startServer(): Promise<{ port: number; seen: Seen[]; handle: (h: http.RequestListener) => void; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  let handler: http.RequestListener = (_req, res) => res.end();
  const srv = http.createServer((req, res) => {
    seen.push({
      url: String(req.url),
      firstHeader: req.rawHeaders[0],
      connection: req.headers.connection,
      range: req.headers.range,
      ifRange: req.headers['if-range'] as string | undefined,
      auth: req.headers.authorization,
    });
    handler(req, res);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    seen,
    handle: (h) => (handler = h),
    close: async () => {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Serves `body` as the segment with Range support, as the peer API does. */
function segmentServer(b: Buffer, extra: Record<string, string> = {}): http.RequestListener {
  return (req, res) => {
    const m = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    const start = m ? Number(m[1]) : 0;
    const headers: Record<string, string> = { 'Content-Type': 'video/mp2t', 'X-Sha256': sha(b), ETag: `"${sha(b)}"`, ...extra };
    if (m) {
      res.writeHead(206, { ...headers, 'Content-Length': String(b.length - start), 'Content-Range': `bytes ${start}-${b.length - 1}/${b.length}` });
      res.end(b.subarray(start));
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': String(b.length) });
      res.end(b);
    }
  };
}

describe('segment fetch straight into memory (lib/peer/raw-get, PeerClient fast path)', () => {
  let tmp: string;
  let srv: Awaited<ReturnType<typeof startServer>>;
  let client: PeerClient;
  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-rawget-'));
    srv = await startServer();
    client = new PeerClient({ url: `http://127.0.0.1:${srv.port}`, secret: SECRET, timeoutMs: 5000 });
  });
  afterEach(async () => {
    client.close();
    await srv.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('fetches a segment of known size, whole, verified, through the limiter, on a connection it keeps', async () => {
    srv.handle(segmentServer(body));
    const dest = path.join(tmp, 'a', 'seg.ts');
    const limiter = new RateLimiter(0);
    let seen = 0;
    const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length, limiter, onBytes: (n) => (seen += n) });
    assert.deepEqual(r, { bytes: body.length, sha256: sha(body), resumedFrom: 0 });
    assert.ok(fs.readFileSync(dest).equals(body));
    assert.ok(!fs.existsSync(`${dest}.part`));
    assert.equal(seen, body.length);
    assert.equal(limiter.taken, body.length, 'every byte went through the limiter');
    assert.equal(srv.seen.length, 1);
    assert.equal(srv.seen[0].firstHeader, 'Host', 'the fast path sent it');
    assert.equal(srv.seen[0].connection, 'keep-alive', 'the fast path keeps its connection for the next segment');
    assert.equal(client.rawPool.size, 1, 'the connection waits in the pool');
    assert.equal(srv.seen[0].auth, `Bearer ${SECRET}`);
    assert.equal(srv.seen[0].url, SEG_PATH);
  });

  it('paces the body by the bandwidth limit (the limiter is asked per MiB and its waits are awaited)', async () => {
    // the peer sends 1 MiB at a time, 50 ms apart: under load the whole body could otherwise come in one read
    srv.handle((req, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp2t', 'X-Sha256': sha(body), 'Content-Length': String(body.length) });
      const send = (at: number) => {
        if (at >= body.length) return res.end();
        res.write(body.subarray(at, at + (1 << 20)), () => setTimeout(() => send(at + (1 << 20)), 50));
      };
      send(0);
    });
    const waits: number[] = [];
    // a fixed clock: the bucket never refills by itself, so each MiB past the burst is a wait
    const limiter = new RateLimiter(1 << 20, { burstBytes: 1 << 20, clock: () => 1000, sleep: async (ms) => void waits.push(ms) });
    const dest = path.join(tmp, 'paced.ts');
    const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length, limiter });
    assert.equal(r.sha256, sha(body));
    assert.equal(limiter.taken, body.length);
    // 1 MiB fits the burst; the rest (2 MiB + 12345 bytes) is debt paid back at 1 MiB/s
    assert.ok(waits.length >= 2, `the limiter made the transfer wait (${waits.length} waits)`);
    assert.ok(waits[waits.length - 1] >= 2000, `the last wait pays the whole debt at the rate (${waits[waits.length - 1]} ms)`);
  });

  it('keeps what came of a cut transfer (ETRUNC) and resumes it with a Range from the part size', async () => {
    let cut = true;
    srv.handle((req, res) => {
      if (!cut) return segmentServer(body)(req, res);
      cut = false;
      res.writeHead(200, { 'Content-Length': String(body.length), 'X-Sha256': sha(body) });
      res.write(body.subarray(0, 1_500_000), () => setTimeout(() => res.socket?.destroy(), 100));
    });
    const dest = path.join(tmp, 'cut.ts');
    await assert.rejects(
      client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length }),
      (e: PeerError) => e.code === 'ETRUNC' && new RegExp(`closed after 1500000 of ${body.length} bytes of segment 0 of clip c1`).test(e.message),
    );
    assert.equal(fs.statSync(`${dest}.part`).size, 1_500_000, 'the part holds every byte that came');
    assert.ok(!fs.existsSync(dest));
    const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length });
    assert.deepEqual(r, { bytes: body.length, sha256: sha(body), resumedFrom: 1_500_000 });
    assert.equal(srv.seen[1].range, 'bytes=1500000-');
    assert.equal(srv.seen[1].ifRange, `"${sha(body)}"`);
    assert.ok(fs.readFileSync(dest).equals(body));
  });

  it('starts over when the peer answers a resume with the whole segment (200)', async () => {
    srv.handle((req, res) => {
      res.writeHead(200, { 'Content-Length': String(body.length), 'X-Sha256': sha(body) });
      res.end(body);
    });
    const dest = path.join(tmp, 'over.ts');
    fs.writeFileSync(`${dest}.part`, crypto.randomBytes(1000)); // not a prefix of this segment
    const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length });
    assert.deepEqual(r, { bytes: body.length, sha256: sha(body), resumedFrom: 0 });
    assert.equal(srv.seen[0].range, 'bytes=1000-');
    assert.ok(fs.readFileSync(dest).equals(body));
  });

  it('says ENET for a peer that goes silent mid-body, keeping the part', async () => {
    srv.handle((_req, res) => {
      res.writeHead(200, { 'Content-Length': String(body.length), 'X-Sha256': sha(body) });
      res.write(body.subarray(0, 100_000)); // then nothing
    });
    const quick = new PeerClient({ url: `http://127.0.0.1:${srv.port}`, secret: SECRET, timeoutMs: 300 });
    const dest = path.join(tmp, 'silent.ts');
    try {
      await assert.rejects(
        quick.fetchSegment('c1', 0, dest, { expectedBytes: body.length }),
        (e: PeerError) => e.code === 'ENET' && /silent for 0\.3 s/.test(e.message),
      );
    } finally {
      quick.close();
    }
    assert.equal(fs.statSync(`${dest}.part`).size, 100_000);
  });

  it('stops on the abort signal mid-body (EABORT), keeping the part', async () => {
    // the peer sends 2 MiB and holds the rest: under load the whole body could otherwise be in the
    // socket buffer before the first read, and the abort (at the first MiB's pacing) would come after the end
    srv.handle((req, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp2t', 'X-Sha256': sha(body), 'Content-Length': String(body.length) });
      res.write(body.subarray(0, 2 << 20));
    });
    const ac = new AbortController();
    const limiter = {
      take: async () => ac.abort(),
    };
    const dest = path.join(tmp, 'abort.ts');
    await assert.rejects(client.fetchSegment('c1', 0, dest, { expectedBytes: body.length, limiter, signal: ac.signal }), (e: PeerError) => e.code === 'EABORT');
    assert.ok(fs.existsSync(`${dest}.part`));
    assert.ok(!fs.existsSync(dest));
  });

  it('refuses bytes that do not match the hash the peer announced (EHASH), keeping nothing', async () => {
    srv.handle(segmentServer(body, { 'X-Sha256': sha(crypto.randomBytes(8)) }));
    const dest = path.join(tmp, 'lie.ts');
    await assert.rejects(
      client.fetchSegment('c1', 0, dest, { expectedBytes: body.length }),
      (e: PeerError) => e.code === 'EHASH' && /as the peer announced/.test(e.message),
    );
    assert.ok(!fs.existsSync(dest));
    assert.ok(!fs.existsSync(`${dest}.part`));
  });

  it('hands what it does not read itself to the HTTP client: chunked bodies, 401, 404, 416', async () => {
    srv.handle((req, res) => {
      if (req.headers.authorization !== `Bearer ${SECRET}`) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        return res.end('{"error":"no"}');
      }
      if (req.url !== SEG_PATH) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        return res.end('{"error":"no such segment"}');
      }
      res.writeHead(200, { 'X-Sha256': sha(body) }); // no length: chunked
      res.end(body);
    });
    const dest = path.join(tmp, 'chunked.ts');
    const r = await client.fetchSegment('c1', 0, dest, { expectedSha256: sha(body), expectedBytes: body.length });
    assert.equal(r.sha256, sha(body));
    assert.deepEqual(
      srv.seen.map((s) => s.firstHeader),
      ['Host', 'Authorization'],
      'asked by the fast path, then again by the ordinary client',
    );
    assert.equal(client.rawPool.size, 0, 'a connection whose answer was not read is not kept');
    await assert.rejects(
      client.fetchSegment('c1', 7, path.join(tmp, 'n.ts'), { expectedBytes: 10 }),
      (e: PeerError) => e.code === 'ENOENT' && /no such segment/.test(e.message),
    );
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.startsWith('n.ts')),
      [],
      'the part opened while the request went is removed',
    );
    const wrong = new PeerClient({ url: `http://127.0.0.1:${srv.port}`, secret: 'a wrong secret, long enough' });
    try {
      await assert.rejects(
        wrong.fetchSegment('c1', 0, path.join(tmp, 'w.ts'), { expectedBytes: 10 }),
        (e: PeerError) => e.code === 'EAUTH' && e.status === 401,
      );
    } finally {
      wrong.close();
    }
    // a part that already holds the whole segment: the peer says 416 with the size, and the part is verified as it is
    srv.handle((req, res) => {
      res.writeHead(416, { 'Content-Range': `bytes */${body.length}`, 'X-Sha256': sha(body) });
      res.end();
    });
    const whole = path.join(tmp, 'whole.ts');
    fs.writeFileSync(`${whole}.part`, body);
    const w = await client.fetchSegment('c1', 0, whole, { expectedSha256: sha(body), expectedBytes: body.length });
    assert.deepEqual(w, { bytes: body.length, sha256: sha(body), resumedFrom: body.length });
  });

  it('a lying peer cannot grow the part past the listed size: a larger announced size, or an endless body without a length', async () => {
    const listed = 1000;
    // announces (and would send) 200 MiB for a segment the listing said was 1000 bytes
    srv.handle((_req, res) => {
      res.writeHead(200, { 'Content-Length': String(200 * 1024 * 1024) });
      res.write(Buffer.alloc(64 * 1024));
    });
    const big = path.join(tmp, 'big.ts');
    await assert.rejects(
      client.fetchSegment('c1', 0, big, { expectedBytes: listed }),
      (e: PeerError) => e.code === 'EPROTO' && /announced 209715200 bytes .* not the 1000 its listing said/.test(e.message),
    );
    assert.ok(!fs.existsSync(`${big}.part`) || fs.statSync(`${big}.part`).size <= listed, 'nothing past the listed size on disk');
    // no length at all (chunked), and it never ends
    srv.handle((_req, res) => {
      res.writeHead(200, { 'Transfer-Encoding': 'chunked' });
      const t = setInterval(() => res.write(Buffer.alloc(16 * 1024)), 1);
      res.on('close', () => clearInterval(t));
    });
    const endless = path.join(tmp, 'endless.ts');
    await assert.rejects(
      client.fetchSegment('c1', 0, endless, { expectedBytes: listed }),
      (e: PeerError) => e.code === 'EPROTO' && /sent more of segment 0 of clip c1 than the 1000 bytes its listing said/.test(e.message),
    );
    assert.ok(fs.statSync(`${endless}.part`).size <= listed, `the part holds ${fs.statSync(`${endless}.part`).size} bytes`);
  });

  it('says ENET for a peer that is not there, and EPROTO for one that does not speak HTTP', async () => {
    const junk = net.createServer((s) =>
      s
        .on('error', () => undefined)
        .resume()
        .end('SSH-2.0-OpenSSH\r\n\r\n'),
    );
    await new Promise<void>((r) => junk.listen(0, '127.0.0.1', () => r()));
    const port = (junk.address() as net.AddressInfo).port;
    const c = new PeerClient({ url: `http://127.0.0.1:${port}`, secret: SECRET });
    try {
      await assert.rejects(
        c.fetchSegment('c1', 0, path.join(tmp, 'j.ts'), { expectedBytes: 10 }),
        (e: PeerError) => e.code === 'EPROTO' && /not HTTP/.test(e.message),
      );
    } finally {
      c.close();
      await new Promise<void>((r) => junk.close(() => r()));
    }
    const gone = new PeerClient({ url: `http://127.0.0.1:${port}`, secret: SECRET });
    try {
      await assert.rejects(
        gone.fetchSegment('c1', 0, path.join(tmp, 'g.ts'), { expectedBytes: 10 }),
        (e: PeerError) => e.code === 'ENET' && /ECONNREFUSED/.test(e.message),
      );
    } finally {
      gone.close();
    }
  });

  it('rawGet refuses header values that would split the request, and a header longer than 16 KiB', async () => {
    await assert.rejects(
      rawGet({
        host: '127.0.0.1',
        port: srv.port,
        hostHeader: `127.0.0.1:${srv.port}`,
        path: '/x',
        headers: { Range: 'bytes=0-\r\nX-Evil: 1' },
        timeoutMs: 1000,
      }),
      (e: RawGetError) => e.code === 'EPROTO',
    );
    assert.equal(srv.seen.length, 0, 'nothing was sent');
    const big = net.createServer((s) =>
      s
        .on('error', () => undefined)
        .resume()
        .write(`HTTP/1.1 200 OK\r\nX-Pad: ${'a'.repeat(20000)}\r\n\r\n`),
    );
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', () => r()));
    const port = (big.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        rawGet({ host: '127.0.0.1', port, hostHeader: `127.0.0.1:${port}`, path: '/x', headers: {}, timeoutMs: 1000 }),
        (e: RawGetError) => e.code === 'EPROTO' && /longer than/.test(e.message),
      );
    } finally {
      await new Promise<void>((r) => {
        big.close(() => r());
        // the server side socket is left open by the client's destroy; closing the listener ends it
      });
    }
  });

  it('rawGet holds the body until receive(), then reads it into the target in place', async () => {
    srv.handle(segmentServer(body));
    const a = await rawGet({ host: '127.0.0.1', port: srv.port, hostHeader: `127.0.0.1:${srv.port}`, path: SEG_PATH, headers: {}, timeoutMs: 5000 });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-length'], String(body.length));
    assert.equal(a.headers['x-sha256'], sha(body));
    const buf = Buffer.alloc(body.length);
    let filled = 0;
    let inPlace = 0;
    let copied = 0;
    await a.receive(
      {
        reserve: (n) => buf.subarray(filled, filled + n),
        advance: (n) => {
          inPlace += n;
          return (filled += n);
        },
        add: (c) => {
          copied += c.length;
          c.copy(buf, filled);
          return (filled += c.length);
        },
      },
      body.length,
    );
    assert.ok(buf.equals(body));
    assert.equal(inPlace + copied, body.length);
    assert.ok(inPlace > body.length / 2, `most of the body was read in place (${inPlace} of ${body.length} bytes)`);
  });
});

/**
 * A TCP server that reads HTTP requests (header only, GET) and answers each as
 * `answer` says: with the raw bytes it returns, or by closing the connection
 * (null). Counts connections and requests per connection.
 */
async function scriptedPeer(answer: (conn: number, req: number, socket: net.Socket) => Buffer | string | null) {
  const requests: { conn: number; req: number; text: string }[] = [];
  const sockets: net.Socket[] = [];
  const closed: number[] = [];
  const srv = net.createServer((s) => {
    const conn = sockets.length;
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('close', () => closed.push(conn));
    let buf = '';
    let req = 0;
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const text = buf.slice(0, end);
        buf = buf.slice(end + 4);
        requests.push({ conn, req, text });
        const a = answer(conn, req++, s);
        if (a === null) s.destroy();
        else s.write(a);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    requests,
    sockets,
    closed,
    get: (pool: RawPool | undefined, timeoutMs = 5000) =>
      rawGet({ host: '127.0.0.1', port, hostHeader: `127.0.0.1:${port}`, path: '/s', headers: {}, timeoutMs, pool }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** A target that collects the body in one buffer. */
function collect(size: number): { target: { reserve(n: number): Buffer; advance(n: number): number; add(c: Buffer): number }; body: () => Buffer } {
  const buf = Buffer.alloc(size);
  let filled = 0;
  return {
    target: {
      reserve: (n) => buf.subarray(filled, filled + n),
      advance: (n) => (filled += n),
      add: (c) => {
        c.copy(buf, filled);
        return (filled += c.length);
      },
    },
    body: () => buf.subarray(0, filled),
  };
}

const ok = (b: Buffer | string, extra = '') =>
  Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(b)}\r\n${extra}\r\n`, 'latin1'), Buffer.from(b)]);

describe('kept-alive connections of the segment fetch (lib/peer/raw-get RawPool)', () => {
  const peers: { close(): Promise<void> }[] = [];
  const pools: RawPool[] = [];
  const pool = (o?: { idleMs?: number; maxIdle?: number }) => {
    const p = new RawPool(o);
    pools.push(p);
    return p;
  };
  const peer = async (answer: Parameters<typeof scriptedPeer>[0]) => {
    const p = await scriptedPeer(answer);
    peers.push(p);
    return p;
  };
  afterEach(async () => {
    for (const p of pools.splice(0)) p.close();
    for (const p of peers.splice(0)) await p.close();
  });

  it('sends the next request on the same connection, the body of each whole and in order', async () => {
    const bodies = [crypto.randomBytes(300000), crypto.randomBytes(5), crypto.randomBytes(70000)];
    const p = await peer((_c, req) => ok(bodies[req]));
    const pl = pool();
    for (const [i, b] of bodies.entries()) {
      const a = await p.get(pl);
      assert.equal(a.reused, i > 0);
      const c = collect(b.length);
      await a.receive(c.target, b.length);
      assert.ok(c.body().equals(b), `body ${i} came whole`);
      assert.equal(pl.size, 1, 'the connection is back in the pool');
    }
    assert.equal(p.sockets.length, 1, 'one connection for the three requests');
    assert.deepEqual(
      p.requests.map((r) => [r.conn, r.req]),
      [
        [0, 0],
        [0, 1],
        [0, 2],
      ],
    );
    assert.ok(p.requests.every((r) => /\r\nConnection: keep-alive(\r\n|$)/.test(r.text)));
    assert.equal(pl.opened, 1);
    assert.equal(pl.reused, 2);
  });

  it('sends the request again on a new connection when the kept one was closed by the peer as it went', async () => {
    // the second request on the first connection is met by a close without an answer: the peer's
    // keep-alive timeout ran out as the request was on its way
    const p = await peer((conn, req) => (conn === 0 && req === 1 ? null : ok(`c${conn}r${req}`)));
    const pl = pool();
    const first = await p.get(pl);
    await first.receive(collect(4).target, 4);
    const again = await p.get(pl);
    assert.equal(again.reused, false, 'the answer came on a new connection');
    const c = collect(4);
    await again.receive(c.target, 4);
    assert.equal(c.body().toString(), 'c1r0');
    assert.deepEqual(
      p.requests.map((r) => [r.conn, r.req]),
      [
        [0, 0],
        [0, 1],
        [1, 0],
      ],
      'sent once more, once',
    );
  });

  it('does not send again when a new connection closes before answering, nor after an answer began', async () => {
    const p = await peer(() => null);
    const pl = pool();
    await assert.rejects(p.get(pl), (e: RawGetError) => e.code === 'ENET' && /closed the connection before answering/.test(e.message));
    assert.equal(p.requests.length, 1, 'a new connection is not retried');
    // on a kept connection, a close inside the header is not a stale connection: no retry
    const q = await peer((conn, req, s) => {
      if (conn === 0 && req === 1) {
        s.end('HTTP/1.1 200 OK\r\nContent-Le');
        return '';
      }
      return ok('x');
    });
    const first = await q.get(pl);
    await first.receive(collect(1).target, 1);
    await assert.rejects(q.get(pl), (e: RawGetError) => e.code === 'ENET');
    assert.equal(q.requests.length, 2, 'an answer that had begun is not asked for again');
  });

  it('does not keep a connection the peer says it closes, nor an HTTP/1.0 one, nor one whose answer was not read', async () => {
    const p = await peer((_c, req) => (req === 0 ? ok('a', 'Connection: close\r\n') : ok('b')));
    const pl = pool();
    const a = await p.get(pl);
    await a.receive(collect(1).target, 1);
    assert.equal(pl.size, 0);
    const old = await peer(() => Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz', 'latin1'));
    const b = await old.get(pl);
    await b.receive(collect(1).target, 1);
    assert.equal(pl.size, 0);
    const notRead = await peer(() => ok('never read'));
    const c = await notRead.get(pl);
    c.close();
    assert.equal(pl.size, 0);
    await until(() => p.closed.length === 1 && old.closed.length === 1 && notRead.closed.length === 1, 'the peers see their connections closed');
  });

  it('drops an idle connection the peer closes or sends unasked bytes on, and closes its own after idleMs', async () => {
    const p = await peer(() => ok('k'));
    const pl = pool({ idleMs: 200 });
    const take = async () => {
      const a = await p.get(pl);
      await a.receive(collect(1).target, 1);
    };
    await take();
    p.sockets[0].destroy(); // the peer closes an idle connection
    await until(() => pl.size === 0, 'the pool sees the close');
    await take();
    assert.equal(p.sockets.length, 2, 'the next request went on a new connection');
    p.sockets[1].write('HTTP/1.1 200 OK\r\n'); // unasked
    await until(() => pl.size === 0, 'the pool drops the connection with unasked bytes');
    await until(() => p.closed.includes(1), 'the peer sees it closed');
    await take();
    assert.equal(pl.size, 1);
    // nothing else closes it: the peer keeps connections open, the test sends nothing
    await until(() => p.closed.includes(2), 'the client closes the connection idle for idleMs');
    assert.equal(pl.size, 0);
    await take();
    pl.close();
    await until(() => p.closed.includes(3), 'close() closes the idle connection');
    await take();
    assert.equal(pl.size, 0, 'a closed pool keeps nothing');
  });
});
