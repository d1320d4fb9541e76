/**
 * Studio GPIO signals on top of a GpioDevice: a debounced input (a REC button,
 * a fader start) and an output that follows a recorder (the REC tally lamp).
 * No Node-RED import.
 */
import type { EventEmitter } from 'node:events';
import { GpioError } from './gpio-device';
import { GpioPoint, PointValue, validPoint } from './gpio-points';
import type { ChannelEvent, ChannelStatus } from '../recorder/types';

export type Edge = 'rising' | 'falling' | 'change';
export type EdgeFilter = 'both' | 'rising' | 'falling';

export interface InputChange {
  value: PointValue;
  previous: PointValue | null;
  edge: Edge | 'initial';
  /** When the poll saw the new value (before the debounce). */
  seenAt: number;
  /** When it was accepted (after the debounce). */
  at: number;
}

/**
 * A value that counts only once it has stayed the same for `debounceMs`: a
 * contact that bounces, or a pulse shorter than that, is not reported. With 0,
 * every polled change counts at once.
 */
export class DebouncedInput {
  private stable: PointValue | null = null;
  private pending: { value: PointValue; seenAt: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly options: { debounceMs: number; filter: EdgeFilter; sendInitial: boolean },
    private readonly emit: (c: InputChange) => void,
    /** Every accepted value, sent or filtered out (for a status that shows the input as it is). */
    private readonly onValue?: (value: PointValue) => void,
  ) {}

  get value(): PointValue | null {
    return this.stable;
  }

  /** A polled value. */
  feed(value: PointValue, seenAt: number): void {
    if (this.stopped) return;
    if (this.stable === null && this.pending === null && this.timer === null) {
      // the first value known: the state at start, not an edge
      this.stable = value;
      this.onValue?.(value);
      if (this.options.sendInitial) this.emit({ value, previous: null, edge: 'initial', seenAt, at: Date.now() });
      return;
    }
    if (value === this.stable) {
      this.cancel();
      return;
    }
    if (this.options.debounceMs <= 0) {
      this.accept(value, seenAt);
      return;
    }
    if (this.pending && this.pending.value === value) return; // still waiting for the same change
    this.cancel();
    this.pending = { value, seenAt };
    this.timer = setTimeout(() => {
      this.timer = null;
      const p = this.pending;
      this.pending = null;
      if (p && !this.stopped) this.accept(p.value, p.seenAt);
    }, this.options.debounceMs);
  }

  /** The link went down: forget the state, so the value after reconnect counts as the start state again. */
  reset(): void {
    this.cancel();
    this.stable = null;
  }

  stop(): void {
    this.stopped = true;
    this.cancel();
  }

  hasTimer(): boolean {
    return this.timer !== null;
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
  }

  private accept(value: PointValue, seenAt: number): void {
    const previous = this.stable;
    this.stable = value;
    this.onValue?.(value);
    const edge: Edge = typeof value === 'boolean' ? (value ? 'rising' : 'falling') : 'change';
    if (this.options.filter === 'rising' && edge === 'falling') return;
    if (this.options.filter === 'falling' && edge === 'rising') return;
    this.emit({ value, previous, edge, seenAt, at: Date.now() });
  }
}

/** A point written in the editor: "coil 12", "discrete 3", "holding 40.7" (bit 7 of register 40). */
export function parsePoint(area: string, address: unknown, bit?: unknown): GpioPoint {
  const p: GpioPoint = { area: area as GpioPoint['area'], address: Number(address) };
  if (bit !== undefined && bit !== '' && bit !== null) p.bit = Number(bit);
  const bad = validPoint(p);
  if (bad) throw new GpioError(bad, 'EINVAL');
  return p;
}

/**
 * The value a gpio-out sets from msg.payload: true/false, 1/0, "on"/"off",
 * "true"/"false" for a coil; an integer 0..65535 for a register. Anything else
 * is refused with a sentence that says what is accepted.
 */
export function outputValue(payload: unknown, target: 'coil' | 'holding'): boolean | number {
  if (target === 'coil') {
    if (typeof payload === 'boolean') return payload;
    if (payload === 1 || payload === 0) return payload === 1;
    if (typeof payload === 'string') {
      const s = payload.trim().toLowerCase();
      if (['on', 'true', '1'].includes(s)) return true;
      if (['off', 'false', '0'].includes(s)) return false;
    }
    throw new GpioError(`msg.payload must be true/false, 1/0 or "on"/"off" to set a coil, not ${describe(payload)}`, 'EINVAL');
  }
  const n = typeof payload === 'string' && payload.trim() !== '' ? Number(payload) : payload;
  if (typeof n === 'boolean') return n ? 1 : 0;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 65535) return n;
  throw new GpioError(`msg.payload must be an integer 0..65535 to set a register, not ${describe(payload)}`, 'EINVAL');
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return String(v);
}

// ----------------------------------------------------------- recorder tally

export type FollowMode = 'recording' | 'active' | 'fault';
export const FOLLOW_MODES: readonly FollowMode[] = ['recording', 'active', 'fault'];

/** Is the lamp on for a channel in this state? recording: REC tally; active: armed or recording (standby); fault: interrupted or failed (alarm). */
export function lampFor(mode: FollowMode, state: ChannelStatus['state'] | null): boolean {
  if (state === null) return false;
  switch (mode) {
    case 'recording':
      return state === 'recording';
    case 'active':
      return state === 'recording' || state === 'armed';
    case 'fault':
      return state === 'interrupted' || state === 'failed';
  }
}

interface ChannelLike extends EventEmitter {
  status(): ChannelStatus;
}
interface RegistryLike<T> extends EventEmitter {
  get(serverId: string, channel: number): T | undefined;
}

/**
 * Follows one recorder channel in the registry of this process (its 'event'
 * and 'commanded' events, so changes made by any command count): calls
 * `onLamp(on, why)` with the lamp state at once and on every change, also when
 * the recorder node is redeployed (its channel leaves and comes back) or removed
 * (lamp off). stop() removes every listener it added.
 */
export class RecorderFollower {
  private ch: ChannelLike | null = null;
  private lamp: boolean | null = null;
  private readonly onEvent = (_ev: ChannelEvent) => this.update('event');
  private readonly onCommanded = (_evs: ChannelEvent[]) => this.update('command');
  private readonly onSet = (serverId: string, channel: number, ctl: ChannelLike) => {
    if (serverId === this.serverId && channel === this.channel) this.attach(ctl);
  };
  private readonly onDelete = (serverId: string, channel: number, ctl: ChannelLike) => {
    if (serverId === this.serverId && channel === this.channel && ctl === this.ch) {
      this.detach();
      this.set(false, 'the recorder left (redeploy or removed)');
    }
  };

  constructor(
    private readonly registry: RegistryLike<ChannelLike>,
    private readonly serverId: string,
    private readonly channel: number,
    private readonly mode: FollowMode,
    private readonly onLamp: (on: boolean, why: string) => void,
  ) {
    registry.on('set', this.onSet);
    registry.on('delete', this.onDelete);
    const ctl = registry.get(serverId, channel);
    if (ctl) this.attach(ctl);
    else this.set(false, `no recorder for ${serverId} channel ${channel} yet`);
  }

  get on(): boolean {
    return this.lamp === true;
  }
  get attached(): boolean {
    return this.ch !== null;
  }

  /** Send the current lamp state again (after the device reconnects). */
  refresh(): void {
    const l = this.lamp;
    if (l !== null) this.onLamp(l, 'reasserted');
  }

  stop(): void {
    this.registry.removeListener('set', this.onSet);
    this.registry.removeListener('delete', this.onDelete);
    this.detach();
  }

  private attach(ctl: ChannelLike): void {
    if (this.ch === ctl) return;
    this.detach();
    this.ch = ctl;
    ctl.on('event', this.onEvent);
    ctl.on('commanded', this.onCommanded);
    this.update('recorder found');
  }

  private detach(): void {
    if (this.ch) {
      this.ch.removeListener('event', this.onEvent);
      this.ch.removeListener('commanded', this.onCommanded);
    }
    this.ch = null;
  }

  private update(why: string): void {
    let state: ChannelStatus['state'] | null = null;
    try {
      state = this.ch ? this.ch.status().state : null;
    } catch {
      state = null;
    }
    this.set(lampFor(this.mode, state), `${why}: channel ${state ?? 'absent'}`);
  }

  private set(on: boolean, why: string): void {
    if (this.lamp === on) return;
    this.lamp = on;
    this.onLamp(on, why);
  }
}
