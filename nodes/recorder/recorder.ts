import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { Catalogue } from '../../lib/store/catalogue';
import { CommandError, errorText } from '../../lib/model/errors';
import { stripLogin } from '../../lib/model/url';
import { cameraSource, testPatternSource, urlSource } from '../../lib/recorder/sources';
import { recorderSnapshot, snapshotLines } from '../../lib/recorder/settings-snapshot';
import { ffmpegInfo } from '../../lib/media/ffmpeg';
import { RecorderChannel } from '../../lib/recorder/channel';
import { ChannelEvent, ChannelStatus, SourceProvider } from '../../lib/recorder/types';
import { RecorderNodeConfig, resolveRecorderSettings } from '../../lib/recorder/config';
import { channelRegistry } from '../../lib/link/server-identity';
import { recorderChannels } from '../shared/registry';
import { channelFingerprint, softSettings } from '../../lib/recorder/parking';
import { nodeRedStopping, PARKING_GRACE_MS, parkedChannels, suspendParked, watchNodeRedStop } from '../shared/parking';
import type { OnvifCameraNode, RedundancyServerNode } from '../shared/types';

interface RecorderDef extends NodeDef, RecorderNodeConfig {
  server: string;
  camera: string;
}

interface RecorderNode extends Node {
  channelCtl?: RecorderChannel;
}

type Send = (msg: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

export = function (RED: NodeAPI): void {
  function Recorder(this: RecorderNode, def: RecorderDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    watchNodeRedStop();
    const t = (key: string, sub?: Record<string, string | number>) => RED._(`recorder.${key}`, sub);
    let statusTimer: NodeJS.Timeout | null = null;
    let catalogue: Catalogue | null = null;
    let channel: RecorderChannel | null = null;
    let ready: Promise<void> = Promise.resolve();
    /** Before this node's channel opens: the suspension of a parked channel whose settings changed. */
    let opening: Promise<void> | null = Promise.resolve();
    let setupError: string | null = null;
    let claimed: { serverId: string; channel: number } | null = null;
    let errorShownUntil = 0;
    let publishTimer: NodeJS.Timeout | null = null;
    let schedulePublish: () => void = () => undefined;
    /** Under which key and fingerprint this node's channel is parked through a deploy. */
    let parkAs: { key: string; fingerprint: string } | null = null;
    const onEvent = (ev: ChannelEvent) => {
      schedulePublish();
      const msg = toMsg(ev);
      node.send(msg);
      if (ev.event === 'failed' || ev.event === 'interrupted') {
        node.error(`line ${ev.line?.n ?? '?'} ("${ev.line?.title ?? ''}") ${ev.event}: ${ev.reason ?? ''}`, msg);
      }
      showStatus();
    };
    const log = { info: (m: string) => node.log(m), warn: (m: string) => node.warn(m), error: (m: string) => node.error(m) };
    const onLinkState = () => {
      lastStatusKey = '';
      showStatus();
    };

    const server = RED.nodes.getNode(def.server) as RedundancyServerNode | null;
    try {
      if (!server) throw new Error(t('errors.noServer'));
      if (!server.identity) throw new Error(t('errors.badServer', { error: server.configError ?? '?' }));
      const settings = resolveRecorderSettings(def);
      const id = server.identity;
      let source: SourceProvider;
      /** What the source is, for the fingerprint of a deploy (unchanged source, unchanged recording). */
      let sourceKey: string = settings.sourceType;
      // the stream address the settings cache carries for a failover server (never a password)
      let cacheUrl: () => { url: string; login: boolean } | null = () => null;
      if (settings.sourceType === 'testpattern') {
        source = testPatternSource();
      } else if (settings.sourceType === 'url') {
        const url = settings.url!;
        cacheUrl = () => stripLogin(url);
        source = urlSource(url, settings.stallTimeoutMs);
        sourceKey = `url ${url}`;
      } else {
        const cam = RED.nodes.getNode(def.camera) as OnvifCameraNode | null;
        if (!cam) throw new Error(t('errors.noCamera'));
        sourceKey = `camera ${def.camera} ${cam.label}`;
        cacheUrl = () => {
          const u = cam.camera?.knownStreamUri();
          if (!u) return null;
          const s = stripLogin(u);
          return { url: s.url, login: s.login || !!cam.credentials?.username };
        };
        source = cameraSource(
          cam.label,
          async () => {
            if (!cam.camera) throw new Error(cam.configError ?? t('errors.noCamera'));
            return cam.camera.getStreamUri();
          },
          settings.stallTimeoutMs,
        );
      }
      channelRegistry.claim(id.serverId, settings.channel, node.id);
      claimed = { serverId: id.serverId, channel: settings.channel };
      catalogue = server.catalogue();
      const channelSettings = {
        serverId: id.serverId,
        group: id.group,
        channel: settings.channel,
        channelName: settings.channelName,
        frameRate: settings.frameRate,
        tcMode: settings.tcMode,
        storageRoot: id.storageRoot,
        segmentSeconds: settings.segmentSeconds,
        container: settings.container,
        videoCodec: settings.videoCodec,
        source,
        backup: settings.backup,
        startTimeoutMs: settings.startTimeoutMs,
        stallTimeoutMs: settings.stallTimeoutMs,
        isOrphan: (origin: { server: string }) => server.link?.peerState(origin.server)?.state === 'offline',
      };
      // a deploy: the channel the node before this one parked goes on recording here when nothing it records changed
      parkAs = {
        key: `${id.serverId}/${settings.channel}`,
        fingerprint: channelFingerprint(channelSettings, sourceKey, { group: id.group, storageRoot: id.storageRoot, catalogueFile: id.catalogueFile }),
      };
      const parked = parkedChannels.take(parkAs.key);
      if (parked && parked.fingerprint === parkAs.fingerprint) {
        channel = parked.item.channel;
        channel.rebind({ source, isOrphan: channelSettings.isOrphan, log, soft: softSettings(channelSettings) });
        parked.item.catalogue.release(); // this node holds the catalogue from here
        opening = null; // running already: nothing to open
        node.log(t('log.adopted'));
      } else {
        // settings changed: the recording is suspended first, then resumed by the new channel (as a restart does)
        if (parked) opening = suspendParked(parked.item);
        channel = new RecorderChannel(channelSettings, { catalogue, ffmpeg: ffmpegInfo(), log });
      }
      node.channelCtl = channel;
      recorderChannels.set(id.serverId, settings.channel, channel);
      // the settings cache: this channel's settings and rec-list, retained on the group's broker
      const srv = server;
      const publishSettings = () => {
        publishTimer = null;
        if (channel) srv.publishSettings(settings.channel, recorderSnapshot(settings, source.label, cacheUrl()), snapshotLines(channel.lines()));
      };
      schedulePublish = () => {
        if (!publishTimer) publishTimer = setTimeout(publishSettings, 200);
      };
      srv.register(node.id);
      srv.linkEvents.on('state', onLinkState);
      channel.on('event', onEvent);
      const ctl = channel;
      ready = (opening ? opening.then(() => ctl.open()) : Promise.resolve()).catch((err) => {
        setupError = errorText(err);
        node.error(t('errors.open', { error: setupError }));
      });
      ready.then(() => {
        schedulePublish();
        showStatus();
      });
      statusTimer = setInterval(showStatus, 1000);
    } catch (err) {
      setupError = errorText(err);
      node.error(setupError);
      node.status({ fill: 'red', shape: 'ring', text: shorten(setupError) });
    }

    function toMsg(ev: ChannelEvent): NodeMessage {
      const msg: NodeMessage & Record<string, unknown> = { topic: `${ev.server}/${ev.channel}/${ev.event}`, payload: ev };
      if (ev.requestId) msg.requestId = ev.requestId;
      return msg;
    }

    let lastStatusKey = '';
    function showStatus(): void {
      if (!channel || Date.now() < errorShownUntil) return;
      if (setupError) {
        node.status({ fill: 'red', shape: 'ring', text: shorten(setupError) });
        return;
      }
      const st: ChannelStatus = channel.status();
      const link = server?.linkSummary() ?? null;
      // only tell the editor when something it shows changed
      const key = `${st.state}|${st.curPoint}|${st.line?.title}|${st.lines}|${st.detail}|${link}`;
      if (key === lastStatusKey) return;
      lastStatusKey = key;
      const linkNote = link ? ` · ${link}` : '';
      switch (st.state) {
        case 'recording':
          node.status({ fill: 'red', shape: 'dot', text: shorten(`REC ${st.curPoint ?? ''} ${st.line?.title ?? ''}`.trim() + linkNote, 80) });
          break;
        case 'idle':
          node.status({ fill: link ? 'yellow' : 'green', shape: 'ring', text: shorten(t('status.ready', { lines: st.lines }) + linkNote, 80) });
          break;
        case 'interrupted':
          node.status({ fill: 'yellow', shape: 'ring', text: t('status.noSignal', { tc: st.curPoint ?? '', reason: st.detail ?? '' }) });
          break;
        case 'armed':
          node.status({ fill: 'yellow', shape: 'dot', text: t('status.armed', { title: st.line?.title ?? '' }) });
          break;
        case 'failed':
          node.status({ fill: 'red', shape: 'ring', text: shorten(t('status.failed', { reason: st.detail ?? '' })) });
          break;
        default:
          node.status({});
      }
    }

    node.on('input', (msg: NodeMessage, send: Send, done: Done) => {
      if (!channel) {
        const err = new Error(t('errors.notReady', { error: setupError ?? '' }));
        node.status({ fill: 'red', shape: 'ring', text: shorten(err.message) });
        done(err);
        return;
      }
      const ctl = channel;
      ready
        .then(() => ctl.execute(msg.payload))
        .then((events) => {
          const reqId = (msg as Record<string, unknown>).requestId;
          for (const ev of events) {
            const out = toMsg(ev);
            // keep the caller's correlation fields (e.g. msg._msgid, http req/res)
            send({ ...msg, ...out, ...(reqId !== undefined ? { requestId: reqId } : {}) });
          }
          showStatus();
          done();
        })
        .catch((err: unknown) => {
          const e = err instanceof Error ? err : new Error(errorText(err));
          errorShownUntil = Date.now() + 3000;
          lastStatusKey = '';
          node.status({ fill: 'red', shape: 'ring', text: shorten(e.message) });
          if (!(err instanceof CommandError)) node.warn(e.message);
          done(e);
        });
    });

    node.on('close', (removed: boolean, done: () => void) => {
      if (statusTimer) clearInterval(statusTimer);
      statusTimer = null;
      if (publishTimer) clearTimeout(publishTimer);
      publishTimer = null;
      if (server) {
        server.linkEvents.off('state', onLinkState);
        server.deregister(node.id);
      }
      const finish = () => {
        if (claimed) channelRegistry.release(claimed.serverId, claimed.channel, node.id);
        if (claimed && channel) recorderChannels.delete(claimed.serverId, claimed.channel, channel);
        catalogue?.release();
        catalogue = null;
        done();
      };
      if (!channel) return finish();
      channel.off('event', onEvent);
      // a deploy (not a removal, not Node-RED stopping): the channel goes on recording, parked for the node that follows
      if (!removed && !nodeRedStopping() && !setupError && parkAs && catalogue) {
        parkedChannels.park(parkAs.key, parkAs.fingerprint, { channel, catalogue, log }, PARKING_GRACE_MS);
        catalogue = null; // the parked channel holds it now
        return finish();
      }
      channel
        .close(removed)
        .catch((err) => node.error(t('errors.close', { error: errorText(err) })))
        .then(finish);
    });
  }

  function shorten(s: string, max = 60): string {
    return s.length > max ? `${s.slice(0, max - 3)}...` : s;
  }

  RED.nodes.registerType('recorder', Recorder as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
};
