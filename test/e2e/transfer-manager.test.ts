/**
 * Transfer manager end to end: a main and a backup, each a real Node-RED
 * process, and mosquitto. The main records an ordinary line and a Backup=On
 * line (whose twin backup-link records on the backup). The backup's
 * transfer-manager copies the ordinary clip (every segment with the main's
 * sha256, registered in the backup's catalogue) and skips the twin, copying
 * nothing of it. The main is stopped in the middle of the (bandwidth-limited)
 * transfer and started again: the transfer goes on and completes.
 *
 * Second: media from a mounted share. The backup reads segment bytes from the
 * main's storage bind-mounted into its user directory (a real mount: the test
 * runs as root, as CI does); while nothing is mounted there it waits, though
 * the main's API answers; once mounted the clip arrives whole. Then the
 * retention policy (a few seconds, as a fraction of a day) deletes the copy on
 * the backup and nothing else: not the backup's own recording, not the main's.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { events, waitEvent, walk } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, freePort, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

const SECRET = 'group-peer-secret-0123456789';
const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe('transfer manager: the backup copies the finished clips of its main', function () {
  this.timeout(300000);
  let broker: Broker;
  let dirM: string;
  let dirB: string;
  let main: NodeRedProcess | null = null;
  let backup: NodeRedProcess | null = null;
  let portM: number;
  let mounted: string | null = null;

  beforeEach(async function () {
    broker = await startMosquitto();
    dirM = tmpDir('main-1');
    dirB = tmpDir('backup-1');
    portM = await freePort();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const [k, p] of Object.entries({ main, backup })) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-6000)}`);
    }
    for (const p of [main, backup]) if (p) await p.stop();
    main = backup = null;
    if (mounted) execFileSync('umount', [mounted]);
    mounted = null;
    for (const d of [dirM, dirB]) {
      for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
    await broker.stop();
  });

  const startMain = async () => {
    main = await startNodeRed({
      userDir: dirM,
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        peerPort: portM,
        backupLink: true,
        recorders: [
          { channel: 1, sourceType: 'testpattern', segmentSeconds: 1 },
          { channel: 2, sourceType: 'testpattern', segmentSeconds: 1, backupServer: 'backup-1', backupChannel: 1 },
        ],
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    return main;
  };
  const startBackup = async (bandwidth: number, tm: { shareFolder?: string; retentionDays?: number } = {}) => {
    backup = await startNodeRed({
      userDir: dirB,
      flows: recorderSiteFlow({
        serverId: 'backup-1',
        role: 'backup',
        storageRoot: 'store',
        brokerUrl: broker.url,
        backupLink: true,
        recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 1 }],
        transferManager: { mainServer: 'main-1', channels: '1-2', bandwidth, pollInterval: 1, ...tm },
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    return backup;
  };
  async function line(p: NodeRedProcess, ch: number, id: string) {
    const r = await p.request('POST', `/cmd/${ch}`, { command: 'list' });
    return (r.body.lines as { id: string; status: string; clipId: string }[]).find((l) => l.id === id);
  }
  async function waitStatus(p: NodeRedProcess, ch: number, id: string, status: string, ms = 30000) {
    const end = Date.now() + ms;
    for (;;) {
      const l = await line(p, ch, id);
      if (l?.status === status) return l;
      if (Date.now() > end) throw new Error(`line ${id} is ${l?.status ?? 'absent'}, not ${status}`);
      await sleep(200);
    }
  }
  const media = (root: string, rel: string) => {
    const dir = path.join(root, rel);
    return fs.existsSync(dir) ? walk(dir).filter((f) => f.endsWith('.ts')) : [];
  };

  it('copies the ordinary clip (equal sha256, registered), skips the twin, and finishes after the main went away mid-transfer', async function () {
    await startMain();
    // 250 kB/s: the clip (~6 s at the test pattern's 2 Mbit/s, ~2 MB) takes several seconds to
    // cross, so the main can be stopped in the middle (at 40 kB/s it took ~50 s, most of the suite)
    await startBackup(0.25);

    // bad input is refused, and Catch sees it
    const bad = await backup!.request('POST', '/tm', { command: 'format-disk' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /unknown command "format-disk"/);
    const notObject = await backup!.request('POST', '/tm', [1, 2]);
    assert.equal(notObject.status, 400);
    assert.match(notObject.body.error, /must be a command object/);
    assert.ok((await events(backup!)).some((e) => e.node === 'catch' && /format-disk/.test(String(e.payload))));

    for (const [ch, id, b] of [
      [1, 'ord', 'off'],
      [2, 'prog', 'on'],
    ] as const) {
      const add = await main!.request('POST', `/cmd/${ch}`, { command: 'add', line: { id, title: id === 'ord' ? 'Ordinary' : 'Live Show', backup: b } });
      assert.equal(add.status, 200, JSON.stringify(add.body));
      assert.equal((await main!.request('POST', `/cmd/${ch}`, { command: 'start', line: { id } })).status, 200);
    }
    await waitStatus(main!, 1, 'ord', 'recording');
    await waitStatus(main!, 2, 'prog', 'recording');
    await waitStatus(backup!, 1, 'prog', 'recording');
    await sleep(6000);
    for (const [ch, id] of [
      [1, 'ord'],
      [2, 'prog'],
    ] as const)
      assert.equal((await main!.request('POST', `/cmd/${ch}`, { command: 'stop', line: { id } })).status, 200);
    const ord = await waitStatus(main!, 1, 'ord', 'stopped');
    const prog = await waitStatus(main!, 2, 'prog', 'stopped');
    await waitStatus(backup!, 1, 'prog', 'stopped');

    const skipped = await waitEvent(backup!, (e) => e.node === 'transfer-manager' && e.topic === 'skipped', 'the twin skipped', 30000);
    assert.equal(skipped.payload.clipId, prog.clipId);
    assert.match(skipped.payload.reason, /Backup=On/);

    // in the middle of the transfer: stop the main
    await waitEvent(
      backup!,
      (e) => e.node === 'transfer-manager' && e.topic === 'progress' && e.payload.clipId === ord.clipId && e.payload.bytesDone > 0,
      'transfer started',
      30000,
    );
    assert.ok(!(await events(backup!)).some((e) => e.topic === 'transferred'), 'not finished yet when the main is stopped');
    await main!.stop();
    main = null;
    await waitEvent(backup!, (e) => e.node === 'transfer-manager' && e.topic === 'progress' && e.payload.phase === 'waiting', 'waiting for the main', 30000);
    await sleep(2000); // a fixed wait: the transfer waits through a main that stays away, and does not give up
    await startMain();
    const done = await waitEvent(backup!, (e) => e.node === 'transfer-manager' && e.topic === 'transferred', 'the clip transferred', 120000);
    assert.equal(done.payload.clipId, ord.clipId);
    assert.ok(done.payload.attempts >= 2, 'the transfer was resumed after the main came back');

    // every segment of the ordinary clip, with the main's sha256
    const rootM = path.join(dirM, 'store');
    const rootB = path.join(dirB, 'store');
    const mainFiles = media(rootM, 'main-1/ch01');
    assert.ok(mainFiles.length >= 4, `the main recorded ${mainFiles.length} segments`);
    for (const f of mainFiles) {
      const rel = path.relative(rootM, f);
      const copy = path.join(rootB, rel);
      assert.ok(fs.existsSync(copy), `${rel} was copied`);
      assert.equal(sha(copy), sha(f), `${rel} has the same sha256`);
    }
    assert.equal(done.payload.segmentsCopied + done.payload.segmentsSkipped, mainFiles.length);
    // nothing of the twin: the backup's copy of it is its own Aux recording
    assert.deepEqual(media(rootB, 'main-1/ch02'), [], 'the Backup=On clip is not copied');
    assert.ok(media(rootB, 'backup-1/ch01').length > 0, 'the Aux twin is on the backup');
    const db = new Database(path.join(dirB, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    try {
      const row = db.prepare('SELECT data FROM clips WHERE id = ?').get(ord.clipId) as { data: string } | undefined;
      assert.ok(row, 'the clip is registered on the backup');
      const c = JSON.parse(row!.data);
      assert.equal(c.serverId, 'main-1');
      assert.equal(c.attributes.transferredFrom, 'main-1');
      assert.equal(c.attributes.transferState, 'transferred');
      const segs = db.prepare('SELECT COUNT(*) AS n FROM segments WHERE clip_id = ?').get(ord.clipId) as { n: number };
      assert.equal(segs.n, mainFiles.length);
      assert.equal(
        db.prepare('SELECT COUNT(*) AS n FROM clips WHERE id = ?').get(prog.clipId) &&
          (db.prepare('SELECT COUNT(*) AS n FROM clips WHERE id = ?').get(prog.clipId) as { n: number }).n,
        0,
      );
    } finally {
      db.close();
    }
    assert.ok(fs.existsSync(path.join(rootB, c0(mainFiles, rootM), 'clip.json')), 'the sidecar is written');

    // the list says so, and a scan does not copy it again
    const list = await backup!.request('POST', '/tm', { command: 'list' });
    assert.equal(list.status, 200);
    const byId = new Map((list.body.transfers as { clipId: string; state: string }[]).map((t) => [t.clipId, t.state]));
    assert.equal(byId.get(ord.clipId), 'done');
    assert.equal(byId.get(prog.clipId), 'skipped');
    assert.equal((await backup!.request('POST', '/tm', { command: 'scan' })).status, 200);
    await sleep(2500); // a fixed wait: the test proves that the scan copies nothing again in it
    assert.equal((await events(backup!)).filter((e) => e.topic === 'transferred').length, 1, 'copied once');
  });

  it("reads media from the main's storage mounted on the backup, waits while nothing is mounted, and the retention deletes only the copy", async function () {
    await startMain();
    // the mount point exists but nothing is mounted on it yet: an empty folder
    const mnt = path.join(dirB, 'mnt', 'main-1');
    fs.mkdirSync(mnt, { recursive: true });
    // 30 s retention as a fraction of a day
    await startBackup(0, { shareFolder: path.join(dirB, 'mnt', '{server}'), retentionDays: 30 / 86400 });
    for (const [p, id] of [
      [main!, 'ord'],
      [backup!, 'own'],
    ] as const) {
      assert.equal((await p.request('POST', '/cmd/1', { command: 'add', line: { id, title: id } })).status, 200);
      assert.equal((await p.request('POST', '/cmd/1', { command: 'start', line: { id } })).status, 200);
    }
    await waitStatus(main!, 1, 'ord', 'recording');
    await waitStatus(backup!, 1, 'own', 'recording');
    await sleep(4000);
    for (const [p, id] of [
      [main!, 'ord'],
      [backup!, 'own'],
    ] as const)
      assert.equal((await p.request('POST', '/cmd/1', { command: 'stop', line: { id } })).status, 200);
    const ord = await waitStatus(main!, 1, 'ord', 'stopped');
    await waitStatus(backup!, 1, 'own', 'stopped');

    // the main's API answers (the clip is listed), but its bytes are on the share, which is not there yet
    // (a first wait can be for the main's peer API announcement, which the backup may hear after its first scan)
    const waiting = await waitEvent(
      backup!,
      (e) =>
        e.node === 'transfer-manager' &&
        e.topic === 'progress' &&
        e.payload.phase === 'waiting' &&
        !/has not announced its peer storage API/.test(String(e.payload.detail)),
      'waiting for the share',
      30000,
    );
    assert.match(String(waiting.payload.detail), /has no folder "main-1": not mounted yet\?/);
    assert.ok(!(await events(backup!)).some((e) => e.topic === 'transferred'));
    execFileSync('mount', ['--bind', path.join(dirM, 'store'), mnt]);
    mounted = mnt;
    const done = await waitEvent(backup!, (e) => e.node === 'transfer-manager' && e.topic === 'transferred', 'the clip transferred', 60000);
    assert.equal(done.payload.clipId, ord.clipId);
    const rootM = path.join(dirM, 'store');
    const rootB = path.join(dirB, 'store');
    const mainFiles = media(rootM, 'main-1/ch01');
    assert.ok(mainFiles.length >= 3, `the main recorded ${mainFiles.length} segments`);
    for (const f of mainFiles) assert.equal(sha(path.join(rootB, path.relative(rootM, f))), sha(f), `${path.relative(rootM, f)} has the same sha256`);
    const own = media(rootB, 'backup-1/ch01');
    assert.ok(own.length > 0);

    // retention: 30 s after the recording ended, the copy goes; the backup's own clip and the main's stay
    const deleted = await waitEvent(backup!, (e) => e.node === 'transfer-manager' && e.topic === 'deleted', 'the copy deleted by the retention', 90000);
    assert.equal(deleted.payload.clipId, ord.clipId);
    assert.match(String(deleted.payload.reason), /retention/);
    assert.deepEqual(media(rootB, 'main-1/ch01'), [], 'the copy is gone from the backup');
    assert.deepEqual(media(rootB, 'backup-1/ch01'), own, "the backup's own recording is kept");
    assert.deepEqual(media(rootM, 'main-1/ch01'), mainFiles, "the main's clip is untouched");
    const db = new Database(path.join(dirB, 'twinrec', 'catalogue.sqlite'), { readonly: true });
    try {
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM clips WHERE id = ?').get(ord.clipId) as { n: number }).n, 0, 'and from its catalogue');
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM segments WHERE clip_id = ?').get(ord.clipId) as { n: number }).n, 0);
    } finally {
      db.close();
    }
    // not copied again at the next scans
    assert.equal((await backup!.request('POST', '/tm', { command: 'scan' })).status, 200);
    await sleep(2500); // a fixed wait: the test proves that the scans copy nothing again in it
    assert.equal((await events(backup!)).filter((e) => e.topic === 'transferred').length, 1, 'copied once');
    assert.deepEqual(media(rootB, 'main-1/ch01'), []);
  });
});

/** The clip folder (relative) of the first media file. */
function c0(files: string[], root: string): string {
  return path.dirname(path.relative(root, files[0]));
}
