/**
 * This server's link to its redundancy group through the site's MQTT broker:
 * a retained state message with a Last Will, heartbeats, the recorder settings
 * published retained (the settings cache failover reads), and subscriptions
 * whose every payload is validated before anyone sees it. Reconnects by itself
 * with backoff. No Node-RED import: the config node owns one of these.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { IClientOptions, MqttClient } from 'mqtt';
import { ValidateFunction } from 'ajv';
import { errorText } from '../model/errors';
import { redactUrl } from '../model/url';
import { Backoff } from '../model/backoff';
import { Heartbeat, LINK_VERSION, MAX_LINK_PAYLOAD, ServerState, TakeoverRecord, topicFor, validateServerState, validateTakeoverRecord } from './schemas';
import { describeAjvError } from '../model/commands';

export type LinkState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface ServerLinkOptions {
  url: string;
  group: string;
  serverId: string;
  role: 'main' | 'backup' | 'failover';
  username?: string;
  password?: string;
  /** TLS for mqtts:// or wss://: PEM texts and checks (as Node-RED's tls-config node gives them). */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; passphrase?: string; servername?: string; rejectUnauthorized?: boolean };
  keepaliveS?: number;
  heartbeatMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  epoch?: number;
  /** The URL of this server's peer storage API, announced in its state (peerState(server)?.api). */
  apiUrl?: string;
  /** Where this server answers liveness questions (host:port, UDP), announced in its state (peerState(server)?.live). */
  liveAddress?: string;
}

export interface LinkLog {
  info(m: string): void;
  warn(m: string): void;
}

interface Subscription {
  pattern: string;
  validate: ValidateFunction;
  handler: (topic: string, payload: unknown) => void;
}

/** Logs at most one line per key per interval, then says how many were dropped. */
export class RateLimitedLog {
  private last = new Map<string, { at: number; dropped: number }>();
  constructor(
    private readonly log: (m: string) => void,
    private readonly intervalMs = 10000,
    private readonly clock: () => number = Date.now,
  ) {}
  say(key: string, message: string): void {
    const now = this.clock();
    const e = this.last.get(key);
    if (e && now - e.at < this.intervalMs) {
      e.dropped++;
      return;
    }
    const dropped = e?.dropped ?? 0;
    this.last.set(key, { at: now, dropped: 0 });
    this.log(dropped ? `${message} (and ${dropped} more like it in the last ${Math.round(this.intervalMs / 1000)} s)` : message);
  }
}

export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split('/');
  const t = topic.split('/');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return true;
    if (i >= t.length) return false;
    if (p[i] !== '+' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

/** TLS alerts a broker sends when it does not accept the client certificate it was given (OpenSSL's words). */
const CERT_REFUSED = /alert (unknown ca|decrypt error|bad certificate|certificate unknown|certificate expired|certificate revoked|unsupported certificate)/i;

export class ServerLink extends EventEmitter {
  private client: MqttClient | null = null;
  private _state: LinkState = 'idle';
  private _lastError: string | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;
  private seq = 0;
  private since = 0;
  private subs: Subscription[] = [];
  private retained = new Map<string, { payload: Buffer }>();
  /** The last state each server of the group announced (retained state or Last Will). */
  private peers = new Map<string, ServerState>();
  /** The last takeover record of each server of the group (who records in its place, at which epoch). */
  private takeovers = new Map<string, TakeoverRecord>();
  private readonly invalidLog: RateLimitedLog;
  readonly options: Required<Omit<ServerLinkOptions, 'username' | 'password' | 'tls' | 'apiUrl' | 'liveAddress'>> &
    Pick<ServerLinkOptions, 'username' | 'password' | 'tls' | 'apiUrl' | 'liveAddress'>;

  constructor(
    opts: ServerLinkOptions,
    private readonly log: LinkLog,
  ) {
    super();
    this.options = {
      keepaliveS: 2,
      heartbeatMs: 250,
      reconnectMinMs: 500,
      reconnectMaxMs: 15000,
      connectTimeoutMs: 5000,
      epoch: 0,
      ...opts,
    };
    this.backoff = new Backoff(this.options.reconnectMinMs, this.options.reconnectMaxMs);
    this.invalidLog = new RateLimitedLog((m) => this.log.warn(m));
    this.subscribe(topicFor(this.options.group, '+', 'state'), validateServerState, (topic, payload) => {
      if (payload === null) return;
      const st = payload as ServerState;
      // a state is its topic's server's: one naming another server (or group) is not taken
      if (st.server !== topic.split('/')[2] || st.group !== this.options.group) {
        this.invalidLog.say(`state:${topic}`, `dropped a state on ${topic}: it names server ${st.server} of group ${st.group}`);
        return;
      }
      // our own topic says offline while we are connected: the Last Will of an earlier session of
      // ours that the broker dropped only now (a half-open connection of a process that hung):
      // say online again, or the group would take this server for gone
      if (st.server === this.options.serverId && st.state === 'offline' && this.client?.connected && this._state === 'connected') {
        this.log.warn(`the broker announced this server offline (${st.cause ?? 'offline'}) while it is connected: announcing it online again`);
        this.announceOnline();
      }
      this.peers.set(st.server, st);
      this.emit('peer', st);
    });
    this.subscribe(topicFor(this.options.group, '+', 'takeover'), validateTakeoverRecord, (topic, payload) => {
      const server = topic.split('/')[2];
      if (payload === null) {
        this.takeovers.delete(server);
        return;
      }
      const rec = payload as TakeoverRecord;
      if (rec.failedServer !== server) return;
      this.takeovers.set(server, rec);
      // a takeover that has ended hands its epoch to the restored server: from now on its commands carry it
      if (server === this.options.serverId && !rec.active && !rec.drill && rec.epoch > this.options.epoch) this.setEpoch(rec.epoch);
      this.emit('takeover', rec);
    });
  }

  /** The last takeover record of a server (undefined when it was never taken over). */
  takeoverOf(server: string): TakeoverRecord | undefined {
    return this.takeovers.get(server);
  }

  /**
   * The lowest epoch a command of this server may carry: a takeover raised the
   * group epoch above what the server had, so its older commands are stale.
   */
  epochFloor(server: string): number {
    const t = this.takeovers.get(server);
    return t && !t.drill ? t.epoch : 0;
  }

  /** Publish this server's retained state (online) again, when connected: something in it changed, or the broker said otherwise. */
  private announceOnline(): void {
    if (this.client?.connected) this.client.publish(this.stateTopic(), JSON.stringify(this.statePayload('online')), { qos: 1, retain: true });
  }

  /** Announce where this server answers liveness (null: nowhere); the retained state is published again. */
  setLiveAddress(address: string | null): void {
    const next = address ?? undefined;
    if (next === this.options.liveAddress) return;
    this.options.liveAddress = next;
    this.announceOnline();
  }

  /** Raise this server's epoch (a takeover, or the end of one) and announce it. */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < this.options.epoch) return;
    if (epoch === this.options.epoch) return;
    this.options.epoch = epoch;
    this.announceOnline();
    this.emit('epoch', epoch);
  }

  /** Every server state heard (retained or Last Will). */
  peerStates(): ServerState[] {
    return [...this.peers.values()];
  }

  /** What a server of the group last announced (undefined when never heard of). */
  peerState(server: string): ServerState | undefined {
    return this.peers.get(server);
  }

  get state(): LinkState {
    return this._state;
  }
  get lastError(): string | null {
    return this._lastError;
  }
  get epoch(): number {
    return this.options.epoch;
  }

  stateTopic(server = this.options.serverId): string {
    return topicFor(this.options.group, server, 'state');
  }

  private statePayload(state: 'online' | 'offline', cause?: 'shutdown' | 'lwt'): ServerState {
    return {
      v: LINK_VERSION,
      server: this.options.serverId,
      group: this.options.group,
      role: this.options.role,
      state,
      ...(cause ? { cause } : {}),
      epoch: this.options.epoch,
      since: this.since,
      ts: Date.now(),
      heartbeatMs: this.options.heartbeatMs,
      ...(this.options.apiUrl ? { api: this.options.apiUrl } : {}),
      ...(this.options.liveAddress ? { live: this.options.liveAddress } : {}),
    };
  }

  private setState(s: LinkState, detail?: string): void {
    if (detail !== undefined) this._lastError = detail;
    if (s === this._state && detail === undefined) return;
    this._state = s;
    this.emit('state', s, this._lastError);
  }

  start(): void {
    if (this.client || this._state === 'closed') return;
    const options: IClientOptions = {
      // a random suffix: a client id others can predict lets any client of the broker kick this server off it
      clientId: `twinrec-${this.options.group}-${this.options.serverId}`.slice(0, 55) + `-${crypto.randomBytes(4).toString('hex')}`,
      username: this.options.username || undefined,
      password: this.options.password || undefined,
      keepalive: this.options.keepaliveS,
      reconnectPeriod: 0, // we reconnect ourselves, with backoff
      connectTimeout: this.options.connectTimeoutMs,
      clean: true,
      will: { topic: this.stateTopic(), payload: Buffer.from(JSON.stringify(this.statePayload('offline', 'lwt'))), qos: 1, retain: true },
      ...(this.options.tls ?? {}),
      protocolVersion: 4,
    };
    this.setState('connecting');
    let client: MqttClient;
    try {
      client = mqtt.connect(this.options.url, options);
    } catch (err) {
      this.setState('reconnecting', `cannot connect to ${redactUrl(this.options.url)}: ${errorText(err)}`);
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    client.on('connect', () => this.guard(() => this.onConnect()));
    client.on('message', (topic: string, payload: Buffer) => this.guard(() => this.onMessage(topic, payload)));
    client.on('error', (err: Error) => this.guard(() => this.onError(err)));
    client.on('close', () => this.guard(() => this.onClose()));
  }

  private onConnect(): void {
    this.backoff.reset();
    this.since = Date.now();
    this._lastError = null;
    this.setState('connected');
    const c = this.client!;
    c.publish(this.stateTopic(), JSON.stringify(this.statePayload('online')), { qos: 1, retain: true });
    for (const [topic, r] of this.retained) c.publish(topic, r.payload, { qos: 1, retain: true });
    const patterns = [...new Set(this.subs.map((s) => s.pattern))];
    if (patterns.length) c.subscribe(patterns, { qos: 1 });
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.guard(() => this.beat()), this.options.heartbeatMs);
    this.beat();
    this.emit('connected');
  }

  private beat(): void {
    if (!this.client?.connected) return;
    const hb: Heartbeat = { v: LINK_VERSION, server: this.options.serverId, seq: this.seq++, ts: Date.now() };
    this.client.publish(topicFor(this.options.group, this.options.serverId, 'heartbeat'), JSON.stringify(hb), { qos: 0 });
  }

  private onError(err: Error & { code?: number | string }): void {
    let text = errorText(err);
    if (err.code === 5 || /Not authorized/i.test(text)) text = 'the broker refused the user name or password (not authorized)';
    else if (err.code === 4 || /Bad username or password/i.test(text)) text = 'the broker refused the user name or password';
    else if (/ECONNREFUSED/.test(text)) text = `nothing answers at ${redactUrl(this.options.url)} (connection refused)`;
    else if (/alert certificate required/i.test(text))
      text = 'the broker requires a client certificate: give one (certificate and private key) in the TLS configuration';
    else if (CERT_REFUSED.test(text)) {
      const alert = CERT_REFUSED.exec(text)![1].toLowerCase();
      text = `the broker refused the client certificate (${alert}): give one signed by a CA the broker trusts, and still valid`;
    }
    this._lastError = text;
  }

  private onClose(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this._state === 'closed') return;
    const wasConnected = this._state === 'connected';
    this.setState('reconnecting', this._lastError ?? (wasConnected ? 'the broker connection was lost' : `cannot connect to ${redactUrl(this.options.url)}`));
    if (wasConnected) this.emit('disconnected', this._lastError);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this._state === 'closed') return;
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this._state === 'closed') return;
      this.setState('connecting');
      if (this.client) this.client.reconnect();
      else this.start();
    }, delay);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const matching = this.subs.filter((s) => topicMatches(s.pattern, topic));
    if (!matching.length) return;
    if (payload.length === 0) {
      for (const s of matching) s.handler(topic, null); // a cleared retained message
      return;
    }
    if (payload.length > MAX_LINK_PAYLOAD) {
      this.invalidLog.say(`size:${topic}`, `dropped a ${payload.length}-byte message on ${topic}: larger than ${MAX_LINK_PAYLOAD} bytes`);
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(payload.toString('utf8'));
    } catch {
      this.invalidLog.say(`json:${topic}`, `dropped a message on ${topic}: not JSON`);
      return;
    }
    for (const s of matching) {
      if (!s.validate(value)) {
        const e = s.validate.errors?.[0];
        this.invalidLog.say(`schema:${s.pattern}`, `dropped a message on ${topic}: ${e ? describeAjvError(e, '/payload') : 'invalid'}`);
        continue;
      }
      s.handler(topic, value);
    }
  }

  /** Receive validated payloads on a topic pattern (+ and # wildcards). Returns an unsubscribe function. */
  subscribe(pattern: string, validate: ValidateFunction, handler: (topic: string, payload: unknown) => void): () => void {
    const sub: Subscription = { pattern, validate, handler };
    this.subs.push(sub);
    if (this.client?.connected && this.subs.filter((s) => s.pattern === pattern).length === 1) this.client.subscribe(pattern, { qos: 1 });
    return () => {
      this.subs = this.subs.filter((s) => s !== sub);
      if (this.client?.connected && !this.subs.some((s) => s.pattern === pattern)) this.client.unsubscribe(pattern);
    };
  }

  /** Publish (not retained). Resolves when the broker has it (QoS 1) or rejects when not connected. */
  publish(topic: string, payload: unknown, qos: 0 | 1 = 1): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.client?.connected) {
        reject(new Error(`not connected to the broker (${this._lastError ?? this._state})`));
        return;
      }
      this.client.publish(topic, JSON.stringify(payload), { qos }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Publish retained, and publish it again after every reconnect (the broker may
   * have restarted without persistence). null clears the retained message.
   */
  publishRetained(topic: string, payload: unknown | null): void {
    const buf = payload === null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(payload));
    if (payload === null) this.retained.delete(topic);
    else this.retained.set(topic, { payload: buf });
    if (this.client?.connected) this.client.publish(topic, buf, { qos: 1, retain: true });
  }

  /** Say goodbye (retained state offline, cause shutdown), then close. */
  async stop(): Promise<void> {
    if (this._state === 'closed') return;
    const wasConnected = !!this.client?.connected;
    this.setState('closed');
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.heartbeatTimer = this.reconnectTimer = null;
    const c = this.client;
    this.client = null;
    if (!c) return;
    if (wasConnected) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        c.publish(this.stateTopic(), JSON.stringify(this.statePayload('offline', 'shutdown')), { qos: 1, retain: true }, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      c.end(false, {}, () => {
        clearTimeout(t);
        resolve();
      });
    });
    c.removeAllListeners();
    c.on('error', () => undefined);
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.warn(`server link: ${errorText(err)}`);
    }
  }
}
