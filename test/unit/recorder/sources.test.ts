/** lib/recorder/sources and settings-snapshot: a channel's media sources with their one stall rule, and what it publishes to the settings cache. */
import assert from 'node:assert/strict';
import { checkSource, lineInput, testPatternSource, urlInput, urlSource, cameraSource } from '../../../lib/recorder/sources';
import { recorderSnapshot, snapshotLines } from '../../../lib/recorder/settings-snapshot';
import { resolveRecorderSettings } from '../../../lib/recorder/config';
import type { PresentedLine } from '../../../lib/recorder/types';

describe('recorder sources (lib/recorder/sources)', () => {
  it('ffmpeg gives up on a silent URL a second before the channel would (at least after a second)', () => {
    assert.deepEqual(urlInput('rtsp://cam/x', 6000), { kind: 'url', url: 'rtsp://cam/x', timeoutMs: 5000 });
    assert.deepEqual(urlInput('rtsp://cam/x', 1500), { kind: 'url', url: 'rtsp://cam/x', timeoutMs: 1000 });
  });

  it('a URL source is labelled without its password; a camera is asked for its URL at each start', async () => {
    const s = urlSource('rtsp://op:secret@cam/x', 6000);
    assert.equal(s.label, 'rtsp://op:***@cam/x');
    assert.deepEqual(await s.resolve(), { kind: 'url', url: 'rtsp://op:secret@cam/x', timeoutMs: 5000 });
    assert.deepEqual(await testPatternSource().resolve(), { kind: 'testpattern' });
    let n = 0;
    const cam = cameraSource('Studio cam', async () => `rtsp://cam/${++n}`, 3000);
    assert.deepEqual(await cam.resolve(), { kind: 'url', url: 'rtsp://cam/1', timeoutMs: 2000 });
    assert.deepEqual(await cam.resolve(), { kind: 'url', url: 'rtsp://cam/2', timeoutMs: 2000 });
  });

  it('a camera that answers a stream address that is not a stream URL (file:, concat:, nothing) is refused, never given to ffmpeg', async () => {
    for (const lie of ['file:///etc/passwd', 'concat:/srv/a.ts|/srv/b.ts', '', 'rtsp://']) {
      const cam = cameraSource('Lying cam', async () => lie, 3000);
      await assert.rejects(
        cam.resolve(),
        /the camera Lying cam answered a stream address that is not an rtsp:\/\/, srt:\/\/, udp:\/\/, rtp:\/\/ or http\(s\):\/\/ URL/,
      );
    }
    const withLogin = cameraSource('Cam', async () => 'file://op:secret@host/x', 3000);
    await assert.rejects(withLogin.resolve(), (e: Error) => !e.message.includes('secret'));
  });

  it('a line records LIVE (the channel source), the test pattern, or its own URL; anything else is refused', async () => {
    const live = testPatternSource();
    assert.deepEqual(await lineInput('LIVE', urlSource('rtsp://a/b', 6000), 6000), { kind: 'url', url: 'rtsp://a/b', timeoutMs: 5000 });
    assert.deepEqual(await lineInput('bars', live, 6000), { kind: 'testpattern' });
    assert.deepEqual(await lineInput('srt://host:9000', live, 4000), { kind: 'url', url: 'srt://host:9000', timeoutMs: 3000 });
    for (const ok of [undefined, 'LIVE', 'TESTPATTERN', 'rtsp://cam/x']) checkSource(ok);
    for (const bad of ['file:///etc/passwd', 'rtsp://', 'CAM1']) assert.throws(() => checkSource(bad), /is not usable: use "LIVE"/);
  });
});

describe('settings snapshot (lib/recorder/settings-snapshot)', () => {
  it('publishes the settings and the address without its login, and line sources without their password', () => {
    const settings = resolveRecorderSettings({
      channel: 2,
      channelName: 'Studio B',
      sourceType: 'url',
      url: 'rtsp://op:pw@cam/main',
      frameRate: '25',
    } as never);
    const snap = recorderSnapshot(settings, 'rtsp://op:***@cam/main', { url: 'rtsp://cam/main', login: true });
    assert.equal(snap.channelName, 'Studio B');
    assert.equal(snap.sourceType, 'url');
    assert.equal(snap.sourceUrl, 'rtsp://cam/main');
    assert.equal(snap.sourceLogin, true);
    assert.ok(!JSON.stringify(snap).includes(':pw@'), 'no password');
    assert.equal(recorderSnapshot(settings, 'x', null).sourceUrl, null);
    const lines = [{ source: 'rtsp://u:secret@cam/2' }, { source: 'LIVE' }] as PresentedLine[];
    assert.deepEqual(
      snapshotLines(lines).map((l) => l.source),
      ['rtsp://u:***@cam/2', 'LIVE'],
    );
  });
});
