/** Process-wide registry of recorder channels, so backup-link can feed the Aux lines of a recorder. */
import { ControllerRegistry } from '../../lib/server-identity';
import type { RecorderChannel } from '../../lib/recorder-channel';

export const recorderChannels = new ControllerRegistry<RecorderChannel>();
