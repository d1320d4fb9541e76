/**
 * ONVIF notifications as plain objects: the event types, and reading the
 * NotificationMessages of a PullMessagesResponse (or a Notify) from the raw
 * XML. Pure, no Node-RED import; lib/onvif/events.ts subscribes and uses this.
 */
import { xmlUnescape } from './shared';

export type OnvifEventKind = 'motion' | 'digital-input' | 'tamper' | 'other';

export type OnvifPropertyOperation = 'Initialized' | 'Changed' | 'Deleted';

export type SimpleValue = string | number | boolean;

/** One ONVIF notification, flat. */
export interface OnvifEvent {
  /** Normalised topic: the ONVIF topic namespace is always 'tns1:', e.g. 'tns1:VideoSource/MotionAlarm'. */
  topic: string;
  kind: OnvifEventKind;
  /** SimpleItems of the message's Source (and Key), values as the camera wrote them. */
  source: Record<string, string>;
  /** SimpleItems of the message's Data; 'true'/'false' become booleans, plain decimals numbers. */
  data: Record<string, SimpleValue>;
  /** The message's UtcTime as ISO 8601 (as sent when it cannot be read; null when absent). */
  utcTime: string | null;
  /** UtcTime as UTC epoch milliseconds (null when absent or unreadable). */
  time: number | null;
  /** PropertyOperation; null for events that are not about a property. */
  property: OnvifPropertyOperation | null;
}

// ---------------------------------------------------------------------------
// Parsing (pure, exported for tests)

const ONVIF_TOPICS_NS = 'http://www.onvif.org/ver10/topics';

/** First segments of the topics in the ONVIF topic namespace (for topics whose prefix is not declared). */
const ONVIF_TOPIC_ROOTS = new Set(
  [
    'VideoSource',
    'VideoEncoder',
    'VideoAnalytics',
    'VideoOutput',
    'AudioSource',
    'AudioAnalytics',
    'Device',
    'RuleEngine',
    'PTZController',
    'Media',
    'Monitoring',
    'RecordingConfig',
    'RecordingHistory',
    'UserAlarm',
    'AccessControl',
    'AccessPoint',
    'Door',
    'Configuration',
    'Profile',
    'Credential',
    'Receiver',
  ].map((s) => s.toLowerCase()),
);

/** Attributes of a start tag's attribute text, by local name. */
function attributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const name = m[1].includes(':') ? m[1].slice(m[1].indexOf(':') + 1) : m[1];
    if (m[1].startsWith('xmlns')) continue;
    out[name] = xmlUnescape(m[2] ?? m[3] ?? '');
  }
  return out;
}

/** prefix -> namespace URI for every xmlns:prefix declaration in the document. */
export function namespaceMap(xml: string): Map<string, string> {
  const map = new Map<string, string>();
  const re = /\bxmlns:([\w.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    // The first declaration of a prefix wins (they rarely differ within one answer).
    if (!map.has(m[1])) map.set(m[1], (m[2] ?? m[3] ?? '').trim());
  }
  return map;
}

/** Elements with this local name (any prefix): their attribute text and content ('' when self-closing). */
export function elements(xml: string, localName: string): { attrs: string; body: string }[] {
  const out: { attrs: string; body: string }[] = [];
  const re = new RegExp(`<([\\w.-]+:)?${localName}(\\s[^>]*?)?(/>|>)`, 'g');
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    const attrs = m[2] ?? '';
    if (m[3] === '/>') {
      out.push({ attrs, body: '' });
      continue;
    }
    const close = `</${m[1] ?? ''}${localName}>`;
    const end = xml.indexOf(close, re.lastIndex);
    if (end < 0) continue; // unterminated: skip it
    out.push({ attrs, body: xml.slice(re.lastIndex, end) });
    re.lastIndex = end + close.length;
  }
  return out;
}

/** Text of the first element with this local name, trimmed and unescaped. */
export function elementText(xml: string, localName: string): string | undefined {
  const e = elements(xml, localName)[0];
  if (!e) return undefined;
  return xmlUnescape(e.body.replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1').replace(/<[^>]*>/g, '')).trim();
}

/**
 * The topic with the ONVIF topic namespace written 'tns1:' whatever prefix
 * the camera used; other namespaces keep their prefix. A topic whose prefix
 * is not declared (or that has none) gets 'tns1:' when its root is an ONVIF
 * topic root (VideoSource, Device, RuleEngine...).
 */
export function normaliseTopic(topic: string, namespaces: Map<string, string> = new Map()): string {
  const parts = topic
    .trim()
    .split('/')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p !== '.');
  return parts
    .map((part, i) => {
      const colon = part.indexOf(':');
      const prefix = colon >= 0 ? part.slice(0, colon) : '';
      const name = colon >= 0 ? part.slice(colon + 1) : part;
      const uri = prefix ? namespaces.get(prefix) : undefined;
      if (uri !== undefined) return (uri.replace(/\/+$/, '') === ONVIF_TOPICS_NS ? 'tns1:' : `${prefix}:`) + name;
      if (i === 0 && ONVIF_TOPIC_ROOTS.has(name.toLowerCase()) && (!prefix || /^(tns\d*|ns\d*|onvif)$/i.test(prefix))) return `tns1:${name}`;
      return part;
    })
    .join('/');
}

/** What a site usually wires: motion, a digital input, tampering; everything else is 'other'. */
export function eventKind(topic: string): OnvifEventKind {
  const t = topic.replace(/[\w.-]+:/g, '').toLowerCase();
  if (/(^|\/)(tamper|tamperdetector|globalscenechange|imagetooblurry|imagetoodark|imagetoobright|scenechange|defocus)(\/|$)/.test(t)) return 'tamper';
  if (/(^|\/)(digitalinput|virtualinput|logicalinput|alarminput)(\/|$)/.test(t) || /(^|\/)io\/(port|input)(\/|$)/.test(t)) return 'digital-input';
  if (/(^|\/)(motionalarm|cellmotiondetector|motionregiondetector|motiondetector|motiondetection|motion)(\/|$)/.test(t)) return 'motion';
  return 'other';
}

function typed(value: string): SimpleValue {
  const v = value.trim();
  if (/^true$/i.test(v)) return true;
  if (/^false$/i.test(v)) return false;
  if (/^-?(0|[1-9]\d{0,14})(\.\d+)?$/.test(v)) return Number(v);
  return value;
}

function simpleItems(block: string): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const item of elements(block, 'SimpleItem')) {
    const a = attributes(item.attrs);
    if (a.Name === undefined) continue;
    out.push({ name: a.Name, value: a.Value ?? '' });
  }
  return out;
}

const PROPERTY_OPERATIONS: Record<string, OnvifPropertyOperation> = { initialized: 'Initialized', changed: 'Changed', deleted: 'Deleted' };

/**
 * The notifications in a PullMessagesResponse (or a Notify), flat.
 * Messages without a topic are left out; nothing here throws on bad input.
 */
export function parseNotifications(xml: string): OnvifEvent[] {
  if (typeof xml !== 'string' || !xml) return [];
  const namespaces = namespaceMap(xml);
  const out: OnvifEvent[] = [];
  for (const nm of elements(xml, 'NotificationMessage')) {
    try {
      const rawTopic = elementText(nm.body, 'Topic');
      if (!rawTopic) continue;
      const topic = normaliseTopic(rawTopic, namespaces);
      if (!topic) continue;
      // wsnt:Message wraps tt:Message: the one with UtcTime / PropertyOperation is the event (else the whole block).
      let attrs: Record<string, string> = {};
      let body = nm.body;
      const re = /<(?:[\w.-]+:)?Message(\s[^>]*?)?\/?>/g;
      for (let m = re.exec(nm.body); m; m = re.exec(nm.body)) {
        const a = attributes(m[1] ?? '');
        if (a.UtcTime !== undefined || a.PropertyOperation !== undefined) {
          attrs = a;
          body = nm.body.slice(re.lastIndex);
          break;
        }
      }
      const source: Record<string, string> = {};
      for (const block of [...elements(body, 'Source'), ...elements(body, 'Key')]) {
        for (const { name, value } of simpleItems(block.body)) source[name] = value;
      }
      const data: Record<string, SimpleValue> = {};
      for (const block of elements(body, 'Data')) {
        for (const { name, value } of simpleItems(block.body)) data[name] = typed(value);
      }
      const rawTime = attrs.UtcTime?.trim();
      const ms = rawTime ? Date.parse(rawTime) : NaN;
      out.push({
        topic,
        kind: eventKind(topic),
        source,
        data,
        utcTime: rawTime ? (Number.isFinite(ms) ? new Date(ms).toISOString() : rawTime) : null,
        time: Number.isFinite(ms) ? ms : null,
        property: PROPERTY_OPERATIONS[(attrs.PropertyOperation ?? '').trim().toLowerCase()] ?? null,
      });
    } catch {
      /* a message we cannot read is left out */
    }
  }
  return out;
}
