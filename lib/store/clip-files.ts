/**
 * Clip storage on disk: safe names, clip folders under the storage root,
 * sidecars written atomically, sha256 of segments. Nothing a command says can
 * put a file outside the storage root.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Clip } from '../model/clip';
import { framesToTimecode } from '../model/timecode';

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/i;

/**
 * A file-system-safe clip name from a title: letters, digits, space, '.', '_',
 * '-' and '+' survive; everything else (slashes, control characters, '..')
 * becomes '_'. Never empty, never starts with a dot, at most 100 bytes.
 */
export function sanitizeName(title: string): string {
  let s = String(title ?? '').normalize('NFC');
  s = s.replace(/[^\p{L}\p{M}\p{N} ._+-]/gu, '_');
  s = s.replace(/\s+/g, ' ').trim();
  s = s.replace(/\.{2,}/g, '_');
  s = s.replace(/^[. ]+|[. ]+$/g, '');
  if (Buffer.byteLength(s) > 100) {
    const chars = Array.from(s); // whole code points, never half a surrogate pair
    while (Buffer.byteLength(chars.join('')) > 100) chars.pop();
    s = chars.join('');
  }
  s = s.replace(/[. ]+$/g, '');
  if (!s) s = 'clip';
  if (WINDOWS_RESERVED.test(s)) s = `_${s}`;
  return s;
}

/** Resolve a path below root; throws if it would leave root. */
export function insideRoot(root: string, ...parts: string[]): string {
  const absRoot = path.resolve(root);
  const target = path.resolve(absRoot, ...parts);
  const rel = path.relative(absRoot, target);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
    throw new Error(`refused: "${parts.join('/')}" would be outside the storage root ${absRoot}`);
  }
  return target;
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

export function channelDir(channel: number): string {
  return `ch${pad(channel, 2)}`;
}

/**
 * Folder for a new clip, relative to the storage root:
 * <server>/<chNN>/<YYYY-MM-DD>/<name>_<HHMMSS> (UTC), made unique with a suffix.
 */
export function newClipDir(root: string, serverId: string, channel: number, name: string, at: number): string {
  const d = new Date(at);
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
  const hms = `${pad(d.getUTCHours(), 2)}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}`;
  const base = [sanitizeName(serverId), channelDir(channel), day].join('/');
  let rel = `${base}/${name}_${hms}`;
  for (let i = 2; fs.existsSync(insideRoot(root, rel)); i++) rel = `${base}/${name}_${hms}-${i}`;
  return rel;
}

/**
 * Write a file so that a reader (or a killed process) sees the old or the new
 * content, never half. With sync, the data also reaches the disk before the
 * rename (survives a power cut); without, it costs no fsync.
 */
export function writeFileAtomic(file: string, data: string | Buffer, sync = true): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export const SIDECAR_NAME = 'clip.json';
export const SIDECAR_FORMAT = 'twinrec-clip/1';

/** The sidecar: everything a person or another server needs to know of a clip. */
export function sidecarOf(clip: Clip): object {
  return {
    format: SIDECAR_FORMAT,
    id: clip.id,
    name: clip.name,
    title: clip.title,
    attributes: clip.attributes,
    server: clip.serverId,
    group: clip.group,
    channel: clip.channel,
    channelName: clip.channelName,
    lineId: clip.lineId,
    backup: clip.backup,
    state: clip.state,
    reason: clip.reason,
    frameRate: clip.frameRate,
    tcIn: clip.tcIn,
    tcOut: clip.tcOut,
    startedAt: clip.startedAt,
    stoppedAt: clip.stoppedAt,
    startedAtIso: clip.startedAt === null ? null : new Date(clip.startedAt).toISOString(),
    stoppedAtIso: clip.stoppedAt === null ? null : new Date(clip.stoppedAt).toISOString(),
    frames: clip.frames,
    durationMs: clip.durationMs,
    duration: framesToTimecode(clip.frames, clip.frameRate),
    container: clip.container,
    source: clip.source,
    gaps: clip.gaps,
    twin: clip.twin ?? null,
    segments: clip.segments.map((s) => ({
      file: s.file,
      index: s.index,
      run: s.run,
      frames: s.frames,
      bytes: s.bytes,
      sha256: s.sha256,
      complete: s.complete,
      startSec: s.startSec,
      endSec: s.endSec,
      wallStart: s.wallStart,
    })),
  };
}

/**
 * Write the sidecar. While a clip records it is rewritten after every segment
 * without fsync (the catalogue is the durable record); the final one of a
 * closed clip is synced.
 */
export function writeSidecar(root: string, clip: Clip): void {
  const dir = insideRoot(root, clip.dir);
  writeFileAtomic(path.join(dir, SIDECAR_NAME), JSON.stringify(sidecarOf(clip), null, 2) + '\n', clip.state !== 'recording');
}

export function readSidecar(root: string, relDir: string): ReturnType<typeof sidecarOf> & Record<string, unknown> {
  const file = path.join(insideRoot(root, relDir), SIDECAR_NAME);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** sha256 and size of a file, streamed. */
export function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    let bytes = 0;
    const s = fs.createReadStream(file);
    s.on('data', (chunk) => {
      h.update(chunk);
      bytes += (chunk as Buffer).length;
    });
    s.on('error', reject);
    s.on('end', () => resolve({ sha256: h.digest('hex'), bytes }));
  });
}
