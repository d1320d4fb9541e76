/**
 * `npm start`: Node-RED on 127.0.0.1:1880 with this package and the demo site
 * (demo/demo.json) in .demo/ under the repository. The demo runs a main server
 * (main-1) and a backup server (backup-1) side by side in one Node-RED, linked
 * through an embedded MQTT broker (aedes, on 127.0.0.1:1883) started here; a
 * Backup=On line recorded on the main records on the backup as an Aux line.
 * Recordings go to .demo/recordings. No camera, broker or system package needed.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PACKAGE_ROOT, spawnNodeRed } from './site';

async function startEmbeddedBroker(port: number): Promise<net.Server | null> {
  if (process.env.TWINREC_BROKER_URL) return null; // the site has its own broker (an empty value means: embedded)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Aedes } = require('aedes') as { Aedes: { createBroker(): Promise<{ handle: (s: net.Socket) => void }> } };
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  process.env.TWINREC_BROKER_URL = `mqtt://127.0.0.1:${port}`;
  return server;
}

async function main(): Promise<void> {
  const userDir = path.resolve(process.env.TWINREC_DEMO_DIR ?? path.join(PACKAGE_ROOT, '.demo'));
  const port = Number(process.env.PORT ?? 1880);
  const brokerPort = Number(process.env.TWINREC_BROKER_PORT ?? 1883);
  const demo = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'demo', 'demo.json'), 'utf8'));
  const broker = await startEmbeddedBroker(brokerPort).catch((err) => {
    console.error(
      `twinrec demo: cannot start the embedded MQTT broker on 127.0.0.1:${brokerPort} (${(err as Error).message}); set TWINREC_BROKER_PORT, or TWINREC_BROKER_URL to use your own broker`,
    );
    process.exit(1);
  });
  console.log(`twinrec demo: Node-RED on http://127.0.0.1:${port}/ with user directory ${userDir}`);
  console.log(`twinrec demo: MQTT broker ${process.env.TWINREC_BROKER_URL}${broker ? ' (embedded)' : ''}`);
  console.log(`twinrec demo: recordings go to ${path.join(userDir, 'recordings')}`);
  const child = spawnNodeRed({ userDir, port, initialFlows: demo }, 'inherit');
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (child.exitCode === null) child.kill(sig);
    });
  }
  child.on('exit', (code, signal) => {
    broker?.close();
    process.exit(code ?? (signal ? 1 : 0));
  });
}

void main();
