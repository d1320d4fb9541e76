/**
 * A recording outlives a deploy: the running channel belongs to the runtime,
 * not to one instance of the recorder node. On a deploy the closing node parks
 * its channel here, still recording; the node that takes its place takes it
 * back when its settings are the same (same fingerprint), so no frame is lost
 * and no second `recording` is reported. A channel nobody takes within the
 * grace, or whose settings changed, is handed to `expire` (which suspends it as
 * a restart always did).
 */
import type { ChannelSettings } from './types';

interface Parked<T> {
  item: T;
  fingerprint: string;
  timer: NodeJS.Timeout;
}

export class ChannelParking<T> {
  private readonly byKey = new Map<string, Parked<T>>();

  constructor(private readonly expire: (item: T, key: string) => void) {}

  /** Keep this running item under key for graceMs (an item already parked there expires first). */
  park(key: string, fingerprint: string, item: T, graceMs: number): void {
    const before = this.byKey.get(key);
    if (before) {
      clearTimeout(before.timer);
      this.byKey.delete(key);
      this.expire(before.item, key);
    }
    const timer = setTimeout(() => {
      if (this.byKey.get(key)?.item !== item) return;
      this.byKey.delete(key);
      this.expire(item, key);
    }, graceMs);
    timer.unref();
    this.byKey.set(key, { item, fingerprint, timer });
  }

  /** The item parked under key, taken out (its grace ends), with the fingerprint it was parked with; null when there is none. */
  take(key: string): { item: T; fingerprint: string } | null {
    const p = this.byKey.get(key);
    if (!p) return null;
    clearTimeout(p.timer);
    this.byKey.delete(key);
    return { item: p.item, fingerprint: p.fingerprint };
  }

  /** Every item still parked, taken out (the process is ending). */
  takeAll(): T[] {
    const all = [...this.byKey.values()];
    this.byKey.clear();
    for (const p of all) clearTimeout(p.timer);
    return all.map((p) => p.item);
  }

  get size(): number {
    return this.byKey.size;
  }
}

/**
 * Settings a running channel takes over without a new ffmpeg: they apply to the
 * next clip (its channel name), the next run (its timeouts) and the next
 * Backup=On line (its backup target).
 */
export const SOFT_SETTINGS = ['channelName', 'backup', 'startTimeoutMs', 'stallTimeoutMs'] as const;
export type SoftSettings = Partial<Pick<ChannelSettings, (typeof SOFT_SETTINGS)[number]>>;

/** The soft settings of these settings, to hand to the running channel. */
export function softSettings(settings: ChannelSettings): SoftSettings {
  const out: Record<string, unknown> = {};
  for (const k of SOFT_SETTINGS) if (k in settings) out[k] = settings[k];
  return out as SoftSettings;
}

/**
 * What must be equal for a running channel to go on under a new node: every
 * setting that is a value and needs a new ffmpeg when it changes (functions,
 * the source provider and the orphan test, are given anew; the soft settings
 * are applied in place), what the source is, and where the server keeps things.
 */
export function channelFingerprint(settings: ChannelSettings, source: string, where: { group: string; storageRoot: string; catalogueFile: string }): string {
  const values: Record<string, unknown> = {};
  const soft: readonly string[] = SOFT_SETTINGS;
  for (const [k, v] of Object.entries(settings).sort(([a], [b]) => a.localeCompare(b))) {
    if (typeof v !== 'function' && k !== 'source' && !soft.includes(k)) values[k] = v;
  }
  return JSON.stringify({ settings: values, source, where });
}
