/**
 * gpio-device: the config node that owns one Modbus connection (lib/studio/gpio-device.ts).
 * gpio-in and gpio-out use its device and listen to its 'state' events; they
 * remove their listeners on close, so a partial deploy leaks nothing.
 */
import type { NodeAPI, NodeDef } from 'node-red';
import type { Request, Response } from 'express';
import { GpioDevice, GpioState } from '../../lib/studio/gpio-device';
import { GpioDeviceOptions } from '../../lib/studio/gpio-options';
import { errorText } from '../../lib/model/errors';
import { resolveEnvFields } from '../shared/env-field';
import type { GpioDeviceNode } from '../shared/types';

interface DeviceDef extends NodeDef {
  transport: 'tcp' | 'rtu';
  host: string;
  port: string | number;
  serialPath: string;
  baudRate: string | number;
  parity: 'none' | 'even' | 'odd';
  unitId: string | number;
  pollMs: string | number;
  timeoutMs: string | number;
  queueMax: string | number;
}

/** Every device of this process by config node id, for the diagnostics route. */
const devices = new Map<string, GpioDevice>();

function num(v: unknown, dflt: number): number {
  if (v === undefined || v === null || v === '') return dflt;
  return Number(v);
}

export = function (RED: NodeAPI): void {
  function GpioDeviceConfig(this: GpioDeviceNode, def: DeviceDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    node.device = null;
    node.configError = null;
    let host: string;
    try {
      host = resolveEnvFields(RED, node, def, ['host']).host;
    } catch (err) {
      node.configError = errorText(err);
      node.error(RED._('gpio-device.errors.config', { error: node.configError }));
      return;
    }
    const o: GpioDeviceOptions = {
      transport: def.transport === 'rtu' ? 'rtu' : 'tcp',
      host: String(host ?? '').trim() || undefined,
      port: num(def.port, 502),
      serialPath: String(def.serialPath ?? '').trim() || undefined,
      baudRate: num(def.baudRate, 9600),
      parity: def.parity || 'none',
      unitId: num(def.unitId, 1),
      pollMs: num(def.pollMs, 50),
      timeoutMs: num(def.timeoutMs, 1000),
      queueMax: num(def.queueMax, 32),
    };
    let device: GpioDevice;
    try {
      device = new GpioDevice(o);
    } catch (err) {
      node.configError = errorText(err);
      node.error(RED._('gpio-device.errors.config', { error: node.configError }));
      return;
    }
    node.device = device;
    node.label = device.label;
    devices.set(node.id, device);
    // rate-limited log: a flapping link logs its first break, then one line a minute
    let lastWarn = 0;
    device.on('state', (s: GpioState, reason: string) => {
      if (s === 'connected') node.log(RED._('gpio-device.log.connected', { device: device.label }));
      else if (s === 'broken' && Date.now() - lastWarn > 60000) {
        lastWarn = Date.now();
        node.warn(RED._('gpio-device.log.broken', { device: device.label, reason }));
      }
    });
    device.start();
    node.on('close', (_removed: boolean, done: () => void) => {
      devices.delete(node.id);
      device
        .stop()
        .catch(() => undefined)
        .then(() => {
          device.removeAllListeners();
          done();
        });
    });
  }
  RED.nodes.registerType('gpio-device', GpioDeviceConfig as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);

  // Diagnostics: state, queue depth, counters and what each device holds live
  RED.httpAdmin.get('/twinrec/gpio', RED.auth.needsPermission('redundancy.read'), (_req: Request, res: Response) => {
    res.json(
      [...devices.entries()].map(([id, d]) => ({
        id,
        device: d.label,
        state: d.state,
        error: d.error || null,
        pollMs: d.pollMs,
        queueDepth: d.queueDepth,
        queueMax: d.queueMax,
        stats: d.stats,
        resources: d.resources(),
      })),
    );
  });
};
