/**
 * Every example flow (examples/<topic>/<name>.json, as Import > Examples offers
 * them) deployed in a real Node-RED process with a real broker: the flows start
 * and no node reports an error.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../demo/site';
import { Broker, startMosquitto } from '../support/mosquitto';
import { ffmpegPidsFor, NodeRedProcess, startNodeRed } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

const EXAMPLES = path.join(PACKAGE_ROOT, 'examples');
const files = fs
  .readdirSync(EXAMPLES, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .flatMap((d) =>
    fs
      .readdirSync(path.join(EXAMPLES, d.name))
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.join(d.name, f)),
  );

describe('example flows deploy in a real Node-RED and start without errors', function () {
  this.timeout(120000);
  let broker: Broker;
  let p: NodeRedProcess | null = null;
  let dir = '';
  const before = process.env.TWINREC_BROKER_URL;

  beforeEach(async function () {
    broker = await startMosquitto();
    process.env.TWINREC_BROKER_URL = broker.url;
    dir = tmpDir('example');
  });
  afterEach(async function () {
    if (p) await p.stop();
    p = null;
    for (const pid of ffmpegPidsFor(dir)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    await broker.stop();
    if (before === undefined) delete process.env.TWINREC_BROKER_URL;
    else process.env.TWINREC_BROKER_URL = before;
  });

  it('finds the examples', function () {
    assert.ok(files.length >= 5, files.join(', '));
  });

  for (const f of files) {
    it(f, async function () {
      const flows = JSON.parse(fs.readFileSync(path.join(EXAMPLES, f), 'utf8')) as { type: string }[];
      p = await startNodeRed({ userDir: dir, flows });
      await sleep(3000); // a fixed wait: the test proves that no node reports an error in the first seconds
      const log = p.log();
      assert.ok(/Started flows/.test(log));
      const errors = log.split('\n').filter((l) => /\[error\]/.test(l));
      // an example for an ONVIF camera expects one at its own address: not being reachable is its only complaint
      const unexpected = errors.filter((l) => !(f.includes('ONVIF') && /camera/i.test(l)));
      assert.deepEqual(unexpected, [], `errors while running ${f}:\n${errors.join('\n')}`);
    });
  }
});
