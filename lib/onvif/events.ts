/**
 * ONVIF events of one camera as plain objects, through a pull-point
 * subscription (CreatePullPointSubscription, then PullMessages in a loop,
 * Renew before the subscription runs out, Unsubscribe on stop). A camera
 * that drops the subscription (a SOAP fault on PullMessages or Renew: it
 * restarted, or the subscription expired) is resubscribed with backoff, and
 * a camera that is offline at start subscribes by itself when it appears.
 * No Node-RED import here; nodes/onvif-event wraps this.
 *
 * Transport: the `onvif` library's own pull-point methods
 * (createPullPointSubscription, pullMessages, renew, unsubscribe), not our
 * own SOAP. They bring what is hard to get right across cameras:
 * WS-UsernameToken signed with the camera clock (timeShift), HTTP digest
 * authentication, and the Axis SubscriptionId reference parameter. We do NOT
 * use its event loop (the Cam's 'event' listener): it resubscribes at once
 * after a fault, with no backoff (a hot loop against a camera that keeps
 * refusing), retries from 10 ms on network errors with timers we cannot
 * clear, and it keeps one subscription per Cam. Instead:
 * - each subscriber has its own Cam and its own HTTP agent, built like
 *   lib/onvif/camera.ts builds its session; `preserveAddress` makes the
 *   library send requests to the subscription address with the host and
 *   port configured here (a camera behind NAT advertises its inside
 *   address), and our agent is put on that address object (the library
 *   passes it to http.request as the request options), so stop() can
 *   destroy a PullMessages that is waiting on the camera;
 * - the answers are read from the raw XML (the library's 'rawResponse'
 *   event), not from the library's parsed objects: the library strips
 *   namespace declarations (so 'ns2:' in a topic could not be mapped to
 *   'tns1:') and turns tokens such as '1.10' into numbers;
 * - when the library cannot read a CreatePullPointSubscription answer (its
 *   parser needs CurrentTime/TerminationTime as '...Z' dates) but the raw
 *   answer has a subscription address, we use that address.
 *
 * Defensive rules: the same as lib/onvif/camera.ts. Every callback handed to
 * the library only settles a promise inside try/catch (our logic runs later,
 * in a microtask), is settled once and guarded by a watchdog; the Cam always
 * has an 'error' listener, even after stop(); listeners of ours that throw are
 * caught; credentials are never logged.
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import { errorText } from '../model/errors';
import { callLibrary, ClosableAgent, fmtSeconds, LibCallback, LibClientOptions, LibError, LibSession, LibTarget, newLibClient, NETWORK_CODES, positive, shorten, Superseded, watchLibrary, xmlUnescape } from './shared';

export interface OnvifEventsOptions {
  host: string;
  /** HTTP port of the device service. Default 80. */
  port?: number;
  /** Device service path. Default '/onvif/device_service'. */
  path?: string;
  username?: string;
  password?: string;
  /** Per request (PullMessages waits longer: the camera may hold it up to 60 s). Default 5000. */
  timeoutMs?: number;
  /** First resubscribe delay. Default 1000. */
  reconnectMinMs?: number;
  /** Resubscribe delay cap (exponential backoff). Default 30000. */
  reconnectMaxMs?: number;
  /** Topic filter (see parseTopicFilter); empty: every event. */
  filter?: string;
  /** Only changes of a property (see ChangeTracker). Default false. */
  onlyChanges?: boolean;
  /** Messages per PullMessages. Default 10. */
  messageLimit?: number;
}

export type OnvifEventsState = 'idle' | 'subscribing' | 'subscribed' | 'resubscribing' | 'stopped';

export type OnvifEventKind = 'motion' | 'digital-input' | 'tamper' | 'other';

export type OnvifPropertyOperation = 'Initialized' | 'Changed' | 'Deleted';

export type SimpleValue = string | number | boolean;

/** One ONVIF notification, flat. */
export interface OnvifEvent {
  /** Normalised topic: the ONVIF topic namespace is always 'tns1:', e.g. 'tns1:VideoSource/MotionAlarm'. */
  topic: string;
  kind: OnvifEventKind;
  /** SimpleItems of the message's Source (and Key), values as the camera wrote them. */
  source: Record<string, string>;
  /** SimpleItems of the message's Data; 'true'/'false' become booleans, plain decimals numbers. */
  data: Record<string, SimpleValue>;
  /** The message's UtcTime as ISO 8601 (as sent when it cannot be read; null when absent). */
  utcTime: string | null;
  /** UtcTime as UTC epoch milliseconds (null when absent or unreadable). */
  time: number | null;
  /** PropertyOperation; null for events that are not about a property. */
  property: OnvifPropertyOperation | null;
}

export interface OnvifEventsLog {
  warn(msg: string): void;
  debug?(msg: string): void;
}

// ---------------------------------------------------------------------------
// Parsing (pure, exported for tests)

const ONVIF_TOPICS_NS = 'http://www.onvif.org/ver10/topics';

/** First segments of the topics in the ONVIF topic namespace (for topics whose prefix is not declared). */
const ONVIF_TOPIC_ROOTS = new Set(
  [
    'VideoSource',
    'VideoEncoder',
    'VideoAnalytics',
    'VideoOutput',
    'AudioSource',
    'AudioAnalytics',
    'Device',
    'RuleEngine',
    'PTZController',
    'Media',
    'Monitoring',
    'RecordingConfig',
    'RecordingHistory',
    'UserAlarm',
    'AccessControl',
    'AccessPoint',
    'Door',
    'Configuration',
    'Profile',
    'Credential',
    'Receiver',
  ].map((s) => s.toLowerCase()),
);

/** Attributes of a start tag's attribute text, by local name. */
function attributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const name = m[1].includes(':') ? m[1].slice(m[1].indexOf(':') + 1) : m[1];
    if (m[1].startsWith('xmlns')) continue;
    out[name] = xmlUnescape(m[2] ?? m[3] ?? '');
  }
  return out;
}

/** prefix -> namespace URI for every xmlns:prefix declaration in the document. */
export function namespaceMap(xml: string): Map<string, string> {
  const map = new Map<string, string>();
  const re = /\bxmlns:([\w.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    // The first declaration of a prefix wins (they rarely differ within one answer).
    if (!map.has(m[1])) map.set(m[1], (m[2] ?? m[3] ?? '').trim());
  }
  return map;
}

/** Elements with this local name (any prefix): their attribute text and content ('' when self-closing). */
function elements(xml: string, localName: string): { attrs: string; body: string }[] {
  const out: { attrs: string; body: string }[] = [];
  const re = new RegExp(`<([\\w.-]+:)?${localName}(\\s[^>]*?)?(/>|>)`, 'g');
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    const attrs = m[2] ?? '';
    if (m[3] === '/>') {
      out.push({ attrs, body: '' });
      continue;
    }
    const close = `</${m[1] ?? ''}${localName}>`;
    const end = xml.indexOf(close, re.lastIndex);
    if (end < 0) continue; // unterminated: skip it
    out.push({ attrs, body: xml.slice(re.lastIndex, end) });
    re.lastIndex = end + close.length;
  }
  return out;
}

/** Text of the first element with this local name, trimmed and unescaped. */
function elementText(xml: string, localName: string): string | undefined {
  const e = elements(xml, localName)[0];
  if (!e) return undefined;
  return xmlUnescape(e.body.replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1').replace(/<[^>]*>/g, '')).trim();
}

/**
 * The topic with the ONVIF topic namespace written 'tns1:' whatever prefix
 * the camera used; other namespaces keep their prefix. A topic whose prefix
 * is not declared (or that has none) gets 'tns1:' when its root is an ONVIF
 * topic root (VideoSource, Device, RuleEngine...).
 */
export function normaliseTopic(topic: string, namespaces: Map<string, string> = new Map()): string {
  const parts = topic
    .trim()
    .split('/')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p !== '.');
  return parts
    .map((part, i) => {
      const colon = part.indexOf(':');
      const prefix = colon >= 0 ? part.slice(0, colon) : '';
      const name = colon >= 0 ? part.slice(colon + 1) : part;
      const uri = prefix ? namespaces.get(prefix) : undefined;
      if (uri !== undefined) return (uri.replace(/\/+$/, '') === ONVIF_TOPICS_NS ? 'tns1:' : `${prefix}:`) + name;
      if (i === 0 && ONVIF_TOPIC_ROOTS.has(name.toLowerCase()) && (!prefix || /^(tns\d*|ns\d*|onvif)$/i.test(prefix))) return `tns1:${name}`;
      return part;
    })
    .join('/');
}

/** What a site usually wires: motion, a digital input, tampering; everything else is 'other'. */
export function eventKind(topic: string): OnvifEventKind {
  const t = topic.replace(/[\w.-]+:/g, '').toLowerCase();
  if (/(^|\/)(tamper|tamperdetector|globalscenechange|imagetooblurry|imagetoodark|imagetoobright|scenechange|defocus)(\/|$)/.test(t)) return 'tamper';
  if (/(^|\/)(digitalinput|virtualinput|logicalinput|alarminput)(\/|$)/.test(t) || /(^|\/)io\/(port|input)(\/|$)/.test(t)) return 'digital-input';
  if (/(^|\/)(motionalarm|cellmotiondetector|motionregiondetector|motiondetector|motiondetection|motion)(\/|$)/.test(t)) return 'motion';
  return 'other';
}

function typed(value: string): SimpleValue {
  const v = value.trim();
  if (/^true$/i.test(v)) return true;
  if (/^false$/i.test(v)) return false;
  if (/^-?(0|[1-9]\d{0,14})(\.\d+)?$/.test(v)) return Number(v);
  return value;
}

function simpleItems(block: string): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const item of elements(block, 'SimpleItem')) {
    const a = attributes(item.attrs);
    if (a.Name === undefined) continue;
    out.push({ name: a.Name, value: a.Value ?? '' });
  }
  return out;
}

const PROPERTY_OPERATIONS: Record<string, OnvifPropertyOperation> = { initialized: 'Initialized', changed: 'Changed', deleted: 'Deleted' };

/**
 * The notifications in a PullMessagesResponse (or a Notify), flat.
 * Messages without a topic are left out; nothing here throws on bad input.
 */
export function parseNotifications(xml: string): OnvifEvent[] {
  if (typeof xml !== 'string' || !xml) return [];
  const namespaces = namespaceMap(xml);
  const out: OnvifEvent[] = [];
  for (const nm of elements(xml, 'NotificationMessage')) {
    try {
      const rawTopic = elementText(nm.body, 'Topic');
      if (!rawTopic) continue;
      const topic = normaliseTopic(rawTopic, namespaces);
      if (!topic) continue;
      // wsnt:Message wraps tt:Message: the one with UtcTime / PropertyOperation is the event (else the whole block).
      let attrs: Record<string, string> = {};
      let body = nm.body;
      const re = /<(?:[\w.-]+:)?Message(\s[^>]*?)?\/?>/g;
      for (let m = re.exec(nm.body); m; m = re.exec(nm.body)) {
        const a = attributes(m[1] ?? '');
        if (a.UtcTime !== undefined || a.PropertyOperation !== undefined) {
          attrs = a;
          body = nm.body.slice(re.lastIndex);
          break;
        }
      }
      const source: Record<string, string> = {};
      for (const block of [...elements(body, 'Source'), ...elements(body, 'Key')]) {
        for (const { name, value } of simpleItems(block.body)) source[name] = value;
      }
      const data: Record<string, SimpleValue> = {};
      for (const block of elements(body, 'Data')) {
        for (const { name, value } of simpleItems(block.body)) data[name] = typed(value);
      }
      const rawTime = attrs.UtcTime?.trim();
      const ms = rawTime ? Date.parse(rawTime) : NaN;
      out.push({
        topic,
        kind: eventKind(topic),
        source,
        data,
        utcTime: rawTime ? (Number.isFinite(ms) ? new Date(ms).toISOString() : rawTime) : null,
        time: Number.isFinite(ms) ? ms : null,
        property: PROPERTY_OPERATIONS[(attrs.PropertyOperation ?? '').trim().toLowerCase()] ?? null,
      });
    } catch {
      /* a message we cannot read is left out */
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Topic filter and "only changes"

const KINDS: OnvifEventKind[] = ['motion', 'digital-input', 'tamper', 'other'];
const SEGMENT = /^([\w.*-]+:)?[\w.*-]+$/;

export type TopicFilter = (event: Pick<OnvifEvent, 'topic' | 'kind'>) => boolean;

/**
 * A filter from text: entries separated by commas or spaces, each one a kind
 * (motion, digital-input, tamper, other) or a topic such as
 * 'tns1:VideoSource/MotionAlarm' (any prefix for the ONVIF namespace, or
 * none). A topic matches itself and the topics below it; '*' stands for any
 * part of one level. Case is ignored. Empty text: every event. Throws an
 * Error with a sentence for a malformed entry.
 */
export function parseTopicFilter(text: string | undefined): TopicFilter {
  const entries = (text ?? '').split(/[\s,]+/).filter(Boolean);
  if (!entries.length) return () => true;
  const kinds = new Set<OnvifEventKind>();
  const patterns: RegExp[] = [];
  for (const entry of entries) {
    const lower = entry.toLowerCase();
    if ((KINDS as string[]).includes(lower)) {
      kinds.add(lower as OnvifEventKind);
      continue;
    }
    const segments = entry.replace(/\/+$/, '').split('/');
    if (!segments.every((s) => SEGMENT.test(s))) {
      throw new Error(
        `Topic filter entry "${entry}" is neither an event kind (${KINDS.join(', ')}) nor a topic like tns1:VideoSource/MotionAlarm`,
      );
    }
    const topic = normaliseTopic(segments.join('/'));
    const source = topic
      .split('/')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*'))
      .join('/');
    patterns.push(new RegExp(`^${source}(/|$)`, 'i'));
  }
  return (event) => kinds.has(event.kind) || patterns.some((re) => re.test(event.topic));
}

/**
 * "Only changes": remembers the last data of each property (topic + source)
 * and lets an event through only when it changes something.
 * - Changed: passes unless it repeats the last known data.
 * - Initialized (sent by the camera for every property at each new
 *   subscription): passes only when we knew the property and it differs, so
 *   a resubscription does not repeat the current states, but a change that
 *   happened while the subscription was down is not lost.
 * - Deleted: passes when the property was known.
 * - Events that are not about a property always pass.
 */
export class ChangeTracker {
  private readonly last = new Map<string, string>();

  accept(event: OnvifEvent): boolean {
    if (!event.property) return true;
    const key = `${event.topic}\u0000${stableJson(event.source)}`;
    const before = this.last.get(key);
    if (event.property === 'Deleted') {
      this.last.delete(key);
      return before !== undefined;
    }
    const now = stableJson(event.data);
    this.last.set(key, now);
    if (event.property === 'Initialized') return before !== undefined && before !== now;
    return before !== now;
  }
}

function stableJson(o: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

// ---------------------------------------------------------------------------
// The small part of the onvif library we use.

interface SubscriptionAddress {
  href?: string;
  agent?: http.Agent;
  [k: string]: unknown;
}

interface CamLike extends EventEmitter {
  timeShift?: number;
  uri?: Record<string, unknown>;
  events?: { subscription?: { subscriptionReference?: { address?: SubscriptionAddress; referenceParameters?: unknown } } };
  getSystemDateAndTime(cb: LibCallback<Date>): void;
  getServices(includeCapability: boolean, cb: LibCallback): void;
  getCapabilities(cb: LibCallback): void;
  createPullPointSubscription(cb: LibCallback): void;
  pullMessages(opts: { messageLimit?: number }, cb: LibCallback): void;
  renew(opts: Record<string, never>, cb: LibCallback): void;
  unsubscribe(cb: LibCallback, preserveListeners?: boolean): void;
}

interface OnvifModule {
  Cam: new (opts: LibClientOptions) => CamLike;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const onvif: OnvifModule = require('onvif');

/** The library asks the camera to hold PullMessages up to 60 s and waits 80 s for the answer. */
const LIBRARY_PULL_WAIT_MS = 80_000;
/** Renew when less than this is left: one PullMessages (up to 60 s) must fit, with room to spare. */
const RENEW_MARGIN_MS = 75_000;
/** A camera that answers an empty PullMessages at once (instead of waiting for an event) is asked at most this often. */
const MIN_EMPTY_PULL_MS = 500;

// ---------------------------------------------------------------------------
// Failures

type FailureKind = 'network' | 'timeout' | 'auth' | 'fault' | 'unsupported' | 'protocol';

class EventsFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
}

interface Session extends LibSession {
  cam: CamLike;
  agent: ClosableAgent;
  /** The subscription as the library keeps it (set once CreatePullPointSubscription succeeded). */
  address?: SubscriptionAddress;
  /** Our clock's time when the subscription ends, by the camera's last word (undefined: unknown). */
  endsAt?: number;
  lastRenew: number;
}

// ---------------------------------------------------------------------------

export class OnvifEvents extends EventEmitter {
  private readonly host: string;
  private readonly port: number;
  private readonly path: string;
  private readonly username?: string;
  private readonly password?: string;
  private readonly timeoutMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly messageLimit: number;
  private readonly filter: TopicFilter;
  private readonly changes: ChangeTracker | undefined;
  private readonly log?: OnvifEventsLog;

  private _state: OnvifEventsState = 'idle';
  private _lastError: string | undefined;
  private _offline = false;
  private gen = 0;
  private session: Session | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private cleanups = new Set<Promise<void>>();
  private lastWarn: { key: string; at: number } | undefined;

  /** Throws when the topic filter is malformed. */
  constructor(opts: OnvifEventsOptions, log?: OnvifEventsLog) {
    super();
    this.host = String(opts.host ?? '').trim();
    this.port = opts.port && Number.isInteger(opts.port) && opts.port > 0 && opts.port < 65536 ? opts.port : 80;
    const path = opts.path?.trim();
    this.path = path ? (path.startsWith('/') ? path : '/' + path) : '/onvif/device_service';
    this.username = opts.username || undefined;
    this.password = opts.password || undefined;
    this.timeoutMs = positive(opts.timeoutMs, 5000);
    this.reconnectMinMs = positive(opts.reconnectMinMs, 1000);
    this.reconnectMaxMs = Math.max(this.reconnectMinMs, positive(opts.reconnectMaxMs, 30000));
    this.messageLimit = Math.min(100, Math.floor(positive(opts.messageLimit, 10)));
    this.filter = parseTopicFilter(opts.filter);
    this.changes = opts.onlyChanges ? new ChangeTracker() : undefined;
    this.log = log;
  }

  get state(): OnvifEventsState {
    return this._state;
  }

  /** Why the last attempt or subscription failed (undefined while all is well). */
  get lastError(): string | undefined {
    return this._lastError;
  }

  /** True while resubscribing because the camera does not answer at all (network or timeout). */
  get offline(): boolean {
    return this._offline;
  }

  /** 'host:port' as used in messages. */
  get address(): string {
    return `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  start(): void {
    if (this._state !== 'idle' && this._state !== 'stopped') return;
    this.failures = 0;
    this.setState('subscribing');
    this.attempt();
  }

  /** A hint that the camera is reachable again (e.g. its config node connected): retry now instead of after the backoff. */
  retryNow(): void {
    try {
      if (this._state !== 'resubscribing' || !this.retryTimer) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.attempt();
    } catch (err) {
      this.warn(`internal error while retrying: ${errorText(err)}`);
    }
  }

  /** Ends pulling and every timer; unsubscribes from the camera (waiting at most 2 s for it). */
  async stop(): Promise<void> {
    if (this._state === 'stopped') {
      await Promise.all([...this.cleanups]);
      return;
    }
    const s = this.session;
    const wasSubscribed = this._state === 'subscribed';
    this.gen++;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.session = undefined;
    this.setState('stopped');
    if (s) this.dropSession(s, wasSubscribed);
    await Promise.all([...this.cleanups]);
    // Let destroyed sockets report (into callbacks that now ignore them).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  // -------------------------------------------------------------------------

  private attempt(): void {
    const gen = ++this.gen;
    let cam: CamLike;
    let agent: ClosableAgent;
    try {
      ({ cam, agent } = newLibClient(onvif.Cam, this.target(), { stoppedText: 'ONVIF event subscription stopped', preserveAddress: true }));
    } catch (err) {
      this.fail(gen, new EventsFailure('protocol', `The ONVIF client could not be created for ${this.address}: ${errorText(err)}`));
      return;
    }
    const s: Session = { gen, cam, agent, pending: new Set(), lastRenew: 0 };
    this.session = s;
    this.attachCamListeners(s);
    this.subscribe(s)
      .then(() => this.pullLoop(s))
      .then(
        () => undefined,
        (err: unknown) => {
          try {
            if (err instanceof Superseded || s.gen !== this.gen) return;
            this.fail(gen, err instanceof EventsFailure ? err : this.classify(err));
          } catch (e) {
            this.warn(`internal error after a failed subscription: ${errorText(e)}`);
          }
        },
      );
  }

  private target(): LibTarget {
    return { host: this.host, port: this.port, path: this.path, username: this.username, password: this.password, timeoutMs: this.timeoutMs };
  }

  private attachCamListeners(s: Session): void {
    watchLibrary(s.cam, s, { current: () => s.gen === this.gen, debug: (m) => this.debug(m), warnings: false, keepRaw: true });
  }

  /** Clock, service addresses, then CreatePullPointSubscription. */
  private async subscribe(s: Session): Promise<void> {
    const { cam } = s;
    // 1. The camera clock: WS-Security timestamps are signed with it.
    try {
      await this.call(s, 'GetSystemDateAndTime', (cb) => cam.getSystemDateAndTime(cb));
    } catch (err) {
      if (err instanceof Superseded) throw err;
      const f = this.classify(err);
      if (f.kind === 'network' || f.kind === 'timeout') throw f;
      this.debug(`GetSystemDateAndTime failed (${f.message}); signing with our own clock`);
    }

    // 2. Where the event service is.
    try {
      await this.call(s, 'GetServices', (cb) => cam.getServices(true, cb));
    } catch (err) {
      if (err instanceof Superseded) throw err;
      const f = this.classify(err);
      if (f.kind === 'network' || f.kind === 'timeout' || f.kind === 'auth') throw f;
      this.debug(`GetServices failed (${f.message}); trying GetCapabilities`);
    }
    if (!cam.uri?.events) {
      try {
        await this.call(s, 'GetCapabilities', (cb) => cam.getCapabilities(cb));
      } catch (err) {
        if (err instanceof Superseded) throw err;
        throw this.classify(err);
      }
    }
    if (!cam.uri?.events) {
      throw new EventsFailure('unsupported', `Camera ${this.address} does not offer an ONVIF event service`);
    }

    // 3. The pull point.
    let raw: string | undefined;
    try {
      raw = (await this.call(s, 'CreatePullPointSubscription', (cb) => cam.createPullPointSubscription(cb))).raw;
    } catch (err) {
      if (err instanceof Superseded) throw err;
      // The library could not read the answer, though it may be a good one (see the header comment).
      if (!(err instanceof LibError) || /soap fault/i.test(errorText(err.original))) throw this.classify(err);
      const fallback = this.addressFromRaw(err.raw, err.status);
      if (!fallback) throw this.classify(err);
      this.debug(`the ONVIF client could not read the CreatePullPointSubscription answer (${errorText(err.original)}); using its address ${fallback.href}`);
      cam.events = cam.events ?? {};
      cam.events.subscription = { subscriptionReference: { address: fallback } };
      raw = err.raw;
    }
    const address = cam.events?.subscription?.subscriptionReference?.address;
    if (!address || typeof address !== 'object' || typeof address.href !== 'string') {
      throw new EventsFailure('protocol', `Camera ${this.address} answered CreatePullPointSubscription without a subscription address`);
    }
    // The library hands this object to http.request as the options: our agent makes stop() able to end a waiting PullMessages.
    address.agent = s.agent;
    s.address = address;
    s.endsAt = this.endsAt(raw);
    s.lastRenew = Date.now();
    this._lastError = undefined;
    this._offline = false;
    this.setState('subscribed', address.href);
    this.debug(`subscribed to the events of ${this.address} (${address.href})`);
  }

  /** PullMessages until the subscription fails or we stop. */
  private async pullLoop(s: Session): Promise<void> {
    for (;;) {
      if (s.gen !== this.gen) throw new Superseded();
      const pulledAt = Date.now();
      const { raw } = await this.call(s, 'PullMessages', (cb) => s.cam.pullMessages({ messageLimit: this.messageLimit }, cb), LIBRARY_PULL_WAIT_MS);
      if (s.gen !== this.gen) throw new Superseded();
      if (!raw || !/<([\w.-]+:)?PullMessagesResponse\b/.test(raw)) {
        throw new EventsFailure('protocol', `Camera ${this.address} answered PullMessages with something that is not a PullMessagesResponse`);
      }
      // A good pull: the subscription works, so the backoff starts again from its minimum.
      this.failures = 0;
      const endsAt = this.endsAt(raw);
      if (endsAt !== undefined) s.endsAt = endsAt;
      const events = parseNotifications(raw);
      for (const event of events) this.deliver(event);
      if (s.gen !== this.gen) throw new Superseded();
      const left = s.endsAt === undefined ? undefined : s.endsAt - Date.now();
      if (left === undefined ? Date.now() - s.lastRenew > 30_000 : left < RENEW_MARGIN_MS) await this.renew(s);
      const early = MIN_EMPTY_PULL_MS - (Date.now() - pulledAt);
      if (!events.length && early > 0) await this.pause(s, early);
    }
  }

  /** Waits `ms`, or throws Superseded at once when the session ends. */
  private pause(s: Session, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(abandon);
        resolve();
      }, ms);
      const abandon = (): void => {
        clearTimeout(timer);
        s.pending.delete(abandon);
        reject(new Superseded());
      };
      s.pending.add(abandon);
    });
  }

  private async renew(s: Session): Promise<void> {
    const { raw } = await this.call(s, 'Renew', (cb) => s.cam.renew({}, cb));
    s.lastRenew = Date.now();
    const endsAt = this.endsAt(raw);
    if (endsAt !== undefined) s.endsAt = endsAt;
  }

  private deliver(event: OnvifEvent): void {
    try {
      if (!this.filter(event)) return;
      if (this.changes && !this.changes.accept(event)) return;
    } catch (err) {
      this.warn(`internal error while filtering an event: ${errorText(err)}`);
      return;
    }
    this.safeEmit('event', event);
  }

  /** TerminationTime - CurrentTime of an answer, as a time on our clock (the camera's clock may be off). */
  private endsAt(raw: string | undefined): number | undefined {
    if (!raw) return undefined;
    const current = Date.parse(elementText(raw, 'CurrentTime') ?? '');
    const termination = Date.parse(elementText(raw, 'TerminationTime') ?? '');
    if (!Number.isFinite(current) || !Number.isFinite(termination)) return undefined;
    return Date.now() + (termination - current);
  }

  private addressFromRaw(raw: string | undefined, status: number | undefined): SubscriptionAddress | undefined {
    if (!raw || (status !== undefined && status !== 200) || /<([\w.-]+:)?Fault\b/.test(raw)) return undefined;
    const ref = elements(raw, 'SubscriptionReference')[0];
    const href = ref ? elementText(ref.body, 'Address') : undefined;
    if (!href) return undefined;
    try {
      const u = new URL(href);
      // Like the library with preserveAddress: the configured host and port, the camera's path.
      const hostname = this.host;
      const host = `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
      return {
        protocol: u.protocol,
        hostname,
        host,
        port: this.port,
        path: u.pathname + u.search,
        pathname: u.pathname,
        href: `${u.protocol}//${host}${u.pathname}${u.search}`,
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Calls the library once: settles exactly once (the library may call back
   * twice, or never), ignores late callbacks, and throws Superseded when the
   * session was replaced or stopped meanwhile. Returns the raw answer.
   */
  private call<T = unknown>(s: Session, what: string, invoke: (cb: LibCallback<T>) => void, waitMs = 0): Promise<{ data: T | undefined; raw?: string }> {
    return callLibrary(
      s,
      {
        what,
        current: () => s.gen === this.gen,
        watchdogMs: waitMs + 2 * this.timeoutMs + 1000,
        timeout: () => new EventsFailure('timeout', `no answer to ${what}`),
        passThrough: (err) => err instanceof EventsFailure,
      },
      invoke,
    );
  }

  private classify(err: unknown): EventsFailure {
    if (err instanceof EventsFailure) return err;
    const what = err instanceof LibError ? err.what : 'request';
    const cause = err instanceof LibError ? err.original : err;
    const status = err instanceof LibError ? err.status : undefined;
    const raw = err instanceof LibError ? (err.raw ?? '') : '';
    const text = errorText(cause);
    const code = String((cause as { code?: unknown } | undefined)?.code ?? '');
    const hay = `${text} ${raw}`.toLowerCase();
    if (code === 'ETIMEDOUT' || /network timeout|no answer to/i.test(text)) {
      return new EventsFailure('timeout', `Camera ${this.address} did not answer ${what}`);
    }
    if (NETWORK_CODES.has(code) || /socket hang up|econnrefused|econnreset/i.test(text)) {
      return new EventsFailure('network', `Camera ${this.address} does not answer (${code || shorten(text)})`);
    }
    if (status === 401 || /not ?authori[sz]ed|unauthori[sz]ed|authentication failed|access denied|invalidsecurity|failedauthentication/.test(hay)) {
      return new EventsFailure('auth', `Camera ${this.address} refused the credentials for ${what} (${shorten(text)}); check the user and password of the camera`);
    }
    if (/soap fault/i.test(text)) {
      return new EventsFailure('fault', `Camera ${this.address} refused ${what}: ${shorten(text.replace(/^ONVIF SOAP Fault:\s*/i, ''))}`);
    }
    return new EventsFailure('protocol', `Camera ${this.address} sent an answer to ${what} that could not be read (${shorten(text)})`);
  }

  private fail(gen: number, failure: EventsFailure): void {
    if (gen !== this.gen || this._state === 'stopped') return;
    const s = this.session;
    const wasSubscribed = this._state === 'subscribed';
    const retryGen = ++this.gen;
    this.failures++;
    clearTimeout(this.retryTimer);
    this.session = undefined;
    // After a fault the camera has forgotten the subscription; after a reply we could not read it may still hold it.
    if (s) this.dropSession(s, wasSubscribed && failure.kind === 'protocol');
    const delay =
      failure.kind === 'auth' || failure.kind === 'unsupported'
        ? this.reconnectMaxMs
        : Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(30, this.failures - 1));
    const lost = wasSubscribed ? (failure.kind === 'fault' ? 'the camera dropped the event subscription: ' : 'the event subscription failed: ') : '';
    const message = `${lost}${failure.message}; resubscribing in ${fmtSeconds(delay)}`;
    this._lastError = message;
    this._offline = failure.kind === 'network' || failure.kind === 'timeout';
    this.warnLimited(`${failure.kind} ${failure.message}`, message);
    this.setState('resubscribing', message);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      try {
        if (retryGen === this.gen && this._state === 'resubscribing') this.attempt();
      } catch (err) {
        this.warn(`internal error while resubscribing: ${errorText(err)}`);
      }
    }, delay);
  }

  /** Settles what the session has in flight, closes its sockets, optionally unsubscribes (bounded). */
  private dropSession(s: Session, unsubscribe: boolean): void {
    for (const abandon of [...s.pending]) abandon();
    try {
      s.agent.close();
    } catch {
      /* ignore */
    }
    const finishCam = (): void => {
      try {
        s.cam.removeAllListeners();
        // The library may still emit after we let go; an 'error' without a listener would throw.
        s.cam.on('error', () => undefined);
      } catch {
        /* ignore */
      }
    };
    if (!unsubscribe || !s.address) {
      finishCam();
      return;
    }
    const address = s.address;
    const cleanup = new Promise<void>((resolve) => {
      const agent = new ClosableAgent({ keepAlive: false }, 'ONVIF event subscription stopped');
      let done = false;
      const finish = (): void => {
        try {
          if (done) return;
          done = true;
          clearTimeout(timer);
          agent.close();
          finishCam();
        } catch {
          /* ignore */
        }
        resolve();
      };
      const timer = setTimeout(finish, Math.min(this.timeoutMs, 2000));
      try {
        address.agent = agent;
        s.cam.unsubscribe(() => finish(), true);
      } catch {
        finish();
      }
    });
    this.cleanups.add(cleanup);
    void cleanup.then(() => this.cleanups.delete(cleanup));
  }

  private setState(state: OnvifEventsState, detail?: string): void {
    this._state = state;
    this.safeEmit('state', state, detail);
  }

  /** Listeners' exceptions must not reach the library (or our timers). */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.warn(`an '${event}' listener threw: ${errorText(err)}`);
    }
  }

  /** The same problem is warned at most once in 5 minutes (a flapping camera does not flood the log). */
  private warnLimited(key: string, msg: string): void {
    const now = Date.now();
    if (this.lastWarn && this.lastWarn.key === key && now - this.lastWarn.at < 300_000) {
      this.debug(msg);
      return;
    }
    this.lastWarn = { key, at: now };
    this.warn(msg);
  }

  private warn(msg: string): void {
    try {
      this.log?.warn(msg);
    } catch {
      /* ignore */
    }
  }

  private debug(msg: string): void {
    try {
      this.log?.debug?.(msg);
    } catch {
      /* ignore */
    }
  }
}
