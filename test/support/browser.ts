/**
 * Browser tests of the Node-RED editor: Debian's chromium driven headless by
 * playwright-core (no browser download), against a real Node-RED process
 * started with ./nodered startNodeRed.
 *
 * The browser is one process tree owned by playwright, launched once and
 * shared by the sessions (a launch costs 1-2 s, and a suite opens one session
 * per test): each session is a fresh browser context (its own cookies, local
 * storage and pages, as a new browser would have). `EditorSession.close()`
 * closes the context (a test's afterEach must call it, also when the test
 * failed); `closeSharedBrowser()` ends chromium (a suite's after hook, or a
 * script's end).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { PACKAGE_ROOT } from '../../demo/site';

export const CHROMIUM_PATH = process.env.TWINREC_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** The viewport of every page (also the size of the user guide's screenshots). */
export const VIEWPORT = { width: 1280, height: 800 };

export interface EditorSession {
  /** The shared browser (see closeSharedBrowser). */
  browser: Browser;
  page: Page;
  /** Uncaught exceptions and console errors of the page, in order. */
  errors: string[];
  /** Close the session's browser context and its pages (idempotent). */
  close(): Promise<void>;
}

export function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(`no chromium at ${CHROMIUM_PATH}: install Debian's chromium (apt-get install -y chromium) or set TWINREC_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true, timeout: 60000 });
}

let shared: Promise<Browser> | null = null;

/** The browser the sessions share: launched at first use, again if it went away. */
async function sharedBrowser(): Promise<Browser> {
  if (shared) {
    const b = await shared.catch(() => null);
    if (b?.isConnected()) return b;
  }
  shared = launchChromium();
  shared.catch(() => (shared = null));
  return shared;
}

/** End the shared browser, if one runs (idempotent); the next session launches another. */
export async function closeSharedBrowser(): Promise<void> {
  const b = shared;
  shared = null;
  if (b) await (await b.catch(() => null))?.close();
}

/** A fresh browser context with one page of VIEWPORT size whose errors are collected; nothing loaded yet. */
export async function newEditorSession(): Promise<EditorSession> {
  const browser = await sharedBrowser();
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  let closed = false;
  const session: EditorSession = {
    browser,
    page: undefined as unknown as Page,
    errors: [],
    async close() {
      if (closed) return;
      closed = true;
      await context.close();
    },
  };
  try {
    const page = await context.newPage();
    session.page = page;
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => session.errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') session.errors.push(`console: ${m.text()} (${m.location().url})`);
    });
    return session;
  } catch (err) {
    await session.close();
    throw err;
  }
}

/**
 * Open the editor at `url` in a fresh browser and wait until it is ready.
 * With `login`, the editor's login dialog is answered first (adminAuth on).
 */
export async function openEditor(url: string, opts: { login?: { username: string; password: string } } = {}): Promise<EditorSession> {
  const session = await newEditorSession();
  try {
    await session.page.goto(url.replace(/\/?$/, '/'), { waitUntil: 'domcontentloaded' });
    if (opts.login) await login(session.page, opts.login.username, opts.login.password);
    await waitForEditorReady(session.page);
    return session;
  } catch (err) {
    await session.close();
    throw err;
  }
}

/** Answer the editor's login dialog (adminAuth with credentials); the editor then loads, or the dialog says the login failed. */
export async function login(page: Page, username: string, password: string): Promise<void> {
  await page.waitForSelector('#node-dialog-login-username', { state: 'visible', timeout: 30000 });
  for (const [field, value] of [
    ['username', username],
    ['password', password],
  ]) {
    await page.click(`#node-dialog-login-${field}`);
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Backspace');
    await page.keyboard.type(value);
  }
  await page.click('#node-dialog-login-submit');
}

/** Wait for the login dialog to report a failed login. */
export async function waitForLoginFailed(page: Page): Promise<void> {
  await page.waitForSelector('#node-dialog-login-failed', { state: 'visible' });
}

/**
 * The editor is ready: the loading bar is gone, a workspace is active, the
 * palette has its nodes and the node definitions of this package are registered.
 */
export async function waitForEditorReady(page: Page, timeoutMs = 40000): Promise<void> {
  await page.waitForFunction(
    () => {
      const w = window as any;
      const $ = w.$;
      if (!w.RED || !w.RED.nodes || !w.RED.workspaces || !$) return false;
      if ($('#red-ui-loading-progress').is(':visible')) return false;
      if (!w.RED.workspaces.active()) return false;
      if ($('#red-ui-palette .red-ui-palette-node').length === 0) return false;
      return !!w.RED.nodes.getType('recorder');
    },
    undefined,
    { timeout: timeoutMs, polling: 100 },
  );
}

/** A node type this package registers, as the package's own files declare it. */
export interface PackageNodeType {
  type: string;
  /** The palette category ('config' for config nodes). */
  category: string;
  /** The node set (key of package.json "node-red.nodes") that registers it. */
  set: string;
  html: string;
}

/**
 * Every node type of the package: the node sets of package.json "node-red.nodes",
 * and for each the literal `RED.nodes.registerType('type', { category: '...' })`
 * of its .html (the flow library's checker reads them the same way).
 */
export function packageNodeTypes(): PackageNodeType[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
  const out: PackageNodeType[] = [];
  for (const [set, js] of Object.entries(pkg['node-red'].nodes)) {
    const html = path.join(PACKAGE_ROOT, js.replace(/\.js$/, '.html'));
    const text = fs.readFileSync(html, 'utf8');
    const re = /RED\.nodes\.registerType\(\s*['"]([^'"]+)['"]\s*,\s*\{/g;
    let m: RegExpExecArray | null;
    let found = 0;
    while ((m = re.exec(text))) {
      const rest = text.slice(m.index);
      const cat = /\bcategory\s*:\s*['"]([^'"]+)['"]/.exec(rest);
      out.push({ type: m[1], category: cat ? cat[1] : '', set, html });
      found++;
    }
    if (!found) throw new Error(`${html} (node set ${set}) registers no node type`);
  }
  return out;
}

/** Type into the palette filter with the keyboard (page.fill does not fire its filter). */
export async function filterPalette(page: Page, text: string): Promise<void> {
  const input = page.locator('#red-ui-palette-search input');
  await input.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  if (text) await page.keyboard.type(text, { delay: 10 });
  // the palette filters 100 ms after the last key: wait until every node's filter mark agrees with the text
  await page.waitForFunction((t) => {
    const $ = (window as any).$;
    if ($('#red-ui-palette-search input').val() !== t) return false;
    const re = new RegExp(t.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&'), 'i');
    return $('#red-ui-palette-container .red-ui-palette-node')
      .get()
      .every((el: Element) => {
        const match = t === '' || re.test($(el).attr('data-palette-type')) || re.test($(el).attr('data-palette-label'));
        return match === ($(el).attr('data-filter') !== 'true');
      });
  }, text);
}

/** Import nodes into the active workspace without attaching them to the mouse (missing properties get their defaults). */
export async function importNodes(page: Page, nodes: object[]): Promise<void> {
  await page.evaluate((ns) => {
    const RED = (window as any).RED;
    RED.view.importNodes(ns, { generateIds: false, touchImport: true, notify: false, addFlow: false, applyNodeDefaults: true });
    RED.view.select({ nodes: [] });
    RED.view.redraw(true);
  }, nodes);
}

/** The id selector of an element of an edit dialog (ids may hold characters CSS does not take bare). */
export function fieldSelector(prefix: 'node-input' | 'node-config-input', field: string): string {
  return `[id="${prefix}-${field}"]`;
}

/** Open a flow node's edit dialog the way a user does: double-click it on the workspace. */
export async function openNodeDialog(page: Page, id: string): Promise<void> {
  await page.evaluate((nid) => {
    const RED = (window as any).RED;
    const n = RED.nodes.node(nid);
    if (!n) throw new Error(`no node ${nid}`);
    if (RED.workspaces.active() !== n.z) RED.workspaces.show(n.z);
    RED.view.reveal(nid);
  }, id);
  // reveal scrolls the workspace (animated): a double click that lands while it moves can be
  // taken as two single clicks, and no tray opens; then the user double-clicks again
  for (let attempt = 1; ; attempt++) {
    await waitForWorkspaceIdle(page);
    await page.dblclick(`[id="${id}"] rect.red-ui-flow-node`);
    try {
      await page.waitForSelector('#node-dialog-ok', { state: 'visible', timeout: attempt < 3 ? 7000 : 20000 });
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  await waitForTrayIdle(page);
}

/**
 * RED.view.reveal scrolls the workspace with a 200 ms jQuery animation: wait
 * until it has ended and the view has drawn a frame at the place it ended.
 */
export async function waitForWorkspaceIdle(page: Page): Promise<void> {
  await page.waitForFunction(() => {
    const $ = (window as any).$;
    return $('#red-ui-workspace-chart:animated').length === 0;
  });
  await page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));
}

/**
 * The edit trays slide in and out (a 0.25 s CSS transition of `right`; the
 * editor focuses the tray's first field and runs its show() 150 ms after the
 * start): wait until the top tray has arrived, its `right` computed at 0, and
 * none moves by jQuery either. (A fixed 100 ms wait before was shorter than
 * the focus, which could then land in the middle of typing.)
 */
export async function waitForTrayIdle(page: Page): Promise<void> {
  await page.waitForFunction(() => {
    const $ = (window as any).$;
    if ($('.red-ui-tray:animated').length) return false;
    const trays = $('.red-ui-tray').get() as HTMLElement[];
    const top = trays[trays.length - 1];
    if (!top) return true;
    return (top.style.right === '0px' || top.style.right === '') && getComputedStyle(top).right === '0px';
  });
}

/** Press Done in the top edit tray (a config node's, or else a flow node's) and wait until it has closed. */
export async function pressDone(page: Page): Promise<void> {
  const config = await page.locator('#node-config-dialog-ok').isVisible();
  const sel = config ? '#node-config-dialog-ok' : '#node-dialog-ok';
  await page.click(sel);
  // a config node's tray replaces its user's tray while open: the button leaving the page is the tray closing
  await page.waitForSelector(sel, { state: 'detached' });
  await waitForTrayIdle(page);
}

/**
 * Set a field of the open dialog as a user does: select an option, tick a box,
 * or type into the text box (for a typedInput, into its visible box).
 */
export async function setField(page: Page, prefix: 'node-input' | 'node-config-input', field: string, value: string | boolean): Promise<void> {
  const sel = fieldSelector(prefix, field);
  const kind = await page.evaluate((s) => {
    const $ = (window as any).$;
    const el = $(s);
    if (!el.length) return 'missing';
    if (el.is('select')) return 'select';
    if (el.attr('type') === 'checkbox') return 'checkbox';
    if (el.next('.red-ui-typedInput-container').length) return 'typed';
    return 'text';
  }, sel);
  if (kind === 'missing') throw new Error(`the dialog has no field ${prefix}-${field}`);
  if (kind === 'select') {
    await page.selectOption(sel, String(value));
    return;
  }
  if (kind === 'checkbox') {
    await page.setChecked(sel, Boolean(value));
    return;
  }
  const box = kind === 'typed' ? page.locator(`${sel} + .red-ui-typedInput-container input.red-ui-typedInput-input`) : page.locator(sel);
  await box.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  if (String(value)) await page.keyboard.type(String(value));
  // the editor validates on keyup; leave the box so change handlers run too
  await page.keyboard.press('Tab');
}

/** Does the field show the editor's error mark (class input-error)? */
export async function fieldHasError(page: Page, prefix: 'node-input' | 'node-config-input', field: string): Promise<boolean> {
  return page.evaluate((s) => (window as any).$(s).hasClass('input-error'), fieldSelector(prefix, field));
}

/** Click Deploy and wait for the editor to report success. */
export async function deploy(page: Page): Promise<void> {
  await page.click('#red-ui-header-button-deploy');
  await page.waitForFunction(
    () => {
      const RED = (window as any).RED;
      return !RED.nodes.dirty();
    },
    undefined,
    { timeout: 30000 },
  );
}
