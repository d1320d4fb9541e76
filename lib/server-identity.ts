/**
 * This server's identity in its redundancy group and where it keeps things:
 * the storage root for clips and the catalogue database in the user directory.
 * Also the registry of which recorder node owns which channel number.
 */
import path from 'node:path';
import { NAME_PATTERN } from './link-schemas';

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
  return { group, serverId, role, storageRoot, catalogueFile: path.join(userDir, 'twinrec', 'catalogue.sqlite'), durability, link };
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
 * The recorder channels of this process by server and channel, for nodes that
 * act on a recorder they are not wired to (backup-link feeding Aux lines).
 */
export class ControllerRegistry<T> {
  private byKey = new Map<string, T>();
  set(serverId: string, channel: number, ctl: T): void {
    this.byKey.set(`${serverId}/${channel}`, ctl);
  }
  get(serverId: string, channel: number): T | undefined {
    return this.byKey.get(`${serverId}/${channel}`);
  }
  delete(serverId: string, channel: number, ctl: T): void {
    if (this.byKey.get(`${serverId}/${channel}`) === ctl) this.byKey.delete(`${serverId}/${channel}`);
  }
}
