/**
 * gpio-out: sets a coil (or a holding register) of a gpio-device from
 * msg.payload, or follows a recorder channel of this server (REC tally,
 * standby lamp, fault alarm).
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { errorText } from '../../lib/model/errors';
import { GpioError, GpioState } from '../../lib/studio/gpio-device';
import { FOLLOW_MODES, FollowMode, outputValue, parsePoint, RecorderFollower } from '../../lib/studio/gpio-signal';
import { linkStatus } from '../shared/gpio-status';
import { recorderChannels } from '../shared/registry';
import type { GpioDeviceNode, RedundancyServerNode } from '../shared/types';

interface OutDef extends NodeDef {
  device: string;
  target: 'coil' | 'holding';
  address: string | number;
  follow: '' | FollowMode;
  server: string;
  channel: string | number;
  invert: boolean;
}

type Send = (m: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

export = function (RED: NodeAPI): void {
  function GpioOut(this: Node, def: OutDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (k: string, sub?: Record<string, string | number>) => RED._(`gpio-out.${k}`, sub);
    let setupError: string | null = null;
    const cfg = RED.nodes.getNode(def.device) as GpioDeviceNode | null;
    const target = def.target === 'holding' ? 'holding' : 'coil';
    let address = 0;
    try {
      address = parsePoint(target, def.address).address;
    } catch (err) {
      setupError = t('errors.point', { error: errorText(err) });
    }
    if (!cfg || !cfg.device) setupError = cfg ? t('errors.badDevice', { error: cfg.configError ?? '?' }) : t('errors.noDevice');
    const follow = def.follow || '';
    let serverId = '';
    const channel = Number(def.channel);
    if (!setupError && follow) {
      const srv = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
      if (!FOLLOW_MODES.includes(follow as FollowMode)) setupError = t('errors.follow');
      else if (!srv || !srv.identity) setupError = t('errors.noServer');
      else if (!Number.isInteger(channel) || channel < 1 || channel > 999) setupError = t('errors.channel');
      else serverId = srv.identity.serverId;
      if (!setupError && target !== 'coil') setupError = t('errors.followCoil');
    }
    if (setupError || !cfg?.device) {
      const text = setupError ?? t('errors.noDevice');
      node.error(text);
      node.status({ fill: 'red', shape: 'ring', text: text.slice(0, 60) });
      node.on('input', (_msg: NodeMessage, _send: Send, done: Done) => done(new Error(text)));
      return;
    }
    const device = cfg.device;
    const invert = def.invert === true;
    /** What the output should be: set by msg or by the recorder, written again after a reconnect. */
    let wanted: boolean | number | null = null;
    let written: boolean | number | null = null;
    let closed = false;
    const show = () => {
      const st = linkStatus(device, t);
      if (st) return node.status(st);
      if (wanted === null) return node.status({ fill: 'green', shape: 'ring', text: t('status.connected') });
      const on = wanted === true || (typeof wanted === 'number' && wanted !== 0);
      node.status({
        fill: written === wanted ? 'green' : 'yellow',
        shape: on ? 'dot' : 'ring',
        text: t(on ? 'status.on' : 'status.off', { value: String(wanted) }),
      });
    };
    const write = (v: boolean | number): Promise<void> => {
      wanted = v;
      const p = target === 'coil' ? device.writeCoil(address, v as boolean) : device.writeRegister(address, v as number);
      return p.then(
        () => {
          if (wanted === v) written = v;
          if (!closed) show();
        },
        (err: unknown) => {
          if (!closed) show();
          throw err;
        },
      );
    };
    let follower: RecorderFollower | null = null;
    if (follow) {
      follower = new RecorderFollower(recorderChannels, serverId, channel, follow as FollowMode, (on, why) => {
        const v = on !== invert;
        node.debug(`lamp ${v ? 'on' : 'off'}: ${why}`);
        if (device.state !== 'connected') {
          wanted = v; // written when the device is back
          show();
          return;
        }
        write(v).catch((err: unknown) => node.warn(t('errors.write', { error: errorText(err) })));
      });
    }
    const onState = (s: GpioState) => {
      if (s === 'connected' && wanted !== null && !closed) {
        // the device may have lost its outputs while offline: set them again
        written = null;
        write(wanted).catch((err: unknown) => node.warn(t('errors.write', { error: errorText(err) })));
      }
      show();
    };
    device.on('state', onState);
    show();

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      let v: boolean | number;
      try {
        v = outputValue(msg.payload, target);
        if (target === 'coil' && invert) v = !v;
      } catch (err) {
        node.status({ fill: 'red', shape: 'ring', text: errorText(err).slice(0, 60) });
        done(err as Error);
        return;
      }
      write(v).then(
        () => done(),
        (err: unknown) => {
          const e = err instanceof GpioError ? err : new Error(errorText(err));
          node.status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
          done(e);
        },
      );
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      follower?.stop();
      device.removeListener('state', onState);
      done();
    });
  }
  RED.nodes.registerType('gpio-out', GpioOut as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
