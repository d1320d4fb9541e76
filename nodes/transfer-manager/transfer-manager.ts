import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { Request, Response } from 'express';
import type { Catalogue } from '../../lib/store/catalogue';
import type { Clip } from '../../lib/model/clip';
import { CommandError, errorText } from '../../lib/model/errors';
import { NAME_PATTERN } from '../../lib/model/names';
import { RateLimiter } from '../../lib/peer/rate-limiter';
import { parseShareFolder } from '../../lib/copy/share-source';
import type { PeerSources } from '../../lib/copy/peer-sources';
import { TransferManager, TransferProgress } from '../../lib/copy/transfer-manager';
import { parseChannels, TransferSource } from '../../lib/copy/transfer-settings';
import { Transfer, TransferQueue } from '../../lib/store/transfer-queue';
import { transferManagers } from '../shared/registry';
import { linkedServer, megabytes } from '../shared/server';
import type { RedundancyServerNode } from '../shared/types';
import { noNode, pickByServer } from '../shared/admin';

interface TransferDef extends NodeDef {
  server: string;
  mainServer: string;
  channels: string;
  bandwidth: string | number;
  pollInterval: string | number;
  retentionDays: string | number;
  /** the main's storage mounted here (`{server}` = its id); empty: media over the peer API */
  shareFolder?: string;
}

type Send = (msg: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

const COMMANDS = ['list', 'pause', 'resume', 'scan', 'retry'];

export = function (RED: NodeAPI): void {
  function TransferManagerNode(this: Node, def: TransferDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`transfer-manager.${key}`, sub);
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    let tm: TransferManager | null = null;
    let queue: TransferQueue | null = null;
    let catalogue: Catalogue | null = null;
    let peers: PeerSources | null = null;
    let setupError: string | null = null;
    let lastProgressAt = 0;
    let lastErrorAt = 0;

    const idleStatus = () => {
      if (!tm || !queue) return;
      const depth = queue.depth();
      if (tm.isPaused) node.status({ fill: 'grey', shape: 'ring', text: t('status.paused', { n: depth }) });
      else if (tm.peer.state === 'waiting') node.status({ fill: 'yellow', shape: 'ring', text: t('status.waiting', { server: tm.options.mainServer }) });
      else node.status({ fill: depth ? 'blue' : 'green', shape: 'dot', text: t('status.idle', { n: depth }) });
    };

    try {
      const { server: srv, identity: id } = linkedServer(server, t);
      const mainServer = String(def.mainServer ?? '').trim();
      if (!new RegExp(NAME_PATTERN).test(mainServer)) throw new Error(t('errors.mainServer'));
      if (mainServer === id.serverId) throw new Error(t('errors.self', { server: id.serverId }));
      const channels = parseChannels(def.channels);
      const bandwidth = Number(def.bandwidth ?? 0);
      if (!(bandwidth >= 0 && bandwidth <= 100000)) throw new Error(t('errors.bandwidth'));
      const poll = Number(def.pollInterval === '' || def.pollInterval === undefined ? 10 : def.pollInterval);
      if (!(poll >= 1 && poll <= 86400)) throw new Error(t('errors.poll'));
      const retention = Number(def.retentionDays === '' || def.retentionDays === undefined ? 0 : def.retentionDays);
      if (!(retention >= 0 && retention <= 36500)) throw new Error(t('errors.retention'));
      if (transferManagers.get(id.serverId)) throw new Error(t('errors.second', { server: id.serverId }));
      // with a share folder, media from the main's storage mounted here, lists from its API
      const sources = srv.peerSources(parseShareFolder(def.shareFolder));
      peers = sources;
      const source = (): TransferSource => sources.sourceFor(mainServer);
      catalogue = srv.catalogue();
      queue = new TransferQueue(path.join(userDir, 'twinrec', 'transfer-queue.sqlite'), Date.now, { synchronous: id.durability });
      tm = new TransferManager(queue, catalogue, {
        serverId: id.serverId,
        mainServer,
        channels,
        storageRoot: id.storageRoot,
        source,
        limiter: bandwidth > 0 ? new RateLimiter(bandwidth * 1e6) : undefined,
        pollMs: poll * 1000,
        retentionDays: retention,
        log: { info: (m) => node.log(m), warn: (m) => node.warn(m) },
      });
      transferManagers.set(id.serverId, tm);
      const m = tm;
      m.on('progress', (p: TransferProgress) => {
        const now = Date.now();
        if (p.phase === 'copying' && now - lastProgressAt < 1000) return; // at most one progress message a second
        lastProgressAt = now;
        if (p.phase === 'copying') {
          const pct = p.bytesTotal ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 0;
          node.status({ fill: 'blue', shape: 'dot', text: t('status.copying', { name: p.name.slice(0, 24), pct, done: megabytes(p.bytesDone), n: p.queued }) });
        } else if (p.phase === 'waiting') {
          node.status({ fill: 'yellow', shape: 'ring', text: t('status.waiting', { server: mainServer }) });
        } else {
          idleStatus();
        }
        node.send({ topic: 'progress', payload: p } as NodeMessage);
      });
      m.on('transferred', (tr: Transfer) => {
        node.send({ topic: 'transferred', payload: tr } as NodeMessage);
        idleStatus();
      });
      m.on('skipped', (tr: Transfer, clip: Clip) => node.send({ topic: 'skipped', payload: { ...tr, twin: clip.twin ?? null } } as NodeMessage));
      m.on('deleted', (tr: Transfer) => node.send({ topic: 'deleted', payload: tr } as NodeMessage));
      m.on('failed', (tr: Transfer) =>
        node.error(t('errors.clipFailed', { name: tr.name, clip: tr.clipId, error: tr.reason ?? '' }), { topic: 'failed', payload: tr } as NodeMessage),
      );
      m.on('peer', () => idleStatus());
      m.on('error-report', (err: unknown) => {
        const now = Date.now();
        if (now - lastErrorAt < 60000) return; // a main that keeps refusing: once a minute
        lastErrorAt = now;
        node.error(t('errors.scan', { error: errorText(err) }), { topic: 'error', payload: { error: errorText(err) } } as NodeMessage);
      });
      m.start();
      idleStatus();
    } catch (err) {
      setupError = errorText(err);
      node.error(setupError);
      node.status({ fill: 'red', shape: 'ring', text: setupError.slice(0, 60) });
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      const fail = (err: unknown) => {
        const e = err instanceof Error ? err : new Error(errorText(err));
        node.status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
        done(e);
      };
      if (!tm || !queue || setupError) return fail(new Error(t('errors.notReady', { error: setupError ?? '' })));
      try {
        const p = msg.payload as Record<string, unknown> | null;
        const usage = `send {"command": "${COMMANDS.join('" | "')}"} (retry with "clipId")`;
        if (!p || typeof p !== 'object' || Array.isArray(p) || typeof p.command !== 'string') {
          throw new CommandError(`Transfer manager refused: msg.payload must be a command object; ${usage}`);
        }
        switch (p.command) {
          case 'list':
            send({
              ...msg,
              topic: 'transfers',
              payload: { paused: tm.isPaused, peer: tm.peer, current: tm.currentClip, queued: queue.depth(), transfers: queue.list() },
            } as NodeMessage);
            break;
          case 'pause':
            tm.pause();
            idleStatus();
            send({ ...msg, topic: 'paused', payload: { queued: queue.depth() } } as NodeMessage);
            break;
          case 'resume':
            tm.resume();
            idleStatus();
            send({ ...msg, topic: 'resumed', payload: { queued: queue.depth() } } as NodeMessage);
            break;
          case 'scan':
            tm.scanNow();
            send({ ...msg, topic: 'scanning', payload: { queued: queue.depth() } } as NodeMessage);
            break;
          case 'retry':
            if (typeof p.clipId !== 'string' || !p.clipId) throw new CommandError(`Transfer manager refused: "retry" needs clipId, a failed clip of the list`);
            send({ ...msg, topic: 'queued', payload: tm.retry(p.clipId) } as NodeMessage);
            break;
          default:
            throw new CommandError(`Transfer manager refused: unknown command "${String(p.command).slice(0, 40)}"; ${usage}`);
        }
        done();
      } catch (err) {
        fail(err);
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      const m = tm;
      tm = null;
      const finish = () => {
        peers?.close();
        peers = null;
        queue?.close();
        queue = null;
        catalogue?.release();
        catalogue = null;
        done();
      };
      if (!m) return finish();
      if (server?.identity) transferManagers.delete(server.identity.serverId, m);
      m.removeAllListeners();
      m.stop()
        .catch((err) => node.error(errorText(err)))
        .then(finish);
    });
  }

  RED.nodes.registerType('transfer-manager', TransferManagerNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);

  RED.httpAdmin.get('/twinrec/transfer-manager', RED.auth.needsPermission('redundancy.read'), (req: Request, res: Response) => {
    const m = pickByServer(transferManagers, req);
    if (!m) return noNode(res, 'transfer-manager');
    res.json({
      server: m.options.serverId,
      main: m.options.mainServer,
      paused: m.isPaused,
      peer: m.peer,
      current: m.currentClip,
      queued: m.queue.depth(),
      transfers: m.queue.list(),
    });
  });
};
