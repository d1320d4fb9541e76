import type { NodeAPI, NodeDef } from 'node-red';
import { OnvifCamera, OnvifCameraState } from '../../lib/onvif/camera';
import { resolveEnvFields } from '../shared/env-field';
import type { OnvifCameraNode } from '../shared/types';

interface CameraDef extends NodeDef {
  host: string;
  port: string | number;
  path: string;
  profileToken: string;
  resolution: string;
}

export = function (RED: NodeAPI): void {
  function OnvifCameraConfig(this: OnvifCameraNode, def: CameraDef): void {
    RED.nodes.createNode(this, def);
    const port = Number(def.port) || 80;
    let host = '';
    try {
      host = String(resolveEnvFields(RED, this, def, ['host']).host ?? '').trim();
    } catch (err) {
      this.label = 'ONVIF';
      this.camera = null;
      this.configError = (err as Error).message;
      this.error(this.configError);
      return;
    }
    this.label = `ONVIF ${host}:${port}`;
    this.camera = null;
    this.configError = null;
    if (!host) {
      this.configError = RED._('onvif-camera.errors.host');
      this.error(this.configError);
      return;
    }
    const creds = this.credentials ?? {};
    const camera = new OnvifCamera(
      {
        host,
        port,
        path: def.path || undefined,
        username: creds.username || undefined,
        password: creds.password || undefined,
        profileToken: def.profileToken || undefined,
        resolution: def.resolution || undefined,
      },
      { warn: (m: string) => this.warn(m), debug: (m: string) => this.debug(m) },
    );
    this.camera = camera;
    camera.on('state', (state: OnvifCameraState) => {
      if (state === 'connected') this.log(RED._('onvif-camera.log.connected', { address: `${host}:${port}`, profile: camera.profile?.token ?? '?' }));
    });
    camera.start();
    this.on('close', (_removed: boolean, done: () => void) => {
      camera
        .stop()
        .catch(() => undefined)
        .then(() => done());
    });
  }
  RED.nodes.registerType('onvif-camera', OnvifCameraConfig as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });
};
