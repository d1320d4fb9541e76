/**
 * Where a channel's media comes from, in one place: the test pattern, a stream
 * URL, or a camera that gives its stream URL when asked (ONVIF). Each becomes
 * an ffmpeg input with the same stall rule: ffmpeg's own socket timeout is a
 * second under the channel's stall timeout (at least a second), so a source
 * that goes silent ends ffmpeg before the channel's watchdog has to.
 */
import type { InputSpec } from '../media/ffmpeg';
import { redactUrl } from '../model/url';
import { CommandError } from '../model/errors';
import { SOURCE_URL } from './config';
import type { SourceProvider } from './types';

/** What a rec-list line may name as its source besides a URL: LIVE (the channel's own source) or the test pattern. */
const TEST_SOURCES = ['TESTPATTERN', 'BARS', 'TEST'];

/** Refuses (CommandError) a line source that cannot be recorded. */
export function checkSource(source: string | undefined): void {
  if (source === undefined || source === 'LIVE' || TEST_SOURCES.includes(source.toUpperCase())) return;
  if (!SOURCE_URL.test(source)) {
    throw new CommandError(
      `line.source "${source}" is not usable: use "LIVE" (the channel's source), "TESTPATTERN", or an rtsp://, srt://, udp://, rtp:// or http(s):// URL`,
    );
  }
}

/** The ffmpeg input of a line's source: the test pattern, its own URL, or (LIVE) the channel's source. */
export async function lineInput(source: string, channelSource: SourceProvider, stallTimeoutMs: number): Promise<InputSpec> {
  if (TEST_SOURCES.includes(source.toUpperCase())) return { kind: 'testpattern' };
  if (source !== 'LIVE') return urlInput(source, stallTimeoutMs);
  return channelSource.resolve();
}

/** ffmpeg input of a stream URL for a channel whose stall timeout is `stallTimeoutMs`. */
export function urlInput(url: string, stallTimeoutMs: number): InputSpec {
  return { kind: 'url', url, timeoutMs: Math.max(1000, stallTimeoutMs - 1000) };
}

export function testPatternSource(): SourceProvider {
  return { label: 'test pattern', resolve: async () => ({ kind: 'testpattern' }) };
}

/** A fixed stream URL; its label hides the password. */
export function urlSource(url: string, stallTimeoutMs: number, label = redactUrl(url)): SourceProvider {
  return { label, resolve: async () => urlInput(url, stallTimeoutMs) };
}

/**
 * A camera asked for its stream URL at each start (it may have changed, or the camera may be away: then it throws).
 * What the camera answers goes through the same allow list as any source URL: a camera that answers
 * file:, concat: or anything but a stream URL is refused, never handed to ffmpeg.
 */
export function cameraSource(label: string, streamUri: () => Promise<string>, stallTimeoutMs: number): SourceProvider {
  return {
    label,
    resolve: async () => {
      const uri = await streamUri();
      if (typeof uri !== 'string' || !SOURCE_URL.test(uri)) {
        throw new Error(
          `the camera ${label} answered a stream address that is not an rtsp://, srt://, udp://, rtp:// or http(s):// URL (${redactUrl(String(uri)).slice(0, 80)})`,
        );
      }
      return urlInput(uri, stallTimeoutMs);
    },
  };
}
