/**
 * The Node-RED editor, driven in Debian's chromium against a real Node-RED
 * process running this package: the palette shows every flow node under
 * "redundancy"; every node's edit dialog (config nodes through the pencil
 * button of a node that uses them) opens, marks invalid values and saves valid
 * ones; every node has help, an icon and a palette label.
 *
 * The list of node types is read from package.json "node-red.nodes" and the
 * registerType calls of the .html files, so a new node is checked without
 * editing this file (and fails until it has a dialog case below).
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { Page } from 'playwright-core';
import { PACKAGE_NAME, PACKAGE_ROOT } from '../../demo/site';
import {
  closeSharedBrowser,
  deploy,
  EditorSession,
  fieldHasError,
  fieldSelector,
  filterPalette,
  importNodes,
  login,
  newEditorSession,
  openEditor,
  openNodeDialog,
  packageNodeTypes,
  pressDone,
  setField,
  waitForEditorReady,
  waitForLoginFailed,
  waitForTrayIdle,
} from '../support/browser';
import { NodeRedProcess, startNodeRed } from '../support/nodered';
import { tmpDir } from '../support/nr';

const TYPES = packageNodeTypes();
const FLOW_TYPES = TYPES.filter((t) => t.category !== 'config');
const CONFIG_TYPES = TYPES.filter((t) => t.category === 'config');

/** Settings of the test Node-RED: no palette manager (it would fetch the public catalogue). */
const SETTINGS = { externalModules: { palette: { allowInstall: false } } };
const TAB = { id: 'tab1', type: 'tab', label: 'editor test' };

/** Config nodes of every config type of the package, two of each (a config select needs another choice to change to). */
const CONFIG_NODES: Record<string, object[]> = {
  'redundancy-server': [
    {
      id: 'srv1',
      type: 'redundancy-server',
      group: 'studio',
      serverId: 'main-1',
      role: 'main',
      storageRoot: 'recordings',
      durability: 'NORMAL',
      brokerUrl: '',
      keepalive: 2,
      heartbeatMs: 250,
      peerHost: '127.0.0.1',
      peerPort: '',
      peerUrl: '',
    },
    {
      id: 'srv2',
      type: 'redundancy-server',
      group: 'studio',
      serverId: 'backup-1',
      role: 'backup',
      storageRoot: 'recordings',
      durability: 'NORMAL',
      brokerUrl: '',
      keepalive: 2,
      heartbeatMs: 250,
      peerHost: '127.0.0.1',
      peerPort: '',
      peerUrl: '',
    },
  ],
  'onvif-camera': [
    { id: 'cam1', type: 'onvif-camera', host: '192.0.2.10', port: 80, path: '/onvif/device_service', profileToken: '', resolution: '' },
    { id: 'cam2', type: 'onvif-camera', host: '192.0.2.11', port: 80, path: '/onvif/device_service', profileToken: '', resolution: '' },
  ],
  'gpio-device': [
    {
      id: 'dev1',
      type: 'gpio-device',
      transport: 'tcp',
      host: '192.0.2.20',
      port: 502,
      serialPath: '',
      baudRate: 9600,
      parity: 'none',
      unitId: 1,
      pollMs: 50,
      timeoutMs: 1000,
      queueMax: 32,
    },
    {
      id: 'dev2',
      type: 'gpio-device',
      transport: 'tcp',
      host: '192.0.2.21',
      port: 502,
      serialPath: '',
      baudRate: 9600,
      parity: 'none',
      unitId: 1,
      pollMs: 50,
      timeoutMs: 1000,
      queueMax: 32,
    },
  ],
};

/** A valid node of every flow type (properties not given take the node's defaults on import). */
const FLOW_NODES: Record<string, Record<string, unknown>> = {
  recorder: { server: 'srv1', channel: 1, channelName: 'Studio A', sourceType: 'testpattern' },
  'backup-link': { server: 'srv1' },
  'failover-watch': { server: 'srv1', watched: 'main-1' },
  failback: { server: 'srv1', automatic: true },
  'material-copy': { server: 'srv1' },
  'transfer-manager': { server: 'srv1', mainServer: 'main-1', channels: '1' },
  'gpio-in': { device: 'dev1', area: 'discrete', address: 0 },
  'gpio-out': { device: 'dev1', target: 'coil', address: 0, follow: '' },
  'studio-control': { prefix: 'twinrec/studio', prefixType: 'str', server: '', serverType: 'str' },
  'onvif-event': { camera: 'cam1', filter: '' },
};

interface FieldCase {
  field: string;
  /** Fields set first (for example the source type that makes a URL required). */
  setup?: Record<string, string | boolean>;
  /** Values the dialog must mark as errors. */
  invalid?: string[];
  /** A value the dialog accepts and saves. */
  valid: string | boolean;
  /** The saved property when it differs from the value typed (e.g. a number). */
  saved?: unknown;
}

/** Per node type: fields with values the editor must refuse, and a value it must save. */
const DIALOG_CASES: Record<string, FieldCase[]> = {
  recorder: [
    { field: 'channel', invalid: ['0', '1000', 'abc'], valid: '7' },
    { field: 'segmentSeconds', invalid: ['0', '601'], valid: '10' },
    { field: 'url', setup: { sourceType: 'url' }, invalid: ['not a url'], valid: 'rtsp://192.0.2.30/stream' },
    { field: 'backupChannel', setup: { backupServer: 'backup-1' }, invalid: ['0'], valid: '3' },
    { field: 'camera', setup: { sourceType: 'onvif' }, invalid: ['_ADD_'], valid: 'cam2' },
    { field: 'server', invalid: ['_ADD_'], valid: 'srv2' },
  ],
  'backup-link': [{ field: 'server', invalid: ['_ADD_'], valid: 'srv2' }],
  'failover-watch': [
    { field: 'watched', invalid: ['bad server!', ''], valid: 'main-2 127.0.0.1:1880' },
    { field: 'heartbeatTimeout', invalid: ['abc'], valid: '900' },
  ],
  failback: [
    { field: 'server', invalid: ['_ADD_'], valid: 'srv2' },
    { field: 'automatic', valid: false },
  ],
  'material-copy': [
    { field: 'bandwidth', invalid: ['abc'], valid: '50' },
    { field: 'shareFolder', invalid: ['relative/dir', '/srv/../etc'], valid: '/srv/share' },
  ],
  'transfer-manager': [
    { field: 'mainServer', invalid: ['bad id!', ''], valid: 'main-2' },
    { field: 'channels', invalid: ['1-x'], valid: '1-4,7' },
    { field: 'shareFolder', invalid: ['relative/dir'], valid: '/srv/share' },
  ],
  'gpio-in': [
    { field: 'address', invalid: ['99999', '-1', ''], valid: '12' },
    { field: 'bit', setup: { area: 'holding' }, invalid: ['16'], valid: '3' },
    { field: 'debounce', invalid: ['-5'], valid: '50' },
    { field: 'device', invalid: ['_ADD_'], valid: 'dev2' },
  ],
  'gpio-out': [
    { field: 'address', invalid: ['70000'], valid: '3' },
    { field: 'channel', setup: { follow: 'recording' }, invalid: ['0'], valid: '2' },
  ],
  'studio-control': [
    { field: 'prefix', invalid: ['a/#', '/abs', 'trailing/'], valid: 'twinrec/studio2' },
    { field: 'server', invalid: ['bad id!'], valid: 'main-1' },
  ],
  'onvif-event': [
    { field: 'filter', invalid: ['bad!'], valid: 'motion, tamper' },
    { field: 'camera', invalid: ['_ADD_'], valid: 'cam2' },
  ],
  'redundancy-server': [
    { field: 'serverId', invalid: ['bad id!', ''], valid: 'main-9' },
    { field: 'group', invalid: ['-group'], valid: 'studio-b' },
    { field: 'keepalive', invalid: ['0', 'abc'], valid: '5' },
    { field: 'brokerUrl', invalid: ['http://192.0.2.1'], valid: 'mqtt://127.0.0.1:1883' },
    { field: 'peerPort', invalid: ['70000'], valid: '8443' },
  ],
  'onvif-camera': [
    { field: 'port', invalid: ['0', '70000'], valid: '8080' },
    { field: 'resolution', invalid: ['big'], valid: '1920x1080' },
    { field: 'host', invalid: [''], valid: '192.0.2.12' },
  ],
  'gpio-device': [
    { field: 'host', invalid: ['bad host!'], valid: '192.0.2.22' },
    { field: 'port', invalid: ['70000'], valid: '5020' },
    { field: 'unitId', invalid: ['300'], valid: '2' },
    { field: 'serialPath', setup: { transport: 'rtu' }, invalid: [''], valid: '/dev/ttyUSB0' },
  ],
};

const nodeId = (type: string) => `n-${type}`;

/** Every config node and one node of every flow type, laid out on the test tab. */
function allNodes(): object[] {
  const nodes: object[] = Object.values(CONFIG_NODES).flat();
  FLOW_TYPES.forEach((t, i) => {
    nodes.push({
      id: nodeId(t.type),
      type: t.type,
      z: TAB.id,
      name: '',
      x: 160 + 280 * (i % 2),
      y: 60 + 60 * Math.floor(i / 2),
      wires: [],
      ...(FLOW_NODES[t.type] ?? {}),
    });
  });
  return nodes;
}

/** The first paragraph of a node type's help as the package ships it (locales/en-US or the node's .html). */
function helpFirstParagraph(type: string, nodeHtml: string): string {
  const dir = path.dirname(nodeHtml);
  const localeDir = path.join(dir, 'locales', 'en-US');
  const files = [
    ...(fs.existsSync(localeDir)
      ? fs
          .readdirSync(localeDir)
          .filter((f) => f.endsWith('.html'))
          .map((f) => path.join(localeDir, f))
      : []),
    nodeHtml,
  ];
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    const m = new RegExp(`<script[^>]*data-help-name=["']${type}["'][^>]*>([\\s\\S]*?)</script>`).exec(text);
    if (!m) continue;
    const p = /<p[^>]*>([\s\S]*?)<\/p>/.exec(m[1]);
    if (!p) return '';
    return p[1]
      .replace(/<[^>]+>/g, '')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&amp;/g, '&')
      .replace(/\s+/g, ' ')
      .trim();
  }
  return '';
}

const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

describe('Node-RED editor in chromium: palette, edit dialogs, help and icons of every node', function () {
  this.timeout(300000);
  let p: NodeRedProcess;
  let dir = '';
  let s: EditorSession | null = null;

  before(async function () {
    dir = tmpDir('editor');
    p = await startNodeRed({ userDir: dir, flows: [TAB], settings: SETTINGS });
  });
  after(async function () {
    await closeSharedBrowser();
    if (p) await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async function () {
    s = await openEditor(p.url);
  });
  afterEach(async function () {
    if (s) await s.close();
    s = null;
  });

  /** No exception or console error in the page during the test. */
  function assertNoPageErrors(): void {
    assert.deepEqual(s!.errors, [], `errors in the editor page:\n${s!.errors.join('\n')}`);
  }

  it('reads the node types of the package: flow nodes and config nodes, each with a dialog case', function () {
    assert.ok(FLOW_TYPES.length >= 10, FLOW_TYPES.map((t) => t.type).join(', '));
    assert.deepEqual(CONFIG_TYPES.map((t) => t.type).sort(), ['gpio-device', 'onvif-camera', 'redundancy-server']);
    for (const t of FLOW_TYPES) assert.equal(t.category, 'redundancy', `${t.type} is in palette category ${t.category}`);
    for (const t of TYPES) assert.ok(DIALOG_CASES[t.type], `no dialog case for node type ${t.type}: add one to DIALOG_CASES`);
    for (const t of FLOW_TYPES) assert.ok(FLOW_NODES[t.type], `no valid node of type ${t.type} in FLOW_NODES`);
  });

  it('the palette shows every flow node under "redundancy" with its label and tooltip, and no config node', async function () {
    const page = s!.page;
    const shown = await page.evaluate(() => {
      const $ = (window as any).$;
      return $('#red-ui-palette-container-redundancy .red-ui-palette-node')
        .map((_i: number, e: Element) => ({
          type: $(e).attr('data-palette-type'),
          label: $(e).attr('data-palette-label'),
          text: $(e).find('.red-ui-palette-label').text(),
        }))
        .get();
    });
    assert.deepEqual(shown.map((x: any) => x.type).sort(), FLOW_TYPES.map((t) => t.type).sort());
    for (const c of CONFIG_TYPES) {
      assert.equal(await page.locator(`#red-ui-palette-container [data-palette-type="${c.type}"]`).count(), 0, `config node ${c.type} in the palette`);
    }
    for (const t of FLOW_TYPES) {
      const def = await page.evaluate((type) => {
        const d = (window as any).RED.nodes.getType(type);
        return { paletteLabel: typeof d.paletteLabel === 'function' ? d.paletteLabel.call(d) : d.paletteLabel };
      }, t.type);
      const entry = shown.find((x: any) => x.type === t.type);
      assert.ok(def.paletteLabel, `${t.type} has no paletteLabel`);
      assert.equal(entry.label, def.paletteLabel, `${t.type}: palette label`);
      assert.equal(norm(entry.text).replace(/\s/g, ''), def.paletteLabel.replace(/\s/g, ''), `${t.type}: shown label`);
      // a user finds it by typing its name into the palette filter, and its tooltip is the help's first paragraph
      await filterPalette(page, t.type);
      const el = page.locator(`#red-ui-palette-container-redundancy [data-palette-type="${t.type}"]`);
      assert.ok(await el.isVisible(), `${t.type} not shown when filtering the palette for it`);
      const others = await page.evaluate((type) => {
        const $ = (window as any).$;
        return $('#red-ui-palette-container-redundancy .red-ui-palette-node:visible')
          .map((_i: number, e: Element) => $(e).attr('data-palette-type'))
          .get()
          .filter((x: string) => !x.includes(type));
      }, t.type);
      assert.deepEqual(others, [], `filter "${t.type}" leaves other nodes shown`);
      await el.hover();
      const tip = page.locator('.red-ui-popover:visible');
      await tip.first().waitFor({ state: 'visible', timeout: 5000 });
      const want = helpFirstParagraph(t.type, t.html);
      assert.ok(want, `${t.type}: no first paragraph in its help`);
      assert.ok(norm(await tip.first().innerText()).includes(want), `${t.type}: tooltip does not show "${want}"`);
      await page.mouse.move(700, 400);
      await page
        .locator('.red-ui-popover:visible')
        .first()
        .waitFor({ state: 'hidden', timeout: 5000 })
        .catch(() => undefined);
    }
    await filterPalette(page, '');
    assertNoPageErrors();
  });

  it('every flow node can be dragged from the palette onto the workspace', async function () {
    const page = s!.page;
    const chart = (await page.locator('#red-ui-workspace-chart').boundingBox())!;
    for (const [i, t] of FLOW_TYPES.entries()) {
      await filterPalette(page, t.type);
      const el = page.locator(`#red-ui-palette-container-redundancy [data-palette-type="${t.type}"]`);
      await el.hover(); // waits until the filtered palette has stopped moving
      const box = (await el.boundingBox())!;
      const from = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
      const to = { x: chart.x + 200 + 250 * (i % 2), y: chart.y + 60 + 50 * Math.floor(i / 2) };
      const before = await page.evaluate((type) => (window as any).RED.nodes.filterNodes({ type }).length, t.type);
      await page.mouse.move(from.x, from.y);
      await page.mouse.down();
      await page.mouse.move(from.x + 10, from.y + 5, { steps: 3 }); // past the drag threshold
      await page.mouse.move(to.x, to.y, { steps: 12 });
      await page.mouse.up();
      await page
        .waitForFunction(({ type, n }) => (window as any).RED.nodes.filterNodes({ type }).length > n, { type: t.type, n: before }, { timeout: 3000 })
        .catch(() => undefined);
      const after = await page.evaluate((type) => (window as any).RED.nodes.filterNodes({ type }).map((n: any) => ({ z: n.z, x: n.x })), t.type);
      assert.equal(after.length, before + 1, `${t.type} was not added by dragging it from the palette`);
      assert.equal(after[after.length - 1].z, TAB.id);
    }
    await filterPalette(page, '');
    assertNoPageErrors();
  });

  it('every node has help in the Help sidebar (first paragraph, then Inputs/Outputs/Details as the core nodes)', async function () {
    const page = s!.page;
    for (const t of TYPES) {
      const shown = await page.evaluate((type) => {
        const RED = (window as any).RED;
        const $ = (window as any).$;
        const def = RED.nodes.getType(type);
        RED.sidebar.help.show(type);
        const section = $('.red-ui-sidebar-info .red-ui-help-title').parent();
        return {
          registered: !!def,
          inputs: def?.inputs ?? 0,
          outputs: def?.outputs ?? 0,
          visible: section.is(':visible'),
          title: section.find('.red-ui-help-title').text(),
          first: section.find('.red-ui-help p').first().text(),
          headers: section
            .find('.red-ui-help h3')
            .map((_i: number, e: Element) => $(e).text().trim())
            .get(),
          none: section.find('.red-ui-help-info-none').length,
        };
      }, t.type);
      assert.ok(shown.registered, `${t.type} is not registered in the editor`);
      assert.ok(shown.visible, `${t.type}: the Help sidebar is not shown`);
      assert.equal(shown.none, 0, `${t.type}: the Help sidebar says there is no help`);
      const want = helpFirstParagraph(t.type, t.html);
      assert.ok(want.length > 20, `${t.type}: help has no real first paragraph ("${want}")`);
      assert.equal(norm(shown.first), want, `${t.type}: first paragraph in the Help sidebar`);
      if (shown.inputs > 0) assert.ok(shown.headers.includes('Inputs'), `${t.type}: help has no Inputs section (${shown.headers})`);
      if (shown.outputs > 0) assert.ok(shown.headers.includes('Outputs'), `${t.type}: help has no Outputs section (${shown.headers})`);
      assert.ok(shown.headers.includes('Details'), `${t.type}: help has no Details section (${shown.headers})`);
    }
    assertNoPageErrors();
  });

  it("every flow node shows the package's own icon in the palette and on the workspace", async function () {
    const page = s!.page;
    await importNodes(page, allNodes());
    for (const t of FLOW_TYPES) {
      const got = await page.evaluate(
        async ({ type, id }) => {
          const RED = (window as any).RED;
          const $ = (window as any).$;
          const def = RED.nodes.getType(type);
          const icon = typeof def.icon === 'function' ? def.icon.call(RED.nodes.node(id)) : def.icon;
          const bg = $(`#red-ui-palette-container-redundancy [data-palette-type="${type}"] .red-ui-palette-icon`).css('background-image') || '';
          const onCanvas = $(`[id="${id}"] image.red-ui-flow-node-icon`).attr('xlink:href') || $(`[id="${id}"] image.red-ui-flow-node-icon`).attr('href') || '';
          const url = (bg.match(/url\("?([^")]+)"?\)/) || [])[1] || '';
          const res = url ? await fetch(url) : null;
          return { icon, palette: url, onCanvas, status: res ? res.status : 0, body: res ? await res.text() : '' };
        },
        { type: t.type, id: nodeId(t.type) },
      );
      assert.ok(got.icon, `${t.type} defines no icon`);
      const want = `icons/${PACKAGE_NAME}/${got.icon}`;
      assert.ok(got.palette.endsWith(want), `${t.type}: palette icon is ${got.palette}, not ${want} (Node-RED did not find ${got.icon} in the package)`);
      assert.ok(got.onCanvas.endsWith(want), `${t.type}: workspace icon is ${got.onCanvas}, not ${want}`);
      assert.equal(got.status, 200);
      const files = packageFiles(got.icon).map((f) => fs.readFileSync(f, 'utf8'));
      assert.ok(files.includes(got.body), `${t.type}: the served icon is not the package's ${got.icon}`);
    }
    assertNoPageErrors();
  });

  for (const t of TYPES) {
    const isConfig = t.category === 'config';
    it(`${t.type}: the edit dialog${isConfig ? ' (from the pencil button of a node using it)' : ''} opens, marks invalid values and saves valid ones`, async function () {
      const page = s!.page;
      await importNodes(page, allNodes());
      const cases = DIALOG_CASES[t.type];
      assert.ok(cases?.length, `no dialog case for ${t.type}`);
      // a node that uses the config node: its dialog's pencil button opens the config node's dialog
      const host = isConfig ? await hostOf(page, t.type) : null;
      const id = isConfig ? CONFIG_IDS[t.type] : nodeId(t.type);
      const prefix = isConfig ? 'node-config-input' : 'node-input';
      const flowId = isConfig ? nodeId(host!.type) : id;
      assert.equal(
        await nodeState(page, id, 'valid'),
        true,
        `the imported ${t.type} is not valid: ${JSON.stringify(await nodeState(page, id, 'validationErrors'))}`,
      );

      const open = async () => {
        await openNodeDialog(page, flowId);
        if (isConfig) {
          await page.selectOption(fieldSelector('node-input', host!.property), id);
          await page.click(`[id="node-input-btn-${host!.property}-edit"]`);
          await page.waitForSelector('#node-config-dialog-ok', { state: 'visible' });
          await waitForTrayIdle(page);
        }
        await checkDialogTexts(page, t.type);
      };
      const done = async () => {
        await pressDone(page);
        if (isConfig) await pressDone(page);
      };

      for (const c of cases) {
        if (c.invalid?.length) {
          await open();
          for (const [f, v] of Object.entries(c.setup ?? {})) await setField(page, prefix, f, v);
          for (const v of c.invalid) {
            await setField(page, prefix, c.field, v);
            assert.equal(
              await fieldHasError(page, prefix, c.field),
              true,
              `${t.type}.${c.field} = ${JSON.stringify(v)}: the field is not marked invalid (class input-error)`,
            );
          }
          // save the first invalid value (the one the node's own validator refuses)
          if (c.invalid.length > 1) await setField(page, prefix, c.field, c.invalid[0]);
          await done();
          const st = await nodeView(page, id, flowId, c.field);
          assert.equal(st.valid, false, `${t.type}.${c.field} = ${JSON.stringify(c.invalid[0])} saved: the node is not invalid`);
          assert.equal(st.flowNodeError, true, `${t.type}.${c.field} invalid: the node on the workspace shows no error mark`);
          // an empty required field is refused by the editor itself, before the node's validator
          if (st.hasValidator && c.invalid[0] !== '') {
            const readable = st.errors.filter(
              (e: unknown) => typeof e === 'string' && e !== c.field && /\s/.test(e) && !/^[\w@/-]+:[\w.-]+$|^[\w-]+(\.[\w-]+)+$/.test(e),
            );
            assert.ok(readable.length > 0, `${t.type}.${c.field}: the editor reports ${JSON.stringify(st.errors)}, not a readable message`);
          }
        }
        await open();
        for (const [f, v] of Object.entries(c.setup ?? {})) await setField(page, prefix, f, v);
        await setField(page, prefix, c.field, c.valid);
        assert.equal(await fieldHasError(page, prefix, c.field), false, `${t.type}.${c.field} = ${JSON.stringify(c.valid)}: a valid value is marked invalid`);
        await done();
        const saved = await nodeState(page, id, c.field);
        assert.equal(String(saved), String(c.saved ?? c.valid), `${t.type}.${c.field}: saved ${JSON.stringify(saved)}`);
        const st = await nodeView(page, id, flowId, c.field);
        assert.equal(st.valid, true, `${t.type}.${c.field} = ${JSON.stringify(c.valid)}: the node is still invalid: ${JSON.stringify(st.errors)}`);
        assert.equal(st.flowNodeError, false, `${t.type}.${c.field} valid: the node on the workspace still shows an error mark`);
      }
      assertNoPageErrors();
    });
  }
});

describe('Node-RED editor in chromium: values saved in the dialogs reach the runtime on Deploy', function () {
  this.timeout(300000);
  let p: NodeRedProcess;
  let dir = '';
  let s: EditorSession | null = null;

  before(async function () {
    dir = tmpDir('editor-deploy');
    p = await startNodeRed({ userDir: dir, flows: [TAB], settings: SETTINGS });
  });
  after(async function () {
    await closeSharedBrowser();
    if (p) await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async function () {
    if (s) await s.close();
    s = null;
  });

  it('a recorder channel and a gpio-in address changed in their dialogs are in the deployed flows', async function () {
    s = await openEditor(p.url);
    const page = s.page;
    const nodes = allNodes().filter((n: any) => ['recorder', 'gpio-in', 'redundancy-server', 'gpio-device'].includes(n.type));
    await importNodes(page, nodes);
    await openNodeDialog(page, nodeId('recorder'));
    await setField(page, 'node-input', 'channel', '42');
    await pressDone(page);
    await openNodeDialog(page, nodeId('gpio-in'));
    await setField(page, 'node-input', 'address', '17');
    await pressDone(page);
    await deploy(page);
    const flows = await p.request('GET', '/flows', undefined, { 'Node-RED-API-Version': 'v2' });
    assert.equal(flows.status, 200);
    const list = flows.body.flows as any[];
    assert.equal(String(list.find((n) => n.id === nodeId('recorder'))?.channel), '42');
    assert.equal(String(list.find((n) => n.id === nodeId('gpio-in'))?.address), '17');
    assert.deepEqual(s.errors, []);
  });
});

const CONFIG_IDS: Record<string, string> = { 'redundancy-server': 'srv1', 'onvif-camera': 'cam1', 'gpio-device': 'dev1' };

/** Files of the package with this name (icons may live beside each node or at the root). */
function packageFiles(name: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.name === name) out.push(f);
    }
  };
  walk(path.join(PACKAGE_ROOT, 'nodes'));
  if (fs.existsSync(path.join(PACKAGE_ROOT, 'icons'))) walk(path.join(PACKAGE_ROOT, 'icons'));
  return out;
}

/** The first flow node type (in package order) with a required property of this config type (always shown in its dialog). */
async function hostOf(page: Page, configType: string): Promise<{ type: string; property: string }> {
  const host = await page.evaluate(
    ({ types, configType }) => {
      const RED = (window as any).RED;
      for (const type of types) {
        const d = RED.nodes.getType(type).defaults;
        for (const k of Object.keys(d)) if (d[k].type === configType && d[k].required) return { type, property: k };
      }
      return null;
    },
    { types: FLOW_TYPES.map((t) => t.type), configType },
  );
  assert.ok(host, `no flow node uses a ${configType}`);
  return host!;
}

async function nodeState(page: Page, id: string, prop: string): Promise<any> {
  return page.evaluate(({ id, prop }) => (window as any).RED.nodes.node(id)?.[prop], { id, prop });
}

/** A node's validity as the editor holds it, and the error mark of the flow node on the workspace. */
async function nodeView(
  page: Page,
  id: string,
  flowId: string,
  field: string,
): Promise<{ valid: boolean; errors: unknown[]; flowNodeError: boolean; hasValidator: boolean }> {
  // the workspace redraws the node (and its error mark) in the next animation frames
  await page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));
  return page.evaluate(
    ({ id, flowId, field }) => {
      const RED = (window as any).RED;
      const $ = (window as any).$;
      const n = RED.nodes.node(id);
      const mark = $(`[id="${flowId}"] g.red-ui-flow-node-error`);
      return {
        valid: n.valid,
        errors: n.validationErrors || [],
        flowNodeError: mark.length > 0 && !mark.hasClass('hide') && mark.css('display') !== 'none',
        hasValidator: typeof n._def.defaults[field]?.validate === 'function',
      };
    },
    { id, flowId, field },
  );
}

/** The open dialog's labels and placeholders are translated: none empty, none a raw message key. */
async function checkDialogTexts(page: Page, type: string): Promise<void> {
  const bad = await page.evaluate(() => {
    const $ = (window as any).$;
    const tray = $('.red-ui-tray').last();
    const out: string[] = [];
    tray.find('[data-i18n]').each((_i: number, e: Element) => {
      const spec = $(e).attr('data-i18n') as string;
      for (const part of spec.split(';')) {
        const m = /^(?:\[(\w+)\])?(.+)$/.exec(part.trim());
        if (!m) continue;
        const where = m[1] || 'text';
        const value = where === 'text' || where === 'html' || where === 'append' || where === 'prepend' ? $(e).text() : $(e).attr(where) || '';
        const key = m[2].replace(/^.*:/, '');
        if (!value.trim() || value.includes(key)) out.push(`${spec} -> "${value}"`);
      }
    });
    return out;
  });
  assert.deepEqual(bad, [], `${type}: untranslated texts in the edit dialog`);
}

describe('Node-RED editor in chromium with adminAuth: the login helper', function () {
  this.timeout(300000);
  let p: NodeRedProcess;
  let dir = '';
  let s: EditorSession | null = null;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bcrypt = require('bcryptjs') as { hashSync(s: string, rounds: number): string };

  before(async function () {
    dir = tmpDir('editor-auth');
    p = await startNodeRed({
      userDir: dir,
      flows: [TAB],
      settings: {
        ...SETTINGS,
        adminAuth: { type: 'credentials', users: [{ username: 'operator', password: bcrypt.hashSync('op-pw', 4), permissions: 'read' }] },
      },
    });
  });
  after(async function () {
    await closeSharedBrowser();
    if (p) await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async function () {
    if (s) await s.close();
    s = null;
  });

  it('a wrong password is refused; the right one opens the editor with the redundancy palette for a read-only user', async function () {
    s = await newEditorSession();
    const page = s.page;
    await page.goto(`${p.url}/`);
    // a wrong password: the dialog says so and stays
    await login(page, 'operator', 'wrong');
    await waitForLoginFailed(page);
    assert.equal(await page.locator('#red-ui-palette .red-ui-palette-node').count(), 0);
    // the right one loads the editor
    await login(page, 'operator', 'op-pw');
    await waitForEditorReady(page);
    const user = await page.evaluate(() => (window as any).RED.settings.user);
    assert.equal(user.username, 'operator');
    assert.equal(user.permissions, 'read');
    const types = await page.evaluate(() =>
      (window as any)
        .$('#red-ui-palette-container-redundancy .red-ui-palette-node')
        .map((_i: number, e: Element) => (window as any).$(e).attr('data-palette-type'))
        .get(),
    );
    assert.deepEqual(types.sort(), FLOW_TYPES.map((t) => t.type).sort());
    // before the login the editor's requests are refused (401), the wrong password too (403 on auth/token): nothing else went wrong
    const errors = s.errors.filter((e) => !/401 \(Unauthorized\)/.test(e) && !/403 \(Forbidden\).*\/auth\/token/.test(e));
    assert.deepEqual(errors, []);
  });
});
