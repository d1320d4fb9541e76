import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { Request, Response } from 'express';
import { CommandError, errorText } from '../../lib/model/errors';
import { FailbackRefused, FailbackStepFailed } from '../../lib/failover/failback';
import { FailbackDone, FailoverController } from '../../lib/failover/controller';
import { parseFailbackCommand } from '../../lib/failover/commands';
import { failoverControllers } from '../shared/registry';
import type { RedundancyServerNode } from '../shared/types';
import { noNode, pickByServer } from '../shared/admin';

interface FailbackDef extends NodeDef {
  server: string;
  automatic: boolean;
}

type Send = (msg: NodeMessage | (NodeMessage | null)[]) => void;
type Done = (err?: Error) => void;

/** The two outputs of a failback: "Failback OK" and the material-copy request. */
function results(d: FailbackDone): [NodeMessage, NodeMessage] {
  const ok = {
    topic: d.how === 'drill' ? 'Drill failback OK' : 'Failback OK',
    payload: {
      text: `Failback OK: ${d.entry.failedServer} records again (failover ${new Date(d.entry.startedAt).toISOString()} to ${new Date(d.entry.endedAt!).toISOString()})`,
      entryId: d.entry.id,
      failedServer: d.entry.failedServer,
      failoverServer: d.entry.failoverServer,
      channels: d.entry.channels,
      how: d.how,
      startTime: d.entry.startedAt,
      endTime: d.entry.endedAt,
      durationMs: (d.entry.endedAt ?? d.endedAt) - d.entry.startedAt,
      failbackMs: d.durationMs,
      othersFinalized: d.others.map((e) => e.id),
      entry: d.entry,
    },
  } as NodeMessage;
  const copy = { topic: 'material-copy', payload: d.materialCopy } as NodeMessage;
  return [ok, copy];
}

export = function (RED: NodeAPI): void {
  function Failback(this: Node, def: FailbackDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`failback.${key}`, sub);
    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    const serverId = server?.identity?.serverId ?? null;
    const setupError = !server ? t('errors.noServer') : !server.identity ? t('errors.badServer', { error: server.configError ?? '?' }) : null;
    let watched: FailoverController | null = null;
    let listening: FailoverController | null = null;

    const show = (fill: 'red' | 'green' | 'yellow' | 'grey', shape: 'dot' | 'ring', text: string) => node.status({ fill, shape, text: text.slice(0, 60) });
    const controller = (): FailoverController => {
      if (setupError) throw new Error(setupError);
      const c = failoverControllers.get(serverId!);
      if (!c) throw new Error(t('errors.noWatch', { server: serverId! }));
      return c;
    };

    const onRestored = (r: { server: string }) => {
      const c = watched;
      if (!c) return;
      show('yellow', 'dot', t('status.running', { server: r.server }));
      c.autoFailback(r.server, node.id)
        .then((d) => {
          if ('refused' in d) {
            show('yellow', 'ring', d.refused);
            node.warn(d.refused);
            return;
          }
          show('green', 'dot', t('status.ok', { server: d.entry.failedServer }));
          node.send(results(d));
        })
        .catch((err: unknown) => {
          const text = errorText(err);
          show('red', 'ring', text);
          node.error(text, {
            topic: 'Failback failed',
            payload: { server: r.server, error: text, check: err instanceof FailbackRefused ? err.check : null },
          } as NodeMessage);
        });
    };
    // failbacks started elsewhere (the admin route, the sidebar) still bring their results to this flow
    const onAnyFailback = (d: FailbackDone) => {
      if (d.origin === node.id || d.how === 'drill' || !d.origin.startsWith('admin:')) return;
      show('green', 'dot', t('status.ok', { server: d.entry.failedServer }));
      node.send(results(d));
    };
    const listen = (sid: string, c: FailoverController) => {
      if (sid !== serverId || listening === c) return;
      listening?.off('failback', onAnyFailback);
      listening = c;
      c.on('failback', onAnyFailback);
    };
    const attach = (sid: string, c: FailoverController) => {
      listen(sid, c);
      if (!def.automatic || sid !== serverId || watched === c) return;
      watched?.off('restored', onRestored);
      watched = c;
      c.on('restored', onRestored);
    };
    const detach = (sid: string, c: FailoverController) => {
      if (watched === c) {
        c.off('restored', onRestored);
        watched = null;
      }
      if (listening === c) {
        c.off('failback', onAnyFailback);
        listening = null;
      }
      void sid;
    };
    if (setupError) show('red', 'ring', setupError);
    else {
      show('grey', 'ring', def.automatic ? t('status.automatic') : t('status.manual'));
      failoverControllers.on('added', attach);
      failoverControllers.on('removed', detach);
      const c = failoverControllers.get(serverId!);
      if (c) attach(serverId!, c);
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      const fail = (err: unknown) => {
        const e = err instanceof Error ? err : new Error(errorText(err));
        show('red', 'ring', e.message);
        if (!(err instanceof CommandError) && !(err instanceof FailbackRefused) && !(err instanceof FailbackStepFailed)) node.warn(e.message);
        done(e);
      };
      let c: FailoverController;
      let cmd;
      try {
        c = controller();
        // a failover-watch "restored" message wired here asks for the failback of that server
        const p =
          msg.topic === 'restored' && msg.payload && typeof (msg.payload as { server?: unknown }).server === 'string'
            ? { server: (msg.payload as { server: string }).server }
            : msg.payload;
        cmd = parseFailbackCommand(p);
      } catch (err) {
        return fail(err);
      }
      if (cmd.check) {
        try {
          const id = cmd.entryId ?? c.log.list({ state: 'active', failedServer: cmd.server }, 1)[0]?.id;
          if (id === undefined) throw new CommandError(`Failback refused: the failover log has no active entry for ${cmd.server}`);
          const entry = c.check(id);
          send([{ ...msg, topic: 'failback check', payload: { ok: true, entry } } as NodeMessage, null]);
          return done();
        } catch (err) {
          return fail(err);
        }
      }
      show('yellow', 'dot', t('status.running', { server: cmd.server ?? `entry ${cmd.entryId}` }));
      const run = cmd.entryId !== undefined ? c.failback(cmd.entryId, 'manual', node.id) : c.autoFailback(cmd.server!, node.id);
      run
        .then((d) => {
          if ('refused' in d) throw new CommandError(d.refused);
          const [ok, copy] = results(d);
          show('green', 'dot', t('status.ok', { server: d.entry.failedServer }));
          send([
            { ...msg, ...ok },
            { ...msg, ...copy },
          ] as NodeMessage[]);
          done();
        })
        .catch(fail);
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      failoverControllers.off('added', attach);
      failoverControllers.off('removed', detach);
      watched?.off('restored', onRestored);
      watched = null;
      listening?.off('failback', onAnyFailback);
      listening = null;
      done();
    });
  }

  RED.nodes.registerType('failback', Failback as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);

  // Manual failback from the failover log (the sidebar's "Start failback"): needs the redundancy.failback permission.
  RED.httpAdmin.post('/twinrec/failback', RED.auth.needsPermission('redundancy.failback'), (req: Request, res: Response) => {
    let cmd;
    try {
      cmd = parseFailbackCommand(req.body ?? {});
    } catch (err) {
      return res.status(400).json({ error: errorText(err) });
    }
    const c = pickByServer(failoverControllers, req);
    if (!c) return noNode(res, 'failover-watch');
    const user = (req as Request & { user?: { username?: string } }).user?.username ?? 'anonymous';
    const id = cmd.entryId ?? c.log.list({ state: 'active', failedServer: cmd.server }, 1)[0]?.id;
    if (id === undefined) return res.status(409).json({ error: `Failback refused: the failover log has no active entry for ${cmd.server}`, check: 'entry' });
    if (cmd.check) {
      try {
        return res.json({ ok: true, entry: c.check(id) });
      } catch (err) {
        return res.status(409).json({ error: errorText(err), check: err instanceof FailbackRefused ? err.check : null });
      }
    }
    c.failback(id, 'manual', `admin:${user}`)
      .then((d) => {
        res.json(results(d)[0].payload);
      })
      .catch((err: unknown) => {
        const status = err instanceof FailbackRefused ? 409 : 500;
        res.status(status).json({ error: errorText(err), check: err instanceof FailbackRefused ? err.check : null });
      });
  });
};
