/** Types shared by the node adapters (config nodes as their users see them). */
import type { EventEmitter } from 'node:events';
import type { Node } from 'node-red';
import type { OnvifCamera } from '../../lib/onvif/camera';
import type { PeerApiServer } from '../../lib/peer/api';
import type { ServerIdentity } from '../../lib/link/server-identity';
import type { ServerLink } from '../../lib/link/server-link';
import type { Catalogue } from '../../lib/store/catalogue';
import type { PeerSources } from '../../lib/copy/peer-sources';
import type { RecorderSnapshot } from '../../lib/recorder/settings-snapshot';
import type { PresentedLine } from '../../lib/recorder/types';

export interface RedundancyServerNode extends Node {
  identity: ServerIdentity | null;
  configError: string | null;
  /** The MQTT link to the group (null when no broker is configured). */
  link: ServerLink | null;
  /** 'state' (LinkState, detail) for every node that shows the link in its status. */
  linkEvents: EventEmitter;
  register(userId: string): void;
  deregister(userId: string): void;
  /** null when the link is up or not configured, else a short text for a status. */
  linkSummary(): string | null;
  /** Publish a recorder's settings and rec-list, retained (the settings cache). */
  publishSettings(channel: number, recorder: RecorderSnapshot, lines: PresentedLine[]): void;
  /** This server's peer storage API (null when its port is empty or the config is invalid). */
  peerApi: PeerApiServer | null;
  /** The group's shared secret for the peer storage API (null when none is set). */
  peerSecret(): string | null;
  /** The CA (PEM) of the server's TLS config, to trust peers' https with (null when none). */
  peerCa(): string | Buffer | null;
  /** This server's clip catalogue, shared by its nodes: each caller release()s what it was given. Throws when the config is invalid. */
  catalogue(): Catalogue;
  /** The peers' storage as a copier reads it (their announced API; media from a share folder when one is set). The caller close()s it. */
  peerSources(shareFolder: string | null): PeerSources;
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

export interface GpioDeviceNode extends Node {
  device: import('../../lib/studio/gpio-device').GpioDevice | null;
  label: string;
  configError: string | null;
}
