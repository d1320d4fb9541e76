import { EventEmitter } from 'node:events';
import type { NodeAPI, NodeDef } from 'node-red';
import { resolveIdentity } from '../../lib/server-identity';
import { ServerLink, LinkState } from '../../lib/server-link';
import { LINK_VERSION, topicFor } from '../../lib/link-schemas';
import { HandbackResponder } from '../../lib/handback';
import { recorderChannels } from '../shared/registry';
import type { RedundancyServerNode } from '../shared/types';

interface ServerDef extends NodeDef {
  group: string;
  serverId: string;
  role: string;
  storageRoot: string;
  durability: string;
  brokerUrl: string;
  keepalive: string | number;
  heartbeatMs: string | number;
  tls: string;
}

interface ServerCredentials {
  user?: string;
  password?: string;
}

interface TlsConfigNode {
  addTLSOptions(opts: Record<string, unknown>): Record<string, unknown>;
}

export = function (RED: NodeAPI): void {
  function RedundancyServer(this: RedundancyServerNode, def: ServerDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    node.link = null;
    node.linkEvents = new EventEmitter();
    node.linkEvents.setMaxListeners(0);
    const users = new Set<string>();
    let handback: HandbackResponder | null = null;
    try {
      node.identity = resolveIdentity(def, userDir);
      node.configError = null;
    } catch (err) {
      node.identity = null;
      node.configError = (err as Error).message;
      node.error(RED._('redundancy-server.errors.config', { error: node.configError }));
    }

    node.register = (userId: string) => {
      users.add(userId);
    };
    node.deregister = (userId: string) => {
      users.delete(userId);
    };
    node.linkSummary = () => {
      const l = node.link;
      if (!l) return null;
      if (l.state === 'connected') return null;
      const e = l.lastError ?? '';
      if (/user name or password|not authorized/i.test(e)) return 'no link: broker refused the login';
      if (/connection refused|ECONNREFUSED/i.test(e)) return 'no link: broker unreachable';
      return `no link (${l.state})`;
    };
    node.publishSettings = (channel: number, recorder: Record<string, unknown>, lines: unknown[]) => {
      const id = node.identity;
      if (!node.link || !id) return;
      node.link.publishRetained(topicFor(id.group, id.serverId, 'settings', channel), {
        v: LINK_VERSION,
        server: id.serverId,
        channel,
        ts: Date.now(),
        recorder,
        lines,
      });
    };

    const id = node.identity;
    if (id && id.link) {
      const creds = (node.credentials ?? {}) as ServerCredentials;
      let tls: Record<string, unknown> | undefined;
      if (def.tls) {
        const tlsNode = RED.nodes.getNode(def.tls) as unknown as TlsConfigNode | null;
        if (tlsNode) tls = tlsNode.addTLSOptions({});
      }
      const link = new ServerLink(
        {
          url: id.link.url,
          group: id.group,
          serverId: id.serverId,
          role: id.role,
          username: creds.user || undefined,
          password: creds.password || undefined,
          tls,
          keepaliveS: id.link.keepaliveS,
          heartbeatMs: id.link.heartbeatMs,
        },
        { info: (m) => node.log(m), warn: (m) => node.warn(m) },
      );
      node.link = link;
      link.on('state', (state: LinkState, detail: string | null) => {
        if (state === 'connected') node.log(RED._('redundancy-server.log.connected', { url: id.link!.url }));
        else if (state === 'reconnecting' && detail) node.warn(RED._('redundancy-server.log.reconnecting', { error: detail }));
        node.linkEvents.emit('state', state, detail);
      });
      // failback: a failover server gives this server's channels back
      handback = new HandbackResponder(link, { group: id.group, serverId: id.serverId }, (ch) => recorderChannels.get(id.serverId, ch), {
        info: (m) => node.log(m),
        warn: (m) => node.warn(m),
      });
      handback.start();
      link.start();
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      const l = node.link;
      node.link = null;
      handback?.stop();
      handback = null;
      node.linkEvents.removeAllListeners();
      if (!l) return done();
      l.stop()
        .catch(() => undefined)
        .then(() => done());
    });
  }
  RED.nodes.registerType('redundancy-server', RedundancyServer as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { user: { type: 'text' }, password: { type: 'password' } },
  });
};
