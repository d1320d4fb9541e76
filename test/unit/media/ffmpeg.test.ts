import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FfmpegInfo, RunArgsOptions, buildRunArgs, ffmpegInfo, findFont, lastFrameCount, parseSegmentList } from '../../../lib/media/ffmpeg';
import { FfmpegRun, reasonFromStderr } from '../../../lib/media/ffmpeg-run';
import { frameRate } from '../../../lib/model/timecode';

const INFO: FfmpegInfo = {
  path: '/usr/bin/ffmpeg',
  version: '5.1.9',
  rtspTimeoutOption: '-timeout',
  hasDrawtext: true,
  hasLibx264: true,
  hasStatsPeriod: true,
};
const OUT = path.join(os.tmpdir(), 'twinrec-ffmpeg-test', 'srv', 'ch01', '2026-11-22', 'News_200000');

function opts(p: Partial<RunArgsOptions> = {}): RunArgsOptions {
  return {
    input: { kind: 'testpattern' },
    rate: frameRate('25'),
    outDir: OUT,
    baseName: 'News',
    container: 'ts',
    segmentSeconds: 6,
    startNumber: 0,
    listFile: path.join(OUT, '.run-1.csv'),
    videoCodec: 'copy',
    ...p,
  };
}

/** The value that follows `flag` in args (asserting the flag is there once). */
function valueOf(args: string[], flag: string): string {
  const at = args.indexOf(flag);
  assert.ok(at >= 0, `${flag} missing from ${args.join(' ')}`);
  assert.equal(args.indexOf(flag, at + 1), -1, `${flag} given twice`);
  return args[at + 1];
}

function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
}

describe('ffmpeg (pure parts)', () => {
  describe('parseSegmentList', () => {
    it('reads normal csv lines', () => {
      const text = 'News_00000.ts,0.000000,6.000000\nNews_00001.ts,6.000000,12.000000\nNews_00002.ts,12.000000,14.520000\n';
      assert.deepEqual(parseSegmentList(text), [
        { file: 'News_00000.ts', startSec: 0, endSec: 6 },
        { file: 'News_00001.ts', startSec: 6, endSec: 12 },
        { file: 'News_00002.ts', startSec: 12, endSec: 14.52 },
      ]);
    });

    it('accepts CRLF line ends, negative times and blank lines', () => {
      assert.deepEqual(parseSegmentList('a_00000.ts,-0.040000,1.960000\r\n\r\nb_00001.ts,1.960000,3.960000\r\n'), [
        { file: 'a_00000.ts', startSec: -0.04, endSec: 1.96 },
        { file: 'b_00001.ts', startSec: 1.96, endSec: 3.96 },
      ]);
    });

    it('unquotes file names with commas and doubled quotes', () => {
      const text = '"news, part ""1""_000.ts",0.000000,1.040000\n"a,b,c_00001.ts",1.040000,2.040000\n';
      assert.deepEqual(parseSegmentList(text), [
        { file: 'news, part "1"_000.ts', startSec: 0, endSec: 1.04 },
        { file: 'a,b,c_00001.ts', startSec: 1.04, endSec: 2.04 },
      ]);
    });

    it('ignores an empty list and lines that are not entries', () => {
      assert.deepEqual(parseSegmentList(''), []);
      assert.deepEqual(parseSegmentList('\n\n'), []);
      assert.deepEqual(parseSegmentList('garbage\nx,y,z\n'), []);
    });

    it('ignores a partial trailing line missing fields', () => {
      const full = 'News_00000.ts,0.000000,6.000000\n';
      for (const partial of ['News_00001.ts,6.000000,', 'News_00001.ts,6.00', 'News_00001.ts,', 'News_000', '"news, part']) {
        assert.deepEqual(parseSegmentList(full + partial), [{ file: 'News_00000.ts', startSec: 0, endSec: 6 }], JSON.stringify(partial));
      }
    });

    it('ignores a partial trailing line cut inside its last number (no line end yet)', () => {
      // ffmpeg ends every entry with "\n". Read while ffmpeg writes (or after it was
      // killed mid-write), "News_00001.ts,6.000000,12.000000\n" can be seen as
      // "News_00001.ts,6.000000,1": that is not an entry, not a segment ending at 1 s.
      const text = 'News_00000.ts,0.000000,6.000000\nNews_00001.ts,6.000000,1';
      assert.deepEqual(parseSegmentList(text), [{ file: 'News_00000.ts', startSec: 0, endSec: 6 }]);
    });
  });

  describe('lastFrameCount', () => {
    it('is the last frame= count in ffmpeg stderr', () => {
      const stderr =
        "Input #0, mpegts, from 'x.ts':\n  Duration: 00:00:06.00\n" +
        'frame=   10 fps=0.0 q=-1.0 size=N/A time=00:00:00.40 bitrate=N/A speed=0.8x\r' +
        'frame=  100 fps= 99 q=-1.0 size=N/A time=00:00:04.00 bitrate=N/A speed=3.9x\r' +
        'frame=  150 fps=120 q=-1.0 Lsize=N/A time=00:00:06.00 bitrate=N/A speed=4.8x\n' +
        'video:1kB audio:0kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: unknown\n';
      assert.equal(lastFrameCount(stderr), 150);
      assert.equal(lastFrameCount('frame=7\nfps=25\nframe=8\n'), 8);
      assert.equal(lastFrameCount('frame=0 fps=0.0'), 0);
    });

    it('is null when there is no count', () => {
      assert.equal(lastFrameCount(''), null);
      assert.equal(lastFrameCount('x.ts: Invalid data found when processing input\n'), null);
    });
  });

  describe('reasonFromStderr', () => {
    it('storage full', () => {
      assert.equal(
        reasonFromStderr("[segment @ 0x55d0] Failure occurred when ending segment 'News_00003.ts'\nav_interleaved_write_frame(): No space left on device\n"),
        'storage full',
      );
    });

    it('permission denied', () => {
      assert.equal(
        reasonFromStderr("[segment @ 0x1] Failed to open segment 'News_00000.ts'\nCould not write header: Permission denied"),
        'permission denied writing the clip',
      );
    });

    it('connection refused', () => {
      assert.equal(
        reasonFromStderr(
          '[tcp @ 0x55] Connection to tcp://127.0.0.1:8554?timeout=5000000 failed: Connection refused\nrtsp://127.0.0.1:8554/live: Connection refused\n',
        ),
        'the source refused the connection',
      );
    });

    it('timed out', () => {
      assert.equal(
        reasonFromStderr(
          '[tcp @ 0x55] Connection to tcp://10.0.0.9:554?timeout=5000000 failed: Connection timed out\nrtsp://10.0.0.9/live: Connection timed out\n',
        ),
        'the source did not answer in time',
      );
      assert.equal(reasonFromStderr('rtsp://10.0.0.9/live: Operation timed out'), 'the source did not answer in time');
    });

    it('unauthorized', () => {
      assert.equal(
        reasonFromStderr(
          '[rtsp @ 0x55] method DESCRIBE failed: 401 Unauthorized\nrtsp://admin:***@cam/live: Server returned 401 Unauthorized (authorization failed)\n',
        ),
        'the source refused the credentials',
      );
    });

    it('not found', () => {
      assert.equal(
        reasonFromStderr('[rtsp @ 0x55] method DESCRIBE failed: 404 Not Found\nrtsp://cam/nope: Server returned 404 Not Found\n'),
        'the source has no such stream',
      );
    });

    it('unreachable, unreadable and dropped sources', () => {
      assert.equal(reasonFromStderr('rtsp://nohost.invalid/x: Name or service not known'), 'the source is unreachable');
      assert.equal(reasonFromStderr('udp://239.1.1.1:5000: No route to host'), 'the source is unreachable');
      assert.equal(reasonFromStderr('x: Invalid data found when processing input'), 'the source sent data ffmpeg cannot read');
      assert.equal(reasonFromStderr('[rtsp @ 0x1] Connection reset by peer'), 'the source dropped the stream');
      assert.equal(reasonFromStderr('http://cam/x: Server returned 503 Service Unavailable'), 'the source dropped the stream');
    });

    it('none for a normal run', () => {
      const normal =
        "Input #0, lavfi, from 'testsrc2=size=640x360:rate=25/1':\n  Duration: N/A, start: 0.000000, bitrate: N/A\n" +
        '  Stream #0:0: Video: wrapped_avframe, yuv420p, 640x360 [SAR 1:1 DAR 16:9], 25 fps, 25 tbr, 25 tbn\n' +
        "Output #0, segment, to '/storage/srv/ch01/2026-11-22/News_200000/News_%05d.ts':\n" +
        "[segment @ 0x55] Opening '/storage/srv/ch01/2026-11-22/News_200000/News_00000.ts' for writing\n" +
        '[out#0/segment @ 0x55] video:120kB audio:0kB\nExiting normally, received signal 2.\n';
      assert.equal(reasonFromStderr(normal), null);
      assert.equal(reasonFromStderr(''), null);
    });

    it('the most specific reason wins', () => {
      assert.equal(reasonFromStderr('Connection refused\nNo space left on device'), 'storage full');
      assert.equal(reasonFromStderr('401 Unauthorized\nEnd of file'), 'the source refused the credentials');
    });
  });

  describe('buildRunArgs', () => {
    it('starts with the supervision options', () => {
      const a = buildRunArgs(opts(), INFO);
      assert.deepEqual(a.slice(0, 7), ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info', '-progress', 'pipe:1']);
    });

    it('a test pattern: -re, lavfi, libx264, segment options, start number, list file, output in outDir', () => {
      const list = path.join(OUT, '.run-3.csv');
      const a = buildRunArgs(opts({ startNumber: 7, listFile: list, segmentSeconds: 4 }), INFO);
      const i = a.indexOf('-i');
      assert.ok(a.indexOf('-re') >= 0 && a.indexOf('-re') < i, '-re before the input');
      assert.equal(a[i - 2], '-f');
      assert.equal(a[i - 1], 'lavfi');
      const graph = a[i + 1];
      assert.match(graph, /^testsrc2?=size=640x360:rate=25\/1/);
      assert.equal(valueOf(a, '-map'), '0:v:0');
      assert.equal(valueOf(a, '-c:v'), 'libx264');
      assert.equal(valueOf(a, '-preset'), 'ultrafast');
      assert.equal(valueOf(a, '-pix_fmt'), 'yuv420p');
      assert.equal(valueOf(a, '-g'), '25');
      assert.ok(!a.includes('-c'), 'a test pattern is always encoded');
      assert.ok(!a.includes('-c:a'));
      assert.deepEqual(values(a, '-f'), ['lavfi', 'segment']);
      assert.equal(valueOf(a, '-segment_time'), '4');
      assert.equal(valueOf(a, '-segment_format'), 'mpegts');
      assert.equal(valueOf(a, '-segment_list'), list);
      assert.equal(valueOf(a, '-segment_list_type'), 'csv');
      assert.equal(valueOf(a, '-segment_start_number'), '7');
      assert.equal(valueOf(a, '-reset_timestamps'), '0');
      assert.equal(valueOf(a, '-segment_format_options'), 'flush_packets=1');
      const out = a[a.length - 1];
      assert.equal(out, path.join(OUT, 'News_%05d.ts'));
      assert.equal(path.dirname(out), OUT);
    });

    it('a test pattern draws the timecode when drawtext and a font are there', () => {
      const font = findFont();
      const a = buildRunArgs(opts({ input: { kind: 'testpattern', size: '320x180', tcStart: '10:00:00:00' } }), INFO);
      const graph = a[a.indexOf('-i') + 1];
      if (font) {
        assert.match(graph, /^testsrc2=size=320x180:rate=25\/1,drawtext=/);
        assert.ok(graph.includes("timecode='10\\:00\\:00\\:00'"), graph);
        assert.ok(graph.includes(`fontfile=${font.replace(/:/g, '\\:')}`), graph);
      } else {
        assert.equal(graph, 'testsrc=size=320x180:rate=25/1');
      }
      const noText = buildRunArgs(opts({ input: { kind: 'testpattern', size: '320x180' } }), { ...INFO, hasDrawtext: false });
      assert.equal(noText[noText.indexOf('-i') + 1], 'testsrc=size=320x180:rate=25/1');
    });

    it('a test pattern at 29.97 drop-frame uses the exact rate and a drop-frame start timecode', () => {
      const a = buildRunArgs(opts({ rate: frameRate('29.97df') }), INFO);
      const graph = a[a.indexOf('-i') + 1];
      assert.match(graph, /rate=30000\/1001/);
      if (findFont()) assert.ok(graph.includes("timecode='00\\:00\\:00;00'"), graph);
      assert.equal(valueOf(a, '-g'), '30');
    });

    it('falls back to mpeg2video without libx264', () => {
      const a = buildRunArgs(opts(), { ...INFO, hasLibx264: false });
      assert.equal(valueOf(a, '-c:v'), 'mpeg2video');
      assert.ok(!a.includes('-preset'));
      assert.ok(!a.includes('-tune'));
      assert.ok(a.includes('-b:v'));
    });

    it('an rtsp URL: tcp transport, the timeout option of this ffmpeg, -c copy, video and optional audio', () => {
      const url = 'rtsp://admin:p%40ss@10.0.0.9:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1';
      const a = buildRunArgs(opts({ input: { kind: 'url', url, timeoutMs: 3000 } }), INFO);
      const i = a.indexOf('-i');
      assert.equal(a[i + 1], url, 'the URL is one argument, unchanged');
      assert.equal(valueOf(a, '-rtsp_transport'), 'tcp');
      assert.ok(a.indexOf('-rtsp_transport') < i);
      assert.equal(valueOf(a, '-timeout'), '3000000', 'microseconds');
      assert.ok(a.indexOf('-timeout') < i, 'an input option');
      assert.ok(!a.includes('-stimeout'));
      assert.ok(!a.includes('-re'));
      assert.ok(!a.includes('lavfi'));
      assert.deepEqual(values(a, '-map'), ['0:v:0', '0:a?']);
      assert.equal(valueOf(a, '-c'), 'copy');
      assert.ok(!a.includes('-c:v'));

      const old = buildRunArgs(opts({ input: { kind: 'url', url } }), { ...INFO, rtspTimeoutOption: '-stimeout' });
      assert.equal(valueOf(old, '-stimeout'), '5000000', 'default 5 s, with the option name of ffmpeg 4');
      assert.ok(!old.includes('-timeout'));
      const rtsps = buildRunArgs(opts({ input: { kind: 'url', url: 'RTSPS://cam/x' } }), INFO);
      assert.equal(valueOf(rtsps, '-rtsp_transport'), 'tcp');
    });

    it('an rtsp URL re-encoded to h264 copies the audio', () => {
      const a = buildRunArgs(opts({ input: { kind: 'url', url: 'rtsp://cam/1' }, videoCodec: 'h264' }), INFO);
      assert.equal(valueOf(a, '-c:v'), 'libx264');
      assert.equal(valueOf(a, '-c:a'), 'copy');
      assert.ok(!a.includes('-c'));
      assert.deepEqual(values(a, '-map'), ['0:v:0', '0:a?']);
    });

    it('other URLs: http gets -rw_timeout, srt/udp no timeout option', () => {
      const http = buildRunArgs(opts({ input: { kind: 'url', url: 'https://cam/live.m3u8', timeoutMs: 2000 } }), INFO);
      assert.equal(valueOf(http, '-rw_timeout'), '2000000');
      assert.ok(!http.includes('-rtsp_transport'));
      for (const url of ['srt://10.0.0.1:9000', 'udp://239.1.1.1:5000']) {
        const a = buildRunArgs(opts({ input: { kind: 'url', url } }), INFO);
        assert.ok(!a.includes('-rtsp_transport') && !a.includes('-timeout') && !a.includes('-rw_timeout'), url);
        assert.equal(a[a.indexOf('-i') + 1], url);
      }
    });

    it('container mp4: fragmented movflags and .mp4 segments', () => {
      const a = buildRunArgs(opts({ container: 'mp4', input: { kind: 'url', url: 'rtsp://cam/1' } }), INFO);
      assert.equal(valueOf(a, '-segment_format'), 'mp4');
      const flags = valueOf(a, '-segment_format_options');
      assert.match(flags, /^movflags=/);
      for (const f of ['+frag_keyframe', '+empty_moov', '+default_base_moof']) assert.ok(flags.includes(f), f);
      assert.match(flags, /:flush_packets=1$/);
      assert.equal(values(a, '-segment_format_options').length, 1, 'one option string');
      // a URL input is probed briefly, the frame rate taken from its description
      assert.equal(valueOf(a, '-fpsprobesize'), '0');
      assert.equal(valueOf(a, '-analyzeduration'), '1000000');
      assert.ok(a.indexOf('-analyzeduration') < a.indexOf('-i'));
      assert.equal(a[a.length - 1], path.join(OUT, 'News_%05d.mp4'));
    });

    it('container mkv: matroska and .mkv segments', () => {
      const a = buildRunArgs(opts({ container: 'mkv' }), INFO);
      assert.equal(valueOf(a, '-segment_format'), 'matroska');
      assert.equal(valueOf(a, '-segment_format_options'), 'flush_packets=1');
      assert.equal(a[a.length - 1], path.join(OUT, 'News_%05d.mkv'));
    });
  });

  describe('against the ffmpeg of this machine', function () {
    this.timeout(30_000);
    let tmp: string;
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-ffmpeg-'));
    });
    afterEach(() => {
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('ffmpegInfo() finds it, parses the version and picks the RTSP timeout option', () => {
      const info = ffmpegInfo();
      assert.equal(ffmpegInfo(), info, 'cached');
      assert.ok(fs.existsSync(info.path), info.path);
      fs.accessSync(info.path, fs.constants.X_OK);
      if (!process.env.TWINREC_FFMPEG) {
        const firstOnPath = (process.env.PATH ?? '')
          .split(path.delimiter)
          .map((d) => path.join(d, 'ffmpeg'))
          .find((f) => {
            try {
              fs.accessSync(f, fs.constants.X_OK);
              return fs.statSync(f).isFile();
            } catch {
              return false;
            }
          });
        assert.equal(info.path, firstOnPath);
        assert.ok(fs.existsSync('/usr/bin/ffmpeg'), "Debian's ffmpeg is installed");
      }
      const versionLine = execFileSync(info.path, ['-hide_banner', '-version'], { encoding: 'utf8' }).split('\n')[0];
      assert.equal(info.version, /^ffmpeg version (\S+)/.exec(versionLine)![1]);
      assert.match(info.version, /^n?\d+\.\d+/);
      const major = Number(/^n?(\d+)/.exec(info.version)![1]);
      if (major >= 5) assert.equal(info.rtspTimeoutOption, '-timeout');
      else assert.equal(info.rtspTimeoutOption, '-stimeout');
      if (info.path === '/usr/bin/ffmpeg') {
        assert.ok(major >= 5, `Debian 12 ships ffmpeg 5.1, found ${info.version}`);
        assert.equal(info.rtspTimeoutOption, '-timeout');
      }
      const encoders = execFileSync(info.path, ['-hide_banner', '-encoders'], { encoding: 'utf8' });
      assert.equal(info.hasLibx264, /\blibx264\b/.test(encoders));
      const filters = execFileSync(info.path, ['-hide_banner', '-filters'], { encoding: 'utf8' });
      assert.equal(info.hasDrawtext, /\bdrawtext\b/.test(filters));
    });

    it('accepts the test-pattern filter graph at 25 and 29.97df', () => {
      const info = ffmpegInfo();
      for (const rate of ['25', '29.97df']) {
        const a = buildRunArgs(opts({ rate: frameRate(rate), input: { kind: 'testpattern', size: '160x90' } }), info);
        const graph = a[a.indexOf('-i') + 1];
        execFileSync(info.path, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-f', 'lavfi', '-i', graph, '-frames:v', '3', '-f', 'null', '-'], {
          stdio: ['ignore', 'ignore', 'pipe'],
          timeout: 20_000,
        });
      }
    });

    it('a segment list written by ffmpeg parses, with a comma and quotes in the name', () => {
      const info = ffmpegInfo();
      const list = path.join(tmp, 'list.csv');
      execFileSync(
        info.path,
        [
          '-hide_banner',
          '-nostdin',
          '-loglevel',
          'error',
          '-f',
          'lavfi',
          '-i',
          'testsrc=size=64x64:rate=25',
          '-t',
          '3',
          '-c:v',
          'mpeg2video',
          '-g',
          '25',
          '-f',
          'segment',
          '-segment_time',
          '1',
          '-segment_list',
          list,
          '-segment_list_type',
          'csv',
          path.join(tmp, 'news, part "1"_%05d.ts'),
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 },
      );
      const entries = parseSegmentList(fs.readFileSync(list, 'utf8'));
      assert.ok(entries.length >= 2, JSON.stringify(entries));
      entries.forEach((e, i) => {
        assert.equal(e.file, `news, part "1"_${String(i).padStart(5, '0')}.ts`);
        assert.ok(fs.existsSync(path.join(tmp, e.file)), e.file);
        assert.ok(e.endSec > e.startSec);
        if (i > 0) assert.equal(e.startSec, entries[i - 1].endSec);
      });
    });

    it('the arguments built for a test pattern record segments and a list', async () => {
      const info = ffmpegInfo();
      const outDir = path.join(tmp, 'srv', 'ch01', '2026-11-22', 'News_200000');
      fs.mkdirSync(outDir, { recursive: true });
      const listFile = path.join(outDir, '.run-1.csv');
      const args = buildRunArgs(opts({ outDir, listFile, segmentSeconds: 1, startNumber: 3, input: { kind: 'testpattern', size: '160x90' } }), info);
      const child = spawn(info.path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let progress = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdout.setEncoding('utf8').on('data', (d: string) => (progress += d));
      const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await new Promise((r) => setTimeout(r, 3500));
      child.kill('SIGINT');
      const code = await ended;
      assert.equal(code, 255, `ffmpeg ended with ${code}: ${stderr.slice(-1500)}`); // 255 = stopped by SIGINT
      assert.match(progress, /progress=end/);
      assert.match(stderr, new RegExp(`Opening '${outDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/News_00003\\.ts' for writing`));
      const entries = parseSegmentList(fs.readFileSync(listFile, 'utf8'));
      assert.ok(entries.length >= 2, `${entries.length} segments listed`);
      assert.equal(entries[0].file, 'News_00003.ts');
      for (const e of entries) assert.ok(fs.statSync(path.join(outDir, e.file)).size > 0, e.file);
      assert.ok(lastFrameCount(progress.replace(/\n/g, ' ')) !== null);
      assert.equal(reasonFromStderr(stderr), null, 'a clean run has no failure reason');
    });
  });
});

describe('ffmpeg run with a pre-roll (real ffmpeg, test pattern)', function () {
  this.timeout(30000);
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-preroll-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('with segments shorter than the pre-roll, every segment opened before the anchor is pre-roll: the clip begins at the anchor, one pre-roll file at a time', async () => {
    const anchor = Date.now() + 2600;
    const run = new FfmpegRun(ffmpegInfo(), {
      ...opts({ outDir: dir, listFile: path.join(dir, '.run-1.csv'), segmentSeconds: 1, clockAnchorMs: anchor }),
      prerollDiscard: true,
      stallTimeoutMs: 10000,
    });
    const prerolls: { file: string; at: number; present: string[] }[] = [];
    const opened: { file: string; at: number }[] = [];
    run.on('preroll', (o: { file: string; at: number }) => prerolls.push({ ...o, present: fs.readdirSync(dir).filter((f) => f.endsWith('.ts')) }));
    run.on('segment-open', (o: { file: string; at: number }) => opened.push(o));
    const first = new Promise<number>((resolve) => run.once('first-frame', resolve));
    run.start();
    try {
      const at = await first;
      assert.ok(at >= anchor, `the clip's first segment opened ${anchor - at} ms before the anchor`);
      assert.ok(prerolls.length >= 2, `segments of 1 s in a 2.6 s pre-roll: ${prerolls.length} pre-roll segment(s)`);
      for (const p of prerolls.slice(0, -1)) assert.ok(p.at < anchor, `${p.file} opened before the anchor`);
      assert.equal(run.prerollFile, prerolls[prerolls.length - 1].file);
      assert.equal(opened[0].file, `News_${String(prerolls.length).padStart(5, '0')}.ts`, 'the clip numbers on after the pre-roll');
      // the older pre-roll files are deleted as the next one opens (the last one by the recorder, at the first frame)
      await new Promise((r) => setTimeout(r, 100));
      const left = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'));
      for (const p of prerolls.slice(0, -1)) assert.ok(!left.includes(p.file), `${p.file} deleted`);
    } finally {
      await run.stop();
    }
  });
});
