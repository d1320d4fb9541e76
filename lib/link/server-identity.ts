/**
 * This server's identity in its redundancy group and where it keeps things:
 * the storage root for clips and the catalogue database in the user directory.
 * Also the registry of which recorder node owns which channel number.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { NAME_PATTERN } from '../model/names';
import { MIN_SECRET_LENGTH } from '../peer/protocol';
import { redactUrl } from '../model/url';

export type ServerRole = 'main' | 'backup' | 'failover';
export const SERVER_ROLES: readonly ServerRole[] = ['main', 'backup', 'failover'];
export const SERVER_ID_PATTERN = new RegExp(NAME_PATTERN);

export interface ServerIdentityConfig {
  group: string;
  serverId: string;
  role: string;
  storageRoot: string;
  durability?: string;
  brokerUrl?: string;
  keepalive?: string | number;
  heartbeatMs?: string | number;
  /** Address the peer storage API listens on (default 127.0.0.1). */
  peerHost?: string;
  /** Port of the peer storage API; empty: the API is off. */
  peerPort?: string | number;
  /** The URL other servers use to reach the API (default http(s)://<peerHost>:<peerPort>). */
  peerUrl?: string;
  /** The group's shared secret (a credential). */
  peerSecret?: string;
  /** Whether the API serves https (the server's TLS config has a certificate and key). */
  peerTls?: boolean;
  /** UDP port of liveness answers: empty = Node-RED's own port number, "off" = none. */
  livePort?: string | number;
  /** Node-RED's HTTP port and address (its settings uiPort, uiHost), the defaults of liveness. */
  nodeRedPort?: number;
  nodeRedHost?: string;
}

/** Where this server answers liveness questions (lib/peer/liveness.ts). */
export interface LivenessSettings {
  /** Address bound. */
  host: string;
  port: number;
  /** The host other servers are told (in the retained state) to ask. */
  announceHost: string;
}

/** The peer storage API this server serves. */
export interface PeerApiSettings {
  host: string;
  port: number;
  /** What other servers are told (in the retained state) to use. */
  url: string;
  tls: boolean;
}

export interface LinkSettings {
  url: string;
  keepaliveS: number;
  heartbeatMs: number;
}

export interface ServerIdentity {
  group: string;
  serverId: string;
  role: ServerRole;
  /** Absolute storage root for clips. */
  storageRoot: string;
  /** Absolute path of the SQLite catalogue. */
  catalogueFile: string;
  durability: 'NORMAL' | 'FULL';
  /** The MQTT link to the group, or null for a server on its own. */
  link: LinkSettings | null;
  /** The peer storage API, or null when it is off (no port). */
  peerApi: PeerApiSettings | null;
  /** The group's shared secret for the peer API (serving and fetching), null when none is set. */
  peerSecret: string | null;
  /** Why the configured peer API is off (a missing secret), to warn about. */
  peerProblem?: string;
  /** Where liveness is answered, null when it is not (no secret, turned off, no port known). */
  liveness: LivenessSettings | null;
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?$/;

/** Check and resolve the peer API settings; throws an Error a person can act on. */
export function resolvePeerApi(cfg: ServerIdentityConfig): { peerApi: PeerApiSettings | null; peerSecret: string | null; peerProblem?: string } {
  const secret = cfg.peerSecret === undefined || cfg.peerSecret === null ? '' : String(cfg.peerSecret);
  const portText = cfg.peerPort === undefined || cfg.peerPort === null ? '' : String(cfg.peerPort).trim();
  const urlText = String(cfg.peerUrl ?? '').trim();
  const shown = redactUrl(urlText).slice(0, 300);
  if (secret && secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`the peer API secret must be at least ${MIN_SECRET_LENGTH} characters (it is the shared secret every server of the group uses)`);
  }
  if (!portText) {
    if (urlText) throw new Error(`peer API URL "${shown}" is set but the peer API port is empty: give the port the API listens on, or clear the URL`);
    return { peerApi: null, peerSecret: secret || null };
  }
  const port = Number(portText);
  if (!(/^\d+$/.test(portText) && Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new Error(`peer API port "${portText}" must be a number from 1 to 65535 (empty: the peer API is off)`);
  }
  // an API without its secret stays off; the server records all the same (a missing secret must not stop recording)
  if (!secret)
    return {
      peerApi: null,
      peerSecret: null,
      peerProblem: `the peer API on port ${port} is off: it needs the group's shared secret (at least ${MIN_SECRET_LENGTH} characters) in this server's configuration`,
    };
  const host = String(cfg.peerHost ?? '').trim() || '127.0.0.1';
  if (!net.isIP(host) && !HOST_NAME.test(host)) {
    throw new Error(`peer API address "${host}" is not an IP address or a host name (e.g. 127.0.0.1, 0.0.0.0 or ::)`);
  }
  const tls = !!cfg.peerTls;
  let url: string;
  if (urlText) {
    let u: URL | null = null;
    try {
      u = new URL(urlText);
    } catch {
      u = null;
    }
    if (
      !u ||
      (u.protocol !== 'http:' && u.protocol !== 'https:') ||
      !u.hostname ||
      u.username ||
      u.password ||
      u.search ||
      u.hash ||
      (u.pathname !== '/' && u.pathname !== '')
    ) {
      throw new Error(`peer API URL "${shown}" must be http://host:port or https://host:port (the address other servers use to reach this one)`);
    }
    // the scheme may differ from what the API serves: a proxy in front may terminate TLS
    url = `${u.protocol}//${u.host}`;
  } else {
    // an API on every address is reached by this machine's name
    const name = host === '0.0.0.0' || host === '::' ? os.hostname() : host;
    url = `${tls ? 'https' : 'http'}://${net.isIPv6(name) ? `[${name}]` : name}:${port}`;
  }
  if (url.length > 300) throw new Error('peer API URL is longer than 300 characters');
  return { peerApi: { host, port, url, tls }, peerSecret: secret };
}

/**
 * Where liveness is answered: on Node-RED's own port number over UDP unless the
 * config names another (or "off"), on Node-RED's address (all IPv4 addresses
 * when it has none). Null without the group's secret (answers are signed with it).
 */
export function resolveLiveness(cfg: ServerIdentityConfig, secret: string | null, peerUrl: string | null): LivenessSettings | null {
  const text = cfg.livePort === undefined || cfg.livePort === null ? '' : String(cfg.livePort).trim();
  if (text.toLowerCase() === 'off') return null;
  let port: number;
  if (text) {
    port = Number(text);
    if (!(/^\d+$/.test(text) && Number.isInteger(port) && port >= 1 && port <= 65535)) {
      throw new Error(`liveness port "${text.slice(0, 40)}" must be a number from 1 to 65535, "off", or empty (Node-RED's own port)`);
    }
  } else {
    if (!cfg.nodeRedPort) return null;
    port = cfg.nodeRedPort;
  }
  if (!secret) return null;
  const bound = String(cfg.nodeRedHost ?? '').trim();
  const host = bound && net.isIP(bound) ? bound : '0.0.0.0';
  let announceHost = host === '0.0.0.0' || host === '::' ? os.hostname() : host;
  if (peerUrl) announceHost = new URL(peerUrl).hostname.replace(/^\[|\]$/g, '');
  return { host, port, announceHost };
}

/** "host:port" of a liveness address, IPv6 in brackets. */
export function livenessAddress(host: string, port: number): string {
  return `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/** Check and resolve a server config; throws an Error a person can act on. */
export function resolveIdentity(cfg: ServerIdentityConfig, userDir: string): ServerIdentity {
  const serverId = String(cfg.serverId ?? '').trim();
  if (!SERVER_ID_PATTERN.test(serverId)) {
    throw new Error(`server id "${serverId}" is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const group = String(cfg.group ?? '').trim() || 'default';
  if (!SERVER_ID_PATTERN.test(group)) {
    throw new Error(`group "${group}" is not valid: use 1 to 64 letters, digits, '.', '_' or '-'`);
  }
  const role = String(cfg.role ?? 'main') as ServerRole;
  if (!SERVER_ROLES.includes(role)) throw new Error(`role "${role}" is not one of main, backup, failover`);
  const root = String(cfg.storageRoot ?? '').trim() || 'recordings';
  const storageRoot = path.resolve(userDir, root);
  const durability = cfg.durability === 'FULL' ? 'FULL' : 'NORMAL';
  let link: LinkSettings | null = null;
  const url = String(cfg.brokerUrl ?? '').trim();
  if (url) {
    if (!/^(mqtts?|wss?|tcp|ssl):\/\/[^\s/]+/i.test(url)) {
      throw new Error(`broker URL "${url}" must look like mqtt://host:1883, mqtts://host:8883 or ws(s)://host/path`);
    }
    const keepaliveS = Number(cfg.keepalive ?? 2);
    const heartbeatMs = Number(cfg.heartbeatMs ?? 250);
    if (!(Number.isInteger(keepaliveS) && keepaliveS >= 1 && keepaliveS <= 600)) throw new Error('keepalive must be 1 to 600 seconds');
    if (!(Number.isInteger(heartbeatMs) && heartbeatMs >= 50 && heartbeatMs <= 60000)) throw new Error('heartbeat interval must be 50 to 60000 ms');
    link = { url, keepaliveS, heartbeatMs };
  }
  const { peerApi, peerSecret, peerProblem } = resolvePeerApi(cfg);
  const liveness = resolveLiveness(cfg, peerSecret, cfg.peerUrl ? (peerApi?.url ?? null) : null);
  return {
    group,
    serverId,
    role,
    storageRoot,
    catalogueFile: path.join(userDir, 'twinrec', 'catalogue.sqlite'),
    durability,
    link,
    peerApi,
    peerSecret,
    ...(peerProblem ? { peerProblem } : {}),
    liveness,
  };
}

/** Which node records which channel of which server: two recorders on one channel are refused. */
export class ChannelRegistry {
  private owners = new Map<string, string>();
  claim(serverId: string, channel: number, nodeId: string): void {
    const key = `${serverId}/${channel}`;
    const owner = this.owners.get(key);
    if (owner && owner !== nodeId) {
      throw new Error(`channel ${channel} of server ${serverId} is already recorded by node ${owner}; give each recorder its own channel number`);
    }
    this.owners.set(key, nodeId);
  }
  release(serverId: string, channel: number, nodeId: string): void {
    const key = `${serverId}/${channel}`;
    if (this.owners.get(key) === nodeId) this.owners.delete(key);
  }
}

/** One registry per process (all server config nodes of one Node-RED). */
export const channelRegistry = new ChannelRegistry();

/**
 * Controllers (recorder channels) of this process by server and channel. Emits
 * `set` (serverId, channel, ctl) and `delete` (serverId, channel, ctl), so a node
 * that follows a recorder (a tally, a control panel) finds it whatever the order
 * in which Node-RED starts the nodes, and lets it go on a redeploy.
 */
export class ControllerRegistry<T> extends EventEmitter {
  private byKey = new Map<string, T>();
  constructor() {
    super();
    this.setMaxListeners(0);
  }
  set(serverId: string, channel: number, ctl: T): void {
    this.byKey.set(`${serverId}/${channel}`, ctl);
    this.emit('set', serverId, channel, ctl);
  }
  get(serverId: string, channel: number): T | undefined {
    return this.byKey.get(`${serverId}/${channel}`);
  }
  delete(serverId: string, channel: number, ctl: T): void {
    if (this.byKey.get(`${serverId}/${channel}`) === ctl) {
      this.byKey.delete(`${serverId}/${channel}`);
      this.emit('delete', serverId, channel, ctl);
    }
  }
  /** every controller as [serverId, channel, ctl] */
  entries(): [string, number, T][] {
    return [...this.byKey.entries()].map(([k, v]) => {
      const i = k.lastIndexOf('/');
      return [k.slice(0, i), Number(k.slice(i + 1)), v];
    });
  }
}
