import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { asRecorderEvent, BackupLinkBackup, BackupLinkMain } from '../../lib/backup/backup-link';
import { CommandError, errorText } from '../../lib/model/errors';
import { MirrorMessage } from '../../lib/backup/mirror';
import { ChannelEvent } from '../../lib/recorder/types';
import { recorderChannels } from '../shared/registry';
import type { RedundancyServerNode } from '../shared/types';

interface BackupLinkDef extends NodeDef {
  server: string;
}

type Done = (err?: Error) => void;
type Send = (msg: NodeMessage | NodeMessage[]) => void;

export = function (RED: NodeAPI): void {
  function BackupLink(this: Node, def: BackupLinkDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`backup-link.${key}`, sub);
    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    let main: BackupLinkMain | null = null;
    let backup: BackupLinkBackup | null = null;
    let setupError: string | null = null;
    let mirrored = 0;
    let applied = 0;
    let onEpoch: ((epoch: number) => void) | null = null;

    const showStatus = (error?: string) => {
      if (setupError) return node.status({ fill: 'red', shape: 'ring', text: setupError.slice(0, 60) });
      if (error) return node.status({ fill: 'red', shape: 'ring', text: error.slice(0, 60) });
      const link = server?.linkSummary() ?? null;
      if (link) return node.status({ fill: 'yellow', shape: 'ring', text: link.slice(0, 60) });
      node.status({ fill: 'green', shape: 'dot', text: `out ${mirrored} · in ${applied}` });
    };

    if (!server || !server.identity) {
      setupError = server ? (server.configError ?? 'invalid server') : t('errors.noServer');
    } else if (!server.link) {
      setupError = t('errors.noLink');
    } else {
      const id = server.identity;
      const link = server.link;
      main = new BackupLinkMain(link, { group: id.group, serverId: id.serverId }, (ch) => recorderChannels.get(id.serverId, ch));
      main.on('event', (ev: ChannelEvent) => {
        node.send({ topic: `${ev.server}/${ev.channel}/${ev.event}`, payload: ev } as NodeMessage);
        if (ev.event === 'mismatch') node.warn(`twin mismatch: line ${ev.line?.n} ("${ev.line?.title}"): ${ev.reason}`);
      });
      main.start();
      backup = new BackupLinkBackup(
        link,
        { group: id.group, serverId: id.serverId },
        (ch) => recorderChannels.get(id.serverId, ch),
        (m) => node.warn(m),
      );
      backup.on('event', (ev: ChannelEvent, m: MirrorMessage) => {
        applied++;
        node.send({ topic: `${ev.server}/${ev.channel}/${ev.event}`, payload: ev, mirror: { from: m.from, seq: m.seq } } as NodeMessage);
        showStatus();
      });
      backup.on('failure', (reason: string, m: MirrorMessage) => {
        const msg = { topic: `${m.from.server}/${m.from.channel}/mirror`, payload: m } as NodeMessage;
        node.error(reason, msg);
        showStatus(reason);
      });
      backup.start();
      // after a failback this server's mirrors carry the new epoch again
      onEpoch = (epoch: number) => {
        const n = main?.restamp(epoch) ?? 0;
        if (n) node.log(`epoch ${epoch}: ${n} mirrored line(s) published again`);
      };
      link.on('epoch', onEpoch);
      server.register(node.id);
      server.linkEvents.on('state', onLink);
    }
    function onLink() {
      showStatus();
    }
    showStatus();

    node.on('input', (msg: NodeMessage, _send: Send, done: Done) => {
      try {
        if (!main) throw new Error(t('errors.notReady', { error: setupError ?? '' }));
        const ev = asRecorderEvent(msg.payload);
        if (ev && main.onRecorderEvent(ev)) mirrored++;
        showStatus();
        done();
      } catch (err) {
        const e = err instanceof Error ? err : new Error(errorText(err));
        showStatus(e.message);
        if (!(err instanceof CommandError)) node.warn(e.message);
        done(e);
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      if (onEpoch) server?.link?.off('epoch', onEpoch);
      backup?.stop();
      backup?.removeAllListeners();
      main?.stop();
      main?.removeAllListeners();
      if (server) {
        server.linkEvents.off('state', onLink);
        server.deregister(node.id);
      }
      done();
    });
  }
  RED.nodes.registerType('backup-link', BackupLink as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
