/**
 * Synchronous parallel recording at the recorder level: a Backup=On line on the
 * main and its Aux twin on the backup, fed the mirror messages backup-link
 * carries, record the same frames of one live RTSP source: same first frame,
 * same segment cuts, same name and attributes; repeats and stale messages are
 * harmless; the Aux line refuses edits.
 */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { Catalogue, openCatalogue } from '../../lib/store/catalogue';
import { ffmpegInfo } from '../../lib/media/ffmpeg';
import { makeMirror, MirrorMessage, SeqSource, validateMirror } from '../../lib/backup/mirror';
import { RecorderChannel } from '../../lib/recorder/channel';
import { ChannelEvent } from '../../lib/recorder/types';
import { Line } from '../../lib/model/reclist';
import { scanSegment, videoFrameDigests } from '../../lib/media/mpegts';
import { timeOfDayTimecode } from '../../lib/model/timecode';
import { compareTwins, twinSummaryOf } from '../../lib/model/twin';
import { framemd5 } from '../support/media';
import { sleep, tmpDir } from '../support/nr';
import { onSteadyCamera, RtspServerHandle, startRtspServer } from '../support/rtsp';

describe('twin recording (main + Aux) of one RTSP source', function () {
  this.timeout(120000);
  let dir: string;
  let rtsp: RtspServerHandle & { drops: number };
  let catA: Catalogue;
  let catB: Catalogue;
  const channels: RecorderChannel[] = [];

  before(async function () {
    rtsp = await startRtspServer({ fps: '25', gop: 25 });
  });
  after(async function () {
    await rtsp.stop();
  });
  const fresh = () => {
    dir = tmpDir('twin');
    catA = openCatalogue(path.join(dir, 'a.sqlite'));
    catB = openCatalogue(path.join(dir, 'b.sqlite'));
  };
  const cleanup = async () => {
    for (const c of channels.splice(0)) await c.close(false);
    catA.release();
    catB.release();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  beforeEach(fresh);
  afterEach(cleanup);

  function channel(server: string, cat: Catalogue, backup: { server: string; channel: number } | null) {
    const log = { info: () => undefined, warn: () => undefined, error: (m: string) => console.error(m) };
    const ch = new RecorderChannel(
      {
        serverId: server,
        group: 'studio',
        channel: 1,
        channelName: 'Studio A',
        frameRate: '25',
        tcMode: 'tod',
        storageRoot: path.join(dir, server),
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        source: { label: 'cam', resolve: async () => ({ kind: 'url', url: rtsp.url, timeoutMs: 5000 }) },
        backup,
      },
      { catalogue: cat, ffmpeg: ffmpegInfo(), log },
    );
    channels.push(ch);
    return ch;
  }

  /**
   * A main channel with Backup=On to a backup channel, both open, for one take; a take during
   * which GStreamer's test camera aborted is taken again from scratch.
   */
  const onSteadyPair = (take: (main: RecorderChannel, backup: RecorderChannel) => Promise<void>) =>
    onSteadyCamera(rtsp, 3, async (attempt) => {
      if (attempt > 1) {
        await cleanup();
        fresh();
      }
      const main = channel('main-1', catA, { server: 'backup-1', channel: 1 });
      const backup = channel('backup-1', catB, null);
      await main.open();
      await backup.open();
      await take(main, backup);
    });

  it('records the same frames on main and backup, named and attributed alike', async function () {
    await onSteadyPair(async (main, backup) => {
      const seq = new SeqSource();
      const sent: MirrorMessage[] = [];
      const backupEvents: ChannelEvent[] = [];
      const mainEvents: ChannelEvent[] = [];
      backup.on('event', (e: ChannelEvent) => backupEvents.push(e));
      // what backup-link does on the main: every event of a Backup=On line becomes a mirror message
      const forward = async (evs: ChannelEvent[]) => {
        for (const e of evs) {
          mainEvents.push(e);
          if (!e.line || e.line.backup !== 'on') continue;
          assert.deepEqual(e.backupTarget, { server: 'backup-1', channel: 1 });
          const m = makeMirror(
            { from: { server: 'main-1', channel: 1 }, to: e.backupTarget!, seq: seq.next(), epoch: 0, ts: Date.now() },
            e.line as Line,
            e.line.id,
          );
          if (e.event === 'stopped' && e.clip) m.clip = twinSummaryOf(e.clip);
          assert.ok(validateMirror(m), JSON.stringify(validateMirror.errors));
          sent.push(m);
          backupEvents.push(...(await backup.applyMirror(m)));
        }
      };
      main.on('event', (e: ChannelEvent) => void forward([e]));
      await forward(await main.execute({ command: 'add', line: { id: 'live-1', title: 'Live show', backup: 'on', attributes: { house: 'LS-1' } } }));
      const aux = backup.lines().find((l) => l.id === 'live-1')!;
      assert.equal(aux.backup, 'aux');
      assert.deepEqual(aux.origin, { server: 'main-1', channel: 1, lineId: 'live-1', seq: sent[0].seq });
      await assert.rejects(backup.execute({ command: 'update', line: { id: 'live-1', title: 'edited' } }), /Aux line kept by backup-link/);
      await assert.rejects(backup.execute({ command: 'start', line: { id: 'live-1' } }), /Aux line/);

      await forward(await main.execute({ command: 'start', line: { id: 'live-1' } }));
      const armed = mainEvents.find((e) => e.event === 'armed')!;
      const anchor = armed.line!.startTime!;
      assert.ok(anchor > armed.at, 'the start is planned ahead');
      for (let i = 0; i < 600 && !(mainEvents.some((e) => e.event === 'recording') && backupEvents.some((e) => e.event === 'recording')); i++) await sleep(50);
      assert.ok(
        backupEvents.some((e) => e.event === 'recording'),
        `the Aux twin records: ${JSON.stringify(backupEvents.map((e) => [e.event, e.reason, e.line?.status]))}`,
      );
      await sleep(5000);
      // a replayed (old) message changes nothing
      // (without the running timecode of the recording line, which moves on by itself)
      const still = () => JSON.stringify(backup.lines().map((l) => ({ ...l, curPoint: null })));
      const before = still();
      await backup.applyMirror(sent[0]);
      assert.equal(still(), before);

      await forward(await main.execute({ command: 'stop', line: { id: 'live-1' } }));
      for (let i = 0; i < 200 && !(mainEvents.some((e) => e.event === 'stopped') && backupEvents.some((e) => e.event === 'stopped')); i++) await sleep(50);
      const mClip = mainEvents.find((e) => e.event === 'stopped')!.clip!;
      const bClip = backupEvents.find((e) => e.event === 'stopped')!.clip!;
      assert.equal(bClip.name, mClip.name);
      assert.equal(path.basename(bClip.dir), path.basename(mClip.dir), 'same clip folder name');
      assert.deepEqual(bClip.attributes, mClip.attributes);
      assert.equal(bClip.title, mClip.title);
      assert.equal(bClip.backup, 'aux');
      assert.equal(bClip.tcIn, mClip.tcIn, 'same timecode in');
      // the stop is frame-exact: both end on the last frame before the planned stop instant they share
      const plannedStopAt = mainEvents.find((e) => e.event === 'updated' && /stop planned/.test(e.reason ?? ''))!.line!.stopTime!;
      const ends = (c: typeof mClip) =>
        `${c.tcIn} + ${c.frames} frames, stopped ${c.stoppedAt! - plannedStopAt} ms after the planned ${timeOfDayTimecode(plannedStopAt, '25')}`;
      assert.equal(mClip.stoppedAt, plannedStopAt, `the main clip ends at the planned stop: ${ends(mClip)}`);
      assert.equal(bClip.stoppedAt, plannedStopAt, `the Aux clip ends at the planned stop: ${ends(bClip)}`);
      assert.equal(bClip.frames, mClip.frames, `frames main ${mClip.frames} aux ${bClip.frames}`);
      assert.equal(bClip.tcOut, mClip.tcOut, 'same timecode out');
      assert.equal(bClip.segments.length, mClip.segments.length, 'same segment cuts');
      // decoded pictures: the first keyframe packet may carry the parameter sets for one client only
      const first = async (root: string, c: typeof mClip) =>
        (await framemd5(path.join(dir, root, c.dir, c.segments[0].file), { decode: true, frames: 25 })).map((f) => f.hash);
      const fa = await first('main-1', mClip);
      const fb = await first('backup-1', bClip);
      assert.equal(fa.length, 25);
      assert.deepEqual(fb, fa, 'the same first frames');
      // every segment, the last (cut at the planned stop) included
      for (let i = 0; i < mClip.segments.length; i++) assert.equal(bClip.segments[i].frames, mClip.segments[i].frames, `segment ${i} frames`);
      for (let i = 0; i < mClip.segments.length; i++) assert.equal(bClip.segments[i].esDigest, mClip.segments[i].esDigest, `segment ${i} stream checksum`);
      const onDisk = async (root: string, c: typeof mClip) => {
        let n = 0;
        for (const sgm of c.segments) n += (await scanSegment(path.join(dir, root, c.dir, sgm.file), true)).frames!;
        return n;
      };
      assert.equal(await onDisk('main-1', mClip), mClip.frames, 'the main files hold the frames the clip says');
      assert.equal(await onDisk('backup-1', bClip), bClip.frames, 'the Aux files hold the frames the clip says');
      // the twin check, on the backup, from the main clip's summary in the last mirror message
      for (let i = 0; i < 100 && !backupEvents.some((e) => e.event === 'verified' || e.event === 'mismatch'); i++) await sleep(50);
      const verdict = backupEvents.find((e) => e.event === 'verified' || e.event === 'mismatch')!;
      assert.equal(verdict.event, 'verified', verdict.reason);
      assert.equal(verdict.clip!.twin!.state, 'verified');
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'backup-1', bClip.dir, 'clip.json'), 'utf8')).twin.state, 'verified');
    });
  });

  it('Backup=On lines back to back (after a manual line, and at the stop time of the line before): on both servers each next line pre-rolls and takes over at the same frame, and every twin verifies', async function () {
    await onSteadyPair(async (main, backup) => {
      const seq = new SeqSource();
      const mainEvents: ChannelEvent[] = [];
      const backupEvents: ChannelEvent[] = [];
      backup.on('event', (e: ChannelEvent) => backupEvents.push(e));
      // what backup-link does on the main, in order (a chain: mirror messages are applied one after the other)
      let chain = Promise.resolve();
      const forward = (e: ChannelEvent) => {
        mainEvents.push(e);
        if (!e.line || e.line.backup !== 'on' || e.event === 'verified' || e.event === 'mismatch') return;
        const m = makeMirror(
          { from: { server: 'main-1', channel: 1 }, to: e.backupTarget!, seq: seq.next(), epoch: 0, ts: Date.now() },
          e.line as Line,
          e.line.id,
        );
        if (e.event === 'stopped' && e.clip) m.clip = twinSummaryOf(e.clip);
        chain = chain.then(async () => void backupEvents.push(...(await backup.applyMirror(m))));
      };
      main.on('event', forward);
      const run = async (cmd: Parameters<RecorderChannel['execute']>[0]) => {
        for (const e of await main.execute(cmd)) forward(e);
        await chain;
      };
      const waitFor = async (what: string, ok: () => boolean, ms = 30000) => {
        for (let t = 0; !ok(); t += 50) {
          if (t > ms)
            throw new Error(
              `timed out waiting for ${what}: main ${JSON.stringify(mainEvents.map((e) => [e.event, e.line?.id]))} backup ${JSON.stringify(backupEvents.map((e) => [e.event, e.line?.id]))}`,
            );
          await sleep(50);
        }
      };
      const seen = (evs: ChannelEvent[], ev: string, id: string) => evs.find((e) => e.event === ev && e.line?.id === id);

      await run({ command: 'add', line: { id: 'a', title: 'First', backup: 'on' } });
      await run({ command: 'start', line: { id: 'a' } });
      await waitFor('line a recording on both', () => !!seen(mainEvents, 'recording', 'a') && !!seen(backupEvents, 'recording', 'a'));
      // the second line stops at a time of day, where the third starts: both servers record on to the third's first frame
      const T = Date.now() + 4500;
      await run({ command: 'add', line: { id: 'b', title: 'Second', backup: 'on', start: 'time', startTime: T, stopTime: T + 3000 } });
      await run({ command: 'add', line: { id: 'c', title: 'Third', backup: 'on', start: 'time', startTime: T + 3000, duration: '00:00:02:00' } });
      const ids = ['a', 'b', 'c'];
      await waitFor(
        'every line stopped on both, and every verdict',
        () =>
          ids.every((id) => !!seen(mainEvents, 'stopped', id) && !!seen(backupEvents, 'stopped', id)) &&
          ids.every((id) => backupEvents.some((e) => (e.event === 'verified' || e.event === 'mismatch') && e.line?.id === id)),
      );
      for (const id of ids) {
        const verdict = backupEvents.find((e) => (e.event === 'verified' || e.event === 'mismatch') && e.line?.id === id)!;
        assert.equal(verdict.event, 'verified', `line ${id}: ${verdict.reason}`);
      }
      const clip = (evs: ChannelEvent[], id: string) => seen(evs, 'stopped', id)!.clip!;
      const digests = async (root: string, c: ReturnType<typeof clip>) => {
        const all: string[] = [];
        for (const sg of c.segments) all.push(...(await videoFrameDigests(path.join(dir, root, c.dir, sg.file), true))!);
        return all;
      };
      for (let i = 1; i < ids.length; i++) {
        const [mPrev, mNext, xPrev, xNext] = [
          clip(mainEvents, ids[i - 1]),
          clip(mainEvents, ids[i]),
          clip(backupEvents, ids[i - 1]),
          clip(backupEvents, ids[i]),
        ];
        const joint = `between lines ${i} and ${i + 1}`;
        assert.match(seen(mainEvents, 'stopped', ids[i - 1])!.reason ?? '', new RegExp(`stopped at the start of line ${i + 1}`));
        assert.match(
          seen(backupEvents, 'stopped', ids[i - 1])!.reason ?? '',
          new RegExp(`stopped at the start of line ${i + 1}`),
          'the Aux line before is cut by its own hand-over',
        );
        // on each server a clip ends where the next begins; the two servers agree on every figure
        assert.equal(mPrev.tcOut, mNext.tcIn, `main: out = in ${joint}`);
        assert.equal(xPrev.tcOut, xNext.tcIn, `backup: out = in ${joint}`);
        assert.equal(xNext.tcIn, mNext.tcIn, joint);
        assert.equal(xPrev.frames, mPrev.frames, `line ${i}: ${mPrev.frames} frames on the main, ${xPrev.frames} on the backup`);
        // and the pictures: the same last one before the joint and first one after it on both servers, none in both clips
        const [dmp, dmn, dxp, dxn] = [
          await digests('main-1', mPrev),
          await digests('main-1', mNext),
          await digests('backup-1', xPrev),
          await digests('backup-1', xNext),
        ];
        assert.equal(dmp.length, mPrev.frames);
        assert.equal(dmp.at(-1), dxp.at(-1), `the same last picture before the joint ${joint}`);
        assert.equal(dmn[1], dxn[1], `the same pictures after the joint ${joint}`);
        assert.ok(!dmp.includes(dmn[1]) && !dxp.includes(dxn[1]), `no picture in both clips ${joint}`);
      }
      assert.equal(clip(mainEvents, 'c').frames, 50);
      assert.equal(clip(backupEvents, 'c').frames, 50);
    });
  });

  it('reports a mismatch, with what differs, when the twin holds other frames', function () {
    const seg = (index: number, frames: number, esDigest: string) => ({ index, frames, esDigest });
    const a = { name: 'X', frames: 100, tcIn: '10:00:00:00', tcOut: '10:00:04:00', segments: [seg(1, 50, 'a'.repeat(64)), seg(2, 50, 'b'.repeat(64))] };
    assert.deepEqual(compareTwins(a, { ...a, frames: 101, segments: [seg(1, 50, 'a'.repeat(64)), seg(2, 51, 'c'.repeat(64))] }), []);
    const d = compareTwins(a, { ...a, tcIn: '10:00:00:01', segments: [seg(1, 50, 'f'.repeat(64)), seg(2, 50, 'b'.repeat(64))] });
    assert.ok(d.some((x) => /timecode in differs/.test(x)));
    assert.ok(d.some((x) => /segment 1: the frames differ/.test(x)));
    assert.ok(compareTwins(a, { ...a, frames: 60, segments: [seg(1, 60, 'a'.repeat(64))] }).some((x) => /segment counts differ/.test(x)));
  });
});
