import type { NodeAPI, NodeDef } from 'node-red';
import { resolveIdentity } from '../../lib/server-identity';
import type { RedundancyServerNode } from '../shared/types';

interface ServerDef extends NodeDef {
  group: string;
  serverId: string;
  role: string;
  storageRoot: string;
  durability: string;
}


export = function (RED: NodeAPI): void {
  function RedundancyServer(this: RedundancyServerNode, def: ServerDef): void {
    RED.nodes.createNode(this, def);
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    try {
      this.identity = resolveIdentity(def, userDir);
      this.configError = null;
    } catch (err) {
      this.identity = null;
      this.configError = (err as Error).message;
      this.error(RED._('redundancy-server.errors.config', { error: this.configError }));
    }
  }
  RED.nodes.registerType('redundancy-server', RedundancyServer as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
