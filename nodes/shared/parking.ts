/**
 * The recorder channels of this process parked through a deploy (lib/recorder/parking.ts),
 * and whether Node-RED is stopping (a stop is no deploy: a channel is then suspended,
 * as before, not parked).
 */
import type { RecorderChannel } from '../../lib/recorder/channel';
import { ChannelParking } from '../../lib/recorder/parking';
import type { Catalogue } from '../../lib/store/catalogue';
import { errorText } from '../../lib/model/errors';

export interface ParkedChannel {
  channel: RecorderChannel;
  catalogue: Catalogue;
  log: { warn(m: string): void; error(m: string): void };
}

/** How long a parked channel waits for its next node (a full deploy of a large site included). */
export const PARKING_GRACE_MS = 10000;

/** A parked channel nobody took (or whose settings changed) is suspended, as a restart always did. */
export function suspendParked(p: ParkedChannel): Promise<void> {
  return p.channel
    .close(false)
    .catch((err) => p.log.error(`the recording of a channel left by a deploy could not be suspended: ${errorText(err)}`))
    .then(() => p.catalogue.release());
}

export const parkedChannels = new ChannelParking<ParkedChannel>((p) => {
  p.log.warn('no recorder took this channel back after the deploy: its recording is suspended');
  void suspendParked(p);
});

let stopping = false;
let watching = false;
/** Node-RED is stopping (a signal or PM2's shutdown message reached it), not deploying. */
export function nodeRedStopping(): boolean {
  return stopping;
}

/**
 * Notice Node-RED stopping. Called when a recorder node starts, when Node-RED's
 * runtime (red.js) listens for its stop signals: a listener is added only to a
 * signal something already listens for, so a process that would die of it still does.
 */
export function watchNodeRedStop(): void {
  if (watching) return;
  watching = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2', 'SIGBREAK'] as const) {
    // before Node-RED's own listener, which starts closing the nodes at once
    if (process.listenerCount(sig) > 0) process.prependListener(sig, () => (stopping = true));
  }
  if (process.listenerCount('message') > 0) process.prependListener('message', (m) => m === 'shutdown' && (stopping = true));
  // a process that ends another way with channels parked: their ffmpeg end with it (the next start recovers the clips)
  process.on('exit', () => {
    for (const p of parkedChannels.takeAll()) p.channel.killRuns();
  });
}
