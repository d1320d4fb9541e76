/** Process-wide registry of recorder channels, so backup-link can feed the Aux lines of a recorder. */
import { ControllerRegistry } from '../../lib/link/server-identity';
import type { RecorderChannel } from '../../lib/recorder/channel';

export const recorderChannels = new ControllerRegistry<RecorderChannel>();

/** The failover controller of each failover server in this process (its failover-watch node), for failback and the admin routes. */
import { EventEmitter } from 'node:events';
import type { FailoverController } from '../../lib/failover/controller';

class FailoverRegistry extends EventEmitter {
  private byServer = new Map<string, FailoverController>();
  set(serverId: string, ctl: FailoverController): void {
    const old = this.byServer.get(serverId);
    if (old && old !== ctl) throw new Error(`server ${serverId} already has a failover-watch node; use one per server`);
    this.byServer.set(serverId, ctl);
    this.emit('added', serverId, ctl);
  }
  get(serverId: string): FailoverController | undefined {
    return this.byServer.get(serverId);
  }
  delete(serverId: string, ctl: FailoverController): void {
    if (this.byServer.get(serverId) === ctl) {
      this.byServer.delete(serverId);
      this.emit('removed', serverId, ctl);
    }
  }
  all(): FailoverController[] {
    return [...this.byServer.values()];
  }
}

export const failoverControllers = new FailoverRegistry();
failoverControllers.setMaxListeners(0);

/** The material-copy service of each server in this process (its material-copy node), for the admin routes. */
import type { MaterialCopyService } from '../../lib/copy/material-copy-service';

class ServiceRegistry<T> {
  private byServer = new Map<string, T>();
  constructor(private readonly nodeType = 'material-copy') {}
  set(serverId: string, s: T): void {
    if (this.byServer.has(serverId) && this.byServer.get(serverId) !== s)
      throw new Error(`server ${serverId} already has a ${this.nodeType} node; use one per server`);
    this.byServer.set(serverId, s);
  }
  get(serverId: string): T | undefined {
    return this.byServer.get(serverId);
  }
  delete(serverId: string, s: T): void {
    if (this.byServer.get(serverId) === s) this.byServer.delete(serverId);
  }
  all(): T[] {
    return [...this.byServer.values()];
  }
}

export const materialCopyServices = new ServiceRegistry<MaterialCopyService>();

/** The transfer manager of each (backup) server in this process (its transfer-manager node), for the admin route. */
import type { TransferManager } from '../../lib/copy/transfer-manager';

export const transferManagers = new ServiceRegistry<TransferManager>('transfer-manager');
