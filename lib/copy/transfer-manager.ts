/**
 * The transfer manager: in normal running, the backup server copies the
 * finished clips of its main server into its own storage (pull, through the
 * main's peer storage API), so a clip recorded on the main alone survives the
 * loss of the main's storage.
 *
 * - Finished clips only (closed or interrupted); a clip still recording, or
 *   suspended, waits for the next scan.
 * - Clips of Backup=On lines are not copied: backup-link recorded them here as
 *   Aux twins already. They are noted as skipped, once.
 * - Order: clips with an `onAir` attribute (UTC ms or ISO time when it is needed
 *   on air) first, soonest first; then the newest first.
 * - Each segment is verified by sha256 and written at the same place under this
 *   server's storage root; the clip is registered in this server's catalogue
 *   (serverId the main's, `attributes.transferredFrom`) with its sidecar.
 * - The queue is durable (SQLite, lib/store/transfer-queue.ts); progress is committed after every segment:
 *   a restart copies nothing again, and a segment cut off resumes from its
 *   `.part`. The main going away waits with growing pauses and goes on when it
 *   returns; a hash that does not match fails that clip with the reason, and
 *   the queue goes on.
 * - Retention (retentionDays > 0): a transferred copy whose recording ended
 *   longer ago than that is deleted from this server's storage and catalogue.
 *   Nothing else is ever deleted: not twins, not this server's own recordings,
 *   not material-copied clips, not a clip being transferred or in use, and
 *   nothing on the main. A clip already older than the retention is not copied.
 *
 * No Node-RED import.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Catalogue } from '../store/catalogue';
import { Clip } from '../model/clip';
import { CommandError, errorText } from '../model/errors';
import { CopyRefused, copySegments, retryable, Sleeper, sumCounts } from './segment-copy';
import { channelDir, insideRoot, sanitizeName, SIDECAR_NAME, writeSidecar } from '../store/clip-files';
import { Transfer, TransferQueue } from '../store/transfer-queue';
import { spanText, TransferManagerOptions } from './transfer-settings';
import { Backoff } from '../model/backoff';

// the queue's row type, where lib/failover/overview.ts reads it

export interface TransferProgress {
  clipId: string;
  name: string;
  channel: number;
  phase: 'copying' | 'waiting' | 'done' | 'failed';
  bytesDone: number;
  bytesTotal: number;
  segmentsDone: number;
  segmentsTotal: number;
  /** Clips still to copy after this one. */
  queued: number;
  /** Bytes per second for this clip so far. */
  rate: number;
  etaS: number | null;
  detail?: string;
}

const FINISHED = new Set(['closed', 'interrupted']);
const DAY_MS = 86400000;

export interface ScanResult {
  queued: number;
  skipped: number;
  /** Not finished yet (recording, suspended) or already past the retention. */
  waiting: number;
}

export class TransferManager extends EventEmitter {
  private readonly clock: () => number;
  private readonly sleeper = new Sleeper();
  private running: Promise<void> | null = null;
  private stopped = false;
  private paused = false;
  private abort: AbortController | null = null;
  private current: string | null = null;
  private scanAsked = false;
  /** The state of the link to the main: 'ok', or 'waiting' with the reason. */
  peer: { state: 'ok' | 'waiting'; detail: string | null } = { state: 'ok', detail: null };

  constructor(
    readonly queue: TransferQueue,
    private readonly catalogue: Catalogue,
    readonly options: TransferManagerOptions,
  ) {
    super();
    this.clock = options.clock ?? Date.now;
    if (!options.channels.length) throw new CommandError('The transfer manager needs the channels of the main to copy.');
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** The clip being copied now (null when idle). */
  get currentClip(): string | null {
    return this.current;
  }

  /** Run: scan, copy what is queued, apply the retention, sleep pollMs; again until stopped. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Scan now (and copy what it finds). */
  scanNow(): void {
    this.scanAsked = true;
    this.sleeper.wake();
  }

  /** Stop copying (the clip in flight keeps its part and resumes later). */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.abort?.abort();
    this.sleeper.wake();
    this.emit('paused');
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.sleeper.wake();
    this.emit('resumed');
  }

  retry(clipId: string): Transfer {
    const t = this.queue.retry(clipId);
    this.sleeper.wake();
    return t;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.sleeper.wake();
    await this.running;
  }

  private halted(): boolean {
    return this.stopped || this.paused;
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff(this.options.retryMinMs ?? 1000, this.options.retryMaxMs ?? 30000);
    while (!this.stopped) {
      if (this.paused) {
        await this.sleeper.sleep(3600000);
        continue;
      }
      this.scanAsked = false;
      try {
        await this.scan();
        await this.drain();
        this.applyRetention();
        backoff.reset();
        this.setPeer('ok', null);
      } catch (err) {
        if (this.stopped) return;
        if (this.paused || (err as { code?: string }).code === 'EABORT') continue;
        if (retryable(err)) {
          this.setPeer('waiting', errorText(err));
          const cur = this.current ? this.queue.get(this.current) : undefined;
          this.emit('progress', this.progressOf(cur, 'waiting', 0, `waiting for ${this.options.mainServer}: ${errorText(err)}`));
          const pause = backoff.next();
          this.options.log?.warn(`transfer manager: ${this.options.mainServer} is away (${errorText(err)}); trying again in ${Math.round(pause / 1000)} s`);
          this.current = null;
          await this.sleeper.sleep(pause);
          continue;
        }
        this.options.log?.warn(`transfer manager: ${errorText(err)}`);
        this.emit('error-report', err);
      } finally {
        this.current = null;
      }
      if (!this.stopped && !this.scanAsked) await this.sleeper.sleep(this.options.pollMs ?? 10000);
    }
  }

  private setPeer(state: 'ok' | 'waiting', detail: string | null): void {
    if (this.peer.state === state && this.peer.detail === detail) return;
    this.peer = { state, detail };
    this.emit('peer', this.peer);
  }

  /** List the main's clips of every channel; queue the new finished ones, note new twins as skipped. */
  async scan(): Promise<ScanResult> {
    const src = this.options.source();
    const res: ScanResult = { queued: 0, skipped: 0, waiting: 0 };
    const keepMs = (this.options.retentionDays ?? 0) * DAY_MS;
    for (const ch of this.options.channels) {
      const clips = (await src.clips({ server: this.options.mainServer, channel: ch })).filter(
        (c) => c.serverId === this.options.mainServer && c.channel === ch,
      );
      for (const c of clips) {
        if (this.queue.get(c.id)) continue;
        if (c.backup === 'on') {
          const { transfer, created } = this.queue.add(c, 'skipped', this.twinReason(c));
          if (created) {
            res.skipped++;
            this.emit('skipped', transfer, c);
          }
          continue;
        }
        if (c.backup === 'aux' || !FINISHED.has(c.state)) {
          if (c.backup !== 'aux') res.waiting++;
          continue;
        }
        const end = c.stoppedAt ?? c.startedAt ?? this.clock();
        if (keepMs > 0 && this.clock() - end > keepMs) {
          res.waiting++; // older than the retention: it would be deleted at once
          continue;
        }
        if (this.queue.add(c, 'queued').created) res.queued++;
      }
    }
    if (res.queued) this.options.log?.info(`transfer manager: ${res.queued} clip(s) of ${this.options.mainServer} queued`);
    this.emit('scanned', res);
    return res;
  }

  private twinReason(c: Clip): string {
    const aux = c.twin?.auxServer === this.options.serverId && c.twin.auxClip ? this.catalogue.clip(c.twin.auxClip) : undefined;
    if (aux) return `Backup=On: backup-link recorded its twin here (clip ${aux.id}${c.twin?.state ? `, ${c.twin.state}` : ''})`;
    return 'Backup=On: backup-link records its twin on the backup; not copied again';
  }

  /** Copy queued clips, by priority, until none is left. */
  private async drain(): Promise<void> {
    for (;;) {
      if (this.halted()) return;
      const t = this.queue.next();
      if (!t) return;
      await this.transfer(t);
    }
  }

  private progressOf(t: Transfer | undefined, phase: TransferProgress['phase'], rate: number, detail?: string): TransferProgress {
    const left = t ? Math.max(0, t.bytesTotal - t.bytesDone) : 0;
    return {
      clipId: t?.clipId ?? '',
      name: t?.name ?? '',
      channel: t?.channel ?? 0,
      phase,
      bytesDone: t?.bytesDone ?? 0,
      bytesTotal: t?.bytesTotal ?? 0,
      segmentsDone: t ? t.segmentsCopied + t.segmentsSkipped : 0,
      segmentsTotal: t?.segmentsTotal ?? 0,
      queued: Math.max(0, this.queue.depth() - (t && (t.state === 'running' || t.state === 'queued') ? 1 : 0)),
      rate: Math.round(rate),
      etaS: rate > 0 ? Math.round(left / rate) : null,
      ...(detail ? { detail } : {}),
    };
  }

  /** Copy one clip. Throws a retryable error (the main is away) to the loop; fails the clip for anything else. */
  private async transfer(t0: Transfer): Promise<void> {
    const src = this.options.source();
    this.current = t0.clipId;
    let remote: Clip | undefined;
    try {
      // the clip as the main holds it now (its segments and hashes)
      if (src.clip) remote = await src.clip(t0.clipId);
      else remote = (await src.clips({ server: this.options.mainServer, channel: t0.channel })).find((c) => c.id === t0.clipId);
    } catch (err) {
      if (retryable(err)) throw err;
      if ((err as { code?: string }).code === 'ENOENT') remote = undefined;
      else {
        this.failClip(t0, errorText(err));
        return;
      }
    }
    if (!remote) {
      this.failClip(t0, `the clip is no longer on ${this.options.mainServer}`);
      return;
    }
    let t = this.queue.begin(remote);
    if (t.attempts === 1) this.emit('started', t);
    const began = this.clock();
    const bytesAtStart = t.bytesDone;
    try {
      if (remote.serverId !== this.options.mainServer)
        throw new CopyRefused(`the main listed clip ${remote.id} of ${remote.serverId}, not of ${this.options.mainServer}`);
      const clip = this.register(remote);
      const segments = [...remote.segments].sort((a, b) => a.index - b.index);
      let lastEmit = 0;
      let inFlight = 0;
      this.abort = new AbortController();
      await copySegments(
        src,
        this.options.storageRoot,
        { id: remote.id, name: remote.name, dir: clip.dir },
        segments.filter((seg) => t.lastIndex === null || seg.index > t.lastIndex),
        {
          depth: this.options.fetchAhead,
          limiter: this.options.limiter,
          signal: this.abort.signal,
          stopped: () => this.halted(),
          onBytes: (n) => {
            inFlight += n;
            const now = this.clock();
            if (now - lastEmit < 250) return;
            lastEmit = now;
            const cur = { ...t, bytesDone: t.bytesDone + inFlight };
            this.emit('progress', this.progressOf(cur, 'copying', ((cur.bytesDone - bytesAtStart) * 1000) / Math.max(1, now - began)));
          },
          commit: (done) => {
            // registered at once (it plays while the rest comes), then the progress: a kill between the two re-verifies it
            this.catalogue.transaction(() => {
              for (const { seg } of done) this.catalogue.putSegment(clip.id, { ...seg });
              this.catalogue.putClip({ ...clip, updatedAt: this.clock() });
            });
            const r = sumCounts(done);
            this.queue.advance(t.clipId, done[done.length - 1].seg.index, r);
            inFlight = Math.max(0, inFlight - r.bytes);
            t = this.queue.get(t.clipId)!;
            this.emit('progress', this.progressOf(t, 'copying', ((t.bytesDone - bytesAtStart) * 1000) / Math.max(1, this.clock() - began)));
          },
        },
      );
      this.abort = null;
      const done: Clip = { ...clip, attributes: { ...clip.attributes, transferState: 'transferred' }, updatedAt: this.clock() };
      this.catalogue.putClip(done);
      try {
        writeSidecar(this.options.storageRoot, this.catalogue.clip(done.id) ?? { ...done, segments });
      } catch (err) {
        this.options.log?.warn(`transfer manager: sidecar of ${done.name} not written: ${errorText(err)}`);
      }
      t = this.queue.finish(t.clipId, 'done');
      this.emit('progress', this.progressOf(t, 'done', ((t.bytesDone - bytesAtStart) * 1000) / Math.max(1, this.clock() - began)));
      this.emit('transferred', t);
    } catch (err) {
      this.abort = null;
      if (this.halted()) return; // stays running: resumes from its progress (and the segment from its part)
      if (retryable(err)) throw err;
      this.failClip(t, errorText(err));
    }
  }

  private failClip(t: Transfer, reason: string): void {
    const f = this.queue.finish(t.clipId, 'failed', reason);
    this.options.log?.warn(`transfer manager: clip "${t.name}" (${t.clipId}) failed: ${reason}`);
    this.emit('progress', this.progressOf(f, 'failed', 0, reason));
    this.emit('failed', f);
  }

  /** The clip in this server's catalogue, as the main recorded it, marked as transferred from the main. */
  private register(remote: Clip): Clip {
    const existing = this.catalogue.clip(remote.id);
    if (existing && existing.attributes?.transferredFrom !== this.options.mainServer) {
      throw new CopyRefused(
        `clip ${remote.id} is already in this server's catalogue and was not transferred from ${this.options.mainServer}; it is left as it is`,
      );
    }
    const clip: Clip = {
      ...remote,
      segments: existing?.segments ?? [],
      attributes: {
        ...remote.attributes,
        transferredFrom: this.options.mainServer,
        transferState: existing?.attributes?.transferState === 'transferred' ? 'transferred' : 'copying',
      },
      updatedAt: this.clock(),
    };
    insideRoot(this.options.storageRoot, clip.dir); // throws for a folder outside the storage
    // and it is the main's folder of the clip's own channel: a listing cannot send the copy (and later the
    // retention's deletes) into another server's or another channel's clips
    const own = `${sanitizeName(this.options.mainServer)}/${channelDir(remote.channel)}/`;
    if (!clip.dir.startsWith(own) || clip.dir.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new CopyRefused(`the main listed clip ${remote.id} in the folder "${clip.dir.slice(0, 120)}", not under ${own}`);
    }
    this.catalogue.putClip(clip);
    return clip;
  }

  /**
   * The retention policy: transferred copies whose recording ended more than
   * retentionDays ago are deleted here (files and catalogue); the queue keeps
   * them as 'deleted' so they are not copied again. Returns the deleted clip ids.
   */
  applyRetention(): string[] {
    const days = this.options.retentionDays ?? 0;
    if (!(days > 0)) return [];
    const limit = this.clock() - days * DAY_MS;
    const deleted: string[] = [];
    for (const t of this.queue.inState('done')) {
      const end = t.stoppedAt ?? t.startedAt ?? t.finishedAt ?? this.clock();
      if (end > limit || t.clipId === this.current || this.options.inUse?.(t.clipId)) continue;
      const clip = this.catalogue.clip(t.clipId);
      // only our own copies: a clip that is not marked as transferred from the main is never touched
      if (clip && (clip.attributes?.transferredFrom !== this.options.mainServer || clip.serverId === this.options.serverId || clip.backup !== 'off')) continue;
      try {
        if (clip) this.deleteFiles(clip);
        this.catalogue.deleteClip(t.clipId);
        const gone = this.queue.finish(t.clipId, 'deleted', `retention: recording ended more than ${spanText(days)} ago`);
        deleted.push(t.clipId);
        this.emit('deleted', gone);
      } catch (err) {
        this.options.log?.warn(`transfer manager: copy of "${t.name}" (${t.clipId}) not deleted: ${errorText(err)}`);
      }
    }
    if (deleted.length) this.options.log?.info(`transfer manager: retention deleted ${deleted.length} transferred clip(s) older than ${spanText(days)}`);
    return deleted;
  }

  /** The clip's own files (its segments, their parts, its sidecar) and its folder when that is left empty. */
  private deleteFiles(clip: Clip): void {
    const dir = insideRoot(this.options.storageRoot, clip.dir);
    const names = new Set<string>([SIDECAR_NAME, `${SIDECAR_NAME}.tmp`]);
    for (const s of clip.segments) {
      names.add(s.file);
      names.add(`${s.file}.part`);
    }
    for (const n of names) {
      const f = path.join(dir, n);
      if (path.dirname(f) !== dir) continue;
      fs.rmSync(f, { force: true });
    }
    try {
      fs.rmdirSync(dir); // only when empty: anything else there is not ours
    } catch {
      /* not empty or gone */
    }
  }
}
