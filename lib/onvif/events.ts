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
import { errorText } from '../model/errors';
import { ChangeTracker, parseTopicFilter, TopicFilter } from './event-filter';
import { OnvifEvent, parseNotifications } from './event-parsing';
import { addressFromRaw, CamLike, classifyFailure, dropSession, EventsFailure, onvif, Session, subscriptionEndsAt } from './event-session';
import { callLibrary, ClosableAgent, fmtSeconds, LibCallback, LibError, LibTarget, newLibClient, positive, Superseded, watchLibrary } from './shared';

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

export interface OnvifEventsLog {
  warn(msg: string): void;
  debug?(msg: string): void;
}

/** The library asks the camera to hold PullMessages up to 60 s and waits 80 s for the answer. */
const LIBRARY_PULL_WAIT_MS = 80_000;
/** Renew when less than this is left: one PullMessages (up to 60 s) must fit, with room to spare. */
const RENEW_MARGIN_MS = 75_000;
/** A camera that answers an empty PullMessages at once (instead of waiting for an event) is asked at most this often. */
const MIN_EMPTY_PULL_MS = 500;

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
    if (s) dropSession(s, wasSubscribed, this.timeoutMs, this.cleanups);
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
      const fallback = addressFromRaw(err.raw, err.status, this.host, this.port);
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
    s.endsAt = subscriptionEndsAt(raw);
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
      const endsAt = subscriptionEndsAt(raw);
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
    const endsAt = subscriptionEndsAt(raw);
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
    return classifyFailure(err, this.address);
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
    if (s) dropSession(s, wasSubscribed && failure.kind === 'protocol', this.timeoutMs, this.cleanups);
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
