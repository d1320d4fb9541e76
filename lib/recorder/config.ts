/**
 * The recorder node's settings, checked and turned into channel settings.
 * Shared by the node (runtime) and its tests; no Node-RED import.
 */
import { Container } from '../model/clip';
import { isFrameRateId, FrameRateId } from '../model/timecode';

export interface RecorderNodeConfig {
  channel: string | number;
  channelName?: string;
  frameRate: string;
  sourceType: string;
  url?: string;
  segmentSeconds: string | number;
  container: string;
  videoCodec?: string;
  tcMode?: string;
  backupServer?: string;
  backupChannel?: string | number;
  startTimeout?: string | number;
  stallTimeout?: string | number;
}

export interface RecorderSettings {
  channel: number;
  channelName: string;
  frameRate: FrameRateId;
  sourceType: 'testpattern' | 'url' | 'onvif';
  url: string | null;
  segmentSeconds: number;
  container: Container;
  videoCodec: 'copy' | 'h264';
  tcMode: 'zero' | 'tod';
  backup: { server: string; channel: number } | null;
  startTimeoutMs: number;
  stallTimeoutMs: number;
}

/** Stream URLs a recorder (or one rec-list line) may record from. */
export const SOURCE_URL = /^(rtsps?|srt|udp|rtp|https?):\/\/[^\s]+$/i;

function num(v: unknown, def: number): number {
  if (v === undefined || v === null || v === '') return def;
  return Number(v);
}

/** Throws an Error naming the setting and the fix. */
export function resolveRecorderSettings(c: RecorderNodeConfig): RecorderSettings {
  const channel = num(c.channel, NaN);
  if (!Number.isInteger(channel) || channel < 1 || channel > 999) throw new Error(`channel "${c.channel}" must be a whole number from 1 to 999`);
  if (!isFrameRateId(c.frameRate)) throw new Error(`frame rate "${c.frameRate}" is not one of 23.976, 24, 25, 29.97df, 30, 50, 59.94df, 60`);
  const sourceType = c.sourceType as RecorderSettings['sourceType'];
  if (!['testpattern', 'url', 'onvif'].includes(sourceType)) throw new Error(`source type "${c.sourceType}" must be testpattern, url or onvif`);
  const url = (c.url ?? '').trim();
  if (sourceType === 'url' && !SOURCE_URL.test(url)) {
    throw new Error(`source URL "${url}" must be an rtsp://, rtsps://, srt://, udp://, rtp://, http:// or https:// address`);
  }
  const segmentSeconds = num(c.segmentSeconds, 6);
  if (!(segmentSeconds >= 1 && segmentSeconds <= 600)) throw new Error(`segment length ${c.segmentSeconds} s must be 1 to 600 seconds`);
  const container = (c.container || 'ts') as Container;
  if (!['ts', 'mkv', 'mp4'].includes(container)) throw new Error(`container "${c.container}" must be ts, mkv or mp4`);
  const videoCodec = (c.videoCodec || 'copy') as 'copy' | 'h264';
  if (!['copy', 'h264'].includes(videoCodec)) throw new Error(`video codec "${c.videoCodec}" must be copy or h264`);
  const tcMode = (c.tcMode || 'zero') as 'zero' | 'tod';
  if (!['zero', 'tod'].includes(tcMode)) throw new Error(`timecode mode "${c.tcMode}" must be zero or tod`);
  let backup: RecorderSettings['backup'] = null;
  const bServer = (c.backupServer ?? '').trim();
  if (bServer) {
    const bChannel = num(c.backupChannel, NaN);
    if (!Number.isInteger(bChannel) || bChannel < 1 || bChannel > 999)
      throw new Error(`backup recorder channel "${c.backupChannel}" must be a whole number from 1 to 999`);
    backup = { server: bServer, channel: bChannel };
  }
  const startTimeoutMs = num(c.startTimeout, 15) * 1000;
  const stallTimeoutMs = num(c.stallTimeout, 6) * 1000;
  if (!(startTimeoutMs >= 1000 && startTimeoutMs <= 600000)) throw new Error('start timeout must be 1 to 600 seconds');
  if (!(stallTimeoutMs >= 1000 && stallTimeoutMs <= 600000)) throw new Error('stall timeout must be 1 to 600 seconds');
  return {
    channel,
    channelName: (c.channelName ?? '').trim() || `Channel ${channel}`,
    frameRate: c.frameRate as FrameRateId,
    sourceType,
    url: sourceType === 'url' ? url : null,
    segmentSeconds,
    container,
    videoCodec,
    tcMode,
    backup,
    startTimeoutMs,
    stallTimeoutMs,
  };
}
