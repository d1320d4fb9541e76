/**
 * backup-link: synchronous parallel recording between a main and a backup
 * server. On the main, every event of a Backup=On line becomes the line's whole
 * state, published retained on the group's broker (republished after every
 * reconnect, so a change made during an outage reaches the backup when the link
 * returns). On the backup, each such message addressed to it is applied to the
 * named recorder channel, whose Aux line follows the main line.
 */
import { EventEmitter } from 'node:events';
import { CommandError, errorText } from '../model/errors';
import {
  makeMirror,
  MirrorMessage,
  mirrorPattern,
  mirrorTopic,
  SeqSource,
  TwinResultMessage,
  twinPatternFor,
  twinTopic,
  validateMirror,
  validateTwinResult,
} from './mirror';
import { TwinCheck } from '../model/clip';
import { twinSummaryOf } from '../model/twin';
import { LINK_VERSION } from '../link/schemas';
import { ChannelEvent } from '../recorder/types';
import { Line } from '../model/reclist';
import { RateLimitedLog } from '../link/server-link';
import type { ValidateFunction } from 'ajv';

/** The part of the server link backup-link uses. */
export interface LinkPort {
  readonly epoch: number;
  publishRetained(topic: string, payload: unknown | null): void;
  subscribe(pattern: string, validate: ValidateFunction, handler: (topic: string, payload: unknown) => void): () => void;
  /** The lowest epoch a server's commands may carry (raised by a takeover of that server). */
  epochFloor?(server: string): number;
}

/** The part of a recorder channel backup-link feeds. */
export interface AuxTarget {
  applyMirror(m: MirrorMessage): Promise<ChannelEvent[]>;
  on(event: 'twin', fn: (check: TwinCheck, main: { server: string; channel: number; lineId: string }) => void): unknown;
}

/** The part of a recorder channel that takes the backup's verdict on a twin. */
export interface MainTarget {
  recordTwinResult(lineId: string, check: TwinCheck): ChannelEvent | null;
}

const LINE_EVENTS = new Set(['added', 'updated', 'removed', 'armed', 'recording', 'stopped', 'interrupted', 'failed', 'verified', 'mismatch']);

/** Check that a message is a recorder's line event; throws a CommandError that says what was expected. */
export function asRecorderEvent(payload: unknown): ChannelEvent | null {
  const p = payload as Partial<ChannelEvent> | null;
  if (!p || typeof p !== 'object' || typeof p.event !== 'string' || typeof p.server !== 'string' || typeof p.channel !== 'number') {
    throw new CommandError(
      "backup-link expects the events of a recorder node (msg.payload with event, server, channel and line): wire a recorder's output to it",
    );
  }
  if (p.event === 'reclist') return null;
  if (!LINE_EVENTS.has(p.event)) throw new CommandError(`backup-link: "${p.event}" is not a recorder line event`);
  if (!p.line || typeof p.line !== 'object' || typeof p.line.id !== 'string') throw new CommandError('backup-link: the recorder event has no line');
  return p as ChannelEvent;
}

export class BackupLinkMain extends EventEmitter {
  private readonly seq: SeqSource;
  /** The mirrors this server holds retained on the broker, by topic. */
  private readonly published = new Map<string, MirrorMessage>();
  private unsubscribe: (() => void) | null = null;
  constructor(
    private readonly link: LinkPort,
    private readonly me: { group: string; serverId: string },
    private readonly lookup: (channel: number) => MainTarget | undefined = () => undefined,
    clock: () => number = Date.now,
  ) {
    super();
    this.seq = new SeqSource(clock);
  }

  /** Listen for the backups' verdicts on our twins ('event' for each one recorded). */
  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.link.subscribe(twinPatternFor(this.me.group, this.me.serverId), validateTwinResult, (_topic, payload) => {
      if (payload === null) return;
      const r = payload as TwinResultMessage;
      if (r.main.server !== this.me.serverId) return;
      const target = this.lookup(r.main.channel);
      if (!target) return;
      const ev = target.recordTwinResult(r.main.lineId, r.check);
      if (ev) this.emit('event', ev);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /**
   * Mirror one recorder event. Returns the message published, or null when the
   * line is not Backup=On (nothing to do). Throws CommandError when the recorder
   * has no backup recorder configured.
   */
  onRecorderEvent(ev: ChannelEvent): MirrorMessage | null {
    const line = ev.line!;
    if (line.backup !== 'on') return null;
    if (ev.server !== this.me.serverId) {
      throw new CommandError(
        `backup-link: the event comes from server ${ev.server}, but this backup-link belongs to ${this.me.serverId}; use the same redundancy-server for both nodes`,
      );
    }
    const target = ev.backupTarget;
    if (!target) {
      throw new CommandError(
        `line ${line.n} ("${line.title}") is Backup=On but recorder channel ${ev.channel} has no backup recorder server and channel: set them in the recorder`,
      );
    }
    if (ev.event === 'verified' || ev.event === 'mismatch') return null;
    const m = makeMirror(
      { from: { server: ev.server, channel: ev.channel }, to: target, seq: this.seq.next(), epoch: this.link.epoch, ts: Date.now() },
      ev.event === 'removed' ? null : (line as Line),
      line.id,
    );
    if (ev.event === 'stopped' && ev.clip) m.clip = twinSummaryOf(ev.clip);
    const topic = mirrorTopic(this.me.group, ev.server, ev.channel, line.id);
    this.link.publishRetained(topic, m);
    if (m.removed) this.published.delete(topic);
    else this.published.set(topic, m);
    return m;
  }

  /**
   * This server took the epoch of the takeover that ended (failback): its
   * retained mirrors are published again with it, so the backup, which refused
   * them as stale while the server was taken over, applies their current state.
   */
  restamp(epoch: number): number {
    let n = 0;
    for (const [topic, m] of this.published) {
      if (m.epoch >= epoch) continue;
      const next: MirrorMessage = { ...m, epoch, seq: this.seq.next(), ts: Date.now() };
      this.published.set(topic, next);
      this.link.publishRetained(topic, next);
      n++;
    }
    return n;
  }
}

export class BackupLinkBackup extends EventEmitter {
  private unsubscribe: (() => void) | null = null;
  private epochs = new Map<string, number>();
  private watched = new WeakSet<AuxTarget>();
  private readonly rate: RateLimitedLog;
  /** Applies messages one after the other (an Aux start awaits ffmpeg). */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly link: LinkPort,
    private readonly me: { group: string; serverId: string },
    private readonly lookup: (channel: number) => AuxTarget | undefined,
    log: (m: string) => void,
  ) {
    super();
    this.rate = new RateLimitedLog(log);
  }

  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.link.subscribe(mirrorPattern(this.me.group), validateMirror, (topic, payload) => {
      if (payload === null) return; // a cleared retained message
      const m = payload as MirrorMessage;
      if (m.to.server !== this.me.serverId) return;
      this.queue = this.queue.then(() => this.apply(topic, m));
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private async apply(topic: string, m: MirrorMessage): Promise<void> {
    // the topic first: a message on another server's topic must not move that server's epoch
    if (!topic.endsWith(`/${m.from.channel}/${m.lineId}`) || !topic.includes(`/${m.from.server}/mirror/`)) {
      this.fail(m, `refused a mirror message on ${topic}: its topic does not match its sender ${m.from.server} channel ${m.from.channel} line ${m.lineId}`);
      return;
    }
    const known = Math.max(this.epochs.get(m.from.server) ?? 0, this.link.epochFloor?.(m.from.server) ?? 0);
    if (m.epoch < known) {
      this.fail(m, `refused a mirror message from ${m.from.server} of epoch ${m.epoch}: the group is at epoch ${known} (a stale main)`);
      return;
    }
    this.epochs.set(m.from.server, Math.max(known, m.epoch));
    const target = this.lookup(m.to.channel);
    if (!target) {
      this.fail(m, `no recorder for channel ${m.to.channel} on server ${this.me.serverId}: line ${m.lineId} of ${m.from.server} cannot be recorded as Aux`);
      return;
    }
    if (!this.watched.has(target)) {
      this.watched.add(target);
      target.on('twin', (check, main) => {
        const msg: TwinResultMessage = { v: LINK_VERSION, main, check };
        this.link.publishRetained(twinTopic(this.me.group, this.me.serverId, main.server, main.channel, main.lineId), msg);
        this.emit('twin', check);
      });
    }
    try {
      const evs = await target.applyMirror(m);
      for (const ev of evs) this.emit('event', ev, m);
    } catch (err) {
      this.fail(m, errorText(err));
    }
  }

  private fail(m: MirrorMessage, reason: string): void {
    this.rate.say(reason.slice(0, 80), reason);
    this.emit('failure', reason, m);
  }
}
