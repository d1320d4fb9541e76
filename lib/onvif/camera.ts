/**
 * One ONVIF camera connection for a recorder: connects with the `onvif`
 * library (agsh, 0.8.x), chooses a media profile, fetches the RTSP stream URI,
 * watches the camera with a light health check and reconnects with
 * exponential backoff. No Node-RED import here; the node wraps this.
 *
 * Defensive rules, learnt from other ONVIF node packages:
 * - Every callback handed to the library only settles a promise inside
 *   try/catch; our logic runs afterwards in a microtask, so nothing we do can
 *   throw back into the library's HTTP / xml2js stack (where a throw makes the
 *   library call the same callback again, or escapes as uncaughtException).
 * - The library can call a callback twice (success then error) or never;
 *   each call is settled once and guarded by a watchdog timer.
 * - The Cam object is an EventEmitter: it always has an 'error' listener,
 *   even after stop().
 * - We do not use the library's connect(): it ends in getActiveSources(),
 *   which throws 'Unrecognized configuration' for cameras whose profiles do
 *   not match their video sources (agsh/onvif#369), after which the connect
 *   callback never fires. We run the same steps ourselves.
 * - Credentials are never logged; the stream URI is logged only redacted.
 */
import { EventEmitter } from 'node:events';
import { errorText } from '../model/errors';
import { asObj, describeProfile, deviceInfoFrom, OnvifProfileInfo, pickProfile, profilesFrom, redact, withCredentials, xmlEscape } from './camera-media';
import { normaliseTarget, OnvifCameraOptions } from './camera-options';
import { CameraFailure, CamLike, classifyFailure, onvif, releaseSession, Session } from './camera-session';
import { callLibrary, ClosableAgent, fmtSeconds, LibCallback, LibTarget, newLibClient, positive, Superseded, watchLibrary } from './shared';

/** The normalised address and login of a camera (see OnvifCamera.connection). */
export type OnvifConnection = LibTarget;

export type OnvifCameraState = 'idle' | 'connecting' | 'connected' | 'offline' | 'stopped';

export interface OnvifCameraLog {
  warn(msg: string): void;
  debug?(msg: string): void;
}

// ---------------------------------------------------------------------------

export class OnvifCamera extends EventEmitter {
  private readonly host: string;
  private readonly port: number;
  private readonly path: string;
  private readonly username?: string;
  private readonly password?: string;
  private readonly profileToken?: string;
  private readonly resolution?: string;
  private readonly timeoutMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly healthCheckMs: number;
  private readonly log?: OnvifCameraLog;

  private _state: OnvifCameraState = 'idle';
  private _lastError: string | undefined;
  private _profile: OnvifProfileInfo | undefined;
  private _deviceInfo: Record<string, string> | undefined;
  private rawStreamUri: string | undefined;

  /** Bumped by stop() and every new connection attempt; stale callbacks compare against it. */
  private gen = 0;
  private session: Session | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private clockSkewMs: number | undefined;
  private lastWarned: string | undefined;
  private credentialHint: string | undefined;

  constructor(opts: OnvifCameraOptions, log?: OnvifCameraLog) {
    super();
    const target = normaliseTarget(opts);
    this.host = target.host;
    this.port = target.port;
    this.path = target.path;
    this.username = opts.username || undefined;
    this.password = opts.password || undefined;
    this.profileToken = opts.profileToken?.trim() || undefined;
    this.resolution = opts.resolution?.trim() || undefined;
    this.timeoutMs = positive(opts.timeoutMs, 5000);
    this.reconnectMinMs = positive(opts.reconnectMinMs, 1000);
    this.reconnectMaxMs = Math.max(this.reconnectMinMs, positive(opts.reconnectMaxMs, 30000));
    this.healthCheckMs = opts.healthCheckMs === 0 ? 0 : positive(opts.healthCheckMs, 30000);
    this.log = log;
    if (!this.host) this._lastError = 'No camera host is configured';
    // Limits of the onvif library's WS-Security header, worth a hint when login fails.
    if (this.password && /[^\x00-\x7f]/.test(this.password)) {
      this.credentialHint = 'the password has non-ASCII characters, which the ONVIF client cannot sign correctly; use an ASCII password';
    } else if (this.username && /[<>&]/.test(this.username)) {
      this.credentialHint = 'the username contains <, > or &, which the ONVIF client does not escape; use another user';
    }
    if (this.credentialHint) this.warn(`Camera ${this.address}: ${this.credentialHint}`);
  }

  get state(): OnvifCameraState {
    return this._state;
  }

  get lastError(): string | undefined {
    return this._lastError;
  }

  get profile(): OnvifProfileInfo | undefined {
    return this._profile;
  }

  get deviceInfo(): Record<string, string> | undefined {
    return this._deviceInfo;
  }

  /**
   * How to reach this camera, for other clients of the same device (the
   * event subscriber, lib/onvif/events.ts). Holds the password: never log it.
   */
  get connection(): OnvifConnection {
    return { host: this.host, port: this.port, path: this.path, username: this.username, password: this.password, timeoutMs: this.timeoutMs };
  }

  /** 'host:port' as used in messages ([v6]:port for IPv6). */
  get address(): string {
    return `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  start(): void {
    if (this._state !== 'idle' && this._state !== 'stopped') return;
    this.gen++;
    this.failures = 0;
    this.lastWarned = undefined;
    if (!this.host) {
      this.setState('offline', this._lastError);
      return;
    }
    this.connect();
  }

  async stop(): Promise<void> {
    if (this._state === 'stopped') return;
    this.gen++;
    this.clearTimers();
    this.dropSession();
    this.setState('stopped');
    // Let destroyed sockets report (into callbacks that now ignore them).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async getStreamUri(): Promise<string> {
    const s = this.session;
    if (this._state !== 'connected' || !s || !this._profile) {
      throw new Error(this.notConnectedMessage());
    }
    const profile = this._profile;
    try {
      const uri = await this.fetchStreamUri(s, profile);
      this.rawStreamUri = uri;
      return withCredentials(uri, this.username, this.password);
    } catch (err) {
      if (err instanceof Superseded) throw new Error(this.notConnectedMessage(), { cause: err });
      const failure = this.classify(err, s);
      if (failure.kind === 'network' || failure.kind === 'timeout' || failure.kind === 'auth' || failure.kind === 'clock') {
        // Only the session that failed may take the camera offline.
        if (this.session === s && this._state === 'connected') this.goOffline(failure, 'while fetching the stream URI');
        throw new Error(this._lastError ?? failure.message, { cause: err });
      }
      if (this.rawStreamUri) {
        this.debug(`GetStreamUri failed (${failure.message}); using the URI from the last successful request`);
        return withCredentials(this.rawStreamUri, this.username, this.password);
      }
      throw new Error(failure.message, { cause: err });
    }
  }

  /** The last stream URI the camera gave, as it gave it (no credentials added). */
  knownStreamUri(): string | undefined {
    return this.rawStreamUri;
  }

  redactedStreamUri(): string | undefined {
    return this.rawStreamUri === undefined ? undefined : redact(withCredentials(this.rawStreamUri, this.username, this.password));
  }

  // -------------------------------------------------------------------------
  // Connection

  private connect(): void {
    this.clearTimers();
    this.dropSession();
    const gen = ++this.gen;
    let cam: CamLike;
    let agent: ClosableAgent;
    try {
      // the library sends every service request to the host and port given here, with only the path of the
      // address the camera advertises, so a camera that advertises an internal (NAT) address still works
      ({ cam, agent } = newLibClient(onvif.Cam, this.target(), { stoppedText: 'ONVIF camera connection stopped' }));
    } catch (err) {
      this.fail(gen, new CameraFailure('config', `The ONVIF client could not be created for ${this.address}: ${errorText(err)}`));
      return;
    }
    const session: Session = { gen, cam, agent, pending: new Set() };
    this.session = session;
    this.attachCamListeners(session);
    this.setState('connecting', this.failures ? `attempt ${this.failures + 1}` : undefined);
    this.handshake(session).then(
      () => undefined,
      (err: unknown) => {
        try {
          if (err instanceof Superseded || gen !== this.gen) return;
          this.fail(gen, err instanceof CameraFailure ? err : this.classify(err, session));
        } catch (e) {
          this.warn(`internal error after a failed connection attempt: ${errorText(e)}`);
        }
      },
    );
  }

  private target(): LibTarget {
    return { host: this.host, port: this.port, path: this.path, username: this.username, password: this.password, timeoutMs: this.timeoutMs };
  }

  private attachCamListeners(session: Session): void {
    watchLibrary(session.cam, session, { current: () => session.gen === this.gen, debug: (m) => this.debug(m), warnings: true, keepRaw: false });
  }

  /** The steps of the library's connect(), minus getActiveSources, plus profile choice and stream URI. */
  private async handshake(s: Session): Promise<void> {
    const { cam } = s;

    // 1. Device clock: the library derives its WS-Security timestamps from it (timeShift).
    await this.syncClock(s);

    // 2. Service addresses: GetServices, or GetCapabilities for old devices.
    try {
      await this.call(s, 'GetServices', (cb) => cam.getServices(true, cb));
    } catch (err) {
      if (err instanceof Superseded) throw err;
      const f = this.classify(err, s);
      if (f.kind !== 'protocol' && f.kind !== 'other') throw f;
      this.debug(`GetServices failed (${f.message}); trying GetCapabilities`);
      await this.call(s, 'GetCapabilities', (cb) => cam.getCapabilities(cb));
    }
    const uri = cam.uri ?? {};
    if (!uri.media && !(cam.media2Support && uri.media2)) {
      throw new CameraFailure('protocol', `Camera ${this.address} does not offer an ONVIF media service, so it has no stream to record`);
    }

    // 3. Profiles (Media2 when offered; Media1 when Media2 fails, as some firmwares are broken there).
    let answer: { data: unknown; raw?: string };
    try {
      answer = await this.call(s, 'GetProfiles', (cb) => cam.getProfiles(cb));
    } catch (err) {
      if (err instanceof Superseded) throw err;
      const f = this.classify(err, s);
      if (!cam.media2Support || !uri.media || (f.kind !== 'protocol' && f.kind !== 'other')) throw f;
      this.debug(`Media2 GetProfiles failed (${f.message}); using Media1`);
      cam.media2Support = false;
      answer = await this.call(s, 'GetProfiles', (cb) => cam.getProfiles(cb));
    }
    const profiles = profilesFrom(answer.data, answer.raw);
    let profile: OnvifProfileInfo;
    try {
      profile = pickProfile(profiles, { profileToken: this.profileToken, resolution: this.resolution });
    } catch (err) {
      throw new CameraFailure('config', `Camera ${this.address}: ${errorText(err)}`);
    }

    // 4. Device information (nice to have).
    try {
      const info = await this.call(s, 'GetDeviceInformation', (cb) => cam.getDeviceInformation(cb));
      this._deviceInfo = deviceInfoFrom(info.data, info.raw);
    } catch (err) {
      if (err instanceof Superseded) throw err;
      const f = this.classify(err, s);
      if (f.kind === 'network' || f.kind === 'timeout') throw f;
      this.debug(`GetDeviceInformation failed: ${f.message}`);
    }

    // 5. Stream URI for the chosen profile.
    const streamUri = await this.fetchStreamUri(s, profile);
    if (s.gen !== this.gen) throw new Superseded();

    this._profile = profile;
    this.rawStreamUri = streamUri;
    this.failures = 0;
    this._lastError = undefined;
    this.lastWarned = undefined;
    this.setState('connected', `profile ${describeProfile(profile)}`);
    this.debug(`connected to ${this.address}, profile ${describeProfile(profile)}, stream ${this.redactedStreamUri()}`);
    this.safeEmit('connected', profile);
    this.scheduleHealthCheck(s);
  }

  private async syncClock(s: Session): Promise<void> {
    const { data } = await this.call<Date>(s, 'GetSystemDateAndTime', (cb) => s.cam.getSystemDateAndTime(cb));
    if (data instanceof Date && Number.isFinite(data.getTime())) {
      const skew = data.getTime() - Date.now();
      this.clockSkewMs = skew;
      // The library sets timeShift only once per Cam; refresh it when the clocks drift apart.
      const shift = data.getTime() - process.uptime() * 1000;
      if (s.cam.timeShift === undefined || Math.abs(s.cam.timeShift - shift) > 2000) s.cam.timeShift = shift;
      if (Math.abs(skew) > 5000) this.debug(`camera clock differs from ours by ${Math.round(skew / 1000)} s; WS-Security timestamps use the camera clock`);
    }
  }

  private async fetchStreamUri(s: Session, profile: OnvifProfileInfo): Promise<string> {
    const { data } = await this.call<{ uri?: unknown }>(s, 'GetStreamUri', (cb) =>
      s.cam.getStreamUri({ protocol: 'RTSP', stream: 'RTP-Unicast', profileToken: xmlEscape(profile.token) }, cb),
    );
    const uri = asObj(data)?.uri;
    if (typeof uri !== 'string' || !uri.trim()) {
      throw new CameraFailure('protocol', `Camera ${this.address} returned no stream URI for profile "${profile.token}"`);
    }
    return uri.trim();
  }

  /**
   * Calls the library once: settles exactly once (the library may call back
   * twice, or never), ignores late callbacks, and throws Superseded when the
   * session was replaced or stopped meanwhile.
   */
  private call<T = unknown>(s: Session, what: string, invoke: (cb: LibCallback<T>) => void): Promise<{ data: T | undefined; raw?: string }> {
    // GetSystemDateAndTime and digest authentication may take two requests.
    return callLibrary(
      s,
      { what, current: () => s.gen === this.gen, watchdogMs: 2 * this.timeoutMs + 1000, timeout: () => new CameraFailure('timeout', `no answer to ${what}`) },
      invoke,
    );
  }

  private classify(err: unknown, s: Session | undefined): CameraFailure {
    const camera = {
      address: this.address,
      host: this.host,
      path: this.path,
      timeoutMs: this.timeoutMs,
      clockSkewMs: this.clockSkewMs,
      credentialHint: this.credentialHint,
    };
    return classifyFailure(err, s, camera);
  }

  private fail(gen: number, failure: CameraFailure): void {
    if (gen !== this.gen || this._state === 'stopped') return;
    // Whatever the failed session still has in flight now settles as Superseded.
    const retryGen = ++this.gen;
    this.failures++;
    this.clearTimers();
    this.dropSession();
    // Wrong credentials or configuration will not fix themselves quickly, and
    // some cameras lock the account after repeated failed logins.
    const delay =
      failure.kind === 'auth' || failure.kind === 'config'
        ? this.reconnectMaxMs
        : Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(30, this.failures - 1));
    this.enterOffline(`${failure.message}; retrying in ${fmtSeconds(delay)}`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      try {
        if (retryGen === this.gen && this._state === 'offline') this.connect();
      } catch (err) {
        this.warn(`internal error while reconnecting: ${errorText(err)}`);
      }
    }, delay);
  }

  /** A connected camera stopped answering: offline now, reconnect from the shortest delay. */
  private goOffline(failure: CameraFailure, context: string): void {
    this.failures = 0;
    this.fail(this.gen, new CameraFailure(failure.kind, `${failure.message}, noticed ${context}`));
  }

  private enterOffline(message: string): void {
    this._lastError = message;
    // Warn once per distinct problem, not on every retry.
    const key = message.replace(/; retrying in .*$/, '');
    if (key !== this.lastWarned) {
      this.lastWarned = key;
      this.warn(message);
    } else this.debug(message);
    this.setState('offline', message);
    this.safeEmit('offline', message);
  }

  private scheduleHealthCheck(s: Session): void {
    if (!this.healthCheckMs) return;
    clearTimeout(this.healthTimer);
    this.healthTimer = setTimeout(() => {
      this.healthTimer = undefined;
      if (s.gen !== this.gen || this._state !== 'connected') return;
      this.syncClock(s).then(
        () => {
          try {
            if (s.gen === this.gen && this._state === 'connected') this.scheduleHealthCheck(s);
          } catch (err) {
            this.warn(`internal error in the health check: ${errorText(err)}`);
          }
        },
        (err: unknown) => {
          try {
            if (err instanceof Superseded || s.gen !== this.gen || this._state !== 'connected') return;
            this.goOffline(this.classify(err, s), 'by the health check');
          } catch (e) {
            this.warn(`internal error in the health check: ${errorText(e)}`);
          }
        },
      );
    }, this.healthCheckMs);
  }

  private dropSession(): void {
    const s = this.session;
    this.session = undefined;
    if (!s) return;
    releaseSession(s);
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.healthTimer);
    this.retryTimer = undefined;
    this.healthTimer = undefined;
  }

  private notConnectedMessage(): string {
    const why = this._lastError ? `: ${this._lastError}` : '';
    return `Camera ${this.address} is not connected (state ${this._state})${why}`;
  }

  private setState(state: OnvifCameraState, detail?: string): void {
    this._state = state;
    this.safeEmit('state', state, detail);
  }

  /** Listeners' exceptions must not reach the library (or our timers). */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.warn(`a '${event}' listener threw: ${errorText(err)}`);
    }
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
