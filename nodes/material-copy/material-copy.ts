import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { Request, Response } from 'express';
import type { Catalogue } from '../../lib/store/catalogue';
import type { CopyTask } from '../../lib/store/copy-queue';
import { CommandError, errorText } from '../../lib/model/errors';
import type { CopyProgress, CopySource } from '../../lib/copy/material-copy';
import { MaterialCopyService, parseCopyRequest } from '../../lib/copy/material-copy-service';
import { copyAction } from '../../lib/failover/overview';
import { copyRequestOf } from '../../lib/copy/copy-request';
import { RateLimiter } from '../../lib/peer/rate-limiter';
import { parseShareFolder } from '../../lib/copy/share-source';
import { failoverControllers, materialCopyServices } from '../shared/registry';
import { linkedServer, megabytes } from '../shared/server';
import type { RedundancyServerNode } from '../shared/types';
import { noNode, pickByServer } from '../shared/admin';

interface CopyDef extends NodeDef {
  server: string;
  bandwidth: string | number;
  /** the failover servers' storage mounted here (`{server}` = its id); empty: media over the peer API */
  shareFolder?: string;
}

type Send = (msg: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

export = function (RED: NodeAPI): void {
  function MaterialCopy(this: Node, def: CopyDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`material-copy.${key}`, sub);
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    let svc: MaterialCopyService | null = null;
    let catalogue: Catalogue | null = null;
    let setupError: string | null = null;
    let lastStatusAt = 0;
    let closeClients: () => void = () => undefined;

    try {
      const { server: srv, identity: id, link } = linkedServer(server, t);
      const bandwidth = Number(def.bandwidth ?? 0);
      if (!(bandwidth >= 0 && bandwidth <= 100000)) throw new Error(t('errors.bandwidth'));
      if (materialCopyServices.get(id.serverId)) throw new Error(t('errors.second', { server: id.serverId }));
      catalogue = srv.catalogue();
      const limiter = bandwidth > 0 ? new RateLimiter(bandwidth * 1e6) : undefined;
      // one client per failover server (its keep-alive connections are reused from segment to segment);
      // with a share folder, media from the failover server's storage mounted here, lists and events from its API
      const peers = srv.peerSources(parseShareFolder(def.shareFolder));
      const source = (failoverServer: string): CopySource => peers.sourceFor(failoverServer);
      closeClients = () => peers.close();
      svc = new MaterialCopyService(
        { group: id.group, serverId: id.serverId, storageRoot: id.storageRoot, stateDir: path.join(userDir, 'twinrec'), synchronous: id.durability },
        {
          link,
          catalogue,
          source,
          limiter,
          failoverLog: () => failoverControllers.get(id.serverId)?.log,
          log: { info: (m) => node.log(m), warn: (m) => node.warn(m) },
        },
      );
      materialCopyServices.set(id.serverId, svc);
      const s = svc;
      s.on('progress', (p: CopyProgress) => {
        const now = Date.now();
        if (p.phase === 'media' && now - lastStatusAt < 1000) return; // at most one message a second while copying
        lastStatusAt = now;
        const pct = p.bytesTotal ? Math.floor((100 * p.bytesDone) / Math.max(1, p.bytesTotal)) : null;
        const text =
          p.phase === 'waiting'
            ? t('status.waiting', { server: p.failoverServer })
            : p.phase === 'failed'
              ? t('status.failed', { task: p.taskId })
              : `${p.phase} ${pct ?? '?'}% ${megabytes(p.bytesDone)}${p.etaS !== null && p.phase === 'media' ? ` ETA ${p.etaS} s` : ''}`;
        node.status({ fill: p.phase === 'failed' ? 'red' : p.phase === 'waiting' ? 'yellow' : p.phase === 'done' ? 'green' : 'blue', shape: 'dot', text });
        node.send({ topic: 'progress', payload: p } as NodeMessage);
      });
      s.on('done', (task: CopyTask) => node.send({ topic: 'done', payload: task } as NodeMessage));
      s.on('failed', (task: CopyTask) =>
        node.error(t('errors.taskFailed', { task: task.id, error: task.lastError ?? '' }), { topic: 'failed', payload: task } as NodeMessage),
      );
      s.on('state', (st: unknown) => node.send({ topic: 'copy-state', payload: st } as NodeMessage));
      s.start();
      node.status({ fill: 'grey', shape: 'ring', text: t('status.idle') });
    } catch (err) {
      setupError = errorText(err);
      node.error(setupError);
      node.status({ fill: 'red', shape: 'ring', text: setupError.slice(0, 60) });
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      const fail = (err: unknown) => {
        const e = err instanceof Error ? err : new Error(errorText(err));
        node.status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
        if (!(err instanceof CommandError)) node.warn(e.message);
        done(e);
      };
      if (!svc || setupError) return fail(new Error(t('errors.notReady', { error: setupError ?? '' })));
      try {
        const p = msg.payload as Record<string, unknown> | null;
        if (p && typeof p === 'object' && typeof p.command === 'string') {
          if (p.command === 'list') {
            send({ ...msg, topic: 'tasks', payload: svc.tasks() } as NodeMessage);
          } else if (p.command === 'start') {
            if (!Number.isInteger(p.taskId)) throw new CommandError('Material copy refused: "start" needs taskId, a task of the list');
            send({ ...msg, topic: 'started', payload: svc.retry(p.taskId as number) } as NodeMessage);
          } else {
            throw new CommandError(`Material copy refused: unknown command "${p.command}"; use "list", "start" or send a failback's material-copy request`);
          }
          return done();
        }
        const r = svc.request(parseCopyRequest(msg.payload));
        send({ ...msg, topic: r.forwarded ? 'forwarded' : 'queued', payload: { request: msg.payload, task: r.task } } as NodeMessage);
        done();
      } catch (err) {
        fail(err);
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      const s = svc;
      svc = null;
      const finish = () => {
        closeClients();
        catalogue?.release();
        catalogue = null;
        done();
      };
      if (!s) return finish();
      if (server?.identity) materialCopyServices.delete(server.identity.serverId, s);
      s.removeAllListeners();
      s.stop()
        .catch((err) => node.error(errorText(err)))
        .then(finish);
    });
  }

  RED.nodes.registerType('material-copy', MaterialCopy as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);

  const pick = (req: Request) => pickByServer(materialCopyServices, req);
  RED.httpAdmin.get('/twinrec/material-copy', RED.auth.needsPermission('redundancy.read'), (req: Request, res: Response) => {
    const s = pick(req);
    if (!s) return noNode(res, 'material-copy');
    res.json({ server: s.options.serverId, tasks: s.tasks() });
  });
  // "Start material copying" of a task that is not done: needs the redundancy.materialcopy permission
  RED.httpAdmin.post('/twinrec/material-copy/start', RED.auth.needsPermission('redundancy.materialcopy'), (req: Request, res: Response) => {
    const s = pick(req);
    if (!s) return noNode(res, 'material-copy');
    const { taskId, entryId } = req.body ?? {};
    try {
      if (taskId === undefined && Number.isInteger(entryId)) {
        // on the failover server: the entry of its failover log whose period is over; the request goes to the restored server
        const e = failoverControllers.get(s.options.serverId)?.log.get(entryId);
        if (!e) return res.status(404).json({ error: `no failover log entry ${entryId} on ${s.options.serverId}` });
        const { canCopy, blocked } = copyAction(e, null);
        if (!canCopy) return res.status(409).json({ error: `material copy of entry ${entryId} cannot start: ${blocked}`, check: blocked });
        return res.json(s.request(copyRequestOf(e)));
      }
      if (!Number.isInteger(taskId))
        return res.status(400).json({
          error: 'give taskId (a task of GET /twinrec/material-copy, on the restored server) or entryId (a failover log entry, on the failover server)',
        });
      res.json(s.retry(taskId));
    } catch (err) {
      res.status(err instanceof CommandError ? 409 : 500).json({ error: errorText(err) });
    }
  });
};
