/**
 * A minimal MPEG-TS reader: counts the video frames of a segment (one PES per
 * frame, as ffmpeg's muxer writes them) while the same pass computes its sha256.
 * Exact frame counts without starting a process per segment.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

const PACKET = 188;
const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x10, 0x1b, 0x24, 0x42, 0xd1, 0xea]);
const START_CODE = Buffer.from([0, 0, 1]);
/**
 * NAL unit types left out of the elementary-stream digest: they describe or
 * delimit pictures but are not pictures, and a source may send them in-band to
 * one client and not to another (parameter sets with the first keyframe of a
 * new RTSP client, or taken from the SDP and inserted by the muxer).
 * H.264: SEI 6, SPS 7, PPS 8, access unit delimiter 9, end of sequence/stream 10/11, filler 12.
 * HEVC: VPS 32, SPS 33, PPS 34, AUD 35, EOS 36, EOB 37, filler 38, SEI 39/40.
 */
const SKIP_NAL = {
  h264: new Set([6, 7, 8, 9, 10, 11, 12]),
  hevc: new Set([32, 33, 34, 35, 36, 37, 38, 39, 40]),
};

export class TsFrameCounter {
  private rest: Buffer = Buffer.alloc(0);
  private pmtPids = new Set<number>();
  private videoPid: number | null = null;
  private pusiByPid = new Map<number, number>();
  /**
   * sha256 of the video elementary stream (PES payloads without their headers;
   * for H.264 and HEVC only the NAL units of pictures, see SKIP_NAL): equal for
   * two recordings of the same frames, whatever their timestamps, muxing or
   * in-band parameter sets (the twin check compares it).
   */
  private es = crypto.createHash('sha256');
  private codec: 'h264' | 'hevc' | null = null;
  /** H.264/HEVC elementary stream not digested yet (from the last start code on). */
  private frame: Buffer[] = [];
  /** False once the data stops looking like MPEG-TS. */
  valid = true;
  /** Offset in the stream of the next byte pushed. */
  private pos = 0;
  /**
   * With a frame limit: the offset of the packet that begins video frame
   * limit + 1 (the stream cut there holds exactly `limit` frames), once seen.
   * Nothing after it is read.
   */
  cutAt: number | null = null;
  /**
   * With perFrame: one digest per video frame, of what the elementary-stream
   * digest takes of it (for H.264/HEVC its picture NAL units only), in order.
   * The same frame of a source recorded by two ffmpeg runs (stream copy) has the
   * same digest; a back-to-back cut finds the next clip's first frame with it.
   */
  readonly frameDigests: string[] = [];
  private frameHash: crypto.Hash | null = null;

  constructor(
    private readonly limit: number | null = null,
    private readonly perFrame = false,
  ) {}

  push(chunk: Buffer): void {
    if (!this.valid || this.cutAt !== null) return;
    const chunkAt = this.pos;
    this.pos += chunk.length;
    let off = 0;
    if (this.rest.length) {
      // complete the packet split across the previous chunk and this one
      const need = PACKET - this.rest.length;
      if (chunk.length < need) {
        this.rest = Buffer.concat([this.rest, chunk]);
        return;
      }
      const first = Buffer.concat([this.rest, chunk.subarray(0, need)]);
      const firstAt = chunkAt - this.rest.length;
      this.rest = Buffer.alloc(0);
      if (first[0] !== 0x47) {
        this.valid = false;
        return;
      }
      this.packet(first, 0, firstAt);
      if (this.cutAt !== null) return;
      off = need;
    }
    const end = chunk.length - PACKET;
    for (; off <= end; off += PACKET) {
      if (chunk[off] !== 0x47) {
        this.valid = false;
        return;
      }
      this.packet(chunk, off, chunkAt + off);
      if (this.cutAt !== null) return;
    }
    if (off < chunk.length) this.rest = Buffer.from(chunk.subarray(off));
  }

  /** One 188-byte packet at b[o], at offset `at` of the stream. */
  private packet(b: Buffer, o: number, at: number): void {
    const pusi = (b[o + 1] & 0x40) !== 0;
    const pid = ((b[o + 1] & 0x1f) << 8) | b[o + 2];
    if (this.limit !== null && pusi && pid === this.videoPid && (this.pusiByPid.get(pid) ?? 0) >= this.limit) {
      this.cutAt = at;
      return;
    }
    const afc = (b[o + 3] >> 4) & 0x3;
    if (afc === 2 || afc === 0) return; // no payload
    const payload = afc === 3 ? 5 + b[o + 4] : 4;
    if (payload >= PACKET) return;
    if (pid === this.videoPid) {
      let from = o + payload;
      if (pusi && this.perFrame) {
        // one PES is one frame (ffmpeg's muxer): the frame before ends here
        this.digestUnits(true);
        this.closeFrame();
        this.frameHash = crypto.createHash('sha1');
      } else if (pusi) this.digestUnits(false);
      // at a PES start, skip its header (start code, stream id, length, flags, header data)
      if (pusi && b[from] === 0 && b[from + 1] === 0 && b[from + 2] === 1) from += 9 + b[from + 8];
      if (from < o + PACKET) {
        if (this.codec) this.frame.push(Buffer.from(b.subarray(from, o + PACKET)));
        else {
          this.es.update(b.subarray(from, o + PACKET));
          this.frameHash?.update(b.subarray(from, o + PACKET));
        }
      }
    }
    if (!pusi) return; // only starts of PES packets and of PSI sections are counted
    if (pid === 0) {
      this.parsePat(b.subarray(o + payload, o + PACKET));
      return;
    }
    if (this.pmtPids.has(pid)) {
      this.parsePmt(b.subarray(o + payload, o + PACKET));
      return;
    }
    this.pusiByPid.set(pid, (this.pusiByPid.get(pid) ?? 0) + 1);
  }

  private section(b: Buffer): Buffer | null {
    const pointer = b[0];
    const s = b.subarray(1 + pointer);
    if (s.length < 3) return null;
    const len = ((s[1] & 0x0f) << 8) | s[2];
    return s.subarray(0, Math.min(s.length, 3 + len));
  }

  private parsePat(b: Buffer): void {
    const s = this.section(b);
    if (!s || s[0] !== 0x00) return;
    for (let i = 8; i + 4 <= s.length - 4; i += 4) {
      const program = (s[i] << 8) | s[i + 1];
      const pid = ((s[i + 2] & 0x1f) << 8) | s[i + 3];
      if (program !== 0) this.pmtPids.add(pid);
    }
  }

  private parsePmt(b: Buffer): void {
    const s = this.section(b);
    if (!s || s[0] !== 0x02 || s.length < 12) return;
    const infoLen = ((s[10] & 0x0f) << 8) | s[11];
    for (let i = 12 + infoLen; i + 5 <= s.length - 4;) {
      const type = s[i];
      const pid = ((s[i + 1] & 0x1f) << 8) | s[i + 2];
      const esLen = ((s[i + 3] & 0x0f) << 8) | s[i + 4];
      if (this.videoPid === null && VIDEO_STREAM_TYPES.has(type)) {
        this.videoPid = pid;
        this.codec = type === 0x1b ? 'h264' : type === 0x24 ? 'hevc' : null;
      }
      i += 5 + esLen;
    }
  }

  /** Video frames seen (PES starts on the video PID), or null if this is not MPEG-TS with video. */
  frames(): number | null {
    if (!this.valid || this.videoPid === null) return null;
    return this.pusiByPid.get(this.videoPid) ?? 0;
  }

  private closeFrame(): void {
    if (this.frameHash) this.frameDigests.push(this.frameHash.digest('hex'));
    this.frameHash = null;
  }

  /** perFrame: the digests of all frames, the last one closed at the end of the data. */
  finishFrames(): string[] {
    this.digestUnits(true);
    this.closeFrame();
    return this.frameDigests;
  }

  esDigest(): string | null {
    if (!this.valid || this.videoPid === null) return null;
    this.digestUnits(true);
    return this.es.digest('hex');
  }

  /**
   * Hash the picture NAL units gathered so far (Annex B: each unit follows a
   * 00 00 01 start code). The last unit may go on in the next PES, so it is
   * kept until the next start code (or the end of the segment, `final`).
   */
  private digestUnits(final: boolean): void {
    if (!this.codec || this.frame.length === 0) return;
    const f = this.frame.length === 1 ? this.frame[0] : Buffer.concat(this.frame);
    this.frame = [];
    const skip = SKIP_NAL[this.codec];
    const unit = (start: number, end: number) => {
      // the zero bytes before the next start code (a 4-byte start code, trailing zeros) are not part of this unit
      while (end > start && f[end - 1] === 0) end--;
      if (end <= start) return;
      const type = this.codec === 'h264' ? f[start] & 0x1f : (f[start] >> 1) & 0x3f;
      if (skip.has(type)) return;
      this.es.update(f.subarray(start, end));
      this.frameHash?.update(f.subarray(start, end));
    };
    let at = f.indexOf(START_CODE);
    if (at < 0) {
      if (!final) this.frame = [f];
      return;
    }
    for (;;) {
      const next = f.indexOf(START_CODE, at + 3);
      if (next < 0) {
        if (final) unit(at + 3, f.length);
        else this.frame = [f.subarray(at)];
        return;
      }
      unit(at + 3, next);
      at = next;
    }
  }
}

const SCAN_CHUNK = 256 * 1024;

/**
 * Counts the video frames of an MPEG-TS file that is still being written,
 * reading only what was added since the last call. The last frame counted may
 * not be complete yet.
 */
export class TsFileFollower {
  private readonly counter = new TsFrameCounter();
  private offset = 0;
  constructor(private readonly file: string) {}

  /** Frames begun in the file so far; null when it is not MPEG-TS with video (yet). */
  async frames(): Promise<number | null> {
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(this.file, 'r');
    } catch {
      return null; // not created yet, or already gone
    }
    try {
      const buf = Buffer.allocUnsafe(SCAN_CHUNK);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, SCAN_CHUNK, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.counter.push(Buffer.from(buf.subarray(0, bytesRead)));
      }
    } finally {
      await fh.close();
    }
    return this.counter.frames();
  }
}

/**
 * Cut an MPEG-TS file after its first `frames` video frames: truncated at the
 * packet that begins the next frame (a packet boundary, so still valid
 * MPEG-TS), and synced. Returns false, changing nothing, when the file holds
 * no more than `frames` frames or is not MPEG-TS with video.
 */
export async function truncateTsAfterFrames(file: string, frames: number): Promise<boolean> {
  if (!Number.isInteger(frames) || frames < 0) throw new Error(`cannot keep ${String(frames)} frames: expected a whole number of at least 0`);
  const counter = new TsFrameCounter(frames);
  const buf = Buffer.allocUnsafe(SCAN_CHUNK);
  const fh = await fs.promises.open(file, 'r+');
  try {
    while (counter.cutAt === null && counter.valid) {
      const { bytesRead } = await fh.read(buf, 0, SCAN_CHUNK, null);
      if (bytesRead === 0) break;
      counter.push(buf.subarray(0, bytesRead));
    }
    if (counter.cutAt === null || !counter.valid || counter.frames() === null) return false;
    await fh.truncate(counter.cutAt);
    await fh.sync();
    return true;
  } finally {
    await fh.close();
  }
}

/**
 * Read a whole file in order into one reused buffer (no stream, no garbage per
 * chunk): `fn` must be done with each chunk when it returns.
 */
async function eachChunk(file: string, fn: (chunk: Buffer) => void): Promise<void> {
  const buf = Buffer.allocUnsafe(SCAN_CHUNK);
  const fh = await fs.promises.open(file, 'r');
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, SCAN_CHUNK, null);
      if (bytesRead === 0) break;
      fn(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

/**
 * The digest of each video frame of an MPEG-TS file (see
 * TsFrameCounter.frameDigests), or null when it is not MPEG-TS with video.
 * `closed` false: the file is still being written and its last frame may be
 * incomplete, so it is left out.
 */
export async function videoFrameDigests(file: string, closed: boolean): Promise<string[] | null> {
  const counter = new TsFrameCounter(null, true);
  await eachChunk(file, (chunk) => counter.push(chunk));
  if (counter.frames() === null) return null;
  const all = counter.finishFrames();
  return closed ? all : all.slice(0, -1);
}

/**
 * sha256, size and (for MPEG-TS) video frame count of a file, in one read.
 * Reads into one reused buffer (no stream, no garbage per chunk): this runs
 * for every segment of every channel inside the Node-RED process.
 */
export async function scanSegment(file: string, isTs: boolean): Promise<{ sha256: string; bytes: number; frames: number | null; esDigest: string | null }> {
  const h = crypto.createHash('sha256');
  const counter = isTs ? new TsFrameCounter() : null;
  let bytes = 0;
  await eachChunk(file, (chunk) => {
    h.update(chunk);
    counter?.push(chunk);
    bytes += chunk.length;
  });
  return { sha256: h.digest('hex'), bytes, frames: counter ? counter.frames() : null, esDigest: counter ? counter.esDigest() : null };
}
