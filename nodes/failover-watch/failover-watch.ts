import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { Request, Response } from 'express';
import type { Catalogue } from '../../lib/store/catalogue';
import { livenessKey } from '../../lib/peer/liveness';
import { CommandError, errorText } from '../../lib/model/errors';
import { FailbackDone, FailoverController, FailoverStarted } from '../../lib/failover/controller';
import { parseWatchCommand } from '../../lib/failover/commands';
import { parseWatchSettings } from '../../lib/failover/watch-settings';
import { FailoverEntry } from '../../lib/store/failover-log';
import { ffmpegInfo } from '../../lib/media/ffmpeg';
import { failoverControllers } from '../shared/registry';
import { linkedServer } from '../shared/server';
import type { RedundancyServerNode } from '../shared/types';
import { noNode, pickByServer } from '../shared/admin';

interface WatchDef extends NodeDef {
  server: string;
  watched: string;
  heartbeatTimeout: string | number;
  holdDown: string | number;
  capacity: string | number;
  rank: string | number;
  recordOnDoubt: boolean;
  failoverEnabled: boolean;
  overlap: string | number;
  handbackTimeout: string | number;
}

interface WatchCredentials {
  sourceUser?: string;
  sourcePassword?: string;
}

type Send = (msg: NodeMessage | (NodeMessage | null)[]) => void;
type Done = (err?: Error) => void;

/** Entries as flows and the admin route show them. */
function logView(ctl: FailoverController, limit = 100): { active: FailoverEntry[]; finalized: FailoverEntry[] } {
  return { active: ctl.log.active(), finalized: ctl.log.finalized(limit) };
}

export = function (RED: NodeAPI): void {
  function FailoverWatch(this: Node<WatchCredentials>, def: WatchDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`failover-watch.${key}`, sub);
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    let ctl: FailoverController | null = null;
    let catalogue: Catalogue | null = null;
    let setupError: string | null = null;
    let ready: Promise<void> = Promise.resolve();
    let statusTimer: NodeJS.Timeout | null = null;
    let errorUntil = 0;
    let lastKey = '';

    const out = (port: 0 | 1 | 2, msg: NodeMessage) => {
      const arr: (NodeMessage | null)[] = [null, null, null];
      arr[port] = msg;
      node.send(arr as NodeMessage[]);
    };

    try {
      const { server: srv, identity: id, link: serverLink } = linkedServer(server, t);
      const settings = parseWatchSettings(def, id.link!.heartbeatMs);
      catalogue = srv.catalogue();
      const creds = node.credentials ?? {};
      ctl = new FailoverController(
        {
          self: id.serverId,
          group: id.group,
          ...settings,
          storageRoot: id.storageRoot,
          stateDir: path.join(userDir, 'twinrec'),
          sourceLogin: creds.sourceUser ? { username: creds.sourceUser, password: creds.sourcePassword ?? '' } : null,
          logSynchronous: id.durability,
          livenessKey: id.peerSecret ? livenessKey(id.peerSecret) : null,
        },
        {
          link: serverLink,
          catalogue,
          ffmpeg: ffmpegInfo(),
          log: { info: (m) => node.log(m), warn: (m) => node.warn(m), error: (m) => node.error(m) },
        },
      );
      failoverControllers.set(id.serverId, ctl);
      const c = ctl;
      c.on('failed', (e: { server: string; evidence: string; at: number }) => {
        out(0, { topic: 'failed', payload: e } as NodeMessage);
      });
      c.on('failover', (f: FailoverStarted) => {
        const problems = f.channels.filter((x) => x.error);
        const msg = { topic: f.entry.drill ? 'drill started' : 'failover started', payload: f } as NodeMessage;
        out(0, msg);
        if (problems.length)
          node.error(t('errors.takeover', { server: f.entry.failedServer, detail: problems.map((p) => `channel ${p.channel}: ${p.error}`).join('; ') }), msg);
      });
      c.on('released', (r: { server: string; reason: string }) => out(0, { topic: 'released', payload: r } as NodeMessage));
      c.on('failback', (d: FailbackDone) => out(0, { topic: d.how === 'drill' ? 'drill finished' : 'failback performed', payload: d } as NodeMessage));
      c.on('restored', (r: { server: string; at: number; entries: FailoverEntry[] }) => {
        out(1, { topic: 'restored', payload: { server: r.server, at: r.at, entryIds: r.entries.map((e) => e.id) } } as NodeMessage);
      });
      c.on('isolated', (i: { evidence: string; at: number; recordOnDoubt: boolean }) => out(2, { topic: 'isolated', payload: i } as NodeMessage));
      c.on('connected', (i: { at: number }) => out(2, { topic: 'connected', payload: i } as NodeMessage));
      ready = c.start().catch((err) => {
        setupError = errorText(err);
        node.error(t('errors.start', { error: setupError }));
      });
      statusTimer = setInterval(showStatus, 1000);
    } catch (err) {
      setupError = errorText(err);
      node.error(setupError);
      // a controller made before the error (a second failover-watch on this server) never started: it takes no commands
      if (ctl) {
        const c = ctl;
        ctl = null;
        c.close().catch(() => undefined);
      }
    }
    showStatus();

    function showStatus(): void {
      if (Date.now() < errorUntil) return;
      let s: { fill: 'red' | 'green' | 'yellow' | 'grey'; shape: 'dot' | 'ring'; text: string };
      if (setupError || !ctl) s = { fill: 'red', shape: 'ring', text: (setupError ?? '').slice(0, 60) };
      else {
        const w = ctl.watched();
        const taken = w.filter((x) => x.takenOver).map((x) => x.server);
        const failed = w.filter((x) => x.status === 'failed' && !x.takenOver).map((x) => x.server);
        const link = server?.linkSummary() ?? null;
        if (ctl.isIsolated()) s = { fill: 'red', shape: 'dot', text: t('status.isolated') };
        else if (taken.length) s = { fill: 'red', shape: 'dot', text: t('status.recordingFor', { servers: taken.join(', ') }) };
        else if (failed.length) s = { fill: 'red', shape: 'ring', text: t('status.failed', { servers: failed.join(', ') }) };
        else if (link) s = { fill: 'yellow', shape: 'ring', text: link };
        else if (!ctl.isEnabled()) s = { fill: 'grey', shape: 'ring', text: t('status.disabled') };
        else s = { fill: 'green', shape: 'dot', text: t('status.watching', { n: w.length, ok: w.filter((x) => x.status === 'ok').length }) };
      }
      const key = JSON.stringify(s);
      if (key === lastKey) return;
      lastKey = key;
      node.status(s);
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      const fail = (err: unknown) => {
        const e = err instanceof Error ? err : new Error(errorText(err));
        errorUntil = Date.now() + 3000;
        lastKey = '';
        node.status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) });
        if (!(err instanceof CommandError)) node.warn(e.message);
        done(e);
      };
      if (!ctl || setupError) return fail(new Error(t('errors.notReady', { error: setupError ?? '' })));
      const c = ctl;
      let cmd;
      try {
        cmd = parseWatchCommand(msg.payload);
      } catch (err) {
        return fail(err);
      }
      const reply = (payload: unknown) => {
        const arr: (NodeMessage | null)[] = [{ ...msg, topic: cmd.command, payload } as NodeMessage, null, null];
        send(arr as NodeMessage[]);
        done();
      };
      ready
        .then(async () => {
          switch (cmd.command) {
            case 'status':
              return reply({ self: c.options.self, enabled: c.isEnabled(), isolated: c.isIsolated(), watched: c.watched() });
            case 'log': {
              const v = logView(c, cmd.limit ?? 100);
              if (cmd.state === 'active') return reply({ active: v.active });
              if (cmd.state === 'finalized') return reply({ finalized: v.finalized });
              return reply(v);
            }
            case 'drill': {
              const r = await c.drill(cmd.server!, (cmd.duration ?? 10) * 1000);
              return reply(r);
            }
            case 'maintenance':
              c.setMaintenance(cmd.server!, cmd.on!);
              showStatus();
              return reply({ server: cmd.server, maintenance: cmd.on });
            case 'enable':
            case 'disable':
              c.setEnabled(cmd.command === 'enable');
              showStatus();
              return reply({ enabled: c.isEnabled() });
            case 'mark':
              c.mark(cmd.server!, cmd.failed!);
              return reply({ server: cmd.server, markedFailed: c.isMarkedFailed(cmd.server!) });
            case 'release':
              await c.releaseByHand(cmd.server!);
              showStatus();
              return reply({ server: cmd.server, takenOver: false });
          }
        })
        .catch(fail);
    });

    node.on('close', (removed: boolean, done: () => void) => {
      if (statusTimer) clearInterval(statusTimer);
      statusTimer = null;
      const c = ctl;
      ctl = null;
      const finish = () => {
        catalogue?.release();
        catalogue = null;
        done();
      };
      if (!c) return finish();
      if (server?.identity) failoverControllers.delete(server.identity.serverId, c);
      c.removeAllListeners();
      // a redeploy suspends the takeover recordings (they resume at once); removing the node stops them
      c.close(removed)
        .catch((err) => node.error(errorText(err)))
        .then(finish);
    });
  }

  RED.nodes.registerType('failover-watch', FailoverWatch as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials: { sourceUser: { type: 'text' }, sourcePassword: { type: 'password' } },
  });

  // ------------------------------------------------------------------ admin routes
  const pick = (req: Request) => pickByServer(failoverControllers, req);
  const noWatch = (res: Response) => noNode(res, 'failover-watch');

  RED.httpAdmin.get('/twinrec/failover', RED.auth.needsPermission('redundancy.read'), (req: Request, res: Response) => {
    try {
      const ctls = typeof req.query.server === 'string' ? [failoverControllers.get(req.query.server)].filter(Boolean) : failoverControllers.all();
      res.json({
        servers: (ctls as FailoverController[]).map((c) => ({
          self: c.options.self,
          group: c.options.group,
          enabled: c.isEnabled(),
          isolated: c.isIsolated(),
          watched: c.watched(),
          ...logView(c),
        })),
      });
    } catch (err) {
      res.status(500).json({ error: errorText(err) });
    }
  });

  RED.httpAdmin.post('/twinrec/failover/maintenance', RED.auth.needsPermission('redundancy.maintenance'), (req: Request, res: Response) => {
    const c = pick(req);
    if (!c) return noWatch(res);
    try {
      const body = (req.body ?? {}) as { server?: unknown; on?: unknown };
      const cmd = parseWatchCommand({ command: 'maintenance', server: body.server, on: body.on });
      c.setMaintenance(cmd.server!, cmd.on!);
      res.json({ server: cmd.server, maintenance: cmd.on });
    } catch (err) {
      res.status(400).json({ error: errorText(err) });
    }
  });
};
