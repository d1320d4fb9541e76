/**
 * onvif-event: the events of an onvif-camera (motion, digital inputs,
 * tampering...) as messages, through the pull-point subscription of
 * lib/onvif/events.ts. Thin: reads the config, maps events to messages and
 * the subscription's state to the node status.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { errorText } from '../../lib/model/errors';
import type { OnvifCameraState } from '../../lib/onvif/camera';
import type { OnvifEvent } from '../../lib/onvif/event-parsing';
import { OnvifEvents, OnvifEventsState } from '../../lib/onvif/events';
import type { OnvifCameraNode } from '../shared/types';

interface EventDef extends NodeDef {
  camera: string;
  filter: string;
  onlyChanges: boolean;
}

export = function (RED: NodeAPI): void {
  function OnvifEventNode(this: Node, def: EventDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (k: string, sub?: Record<string, string | number>) => RED._(`onvif-event.${k}`, sub);
    const fail = (text: string) => {
      node.error(text);
      node.status({ fill: 'red', shape: 'ring', text: text.slice(0, 60) });
    };
    const cfg = RED.nodes.getNode(def.camera) as OnvifCameraNode | null;
    if (!cfg || !cfg.camera) {
      fail(cfg ? t('errors.badCamera', { error: cfg.configError ?? '?' }) : t('errors.noCamera'));
      return;
    }
    const camera = cfg.camera;
    let events: OnvifEvents;
    try {
      events = new OnvifEvents(
        { ...camera.connection, filter: def.filter || '', onlyChanges: def.onlyChanges === true },
        { warn: (m: string) => node.warn(m), debug: (m: string) => node.debug(m) },
      );
    } catch (err) {
      fail(t('errors.filter', { error: errorText(err) }));
      return;
    }

    const onState = (state: OnvifEventsState) => {
      if (state === 'subscribing') node.status({ fill: 'yellow', shape: 'ring', text: t('status.subscribing') });
      else if (state === 'subscribed') node.status({ fill: 'green', shape: 'dot', text: t('status.subscribed') });
      else if (state === 'resubscribing') {
        node.status(
          events.offline ? { fill: 'red', shape: 'ring', text: t('status.offline') } : { fill: 'yellow', shape: 'ring', text: t('status.resubscribing') },
        );
      } else if (state === 'stopped') node.status({});
    };
    const onEvent = (e: OnvifEvent) => {
      node.send({ topic: e.topic, payload: e } as NodeMessage);
      const value = Object.entries(e.data)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ');
      node.status({ fill: 'green', shape: 'dot', text: t('status.event', { kind: e.kind, value }).slice(0, 60) });
    };
    // The camera's config node reconnecting is a good moment to retry at once rather than after the backoff.
    const onCameraState = (s: OnvifCameraState) => {
      if (s === 'connected') events.retryNow();
    };
    events.on('state', onState);
    events.on('event', onEvent);
    camera.on('state', onCameraState);
    events.start();

    node.on('close', (_removed: boolean, done: () => void) => {
      camera.removeListener('state', onCameraState);
      events.removeListener('event', onEvent);
      events
        .stop()
        .catch(() => undefined)
        .then(() => {
          events.removeListener('state', onState);
          done();
        });
    });
  }
  RED.nodes.registerType('onvif-event', OnvifEventNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
