/**
 * One verified segment copy through a peer storage API, shared by material copy
 * (lib/copy/material-copy.ts) and the transfer manager (lib/copy/transfer-manager.ts):
 * the segment's file name and place are checked, a segment already here with
 * the same sha256 is kept, else it is fetched (resumed from its `.part` after a
 * break, see lib/peer/client.ts) and verified. What to retry and what refuses
 * at once is decided here too, so both copiers treat a peer alike.
 *
 * No Node-RED import.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Segment } from '../model/clip';
import { errorText } from '../model/errors';
import { partSize } from '../io/part-file';
import { hashFile, insideRoot } from '../store/clip-files';
import type { SegmentFetchOptions } from '../peer/protocol';

/** What a copier needs to fetch one segment (lib/peer/client.ts PeerClient has it). */
export interface SegmentSource {
  fetchSegment(clipId: string, index: number, dest: string, o: SegmentFetchOptions): Promise<{ bytes: number; sha256: string; resumedFrom: number }>;
  /**
   * Optional: the segments about to be fetched, in order ([index, bytes in its part, sha256]), so
   * they may come on one stream (lib/peer/client.ts); endStream() after the last.
   */
  planStream?(clipId: string, plan: [index: number, from: number, sha256: string | null][], o?: { bytesPerSecond?: number }): void;
  endStream?(clipId: string): void;
}

/** An error that fails the copy at once (no retry): the peer lied or the data cannot be stored. */
export class CopyRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CopyRefused';
  }
}

export const SAFE_FILE = /^[A-Za-z0-9 ._()+,-]{1,200}$/;

/** The peer is away or the connection broke: wait and try again (the `.part` keeps what came). */
export function retryable(err: unknown): boolean {
  if (err instanceof CopyRefused) return false;
  const code = (err as { code?: string }).code;
  return code === 'ENET' || code === 'ETRUNC' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EUNAVAILABLE';
}

/** Where a segment of a clip folder goes under the storage root; throws CopyRefused for a name or place the peer must not give. */
export function segmentDest(storageRoot: string, clipDir: string, file: string): string {
  if (!SAFE_FILE.test(file)) throw new CopyRefused(`the peer named a segment "${file}", which is not a plain file name; nothing of it was written`);
  try {
    return insideRoot(storageRoot, clipDir, file);
  } catch {
    throw new CopyRefused(`the peer placed a segment at "${clipDir}/${file}", outside this server's storage; nothing of it was written`);
  }
}

/** A segment on disk and verified, handed to a copier's commit. */
export interface SegmentDone {
  seg: Segment;
  r: SegmentCopyResult;
}

export interface SegmentCopyResult {
  /** 1 when fetched, 0 when found here already. */
  copied: number;
  skipped: number;
  /** Bytes fetched now (not those resumed from a part file). */
  bytes: number;
}

/**
 * Copy one segment of a remote clip into `<storageRoot>/<clipDir>/<file>`.
 * A hash that does not match throws CopyRefused naming the clip and segment.
 */
export async function copySegment(
  src: SegmentSource,
  storageRoot: string,
  clip: { id: string; name: string; dir: string },
  seg: Segment,
  o: {
    limiter?: { take(bytes: number): Promise<void> };
    signal?: AbortSignal;
    onBytes?: (n: number) => void;
    onReceived?: () => void;
    /** The names in the clip's folder (made already), listed before this copy began: a segment not among them is not looked for on disk. */
    present?: ReadonlySet<string>;
  } = {},
): Promise<SegmentCopyResult> {
  const dest = segmentDest(storageRoot, clip.dir, seg.file);
  if (!o.present) fs.mkdirSync(path.dirname(dest), { recursive: true });
  const there = o.present ? o.present.has(seg.file) : fs.existsSync(dest);
  const have = there ? await hashFile(dest).catch(() => null) : null;
  if (have && seg.sha256 && have.sha256 === seg.sha256) return { copied: 0, skipped: 1, bytes: 0 }; // already here, identical
  try {
    const r = await src.fetchSegment(clip.id, seg.index, dest, {
      expectedSha256: seg.sha256,
      expectedBytes: seg.bytes,
      limiter: o.limiter,
      signal: o.signal,
      onBytes: o.onBytes,
      onReceived: o.onReceived,
      where: { dir: clip.dir, file: seg.file },
      partBytes: o.present && !o.present.has(`${seg.file}.part`) ? 0 : undefined,
    });
    return { copied: 1, skipped: 0, bytes: r.bytes - r.resumedFrom };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EHASH' || code === 'EREFUSED' || code === 'ENOENT')
      throw new CopyRefused(`segment ${seg.index} of clip "${clip.name}" (${clip.id}): ${errorText(err)}`);
    throw err;
  }
}

/**
 * Segments under way at once in a copier: one receiving, the others being
 * hashed, fsynced, renamed and committed. Many fsyncs at once cost the disk
 * little more than one (the journal commits them together), and a segment waiting
 * for its fsync no longer holds its bytes (lib/io/part-file.ts hashAndSync), so
 * the depth is set by the disk, not by memory: an ext4 journal commit now and
 * then holds an fsync for 120 ms, and at a segment every 6-8 ms a depth of 8
 * filled up behind it and stopped the transfer (3 times in a 2 GiB copy). With
 * 16, in a traced 2 GiB copy the copier waited on a full pipeline
 * for 0.2 s of 4.1 s and on the segment receiving for the rest.
 */
export const FETCH_AHEAD = 16;
/** Bytes of the segments under way at once (past the first three), so large segments keep the memory bounded. */
export const AHEAD_BYTES = 64 << 20;

/**
 * Copy the segments of one clip, handing each to `commit` in index order once
 * it is on disk and verified (the catalogue registers segments in order, so a
 * resume point is never past a hole); the segments done at once go in one call.
 *
 * Up to `depth` segments are under way at once (and past the first three no
 * more than AHEAD_BYTES of them), but only one is receiving:
 * the next fetch starts when the one before has every byte in its part file,
 * so its fsync, hash, rename and commit overlap the next one's transfer. So a
 * kill -9 leaves at most one segment's bytes in flight (in socket buffers or
 * not yet written): a resume fetches at most one segment twice. (Asking for the
 * next segment when the one receiving had 1 MiB left, to hide the peer's 2-3 ms
 * answer time, was tried: a kill -9 then found two segments pushed into the
 * socket buffers and fetched up to two again, and the copy was no faster.)
 *
 * The next fetch starts from the callback that says the one before has all
 * its bytes, before that one's hash and fsync are handed to their workers.
 *
 * A fetch that fails stops new ones; those under way are let finish (their
 * `.part` or finished file is what a resume starts from, never written by two
 * fetches at once), then the first error in index order is thrown.
 * `stopped()` is asked before each new fetch.
 */
export async function copySegments(
  src: SegmentSource,
  storageRoot: string,
  clip: { id: string; name: string; dir: string },
  segments: Segment[],
  o: {
    depth?: number;
    limiter?: { take(bytes: number): Promise<void> };
    signal?: AbortSignal;
    onBytes?: (n: number) => void;
    stopped?: () => boolean;
    /** Segments done, in index order, in one call when several are ready at once (one database commit for them all). */
    commit: (done: SegmentDone[]) => void | Promise<void>;
  },
): Promise<void> {
  const depth = Math.max(1, Math.floor(o.depth ?? FETCH_AHEAD));
  // the clip's folder is made and listed once: a segment not in it is fetched without a look on disk (such a
  // look, in a folder where the renames of the segments before wait for the journal, cost 0.4 ms of the event loop)
  let present: Set<string> | undefined;
  if (segments.length > 0) {
    try {
      const dir = path.dirname(segmentDest(storageRoot, clip.dir, segments[0].file));
      fs.mkdirSync(dir, { recursive: true });
      present = new Set(fs.readdirSync(dir));
    } catch {
      present = undefined; // each segment then looks for itself (and refuses a bad name or place with its own error)
    }
  }
  // the segments to fetch, in the order they will be, for a source that streams them: those not in the
  // folder, each from what its part holds (a part already whole is verified by a GET's 416 instead)
  if (src.planStream && present && segments.length > 1) {
    const plan: [number, number, string | null][] = [];
    for (const seg of segments) {
      if (present.has(seg.file)) continue;
      let from: number;
      try {
        from = present.has(`${seg.file}.part`) ? partSize(`${segmentDest(storageRoot, clip.dir, seg.file)}.part`) : 0;
      } catch {
        continue; // a name refused: its own fetch says why
      }
      if (!(from < seg.bytes)) continue;
      plan.push([seg.index, from, seg.sha256 ?? null]);
    }
    src.planStream(clip.id, plan, { bytesPerSecond: (o.limiter as { bytesPerSecond?: number } | undefined)?.bytesPerSecond });
  }
  /** receiving: bytes still to come; result: done and verified */
  type Flight = { seg: Segment; p: Promise<SegmentCopyResult>; receiving: boolean; result?: SegmentCopyResult };
  const flights: Flight[] = [];
  let next = 0;
  let failed = false;
  let wake: (() => void) | null = null;
  const bytesUnderWay = () => flights.reduce((n, f) => n + (f.seg.bytes ?? 0), 0);
  const canLaunch = () =>
    !failed &&
    flights.length < depth &&
    next < segments.length &&
    !flights.some((f) => f.receiving) &&
    (flights.length < 3 || bytesUnderWay() + (segments[next].bytes ?? 0) <= AHEAD_BYTES);
  /** Start what may start now; false when stopped. */
  const pump = (): boolean => {
    while (canLaunch()) {
      if (o.stopped?.()) return false;
      launch();
    }
    return true;
  };
  const received = (f: Flight) => {
    if (!f.receiving) return;
    f.receiving = false;
    // the next fetch starts here, from the callback, before the segment's own hash and fsync are handed
    // to their workers (each hand-over costs the event loop a thread wake-up)
    pump();
    const w = wake;
    wake = null;
    w?.();
  };
  function launch() {
    const seg = segments[next++];
    const f: Flight = { seg, p: Promise.resolve() as unknown as Promise<SegmentCopyResult>, receiving: true };
    // counted before its fetch begins: a source may call back before it first waits
    flights.push(f);
    f.p = copySegment(src, storageRoot, clip, seg, {
      limiter: o.limiter,
      signal: o.signal,
      onBytes: o.onBytes,
      onReceived: () => received(f),
      present,
    });
    f.p.then(
      (r) => {
        f.result = r;
        received(f);
      },
      () => {
        failed = true; // no new fetch; those under way finish, the first error in index order is thrown below
        received(f);
      }, // awaited below, in order; this also keeps an early failure from being "unhandled"
    );
  }
  try {
    while (flights.length > 0 || next < segments.length) {
      if (!pump()) throw Object.assign(new Error('stopped'), { code: 'EABORT' });
      const head = flights[0];
      // the head finished, or one under way has all its bytes (the next may start)
      const headDone = await Promise.race([
        head.p.then(
          () => true,
          () => true,
        ),
        new Promise<boolean>((r) => (wake = () => r(false))),
      ]);
      wake = null;
      if (!headDone) continue;
      const r = await head.p;
      flights.shift();
      // with it, those right behind it that are done too (the fsyncs of several segments often end together)
      const done: SegmentDone[] = [{ seg: head.seg, r }];
      while (flights.length > 0 && flights[0].result) {
        const f = flights.shift()!;
        done.push({ seg: f.seg, r: f.result! });
      }
      await o.commit(done);
    }
  } catch (err) {
    failed = true; // a commit that failed, or a stop: nothing new starts while those under way finish
    await Promise.allSettled(flights.map((f) => f.p));
    throw err;
  } finally {
    src.endStream?.(clip.id);
  }
}

/** The counters of segments committed together. */
export function sumCounts(done: SegmentDone[]): { bytes: number; copied: number; skipped: number } {
  const c = { bytes: 0, copied: 0, skipped: 0 };
  for (const { r } of done) {
    c.bytes += r.bytes;
    c.copied += r.copied;
    c.skipped += r.skipped;
  }
  return c;
}

/** A pause that `wake()` ends early. */
export class Sleeper {
  private wakeFn: (() => void) | null = null;
  async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wakeFn === done) self.wakeFn = null;
        resolve();
      }
      this.wakeFn = done;
    });
  }
  wake(): void {
    this.wakeFn?.();
  }
}
