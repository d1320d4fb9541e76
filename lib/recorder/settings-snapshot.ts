/**
 * The settings cache's contract: what a recorder publishes of a channel
 * (retained on the group's broker) so that a failover server can record it in
 * its place, written here by the recorder's side and read here by the failover
 * side. Never a password: a stream address goes without its login, and says
 * whether it needs one (the failover server holds its own).
 */
import { redactUrl } from '../model/url';
import type { RecorderSettings } from './config';
import type { PresentedLine } from './types';

/** A channel's recorder settings as published. */
export interface RecorderSnapshot {
  channelName?: string;
  frameRate: string;
  sourceType: 'testpattern' | 'url' | 'onvif';
  /** Human label of the source (never with a password). */
  source?: string;
  /** The stream address without user name and password (null when not known yet). */
  sourceUrl?: string | null;
  /** Whether the address needs a log in (the failover server holds its own). */
  sourceLogin?: boolean;
  segmentSeconds?: number;
  container?: string;
  videoCodec?: string;
  tcMode?: string;
  backup?: { server: string; channel: number } | null;
}

/** One channel of one server as the settings cache keeps it. */
export interface ChannelSnapshot {
  server: string;
  channel: number;
  ts: number;
  recorder: RecorderSnapshot;
  lines: PresentedLine[];
}

/** What a recorder publishes of its settings now (`stream`: its address as known now, without its login). */
export function recorderSnapshot(settings: RecorderSettings, sourceLabel: string, stream: { url: string; login: boolean } | null): RecorderSnapshot {
  return {
    channelName: settings.channelName,
    frameRate: settings.frameRate,
    sourceType: settings.sourceType,
    source: sourceLabel,
    sourceUrl: stream ? stream.url : null,
    sourceLogin: stream ? stream.login : false,
    segmentSeconds: settings.segmentSeconds,
    container: settings.container,
    videoCodec: settings.videoCodec,
    tcMode: settings.tcMode,
    backup: settings.backup,
  };
}

/** The rec-list as published: a line's own source URL goes out without its password. */
export function snapshotLines(lines: PresentedLine[]): PresentedLine[] {
  return lines.map((l) => (l.source.includes('@') ? { ...l, source: redactUrl(l.source) } : l));
}

/** A settings message from the link (its envelope checked by the link schema) as the cache keeps it. */
export function channelSnapshotOf(p: { server: string; channel: number; ts: number; recorder: object; lines: object[] }): ChannelSnapshot {
  return { server: p.server, channel: p.channel, ts: p.ts, recorder: p.recorder as RecorderSnapshot, lines: p.lines as PresentedLine[] };
}
