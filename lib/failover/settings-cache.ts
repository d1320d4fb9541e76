/**
 * The settings cache as a failover server keeps it: the recorder settings and
 * rec-list of every channel of every watched server, as they last published
 * them (retained) on the group's broker. Kept in memory and in one JSON file per
 * server, written atomically, so a takeover still finds them when the broker
 * restarted without its retained messages or this Node-RED restarted.
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import path from 'node:path';
import { errorText } from '../model/errors';
import type { ChannelSnapshot } from '../recorder/settings-snapshot';
import { SERVER_ID_PATTERN } from '../link/server-identity';
import { writeFileAtomic } from '../store/clip-files';

/** A channel as the cache keeps it (lib/recorder/settings-snapshot owns the shape). */
export type CachedChannel = ChannelSnapshot;

export class SettingsCache {
  private byServer = new Map<string, Map<number, CachedChannel>>();
  private dirty = new Set<string>();
  private flushTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dir: string,
    private readonly log: { warn(m: string): void } = { warn: () => undefined },
    private readonly flushDelayMs = 100,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      const server = f.slice(0, -5);
      if (!SERVER_ID_PATTERN.test(server)) continue;
      try {
        const list = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as CachedChannel[];
        this.byServer.set(server, new Map(list.filter((c) => c && c.server === server).map((c) => [c.channel, c])));
      } catch (err) {
        this.log.warn(`settings cache: cannot read ${f} (${errorText(err)}); waiting for ${server} to publish again`);
      }
    }
  }

  /** A channel's settings as published; older than what is held is ignored. */
  put(c: CachedChannel): boolean {
    if (!SERVER_ID_PATTERN.test(c.server)) return false;
    let m = this.byServer.get(c.server);
    if (!m) this.byServer.set(c.server, (m = new Map()));
    const old = m.get(c.channel);
    if (old && old.ts > c.ts) return false;
    m.set(c.channel, c);
    this.markDirty(c.server);
    return true;
  }

  /** A channel no longer published (its recorder was removed). */
  remove(server: string, channel: number): void {
    const m = this.byServer.get(server);
    if (m && m.delete(channel)) this.markDirty(server);
  }

  channels(server: string): CachedChannel[] {
    return [...(this.byServer.get(server)?.values() ?? [])].sort((a, b) => a.channel - b.channel);
  }

  servers(): string[] {
    return [...this.byServer.keys()];
  }

  private markDirty(server: string): void {
    this.dirty.add(server);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.flush();
      }, this.flushDelayMs);
    }
  }

  /** Write what changed now (also called on close). */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const server of this.dirty) {
      try {
        writeFileAtomic(path.join(this.dir, `${server}.json`), JSON.stringify(this.channels(server)));
      } catch (err) {
        this.log.warn(`settings cache: cannot write the settings of ${server}: ${errorText(err)}`);
      }
    }
    this.dirty.clear();
  }

  close(): void {
    this.flush();
  }
}
