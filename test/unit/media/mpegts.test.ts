/**
 * The MPEG-TS reader (lib/media/mpegts.ts) on segments ffmpeg writes: frame count,
 * sha256, and the elementary-stream digest the twin check compares, which must
 * be equal for the same pictures whatever parameter sets and delimiters travel
 * in-band (a source may send them to one recorder and not to the other).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanSegment, truncateTsAfterFrames, videoFrameDigests } from '../../../lib/media/mpegts';
import { handoverKeep } from '../../../lib/recorder/handover-cut';

const FFMPEG = '/usr/bin/ffmpeg';
const ff = (...args: string[]) => execFileSync(FFMPEG, ['-nostdin', '-hide_banner', '-v', 'error', '-y', ...args]);

describe('MPEG-TS reader: frames, sha256 and the picture digest', function () {
  this.timeout(60000);
  let tmp: string;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-ts-'))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const [codec, encoder, es, bsf, more] of [
    ['H.264', 'libx264', 'h264', 'h264_metadata=aud=insert,dump_extra=freq=keyframe', ['-x264-params', 'keyint=25:min-keyint=25:scenecut=0']],
    ['HEVC', 'libx265', 'hevc', 'hevc_metadata=aud=insert,dump_extra=freq=keyframe', ['-x265-params', 'keyint=25:min-keyint=25:scenecut=0:log-level=error']],
  ] as const) {
    it(`${codec}: the same pictures give the same digest with or without in-band parameter sets and delimiters; other pictures another`, async () => {
      const raw = path.join(tmp, `a.${es}`);
      ff('-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-frames:v', '50', '-pix_fmt', 'yuv420p', '-c:v', encoder, ...more, '-bf', '0', '-f', es, raw);
      const plain = path.join(tmp, `plain-${es}.ts`);
      const extra = path.join(tmp, `extra-${es}.ts`);
      const other = path.join(tmp, `other-${es}.ts`);
      ff('-i', raw, '-c', 'copy', '-f', 'mpegts', plain);
      // every keyframe with its parameter sets again, and a delimiter before every access unit
      ff('-i', raw, '-c', 'copy', '-bsf:v', bsf, '-f', 'mpegts', extra);
      ff(
        '-f',
        'lavfi',
        '-i',
        'smptebars=size=320x240:rate=25',
        '-frames:v',
        '50',
        '-pix_fmt',
        'yuv420p',
        '-c:v',
        encoder,
        ...more,
        '-bf',
        '0',
        '-f',
        'mpegts',
        other,
      );

      const a = await scanSegment(plain, true);
      const b = await scanSegment(extra, true);
      const c = await scanSegment(other, true);
      assert.equal(a.frames, 50);
      assert.equal(b.frames, 50);
      assert.notEqual(a.sha256, b.sha256, 'the files differ');
      assert.ok(fs.statSync(extra).size > fs.statSync(plain).size, 'the second carries more in-band units');
      assert.match(String(a.esDigest), /^[0-9a-f]{64}$/);
      assert.equal(b.esDigest, a.esDigest, 'the pictures are the same');
      assert.notEqual(c.esDigest, a.esDigest, 'other pictures');
      // the same file again: the same answer (the digest reads every unit, the last one included)
      assert.deepEqual(await scanSegment(plain, true), a);
    });
  }

  it('a file that is not MPEG-TS has no frame count and no digest, but its sha256', async () => {
    const f = path.join(tmp, 'not-ts.bin');
    fs.writeFileSync(f, Buffer.alloc(1000, 7));
    const r = await scanSegment(f, true);
    assert.equal(r.frames, null);
    assert.equal(r.esDigest, null);
    assert.equal(r.bytes, 1000);
    assert.match(r.sha256, /^[0-9a-f]{64}$/);
  });

  it('cuts a segment after its first N frames: still MPEG-TS that ffmpeg reads, with exactly those pictures', async () => {
    const full = path.join(tmp, 'full.ts');
    // video and audio interleaved, as a camera with a microphone records
    ff(
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=320x240:rate=25',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=1000:sample_rate=48000',
      '-frames:v',
      '60',
      '-t',
      '2.4',
      '-pix_fmt',
      'yuv420p',
      '-c:v',
      'libx264',
      '-x264-params',
      'keyint=25:min-keyint=25:scenecut=0',
      '-bf',
      '0',
      '-c:a',
      'aac',
      '-f',
      'mpegts',
      full,
    );
    const first37 = path.join(tmp, 'first37.ts');
    ff('-i', full, '-map', '0:v', '-c', 'copy', '-frames:v', '37', '-f', 'mpegts', first37);
    const cut = path.join(tmp, 'cut.ts');
    fs.copyFileSync(full, cut);
    const size = fs.statSync(cut).size;

    assert.equal(await truncateTsAfterFrames(cut, 37), true);
    const r = await scanSegment(cut, true);
    assert.equal(r.frames, 37);
    assert.equal(r.bytes % 188, 0, 'cut at a packet boundary');
    assert.ok(r.bytes < size);
    assert.equal(r.esDigest, (await scanSegment(first37, true)).esDigest, 'the same 37 pictures as ffmpeg keeps with -frames:v 37');
    // ffmpeg reads it to the end without an error and decodes 37 frames
    const probe = execFileSync('/usr/bin/ffprobe', [
      '-v',
      'error',
      '-count_frames',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=nb_read_frames',
      '-of',
      'csv=p=0',
      cut,
    ]).toString();
    // (the stream is listed once in its program and once alone)
    assert.deepEqual([...new Set(probe.split(/\s+/).filter(Boolean))], ['37']);

    // no more frames than asked: nothing changes
    const before = fs.readFileSync(cut);
    assert.equal(await truncateTsAfterFrames(cut, 37), false);
    assert.equal(await truncateTsAfterFrames(cut, 100), false);
    assert.deepEqual(fs.readFileSync(cut), before);
    // not MPEG-TS: nothing changes
    const junk = path.join(tmp, 'junk.bin');
    fs.writeFileSync(junk, Buffer.alloc(4000, 9));
    assert.equal(await truncateTsAfterFrames(junk, 1), false);
    assert.equal(fs.statSync(junk).size, 4000);
    await assert.rejects(truncateTsAfterFrames(cut, -1), /whole number/);
    await assert.rejects(truncateTsAfterFrames(cut, 2.5), /whole number/);
  });

  it('a digest per frame: a second recording of the same stream from a later keyframe (other muxing, parameter sets in-band) has the same frames, and the back-to-back cut finds its first one', async () => {
    const raw = path.join(tmp, 'pf.h264');
    ff(
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=320x240:rate=25',
      '-frames:v',
      '50',
      '-pix_fmt',
      'yuv420p',
      '-c:v',
      'libx264',
      '-x264-params',
      'keyint=10:min-keyint=10:scenecut=0',
      '-bf',
      '0',
      '-f',
      'h264',
      raw,
    );
    const whole = path.join(tmp, 'pf-whole.ts');
    ff('-i', raw, '-c', 'copy', '-f', 'mpegts', whole);
    const later = path.join(tmp, 'pf-later.ts');
    // from 0.8 s (frame 20, a keyframe) on, every keyframe with its parameter sets and a delimiter per picture
    ff(
      '-i',
      whole,
      '-ss',
      '0.8',
      '-c',
      'copy',
      '-bsf:v',
      'h264_metadata=aud=insert,dump_extra=freq=keyframe',
      '-mpegts_start_pid',
      '0x200',
      '-f',
      'mpegts',
      later,
    );

    const a = await videoFrameDigests(whole, true);
    const b = await videoFrameDigests(later, true);
    assert.ok(a && b);
    assert.equal(a.length, 50);
    assert.equal(new Set(a).size, 50, 'every picture of the test pattern differs');
    assert.equal(b.length, 30);
    assert.deepEqual(b, a.slice(20), 'the same pictures, whatever the muxing and in-band units');
    assert.notEqual(fs.readFileSync(later).subarray(0, 4000).toString('hex'), fs.readFileSync(whole).subarray(0, 4000).toString('hex'));
    // the clip before, cut where the clocks say (one frame late, one early, or right): 20 frames, by content
    for (const clock of [19, 20, 21]) assert.equal(handoverKeep(a, 0, b.slice(0, 3), clock), 20);
    // a file still being written: its last frame may be incomplete and is left out
    assert.deepEqual(await videoFrameDigests(whole, false), a.slice(0, 49));
    const junk = path.join(tmp, 'pf-junk.bin');
    fs.writeFileSync(junk, Buffer.alloc(2000, 3));
    assert.equal(await videoFrameDigests(junk, true), null);
  });
});
