/**
 * studio-control: studio control panels over MQTT. Between Node-RED's own
 * `mqtt in` (requests) and `mqtt out` (replies and retained state), it drives
 * the recorders of this Node-RED. The topic layout, schemas and the work are in
 * lib/studio/studio-control.ts; this node reads its config and maps results to
 * send/status/done.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { errorText } from '../../lib/model/errors';
import { Outgoing, StudioControl } from '../../lib/studio/studio-control';
import { DEFAULT_PREFIX, subscription } from '../../lib/studio/studio-requests';
import { recorderChannels } from '../shared/registry';

interface StudioDef extends NodeDef {
  prefix: string;
  prefixType?: string;
  server: string;
  serverType?: string;
}

type Send = (msg: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

/** How long a refusal stays on the node's status before the normal status returns. */
const ERROR_SHOWN_MS = 3000;

export = function (RED: NodeAPI): void {
  function StudioControlNode(this: Node, def: StudioDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`studio-control.${key}`, sub);
    let control: StudioControl | null = null;
    let setupError: string | null = null;
    let errorUntil = 0;
    let statusTimer: NodeJS.Timeout | null = null;
    let lastShown = '';

    const toMsg = (o: Outgoing): NodeMessage =>
      ({
        topic: o.topic,
        payload: o.payload,
        retain: o.retain,
        qos: o.qos,
        ...(o.correlationData ? { correlationData: o.correlationData } : {}),
      }) as NodeMessage;

    try {
      const value = (v: string, type: string | undefined, fallback: string): string => {
        const raw = type === 'env' ? RED.util.evaluateNodeProperty(v, 'env', node, {} as NodeMessage) : v;
        const s = raw === undefined || raw === null ? '' : String(raw).trim();
        return s || fallback;
      };
      const prefix = value(def.prefix ?? '', def.prefixType, DEFAULT_PREFIX);
      const server = value(def.server ?? '', def.serverType, '');
      control = new StudioControl({ prefix, server: server || null }, recorderChannels, (o) => node.send(toMsg(o)), { warn: (m) => node.warn(m) });
      node.debug(`answers ${subscription(control.prefix, control.server)}`);
    } catch (err) {
      setupError = t('errors.config', { error: errorText(err) });
      node.error(setupError);
      node.status({ fill: 'red', shape: 'ring', text: shorten(setupError) });
    }

    const showStatus = () => {
      if (!control || Date.now() < errorUntil) return;
      const n = control.channels().length;
      const text = n ? t('status.serving', { n, prefix: control.prefix }) : t('status.noRecorder', { prefix: control.prefix });
      if (text === lastShown) return;
      lastShown = text;
      node.status({ fill: n ? 'green' : 'yellow', shape: n ? 'dot' : 'ring', text: shorten(text) });
    };
    if (control) {
      showStatus();
      statusTimer = setInterval(showStatus, 1000);
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      if (!control) {
        const err = new Error(t('errors.notReady', { error: setupError ?? '' }));
        node.status({ fill: 'red', shape: 'ring', text: shorten(err.message) });
        done(err);
        return;
      }
      const m = msg as NodeMessage & { retain?: unknown; responseTopic?: unknown; correlationData?: unknown };
      control
        .handle(m.topic, m.payload, { retained: m.retain === true, responseTopic: m.responseTopic, correlationData: m.correlationData })
        .then((r) => {
          if (r.kind === 'ignored') {
            node.debug(r.why);
            done();
            return;
          }
          if (r.reply) send(toMsg(r.reply));
          if (r.kind === 'ok') {
            errorUntil = 0;
            lastShown = '';
            showStatus();
            done();
            return;
          }
          errorUntil = Date.now() + ERROR_SHOWN_MS;
          lastShown = '';
          node.status({ fill: 'red', shape: 'ring', text: shorten(r.error.message) });
          done(r.error);
        })
        .catch((err: unknown) => done(err instanceof Error ? err : new Error(errorText(err))));
    });

    node.on('close', (done: () => void) => {
      if (statusTimer) clearInterval(statusTimer);
      statusTimer = null;
      control?.close();
      control = null;
      done();
    });
  }

  function shorten(s: string, max = 60): string {
    return s.length > max ? `${s.slice(0, max - 3)}...` : s;
  }

  RED.nodes.registerType('studio-control', StudioControlNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
