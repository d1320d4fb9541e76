/**
 * How a channel shows its lines and state: lines with their timecodes and
 * current point, the events it sends, its status.
 */
import { Clip } from '../model/clip';
import { errorText } from '../model/errors';
import { Line } from '../model/reclist';
import { framesToTimecode, msToFrames, timeOfDayTimecode } from '../model/timecode';
import type { Active, ChannelContext } from './context';
import { ChannelEvent, ChannelStatus, LineEventName, PresentedLine } from './types';

export function curPoint(ch: ChannelContext, a: Active): string | null {
  if (a.clip.startedAt === null) return null;
  return framesToTimecode(msToFrames(ch.clock() - a.clip.startedAt, ch.rate), ch.rate);
}

export function present(ch: ChannelContext, line: Line): PresentedLine {
  const a = ch.active;
  if (a && a.line.id === line.id) return presentFresh(ch, line, curPoint(ch, a));
  let p = ch.presented.get(line);
  if (!p) {
    p = presentFresh(ch, line, line.curPoint);
    ch.presented.set(line, p);
  }
  return p;
}

export function presentFresh(ch: ChannelContext, line: Line, curPoint: string | null): PresentedLine {
  return {
    ...line,
    curPoint,
    startTimeTC: line.startTime === null ? null : timeOfDayTimecode(line.startTime, ch.rate),
    stopTimeTC: line.stopTime === null ? null : timeOfDayTimecode(line.stopTime, ch.rate),
  };
}

export function reclistEvent(ch: ChannelContext, requestId?: string): ChannelEvent {
  return { event: 'reclist', server: ch.settings.serverId, channel: ch.settings.channel, at: ch.clock(), lines: presentLines(ch), requestId };
}

export function lineEvent(
  ch: ChannelContext,
  event: LineEventName,
  line: Line,
  extra: { clip?: Clip; reason?: string; requestId?: string } = {},
): ChannelEvent {
  const at = ch.clock();
  const ev: ChannelEvent = { event, server: ch.settings.serverId, channel: ch.settings.channel, at, line: copyLine(present(ch, line)) };
  if (line.backup === 'on') ev.backupTarget = ch.settings.backup ? { ...ch.settings.backup } : null;
  if (extra.clip) ev.clip = structuredClone(extra.clip);
  if (extra.reason) ev.reason = extra.reason;
  if (extra.requestId) ev.requestId = extra.requestId;
  try {
    ch.cat.addEvent({
      ts: at,
      serverId: ch.settings.serverId,
      channel: ch.settings.channel,
      kind: `line.${event}`,
      lineId: line.id,
      clipId: extra.clip?.id ?? line.clipId,
      data: { status: line.status, title: line.title, reason: extra.reason ?? null },
    });
  } catch (err) {
    ch.log.warn(`event not logged: ${errorText(err)}`);
  }
  return ev;
}

/** The rec-list as it is now. */
export function presentLines(ch: ChannelContext): PresentedLine[] {
  return ch.list.all().map((l) => copyLine(present(ch, l)));
}

export function channelStatus(ch: ChannelContext): ChannelStatus {
  const a = ch.active;
  const lines = ch.list.size;
  if (ch.closed) return { state: 'closed', line: null, curPoint: null, lines, detail: null };
  if (a) {
    const line = present(ch, a.line);
    if (a.line.status === 'recording') return { state: 'recording', line, curPoint: curPoint(ch, a), lines, detail: null };
    if (a.line.status === 'interrupted') return { state: 'interrupted', line, curPoint: curPoint(ch, a), lines, detail: a.line.reason };
    return { state: 'armed', line, curPoint: null, lines, detail: null };
  }
  const armed = ch.list.all().find((l) => l.status === 'armed');
  if (armed) return { state: 'armed', line: present(ch, armed), curPoint: null, lines, detail: null };
  if (ch.lastFailure) return { state: 'failed', line: null, curPoint: null, lines, detail: ch.lastFailure };
  return { state: 'idle', line: null, curPoint: null, lines, detail: null };
}

/** A line a message may carry: consumers downstream may change it without touching the rec-list. */
export function copyLine(l: PresentedLine): PresentedLine {
  return { ...l, attributes: { ...l.attributes }, origin: l.origin ? { ...l.origin } : null };
}
