import { EventEmitter } from 'node:events';
import type { NodeAPI, NodeDef } from 'node-red';
import { resolveIdentity } from '../../lib/link/server-identity';
import { ServerLink, LinkState } from '../../lib/link/server-link';
import { LINK_VERSION, topicFor } from '../../lib/link/schemas';
import { HandbackResponder } from '../../lib/failover/handback';
import { Catalogue, openCatalogue } from '../../lib/store/catalogue';
import { PeerSources } from '../../lib/copy/peer-sources';
import { errorText } from '../../lib/model/errors';
import { PeerApiServer } from '../../lib/peer/api';
import { livenessEndpoints, livenessKey } from '../../lib/peer/liveness';
import { livenessAddress } from '../../lib/link/server-identity';
import { recorderChannels } from '../shared/registry';
import { resolveEnvFields } from '../shared/env-field';
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
  peerHost: string;
  peerPort: string | number;
  peerUrl: string;
  livePort: string;
}

interface ServerCredentials {
  user?: string;
  password?: string;
  peerSecret?: string;
}

interface TlsConfigNode {
  addTLSOptions(opts: Record<string, unknown>): Record<string, unknown>;
}

export = function (RED: NodeAPI): void {
  function RedundancyServer(this: RedundancyServerNode, def: ServerDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const nrSettings = RED.settings as unknown as { userDir?: string; uiPort?: number; uiHost?: string };
    const userDir = nrSettings.userDir ?? process.cwd();
    node.link = null;
    node.linkEvents = new EventEmitter();
    node.linkEvents.setMaxListeners(0);
    const users = new Set<string>();
    let handback: HandbackResponder | null = null;
    let stopLiveness: Promise<(() => Promise<void>) | null> = Promise.resolve(null);
    let peerCatalogue: Catalogue | null = null;
    node.peerApi = null;
    const creds = (node.credentials ?? {}) as ServerCredentials;
    // one tls-config for both: the MQTT link (client side) and the peer API (served over https when it has a certificate and key)
    let tls: Record<string, unknown> | undefined;
    if (def.tls) {
      const tlsNode = RED.nodes.getNode(def.tls) as unknown as TlsConfigNode | null;
      if (tlsNode) tls = tlsNode.addTLSOptions({});
    }
    const peerTls = !!(tls && tls.cert && tls.key);
    try {
      const fields = resolveEnvFields(RED, node, def, ['serverId', 'group', 'storageRoot', 'brokerUrl']);
      node.identity = resolveIdentity(
        { ...fields, peerSecret: creds.peerSecret, peerTls, nodeRedPort: Number(nrSettings.uiPort) || undefined, nodeRedHost: nrSettings.uiHost },
        userDir,
      );
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
    node.peerSecret = () => node.identity?.peerSecret ?? null;
    node.peerCa = () => (tls?.ca as string | Buffer | undefined) ?? null;
    node.catalogue = () => {
      const id = node.identity;
      if (!id) throw new Error(RED._('redundancy-server.errors.noIdentity', { error: node.configError ?? '?' }));
      return openCatalogue(id.catalogueFile, { synchronous: id.durability });
    };
    node.peerSources = (shareFolder: string | null) =>
      new PeerSources({
        secret: node.peerSecret(),
        ca: node.peerCa() ?? undefined,
        announcedApi: (server) => node.link?.peerState(server)?.api,
        shareFolder,
        // a group that uses TLS never sends its secret over plain http
        httpsOnly: !!tls,
        messages: {
          notAnnounced: (server) => RED._('redundancy-server.errors.noPeerUrl', { server }),
          noSecret: () => RED._('redundancy-server.errors.noSecret'),
          notHttps: (server) => RED._('redundancy-server.errors.notHttps', { server }),
        },
      });
    node.linkSummary = () => {
      const l = node.link;
      if (!l) return null;
      if (l.state === 'connected') return null;
      const e = l.lastError ?? '';
      if (/user name or password|not authorized/i.test(e)) return 'no link: broker refused the login';
      if (/connection refused|ECONNREFUSED/i.test(e)) return 'no link: broker unreachable';
      if (/refused the client certificate/i.test(e)) return 'no link: broker refused the client certificate';
      if (/client certificate/i.test(e)) return 'no link: broker wants a client certificate';
      return `no link (${l.state})`;
    };
    node.publishSettings = (channel, recorder, lines) => {
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
    if (id?.peerProblem) node.warn(id.peerProblem);
    if (id && id.peerApi && id.peerSecret) {
      const api = id.peerApi;
      try {
        peerCatalogue = node.catalogue();
        const server = new PeerApiServer({
          host: api.host,
          port: api.port,
          secret: id.peerSecret,
          tls: peerTls
            ? {
                key: tls!.key as string | Buffer,
                cert: tls!.cert as string | Buffer,
                ca: tls!.ca as string | Buffer | undefined,
                passphrase: tls!.passphrase as string | undefined,
              }
            : undefined,
          storageRoot: id.storageRoot,
          catalogue: peerCatalogue,
          serverId: id.serverId,
          log: { warn: (m) => node.warn(m) },
        });
        node.peerApi = server;
        server
          .start()
          .then((r) => node.log(RED._('redundancy-server.log.peerApi', { url: r.url, advertised: api.url })))
          .catch((err) => node.error(RED._('redundancy-server.errors.peerApi', { error: errorText(err) })));
      } catch (err) {
        node.error(RED._('redundancy-server.errors.peerApi', { error: errorText(err) }));
      }
    }
    if (id && id.link) {
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
          apiUrl: id.peerApi?.url,
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
    // liveness: other servers ask this one directly (UDP, signed with the group's secret), not through the broker
    if (id && id.liveness && id.peerSecret) {
      const live = id.liveness;
      const serverId = id.serverId;
      stopLiveness = livenessEndpoints
        .serve(
          live.host,
          live.port,
          {
            group: id.group,
            serverId,
            key: livenessKey(id.peerSecret),
            progress: () =>
              recorderChannels
                .entries()
                .filter(([s]) => s === serverId)
                .map(([, channel, ctl]) => ({ channel, ...ctl.progress() })),
          },
          { warn: (m) => node.warn(m) },
        )
        .then((r) => {
          const address = livenessAddress(live.announceHost, r.port);
          node.link?.setLiveAddress(address);
          node.log(RED._('redundancy-server.log.liveness', { address }));
          return r.stop;
        })
        .catch((err) => {
          node.error(RED._('redundancy-server.errors.liveness', { address: livenessAddress(live.host, live.port), error: errorText(err) }));
          return null;
        });
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      const l = node.link;
      node.link = null;
      const api = node.peerApi;
      node.peerApi = null;
      const cat = peerCatalogue;
      peerCatalogue = null;
      handback?.stop();
      handback = null;
      node.linkEvents.removeAllListeners();
      Promise.all([l?.stop().catch(() => undefined), api?.close().catch(() => undefined), stopLiveness.then((stop) => stop?.()).catch(() => undefined)])
        .then(() => cat?.release())
        .catch(() => undefined)
        .then(() => done());
    });
  }
  RED.nodes.registerType('redundancy-server', RedundancyServer as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { user: { type: 'text' }, password: { type: 'password' }, peerSecret: { type: 'password' } },
  });
};
