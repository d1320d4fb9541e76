/**
 * A minimal ONVIF device for tests: SOAP 1.2 over plain HTTP (node:http),
 * bound to 127.0.0.1 only. It answers the device and media (ver10) requests
 * that the `onvif` library and lib/onvif/camera.ts send while connecting and
 * afterwards, and checks WS-Security UsernameToken PasswordDigest when a
 * username is configured.
 *
 * Events (ver10 event service, pull-point): GetServices and GetCapabilities
 * advertise it (unless `events: false`); CreatePullPointSubscription returns
 * a subscription address (/onvif/subscription/<n>); PullMessages waits until
 * an event is queued or its Timeout passes; Renew and Unsubscribe. Like a
 * camera, a new subscription first gets an 'Initialized' message for every
 * property the device knows. Tests push events with emitEvent() and drop
 * every subscription with dropSubscriptions() (a restarted camera: the next
 * PullMessages gets a SOAP fault).
 *
 * Not a conformant ONVIF implementation: request parsing is regex based and
 * only as strict as the tests need.
 */
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeOnvifProfile {
  token: string;
  name: string;
  width: number;
  height: number;
  /** Video encoder encoding (H264, H265, JPEG...). Default 'H264'. */
  encoding?: string;
  fps?: number;
  rtspUri: string;
}

export interface FakeOnvifDeviceOptions {
  /** Port to listen on; 0 or undefined picks a free one. */
  port?: number;
  username?: string;
  password?: string;
  profiles: FakeOnvifProfile[];
  /** The device clock runs this far ahead of ours (negative: behind). Default 0. */
  clockOffsetMs?: number;
  /** Accepted difference between a UsernameToken's Created and the device clock. Default 10 s. */
  maxClockSkewMs?: number;
  deviceInfo?: Partial<Record<'Manufacturer' | 'Model' | 'FirmwareVersion' | 'SerialNumber' | 'HardwareId', string>>;
  /** Offer the event service. Default true. */
  events?: boolean;
  /** Longest time a PullMessages is held when nothing is queued (the request's Timeout when shorter). Default: the request's Timeout. */
  maxPullWaitMs?: number;
  /** Longest subscription lifetime granted by CreatePullPointSubscription and Renew. Default: as asked. */
  maxTerminationMs?: number;
  /** Host written into subscription addresses (a camera behind NAT advertises its inside address). Default 127.0.0.1. */
  subscriptionHost?: string;
  /** Write CurrentTime/TerminationTime of CreatePullPointSubscription as '+00:00' instead of 'Z' (valid, but the onvif library cannot read it). */
  subscriptionTimesWithOffset?: boolean;
}

export type FakeSimpleValue = string | number | boolean;

export interface FakeOnvifEvent {
  /** Topic as the device writes it, e.g. 'tns1:VideoSource/MotionAlarm' ('ns2:' is also bound to the ONVIF topic namespace). */
  topic: string;
  source?: Record<string, FakeSimpleValue>;
  data?: Record<string, FakeSimpleValue>;
  /** Default 'Changed'; null for an event that is not about a property. */
  property?: 'Initialized' | 'Changed' | 'Deleted' | null;
  /** Default: the device clock now. */
  utcTime?: Date;
}

export interface FakeOnvifDevice {
  port: number;
  /** The SOAP action names received, in order (e.g. 'GetSystemDateAndTime'), including refused ones. */
  requests: string[];
  stop(): Promise<void>;
  /** true: stop listening and drop open connections (connections are refused); false: listen again on the same port. */
  setOffline(offline: boolean): Promise<void>;
  /** Queues a notification for every live subscription (and remembers a property's state for later subscriptions). */
  emitEvent(event: FakeOnvifEvent): void;
  /** Forgets every subscription, as a restarted camera does: held and later PullMessages get a SOAP fault. */
  dropSubscriptions(): void;
  /** Live (not expired, not unsubscribed) subscriptions. */
  readonly subscriptions: number;
  /** The next request with this SOAP action gets this answer instead (body sent as is, no envelope added). */
  overrideNext(action: string, answer: { status: number; body: string }): void;
}

const NS =
  'xmlns:s="http://www.w3.org/2003/05/soap-envelope" ' +
  'xmlns:tt="http://www.onvif.org/ver10/schema" ' +
  'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" ' +
  'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" ' +
  'xmlns:ter="http://www.onvif.org/ver10/error"';

/** Added to event answers only. */
const EVENT_NS =
  'xmlns:tev="http://www.onvif.org/ver10/events/wsdl" ' +
  'xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" ' +
  'xmlns:wsa5="http://www.w3.org/2005/08/addressing" ' +
  'xmlns:tns1="http://www.onvif.org/ver10/topics" ' +
  'xmlns:ns2="http://www.onvif.org/ver10/topics"';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function unesc(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function envelope(body: string, extraNs = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope ${NS}${extraNs ? ' ' + extraNs : ''}><s:Body>${body}</s:Body></s:Envelope>`;
}

/** xsd:duration (PnDTnHnMnS) in ms, or an xsd:dateTime as ms from `now`; undefined when unreadable. */
function durationMs(text: string | undefined, now: number): number | undefined {
  if (!text) return undefined;
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$/.exec(text.trim());
  if (m && text.trim() !== 'P' && text.trim() !== 'PT') {
    return ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 60000 + Number(m[4] ?? 0) * 1000;
  }
  const t = Date.parse(text);
  return Number.isFinite(t) ? t - now : undefined;
}

interface Subscription {
  id: number;
  endsAt: number;
  queue: string[];
  /** Held PullMessages: called when something is queued or the subscription is dropped. */
  waiters: Set<() => void>;
}

function fault(subcode: string, reason: string): string {
  return envelope(
    '<s:Fault><s:Code><s:Value>s:Sender</s:Value>' +
      `<s:Subcode><s:Value>${subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en">${esc(reason)}</s:Text></s:Reason></s:Fault>`,
  );
}

/** Text of the first element with this local name (any prefix). */
function element(xml: string, localName: string): string | undefined {
  const m = new RegExp(`<(?:[\\w.-]+:)?${localName}(?:\\s[^>]*)?>([^<]*)</(?:[\\w.-]+:)?${localName}>`).exec(xml);
  return m ? unesc(m[1].trim()) : undefined;
}

/** Local name of the first element inside the SOAP Body. */
function actionOf(xml: string): string {
  const m = /<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([\w.-]+)/.exec(xml);
  return m ? m[1] : 'Unknown';
}

/** The device answers SOAP here only; other paths get an HTML 404 like a camera's web server. */
const SERVICE_PATHS = new Set(['/onvif/device_service', '/onvif/media_service', '/onvif/events_service']);
const SUBSCRIPTION_PATH = /^\/onvif\/subscription\/(\d+)$/;

type AuthResult = 'ok' | 'missing' | 'wrong' | 'time';

export async function startOnvifDevice(opts: FakeOnvifDeviceOptions): Promise<FakeOnvifDevice> {
  const requests: string[] = [];
  const clockOffsetMs = opts.clockOffsetMs ?? 0;
  const maxSkewMs = opts.maxClockSkewMs ?? 10_000;
  const info = {
    Manufacturer: 'TwinRec Test',
    Model: 'FakeCam 1',
    FirmwareVersion: '1.00',
    SerialNumber: '000123',
    HardwareId: 'HW-1',
    ...opts.deviceInfo,
  };
  const sockets = new Set<Socket>();
  let port = opts.port ?? 0;
  const eventsOn = opts.events !== false;
  const subscriptions = new Map<number, Subscription>();
  let nextSubscription = 1;
  /** Property states (topic + source) for the Initialized messages of new subscriptions. */
  const properties = new Map<string, FakeOnvifEvent>();
  const overrides = new Map<string, { status: number; body: string }[]>();

  const deviceNow = (): Date => new Date(Date.now() + clockOffsetMs);

  function checkAuth(xml: string): AuthResult {
    if (!opts.username) return 'ok';
    const user = element(xml, 'Username');
    const digest = element(xml, 'Password');
    const nonce = element(xml, 'Nonce');
    const created = element(xml, 'Created');
    if (user === undefined || digest === undefined || nonce === undefined || created === undefined) return 'missing';
    const expected = createHash('sha1')
      .update(Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created, 'utf8'), Buffer.from(opts.password ?? '', 'utf8')]))
      .digest('base64');
    if (user !== opts.username || digest !== expected) return 'wrong';
    const createdMs = Date.parse(created);
    if (!Number.isFinite(createdMs) || Math.abs(createdMs - deviceNow().getTime()) > maxSkewMs) return 'time';
    return 'ok';
  }

  function xaddr(path: string): string {
    return `http://127.0.0.1:${port}${path}`;
  }

  function profileXml(p: FakeOnvifProfile, index: number): string {
    const encoding = p.encoding ?? 'H264';
    return (
      `<trt:Profiles token="${esc(p.token)}" fixed="true">` +
      `<tt:Name>${esc(p.name)}</tt:Name>` +
      '<tt:VideoSourceConfiguration token="vsc0"><tt:Name>VideoSourceConfig</tt:Name><tt:UseCount>' +
      opts.profiles.length +
      '</tt:UseCount><tt:SourceToken>vs0</tt:SourceToken>' +
      '<tt:Bounds x="0" y="0" width="1920" height="1080"></tt:Bounds></tt:VideoSourceConfiguration>' +
      `<tt:VideoEncoderConfiguration token="vec${index}"><tt:Name>VideoEncoder${index}</tt:Name><tt:UseCount>1</tt:UseCount>` +
      `<tt:Encoding>${esc(encoding)}</tt:Encoding>` +
      `<tt:Resolution><tt:Width>${p.width}</tt:Width><tt:Height>${p.height}</tt:Height></tt:Resolution>` +
      '<tt:Quality>5</tt:Quality>' +
      `<tt:RateControl><tt:FrameRateLimit>${p.fps ?? 25}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>` +
      '<tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl>' +
      '<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>' +
      '</trt:Profiles>'
    );
  }

  // ---- events -------------------------------------------------------------

  const iso = (ms: number): string => new Date(ms).toISOString();
  const deviceMs = (): number => deviceNow().getTime();
  const zone = (t: string): string => (opts.subscriptionTimesWithOffset ? t.replace(/Z$/, '+00:00') : t);

  function items(values: Record<string, FakeSimpleValue> | undefined): string {
    return Object.entries(values ?? {})
      .map(([k, v]) => `<tt:SimpleItem Name="${esc(k)}" Value="${esc(String(v))}"/>`)
      .join('');
  }

  function notificationXml(e: FakeOnvifEvent, property: string | null): string {
    const time = e.utcTime ?? deviceNow();
    return (
      '<wsnt:NotificationMessage>' +
      `<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">${esc(e.topic)}</wsnt:Topic>` +
      `<wsnt:Message><tt:Message UtcTime="${time.toISOString()}"${property ? ` PropertyOperation="${property}"` : ''}>` +
      `<tt:Source>${items(e.source)}</tt:Source><tt:Data>${items(e.data)}</tt:Data>` +
      '</tt:Message></wsnt:Message></wsnt:NotificationMessage>'
    );
  }

  const propertyKey = (e: FakeOnvifEvent): string => `${e.topic}\u0000${JSON.stringify(e.source ?? {})}`;

  function grant(askedMs: number | undefined): number {
    const asked = askedMs !== undefined && askedMs > 0 ? askedMs : 60_000;
    return Math.min(asked, opts.maxTerminationMs ?? Infinity);
  }

  /** The subscription a request is for (by path), or undefined when it does not exist or has expired. */
  function subscriptionFor(url: string): Subscription | undefined {
    const m = SUBSCRIPTION_PATH.exec(url.split('?')[0]);
    const sub = m ? subscriptions.get(Number(m[1])) : undefined;
    if (sub && Date.now() > sub.endsAt) {
      endSubscription(sub);
      return undefined;
    }
    return sub;
  }

  function endSubscription(sub: Subscription): void {
    subscriptions.delete(sub.id);
    for (const w of [...sub.waiters]) w();
  }

  const unknownSubscription = (): [number, string] => [
    400,
    fault('wsrf-rw:ResourceUnknownFault', 'The subscription does not exist (it expired, was unsubscribed, or the device restarted)'),
  ];

  function pullResponse(sub: Subscription, limit: number): [number, string] {
    const messages = sub.queue.splice(0, limit);
    const now = deviceMs();
    return [
      200,
      envelope(
        `<tev:PullMessagesResponse><tev:CurrentTime>${iso(now)}</tev:CurrentTime>` +
          `<tev:TerminationTime>${iso(now + (sub.endsAt - Date.now()))}</tev:TerminationTime>` +
          messages.join('') +
          '</tev:PullMessagesResponse>',
        EVENT_NS,
      ),
    ];
  }

  function pullMessages(xml: string, url: string, onClose: (fn: () => void) => void): [number, string] | Promise<[number, string]> {
    const sub = subscriptionFor(url);
    if (!sub) return unknownSubscription();
    const limit = Math.max(1, Number(element(xml, 'MessageLimit')) || 1);
    if (sub.queue.length) return pullResponse(sub, limit);
    const wait = Math.min(durationMs(element(xml, 'Timeout'), Date.now()) ?? 10_000, opts.maxPullWaitMs ?? Infinity);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        sub.waiters.delete(done);
        resolve(subscriptions.get(sub.id) === sub ? pullResponse(sub, limit) : unknownSubscription());
      };
      const timer = setTimeout(done, Math.max(0, wait));
      sub.waiters.add(done);
      // A client that gives up (or a device going offline) ends the wait.
      onClose(() => {
        clearTimeout(timer);
        sub.waiters.delete(done);
      });
    });
  }

  function eventAnswer(action: string, xml: string, url: string, onClose: (fn: () => void) => void): [number, string] | Promise<[number, string]> {
    switch (action) {
      case 'CreatePullPointSubscription': {
        const id = nextSubscription++;
        const now = Date.now();
        const sub: Subscription = { id, endsAt: now + grant(durationMs(element(xml, 'InitialTerminationTime'), deviceMs())), queue: [], waiters: new Set() };
        subscriptions.set(id, sub);
        for (const e of properties.values()) sub.queue.push(notificationXml(e, 'Initialized'));
        const host = opts.subscriptionHost ?? '127.0.0.1';
        return [
          200,
          envelope(
            '<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>' +
              `<wsa5:Address>http://${host}:${port}/onvif/subscription/${id}</wsa5:Address>` +
              '</tev:SubscriptionReference>' +
              `<wsnt:CurrentTime>${zone(iso(deviceMs()))}</wsnt:CurrentTime><wsnt:TerminationTime>${zone(iso(deviceMs() + (sub.endsAt - now)))}</wsnt:TerminationTime>` +
              '</tev:CreatePullPointSubscriptionResponse>',
            EVENT_NS,
          ),
        ];
      }
      case 'PullMessages':
        return pullMessages(xml, url, onClose);
      case 'Renew': {
        const sub = subscriptionFor(url);
        if (!sub) return unknownSubscription();
        sub.endsAt = Date.now() + grant(durationMs(element(xml, 'TerminationTime'), deviceMs()));
        return [
          200,
          envelope(
            `<wsnt:RenewResponse><wsnt:TerminationTime>${iso(deviceMs() + (sub.endsAt - Date.now()))}</wsnt:TerminationTime>` +
              `<wsnt:CurrentTime>${iso(deviceMs())}</wsnt:CurrentTime></wsnt:RenewResponse>`,
            EVENT_NS,
          ),
        ];
      }
      case 'Unsubscribe': {
        const sub = subscriptionFor(url);
        if (!sub) return unknownSubscription();
        endSubscription(sub);
        return [200, envelope('<wsnt:UnsubscribeResponse/>', EVENT_NS)];
      }
      default:
        return [400, fault('ter:ActionNotSupported', `${action} is not supported by this test device`)];
    }
  }

  /** Returns [HTTP status, SOAP body XML] (or a promise of it, for a held PullMessages). */
  function answer(action: string, xml: string, url = '', onClose: (fn: () => void) => void = () => undefined): [number, string] | Promise<[number, string]> {
    const override = overrides.get(action)?.shift();
    if (override) return [override.status, override.body];
    // ONVIF lets GetSystemDateAndTime through without authentication, so a
    // client can learn the device clock before it signs anything.
    if (action !== 'GetSystemDateAndTime') {
      const auth = checkAuth(xml);
      if (auth === 'time') return [400, fault('ter:NotAuthorized', 'Wsse authorized time check failed.')];
      if (auth !== 'ok') {
        return [400, fault('ter:NotAuthorized', 'The action requested requires authorization and the sender is not authorized')];
      }
    }
    switch (action) {
      case 'GetSystemDateAndTime': {
        const d = deviceNow();
        return [
          200,
          envelope(
            '<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>' +
              '<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>' +
              '<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>' +
              '<tt:UTCDateTime>' +
              `<tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
              `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date>` +
              '</tt:UTCDateTime>' +
              '</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>',
          ),
        ];
      }
      case 'GetServices':
        return [
          200,
          envelope(
            '<tds:GetServicesResponse>' +
              '<tds:Service><tds:Namespace>http://www.onvif.org/ver10/device/wsdl</tds:Namespace>' +
              `<tds:XAddr>${xaddr('/onvif/device_service')}</tds:XAddr>` +
              '<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>' +
              '<tds:Service><tds:Namespace>http://www.onvif.org/ver10/media/wsdl</tds:Namespace>' +
              `<tds:XAddr>${xaddr('/onvif/media_service')}</tds:XAddr>` +
              '<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>' +
              (eventsOn
                ? '<tds:Service><tds:Namespace>http://www.onvif.org/ver10/events/wsdl</tds:Namespace>' +
                  `<tds:XAddr>${xaddr('/onvif/events_service')}</tds:XAddr>` +
                  '<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>'
                : '') +
              '</tds:GetServicesResponse>',
          ),
        ];
      case 'GetCapabilities':
        return [
          200,
          envelope(
            '<tds:GetCapabilitiesResponse><tds:Capabilities>' +
              `<tt:Device><tt:XAddr>${xaddr('/onvif/device_service')}</tt:XAddr></tt:Device>` +
              (eventsOn
                ? `<tt:Events><tt:XAddr>${xaddr('/onvif/events_service')}</tt:XAddr>` +
                  '<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>' +
                  '<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>'
                : '') +
              `<tt:Media><tt:XAddr>${xaddr('/onvif/media_service')}</tt:XAddr>` +
              '<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>' +
              '<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>' +
              '</tds:Capabilities></tds:GetCapabilitiesResponse>',
          ),
        ];
      case 'GetDeviceInformation':
        return [
          200,
          envelope(
            '<tds:GetDeviceInformationResponse>' +
              Object.entries(info)
                .map(([k, v]) => `<tds:${k}>${esc(String(v))}</tds:${k}>`)
                .join('') +
              '</tds:GetDeviceInformationResponse>',
          ),
        ];
      case 'GetScopes':
        return [
          200,
          envelope(
            '<tds:GetScopesResponse>' +
              '<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/type/video_encoder</tt:ScopeItem></tds:Scopes>' +
              '<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/Profile/Streaming</tt:ScopeItem></tds:Scopes>' +
              '</tds:GetScopesResponse>',
          ),
        ];
      case 'GetHostname':
        return [
          200,
          envelope(
            '<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP><tt:Name>fakecam</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>',
          ),
        ];
      case 'GetProfiles':
        return [200, envelope(`<trt:GetProfilesResponse>${opts.profiles.map(profileXml).join('')}</trt:GetProfilesResponse>`)];
      case 'GetVideoSources':
        return [
          200,
          envelope(
            '<trt:GetVideoSourcesResponse><trt:VideoSources token="vs0"><tt:Framerate>25</tt:Framerate>' +
              '<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>' +
              '</trt:VideoSources></trt:GetVideoSourcesResponse>',
          ),
        ];
      case 'GetStreamUri': {
        const token = element(xml, 'ProfileToken');
        const p = opts.profiles.find((x) => x.token === token);
        if (!p) return [400, fault('ter:InvalidArgVal', `No profile with token ${token ?? '(none)'}`)];
        return [
          200,
          envelope(
            '<trt:GetStreamUriResponse><trt:MediaUri>' +
              `<tt:Uri>${esc(p.rtspUri)}</tt:Uri>` +
              '<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>' +
              '<tt:Timeout>PT60S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>',
          ),
        ];
      }
      case 'CreatePullPointSubscription':
      case 'PullMessages':
      case 'Renew':
      case 'Unsubscribe':
        if (eventsOn) return eventAnswer(action, xml, url, onClose);
        return [400, fault('ter:ActionNotSupported', `${action} is not supported by this test device`)];
      default:
        return [400, fault('ter:ActionNotSupported', `${action} is not supported by this test device`)];
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      let result: [number, string] | Promise<[number, string]>;
      try {
        const xml = Buffer.concat(chunks).toString('utf8');
        const path = (req.url ?? '').split('?')[0];
        if (req.method !== 'POST') {
          result = [405, 'POST only'];
        } else if (!SERVICE_PATHS.has(path) && !(eventsOn && SUBSCRIPTION_PATH.test(path))) {
          result = [404, '<html><body><h1>404 Not Found</h1></body></html>'];
          requests.push(`404 ${req.url ?? ''}`);
        } else {
          const action = actionOf(xml);
          requests.push(action);
          result = answer(action, xml, path, (fn) => res.on('close', fn));
        }
      } catch (err) {
        result = [500, fault('ter:Receiver', `test device failure: ${String(err)}`)];
      }
      const send = ([status, body]: [number, string]): void => {
        if (res.destroyed || res.writableEnded) return;
        const type = status === 404 ? 'text/html' : 'application/soap+xml; charset=utf-8';
        res.writeHead(status, { 'Content-Type': type, Connection: 'close' });
        res.end(body);
      };
      if (Array.isArray(result)) send(result);
      else result.then(send, (err: unknown) => send([500, fault('ter:Receiver', `test device failure: ${String(err)}`)]));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  let listening = false;

  function listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', onError);
        listening = true;
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  function close(): Promise<void> {
    if (!listening) return Promise.resolve();
    listening = false;
    // Held PullMessages end with their sockets.
    for (const sub of subscriptions.values()) for (const w of [...sub.waiters]) w();
    return new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
      sockets.clear();
    });
  }

  await listen();

  return {
    get port() {
      return port;
    },
    requests,
    stop: close,
    async setOffline(offline: boolean): Promise<void> {
      if (offline) await close();
      else if (!listening) await listen();
    },
    emitEvent(event: FakeOnvifEvent): void {
      const property = event.property === undefined ? 'Changed' : event.property;
      const stamped = { ...event, utcTime: event.utcTime ?? deviceNow() };
      if (property === 'Deleted') properties.delete(propertyKey(event));
      else if (property) properties.set(propertyKey(event), stamped);
      const xml = notificationXml(stamped, property);
      for (const sub of [...subscriptions.values()]) {
        if (Date.now() > sub.endsAt) {
          endSubscription(sub);
          continue;
        }
        sub.queue.push(xml);
        for (const w of [...sub.waiters]) w();
      }
    },
    dropSubscriptions(): void {
      for (const sub of [...subscriptions.values()]) endSubscription(sub);
    },
    get subscriptions() {
      let n = 0;
      for (const sub of subscriptions.values()) if (Date.now() <= sub.endsAt) n++;
      return n;
    },
    overrideNext(action: string, answer: { status: number; body: string }): void {
      const list = overrides.get(action) ?? [];
      list.push(answer);
      overrides.set(action, list);
    },
  };
}

/** A port that was free a moment ago (for a device that starts later). */
export { freePort } from './ports';
