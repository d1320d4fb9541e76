/** Types shared by the node adapters (config nodes as their users see them). */
import type { Node } from 'node-red';
import type { OnvifCamera } from '../../lib/onvif-camera';
import type { ServerIdentity } from '../../lib/server-identity';

export interface RedundancyServerNode extends Node {
  identity: ServerIdentity | null;
  configError: string | null;
}

export interface OnvifCameraCredentials {
  username?: string;
  password?: string;
}

export interface OnvifCameraNode extends Node<OnvifCameraCredentials> {
  camera: OnvifCamera | null;
  label: string;
  configError: string | null;
}
