/**
 * Child processes of the copy bench (copy.ts), forked with an IPC channel:
 *
 *   node copy-child.js server <storageRoot> <catalogue.sqlite> <secret>
 *     the failover server's side: a PeerApiServer (lib/peer/api.ts) on
 *     127.0.0.1, any free port, serving the source storage and catalogue.
 *     It counts the body bytes it hands to a connection for each segment (the
 *     API's onServed: by GET or on a segment stream), keyed by the segment's
 *     GET URL, so the bench can see what was served twice. Messages from the
 *     parent: {type: 'counts'} -> {type: 'counts', served: {url: bytes}, requests, streams},
 *     {type: 'reset'} -> {type: 'reset'}. Sends {type: 'listening', url} first.
 *
 *   node copy-child.js copier <destDir> <peerUrl> <secret> <taskJson>
 *     the restored server's side: a MaterialCopier (lib/copy/material-copy.ts) with
 *     its CopyQueue (<destDir>/queue.sqlite), a Catalogue
 *     (<destDir>/catalogue.sqlite) and storage root <destDir>/store, copying
 *     from the peer through a PeerClient. The same task again (after a kill -9)
 *     resumes the task in the queue. Sends {type: 'progress', bytesDone,
 *     bytesTotal, phase}, then {type: 'done', seconds, task} or {type: 'failed', ...}
 *     and exits. `seconds` is from request() to the 'done' event (process start
 *     and module loading not included).
 *
 *   node copy-child.js tm <destDir> <peerUrl> <secret> <clips>
 *     the backup server's side: a TransferManager (lib/copy/transfer-manager.ts,
 *     backup bk-1 pulling the finished clips of main-1 channel 1) with its
 *     TransferQueue (<destDir>/transfers.sqlite), a Catalogue and storage root
 *     <destDir>/store, through a PeerClient. Same messages as the copier;
 *     'done' once <clips> clips are transferred, `seconds` from start() (scan
 *     included) to the last 'transferred' event; bytesDone sums every clip.
 *
 * Not a test.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Catalogue } from '../lib/store/catalogue';
import { CopyQueue, TaskRequest } from '../lib/store/copy-queue';
import { MaterialCopier } from '../lib/copy/material-copy';
import { PeerApiServer } from '../lib/peer/api';
import { PeerClient } from '../lib/peer/client';
import { ShareSource, withShareMedia } from '../lib/copy/share-source';
import { TransferManager } from '../lib/copy/transfer-manager';
import { TransferQueue } from '../lib/store/transfer-queue';

/**
 * BENCH_SHARE_ROOT: segment bytes from this folder (the peer's storage as a mounted share), lists and events from the API.
 * BENCH_SHARE_READS: a file to which every read from the share is appended at once ("<clipId>/<index> <bytes>"), so the
 * bytes a child read before a kill -9 are still counted after it (the kill runs sum them per segment).
 */
function sourceOf(client: PeerClient): PeerClient {
  const root = process.env.BENCH_SHARE_ROOT;
  if (!root) return client;
  const share = new ShareSource(root);
  const reads = process.env.BENCH_SHARE_READS;
  if (reads) {
    const fetch = share.fetchSegment.bind(share);
    share.fetchSegment = (clipId, index, dest, o = {}) =>
      fetch(clipId, index, dest, {
        ...o,
        onBytes: (n) => {
          fs.appendFileSync(reads, `${clipId}/${index} ${n}\n`);
          o.onBytes?.(n);
        },
      });
  }
  return withShareMedia(client, share);
}

/** BENCH_COPY_THREADS=1: this process's CPU per thread (user + system = total, s), printed to stderr. */
function printThreadCpu(who: string): void {
  if (process.env.BENCH_COPY_THREADS !== '1') return;
  const clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  const threads: [string, number, number][] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const st = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const close = st.lastIndexOf(')');
      const f = st.slice(close + 2).split(' ');
      const name = Number(tid) === process.pid ? 'main' : `${st.slice(st.indexOf('(') + 1, close)}:${tid}`;
      threads.push([name, Number(f[11]) / clkTck, Number(f[12]) / clkTck]);
    } catch {
      // the thread ended
    }
  }
  const parts = threads
    .filter(([, u, s]) => u + s > 0)
    .sort((a, b) => b[1] + b[2] - (a[1] + a[2]))
    .map(([k, u, s]) => `${k} ${u.toFixed(2)}+${s.toFixed(2)}=${(u + s).toFixed(2)}`);
  console.error(`  [${who} CPU by thread, user+system=total s: ${parts.join(', ')}]`);
}

function send(msg: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

async function server(storageRoot: string, catalogueFile: string, secret: string): Promise<void> {
  const catalogue = new Catalogue(catalogueFile);
  let served: Record<string, number> = {};
  let requests = 0;
  let streams = 0;
  // body bytes handed to a connection, per segment, by GET or on a segment stream
  const onServed = (clipId: string, index: number, n: number) => {
    const url = `/twinrec/v1/clips/${clipId}/segments/${index}`;
    served[url] = (served[url] ?? 0) + n;
  };
  const api = new PeerApiServer({ host: '127.0.0.1', port: 0, secret, storageRoot, catalogue, serverId: 'fo-1', onServed });
  const { url } = await api.start();
  // a second 'request' listener, after the API's own: it counts the segment GETs; 'upgrade' counts the streams
  const httpServer = (api as unknown as { server: http.Server }).server;
  httpServer.on('request', (req: http.IncomingMessage) => {
    if (/\/segments\/\d+$/.test(String(req.url ?? ''))) requests++;
  });
  httpServer.on('upgrade', () => {
    streams++;
  });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'counts') {
      printThreadCpu('peer API');
      void send({ type: 'counts', served, requests, streams });
    } else if (m.type === 'reset') {
      served = {};
      requests = 0;
      streams = 0;
      void send({ type: 'reset' });
    } else if (m.type === 'stop') void api.close().then(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
  await send({ type: 'listening', url });
}

async function copier(destDir: string, peerUrl: string, secret: string, taskJson: string): Promise<void> {
  const task = JSON.parse(taskJson) as TaskRequest;
  const queue = new CopyQueue(path.join(destDir, 'queue.sqlite'));
  const catalogue = new Catalogue(path.join(destDir, 'catalogue.sqlite'));
  const client = new PeerClient({ url: peerUrl, secret, timeoutMs: 30000 });
  const log = { info: () => undefined, warn: (m: string) => console.error(`copier: ${m}`) };
  const source = sourceOf(client);
  const c = new MaterialCopier(queue, catalogue, { serverId: 'main-1', storageRoot: path.join(destDir, 'store'), source: () => source, retryMinMs: 200, log });
  let t0 = process.hrtime.bigint();
  c.on('progress', (p: { bytesDone: number; bytesTotal: number | null; phase: string }) => {
    void send({ type: 'progress', bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, phase: p.phase });
  });
  c.on('done', (t) => {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    printThreadCpu('material copy');
    void send({ type: 'done', seconds, task: t }).then(() => process.exit(0));
  });
  c.on('failed', (t) => {
    void send({ type: 'failed', task: t }).then(() => process.exit(1));
  });
  process.on('disconnect', () => process.exit(0));
  t0 = process.hrtime.bigint();
  c.request(task);
}

async function transferManager(destDir: string, peerUrl: string, secret: string, clips: number): Promise<void> {
  const queue = new TransferQueue(path.join(destDir, 'transfers.sqlite'));
  const catalogue = new Catalogue(path.join(destDir, 'catalogue.sqlite'));
  const client = new PeerClient({ url: peerUrl, secret, timeoutMs: 30000 });
  const log = { info: () => undefined, warn: (m: string) => console.error(`transfer manager: ${m}`) };
  const source = sourceOf(client);
  const tm = new TransferManager(queue, catalogue, {
    serverId: 'bk-1',
    mainServer: 'main-1',
    channels: [1],
    storageRoot: path.join(destDir, 'store'),
    source: () => source,
    pollMs: 3600000,
    retryMinMs: 200,
    log,
  });
  const perClip = new Map<string, number>();
  for (const t of queue.list()) perClip.set(t.clipId, t.bytesDone);
  let t0 = process.hrtime.bigint();
  tm.on('progress', (p: { clipId: string; bytesDone: number; phase: string }) => {
    if (p.clipId) perClip.set(p.clipId, p.bytesDone);
    let sum = 0;
    for (const b of perClip.values()) sum += b;
    void send({ type: 'progress', bytesDone: sum, bytesTotal: null, phase: p.phase });
  });
  tm.on('transferred', () => {
    const done = queue.inState('done');
    if (done.length < clips) return;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const task = {
      segmentsCopied: done.reduce((n, t) => n + t.segmentsCopied, 0),
      segmentsSkipped: done.reduce((n, t) => n + t.segmentsSkipped, 0),
      attempts: Math.max(...done.map((t) => t.attempts)),
      lastError: null,
    };
    void send({ type: 'done', seconds, task }).then(() => process.exit(0));
  });
  tm.on('failed', (t: { reason: string | null; name: string }) => {
    void send({ type: 'failed', task: { lastError: `clip ${t.name}: ${t.reason}` } }).then(() => process.exit(1));
  });
  process.on('disconnect', () => process.exit(0));
  t0 = process.hrtime.bigint();
  tm.start();
}

/**
 * Where the time goes (BENCH_COPY_BREAKDOWN=1): every segment fetched in turn, one stage at a time:
 * 'http' the GET only (body discarded), 'sha' + sha256 of the body, 'write' + each chunk written
 * to a file with an awaited FileHandle.write (as PeerClient does), 'client' PeerClient.fetchSegment
 * (adds the fsync of the part, the rename and the fsync of the directory), 'pipe' the body piped
 * through a hashing Transform into a write stream (writes overlapping reads) and an fsync, 'client2'
 * PeerClient.fetchSegment two segments at a time. Sends {type: 'done', seconds}.
 */
async function probe(destDir: string, peerUrl: string, secret: string, stage: string, segsJson: string): Promise<void> {
  const segs = JSON.parse(segsJson) as { url: string; rel: string; sha256: string; bytes: number; clipId: string; index: number }[];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(peerUrl);
  const client = new PeerClient({ url: peerUrl, secret, timeoutMs: 30000 });
  const get = (p: string) =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ hostname: u.hostname, port: u.port, path: p, agent, headers: { Authorization: `Bearer ${secret}` } }, resolve);
      req.on('error', reject);
      req.end();
    });
  const t0 = process.hrtime.bigint();
  if (stage === 'client2') {
    // two segments at a time (what a copier fetching ahead would do)
    let next = 0;
    const worker = async () => {
      while (next < segs.length) {
        const s = segs[next++];
        await client.fetchSegment(s.clipId, s.index, path.join(destDir, s.rel), { expectedSha256: s.sha256, expectedBytes: s.bytes });
      }
    };
    await Promise.all([worker(), worker()]);
  }
  for (const s of stage === 'client2' ? [] : segs) {
    const dest = path.join(destDir, s.rel);
    if (stage === 'pipe') {
      // the body piped into a write stream (writes overlap the reads), hashed on the way, then fsync
      await fs.promises.mkdir(path.dirname(dest), { recursive: true });
      const res = await get(s.url);
      const h = crypto.createHash('sha256');
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          h.update(chunk);
          cb(null, chunk);
        },
      });
      const fd = await fs.promises.open(dest, 'w');
      await pipeline(res, tap, fs.createWriteStream('', { fd: fd.fd, autoClose: false, highWaterMark: 1024 * 1024 }));
      await fd.sync();
      await fd.close();
      if (h.digest('hex') !== s.sha256) throw new Error(`probe: ${s.url} has another sha256`);
      continue;
    }
    if (stage === 'client') {
      await client.fetchSegment(s.clipId, s.index, dest, { expectedSha256: s.sha256, expectedBytes: s.bytes });
      continue;
    }
    const res = await get(s.url);
    const h = stage === 'http' ? null : crypto.createHash('sha256');
    let fh: fs.promises.FileHandle | null = null;
    if (stage === 'write') {
      await fs.promises.mkdir(path.dirname(dest), { recursive: true });
      fh = await fs.promises.open(dest, 'w');
    }
    for await (const c of res) {
      if (fh) await fh.write(c as Buffer);
      h?.update(c as Buffer);
    }
    await fh?.close();
    if (h && h.digest('hex') !== s.sha256) throw new Error(`probe: ${s.url} has another sha256`);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  client.close();
  await send({ type: 'done', seconds, task: { segmentsCopied: segs.length, segmentsSkipped: 0, attempts: 1, lastError: null } });
  process.exit(0);
}

const [mode, ...args] = process.argv.slice(2);
const run =
  mode === 'probe'
    ? probe(args[0], args[1], args[2], args[3], args[4])
    : mode === 'tm'
      ? transferManager(args[0], args[1], args[2], Number(args[3]))
      : mode === 'server'
        ? server(args[0], args[1], args[2])
        : mode === 'copier'
          ? copier(args[0], args[1], args[2], args[3])
          : Promise.reject(new Error(`unknown mode ${mode}`));
run.catch((err) => {
  console.error(err);
  process.exit(1);
});
