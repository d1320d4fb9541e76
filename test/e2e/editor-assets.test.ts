/**
 * What the editor loads from the package in a real Node-RED: every node's own
 * icon (not Node-RED's default arrow, which it serves for an icon it cannot
 * find) and every node's help from the message catalogue.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../demo/site';
import { NodeRedProcess, startNodeRed } from '../support/nodered';
import { tmpDir } from '../support/nr';

const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { name: string; 'node-red': { nodes: Record<string, string> } };

/** The node types and icon files the editor definitions name. */
function definitions(): { type: string; icon: string | null }[] {
  return Object.entries(pkg['node-red'].nodes).map(([type, js]) => {
    const html = fs.readFileSync(path.join(PACKAGE_ROOT, js.replace(/\.js$/, '.html')), 'utf8');
    const m = /icon:\s*'([^']+)'/.exec(html);
    return { type, icon: m ? m[1] : null };
  });
}

describe('editor assets served by a real Node-RED: icons and help', function () {
  this.timeout(120000);
  let p: NodeRedProcess | null = null;
  let dir = '';
  before(async function () {
    dir = tmpDir('assets');
    p = await startNodeRed({ userDir: dir, flows: [] });
  });
  after(async function () {
    if (p) await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves each flow node its own icon from the package', async function () {
    const withIcons = definitions().filter((d) => d.icon);
    assert.ok(withIcons.length >= 10, JSON.stringify(withIcons));
    for (const d of withIcons) {
      const r = await p!.request('GET', `/icons/${pkg.name}/${d.icon}`);
      assert.equal(r.status, 200, `${d.type}: ${d.icon}`);
      const ours = fs.readFileSync(path.join(PACKAGE_ROOT, 'icons', d.icon!), 'utf8');
      assert.equal(String(r.body).trim(), ours.trim(), `${d.type} gets its icon ${d.icon}, not the default`);
    }
  });

  it('serves every node help from locales/en-US', async function () {
    const r = await p!.request('GET', '/nodes', undefined, { accept: 'text/html' });
    for (const d of definitions()) assert.ok(String(r.body).includes(`data-help-name="${d.type}"`), `help of ${d.type}`);
  });
});
