/**
 * The "Redundancy" sidebar in a real editor: Debian's chromium (headless,
 * playwright-core) against a failover server's Node-RED with adminAuth, a real
 * main and mosquitto. After a real failover (kill -9 of the main) the sidebar
 * lists the main as offline and recorded by the failover server, and its
 * failover log entry; "Start failback" is refused for a user without the
 * redundancy.failback permission (with that reason on screen, nothing changed)
 * and works for one with it; the entry then moves to "Finalized" in both
 * editors without a reload (live update through comms).
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { Browser, BrowserServer, chromium, Page } from 'playwright-core';
import { waitCachedLine } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { alive, failoverSiteFlow, ffmpegPidsFor, NodeRedProcess, recorderSiteFlow, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const bcrypt = require('bcryptjs') as { hashSync(s: string, rounds: number): string };

const CHROMIUM = process.env.TWINREC_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const SIDEBAR = '#twinrec-redundancy-sidebar';
/** Set TWINREC_SCREENSHOTS to a folder to keep pictures of the sidebar (for the user guide). */
const SHOTS = process.env.TWINREC_SCREENSHOTS;
async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name) });
}

describe('redundancy sidebar in the editor (chromium): a real failover, Start failback refused without the permission and done with it', function () {
  this.timeout(300000);
  let broker: Broker;
  let dirM: string;
  let dirF: string;
  let main: NodeRedProcess | null = null;
  let fo: NodeRedProcess | null = null;
  let server: BrowserServer | null = null;
  let browser: Browser | null = null;
  const pageErrors: string[] = [];

  beforeEach(async function () {
    broker = await startMosquitto();
    dirM = tmpDir('main-1');
    dirF = tmpDir('fo-1');
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const [k, p] of Object.entries({ main, fo })) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-4000)}`);
      console.log(`---- page errors\n${pageErrors.join('\n')}`);
    }
    const pid = server?.process().pid;
    await browser?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    browser = null;
    server = null;
    for (const p of [main, fo]) if (p) await p.stop();
    main = fo = null;
    for (const d of [dirM, dirF]) {
      for (const p of ffmpegPidsFor(d)) process.kill(p, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
    await broker.stop();
  });

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
  async function adminToken(): Promise<string> {
    const r = await fo!.request('POST', '/auth/token', {
      client_id: 'node-red-admin',
      grant_type: 'password',
      scope: '',
      username: 'admin',
      password: 'admin-pw',
    });
    return r.body.access_token as string;
  }
  async function entryState(id: number): Promise<string | undefined> {
    const r = await fo!.request('GET', '/twinrec/overview', undefined, { authorization: `Bearer ${await adminToken()}` });
    const f = r.body.failover[0] as { active: { id: number; state: string }[]; finalized: { id: number; state: string }[] };
    return [...f.active, ...f.finalized].find((e) => e.id === id)?.state;
  }

  /** A fresh browser context: the editor, logged in, with the Redundancy tab open. */
  async function editorAs(username: string, password: string): Promise<Page> {
    const ctx = await browser!.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(30000);
    page.on('pageerror', (e) => pageErrors.push(`${username}: ${e.message}`));
    await page.goto(`${fo!.url}/`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('#node-dialog-login-username', { state: 'visible' });
    await page.click('#node-dialog-login-username');
    await page.keyboard.type(username);
    await page.click('#node-dialog-login-password');
    await page.keyboard.type(password);
    await page.click('#node-dialog-login-submit');
    // the plugin added its tab; open it as a user does: the sidebar's tab menu (the caret), then "Redundancy"
    await page.waitForSelector('#red-ui-tab-twinrec-redundancy', { state: 'attached' });
    await page.waitForFunction(() => !(window as any).$('#red-ui-loading-progress').is(':visible'));
    await page.click('#red-ui-sidebar .red-ui-tab-link-button-menu');
    await page.click('#red-ui-tabs-menu-option-twinrec-redundancy');
    await page.waitForSelector(`${SIDEBAR}`, { state: 'visible' });
    return page;
  }

  it('lists the failover; Start failback is refused for a viewer and works for an operator; both sidebars show it finalized', async function () {
    main = await startNodeRed({
      userDir: dirM,
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 2 }],
      }),
    });
    fo = await startNodeRed({
      userDir: dirF,
      flows: failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: broker.url, watched: 'main-1', holdDown: 1, overlap: 1, automatic: false }),
      settings: {
        adminAuth: {
          type: 'credentials',
          users: [
            { username: 'admin', password: bcrypt.hashSync('admin-pw', 4), permissions: '*' },
            { username: 'viewer', password: bcrypt.hashSync('viewer-pw', 4), permissions: 'read' },
          ],
        },
      },
    });
    // a real failover: the main records, dies (kill -9) and comes back with its line interrupted
    assert.equal((await main.request('POST', '/cmd/1', { command: 'add', line: { id: 'show', title: 'Show' } })).status, 200);
    assert.equal((await main.request('POST', '/cmd/1', { command: 'start', line: { id: 'show' } })).status, 200);
    await waitLine(main, 'show', 'recording');
    await waitCachedLine(dirF, 'main-1', 'show');
    await main.kill9();
    main = null;

    server = await chromium.launchServer({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 60000 });
    browser = await chromium.connect(server.wsEndpoint());

    // ---- the viewer's editor: the failover appears (live, the tab was open before it happened or not)
    const viewer = await editorAs('viewer', 'viewer-pw');
    const activeEntry = `${SIDEBAR} .twinrec-failover-active .twinrec-failover-entry[data-failed-server="main-1"]`;
    await viewer.waitForSelector(activeEntry);
    const id = Number(await viewer.getAttribute(activeEntry, 'data-entry-id'));
    assert.ok(id >= 1);
    const mainRow = `${SIDEBAR} tr.twinrec-server[data-server="main-1"]`;
    await viewer.waitForSelector(`${mainRow}[data-state="offline"]`);
    assert.equal((await viewer.textContent(`${mainRow} .twinrec-server-role`))?.trim(), 'main');
    assert.match((await viewer.textContent(`${mainRow} .twinrec-server-state`)) ?? '', /recorded by fo-1 \(epoch [1-9]\d*\)/);
    assert.match((await viewer.textContent(`${SIDEBAR} tr.twinrec-server[data-server="fo-1"] .twinrec-server-role`)) ?? '', /failover/);
    assert.equal(await viewer.isDisabled(`${activeEntry} button.twinrec-start-copy`), true, 'no copy while the failover lasts');

    // the main comes back: its line waits for the failback
    main = await startNodeRed({
      userDir: dirM,
      flows: recorderSiteFlow({
        serverId: 'main-1',
        storageRoot: 'store',
        brokerUrl: broker.url,
        recorders: [{ channel: 1, sourceType: 'testpattern', segmentSeconds: 2 }],
      }),
    });
    await waitLine(main, 'show', 'interrupted');
    await viewer.waitForSelector(`${mainRow}[data-state="online"]`);

    await shot(viewer, 'sidebar-failover-active.png');

    // ---- the viewer may not fail back: the refusal is on screen, nothing changed
    await viewer.click(`${activeEntry} button.twinrec-start-failback`);
    await viewer.click('#twinrec-confirm-failback');
    await viewer.waitForSelector('#twinrec-confirm-failback', { state: 'hidden' });
    const refusal = viewer.locator('.red-ui-notification-error .twinrec-notify');
    await refusal.waitFor();
    assert.match((await refusal.textContent()) ?? '', /lacks the permission redundancy\.failback/);
    await shot(viewer, 'sidebar-failback-refused.png');
    assert.equal(await entryState(id), 'active');
    assert.equal(await lineStatus(main, 'show'), 'interrupted');

    // ---- the admin fails back from the sidebar
    const admin = await editorAs('admin', 'admin-pw');
    await admin.waitForSelector(
      `${SIDEBAR} .twinrec-failover-active .twinrec-failover-entry[data-entry-id="${id}"] button.twinrec-start-failback:not([disabled])`,
    );
    await admin.click(`${SIDEBAR} .twinrec-failover-entry[data-entry-id="${id}"] button.twinrec-start-failback`);
    await admin.click('#twinrec-confirm-failback');
    const ok = admin.locator('.red-ui-notification-success .twinrec-notify');
    await ok.waitFor({ timeout: 60000 });
    assert.match((await ok.textContent()) ?? '', /^Failback OK: main-1 records again/);
    await waitLine(main, 'show', 'recording');
    assert.equal(await entryState(id), 'finalized');
    const finalized = `${SIDEBAR} .twinrec-failover-finalized .twinrec-failover-entry[data-entry-id="${id}"]`;
    await admin.waitForSelector(finalized);
    assert.equal(await admin.isDisabled(`${finalized} button.twinrec-start-failback`), true);
    await shot(admin, 'sidebar-failback-done.png');
    // the viewer's sidebar follows without a reload or a click: the runtime's notice made it read again
    await viewer.waitForSelector(finalized);
    await viewer.waitForSelector(`${mainRow}[data-state="online"]`);
    assert.equal(await viewer.locator(`${SIDEBAR} .twinrec-failover-active .twinrec-failover-entry`).count(), 0);
    assert.deepEqual(pageErrors, [], 'no uncaught error in either editor');
  });
});
