/**
 * Before any test: make sure the real peers the tests use are installed
 * (Debian packages; installed with apt-get when we are root, otherwise the
 * error names what to install), and report which ffmpeg the recorder will use.
 */
import { ensureSystem } from './ensure-system';

export function mochaGlobalSetup(): void {
  ensureSystem();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ffmpegInfo } = require('../../lib/media/ffmpeg') as typeof import('../../lib/media/ffmpeg');
  const info = ffmpegInfo();
  console.log(
    `  ffmpeg ${info.version} at ${info.path} (rtsp timeout option ${info.rtspTimeoutOption}, drawtext ${info.hasDrawtext}, libx264 ${info.hasLibx264})`,
  );
}
