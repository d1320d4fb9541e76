/**
 * Which ONVIF events are delivered: the topic filter (kinds and topics) and
 * "only changes". Pure, no Node-RED import; lib/onvif/events.ts applies them.
 */
import { normaliseTopic, OnvifEvent, OnvifEventKind } from './event-parsing';

// ---------------------------------------------------------------------------
// Topic filter and "only changes"

const KINDS: OnvifEventKind[] = ['motion', 'digital-input', 'tamper', 'other'];
const SEGMENT = /^([\w.*-]+:)?[\w.*-]+$/;

export type TopicFilter = (event: Pick<OnvifEvent, 'topic' | 'kind'>) => boolean;

/**
 * A filter from text: entries separated by commas or spaces, each one a kind
 * (motion, digital-input, tamper, other) or a topic such as
 * 'tns1:VideoSource/MotionAlarm' (any prefix for the ONVIF namespace, or
 * none). A topic matches itself and the topics below it; '*' stands for any
 * part of one level. Case is ignored. Empty text: every event. Throws an
 * Error with a sentence for a malformed entry.
 */
export function parseTopicFilter(text: string | undefined): TopicFilter {
  const entries = (text ?? '').split(/[\s,]+/).filter(Boolean);
  if (!entries.length) return () => true;
  const kinds = new Set<OnvifEventKind>();
  const patterns: RegExp[] = [];
  for (const entry of entries) {
    const lower = entry.toLowerCase();
    if ((KINDS as string[]).includes(lower)) {
      kinds.add(lower as OnvifEventKind);
      continue;
    }
    const segments = entry.replace(/\/+$/, '').split('/');
    if (!segments.every((s) => SEGMENT.test(s))) {
      throw new Error(`Topic filter entry "${entry}" is neither an event kind (${KINDS.join(', ')}) nor a topic like tns1:VideoSource/MotionAlarm`);
    }
    const topic = normaliseTopic(segments.join('/'));
    const source = topic
      .split('/')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*'))
      .join('/');
    patterns.push(new RegExp(`^${source}(/|$)`, 'i'));
  }
  return (event) => kinds.has(event.kind) || patterns.some((re) => re.test(event.topic));
}

/**
 * "Only changes": remembers the last data of each property (topic + source)
 * and lets an event through only when it changes something.
 * - Changed: passes unless it repeats the last known data.
 * - Initialized (sent by the camera for every property at each new
 *   subscription): passes only when we knew the property and it differs, so
 *   a resubscription does not repeat the current states, but a change that
 *   happened while the subscription was down is not lost.
 * - Deleted: passes when the property was known.
 * - Events that are not about a property always pass.
 */
export class ChangeTracker {
  private readonly last = new Map<string, string>();

  accept(event: OnvifEvent): boolean {
    if (!event.property) return true;
    const key = `${event.topic}\u0000${stableJson(event.source)}`;
    const before = this.last.get(key);
    if (event.property === 'Deleted') {
      this.last.delete(key);
      return before !== undefined;
    }
    const now = stableJson(event.data);
    this.last.set(key, now);
    if (event.property === 'Initialized') return before !== undefined && before !== now;
    return before !== now;
  }
}

function stableJson(o: Record<string, unknown>): string {
  return JSON.stringify(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]]),
  );
}
