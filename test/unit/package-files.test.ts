/**
 * What `npm pack` puts in the package: the nodes, lib and examples, every
 * image the README shows and every docs/ page it links (the flow library shows
 * that README from the package; no public repository serves them yet). No
 * tests, no benchmark, no demo runner (it needs the dev dependencies).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

describe('the npm package contents (npm pack --dry-run)', function () {
  this.timeout(60000);
  let files: Set<string>;
  before(() => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    files = new Set((JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path));
  });

  it('holds every image the README shows and every page it links', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const images = [...readme.matchAll(/!\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((u) => !/^[a-z]+:/i.test(u));
    assert.ok(images.length >= 1, `${images.length} images in the README`);
    for (const img of images) {
      assert.ok(fs.existsSync(path.join(ROOT, img)), `${img} is in the repository`);
      assert.ok(files.has(img), `${img} is in the package`);
    }
    const pages = [...readme.matchAll(/\]\((docs\/[^)#\s]+\.md)(#[^)]*)?\)/g)].map((m) => m[1]);
    assert.ok(pages.length >= 5, `${pages.length} docs pages linked from the README`);
    for (const page of pages) assert.ok(files.has(page), `${page} is in the package`);
  });

  it('holds the nodes, lib and example flows, and no tests', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
    for (const js of Object.values(pkg['node-red'].nodes)) {
      assert.ok(files.has(js.replace(/^\.\//, '')), `${js}`);
      assert.ok(files.has(js.replace(/^\.\//, '').replace(/\.js$/, '.html')), `${js} html`);
    }
    assert.ok(files.has('lib/peer/segment-stream.js'));
    assert.ok(
      [...files].some((f) => f.startsWith('examples/') && f.endsWith('.json')),
      'example flows',
    );
    assert.ok(![...files].some((f) => /^(test|bench|demo|\.ci)\//.test(f)), 'no tests, benches or demo runner');
  });
});
