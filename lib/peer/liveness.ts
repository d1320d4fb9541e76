/**
 * Liveness: a signed UDP question and answer between servers of a group, served
 * from the running application's event loop, so that an answer proves the
 * server works, not that its kernel still completes TCP handshakes (a frozen
 * process, a frozen machine and a cut network all stop answering; a busy one
 * answers late). It does not go through the MQTT broker: a dead broker, a cut
 * main and a hung main are told apart by it.
 *
 * One datagram each way: 32 bytes of HMAC-SHA256 then the JSON it signs. The
 * key is derived from the group's shared secret (never the secret itself):
 *   question  {"v":1,"k":"live?","g":group,"to":server,"from":asker,"n":nonce,"t":ms}
 *   answer    {"v":1,"k":"live","g":group,"s":server,"to":asker,"n":nonce,"t":ms,
 *              "up":uptimeMs,"ch":[[channel, recording 0|1, frames, ms since progress or -1], ...]}
 * A question that is not signed with the group's key gets no answer (no
 * reflection to a forged source address); an answer counts only when it is
 * signed, names the server asked and carries the nonce of a question this
 * asker sent to that server's address. The answer carries each channel's media
 * progress, so that a channel that stops writing can be told from a live one.
 *
 * No Node-RED import.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { NAME_PATTERN } from '../model/names';

export const LIVENESS_VERSION = 1;
/** A question is small; anything longer is dropped unread. */
const MAX_QUESTION = 512;
/** An answer stays one unfragmented datagram on an ordinary network (1500-byte MTU). */
export const MAX_ANSWER = 1400;
/** Questions older or newer than this (clock difference included) get no answer. */
const QUESTION_WINDOW_MS = 30000;
const MAC_BYTES = 32;
const NAME = new RegExp(NAME_PATTERN);
const NONCE = /^[0-9a-f]{16}$/;

/** The key liveness messages are signed with, derived from the group secret. */
export function livenessKey(secret: string): Buffer {
  return crypto.createHmac('sha256', secret).update('twinrec liveness v1').digest();
}

function seal(key: Buffer, body: object): Buffer {
  const json = Buffer.from(JSON.stringify(body));
  return Buffer.concat([crypto.createHmac('sha256', key).update(json).digest(), json]);
}

/** The signed JSON of a datagram, or null (too short, bad signature, not JSON of an object). */
function open(key: Buffer, msg: Buffer): Record<string, unknown> | null {
  if (msg.length <= MAC_BYTES) return null;
  const json = msg.subarray(MAC_BYTES);
  const mac = crypto.createHmac('sha256', key).update(json).digest();
  if (!crypto.timingSafeEqual(mac, msg.subarray(0, MAC_BYTES))) return null;
  try {
    const v = JSON.parse(json.toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** One channel's media progress as a server reports it. */
export interface ChannelProgress {
  channel: number;
  recording: boolean;
  /** Frames written by the current run (0 when idle). */
  frames: number;
  /** Milliseconds since the last progress of its recording, null when there is none. */
  sinceProgressMs: number | null;
}

/** What a server that answers serves: its name, its group's key, its channels' progress. */
export interface LivenessIdentity {
  group: string;
  serverId: string;
  key: Buffer;
  progress(): ChannelProgress[];
}

function packChannels(list: ChannelProgress[], room: number): (number | 0 | 1)[][] {
  const out: number[][] = [];
  let used = 2;
  for (const c of list) {
    const row = [
      c.channel,
      c.recording ? 1 : 0,
      Math.max(0, Math.floor(c.frames)),
      c.sinceProgressMs === null ? -1 : Math.max(0, Math.round(c.sinceProgressMs)),
    ];
    const len = JSON.stringify(row).length + 1;
    if (used + len > room) break; // the answer stays one datagram; the channels that do not fit are left out
    used += len;
    out.push(row);
  }
  return out;
}

/**
 * The answering side: one UDP socket (one port) answering for every server
 * identity of this process registered on it.
 */
export class LivenessResponder {
  private socket: dgram.Socket | null = null;
  private readonly identities = new Map<string, LivenessIdentity>();
  private readonly started = Date.now();
  /** Answers sent and questions dropped, for the status and the tests. */
  answered = 0;
  dropped = 0;
  private window = { at: 0, count: 0 };

  constructor(
    private readonly options: { host: string; port: number; maxAnswersPerSecond?: number; clock?: () => number },
    private readonly log: { warn(m: string): void } = { warn: () => undefined },
  ) {}

  private get clock(): () => number {
    return this.options.clock ?? Date.now;
  }

  /** Bind the socket; resolves with the port bound (useful with port 0), rejects with the bind error. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({ type: net.isIPv6(this.options.host) ? 'udp6' : 'udp4', reuseAddr: false });
      let bound = false;
      sock.on('error', (err) => {
        if (!bound) {
          sock.close();
          reject(err);
        } else this.log.warn(`liveness socket: ${err.message}`);
      });
      sock.on('message', (msg, rinfo) => {
        try {
          this.onQuestion(msg, rinfo);
        } catch (err) {
          this.dropped++;
          this.log.warn(`liveness: a question could not be answered: ${(err as Error).message}`);
        }
      });
      sock.bind(this.options.port, this.options.host, () => {
        bound = true;
        this.socket = sock;
        resolve(sock.address().port);
      });
    });
  }

  /** Answer for this server from now on; returns the function that stops it. */
  serve(id: LivenessIdentity): () => void {
    this.identities.set(id.serverId, id);
    return () => {
      if (this.identities.get(id.serverId) === id) this.identities.delete(id.serverId);
    };
  }

  get serving(): number {
    return this.identities.size;
  }

  private onQuestion(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length > MAX_QUESTION || msg.length <= MAC_BYTES) {
      this.dropped++;
      return;
    }
    // which server is asked is read before the signature is checked (each server may have its own key),
    // but nothing is done with an unsigned question except dropping it
    let to: unknown;
    try {
      to = (JSON.parse(msg.subarray(MAC_BYTES).toString('utf8')) as { to?: unknown }).to;
    } catch {
      this.dropped++;
      return;
    }
    const id = typeof to === 'string' ? this.identities.get(to) : undefined;
    const q = id ? open(id.key, msg) : null;
    const now = this.clock();
    if (
      !id ||
      !q ||
      q.v !== LIVENESS_VERSION ||
      q.k !== 'live?' ||
      q.g !== id.group ||
      typeof q.from !== 'string' ||
      !NAME.test(q.from) ||
      typeof q.n !== 'string' ||
      !NONCE.test(q.n) ||
      typeof q.t !== 'number' ||
      Math.abs(now - q.t) > QUESTION_WINDOW_MS
    ) {
      this.dropped++;
      return;
    }
    // a bound on answers: a flood of replayed questions cannot make this server a traffic source
    const limit = this.options.maxAnswersPerSecond ?? 500;
    if (now - this.window.at >= 1000) this.window = { at: now, count: 0 };
    if (++this.window.count > limit) {
      this.dropped++;
      return;
    }
    const head = { v: LIVENESS_VERSION, k: 'live', g: id.group, s: id.serverId, to: q.from, n: q.n, t: now, up: now - this.started };
    const room = MAX_ANSWER - MAC_BYTES - JSON.stringify({ ...head, ch: [] }).length;
    const answer = seal(id.key, { ...head, ch: packChannels(id.progress(), room) });
    this.socket?.send(answer, rinfo.port, rinfo.address, (err) => {
      if (err) this.dropped++;
      else this.answered++;
    });
  }

  close(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    this.identities.clear();
    if (!s) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}

/** A server a prober asks, at the address where it answers liveness. */
export interface LivenessTarget {
  server: string;
  host: string;
  port: number;
}

/** What a prober knows of one server. */
export interface LivenessView {
  server: string;
  /** host:port asked */
  address: string;
  /** When the last valid answer came, null when none has. */
  lastAnswerAt: number | null;
  /** Round trip of the last valid answer. */
  rttMs: number | null;
  /** The server's uptime as it said in its last answer. */
  uptimeMs: number | null;
  channels: ChannelProgress[];
  /** Answers that failed a check (signature, server, nonce). */
  rejected: number;
  /** When it was first asked at this address. */
  askedSince: number;
}

interface Pending {
  server: string;
  address: string;
  sentAt: number;
}

/**
 * The asking side: asks each target every intervalMs and keeps what the valid
 * answers said. `alive(server)` is whether one came within timeoutMs.
 */
export class LivenessProber {
  private sockets = new Map<'udp4' | 'udp6', dgram.Socket>();
  private readonly targets = new Map<string, LivenessTarget>();
  private readonly views = new Map<string, LivenessView>();
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly options: { self: string; group: string; key: Buffer; intervalMs?: number; timeoutMs?: number; clock?: () => number },
    private readonly log: { warn(m: string): void } = { warn: () => undefined },
  ) {}

  private get clock(): () => number {
    return this.options.clock ?? Date.now;
  }
  get intervalMs(): number {
    return this.options.intervalMs ?? 200;
  }
  get timeoutMs(): number {
    return this.options.timeoutMs ?? 750;
  }

  /** Ask this server at this address from now on (a new address replaces the old one). */
  setTarget(t: LivenessTarget): void {
    const address = `${t.host}:${t.port}`;
    const old = this.targets.get(t.server);
    this.targets.set(t.server, t);
    const v = this.views.get(t.server);
    if (!v || `${old?.host}:${old?.port}` !== address) {
      this.views.set(t.server, {
        server: t.server,
        address,
        lastAnswerAt: null,
        rttMs: null,
        uptimeMs: null,
        channels: [],
        rejected: 0,
        askedSince: this.clock(),
      });
    }
  }

  removeTarget(server: string): void {
    this.targets.delete(server);
    this.views.delete(server);
  }

  hasTarget(server: string): boolean {
    return this.targets.has(server);
  }

  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.askAll(), this.intervalMs);
    this.askAll();
  }

  /**
   * Whether a valid answer of this server came within the timeout; null when it
   * is not asked, or was first asked less than a timeout ago (no answer could be late yet).
   */
  alive(server: string, now = this.clock()): boolean | null {
    const v = this.views.get(server);
    if (!v) return null;
    if (v.lastAnswerAt !== null && now - v.lastAnswerAt <= this.timeoutMs) return true;
    return now - v.askedSince <= this.timeoutMs ? null : false;
  }

  view(server: string): LivenessView | undefined {
    const v = this.views.get(server);
    return v ? { ...v, channels: v.channels.map((c) => ({ ...c })) } : undefined;
  }

  private socketFor(host: string): dgram.Socket {
    const type = net.isIPv6(host) ? 'udp6' : 'udp4';
    let s = this.sockets.get(type);
    if (!s) {
      s = dgram.createSocket(type);
      s.on('error', (err) => this.log.warn(`liveness prober socket: ${err.message}`));
      s.on('message', (msg, rinfo) => {
        try {
          this.onAnswer(msg, rinfo);
        } catch (err) {
          this.log.warn(`liveness: an answer could not be read: ${(err as Error).message}`);
        }
      });
      this.sockets.set(type, s);
    }
    return s;
  }

  private askAll(): void {
    const now = this.clock();
    // questions unanswered for four timeouts are forgotten (a late answer to them no longer counts)
    for (const [n, p] of this.pending) if (now - p.sentAt > 4 * this.timeoutMs) this.pending.delete(n);
    for (const t of this.targets.values()) {
      const n = crypto.randomBytes(8).toString('hex');
      const address = `${t.host}:${t.port}`;
      this.pending.set(n, { server: t.server, address, sentAt: now });
      const q = seal(this.options.key, { v: LIVENESS_VERSION, k: 'live?', g: this.options.group, to: t.server, from: this.options.self, n, t: now });
      try {
        this.socketFor(t.host).send(q, t.port, t.host, () => undefined); // an unreachable address is no answer, nothing more
      } catch (err) {
        this.log.warn(`liveness: cannot ask ${t.server} at ${address}: ${(err as Error).message}`);
      }
    }
  }

  private onAnswer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length > MAX_ANSWER * 2) return;
    const a = open(this.options.key, msg);
    const n = a && typeof a.n === 'string' ? a.n : null;
    const p = n ? this.pending.get(n) : undefined;
    if (!a || !p) {
      // unsigned, or not an answer to a question of ours: counted against the server it claims to be, if asked
      const claimed = a && typeof a.s === 'string' ? this.views.get(a.s) : undefined;
      if (claimed) claimed.rejected++;
      return;
    }
    const v = this.views.get(p.server);
    if (!v || v.address !== p.address) return; // the target moved since the question
    if (a.v !== LIVENESS_VERSION || a.k !== 'live' || a.g !== this.options.group || a.s !== p.server || a.to !== this.options.self || rinfo.size > MAX_ANSWER) {
      v.rejected++;
      return;
    }
    this.pending.delete(n!);
    const now = this.clock();
    v.lastAnswerAt = now;
    v.rttMs = now - p.sentAt;
    v.uptimeMs = typeof a.up === 'number' && a.up >= 0 ? a.up : null;
    v.channels = readChannels(a.ch);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const socks = [...this.sockets.values()];
    this.sockets.clear();
    return Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined);
  }
}

/** The channel rows of a signed answer, each checked; a row that is not one is left out. */
function readChannels(raw: unknown): ChannelProgress[] {
  if (!Array.isArray(raw)) return [];
  const out: ChannelProgress[] = [];
  for (const r of raw.slice(0, 256)) {
    if (!Array.isArray(r) || r.length !== 4 || !r.every((x) => typeof x === 'number' && Number.isFinite(x))) continue;
    const [channel, rec, frames, since] = r as number[];
    if (!Number.isInteger(channel) || channel < 1 || channel > 9999 || (rec !== 0 && rec !== 1) || frames < 0 || since < -1) continue;
    out.push({ channel, recording: rec === 1, frames, sinceProgressMs: since === -1 ? null : since });
  }
  return out;
}

/** "host:port" (IPv6 as [addr]:port) to a target of this server; throws a sentence that says what is wrong. */
export function parseLivenessAddress(server: string, text: string): LivenessTarget {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\s[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`liveness address "${text}" of ${server} must be host:port`);
  return { server, host: m[1], port };
}

/**
 * The responders of one process by address: the servers of one Node-RED that
 * answer on the same port share its socket; the last one to leave closes it.
 */
export class LivenessEndpoints {
  private readonly byAddress = new Map<string, { responder: LivenessResponder; ready: Promise<number>; users: number }>();

  /** Answer for this identity at host:port; resolves with the port and the function that stops it, rejects when the port cannot be bound. */
  async serve(host: string, port: number, id: LivenessIdentity, log: { warn(m: string): void }): Promise<{ port: number; stop: () => Promise<void> }> {
    const key = `${host}|${port}`;
    let e = this.byAddress.get(key);
    if (!e) {
      const responder = new LivenessResponder({ host, port }, log);
      e = { responder, ready: responder.start(), users: 0 };
      this.byAddress.set(key, e);
    }
    const entry = e;
    entry.users++;
    let bound: number;
    try {
      bound = await entry.ready;
    } catch (err) {
      if (--entry.users === 0 && this.byAddress.get(key) === entry) this.byAddress.delete(key);
      throw err;
    }
    const unserve = entry.responder.serve(id);
    let stopped = false;
    return {
      port: bound,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        unserve();
        if (--entry.users === 0) {
          if (this.byAddress.get(key) === entry) this.byAddress.delete(key);
          await entry.responder.close();
        }
      },
    };
  }
}

/** One per process. */
export const livenessEndpoints = new LivenessEndpoints();
