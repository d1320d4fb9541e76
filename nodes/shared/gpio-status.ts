/** The status a gpio-in / gpio-out shows for its device's link state. */
import type { NodeStatus } from 'node-red';
import type { GpioDevice } from '../../lib/studio/gpio-device';

type Translate = (key: string, sub?: Record<string, string | number>) => string;

/** null when connected (the node shows its own value then). */
export function linkStatus(d: GpioDevice, t: Translate): NodeStatus | null {
  switch (d.state) {
    case 'connected':
      return null;
    case 'broken':
      return { fill: 'red', shape: 'ring', text: t('status.broken', { reason: (d.error || '').slice(0, 50) }) };
    case 'stopped':
      return { fill: 'grey', shape: 'ring', text: t('status.stopped') };
    default:
      return { fill: 'yellow', shape: 'ring', text: t(`status.${d.state}`) };
  }
}
