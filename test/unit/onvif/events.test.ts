import { strict as assert } from 'node:assert';
import { createHook } from 'node:async_hooks';
import { ChangeTracker, parseTopicFilter } from '../../../lib/onvif/event-filter';
import { eventKind, normaliseTopic, OnvifEvent, parseNotifications } from '../../../lib/onvif/event-parsing';
import { OnvifEvents, OnvifEventsOptions, OnvifEventsState } from '../../../lib/onvif/events';
import { FakeOnvifDevice, FakeOnvifProfile, freePort, startOnvifDevice } from '../../support/onvif-device';

const PROFILES: FakeOnvifProfile[] = [{ token: 'main', name: 'Main stream', width: 1920, height: 1080, rtspUri: 'rtsp://127.0.0.1:8554/live/main' }];
const USER = 'admin';
const PASS = 'p@ss:w/rd';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when `ev` reaches `state` (immediately if it is there already). */
function waitState(ev: OnvifEvents, state: OnvifEventsState, ms: number): Promise<void> {
  if (ev.state === state) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onState = (s: OnvifEventsState): void => {
      if (s !== state) return;
      ev.off('state', onState);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      ev.off('state', onState);
      reject(new Error(`state ${state} not reached within ${ms} ms (now ${ev.state}: ${ev.lastError ?? ''})`));
    }, ms);
    ev.on('state', onState);
  });
}

/** Collects events; next(pred) resolves with the first (already received or coming) event that matches. */
function collector(ev: OnvifEvents): { events: OnvifEvent[]; next(pred: (e: OnvifEvent) => boolean, ms?: number): Promise<OnvifEvent> } {
  const events: OnvifEvent[] = [];
  const waiters: { pred: (e: OnvifEvent) => boolean; resolve: (e: OnvifEvent) => void }[] = [];
  ev.on('event', (e: OnvifEvent) => {
    events.push(e);
    for (const w of [...waiters]) {
      if (w.pred(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  return {
    events,
    next(pred, ms = 5000) {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (e: OnvifEvent) => {
            clearTimeout(timer);
            resolve(e);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events.map((x) => [x.topic, x.property, x.data]))}`));
        }, ms);
        waiters.push(w);
      });
    },
  };
}

const count = (d: FakeOnvifDevice, action: string): number => d.requests.filter((r) => r === action).length;

describe('ONVIF event parsing', () => {
  const RESPONSE =
    '<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" ' +
    'xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tev="http://www.onvif.org/ver10/events/wsdl" ' +
    'xmlns:ns2="http://www.onvif.org/ver10/topics" xmlns:tnsaxis="http://www.axis.com/2009/event/topics"><env:Body>' +
    '<tev:PullMessagesResponse><tev:CurrentTime>2026-12-03T08:00:00Z</tev:CurrentTime><tev:TerminationTime>2026-12-03T08:01:00Z</tev:TerminationTime>' +
    '<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">ns2:VideoSource/MotionAlarm</wsnt:Topic>' +
    '<wsnt:Message><tt:Message UtcTime="2026-12-03T08:00:00.5Z" PropertyOperation="Changed">' +
    '<tt:Source><tt:SimpleItem Name="Source" Value="1.10"/></tt:Source><tt:Data><tt:SimpleItem Name="State" Value="true"/></tt:Data>' +
    '</tt:Message></wsnt:Message></wsnt:NotificationMessage>' +
    '<wsnt:NotificationMessage><wsnt:Topic Dialect="x">tns1:Device/Trigger/DigitalInput</wsnt:Topic>' +
    "<wsnt:Message><tt:Message UtcTime='2026-12-03T09:00:00+01:00' PropertyOperation='Initialized'>" +
    "<tt:Source><tt:SimpleItem Name='InputToken' Value='DI_0'/></tt:Source><tt:Data><tt:SimpleItem Name='LogicalState' Value='false'/>" +
    '<tt:SimpleItem Name="Level" Value="42"/><tt:SimpleItem Name="Serial" Value="0042"/></tt:Data>' +
    '</tt:Message></wsnt:Message></wsnt:NotificationMessage>' +
    '<wsnt:NotificationMessage><wsnt:Topic>tnsaxis:CameraApplicationPlatform/VMD/Camera1Profile1</wsnt:Topic>' +
    '<wsnt:Message><tt:Message><tt:Source/><tt:Data><tt:SimpleItem Name="active" Value="1"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>' +
    '<wsnt:NotificationMessage><wsnt:Message><tt:Message UtcTime="2026-12-03T08:00:00Z"/></wsnt:Message></wsnt:NotificationMessage>' +
    '</tev:PullMessagesResponse></env:Body></env:Envelope>';

  it('reads notifications into the flat shape, mapping any prefix of the ONVIF topic namespace to tns1', () => {
    const events = parseNotifications(RESPONSE);
    assert.equal(events.length, 3, 'the message without a topic is left out');
    assert.deepEqual(events[0], {
      topic: 'tns1:VideoSource/MotionAlarm',
      kind: 'motion',
      source: { Source: '1.10' },
      data: { State: true },
      utcTime: '2026-12-03T08:00:00.500Z',
      time: Date.UTC(2026, 11, 3, 8, 0, 0, 500),
      property: 'Changed',
    });
    assert.deepEqual(events[1], {
      topic: 'tns1:Device/Trigger/DigitalInput',
      kind: 'digital-input',
      source: { InputToken: 'DI_0' },
      data: { LogicalState: false, Level: 42, Serial: '0042' },
      utcTime: '2026-12-03T08:00:00.000Z',
      time: Date.UTC(2026, 11, 3, 8),
      property: 'Initialized',
    });
    assert.equal(events[2].topic, 'tnsaxis:CameraApplicationPlatform/VMD/Camera1Profile1');
    assert.equal(events[2].property, null);
    assert.equal(events[2].utcTime, null);
    assert.deepEqual(events[2].source, {});
  });

  it('never throws on malformed input', () => {
    for (const bad of [
      '',
      '<not xml',
      '<a><NotificationMessage><Topic>',
      '<NotificationMessage><Topic>&#xFFFFFFF;</Topic></NotificationMessage>',
      undefined as unknown as string,
    ]) {
      assert.doesNotThrow(() => parseNotifications(bad));
    }
    assert.deepEqual(
      parseNotifications('<x:NotificationMessage><x:Topic>tns1:A</x:Topic><x:Message UtcTime="nonsense"/></x:NotificationMessage>')[0].utcTime,
      'nonsense',
    );
  });

  it('normalises topics: prefixes, undeclared ONVIF roots, slashes and spaces', () => {
    const ns = new Map([
      ['ns0', 'http://www.onvif.org/ver10/topics'],
      ['tnsaxis', 'http://www.axis.com/2009/event/topics'],
    ]);
    assert.equal(normaliseTopic(' ns0:RuleEngine/CellMotionDetector/Motion ', ns), 'tns1:RuleEngine/CellMotionDetector/Motion');
    assert.equal(normaliseTopic('ns0:Device/tnsaxis:IO/Port', ns), 'tns1:Device/tnsaxis:IO/Port');
    assert.equal(normaliseTopic('VideoSource/MotionAlarm/'), 'tns1:VideoSource/MotionAlarm');
    assert.equal(normaliseTopic('tns:VideoSource//MotionAlarm'), 'tns1:VideoSource/MotionAlarm');
    assert.equal(normaliseTopic('vendor:Thing/Other'), 'vendor:Thing/Other');
  });

  it('classifies motion, digital input and tamper topics of several vendors', () => {
    const cases: [string, string][] = [
      ['tns1:VideoSource/MotionAlarm', 'motion'],
      ['tns1:RuleEngine/CellMotionDetector/Motion', 'motion'],
      ['tns1:RuleEngine/MotionRegionDetector/Motion', 'motion'],
      ['tns1:Device/Trigger/DigitalInput', 'digital-input'],
      ['tns1:Device/tnsaxis:IO/Port', 'digital-input'],
      ['tns1:RuleEngine/TamperDetector/Tamper', 'tamper'],
      ['tns1:VideoSource/GlobalSceneChange/ImagingService', 'tamper'],
      ['tns1:VideoSource/ImageTooBlurry/AnalyticsService', 'tamper'],
      ['tns1:Device/Trigger/Relay', 'other'],
      ['tns1:Monitoring/ProcessorUsage', 'other'],
    ];
    for (const [topic, kind] of cases) assert.equal(eventKind(topic), kind, topic);
  });

  it('filters by kind, by topic and the topics below it, with * for one level, ignoring case and prefix', () => {
    const ev = (topic: string): Pick<OnvifEvent, 'topic' | 'kind'> => ({ topic, kind: eventKind(topic) });
    const all = parseTopicFilter('');
    assert.ok(all(ev('tns1:Anything')));
    const f = parseTopicFilter('tamper, VideoSource/MotionAlarm tns1:Device/Trigger/*');
    assert.ok(f(ev('tns1:VideoSource/MotionAlarm')));
    assert.ok(f(ev('tns1:videosource/motionalarm/Sub')));
    assert.ok(!f(ev('tns1:VideoSource/MotionAlarmX')));
    assert.ok(f(ev('tns1:Device/Trigger/DigitalInput')));
    assert.ok(f(ev('tns1:RuleEngine/TamperDetector/Tamper')));
    assert.ok(!f(ev('tns1:RuleEngine/CellMotionDetector/Motion')));
    assert.ok(parseTopicFilter('motion')(ev('tns1:RuleEngine/CellMotionDetector/Motion')));
    assert.throws(() => parseTopicFilter('motion, tns1:Video%Source'), /Topic filter entry "tns1:Video%Source" is neither an event kind/);
    assert.throws(
      () => parseTopicFilter('tns1:VideoSource/<x>'),
      /Topic filter entry "tns1:VideoSource\/<x>" is neither an event kind \(motion, digital-input, tamper, other\) nor a topic/,
    );
  });

  it('only changes: Changed unless repeated, Initialized only when it differs from what we knew, Deleted when known', () => {
    const t = new ChangeTracker();
    const e = (property: OnvifEvent['property'], state: boolean, source = 'vs0'): OnvifEvent => ({
      topic: 'tns1:VideoSource/MotionAlarm',
      kind: 'motion',
      source: { Source: source },
      data: { State: state },
      utcTime: null,
      time: null,
      property,
    });
    assert.equal(t.accept(e('Initialized', false)), false, 'first state after subscribing');
    assert.equal(t.accept(e('Changed', true)), true);
    assert.equal(t.accept(e('Changed', true)), false, 'a repeat');
    assert.equal(t.accept(e('Initialized', true)), false, 'resubscribed, nothing changed');
    assert.equal(t.accept(e('Initialized', false)), true, 'changed while the subscription was down');
    assert.equal(t.accept(e('Changed', true, 'vs1')), true, 'another source is another property');
    assert.equal(t.accept(e('Deleted', true, 'vs1')), true);
    assert.equal(t.accept(e('Deleted', true, 'vs1')), false);
    assert.equal(t.accept(e(null, true)), true, 'not a property: always');
  });
});

describe('OnvifEvents against the ONVIF test device', function () {
  this.timeout(30000);

  const devices: FakeOnvifDevice[] = [];
  const subscribers: OnvifEvents[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  const logs: string[] = [];
  const log = {
    warn: (m: string): void => {
      logs.push(`warn: ${m}`);
    },
    debug: (m: string): void => {
      logs.push(`debug: ${m}`);
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
    await Promise.all(subscribers.splice(0).map((c) => c.stop()));
    await Promise.all(devices.splice(0).map((d) => d.stop()));
    assert.deepEqual(uncaught, [], 'an exception escaped');
    for (const l of logs.splice(0)) {
      assert.ok(!l.includes(PASS) && !l.includes(encodeURIComponent(PASS)), `password in log line: ${l}`);
    }
  });

  async function device(extra: Partial<Parameters<typeof startOnvifDevice>[0]> = {}): Promise<FakeOnvifDevice> {
    const d = await startOnvifDevice({ username: USER, password: PASS, profiles: PROFILES, ...extra });
    devices.push(d);
    return d;
  }

  function subscriber(opts: Partial<OnvifEventsOptions> & { port: number }): OnvifEvents {
    const c = new OnvifEvents({ host: '127.0.0.1', username: USER, password: PASS, timeoutMs: 1000, reconnectMinMs: 100, reconnectMaxMs: 400, ...opts }, log);
    subscribers.push(c);
    return c;
  }

  it('a motion event arrives parsed', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.start();
    assert.equal(ev.state, 'subscribing');
    await waitState(ev, 'subscribed', 5000);
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 600));
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true }, utcTime: at });
    const e = await got.next((x) => x.kind === 'motion');
    assert.deepEqual(e, {
      topic: 'tns1:VideoSource/MotionAlarm',
      kind: 'motion',
      source: { Source: 'vs0' },
      data: { State: true },
      utcTime: '2026-01-02T03:04:05.600Z',
      time: at.getTime(),
      property: 'Changed',
    });
    assert.equal(count(d, 'CreatePullPointSubscription'), 1);
  });

  it('a digital input and a tamper event arrive parsed, with a topic prefix of the camera normalised', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    d.emitEvent({ topic: 'ns2:Device/Trigger/DigitalInput', source: { InputToken: 'DI_1' }, data: { LogicalState: true } });
    d.emitEvent({ topic: 'tns1:RuleEngine/TamperDetector/Tamper', source: { VideoSourceConfigurationToken: '1', Rule: 'Tamper 1' }, data: { IsTamper: true } });
    const input = await got.next((x) => x.kind === 'digital-input');
    assert.equal(input.topic, 'tns1:Device/Trigger/DigitalInput');
    assert.deepEqual(input.source, { InputToken: 'DI_1' });
    assert.deepEqual(input.data, { LogicalState: true });
    const tamper = await got.next((x) => x.kind === 'tamper');
    assert.equal(tamper.topic, 'tns1:RuleEngine/TamperDetector/Tamper');
    assert.deepEqual(tamper.source, { VideoSourceConfigurationToken: '1', Rule: 'Tamper 1' });
    assert.deepEqual(tamper.data, { IsTamper: true });
  });

  it('the topic filter lets only matching events through', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port, filter: 'motion' });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    d.emitEvent({ topic: 'tns1:Device/Trigger/DigitalInput', source: { InputToken: 'DI_1' }, data: { LogicalState: true } });
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
    assert.deepEqual(
      got.events.map((e) => e.kind),
      ['motion'],
    );
  });

  it('a dropped subscription is resubscribed and later events still arrive', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    const states: string[] = [];
    ev.on('state', (s: string) => states.push(s));
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    d.dropSubscriptions(); // the camera restarted: the waiting PullMessages gets a SOAP fault
    await waitState(ev, 'resubscribing', 5000);
    assert.match(
      ev.lastError ?? '',
      /the camera dropped the event subscription: Camera 127\.0\.0\.1:\d+ refused PullMessages: The subscription does not exist.*; resubscribing in 0\.1 s/,
    );
    assert.equal(ev.offline, false);
    await waitState(ev, 'subscribed', 5000);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.property === 'Changed' && x.data.State === true);
    assert.equal(count(d, 'CreatePullPointSubscription'), 2);
    assert.deepEqual(states, ['subscribing', 'subscribed', 'resubscribing', 'subscribed']);
    assert.equal(ev.lastError, undefined);
    assert.equal(d.subscriptions, 1);
  });

  it('a camera that keeps refusing PullMessages is retried with growing delays, not in a loop', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port, reconnectMinMs: 200, reconnectMaxMs: 800 });
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    for (let i = 0; i < 50; i++)
      d.overrideNext('PullMessages', {
        status: 400,
        body: '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text>busy</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>',
      });
    d.dropSubscriptions();
    await sleep(2500);
    // delays 0.2 + 0.4 + 0.8 + 0.8 s: at most 5 subscriptions in 2.5 s (a loop without backoff makes hundreds)
    const creates = count(d, 'CreatePullPointSubscription');
    assert.ok(creates >= 3 && creates <= 6, `${creates} subscriptions`);
    assert.match(ev.lastError ?? '', /resubscribing in 0\.8 s/);
  });

  it('renews the subscription before it runs out', async () => {
    const d = await device({ maxTerminationMs: 1500, maxPullWaitMs: 200 });
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    await sleep(3500); // more than twice the granted lifetime
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
    assert.ok(count(d, 'Renew') >= 2, `${count(d, 'Renew')} renewals`);
    assert.equal(count(d, 'CreatePullPointSubscription'), 1, 'never had to resubscribe');
    assert.equal(ev.state, 'subscribed');
  });

  it('a camera that answers PullMessages at once, without waiting for an event, is not polled in a loop', async () => {
    const d = await device({ maxPullWaitMs: 0 });
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    const before = count(d, 'PullMessages');
    await sleep(2000);
    const pulls = count(d, 'PullMessages') - before;
    assert.ok(pulls >= 2 && pulls <= 6, `${pulls} PullMessages in 2 s (at most one per 0.5 s when empty)`);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
  });

  it('a camera offline at start subscribes by itself when it appears', async () => {
    const port = await freePort();
    const ev = subscriber({ port });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'resubscribing', 5000);
    assert.equal(ev.offline, true);
    assert.match(ev.lastError ?? '', /Camera 127\.0\.0\.1:\d+ does not answer \(ECONNREFUSED\); resubscribing in/);
    await sleep(600);
    const d = await device({ port });
    await waitState(ev, 'subscribed', 5000);
    assert.equal(ev.offline, false);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
    assert.equal(logs.filter((l) => l.startsWith('warn: ') && /does not answer/.test(l)).length, 1, 'warned once, not at every retry');
  });

  it('a camera that goes away and comes back is resubscribed; only changes reports what changed meanwhile', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port, onlyChanges: true });
    const got = collector(ev);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: false } });
    d.emitEvent({ topic: 'tns1:Device/Trigger/DigitalInput', source: { InputToken: 'DI_0' }, data: { LogicalState: false } });
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
    await d.setOffline(true);
    await waitState(ev, 'resubscribing', 5000);
    assert.equal(ev.offline, true);
    d.emitEvent({ topic: 'tns1:Device/Trigger/DigitalInput', source: { InputToken: 'DI_0' }, data: { LogicalState: true } }); // while no one listens
    await d.setOffline(false);
    await waitState(ev, 'subscribed', 5000);
    const input = await got.next((x) => x.kind === 'digital-input');
    assert.equal(input.property, 'Initialized');
    assert.deepEqual(input.data, { LogicalState: true });
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: false } });
    await got.next((x) => x.kind === 'motion' && x.data.State === false);
    assert.deepEqual(
      got.events.map((e) => `${e.kind} ${e.property} ${JSON.stringify(e.data)}`),
      ['motion Changed {"State":true}', 'digital-input Initialized {"LogicalState":true}', 'motion Changed {"State":false}'],
      'the initial states of both subscriptions are not repeated',
    );
  });

  it('malformed answers never escape: each one is a failed attempt, then events flow again', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    const env = (body: string): string =>
      `<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>${body}</s:Body></s:Envelope>`;
    d.overrideNext('CreatePullPointSubscription', { status: 200, body: '<html>not soap' });
    d.overrideNext('CreatePullPointSubscription', { status: 200, body: env('<tev:CreatePullPointSubscriptionResponse xmlns:tev="x"/>') });
    d.overrideNext('CreatePullPointSubscription', { status: 200, body: env('<Nothing/>') });
    d.overrideNext('PullMessages', { status: 200, body: '<s:Envelope><s:Body><tev:PullMessagesResponse>' });
    d.overrideNext('PullMessages', { status: 200, body: env('<SomethingElse><NotificationMessage/></SomethingElse>') });
    d.overrideNext('PullMessages', {
      status: 200,
      body: env(
        '<PullMessagesResponse><CurrentTime>yesterday</CurrentTime><NotificationMessage><Topic>tns1:Broken</Topic><Message UtcTime="soon"><Data><SimpleItem Value="x"/></Data></Message></NotificationMessage></PullMessagesResponse>',
      ),
    });
    ev.start();
    await waitState(ev, 'subscribed', 8000);
    const broken = await got.next((x) => x.topic === 'tns1:Broken');
    assert.deepEqual(broken.data, {}, 'an item without a name is left out');
    assert.equal(broken.utcTime, 'soon');
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion', 8000);
    assert.ok(count(d, 'CreatePullPointSubscription') >= 4, `${count(d, 'CreatePullPointSubscription')} subscriptions`);
    assert.ok(
      logs.some((l) => /could not be read|without a subscription address|not a PullMessagesResponse/.test(l)),
      logs.join('\n'),
    );
    assert.deepEqual(uncaught, []);
  });

  it('uses the subscription address when the library cannot read the answer, and the configured host when the camera advertises another', async () => {
    // Times with an offset instead of Z (the library's parser cannot take them) and an address with the camera's inside host.
    const d = await device({ subscriptionHost: '10.255.255.1', subscriptionTimesWithOffset: true });
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    assert.ok(
      logs.some((l) => /could not read the CreatePullPointSubscription answer .*using its address http:\/\/127\.0\.0\.1:\d+\/onvif\/subscription\/1/.test(l)),
      logs.join('\n'),
    );
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', source: { Source: 'vs0' }, data: { State: true } });
    await got.next((x) => x.kind === 'motion');
    assert.equal(count(d, 'CreatePullPointSubscription'), 1);
    assert.equal(ev.state, 'subscribed');
  });

  it('a camera without an event service and wrong credentials say so', async () => {
    const plain = await device({ events: false });
    const a = subscriber({ port: plain.port });
    a.start();
    await waitState(a, 'resubscribing', 5000);
    assert.match(a.lastError ?? '', /Camera 127\.0\.0\.1:\d+ does not offer an ONVIF event service; resubscribing in 0\.4 s/);
    const d = await device();
    const b = subscriber({ port: d.port, password: 'wrong' });
    b.start();
    await waitState(b, 'resubscribing', 5000);
    assert.match(b.lastError ?? '', /refused the credentials .*check the user and password/);
    assert.equal(b.offline, false);
  });

  it('stop() unsubscribes and ends all activity: no events, timers or sockets left', async () => {
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type !== 'Timeout' && type !== 'TCPWRAP') return;
        const stack = new Error().stack ?? '';
        if (/lib[\\/]onvif[\\/]events\.js|node_modules[\\/]onvif[\\/]/.test(stack)) live.set(id, type);
      },
      destroy(id) {
        live.delete(id);
      },
    });
    hook.enable();
    try {
      const port = await freePort();
      const retrying = subscriber({ port });
      const d = await device();
      const pulling = subscriber({ port: d.port });
      retrying.start();
      pulling.start();
      await waitState(pulling, 'subscribed', 5000);
      await waitState(retrying, 'resubscribing', 5000);
      await sleep(100); // a PullMessages is waiting on the device
      assert.equal(d.subscriptions, 1);
      assert.ok(live.size > 0, 'the tracker sees our timers and sockets');

      await Promise.all([retrying.stop(), pulling.stop()]);
      assert.equal(pulling.state, 'stopped');
      assert.equal(retrying.state, 'stopped');
      assert.equal(count(d, 'Unsubscribe'), 1);
      assert.equal(d.subscriptions, 0, 'the camera has no subscription left');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual([...live.values()], [], 'timers or sockets still running right after stop()');
      const seen: string[] = [];
      for (const c of [retrying, pulling]) for (const e of ['state', 'event']) c.on(e, () => seen.push(e));
      const requests = d.requests.length;
      d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', data: { State: true } });
      await device({ port }); // the retrying subscriber's camera appears: it must not notice
      await sleep(1500);
      assert.deepEqual(seen, []);
      assert.equal(d.requests.length, requests, 'no requests after stop');
      assert.deepEqual([...live.values()], [], 'timers or sockets left running after stop()');
    } finally {
      hook.disable();
    }
  });

  it('a throwing listener does not escape into the library', async () => {
    const d = await device();
    const ev = subscriber({ port: d.port });
    const got = collector(ev);
    ev.on('event', () => {
      throw new Error('listener bug');
    });
    ev.start();
    await waitState(ev, 'subscribed', 5000);
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', data: { State: true } });
    d.emitEvent({ topic: 'tns1:VideoSource/MotionAlarm', data: { State: false } });
    await got.next((x) => x.data.State === false);
    assert.equal(ev.state, 'subscribed');
    assert.ok(logs.some((l) => l.includes("an 'event' listener threw: listener bug")));
  });
});
