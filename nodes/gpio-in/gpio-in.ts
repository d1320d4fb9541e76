/**
 * gpio-in: a message on each (debounced) change of a discrete input, a coil,
 * a register or one bit of a register of a gpio-device.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { errorText } from '../../lib/model/errors';
import { GpioState } from '../../lib/studio/gpio-device';
import { pointKey } from '../../lib/studio/gpio-points';
import { DebouncedInput, EdgeFilter, InputChange, parsePoint } from '../../lib/studio/gpio-signal';
import { linkStatus } from '../shared/gpio-status';
import type { GpioDeviceNode } from '../shared/types';

interface InDef extends NodeDef {
  device: string;
  area: string;
  address: string | number;
  bit: string | number;
  debounce: string | number;
  edges: EdgeFilter;
  sendInitial: boolean;
  topic: string;
}

export = function (RED: NodeAPI): void {
  function GpioIn(this: Node, def: InDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (k: string, sub?: Record<string, string | number>) => RED._(`gpio-in.${k}`, sub);
    const cfg = RED.nodes.getNode(def.device) as GpioDeviceNode | null;
    const fail = (text: string) => {
      node.error(text);
      node.status({ fill: 'red', shape: 'ring', text: text.slice(0, 60) });
    };
    if (!cfg || !cfg.device) {
      fail(cfg ? t('errors.badDevice', { error: cfg.configError ?? '?' }) : t('errors.noDevice'));
      return;
    }
    const device = cfg.device;
    let point;
    try {
      point = parsePoint(def.area || 'discrete', def.address, def.area === 'holding' || def.area === 'input' ? def.bit : undefined);
    } catch (err) {
      fail(t('errors.point', { error: errorText(err) }));
      return;
    }
    const debounceMs = Number(def.debounce ?? 0);
    if (!(debounceMs >= 0 && debounceMs <= 60000)) {
      fail(t('errors.debounce'));
      return;
    }
    const topic = def.topic || `gpio/${pointKey(point)}`;
    const showValue = (v: unknown) =>
      node.status({ fill: 'green', shape: v === true || (typeof v === 'number' && v !== 0) ? 'dot' : 'ring', text: t('status.value', { value: String(v) }) });
    const input = new DebouncedInput(
      { debounceMs, filter: def.edges || 'both', sendInitial: def.sendInitial === true },
      (c: InputChange) => {
        const msg: NodeMessage & Record<string, unknown> = {
          topic,
          payload: c.value,
          edge: c.edge,
          previous: c.previous,
          point: { ...point },
          device: device.label,
          seenAt: c.seenAt,
          at: c.at,
        };
        node.send(msg);
      },
      showValue,
    );
    const onState = (_s: GpioState) => {
      const st = linkStatus(device, t);
      if (st) node.status(st);
      else if (input.value !== null) showValue(input.value);
      else node.status({ fill: 'green', shape: 'ring', text: t('status.connected') });
    };
    device.on('state', onState);
    onState(device.state);
    // the status shows the input once the debounce accepted it (the input calls showValue)
    const unwatch = device.watch(point, (v, at) => input.feed(v, at));
    node.on('close', (_removed: boolean, done: () => void) => {
      unwatch();
      input.stop();
      device.removeListener('state', onState);
      done();
    });
  }
  RED.nodes.registerType('gpio-in', GpioIn as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
