import { strict as assert } from 'node:assert';
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { OnvifCamera } from '../../../lib/onvif/camera';
import { OnvifProfileInfo, pickProfile } from '../../../lib/onvif/camera-media';
import { OnvifCameraOptions } from '../../../lib/onvif/camera-options';
import { FakeOnvifDevice, FakeOnvifProfile, freePort, startOnvifDevice } from '../../support/onvif-device';

const PROFILES: FakeOnvifProfile[] = [
  { token: 'main', name: 'Main stream', width: 1920, height: 1080, encoding: 'H264', fps: 25, rtspUri: 'rtsp://127.0.0.1:8554/live/main' },
  { token: 'sub', name: 'Sub stream', width: 640, height: 360, encoding: 'H264', fps: 15, rtspUri: 'rtsp://127.0.0.1:8554/live/sub?channel=1&subtype=1' },
  { token: 'mjpeg', name: 'MJPEG', width: 1280, height: 720, encoding: 'JPEG', fps: 10, rtspUri: 'rtsp://127.0.0.1:8554/live/mjpeg' },
];
const USER = 'admin';
const PASS = 'p@ss:w/rd';

/** Resolves on the first `event` from `emitter`, rejects after `ms`. */
function waitEvent<T = unknown>(emitter: EventEmitter, event: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const onEvent = (arg: T): void => {
      clearTimeout(timer);
      resolve(arg);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`no '${event}' event within ${ms} ms`));
    }, ms);
    emitter.once(event, onEvent);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('pickProfile', () => {
  const profiles: OnvifProfileInfo[] = [
    { token: 'jpeg', name: 'JPEG', width: 1280, height: 720, encoding: 'JPEG' },
    { token: 'main', name: 'Main', width: 1920, height: 1080, encoding: 'H264' },
    { token: 'sub', name: 'Sub', width: 640, height: 360, encoding: 'H264' },
    { token: 'h265', name: '4K', width: 3840, height: 2160, encoding: 'H265' },
  ];

  it('picks by token', () => {
    assert.equal(pickProfile(profiles, { profileToken: 'sub' }).token, 'sub');
  });

  it('prefers the token over the resolution', () => {
    assert.equal(pickProfile(profiles, { profileToken: 'main', resolution: '640x360' }).token, 'main');
  });

  it('picks by exact resolution', () => {
    assert.equal(pickProfile(profiles, { resolution: '1280x720' }).token, 'jpeg');
    assert.equal(pickProfile(profiles, { resolution: ' 640 X 360 ' }).token, 'sub');
  });

  it('prefers H.264 among profiles with the same resolution', () => {
    const same: OnvifProfileInfo[] = [
      { token: 'a', name: 'A', width: 1920, height: 1080, encoding: 'JPEG' },
      { token: 'b', name: 'B', width: 1920, height: 1080, encoding: 'H264' },
    ];
    assert.equal(pickProfile(same, { resolution: '1920x1080' }).token, 'b');
  });

  it('picks the closest resolution by pixel count when none matches', () => {
    assert.equal(pickProfile(profiles, { resolution: '704x576' }).token, 'sub');
    assert.equal(pickProfile(profiles, { resolution: '2560x1440' }).token, 'main');
    assert.equal(pickProfile(profiles, { resolution: '4096x2160' }).token, 'h265');
  });

  it('defaults to the first H.264 profile, else the first with an encoder', () => {
    assert.equal(pickProfile(profiles, {}).token, 'main');
    assert.equal(
      pickProfile(
        [
          { token: 'x', name: 'X' },
          { token: 'j', name: 'J', encoding: 'JPEG', width: 1, height: 1 },
        ],
        {},
      ).token,
      'j',
    );
  });

  it('throws listing the available tokens and resolutions for an unknown token', () => {
    assert.throws(
      () => pickProfile(profiles, { profileToken: 'Profile_1' }),
      (err: Error) => {
        assert.match(err.message, /"Profile_1" does not exist/);
        for (const t of ['"jpeg" 1280x720', '"main" 1920x1080', '"sub" 640x360', '"h265" 3840x2160']) {
          assert.ok(err.message.includes(t), `${t} missing in: ${err.message}`);
        }
        return true;
      },
    );
  });

  it('throws on a malformed resolution, no profiles, or no profile with an encoder', () => {
    assert.throws(() => pickProfile(profiles, { resolution: 'full-hd' }), /WIDTHxHEIGHT.*"main" 1920x1080/);
    assert.throws(() => pickProfile([], {}), /no media profiles/);
    assert.throws(() => pickProfile([{ token: 'meta', name: 'Metadata only' }], {}), /No profile .* video encoder.*"meta"/);
  });
});

describe('OnvifCamera against a fake ONVIF device', function () {
  this.timeout(30000);

  const devices: FakeOnvifDevice[] = [];
  const cameras: OnvifCamera[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  const warnings: string[] = [];
  const log = {
    warn: (m: string): void => {
      warnings.push(m);
    },
    debug: (m: string): void => {
      warnings.push(`debug: ${m}`);
    },
  };

  before(() => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });

  after(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  afterEach(async () => {
    await Promise.all(cameras.splice(0).map((c) => c.stop()));
    await Promise.all(devices.splice(0).map((d) => d.stop()));
    assert.deepEqual(uncaught, [], 'an exception escaped');
    for (const w of warnings.splice(0)) {
      assert.ok(!w.includes(PASS) && !w.includes(encodeURIComponent(PASS)), `password in log line: ${w}`);
    }
  });

  async function device(extra: Partial<Parameters<typeof startOnvifDevice>[0]> = {}): Promise<FakeOnvifDevice> {
    const d = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES, ...extra });
    devices.push(d);
    return d;
  }

  function camera(opts: Partial<OnvifCameraOptions> & { port: number }): OnvifCamera {
    const c = new OnvifCamera(
      {
        host: '127.0.0.1',
        username: USER,
        password: PASS,
        timeoutMs: 1000,
        reconnectMinMs: 100,
        reconnectMaxMs: 400,
        healthCheckMs: 200,
        ...opts,
      },
      log,
    );
    cameras.push(c);
    return c;
  }

  it('the fake device satisfies the onvif library connect()', async () => {
    const d = await device();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Cam } = require('onvif');
    const err = await new Promise<unknown>((resolve) => {
      new Cam({ hostname: '127.0.0.1', port: d.port, username: USER, password: PASS, timeout: 2000 }, (e: unknown) => resolve(e));
    });
    assert.ok(!err, `library connect failed: ${String(err)}`);
    for (const action of ['GetSystemDateAndTime', 'GetServices', 'GetProfiles', 'GetVideoSources']) {
      assert.ok(d.requests.includes(action), `${action} not requested: ${d.requests.join(', ')}`);
    }
  });

  it('connects, picks the profile and returns the stream URI with credentials inserted', async () => {
    const d = await device();
    const cam = camera({ port: d.port, resolution: '640x360' });
    const states: string[] = [];
    cam.on('state', (s: string) => states.push(s));
    assert.equal(cam.state, 'idle');
    const connected = waitEvent<OnvifProfileInfo>(cam, 'connected', 5000);
    cam.start();
    const profile = await connected;

    assert.deepEqual(states, ['connecting', 'connected']);
    assert.equal(cam.state, 'connected');
    assert.equal(cam.lastError, undefined);
    assert.deepEqual(profile, { token: 'sub', name: 'Sub stream', width: 640, height: 360, encoding: 'H264', fps: 15 });
    assert.deepEqual(cam.profile, profile);
    assert.equal(cam.deviceInfo?.manufacturer, 'TwinRec Test');
    assert.equal(cam.deviceInfo?.serialNumber, '000123', 'serial number keeps its leading zeros');
    assert.equal(d.requests[0], 'GetSystemDateAndTime', 'the device clock is read first');

    const uri = await cam.getStreamUri();
    assert.equal(uri, 'rtsp://admin:p%40ss%3Aw%2Frd@127.0.0.1:8554/live/sub?channel=1&subtype=1');
    assert.equal(new URL(uri).host, '127.0.0.1:8554');
    assert.equal(decodeURIComponent(new URL(uri).password), PASS);
    const redacted = cam.redactedStreamUri();
    assert.equal(redacted, 'rtsp://admin:***@127.0.0.1:8554/live/sub?channel=1&subtype=1');
  });

  it('picks by token and by closest resolution on a real connection', async () => {
    const d = await device();
    const byToken = camera({ port: d.port, profileToken: 'mjpeg' });
    const byRes = camera({ port: d.port, resolution: '2048x1536' });
    const p1 = waitEvent<OnvifProfileInfo>(byToken, 'connected', 5000);
    const p2 = waitEvent<OnvifProfileInfo>(byRes, 'connected', 5000);
    byToken.start();
    byRes.start();
    assert.equal((await p1).token, 'mjpeg');
    assert.equal((await p2).token, 'main');
    assert.equal(await byToken.getStreamUri(), 'rtsp://admin:p%40ss%3Aw%2Frd@127.0.0.1:8554/live/mjpeg');
  });

  it('keeps credentials the camera already put into the URI', async () => {
    const d = await device({ profiles: [{ ...PROFILES[0], rtspUri: 'rtsp://viewer:secret@127.0.0.1:554/s0' }] });
    const cam = camera({ port: d.port });
    const connected = waitEvent(cam, 'connected', 5000);
    cam.start();
    await connected;
    assert.equal(await cam.getStreamUri(), 'rtsp://viewer:secret@127.0.0.1:554/s0');
    assert.equal(cam.redactedStreamUri(), 'rtsp://viewer:***@127.0.0.1:554/s0');
  });

  it('signs requests with the camera clock when it is off by hours', async () => {
    const d = await device({ clockOffsetMs: 3 * 3600_000 });
    const cam = camera({ port: d.port });
    const connected = waitEvent(cam, 'connected', 5000);
    cam.start();
    await connected;
    assert.equal(cam.state, 'connected');
  });

  it('wrong password: offline with a lastError about the credentials, nothing escapes', async () => {
    const d = await device();
    const cam = camera({ port: d.port, password: 'wrong' });
    const offline = waitEvent<string>(cam, 'offline', 5000);
    cam.start();
    const message = await offline;
    assert.equal(cam.state, 'offline');
    assert.equal(message, cam.lastError);
    assert.match(cam.lastError ?? '', /127\.0\.0\.1:\d+ refused the credentials/);
    assert.match(cam.lastError ?? '', /check the username and password; retrying in 0\.4 s/);
    assert.ok(!(cam.lastError ?? '').includes('wrong'), 'password not in the message');
    await assert.rejects(cam.getStreamUri(), /is not connected \(state (offline|connecting)\).*credentials/);
    // it keeps trying (at the longest delay) without throwing anything
    await sleep(1000);
    assert.ok(d.requests.filter((a) => a === 'GetSystemDateAndTime').length >= 2, d.requests.join(', '));
    assert.notEqual(cam.state, 'connected');
    assert.deepEqual(uncaught, []);
  });

  it('unknown profile token: lastError lists the available profiles', async () => {
    const d = await device();
    const cam = camera({ port: d.port, profileToken: 'Profile_1' });
    const offline = waitEvent<string>(cam, 'offline', 5000);
    cam.start();
    const message = await offline;
    assert.match(message, /"Profile_1" does not exist.*"main" 1920x1080 H264, "sub" 640x360 H264, "mjpeg" 1280x720 JPEG/);
  });

  it('an answer the library cannot read (no profiles) fails cleanly', async () => {
    // The library throws inside its xml2js callback here and then calls back a second time with the error.
    const d = await device({ profiles: [] });
    const cam = camera({ port: d.port });
    const offline = waitEvent<string>(cam, 'offline', 5000);
    cam.start();
    assert.match(await offline, /sent an answer to GetProfiles that could not be read/);
    assert.deepEqual(uncaught, []);
  });

  it('a wrong device service path or a closed port says so', async () => {
    const d = await device();
    const wrongPath = camera({ port: d.port, path: '/nothing/here' });
    const closed = await freePort();
    const closedPort = camera({ port: closed });
    const o1 = waitEvent<string>(wrongPath, 'offline', 5000);
    const o2 = waitEvent<string>(closedPort, 'offline', 5000);
    wrongPath.start();
    closedPort.start();
    assert.match(await o1, /127\.0\.0\.1:\d+ answered GetSystemDateAndTime with HTTP 404 but not as an ONVIF device at path \/nothing\/here/);
    assert.equal(await o2, `Camera 127.0.0.1:${closed} does not answer (connect ECONNREFUSED); retrying in 0.1 s`);
  });

  it('a camera offline at start connects by itself when it appears', async () => {
    const port = await freePort();
    const cam = camera({ port });
    const offline = waitEvent<string>(cam, 'offline', 5000);
    cam.start();
    assert.match(await offline, /does not answer \(connect ECONNREFUSED\); retrying in/);
    await assert.rejects(cam.getStreamUri(), new RegExp(`Camera 127\\.0\\.0\\.1:${port} is not connected \\(state (offline|connecting)\\)`));
    await sleep(300);
    assert.notEqual(cam.state, 'connected');

    const connected = waitEvent<OnvifProfileInfo>(cam, 'connected', 3000);
    await device({ port });
    assert.equal((await connected).token, 'main');
    assert.equal(cam.lastError, undefined);
    assert.equal(await cam.getStreamUri(), 'rtsp://admin:p%40ss%3Aw%2Frd@127.0.0.1:8554/live/main');
  });

  it('a connected camera that disappears goes offline (health check) and comes back', async () => {
    const d = await device();
    const cam = camera({ port: d.port });
    let connected = waitEvent(cam, 'connected', 5000);
    cam.start();
    await connected;

    const offline = waitEvent<string>(cam, 'offline', 3000);
    await d.setOffline(true);
    assert.match(await offline, /does not answer .*noticed by the health check; retrying in 0\.1 s/);
    assert.equal(cam.state, 'offline');
    await assert.rejects(cam.getStreamUri(), /is not connected/);

    connected = waitEvent(cam, 'connected', 3000);
    await d.setOffline(false);
    await connected;
    assert.equal(cam.state, 'connected');
    assert.equal(cam.lastError, undefined);
    assert.match(await cam.getStreamUri(), /^rtsp:\/\/admin:/);
  });

  it('getStreamUri notices a camera that disappeared', async () => {
    const d = await device();
    const cam = camera({ port: d.port, healthCheckMs: 0 });
    const connected = waitEvent(cam, 'connected', 5000);
    cam.start();
    await connected;
    await d.setOffline(true);
    await assert.rejects(cam.getStreamUri(), /does not answer .*noticed while fetching the stream URI; retrying in/);
    assert.equal(cam.state, 'offline');
    await assert.rejects(cam.getStreamUri(), /is not connected \(state (offline|connecting)\)/);
  });

  it('stop() ends all activity: no more events, timers or sockets', async () => {
    // Track the timers and sockets created by this module and by the onvif library.
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type !== 'Timeout' && type !== 'TCPWRAP') return;
        const stack = new Error().stack ?? '';
        if (/lib[\\/]onvif[\\/]camera\.js|node_modules[\\/]onvif[\\/]/.test(stack)) live.set(id, type);
      },
      destroy(id) {
        live.delete(id);
      },
    });
    hook.enable();
    try {
      const port = await freePort();
      // one camera that keeps retrying, one connected with a health check running
      const retrying = camera({ port });
      const d = await device();
      const healthy = camera({ port: d.port });
      const connected = waitEvent(healthy, 'connected', 5000);
      retrying.start();
      healthy.start();
      await connected;
      await waitEvent(retrying, 'offline', 3000);
      await sleep(250); // a health check has run or is in flight
      assert.ok(live.size > 0, 'the tracker sees our timers');

      await Promise.all([retrying.stop(), healthy.stop()]);
      assert.equal(retrying.state, 'stopped');
      assert.equal(healthy.state, 'stopped');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual([...live.values()], [], 'timers or sockets still running right after stop()');
      const events: string[] = [];
      for (const c of [retrying, healthy]) {
        for (const e of ['state', 'connected', 'offline']) c.on(e, () => events.push(e));
      }
      await device({ port }); // the retrying camera's target appears: it must not notice
      const requestsAfterStop = d.requests.length;
      await sleep(3000);
      assert.deepEqual(events, []);
      assert.equal(d.requests.length, requestsAfterStop, 'no health checks after stop');
      await assert.rejects(healthy.getStreamUri(), /is not connected \(state stopped\)/);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual([...live.values()], [], 'timers or sockets left running after stop()');
    } finally {
      hook.disable();
    }
  });

  it('a throwing listener does not escape into the library', async () => {
    const d = await device();
    const cam = camera({ port: d.port });
    cam.on('state', () => {
      throw new Error('listener bug');
    });
    const connected = waitEvent(cam, 'connected', 5000);
    cam.start();
    await connected;
    assert.equal(cam.state, 'connected');
    assert.ok(warnings.some((w) => w.includes('listener threw: listener bug')));
  });
});
