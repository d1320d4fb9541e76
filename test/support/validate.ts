/**
 * `npm run validate`: the flow library's checker (node-red-dev validate, every
 * check P01 to D03) on this package, offline for its catalogue request (see
 * validate-offline.ts). Prints the checker's own output and then the scorecard;
 * exits 1 when a check fails.
 *
 * One check is reported but not counted: P03 (a repository or bugs URL in
 * package.json). The project has no public repository or issue tracker yet and
 * we will not invent one; add `repository` to package.json when it has one and
 * drop it from KNOWN below.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const KNOWN: Record<string, string> = { P03: 'no public repository or issue tracker exists yet; none is invented' };

const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-validate-')), 'scorecard.json');
const bin = require.resolve('node-red-dev/bin/run');
const r = spawnSync(process.execPath, ['-r', path.join(__dirname, 'validate-offline.js'), bin, 'validate', '-p', ROOT, '-o', out], {
  cwd: ROOT,
  stdio: 'inherit',
  timeout: 300000,
});
if (!fs.existsSync(out)) {
  console.error(`node-red-dev validate wrote no scorecard (exit ${r.status}, ${r.error ? r.error.message : 'no error'})`);
  process.exit(1);
}
const card = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, { test: boolean } | unknown>;
const checks = Object.entries(card).filter(([k, v]) => /^[PND]\d\d$/.test(k) && v && typeof v === 'object' && 'test' in (v as object)) as [
  string,
  { test: boolean },
][];
checks.sort(([a], [b]) => a.localeCompare(b));
console.log('\nflow-library checks (node-red-dev validate):');
let failed = 0;
for (const [k, v] of checks) {
  const mark = v.test ? 'pass' : KNOWN[k] ? `FAIL (not counted: ${KNOWN[k]})` : 'FAIL';
  if (!v.test && !KNOWN[k]) failed++;
  console.log(`  ${k}  ${mark}${v.test ? '' : `  ${JSON.stringify(v)}`}`);
}
console.log(`${checks.length} checks, ${checks.filter(([, v]) => v.test).length} pass, ${failed} counted failures`);
fs.rmSync(path.dirname(out), { recursive: true, force: true });
process.exit(failed || checks.length < 10 ? 1 : 0);
