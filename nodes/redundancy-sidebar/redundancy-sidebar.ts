/**
 * The editor's "Redundancy" sidebar, runtime side (a Node-RED plugin): one
 * admin route, GET /twinrec/overview, with what the sidebar shows, and change
 * notices on the editor's comms topic twinrec/redundancy, at most two a second.
 * The data shaping and the notifier live in lib/failover/overview.ts; here we
 * only find the live parts (redundancy-server nodes and the registries) and
 * follow their events.
 */
import type { NodeAPI } from 'node-red';
import type { Request, Response } from 'express';
import { errorText } from '../../lib/model/errors';
import {
  buildOverview,
  ChangeNotice,
  ChangeNotifier,
  CONTROLLER_EVENTS,
  COPY_EVENTS,
  Emitter,
  eventServer,
  LINK_EVENTS,
  LocalServerSource,
  TRANSFER_EVENTS,
  watchEvents,
} from '../../lib/failover/overview';
import { failoverControllers, materialCopyServices, transferManagers } from '../shared/registry';
import type { RedundancyServerNode } from '../shared/types';

/** The editor's comms topic of the change notices (the sidebar subscribes to it). */
const COMMS_TOPIC = 'twinrec/redundancy';

export = function (RED: NodeAPI): void {
  const t = (key: string, sub?: Record<string, string | number>) => RED._(`redundancy-sidebar.${key}`, sub);

  /** The redundancy-server config nodes of the running flows. */
  const serverNodes = (): RedundancyServerNode[] => {
    const ids: string[] = [];
    RED.nodes.eachNode((n: { id: string; type: string }) => {
      if (n.type === 'redundancy-server') ids.push(n.id);
    });
    return ids.map((id) => RED.nodes.getNode(id) as RedundancyServerNode | null).filter((n): n is RedundancyServerNode => !!n);
  };
  const serverSource = (n: RedundancyServerNode): LocalServerSource => ({
    serverId: n.identity?.serverId ?? null,
    group: n.identity?.group ?? null,
    role: n.identity?.role ?? null,
    configError: n.configError ?? null,
    link: n.link,
  });

  let lastPublishError = 0;
  const notifier = new ChangeNotifier((n: ChangeNotice) => RED.comms.publish(COMMS_TOPIC, n, false), {
    minGapMs: 500,
    onError: (err) => {
      if (Date.now() - lastPublishError < 60000) return;
      lastPublishError = Date.now();
      RED.log.warn(t('errors.publish', { error: errorText(err) }));
    },
  });
  const note = notifier.note.bind(notifier);

  // follow the events of every live part; a deploy replaces them, so follow the new ones then
  let detach: (() => void)[] = [];
  const rescan = () => {
    try {
      for (const d of detach) d();
      detach = [];
      for (const n of serverNodes()) {
        const link = n.link;
        if (link)
          detach.push(
            watchEvents(link as unknown as Emitter, LINK_EVENTS, note, (a) => (a[0] as { server?: string } | undefined)?.server ?? n.identity?.serverId),
          );
      }
      for (const c of failoverControllers.all()) detach.push(watchEvents(c as unknown as Emitter, CONTROLLER_EVENTS, note, eventServer));
      for (const s of materialCopyServices.all()) detach.push(watchEvents(s as unknown as Emitter, COPY_EVENTS, note, eventServer));
      for (const m of transferManagers.all()) detach.push(watchEvents(m as unknown as Emitter, TRANSFER_EVENTS, note, () => m.options.mainServer));
      note('deploy');
    } catch (err) {
      RED.log.warn(t('errors.watch', { error: errorText(err) }));
    }
  };
  RED.events.on('flows:started', rescan);
  failoverControllers.on('added', rescan);
  failoverControllers.on('removed', rescan);

  // the runtime never unloads a plugin, so the listeners above stay for the life of the process
  RED.plugins.registerPlugin('twinrec-redundancy-sidebar', { type: 'twinrec-sidebar' });

  RED.httpAdmin.get('/twinrec/overview', RED.auth.needsPermission('redundancy.read'), (req: Request, res: Response) => {
    const limit = req.query.finalized === undefined ? 20 : Number(req.query.finalized);
    if (!(Number.isInteger(limit) && limit >= 0 && limit <= 1000)) return res.status(400).json({ error: t('errors.finalized') });
    try {
      res.json(
        buildOverview({
          servers: serverNodes().map(serverSource),
          controllers: failoverControllers.all(),
          copies: materialCopyServices.all(),
          transfers: transferManagers.all(),
          finalizedLimit: limit,
        }),
      );
    } catch (err) {
      res.status(500).json({ error: errorText(err) });
    }
  });
};
