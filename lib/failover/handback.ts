/**
 * Failback, on the restored server: the failover server gives the channels
 * back (a Handback message); this server records again what the failover server
 * records now, takes the epoch of the takeover (its commands count again), and
 * answers with a HandbackAck saying what it started or why it could not.
 *
 * No Node-RED import: the redundancy-server node owns one of these.
 */
import type { ValidateFunction } from 'ajv';
import { CommandError, errorText } from '../model/errors';
import { Handback, HandbackAck, LINK_VERSION, topicFor, validateHandback } from '../link/schemas';
import { ACTIVE_STATUSES } from '../model/reclist';
import type { LineControl, PresentedLine } from '../recorder/types';

/** The part of a recorder channel failback drives. */
export interface HandbackTarget extends Pick<LineControl, 'addLine' | 'updateLine' | 'startLine'> {
  lines(): PresentedLine[];
  /** What the channel records now (a line left interrupted by a crash does not hold the channel). */
  status?(): { state: string; line: { id: string } | null };
}

export interface HandbackLink {
  readonly epoch: number;
  setEpoch(epoch: number): void;
  subscribe(pattern: string, validate: ValidateFunction, handler: (topic: string, payload: unknown) => void): () => void;
  publish(topic: string, payload: unknown, qos?: 0 | 1): Promise<void>;
}

/** Record again, on this server, the lines the failover server records; never throws. */
export async function applyHandback(
  h: Handback,
  lookup: (channel: number) => HandbackTarget | undefined,
  o: { recordingWithinMs?: number; pollMs?: number } = {},
): Promise<{ ok: boolean; detail: string; started: number }> {
  if (h.drill) return { ok: true, detail: 'drill: nothing changed on this server', started: 0 };
  const notes: string[] = [];
  let ok = true;
  let started = 0;
  const waitFor: { ctl: HandbackTarget; id: string; title: string; channel: number }[] = [];
  for (const ch of h.channels) {
    const ctl = lookup(ch.channel);
    if (!ctl) {
      ok = false;
      notes.push(`channel ${ch.channel}: no recorder for it on this server`);
      continue;
    }
    for (const r of ch.recording) {
      try {
        const lines = ctl.lines();
        const mine = lines.find((l) => l.id === r.id);
        const st = ctl.status?.();
        const busy = st
          ? st.line && (st.state === 'recording' || st.state === 'interrupted') && st.line.id !== r.id
            ? lines.find((l) => l.id === st.line!.id)
            : undefined
          : lines.find((l) => (ACTIVE_STATUSES as readonly string[]).includes(l.status) && l.id !== r.id && l.status !== 'armed');
        if (mine && (mine.status === 'recording' || mine.status === 'armed')) {
          notes.push(`channel ${ch.channel}: "${r.title}" was still recording here`);
          started++;
          continue;
        }
        if (busy) {
          notes.push(`channel ${ch.channel}: "${busy.title}" records here, so "${r.title}" was not started`);
          continue;
        }
        let id = r.id;
        if (mine && mine.status !== 'stopped' && (mine.stopTime !== null || mine.duration !== null)) {
          // an interrupted line keeps the stop of its cut clip: it records on with the failover's planned stop
          await ctl.updateLine({ id, stopTime: r.stopTime ?? null, duration: null });
        }
        if (!mine || mine.status === 'stopped') {
          if (mine) id = `${r.id.slice(0, 48)}-fb${h.entryId}`.slice(0, 64);
          if (!lines.some((l) => l.id === id)) {
            await ctl.addLine({
              id,
              title: r.title.slice(0, 200) || 'untitled',
              group: r.group.slice(0, 64),
              ...(r.stopTime ? { stopTime: r.stopTime } : {}),
              attributes: { failbackOf: h.failoverServer, failbackEntry: h.entryId },
            });
          }
        }
        await ctl.startLine({ id });
        started++;
        waitFor.push({ ctl, id, title: r.title, channel: ch.channel });
        notes.push(`channel ${ch.channel}: "${r.title}" records again`);
      } catch (err) {
        ok = false;
        notes.push(`channel ${ch.channel}: "${r.title}" could not start: ${err instanceof CommandError ? err.message : errorText(err)}`);
      }
    }
  }
  // confirm only once the media flows here (a start is armed at once; its first frame follows):
  // the failover server stops after this answer
  const within = o.recordingWithinMs ?? 15000;
  const until = Date.now() + within;
  for (const w of waitFor) {
    for (;;) {
      let l: PresentedLine | undefined;
      try {
        l = w.ctl.lines().find((x) => x.id === w.id);
      } catch {
        break;
      }
      if (!l || l.status === 'recording') break;
      if (l.status === 'failed' || Date.now() > until) {
        notes.push(`channel ${w.channel}: "${w.title}" is ${l.status}${l.reason ? ` (${l.reason})` : ''}, not recording yet`);
        break;
      }
      await new Promise((r) => setTimeout(r, o.pollMs ?? 100));
    }
  }
  return { ok, detail: notes.join('; ') || 'nothing was recording', started };
}

export class HandbackResponder {
  private unsubscribe: (() => void) | null = null;
  constructor(
    private readonly link: HandbackLink,
    private readonly me: { group: string; serverId: string },
    private readonly lookup: (channel: number) => HandbackTarget | undefined,
    private readonly log: { info(m: string): void; warn(m: string): void },
  ) {}

  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.link.subscribe(topicFor(this.me.group, this.me.serverId, 'handback'), validateHandback, (_t, payload) => {
      if (payload === null) return;
      const h = payload as Handback;
      if (h.failedServer !== this.me.serverId) return;
      void this.handle(h);
    });
  }

  private async handle(h: Handback): Promise<void> {
    try {
      if (!h.drill) this.link.setEpoch(h.epoch);
      const r = await applyHandback(h, this.lookup);
      this.log.info(`failback from ${h.failoverServer} (entry ${h.entryId}${h.drill ? ', drill' : ''}): ${r.detail}`);
      const ack: HandbackAck = {
        v: LINK_VERSION,
        server: this.me.serverId,
        entryId: h.entryId,
        ok: r.ok,
        detail: r.detail.slice(0, 10000),
        started: r.started,
        ts: Date.now(),
      };
      await this.link.publish(topicFor(this.me.group, h.failoverServer, 'handback-ack'), ack);
    } catch (err) {
      this.log.warn(`failback from ${h.failoverServer}: cannot answer: ${errorText(err)}`);
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
