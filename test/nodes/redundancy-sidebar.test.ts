/**
 * The runtime side of the editor's "Redundancy" sidebar, in real Node-RED
 * processes (a main and a failover server, adminAuth on the failover server)
 * with mosquitto: GET /twinrec/overview lists the group's servers and the
 * failover log and is refused without redundancy.read; the editor's websocket
 * hears a change notice when a failover happens, when a failback is done and
 * while the restored main copies the material, never two within 500 ms.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import { events, waitCachedLine } from '../support/failover';
import { CommsClient, CommsMessage } from '../support/comms';
import { Broker, startMosquitto } from '../support/mosquitto';
import { failoverSiteFlow, ffmpegPidsFor, freePort, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';
import type { Overview } from '../../lib/failover/overview';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const bcrypt = require('bcryptjs') as { hashSync(s: string, rounds: number): string };

const SECRET = 'group-peer-secret-0123456789';
const TOPIC = 'twinrec/redundancy';

describe('redundancy sidebar (runtime): overview route and live notices on a main and a failover server', function () {
  this.timeout(300000);
  let broker: Broker;
  let dirM: string;
  let dirF: string;
  let portM: number;
  let portF: number;
  let main: NodeRedProcess | null = null;
  let fo: NodeRedProcess | null = null;
  const sockets: CommsClient[] = [];

  beforeEach(async function () {
    broker = await startMosquitto();
    dirM = tmpDir('main-1');
    dirF = tmpDir('fo-1');
    portM = await freePort();
    portF = await freePort();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const [k, p] of Object.entries({ main, fo })) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-5000)}`);
    }
    for (const s of sockets.splice(0)) s.close();
    for (const p of [main, fo]) if (p) await p.stop();
    main = fo = null;
    for (const d of [dirM, dirF]) {
      for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
    await broker.stop();
  });

  const users = {
    adminAuth: {
      type: 'credentials',
      users: [
        { username: 'viewer', password: bcrypt.hashSync('viewer-pw', 4), permissions: 'read' },
        { username: 'operator', password: bcrypt.hashSync('operator-pw', 4), permissions: ['read', 'redundancy.failback', 'redundancy.materialcopy'] },
        { username: 'stranger', password: bcrypt.hashSync('stranger-pw', 4), permissions: ['flows.read'] },
      ],
    },
  };

  async function token(p: NodeRedProcess, username: string, password: string): Promise<string> {
    const r = await p.request('POST', '/auth/token', { client_id: 'node-red-admin', grant_type: 'password', scope: '', username, password });
    assert.equal(r.status, 200, `login of ${username}: ${JSON.stringify(r.body)}`);
    return r.body.access_token as string;
  }
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  async function startMain() {
    main = await startNodeRed({
      userDir: dirM,
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        peerPort: portM,
        materialCopy: {},
        recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 1 }],
      }),
      credentials: { srv1: { peerSecret: SECRET } },
    });
    return main;
  }
  async function startFo() {
    fo = await startNodeRed({
      userDir: dirF,
      flows: failoverSiteFlow({
        serverId: 'fo-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        watched: 'main-1',
        holdDown: 1,
        overlap: 1,
        automatic: false,
        peerPort: portF,
        materialCopy: true,
      }),
      credentials: { srv1: { peerSecret: SECRET } },
      settings: users,
    });
    return fo;
  }
  async function overview(p: NodeRedProcess, headers: Record<string, string> = {}): Promise<Overview> {
    const r = await p.request('GET', '/twinrec/overview', undefined, headers);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as Overview;
  }
  async function waitOverview(p: NodeRedProcess, headers: Record<string, string>, pred: (o: Overview) => boolean, what: string, ms = 30000): Promise<Overview> {
    const end = Date.now() + ms;
    for (;;) {
      const o = await overview(p, headers);
      if (pred(o)) return o;
      if (Date.now() > end) throw new Error(`overview: ${what} not seen within ${ms} ms; last: ${JSON.stringify(o)}`);
      await sleep(200);
    }
  }
  async function lineStatus(p: NodeRedProcess, id: string) {
    const r = await p.request('POST', '/cmd/1', { command: 'list' });
    return (r.body.lines as { id: string; status: string }[]).find((l) => l.id === id)?.status;
  }
  async function waitLine(p: NodeRedProcess, id: string, status: string, ms = 30000) {
    const end = Date.now() + ms;
    for (;;) {
      const s = await lineStatus(p, id);
      if (s === status) return;
      if (Date.now() > end) throw new Error(`line ${id} is ${s}, not ${status}`);
      await sleep(200);
    }
  }
  const has = (reason: string) => (m: CommsMessage) => Array.isArray(m.data?.reasons) && m.data.reasons.includes(reason);
  /** The runtime's own clock on each notice: never two within 500 ms. */
  function assertRateLimited(c: CommsClient) {
    const at = c.messages.map((m) => m.data.at as number);
    const seq = c.messages.map((m) => m.data.seq as number);
    for (let i = 1; i < at.length; i++) {
      assert.ok(at[i] - at[i - 1] >= 500, `notices ${seq[i - 1]} and ${seq[i]} are ${at[i] - at[i - 1]} ms apart`);
      assert.ok(seq[i] > seq[i - 1], 'notices arrive in order');
    }
  }

  it('GET /twinrec/overview lists the servers and the failover log, needs redundancy.read, and the editor hears failover, failback and copy progress', async function () {
    await startMain();
    await startFo();

    // ---- the route's permission: nobody, a user without redundancy.read, then a viewer
    assert.equal((await fo!.request('GET', '/twinrec/overview')).status, 401, 'no token: refused');
    const stranger = await token(fo!, 'stranger', 'stranger-pw');
    const refused = await fo!.request('GET', '/twinrec/overview', undefined, bearer(stranger));
    assert.equal(refused.status, 401, 'a user without redundancy.read is refused');
    assert.equal(typeof refused.body === 'object' && refused.body !== null && 'servers' in refused.body, false, 'and gets no data');
    const viewer = await token(fo!, 'viewer', 'viewer-pw');
    const operator = await token(fo!, 'operator', 'operator-pw');
    const asViewer = bearer(viewer);

    // ---- the servers of the group, as the failover server's link hears them
    const o1 = await waitOverview(
      fo!,
      asViewer,
      (o) => o.servers.some((s) => s.server === 'main-1' && s.state === 'online') && o.servers.some((s) => s.server === 'fo-1' && s.state === 'online'),
      'main-1 and fo-1 online',
    );
    const m1 = o1.servers.find((s) => s.server === 'main-1')!;
    assert.deepEqual(
      { group: m1.group, role: m1.role, epoch: m1.epoch, local: m1.local, takenOverBy: m1.takenOverBy },
      { group: 'studio', role: 'main', epoch: 0, local: false, takenOverBy: null },
    );
    assert.deepEqual(
      m1.watchedBy.map((w) => [w.by, w.takenOver]),
      [['fo-1', false]],
    );
    const f1 = o1.servers.find((s) => s.server === 'fo-1')!;
    assert.deepEqual({ role: f1.role, local: f1.local }, { role: 'failover', local: true });
    assert.deepEqual(o1.local, [{ serverId: 'fo-1', group: 'studio', role: 'failover', link: 'connected', linkError: null, epoch: 0, configError: null }]);
    assert.equal(o1.failover.length, 1);
    assert.deepEqual(
      { self: o1.failover[0].self, active: o1.failover[0].active, finalized: o1.failover[0].finalized },
      { self: 'fo-1', active: [], finalized: [] },
    );
    assert.deepEqual(
      o1.copies.map((c) => c.server),
      ['fo-1'],
      'the failover server has a material-copy node',
    );
    // the main's overview (no adminAuth there) sees the same group from its side
    const om = await waitOverview(main!, {}, (o) => o.servers.some((s) => s.server === 'fo-1' && s.state === 'online'), 'fo-1 from the main');
    assert.equal(om.servers.find((s) => s.server === 'main-1')!.local, true);
    assert.deepEqual(om.failover, [], 'no failover log on the main');

    // ---- the editor's websocket: a viewer logs in and subscribes
    const foComms = await CommsClient.open(fo!.url, TOPIC, viewer);
    sockets.push(foComms);
    await assert.rejects(CommsClient.open(fo!.url, TOPIC, stranger), /login refused/, 'comms needs status.read, which the stranger lacks');

    // ---- a failover: kill -9 of the recording main
    assert.equal((await main!.request('POST', '/cmd/1', { command: 'add', line: { id: 'show', title: 'Show' } })).status, 200);
    assert.equal((await main!.request('POST', '/cmd/1', { command: 'start', line: { id: 'show' } })).status, 200);
    await waitLine(main!, 'show', 'recording');
    await waitCachedLine(dirF, 'main-1', 'show');
    const before = foComms.messages.length;
    await main!.kill9();
    main = null;
    const failoverNotice = await foComms.wait(has('failover'), 'with reason failover', 30000, before);
    assert.ok(failoverNotice.data.servers.includes('main-1'), JSON.stringify(failoverNotice.data));
    assert.equal(typeof failoverNotice.data.seq, 'number');
    assert.equal(failoverNotice.data.active, undefined, 'the notice carries no log data: the editor reads it through the route');

    const o2 = await waitOverview(
      fo!,
      asViewer,
      (o) => o.failover[0].active.length === 1 && !!o.servers.find((s) => s.server === 'main-1')?.takenOverBy,
      'the active entry',
    );
    const e = o2.failover[0].active[0];
    assert.deepEqual(
      {
        failed: e.failedServer,
        fo: e.failoverServer,
        logOf: e.logOf,
        state: e.state,
        channels: e.channels,
        canFailback: e.canFailback,
        canCopy: e.canCopy,
        blocked: e.copyBlocked,
      },
      { failed: 'main-1', fo: 'fo-1', logOf: 'fo-1', state: 'active', channels: [1], canFailback: true, canCopy: false, blocked: 'not-over' },
    );
    assert.ok(e.epoch > 0, 'a takeover raises the epoch');
    const m2 = o2.servers.find((s) => s.server === 'main-1')!;
    assert.equal(m2.state, 'offline');
    assert.equal(m2.cause, 'lwt');
    assert.deepEqual(m2.takenOverBy && { server: m2.takenOverBy.server, epoch: m2.takenOverBy.epoch, entryId: m2.takenOverBy.entryId }, {
      server: 'fo-1',
      epoch: e.epoch,
      entryId: e.id,
    });
    assert.deepEqual(
      m2.watchedBy.map((w) => [w.by, w.status, w.takenOver]),
      [['fo-1', 'failed', true]],
    );

    // ---- the main comes back; its line waits, interrupted
    await startMain();
    await waitLine(main!, 'show', 'interrupted');
    const mainComms = await CommsClient.open(main!.url, TOPIC);
    sockets.push(mainComms);
    await waitOverview(fo!, asViewer, (o) => o.servers.find((s) => s.server === 'main-1')?.state === 'online', 'main-1 online again');

    // ---- Start failback, as the sidebar does it: refused for the viewer, done for the operator
    const denied = await fo!.request('POST', '/twinrec/failback?server=fo-1', { entryId: e.id }, asViewer);
    assert.equal(denied.status, 401, 'a user without redundancy.failback is refused');
    assert.equal((await overview(fo!, asViewer)).failover[0].active[0].state, 'active', 'nothing changed');
    const beforeFb = foComms.messages.length;
    const done = await fo!.request('POST', '/twinrec/failback?server=fo-1', { entryId: e.id }, bearer(operator));
    assert.equal(done.status, 200, JSON.stringify(done.body));
    await foComms.wait(has('failback'), 'with reason failback', 30000, beforeFb);
    await waitLine(main!, 'show', 'recording');

    // ---- the restored main copies the failover period: its editor hears it progress; the failover server's log follows
    await mainComms.wait((m) => (m.data.reasons as string[]).some((r) => r.startsWith('copy-')), 'about the material copy', 60000);
    const om2 = await waitOverview(main!, {}, (o) => o.copies[0]?.tasks.some((t) => t.entryId === e.id && t.state === 'done'), 'the copy task done', 120000);
    const task = om2.copies[0].tasks.find((t) => t.entryId === e.id)!;
    assert.deepEqual(
      { server: task.server, failover: task.failoverServer, failed: task.failedServer, percent: task.percent },
      { server: 'main-1', failover: 'fo-1', failed: 'main-1', percent: 100 },
    );
    assert.ok(task.segmentsCopied + task.segmentsSkipped > 0, 'segments of the failover period were copied');
    assert.equal(om2.servers.find((s) => s.server === 'main-1')!.epoch, e.epoch, 'the restored main took the takeover epoch');
    const o3 = await waitOverview(fo!, asViewer, (o) => o.failover[0].finalized[0]?.materialCopy === 'done', 'material copy done in the log', 60000);
    const fin = o3.failover[0].finalized[0];
    assert.deepEqual(
      { id: fin.id, state: fin.state, result: fin.failbackResult, canFailback: fin.canFailback, canCopy: fin.canCopy, blocked: fin.copyBlocked },
      { id: e.id, state: 'finalized', result: 'ok', canFailback: false, canCopy: false, blocked: 'done' },
    );
    assert.deepEqual(o3.failover[0].active, []);
    assert.equal(o3.servers.find((s) => s.server === 'main-1')!.takenOverBy, null, 'nobody records in its place any more');
    assert.ok(
      (await events(fo!)).some((x) => x.topic === 'failback performed'),
      'the failover-watch saw the failback',
    );

    // ---- Start material copying on the failover server, as the sidebar sends it (by entry): refused with the reason
    const copyDenied = await fo!.request('POST', '/twinrec/material-copy/start?server=fo-1', { entryId: e.id }, asViewer);
    assert.equal(copyDenied.status, 401, 'a user without redundancy.materialcopy is refused');
    const copyDone = await fo!.request('POST', '/twinrec/material-copy/start?server=fo-1', { entryId: e.id }, bearer(operator));
    assert.deepEqual([copyDone.status, copyDone.body.check], [409, 'done'], JSON.stringify(copyDone.body));
    const copyNone = await fo!.request('POST', '/twinrec/material-copy/start?server=fo-1', { entryId: e.id + 1000 }, bearer(operator));
    assert.equal(copyNone.status, 404);
    const copyBad = await fo!.request('POST', '/twinrec/material-copy/start?server=fo-1', { entryId: 'one' }, bearer(operator));
    assert.equal(copyBad.status, 400);
    assert.match(copyBad.body.error, /give taskId .* or entryId/);

    // ---- never two notices within 500 ms, on either server
    assert.ok(foComms.messages.length >= 2 && mainComms.messages.length >= 1);
    assertRateLimited(foComms);
    assertRateLimited(mainComms);
  });

  it('GET /twinrec/overview refuses a bad ?finalized with a sentence, and answers an empty overview without redundancy nodes', async function () {
    fo = await startNodeRed({ userDir: dirF, flows: [{ id: 'tab1', type: 'tab', label: 'empty' }] });
    const bad = await fo.request('GET', '/twinrec/overview?finalized=lots');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /^finalized must be a whole number of entries from 0 to 1000/);
    const o = await overview(fo);
    assert.deepEqual(
      { local: o.local, servers: o.servers, failover: o.failover, copies: o.copies, transfers: o.transfers },
      { local: [], servers: [], failover: [], copies: [], transfers: [] },
    );
    // the plugin is listed for the editor, with its catalogue
    const plugins = await fo.request('GET', '/plugins', undefined, { accept: 'application/json' });
    assert.ok(
      (plugins.body as { id: string }[]).some((p) => p.id === '@twinrec/node-red-recording-redundancy/redundancy-sidebar'),
      JSON.stringify(plugins.body),
    );
    const html = await fo.request('GET', '/plugins', undefined, { accept: 'text/html' });
    assert.match(String(html.body), /RED\.plugins\.registerPlugin\('twinrec-redundancy-sidebar'/);
    const msgs = await fo.request('GET', '/plugins/messages?lng=en-US', undefined, { accept: 'application/json' });
    assert.equal(msgs.body['@twinrec/node-red-recording-redundancy/redundancy-sidebar']['redundancy-sidebar'].entry.startFailback, 'Start failback');
  });
});
