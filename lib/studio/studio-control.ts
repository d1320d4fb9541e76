/**
 * Studio control panels over MQTT: the topic layout, the request and reply
 * schemas (ajv), and the controller that answers a panel's requests from the
 * recorder channels of this process and publishes their state.
 *
 * The topic layout and the requests are in studio-requests.ts, the replies
 * and the published state in studio-replies.ts.
 *
 * No Node-RED here: the studio-control node hands it what an `mqtt in` node
 * received and sends what it publishes to an `mqtt out` node, so the site keeps
 * its broker settings in Node-RED's own MQTT nodes.
 */
import { EventEmitter } from 'node:events';
import { CommandError, errorText } from '../model/errors';
import type { ChannelEvent, ChannelStatus, PresentedLine } from '../recorder/types';
import { ReclistState, Reply, errorReply, panelLine, statusState, summariseEvent } from './studio-replies';
import {
  channelTopics,
  checkPrefix,
  CHANNEL_RE,
  DEFAULT_PREFIX,
  errorTopic,
  parseRequest,
  peekRequestId,
  responseTarget,
  SERVER_RE,
  StudioError,
  StudioRequest,
} from './studio-requests';

// ------------------------------------------------------------------ controller

/** What the controller needs of a recorder channel (lib/recorder/channel's RecorderChannel). */
export interface StudioChannel extends EventEmitter {
  execute(raw: unknown): Promise<ChannelEvent[]>;
  status(): ChannelStatus;
  lines(): PresentedLine[];
}

/** What it needs of the registry of recorder channels (nodes/shared/registry's recorderChannels). */
export interface StudioRegistry<C extends StudioChannel = StudioChannel> extends EventEmitter {
  get(serverId: string, channel: number): C | undefined;
  entries(): [string, number, C][];
}

/** A message for `mqtt out`: the payload is an object (mqtt out writes it as JSON). */
export interface Outgoing {
  topic: string;
  payload: object;
  retain: boolean;
  qos: 0 | 1 | 2;
  /** MQTT v5: the request's correlation data, sent back with a reply to its response topic. */
  correlationData?: Buffer;
}

export interface StudioOptions {
  prefix?: string;
  /** Serve only this server id (requests for others are left to the Node-RED that has them). */
  server?: string | null;
  /** Events within this time are published as one state (ms). */
  coalesceMs?: number;
  /**
   * How often the state is compared with what was last published (ms; 0: never).
   * Every change is announced by the channel ('event', 'commanded'); this is the
   * safety net for one that is not, and publishes nothing while nothing changed.
   */
  refreshMs?: number;
  clock?: () => number;
}

export type HandleResult =
  | { kind: 'ok'; request: StudioRequest; reply: Outgoing }
  | { kind: 'refused'; error: StudioError | CommandError; reply: Outgoing | null }
  /** for another server (the server filter): not answered here */
  | { kind: 'ignored'; why: string };

interface Watched {
  server: string;
  channel: number;
  ctl: StudioChannel;
  onEvent: (ev: ChannelEvent) => void;
  onCommanded: (evs: ChannelEvent[]) => void;
  timer: NodeJS.Timeout | null;
  /** fingerprint of the state last published */
  published: string;
}

/**
 * Answers panel requests from the recorder channels of a registry, and publishes
 * each channel's rec-list and status (retained) and its events whenever they
 * change. `publish` gets every outgoing message; it must not throw (it is guarded).
 */
export class StudioControl {
  readonly prefix: string;
  readonly server: string | null;
  private readonly coalesceMs: number;
  private readonly clock: () => number;
  private readonly watched = new Map<string, Watched>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly onSet = (server: string, channel: number, ctl: StudioChannel) => this.guard(() => this.attach(server, channel, ctl));
  private readonly onDelete = (server: string, channel: number, ctl: StudioChannel) => this.guard(() => this.detach(server, channel, ctl));

  constructor(
    opts: StudioOptions,
    private readonly registry: StudioRegistry,
    private readonly publish: (m: Outgoing) => void,
    private readonly log: { warn(m: string): void } = { warn: () => undefined },
  ) {
    this.prefix = checkPrefix(opts.prefix ?? DEFAULT_PREFIX);
    const server = typeof opts.server === 'string' ? opts.server.trim() : '';
    if (server && !SERVER_RE.test(server))
      throw new StudioError(`the server filter "${server}" is not a server id (1 to 64 letters, digits, '.', '_' or '-')`, 'EINVAL');
    this.server = server || null;
    this.coalesceMs = opts.coalesceMs ?? 50;
    this.clock = opts.clock ?? Date.now;
    registry.on('set', this.onSet);
    registry.on('delete', this.onDelete);
    for (const [s, c, ctl] of registry.entries()) this.attach(s, c, ctl);
    const refreshMs = opts.refreshMs ?? 5000;
    if (refreshMs > 0) this.refreshTimer = setInterval(() => this.guard(() => this.refresh()), refreshMs);
  }

  /** The channels served, as "server/channel". */
  channels(): string[] {
    return [...this.watched.keys()];
  }

  /**
   * Answer one request. Never throws: a refusal comes back as `refused` with the reply to send.
   * An MQTT v5 request with a response topic (`meta.responseTopic`, `meta.correlationData` as
   * Node-RED's mqtt in node gives them) is answered there, its correlation data sent back;
   * a response topic that cannot be answered on refuses the request (EINVAL) on the usual reply topic.
   */
  async handle(topic: unknown, payload: unknown, meta: { retained?: boolean; responseTopic?: unknown; correlationData?: unknown } = {}): Promise<HandleResult> {
    let target: ReturnType<typeof responseTarget> = null;
    let badTarget: StudioError | null = null;
    try {
      target = responseTarget(this.prefix, meta.responseTopic, meta.correlationData);
    } catch (err) {
      badTarget = err as StudioError;
    }
    const r = await this.answer(topic, payload, meta, badTarget);
    if (target && r.kind !== 'ignored' && r.reply)
      r.reply = { ...r.reply, topic: target.topic, ...(target.correlationData ? { correlationData: target.correlationData } : {}) };
    return r;
  }

  private async answer(topic: unknown, payload: unknown, meta: { retained?: boolean }, badTarget: StudioError | null): Promise<HandleResult> {
    let req: StudioRequest;
    try {
      if (this.closed) throw new StudioError('studio-control is closing; try again when it has restarted', 'ECLOSED', null);
      // a request for another server is for the Node-RED that has it, whatever else is wrong with it
      if (this.server && typeof topic === 'string' && topic.startsWith(`${this.prefix}/`)) {
        const other = topic.slice(this.prefix.length + 1).split('/')[0];
        if (other && other !== this.server) return { kind: 'ignored', why: `request for server ${other}; this node serves ${this.server}` };
      }
      // a message without payload is how MQTT clears a retained message, not a request
      if (payload === '' || (Buffer.isBuffer(payload) && payload.length === 0))
        return { kind: 'ignored', why: 'an empty message (it clears a retained message)' };
      req = parseRequest(this.prefix, topic, payload, meta);
    } catch (err) {
      return this.refused(err, null, payload);
    }
    if (badTarget) return this.refused(new StudioError(badTarget.message, 'EINVAL', req.replyTopic, req.requestId, req.command), req);
    const ctl = this.registry.get(req.server, req.channel);
    if (!ctl) {
      return this.refused(new StudioError(this.whyNoChannel(req.server, req.channel), 'ENOCHANNEL', req.replyTopic, req.requestId, req.command), req);
    }
    const at = this.clock();
    const base = { requestId: req.requestId, command: req.command, server: req.server, channel: req.channel };
    try {
      let reply: Reply;
      if (req.command === 'status') {
        reply = { ok: true, ...base, at, status: statusState(req.server, req.channel, ctl.status(), at) };
      } else if (req.command === 'list' || req.command === 'get') {
        const evs = await ctl.execute(req.recorderCommand);
        const lines = evs.find((e) => e.event === 'reclist')?.lines ?? ctl.lines();
        reply = { ok: true, ...base, at: this.clock(), reclist: lines.map(panelLine) };
      } else {
        const evs = await ctl.execute(req.recorderCommand);
        reply = { ok: true, ...base, at: this.clock(), events: evs.map(summariseEvent) };
        // (the channel also emits these events as 'commanded': every panel sees them on .../event, after this reply)
        this.changed(req.server, req.channel);
      }
      return { kind: 'ok', request: req, reply: { topic: req.replyTopic, payload: reply, retain: false, qos: 1 } };
    } catch (err) {
      const e =
        err instanceof CommandError
          ? new StudioError(err.message, err.code, req.replyTopic, req.requestId, req.command)
          : new StudioError(`the recorder failed: ${errorText(err)}`, 'EINTERNAL', req.replyTopic, req.requestId, req.command);
      return this.refused(e, req);
    }
  }

  /** Stop listening and publishing (node close). */
  close(): void {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    this.registry.removeListener('set', this.onSet);
    this.registry.removeListener('delete', this.onDelete);
    for (const w of this.watched.values()) {
      w.ctl.removeListener('event', w.onEvent);
      w.ctl.removeListener('commanded', w.onCommanded);
      if (w.timer) clearTimeout(w.timer);
    }
    this.watched.clear();
  }

  // ---------------------------------------------------------------- internals

  private refused(err: unknown, req: StudioRequest | null, raw?: unknown): HandleResult {
    const e = err instanceof CommandError ? err : new StudioError(errorText(err), 'EINTERNAL', errorTopic(this.prefix));
    const to = e instanceof StudioError ? e.replyTopic : null;
    const who = req
      ? { server: req.server, channel: req.channel, requestId: req.requestId, command: req.command }
      : { ...this.fromTopic(e), requestId: peekRequestId(raw) };
    const payload = errorReply(e, this.clock(), who);
    return { kind: 'refused', error: e, reply: to ? { topic: to, payload, retain: false, qos: 1 } : null };
  }

  /** server and channel of a refused request, from its reply topic when that names them. */
  private fromTopic(e: CommandError): { server?: string; channel?: number } {
    if (!(e instanceof StudioError) || !e.replyTopic || e.replyTopic === errorTopic(this.prefix)) return {};
    const [server, ch] = e.replyTopic.slice(this.prefix.length + 1).split('/');
    return CHANNEL_RE.test(ch) && SERVER_RE.test(server) ? { server, channel: Number(ch) } : {};
  }

  private whyNoChannel(server: string, channel: number): string {
    const here = this.registry.entries().filter(([s]) => !this.server || s === this.server);
    if (this.server && server !== this.server) return `this node serves only server ${this.server}, not ${server}`;
    const same = here
      .filter(([s]) => s === server)
      .map(([, c]) => c)
      .sort((a, b) => a - b);
    if (same.length) return `server ${server} has no recorder on channel ${channel} in this Node-RED (its channels here: ${same.join(', ')})`;
    const servers = [...new Set(here.map(([s]) => s))].sort();
    return `server ${server} has no recorder in this Node-RED (${servers.length ? `servers here: ${servers.join(', ')}` : 'no recorder is running here'})`;
  }

  private attach(server: string, channel: number, ctl: StudioChannel): void {
    if (this.closed || (this.server && server !== this.server)) return;
    const key = `${server}/${channel}`;
    const old = this.watched.get(key);
    if (old && old.ctl === ctl) return;
    if (old) this.detach(server, channel, old.ctl, false);
    const w: Watched = {
      server,
      channel,
      ctl,
      timer: null,
      published: '',
      onEvent: (ev: ChannelEvent) =>
        this.guard(() => {
          this.publish({ topic: channelTopics(this.prefix, server, channel).event, payload: summariseEvent(ev), retain: false, qos: 1 });
          this.changed(server, channel);
        }),
      // what a command or a mirror message did, whoever sent it (this node, the recorder node's input, backup-link)
      onCommanded: (evs: ChannelEvent[]) =>
        this.guard(() => {
          const changes = evs.filter((e) => e.event !== 'reclist').map(summariseEvent);
          if (!changes.length) return;
          // emitted before the command returns: published after the reply to its sender
          setImmediate(() =>
            this.guard(() => {
              if (this.watched.get(`${server}/${channel}`) !== w) return;
              for (const s of changes) this.publish({ topic: channelTopics(this.prefix, server, channel).event, payload: s, retain: false, qos: 1 });
            }),
          );
          this.changed(server, channel);
        }),
    };
    ctl.on('event', w.onEvent);
    ctl.on('commanded', w.onCommanded);
    this.watched.set(key, w);
    // a recorder that just appeared loads its rec-list first: publish once it has (and the refresh checks again)
    this.changed(server, channel, Math.max(this.coalesceMs, 200));
  }

  private detach(server: string, channel: number, ctl: StudioChannel, tell = true): void {
    const key = `${server}/${channel}`;
    const w = this.watched.get(key);
    if (!w || w.ctl !== ctl) return;
    ctl.removeListener('event', w.onEvent);
    ctl.removeListener('commanded', w.onCommanded);
    if (w.timer) clearTimeout(w.timer);
    this.watched.delete(key);
    if (tell && !this.closed) {
      // the recorder left (redeploy or removed): its status says closed until it is back
      const at = this.clock();
      this.publish({
        topic: channelTopics(this.prefix, server, channel).status,
        payload: statusState(server, channel, safeStatus(ctl, 'closed'), at),
        retain: true,
        qos: 1,
      });
    }
  }

  /** Publish the channel's state soon (several changes close together go out once). */
  private changed(server: string, channel: number, delay = this.coalesceMs): void {
    const w = this.watched.get(`${server}/${channel}`);
    if (!w || w.timer || this.closed) return;
    w.timer = setTimeout(
      () =>
        this.guard(() => {
          w.timer = null;
          this.publishState(w, true);
        }),
      delay,
    );
  }

  private refresh(): void {
    for (const w of this.watched.values()) if (!w.timer) this.publishState(w, false);
  }

  /** Publish rec-list and status; `force` even when nothing a panel shows changed. */
  private publishState(w: Watched, force: boolean): void {
    if (this.closed || this.watched.get(`${w.server}/${w.channel}`) !== w) return;
    const st = w.ctl.status();
    const lines = w.ctl.lines();
    const print = fingerprint(st, lines);
    if (!force && print === w.published) return;
    w.published = print;
    const at = this.clock();
    const topics = channelTopics(this.prefix, w.server, w.channel);
    const reclist: ReclistState = { server: w.server, channel: w.channel, at, lines: lines.map(panelLine) };
    this.publish({ topic: topics.reclist, payload: reclist, retain: true, qos: 1 });
    this.publish({ topic: topics.status, payload: statusState(w.server, w.channel, st, at), retain: true, qos: 1 });
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.warn(`studio-control: ${errorText(err)}`);
    }
  }
}

/** What a panel shows of a channel, without the running position (that moves every frame). */
function fingerprint(st: ChannelStatus, lines: PresentedLine[]): string {
  const head = `${st.state}|${st.line?.id ?? ''}|${st.line?.status ?? ''}|${st.detail ?? ''}|${st.lines}`;
  return `${head}#${lines.map((l) => `${l.id}:${l.n}:${l.status}:${l.updatedAt}`).join(',')}`;
}

function safeStatus(ctl: StudioChannel, fallback: ChannelStatus['state']): ChannelStatus {
  try {
    return ctl.status();
  } catch {
    return { state: fallback, line: null, curPoint: null, lines: 0, detail: null };
  }
}
