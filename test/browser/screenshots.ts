/**
 * `npm run screenshots`: pictures of the editor for the README's user guide,
 * written to docs/images/ (1280x800, PNG).
 *
 * 1. The demo site (demo/demo.json, as `npm start` runs it) on a real
 *    Node-RED with a mosquitto broker: the palette with the redundancy
 *    category open, the recorder's edit dialog, and the Redundancy sidebar
 *    (when the package has it).
 * 2. The example "GPI button starts a recording, tally follows"
 *    (examples/studio/01*.json) with a pymodbus device standing in for the
 *    GPIO box, its REC button pressed: the flow, and a gpio-in edit dialog.
 *
 * Every process started here (mosquitto, pymodbus, Node-RED, ffmpeg of the
 * demo's recordings, chromium) is stopped by PID at the end, also on failure.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Page } from 'playwright-core';
import { PACKAGE_ROOT } from '../../demo/site';
import { EditorSession, openEditor, openNodeDialog, waitForTrayIdle } from '../support/browser';
import { startModbusServer, ModbusServer } from '../support/modbus';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

const OUT = path.resolve(process.env.TWINREC_SCREENSHOT_DIR ?? path.join(PACKAGE_ROOT, 'docs', 'images'));
const MAX_BYTES = 300 * 1024;
const SETTINGS = { externalModules: { palette: { allowInstall: false } } };
const written: string[] = [];

async function shot(page: Page, name: string): Promise<void> {
  await page.mouse.move(1270, 790); // no hover tooltips in the picture
  await sleep(300);
  const file = path.join(OUT, name);
  await page.screenshot({ path: file });
  const size = fs.statSync(file).size;
  if (size > MAX_BYTES) throw new Error(`${file} is ${Math.round(size / 1024)} KB, more than ${MAX_BYTES / 1024} KB`);
  written.push(`${path.relative(PACKAGE_ROOT, file)} (${Math.round(size / 1024)} KB)`);
}

/** Collapse every palette category but "redundancy" and bring that one into view. */
async function showRedundancyCategory(page: Page): Promise<void> {
  await page.evaluate(() => {
    const $ = (window as any).$;
    $('#red-ui-palette-container .red-ui-palette-category').each((_i: number, el: Element) => {
      const cat = $(el);
      const id = cat.attr('id') || '';
      const open = cat.find('.red-ui-palette-content').is(':visible');
      const want = id === 'red-ui-palette-container-redundancy';
      if (open !== want) cat.find('.red-ui-palette-header').first().trigger('click');
    });
  });
  await sleep(500);
  await page.locator('#red-ui-palette-container-redundancy').scrollIntoViewIfNeeded();
}

/** Show a flow tab, with the right-hand sidebar closed so the whole flow fits beside the palette. */
async function showFlow(page: Page, tabId: string): Promise<void> {
  await page.evaluate((id) => {
    const RED = (window as any).RED;
    RED.workspaces.show(id);
    RED.view.select({ nodes: [] });
    RED.menu.setSelected('menu-item-sidebar', false);
    RED.view.redraw(true);
  }, tabId);
  await sleep(500);
}

async function showSidebar(page: Page, tab: string): Promise<void> {
  await page.evaluate((t) => {
    const RED = (window as any).RED;
    RED.menu.setSelected('menu-item-sidebar', true);
    RED.sidebar.show(t);
  }, tab);
  await sleep(500);
}

async function siteShots(): Promise<void> {
  const dir = tmpDir('shots-demo');
  let broker: Broker | null = null;
  let p: NodeRedProcess | null = null;
  let s: EditorSession | null = null;
  const before = process.env.TWINREC_BROKER_URL;
  try {
    broker = await startMosquitto();
    process.env.TWINREC_BROKER_URL = broker.url;
    const demo = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'demo', 'demo.json'), 'utf8')) as any[];
    p = await startNodeRed({ userDir: dir, flows: demo, settings: SETTINGS });
    // the demo's timed Backup=On line starts 3 s after deploy: let both recorders show it
    await sleep(6000);
    s = await openEditor(p.url);
    const page = s.page;
    const tab = demo.find((n) => n.type === 'tab').id as string;
    await showFlow(page, tab);
    await showRedundancyCategory(page);
    await shot(page, 'palette-redundancy.png');

    const recorder = demo.find((n) => n.type === 'recorder' && n.z === tab);
    await openNodeDialog(page, recorder.id);
    await shot(page, 'recorder-dialog.png');
    await page.click('#node-dialog-cancel');
    await page.waitForSelector('#node-dialog-cancel', { state: 'detached' });
    await waitForTrayIdle(page);

    const hasSidebar = await page.evaluate(
      () => !!(window as any).RED.sidebar.containsTab?.('twinrec-redundancy') || (window as any).$('#twinrec-redundancy-sidebar').length > 0,
    );
    if (hasSidebar) {
      await showSidebar(page, 'twinrec-redundancy');
      await page.waitForSelector('#twinrec-redundancy-sidebar', { state: 'visible' });
      // the sidebar loads its overview from the admin API: wait until it names a server of the demo
      await page.waitForFunction(() => /main-1/.test((window as any).$('#twinrec-redundancy-sidebar').text()), undefined, { timeout: 15000 });
      await sleep(500);
      await shot(page, 'redundancy-sidebar.png');
    } else {
      console.log('screenshots: the package has no Redundancy sidebar (#twinrec-redundancy-sidebar): no picture of it');
    }
    if (s.errors.length) console.log(`screenshots: errors in the demo's editor page:\n${s.errors.join('\n')}`);
  } finally {
    if (s) await s.close();
    if (p) await p.stop();
    for (const pid of ffmpegPidsFor(dir)) process.kill(pid, 'SIGKILL');
    if (broker) await broker.stop();
    if (before === undefined) delete process.env.TWINREC_BROKER_URL;
    else process.env.TWINREC_BROKER_URL = before;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function studioShots(): Promise<void> {
  const dir = tmpDir('shots-studio');
  let modbus: ModbusServer | null = null;
  let p: NodeRedProcess | null = null;
  let s: EditorSession | null = null;
  try {
    const folder = path.join(PACKAGE_ROOT, 'examples', 'studio');
    const file = fs.readdirSync(folder).find((f) => /^01.*\.json$/.test(f));
    if (!file) throw new Error(`no examples/studio/01*.json`);
    const flow = JSON.parse(fs.readFileSync(path.join(folder, file), 'utf8')) as any[];
    // the GPIO box of the example, played by a pymodbus device on a free port
    modbus = await startModbusServer();
    for (const n of flow) if (n.type === 'gpio-device') n.port = modbus.port;
    p = await startNodeRed({ userDir: dir, flows: flow, settings: SETTINGS });
    await sleep(3000);
    // press the REC button (discrete input 0): line 1 records and the tally lamp follows
    await modbus.set('di', 0, 1);
    await sleep(4000);
    s = await openEditor(p.url);
    const page = s.page;
    const tab = flow.find((n) => n.type === 'tab').id as string;
    await showFlow(page, tab);
    await showRedundancyCategory(page);
    await shot(page, 'studio-gpi-flow.png');

    const gpioIn = flow.find((n) => n.type === 'gpio-in');
    await openNodeDialog(page, gpioIn.id);
    await shot(page, 'gpio-in-dialog.png');
    if (s.errors.length) console.log(`screenshots: errors in the studio example's editor page:\n${s.errors.join('\n')}`);
  } finally {
    if (s) await s.close();
    if (p) await p.stop();
    for (const pid of ffmpegPidsFor(dir)) process.kill(pid, 'SIGKILL');
    if (modbus) await modbus.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  await siteShots();
  await studioShots();
  console.log(`screenshots written:\n  ${written.join('\n  ')}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
