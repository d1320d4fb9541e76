/**
 * No false failover: two mains record (an RTSP camera and test patterns, their
 * operators adding, starting and stopping lines) while a failover server
 * watches them with its default timing. Nothing may be declared failed,
 * isolated or taken over, and the failover server always has a recent heartbeat.
 * It runs TWINREC_SOAK_S seconds: 60 by default (in `npm test`, with every
 * assertion of the long run: each check, the clips every 30 s), ten minutes
 * in `npm run test:soak` (TWINREC_SOAK_S=600).
 */
import { strict as assert } from 'node:assert';
import { events } from '../support/failover';
import { Broker, startMosquitto } from '../support/mosquitto';
import { failoverSiteFlow, NodeRedProcess, recorderSiteFlow, startNodeRed, stopServers } from '../support/nodered';
import { sleep, tmpDir } from '../support/nr';
import { RtspServerHandle, startRtspServer } from '../support/rtsp';

const SOAK_S = Number(process.env.TWINREC_SOAK_S || 60);

describe(`no false failover in a ${SOAK_S} s run under normal load`, function () {
  this.timeout((SOAK_S + 240) * 1000);
  let broker: Broker;
  let rtsp: RtspServerHandle;
  const dirs: Record<string, string> = {};
  const procs: Record<string, NodeRedProcess | null> = {};

  before(async function () {
    broker = await startMosquitto();
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
    for (const s of ['main-1', 'main-2', 'fo-1']) dirs[s] = tmpDir(s);
  });
  after(async function () {
    await stopServers(procs, dirs);
    await rtsp.stop();
    await broker.stop();
  });

  it('declares nothing failed, isolated or taken over, and always has a recent heartbeat of both mains', async function () {
    for (const s of ['main-1', 'main-2']) {
      procs[s] = await startNodeRed({
        userDir: dirs[s],
        flows: recorderSiteFlow({
          serverId: s,
          storageRoot: 'store',
          brokerUrl: broker.url,
          recorders: [
            { channel: 1, sourceType: s === 'main-1' ? 'url' : 'testpattern', url: rtsp.url, segmentSeconds: 2 },
            { channel: 2, sourceType: 'testpattern', segmentSeconds: 2 },
          ],
        }),
      });
    }
    const fo = (procs['fo-1'] = await startNodeRed({
      userDir: dirs['fo-1'],
      // the defaults: heartbeat timeout 750 ms, hold-down 10 s
      flows: failoverSiteFlow({ serverId: 'fo-1', storageRoot: 'store', brokerUrl: broker.url, watched: 'main-1\nmain-2', holdDown: 10 }),
    }));
    const mains = [procs['main-1']!, procs['main-2']!];
    for (const m of mains) {
      for (const ch of [1, 2]) {
        assert.equal((await m.request('POST', `/cmd/${ch}`, { command: 'add', line: { id: `long${ch}`, title: `Long ${ch}` } })).status, 200);
        assert.equal((await m.request('POST', `/cmd/${ch}`, { command: 'start', line: { id: `long${ch}` } })).status, 200);
      }
    }
    const end = Date.now() + SOAK_S * 1000;
    let polls = 0;
    let worstAge = 0;
    let n = 0;
    while (Date.now() < end) {
      await sleep(5000);
      polls++;
      // operators at work: every 30 s a short clip on channel 2 of each main (the settings cache follows)
      if (polls % 6 === 0) {
        for (const m of mains) {
          const id = `clip${n}`;
          await m.request('POST', '/cmd/2', { command: 'stop' });
          await m.request('POST', '/cmd/2', { command: 'add', line: { id, title: `Clip ${n}`, duration: 20 } });
          await m.request('POST', '/cmd/2', { command: 'start', line: { id } });
        }
        n++;
      }
      const bad = (await events(fo)).filter((e) => ['failed', 'failover started', 'isolated', 'released'].includes(e.topic));
      assert.deepEqual(bad, [], `false failover after ${polls * 5} s`);
      const st = await fo.request('POST', '/fw', { command: 'status' });
      for (const w of st.body.watched as { server: string; status: string; lastHeartbeat: number }[]) {
        assert.equal(w.status, 'ok', `${w.server} is ${w.status} after ${polls * 5} s`);
        worstAge = Math.max(worstAge, Date.now() - w.lastHeartbeat);
      }
    }
    console.log(`      ${polls} checks over ${SOAK_S} s; oldest heartbeat seen at a check: ${worstAge} ms; ${n} short clips per main`);
    assert.ok(polls >= Math.floor(SOAK_S / 5) - 2);
  });
});
