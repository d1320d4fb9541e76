/**
 * Material copy: after a failback, the restored server fetches what the
 * failover server recorded in its place during the failover period, channel by
 * channel, media segments then events, each in time order:
 *
 * - each segment is fetched through the peer storage API (resumed with a Range
 *   request after a break), its sha256 verified, written atomically at the same
 *   place under this server's storage root, and registered in this server's
 *   catalogue at once (the clip plays while the copy goes on);
 * - a segment that is already here with the same sha256 is skipped;
 * - progress (last clip and segment, last event) is committed after every item,
 *   so a kill -9, a reconnect or a restart resumes where it stopped;
 * - the peer going away waits and retries (growing pauses) until it returns;
 *   a peer that lies (a hash that does not match, a path outside the storage)
 *   fails the task with the reason, and the queue goes on with the next task.
 *
 * No Node-RED import.
 */
import { EventEmitter } from 'node:events';
import { Catalogue, CatalogueEvent } from '../store/catalogue';
import { Clip, Segment } from '../model/clip';
import { ChannelProgress, CopyQueue, CopyTask, TaskRequest } from '../store/copy-queue';
import { errorText } from '../model/errors';
import { CopyRefused, copySegments, retryable, SegmentSource, sumCounts } from './segment-copy';
import { channelDir, sanitizeName, writeSidecar } from '../store/clip-files';
import { Backoff } from '../model/backoff';

export { CopyRefused };

/** What material copy needs of the peer (lib/peer/client.ts PeerClient has it). */
export interface CopySource extends SegmentSource {
  clips(q: { server?: string; channel: number; from?: number; to?: number }): Promise<Clip[]>;
  events(q: { server?: string; channel?: number; from?: number; to?: number }): Promise<CatalogueEvent[]>;
}

export interface CopyProgress {
  taskId: number;
  entryId: number;
  failedServer: string;
  failoverServer: string;
  channel: number | null;
  phase: 'listing' | 'media' | 'events' | 'waiting' | 'done' | 'failed';
  bytesDone: number;
  bytesTotal: number | null;
  segmentsCopied: number;
  segmentsSkipped: number;
  eventsCopied: number;
  /** Bytes per second over the task so far. */
  rate: number;
  /** Seconds left at that rate (null until known). */
  etaS: number | null;
  detail?: string;
}

export interface MaterialCopyOptions {
  /** This (restored) server. */
  serverId: string;
  storageRoot: string;
  /** Peer for a failover server (throws when it is not known or not reachable). */
  source(failoverServer: string): CopySource;
  limiter?: { take(bytes: number): Promise<void> };
  /** Segments fetched at once (default FETCH_AHEAD, 1 = one after another). */
  fetchAhead?: number;
  /** Pauses while the peer is away: growing from min to max. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Give up on a task whose peer has been away this long (0 = wait for ever). */
  giveUpAfterMs?: number;
  clock?: () => number;
  log?: { info(m: string): void; warn(m: string): void };
}

function segEnd(seg: Segment, fps = 25): number | null {
  if (seg.wallStart === null) return null;
  if (seg.startSec !== null && seg.endSec !== null) return Math.round(seg.wallStart + (seg.endSec - seg.startSec) * 1000);
  return seg.frames !== null ? Math.round(seg.wallStart + (seg.frames / fps) * 1000) : seg.wallStart;
}

/** How far past the failover period's end the takeover's own events are still taken. */
export const EVENT_GRACE_MS = 60000;
/** Media progress is told at most this often while segments come (and at the end of each clip). */
export const PROGRESS_EVERY_MS = 250;

export class MaterialCopier extends EventEmitter {
  private readonly clock: () => number;
  private running: Promise<void> | null = null;
  private kickAgain = false;
  private stopped = false;
  /** When media progress was last told (clock ms). */
  private progressAt = Number.NEGATIVE_INFINITY;
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;

  constructor(
    readonly queue: CopyQueue,
    private readonly catalogue: Catalogue,
    private readonly options: MaterialCopyOptions,
  ) {
    super();
    this.clock = options.clock ?? Date.now;
  }

  /** Queue a task (the same request again is the same task) and make sure the queue runs. */
  request(r: TaskRequest): CopyTask {
    const { task, created } = this.queue.enqueue(r);
    if (created)
      this.options.log?.info(
        `material copy task ${task.id}: ${r.failedServer} channels ${r.channels.join(', ')} from ${r.failoverServer}, ${new Date(r.from).toISOString()} to ${new Date(r.to).toISOString()}`,
      );
    this.kick();
    return task;
  }

  /** Start a task again by hand (a failed one resumes from its progress). */
  retry(taskId: number): CopyTask {
    const t = this.queue.retry(taskId);
    this.kick();
    return t;
  }

  /** Process the queue until it is empty (and again whenever a task arrives). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      // the loop may already have found the queue empty and be ending: look again once it has
      this.kickAgain = true;
      this.wake?.();
      return;
    }
    this.kickAgain = false;
    this.running = this.loop().finally(() => {
      this.running = null;
      if (this.kickAgain) this.kick();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.running;
  }

  private async loop(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const t = this.queue.next();
      if (!t) return;
      await this.runTask(t);
    }
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = null;
  }

  private progressOf(
    t: CopyTask,
    channel: number | null,
    phase: CopyProgress['phase'],
    startedAt: number,
    bytesAtStart: number,
    detail?: string,
  ): CopyProgress {
    const cur = this.queue.get(t.id) ?? t;
    const secs = Math.max(0.001, (this.clock() - startedAt) / 1000);
    const rate = (cur.bytesDone - bytesAtStart) / secs;
    const left = cur.bytesTotal === null ? null : Math.max(0, cur.bytesTotal - cur.bytesDone);
    return {
      taskId: t.id,
      entryId: t.entryId,
      failedServer: t.failedServer,
      failoverServer: t.failoverServer,
      channel,
      phase,
      bytesDone: cur.bytesDone,
      bytesTotal: cur.bytesTotal,
      segmentsCopied: cur.segmentsCopied,
      segmentsSkipped: cur.segmentsSkipped,
      eventsCopied: cur.eventsCopied,
      rate: Math.round(rate),
      etaS: left === null ? null : rate > 0 ? Math.round(left / rate) : null,
      ...(detail ? { detail } : {}),
    };
  }

  private async runTask(t0: CopyTask): Promise<void> {
    let t = this.queue.begin(t0.id);
    const startedAt = this.clock();
    const bytesAtStart = t.bytesDone;
    let awaySince: number | null = null;
    const backoff = new Backoff(this.options.retryMinMs ?? 1000, this.options.retryMaxMs ?? 30000);
    this.emit('started', t);
    for (;;) {
      if (this.stopped) return; // stays running: resumes at the next start
      this.abort = new AbortController();
      try {
        const src = this.options.source(t.failoverServer);
        await this.copyAll(t, src, startedAt, bytesAtStart);
        t = this.queue.finish(t.id);
        this.emit('progress', this.progressOf(t, null, 'done', startedAt, bytesAtStart));
        this.emit('done', t);
        return;
      } catch (err) {
        if (this.stopped) return;
        if (!(err instanceof CopyRefused) && retryable(err)) {
          awaySince ??= this.clock();
          const giveUp = this.options.giveUpAfterMs ?? 0;
          if (giveUp > 0 && this.clock() - awaySince > giveUp) {
            t = this.queue.fail(t.id, `the peer ${t.failoverServer} has been away for ${Math.round((this.clock() - awaySince) / 1000)} s: ${errorText(err)}`);
            this.emit('failed', t);
            return;
          }
          this.emit('progress', this.progressOf(t, null, 'waiting', startedAt, bytesAtStart, `waiting for ${t.failoverServer}: ${errorText(err)}`));
          const pause = backoff.next();
          this.options.log?.warn(`material copy task ${t.id}: ${t.failoverServer} is away (${errorText(err)}); trying again in ${Math.round(pause / 1000)} s`);
          await this.sleep(pause);
          continue;
        }
        t = this.queue.fail(t.id, errorText(err));
        this.options.log?.warn(`material copy task ${t.id} failed: ${t.lastError}`);
        this.emit('progress', this.progressOf(t, null, 'failed', startedAt, bytesAtStart, t.lastError ?? undefined));
        this.emit('failed', t);
        return;
      } finally {
        this.abort = null;
      }
    }
  }

  private async copyAll(t: CopyTask, src: CopySource, startedAt: number, bytesAtStart: number): Promise<void> {
    // list every channel first: the total makes an ETA
    const listed = new Map<number, Clip[]>();
    let total = 0;
    for (const ch of t.channels) {
      const clips = (await src.clips({ server: t.failedServer, channel: ch, from: t.from, to: t.to })).filter(
        (c) => c.serverId === t.failedServer && c.channel === ch,
      );
      clips.sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0) || a.id.localeCompare(b.id));
      listed.set(ch, clips);
      for (const c of clips) for (const s of c.segments) total += s.bytes;
    }
    this.queue.setTotal(t.id, total);
    this.emit('progress', this.progressOf(t, null, 'listing', startedAt, bytesAtStart));
    for (const ch of t.channels) {
      const media = this.queue.channelProgress(t.id, ch, 'media');
      if (!media.done) await this.copyMedia(t, src, ch, listed.get(ch)!, media, startedAt, bytesAtStart);
      const events = this.queue.channelProgress(t.id, ch, 'events');
      if (!events.done) await this.copyEvents(t, src, ch, events);
    }
  }

  private async copyMedia(
    t: CopyTask,
    src: CopySource,
    channel: number,
    clips: Clip[],
    prog: ChannelProgress,
    startedAt: number,
    bytesAtStart: number,
  ): Promise<void> {
    // resume: skip what is before the last copied (clip, segment) in this order
    let skipping = prog.lastClip !== null;
    for (const remote of clips) {
      if (skipping && remote.id !== prog.lastClip) continue;
      const segments = [...remote.segments].sort((a, b) => a.index - b.index);
      const clip = this.registerClip(t, remote);
      const todo = segments.filter((seg) => !(skipping && seg.index <= (prog.lastIndex ?? -1)));
      skipping = false;
      await copySegments(src, this.options.storageRoot, { id: remote.id, name: remote.name, dir: clip.dir }, todo, {
        depth: this.options.fetchAhead,
        limiter: this.options.limiter,
        signal: this.abort?.signal,
        stopped: () => this.stopped,
        commit: (done) => {
          // registered at once: it plays during the copy; each segment says where it was recorded
          this.catalogue.transaction(() => {
            for (const { seg } of done) this.catalogue.putSegment(clip.id, { ...seg, recordedBy: t.failoverServer } as Segment & { recordedBy?: string });
            this.catalogue.putClip({ ...clip, updatedAt: this.clock() });
          });
          const last = done[done.length - 1].seg;
          this.queue.advance(
            t.id,
            { channel, kind: 'media', lastTime: segEnd(last), lastClip: remote.id, lastIndex: last.index, done: false },
            sumCounts(done),
          );
          // at most every PROGRESS_EVERY_MS (a fast copy commits a few hundred times a second; each progress is a
          // queue read here and a message through the flow), and at the end of each clip below
          const now = this.clock();
          if (now - this.progressAt < PROGRESS_EVERY_MS) return;
          this.progressAt = now;
          this.emit('progress', this.progressOf(t, channel, 'media', startedAt, bytesAtStart));
        },
      });
      this.progressAt = this.clock();
      this.emit('progress', this.progressOf(t, channel, 'media', startedAt, bytesAtStart));
      skipping = false;
      // the clip is complete here: its sidecar, with the copy noted
      const done: Clip = {
        ...clip,
        attributes: { ...clip.attributes, copyState: 'copied' },
        segments: segments.map((s) => ({ ...s })),
        updatedAt: this.clock(),
      };
      this.catalogue.putClip(done);
      try {
        writeSidecar(this.options.storageRoot, this.catalogue.clip(done.id) ?? done);
      } catch (err) {
        this.options.log?.warn(`material copy: sidecar of ${done.name} not written: ${errorText(err)}`);
      }
    }
    const last = this.queue.channelProgress(t.id, channel, 'media');
    this.queue.advance(t.id, { ...last, channel, kind: 'media', done: true });
  }

  /** The clip in this server's catalogue, as the failover server recorded it, marked as being copied. */
  private registerClip(t: CopyTask, remote: Clip): Clip {
    const existing = this.catalogue.clip(remote.id);
    // a clip id this server holds for a clip of its own (or of another copy) is not overwritten: only a clip this
    // copy registered earlier (same failover server) is taken up again
    if (existing && existing.attributes?.copiedFrom !== t.failoverServer) {
      throw new CopyRefused(
        `the peer listed clip ${remote.id}, an id this server already holds for its clip ${existing.name} (${existing.dir}): not copied over it`,
      );
    }
    // the clip's folder is this server's, of the clip's own channel: a listing cannot send it elsewhere in the storage
    const own = `${sanitizeName(this.options.serverId)}/${channelDir(remote.channel)}/`;
    if (typeof remote.dir !== 'string' || !remote.dir.startsWith(own) || remote.dir.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new CopyRefused(`the peer listed clip ${remote.id} in the folder "${String(remote.dir).slice(0, 120)}", not under ${own}`);
    }
    const base: Clip = existing ?? { ...remote, segments: [] };
    const clip: Clip = {
      ...remote,
      segments: base.segments,
      attributes: {
        ...remote.attributes,
        copiedFrom: t.failoverServer,
        copiedEntry: t.entryId,
        copyState: existing?.attributes?.copyState === 'copied' ? 'copied' : 'copying',
      },
      updatedAt: this.clock(),
    };
    if (clip.serverId !== this.options.serverId)
      throw new CopyRefused(`the peer listed clip ${remote.id} of ${remote.serverId}, not of ${this.options.serverId}`);
    this.catalogue.putClip(clip);
    return clip;
  }

  private async copyEvents(t: CopyTask, src: CopySource, channel: number, prog: ChannelProgress): Promise<void> {
    // the takeover's last events (its lines stopping at the failback) are written a moment after the
    // period's end is taken: the window reaches EVENT_GRACE_MS beyond it (the failover server writes
    // nothing more for the failed server once it has failed back)
    const events = (await src.events({ server: t.failedServer, channel, from: t.from, to: t.to + EVENT_GRACE_MS })).filter((e) => e.channel === channel);
    events.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    let n = 0;
    for (const ev of events) {
      const seq = ev.seq ?? 0;
      if (prog.lastIndex !== null && seq <= prog.lastIndex) continue;
      // once only, also after a kill between the two commits: look for it first
      const dup = this.catalogue
        .events(this.options.serverId, channel, ev.ts, ev.ts)
        .some(
          (x) =>
            (x.data as { copiedFrom?: string; remoteSeq?: number } | null)?.copiedFrom === t.failoverServer &&
            (x.data as { remoteSeq?: number }).remoteSeq === seq,
        );
      if (!dup) {
        this.catalogue.addEvent({
          ts: ev.ts,
          serverId: this.options.serverId,
          channel,
          kind: ev.kind,
          lineId: ev.lineId,
          clipId: ev.clipId,
          data: { copiedFrom: t.failoverServer, remoteSeq: seq, data: ev.data ?? null },
        });
        n++;
      }
      this.queue.advance(t.id, { channel, kind: 'events', lastTime: ev.ts, lastClip: null, lastIndex: seq, done: false }, { events: dup ? 0 : 1 });
    }
    const last = this.queue.channelProgress(t.id, channel, 'events');
    this.queue.advance(t.id, { ...last, channel, kind: 'events', done: true });
    void n;
  }
}
