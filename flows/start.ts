/**
 * `npm start`: Node-RED on 127.0.0.1:1880 with this package and the demo site
 * (flows/demo.json) in .demo/ under the repository, recording the built-in test
 * pattern into .demo/recordings. No camera, broker or system package needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT, spawnNodeRed } from './site';

const userDir = path.resolve(process.env.TWINREC_DEMO_DIR ?? path.join(PACKAGE_ROOT, '.demo'));
const port = Number(process.env.PORT ?? 1880);
const demo = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'flows', 'demo.json'), 'utf8'));

console.log(`twinrec demo: Node-RED on http://127.0.0.1:${port}/ with user directory ${userDir}`);
console.log(`twinrec demo: recordings go to ${path.join(userDir, 'recordings')}`);
const child = spawnNodeRed({ userDir, port, initialFlows: demo }, 'inherit');
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (child.exitCode === null) child.kill(sig);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
