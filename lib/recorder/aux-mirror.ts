/**
 * The Aux line on a backup server: backup-link's updates of a main line
 * applied to the Aux line that mirrors it.
 */
import { CommandError } from '../model/errors';
import { AttributeValue, Line, LineOrigin } from '../model/reclist';
import { LineInput } from '../model/commands';
import { ChannelContext, lineName } from './context';
import { adoptMainInPoint, verifyTwin } from './aux-twin';
import { cancelIncoming, exactStopFrames, handingOver, isIncoming, stopActive } from './cuts';
import { lineEvent } from './presentation';
import { startRecording } from './run';
import { AuxUpdate, ChannelEvent } from './types';

export async function applyMirrorMessage(ch: ChannelContext, m: AuxUpdate): Promise<ChannelEvent[]> {
  if (ch.closed) throw new CommandError('the recorder is closing', 'ECLOSED');
  const now = ch.clock();
  const evs: ChannelEvent[] = [];
  const aux = ch.list.all().find((l) => l.origin && l.origin.server === m.from.server && l.origin.channel === m.from.channel && l.origin.lineId === m.lineId);
  if (aux && (aux.origin!.seq ?? -1) >= m.seq) return evs; // a repeat or an older message
  const origin: LineOrigin = { server: m.from.server, channel: m.from.channel, lineId: m.lineId, seq: m.seq };
  if (m.removed || !m.line) {
    if (!aux) return evs;
    const a = ch.active;
    if ((a && a.line.id === aux.id) || handingOver(ch, aux.id)) {
      // the main removed a line we record: keep recording until its stop time, keep the line
      ch.saveLine({ ...aux, origin, updatedAt: now });
      return evs;
    }
    if (isIncoming(ch, aux.id)) await cancelIncoming(ch);
    const { line, renumbered } = ch.list.planRemove({ id: aux.id }, 'link');
    ch.cat.transaction(() => {
      ch.cat.putLines(ch.settings.serverId, ch.settings.channel, ch.list.changedIn(renumbered), line.id);
      ch.list.commit(renumbered);
      evs.push(lineEvent(ch, 'removed', line));
    });
    ch.schedule();
    return evs;
  }
  const ml = m.line;
  let line = aux;
  if (!line) {
    if (ch.list.byId(m.lineId))
      throw new CommandError(`cannot mirror line ${m.lineId} of ${m.from.server}: this rec-list has a line with that id that is not its Aux twin`, 'EEXIST');
    const { line: added, renumbered } = ch.list.planAdd(
      { id: m.lineId, title: ml.title, group: ml.group, attributes: ml.attributes, start: 'manual', backup: 'aux' },
      now,
      'link',
      origin,
    );
    ch.cat.transaction(() => {
      ch.commitList(renumbered);
      evs.push(lineEvent(ch, 'added', added));
    });
    line = added;
  }
  // a twin pre-rolling to take over is as good as started: it begins at the main's planned instant
  const active = ch.active && ch.active.line.id === line.id ? ch.active : isIncoming(ch, line.id);
  const change: LineInput = { id: line.id, title: ml.title, group: ml.group, attributes: mergeAttributes(line.attributes, ml.attributes) };
  const timedAhead = ml.start === 'time' && ml.status === 'armed' && ml.startTime !== null && ml.startTime > now;
  if (!active && line.status !== 'stopped') {
    // a timed main line not started yet: the Aux line is timed too, so it records even if the main dies first
    if (timedAhead) {
      change.start = 'time';
      change.startTime = ml.startTime!;
      if (ml.stopTime !== null) change.stopTime = ml.stopTime;
      else if (ml.duration !== null) change.duration = ml.duration;
    } else if (line.start === 'time' && ml.start === 'manual') {
      change.start = 'manual';
    }
  }
  if (active && ml.inPoint) {
    active.mainInPoint = ml.inPoint;
    if (ml.startTime !== null) active.mainStartedAt = ml.startTime;
    if (adoptMainInPoint(ch, active)) ch.persistClip(active.clip);
  }
  if (active) {
    if (ml.stopTime !== null && ml.stopTime !== line.stopTime && ml.stopTime > now) change.stopTime = ml.stopTime;
    if (ml.duration !== null && ml.stopTime === null && ml.duration !== line.duration) change.duration = ml.duration;
  }
  const { line: updated, renumbered } = ch.list.planUpdate(change, now, 'link');
  const withOrigin: Line = { ...updated, origin };
  ch.cat.transaction(() => {
    ch.commitList(renumbered.map((l) => (l.id === withOrigin.id ? withOrigin : l)));
    if (active) active.line = withOrigin;
    evs.push(lineEvent(ch, 'updated', withOrigin));
  });
  line = withOrigin;
  const mainRecording = ml.status === 'recording' || ml.status === 'interrupted' || (ml.status === 'armed' && ml.startTime !== null && !timedAhead);
  if (!active && mainRecording && line.status !== 'stopped') {
    const other = ch.active;
    if (other)
      throw new CommandError(`cannot start the Aux twin of ${m.from.server} line ${m.lineId}: ${lineName(other.line)} is recording on this channel`, 'EBUSY');
    const anchor = ml.startTime ?? now;
    evs.push(await startRecording(ch, ch.list.byId(line.id)!, undefined, anchor));
  } else if (active && !active.stopping && (ml.status === 'stopped' || ml.status === 'failed' || ml.status === 'ready')) {
    // the main stops (or stopped) at its stop time: so does the twin, frame-exact, by its own timer;
    // a stop time long past (the main's message came late) stops it now, keeping what it recorded since
    const late = ml.stopTime === null || ml.stopTime + (exactStopFrames(ch, active, ml.stopTime) === null ? 0 : ch.settings.stopTailMs) <= now;
    if (!late) {
      if (line.stopTime !== ml.stopTime) {
        const next: Line = { ...line, stopTime: ml.stopTime, duration: null, updatedAt: now };
        ch.saveLine(next);
      }
    } else {
      evs.push(await stopActive(ch, `stopped with its main line on ${m.from.server}`, undefined, undefined, active));
    }
  }
  if (m.clip && ml.status === 'stopped') {
    const main = { server: m.from.server, channel: m.from.channel, lineId: m.lineId };
    const still = ch.active && ch.active.line.id === line.id ? ch.active : (handingOver(ch, line.id) ?? null);
    if (still) still.twinPending = { summary: m.clip, main };
    else {
      const auxLine = ch.list.byId(line.id)!;
      const clip = auxLine.clipId ? ch.cat.clip(auxLine.clipId) : undefined;
      if (clip && clip.state !== 'recording' && clip.state !== 'suspended' && !clip.twin) {
        const v = verifyTwin(ch, clip, m.clip, main);
        if (v) evs.push(v);
      }
    }
  }
  ch.schedule();
  return evs;
}

/** Attributes as the main has them: keys the main dropped are dropped here too. */
function mergeAttributes(current: Record<string, AttributeValue>, main: Record<string, AttributeValue>): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = { ...main };
  for (const k of Object.keys(current)) if (!(k in main)) out[k] = null;
  return out;
}
