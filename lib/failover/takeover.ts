/**
 * Takeover: a failover server recording in place of a failed server, from that
 * server's recorder settings and rec-lists as the settings cache holds them.
 *
 * Each cached channel becomes a recorder channel on this server with the failed
 * server's id, so its clips are stored under `<storage>/<failed server>/chNN/...`
 * and carry the attributes failoverOf / failoverChannel / failoverServer /
 * failoverEpoch: a person (and material copy) sees at once whose recording it is.
 * Lines that were recording start at once; timed lines keep their start time;
 * ready lines are there for the operator. Backup=On lines are recorded as
 * ordinary lines (the backup keeps its Aux twin by itself).
 *
 * No Node-RED import: the failover-watch node owns one per failed server.
 */
import { Catalogue } from '../store/catalogue';
import { CommandError, errorText } from '../model/errors';
import { FfmpegInfo } from '../media/ffmpeg';
import { RecorderChannel } from '../recorder/channel';
import { ChannelEvent, ChannelSettings, PresentedLine, SourceProvider } from '../recorder/types';
import { LineInput } from '../model/commands';
import { SOURCE_URL } from '../recorder/config';
import { ACTIVE_STATUSES, AttributeValue, Line, plannedStop } from '../model/reclist';
import { isFrameRateId } from '../model/timecode';
import type { ChannelSnapshot } from '../recorder/settings-snapshot';
import { testPatternSource, urlSource } from '../recorder/sources';
import { withLogin } from '../model/url';
import type { FailoverEntry } from '../store/failover-log';
import { LINK_VERSION, TakeoverRecord } from '../link/schemas';

export interface TakeoverOptions {
  failedServer: string;
  failoverServer: string;
  group: string;
  epoch: number;
  entryId: number;
  storageRoot: string;
  /** Log in for sources whose URL needed one on the failed server (the cache never carries passwords). */
  sourceLogin?: { username: string; password: string } | null;
  drill?: boolean;
}

export interface TakeoverDeps {
  catalogue: Catalogue;
  ffmpeg: FfmpegInfo;
  log: { info(m: string): void; warn(m: string): void; error(m: string): void };
  clock?: () => number;
  /** Channel settings beyond those in the cache (tests shorten timeouts). */
  tune?: Partial<ChannelSettings>;
}

export interface TakenChannel {
  channel: number;
  ctl: RecorderChannel;
  /** Line ids started by the takeover. */
  started: string[];
  error: string | null;
}

/** The source a taken-over channel records from; throws an Error saying what the cache lacks. */
export function sourceFromCache(c: ChannelSnapshot, login: TakeoverOptions['sourceLogin'], stallTimeoutMs: number): SourceProvider {
  const r = c.recorder;
  if (r.sourceType === 'testpattern') return testPatternSource();
  const url = typeof r.sourceUrl === 'string' ? r.sourceUrl : '';
  if (!SOURCE_URL.test(url)) {
    throw new Error(
      `channel ${c.channel} of ${c.server}: the settings cache has no stream address for its ${r.sourceType} source ` +
        '(the camera was not reached before the server failed); this channel cannot be recorded here',
    );
  }
  const full = r.sourceLogin ? withLogin(url, login) : url;
  return urlSource(full, stallTimeoutMs, String(r.source ?? url));
}

function num(v: unknown, def: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : def;
}

/** Channel settings of a taken-over channel, from the cache; throws an Error naming what is wrong. */
export function channelSettingsFromCache(c: ChannelSnapshot, o: TakeoverOptions, tune: Partial<ChannelSettings> = {}): ChannelSettings {
  const r = c.recorder;
  if (!isFrameRateId(r.frameRate))
    throw new Error(`channel ${c.channel} of ${c.server}: the cached frame rate "${String(r.frameRate)}" is not one this recorder knows`);
  const container = ['ts', 'mkv', 'mp4'].includes(String(r.container)) ? (r.container as ChannelSettings['container']) : 'ts';
  const stall = num(tune.stallTimeoutMs, 6000);
  return {
    serverId: o.failedServer,
    group: o.group,
    channel: c.channel,
    channelName: typeof r.channelName === 'string' ? r.channelName : `Channel ${c.channel}`,
    frameRate: r.frameRate,
    tcMode: r.tcMode === 'tod' ? 'tod' : 'zero',
    storageRoot: o.storageRoot,
    segmentSeconds: Math.min(600, Math.max(1, num(r.segmentSeconds, 6))),
    container,
    videoCodec: r.videoCodec === 'h264' ? 'h264' : 'copy',
    source: sourceFromCache(c, o.sourceLogin, stall),
    backup: null,
    ...tune,
  };
}

const FAILOVER_ATTRS = ['failoverOf', 'failoverChannel', 'failoverServer', 'failoverEpoch'];

function attributesFor(line: Pick<Line, 'attributes'>, c: ChannelSnapshot, o: TakeoverOptions): Record<string, AttributeValue> {
  const own = Object.fromEntries(Object.entries(line.attributes ?? {}).filter(([k]) => !FAILOVER_ATTRS.includes(k)));
  const keep = Object.entries(own).slice(0, 64 - FAILOVER_ATTRS.length);
  return {
    ...Object.fromEntries(keep),
    failoverOf: o.failedServer,
    failoverChannel: c.channel,
    failoverServer: o.failoverServer,
    failoverEpoch: o.epoch,
  };
}

type Plan = { input: LineInput; startNow: boolean };

/**
 * What to do with each cached line: lines that were recording (or interrupted,
 * or timed and already due) start now; timed lines still to come keep their
 * start; ready lines are added; finished lines stay with the failed server.
 */
export function planLines(c: ChannelSnapshot, o: TakeoverOptions, now: number): Plan[] {
  const out: Plan[] = [];
  const rate = c.recorder.frameRate;
  for (const l of c.lines as PresentedLine[]) {
    if (!l || typeof l !== 'object' || typeof l.id !== 'string' || typeof l.title !== 'string') continue;
    const base: LineInput = {
      id: l.id,
      group: typeof l.group === 'string' ? l.group.slice(0, 64) : '',
      title: l.title.slice(0, 200) || 'untitled',
      backup: 'off',
      attributes: attributesFor(l, c, o),
    };
    if (typeof l.source === 'string' && l.source !== 'LIVE' && !l.source.includes('***')) base.source = l.source;
    const wasActive = (ACTIVE_STATUSES as readonly string[]).includes(l.status);
    let stopAt: number | null = null;
    try {
      stopAt = isFrameRateId(rate) ? plannedStop(l, rate) : l.stopTime;
    } catch {
      stopAt = l.stopTime;
    }
    if (stopAt !== null && stopAt <= now) continue; // its planned end has passed
    if (l.status === 'recording' || l.status === 'interrupted' || (l.status === 'armed' && (l.startTime ?? 0) <= now + 1000)) {
      out.push({ input: { ...base, start: 'manual', ...(stopAt !== null ? { stopTime: stopAt } : {}) }, startNow: true });
    } else if (l.status === 'armed' && l.start === 'time' && l.startTime !== null) {
      out.push({
        input: {
          ...base,
          start: 'time',
          startTime: l.startTime,
          ...(l.stopTime !== null ? { stopTime: l.stopTime } : l.duration ? { duration: l.duration } : {}),
        },
        startNow: false,
      });
    } else if (l.status === 'ready') {
      out.push({ input: { ...base, start: 'manual', ...(l.duration ? { duration: l.duration } : {}) }, startNow: false });
    } else if (wasActive) {
      out.push({ input: { ...base, start: 'manual' }, startNow: true });
    }
  }
  return out;
}

function ctl(c: TakenChannel): RecorderChannel {
  return c.ctl;
}

/** A line's planned stop (stop time, or start + duration), null when open-ended. */
function plannedStopOf(l: Line, channel: RecorderChannel): number | null {
  try {
    return plannedStop(l, channel.settings.frameRate);
  } catch {
    return l.stopTime;
  }
}

/** The takeover of a failover log entry, as this failover server runs it. */
export function takeoverOptionsFor(
  entry: FailoverEntry,
  self: { self: string; group: string; storageRoot: string; sourceLogin: TakeoverOptions['sourceLogin'] },
): TakeoverOptions {
  return {
    failedServer: entry.failedServer,
    failoverServer: self.self,
    group: self.group,
    epoch: entry.epoch,
    entryId: entry.id,
    storageRoot: self.storageRoot,
    sourceLogin: self.sourceLogin,
    drill: entry.drill,
  };
}

/** The retained takeover record of an entry: who records in place of whom, at which epoch (active false: released). */
export function takeoverRecordOf(entry: FailoverEntry, failoverServer: string, active: boolean, ts: number): TakeoverRecord {
  return {
    v: LINK_VERSION,
    failedServer: entry.failedServer,
    failoverServer,
    epoch: entry.epoch,
    active,
    channels: entry.channels,
    entryId: entry.id,
    since: entry.startedAt,
    drill: entry.drill,
    ts,
  };
}

/** The recorders of one failed server, running on this failover server. */
export class Takeover {
  readonly channels = new Map<number, TakenChannel>();
  private readonly clock: () => number;
  private stopped = false;
  constructor(
    readonly options: TakeoverOptions,
    private readonly deps: TakeoverDeps,
  ) {
    this.clock = deps.clock ?? Date.now;
  }

  /**
   * Open a recorder channel for each cached channel and start what was
   * recording. A channel that cannot be taken over (bad cache, source missing)
   * is reported in its `error` and does not stop the others.
   */
  async start(cached: ChannelSnapshot[], onEvent?: (ev: ChannelEvent) => void): Promise<TakenChannel[]> {
    const now = this.clock();
    const work = cached.map(async (c) => {
      const taken: TakenChannel = { channel: c.channel, ctl: null as unknown as RecorderChannel, started: [], error: null };
      try {
        const settings = channelSettingsFromCache(c, this.options, this.deps.tune);
        const ctl = new RecorderChannel(settings, { catalogue: this.deps.catalogue, ffmpeg: this.deps.ffmpeg, log: this.deps.log, clock: this.deps.clock });
        taken.ctl = ctl;
        if (onEvent) ctl.on('event', onEvent);
        this.channels.set(c.channel, taken);
        await ctl.open();
        await this.apply(ctl, planLines(c, this.options, now), taken);
      } catch (err) {
        taken.error = errorText(err);
        this.deps.log.warn(`takeover of ${this.options.failedServer} channel ${c.channel}: ${taken.error}`);
        if (!this.channels.has(c.channel)) this.channels.set(c.channel, taken);
      }
      return taken;
    });
    return Promise.all(work);
  }

  /**
   * Resume a takeover after this Node-RED restarted: the channels reopen from
   * the catalogue (a recording that was running resumes in its clip).
   */
  async resume(cached: ChannelSnapshot[], onEvent?: (ev: ChannelEvent) => void): Promise<TakenChannel[]> {
    const work = cached.map(async (c) => {
      const taken: TakenChannel = { channel: c.channel, ctl: null as unknown as RecorderChannel, started: [], error: null };
      try {
        const ctl = new RecorderChannel(channelSettingsFromCache(c, this.options, this.deps.tune), {
          catalogue: this.deps.catalogue,
          ffmpeg: this.deps.ffmpeg,
          log: this.deps.log,
          clock: this.deps.clock,
        });
        taken.ctl = ctl;
        if (onEvent) ctl.on('event', onEvent);
        this.channels.set(c.channel, taken);
        await ctl.open();
        // lines that a crash of this server interrupted record again
        for (const l of ctl.lines()) {
          if (l.status === 'interrupted' && l.attributes?.failoverEpoch === this.options.epoch) {
            await ctl.stopLine({ id: l.id }).catch(() => undefined);
            const again = ctl.lines().find((x) => x.id === l.id);
            if (again) await this.restart(ctl, again, taken);
          } else if (l.status === 'recording' || l.status === 'armed') {
            taken.started.push(l.id);
          }
        }
      } catch (err) {
        taken.error = errorText(err);
        this.deps.log.warn(`takeover of ${this.options.failedServer} channel ${c.channel} (resumed): ${taken.error}`);
        if (!this.channels.has(c.channel)) this.channels.set(c.channel, taken);
      }
      return taken;
    });
    return Promise.all(work);
  }

  private async restart(ctl: RecorderChannel, l: PresentedLine, taken: TakenChannel): Promise<void> {
    const id = `${l.id}`;
    await ctl.removeLine({ id });
    await this.apply(ctl, [{ input: { id, group: l.group, title: l.title, start: 'manual', backup: 'off', attributes: l.attributes }, startNow: true }], taken);
  }

  private async apply(ctl: RecorderChannel, plans: Plan[], taken: TakenChannel): Promise<void> {
    const existing = new Map(ctl.lines().map((l) => [l.id, l]));
    // first those that record: they matter most
    const ordered = [...plans.filter((p) => p.startNow), ...plans.filter((p) => !p.startNow)];
    for (const p of ordered) {
      const id = String(p.input.id);
      const old = existing.get(id);
      try {
        if (old) {
          if ((ACTIVE_STATUSES as readonly string[]).includes(old.status)) {
            if (p.startNow) taken.started.push(id);
            continue; // already recording here (an earlier takeover that resumed)
          }
          await ctl.removeLine({ id });
        }
        await ctl.addLine(p.input);
        if (p.startNow) {
          await ctl.startLine({ id });
          taken.started.push(id);
        }
      } catch (err) {
        const msg = err instanceof CommandError ? err.message : errorText(err);
        this.deps.log.warn(`takeover of ${this.options.failedServer} channel ${ctl.settings.channel}, line "${String(p.input.title)}": ${msg}`);
        if (!taken.error) taken.error = msg;
      }
    }
  }

  /** Whether the takeover still records for the failed server: a channel open and not closed. */
  acting(): boolean {
    if (this.stopped) return false;
    return [...this.channels.values()].some((c) => c.ctl && c.ctl.status().state !== 'closed');
  }

  /** What each channel records now (the lines the restored server takes back). */
  recording(): { channel: number; recording: { id: string; title: string; group: string; n: number; stopTime: number | null }[] }[] {
    return [...this.channels.values()].map((c) => ({
      channel: c.channel,
      recording: c.ctl
        ? c.ctl
            .lines()
            .filter((l) => (ACTIVE_STATUSES as readonly string[]).includes(l.status))
            .map((l) => ({ id: l.id, title: l.title.slice(0, 1000), group: l.group.slice(0, 1000), n: l.n, stopTime: plannedStopOf(l, ctl(c)) }))
        : [],
    }));
  }

  /** Stop what the takeover records and close its channels (the failover server is a failover server again). */
  async stop(): Promise<void> {
    this.stopped = true;
    const errors: string[] = [];
    await Promise.all(
      [...this.channels.values()].map(async (c) => {
        if (!c.ctl) return;
        try {
          for (const l of c.ctl.lines()) {
            if (l.status === 'recording' || l.status === 'interrupted' || l.status === 'armed') {
              await c.ctl.stopLine({ id: l.id }).catch((err) => errors.push(`channel ${c.channel}: ${errorText(err)}`));
            }
          }
          await c.ctl.close(true);
        } catch (err) {
          errors.push(`channel ${c.channel}: ${errorText(err)}`);
        }
      }),
    );
    if (errors.length) throw new Error(`the takeover recorders did not all stop: ${errors.join('; ')}`);
  }

  /** Close without stopping (this Node-RED stops or redeploys): recordings are suspended and resume on resume(). */
  async suspend(): Promise<void> {
    await Promise.all([...this.channels.values()].map((c) => (c.ctl ? c.ctl.close(false).catch(() => undefined) : undefined)));
  }
}
