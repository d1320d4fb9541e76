/**
 * A minimal MPEG-TS reader: counts the video frames of a segment (one PES per
 * frame, as ffmpeg's muxer writes them) while the same pass computes its sha256.
 * Exact frame counts without starting a process per segment.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

const PACKET = 188;
const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x10, 0x1b, 0x24, 0x42, 0xd1, 0xea]);

export class TsFrameCounter {
  private rest: Buffer = Buffer.alloc(0);
  private pmtPids = new Set<number>();
  private videoPid: number | null = null;
  private pusiByPid = new Map<number, number>();
  /** False once the data stops looking like MPEG-TS. */
  valid = true;

  push(chunk: Buffer): void {
    if (!this.valid) return;
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= PACKET) {
      if (buf[off] !== 0x47) {
        this.valid = false;
        return;
      }
      this.packet(buf.subarray(off, off + PACKET));
      off += PACKET;
    }
    this.rest = Buffer.from(buf.subarray(off));
    buf = this.rest;
  }

  private packet(p: Buffer): void {
    const pusi = (p[1] & 0x40) !== 0;
    const pid = ((p[1] & 0x1f) << 8) | p[2];
    const afc = (p[3] >> 4) & 0x3;
    let payload = 4;
    if (afc === 2) return; // adaptation field only
    if (afc === 3) payload = 5 + p[4];
    if (payload >= PACKET) return;
    if (pid === 0 && pusi) {
      this.parsePat(p.subarray(payload));
      return;
    }
    if (this.pmtPids.has(pid) && pusi) {
      this.parsePmt(p.subarray(payload));
      return;
    }
    if (pusi) this.pusiByPid.set(pid, (this.pusiByPid.get(pid) ?? 0) + 1);
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
    for (let i = 12 + infoLen; i + 5 <= s.length - 4; ) {
      const type = s[i];
      const pid = ((s[i + 1] & 0x1f) << 8) | s[i + 2];
      const esLen = ((s[i + 3] & 0x0f) << 8) | s[i + 4];
      if (this.videoPid === null && VIDEO_STREAM_TYPES.has(type)) this.videoPid = pid;
      i += 5 + esLen;
    }
  }

  /** Video frames seen (PES starts on the video PID), or null if this is not MPEG-TS with video. */
  frames(): number | null {
    if (!this.valid || this.videoPid === null) return null;
    return this.pusiByPid.get(this.videoPid) ?? 0;
  }
}

/** sha256, size and (for MPEG-TS) video frame count of a file, in one read. */
export function scanSegment(file: string, isTs: boolean): Promise<{ sha256: string; bytes: number; frames: number | null }> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    const counter = isTs ? new TsFrameCounter() : null;
    let bytes = 0;
    const s = fs.createReadStream(file, { highWaterMark: 1 << 20 });
    s.on('data', (chunk) => {
      const b = chunk as Buffer;
      h.update(b);
      counter?.push(b);
      bytes += b.length;
    });
    s.on('error', reject);
    s.on('end', () => resolve({ sha256: h.digest('hex'), bytes, frames: counter ? counter.frames() : null }));
  });
}
