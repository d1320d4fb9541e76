/**
 * What a newcomer gets from `npm start`: the demo site starts with its embedded
 * broker, main-1 and backup-1 link up, and the timed Backup=On line added on
 * deploy records on both; stopping the demo leaves no ffmpeg behind.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ffmpegPidsFor, freePort } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';

describe('npm start (the demo site)', function () {
  this.timeout(90000);

  it('records the test pattern on main-1 and, as an Aux twin, on backup-1', async function () {
    const dir = tmpDir('demo');
    const port = await freePort();
    const brokerPort = await freePort();
    const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'demo', 'start.js')], {
      env: { ...process.env, PORT: String(port), TWINREC_BROKER_PORT: String(brokerPort), TWINREC_DEMO_DIR: dir, TWINREC_BROKER_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const segmentsOf = (server: string) => {
        const base = path.join(dir, 'recordings', server, 'ch01');
        if (!fs.existsSync(base)) return [];
        return fs
          .readdirSync(base)
          .flatMap((day) =>
            fs.readdirSync(path.join(base, day)).flatMap((clip) => fs.readdirSync(path.join(base, day, clip)).filter((f) => f.endsWith('.ts'))),
          );
      };
      for (let i = 0; i < 300 && !(segmentsOf('main-1').length && segmentsOf('backup-1').length); i++) await sleep(100);
      assert.ok(segmentsOf('main-1').length > 0, `main-1 records:\n${log}`);
      assert.ok(segmentsOf('backup-1').length > 0, `backup-1 records its Aux twin:\n${log}`);
      assert.match(log, /\[redundancy-server:dsrvA\] linked to the group/);
      assert.match(log, /\[redundancy-server:dsrvB\] linked to the group/);
      assert.doesNotMatch(log, /\[error\]/, 'no errors in the log');
    } finally {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
    }
    assert.deepEqual(ffmpegPidsFor(dir), [], 'no ffmpeg after the demo stopped');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
