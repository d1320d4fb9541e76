/**
 * The real peers the tests run against are Debian packages, not npm ones.
 * Keep DEBIAN_PACKAGES in sync with the literal list in .ci/run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

export const DEBIAN_PACKAGES: readonly string[] = [
  'ffmpeg',
  'mosquitto',
  'mosquitto-clients',
  'gir1.2-gst-rtsp-server-1.0',
  'gstreamer1.0-plugins-base',
  'gstreamer1.0-plugins-good',
  'gstreamer1.0-plugins-bad',
  'gstreamer1.0-plugins-ugly',
  'gstreamer1.0-libav',
  'gstreamer1.0-tools',
  'gstreamer1.0-x',
  'chromium',
  'python3-gi',
  'python3-pymodbus',
  'python3-serial-asyncio',
  'socat',
  'fonts-dejavu-core',
  'procps',
  'iproute2',
  'ca-certificates',
];

const PYTHON = '/usr/bin/python3';

interface Check {
  what: string;
  packages: string[];
  ok: () => boolean;
}

function pythonOk(code: string): boolean {
  if (!fs.existsSync(PYTHON)) return false;
  const r = spawnSync(PYTHON, ['-c', code], { stdio: 'ignore', timeout: 30000 });
  return r.status === 0;
}

const CHECKS: Check[] = [
  { what: '/usr/bin/ffmpeg', packages: ['ffmpeg'], ok: () => fs.existsSync('/usr/bin/ffmpeg') },
  { what: '/usr/bin/ffprobe', packages: ['ffmpeg'], ok: () => fs.existsSync('/usr/bin/ffprobe') },
  { what: '/usr/sbin/mosquitto', packages: ['mosquitto'], ok: () => fs.existsSync('/usr/sbin/mosquitto') },
  { what: '/usr/bin/mosquitto_pub', packages: ['mosquitto-clients'], ok: () => fs.existsSync('/usr/bin/mosquitto_pub') },
  { what: '/usr/bin/chromium (browser tests of the editor)', packages: ['chromium'], ok: () => fs.existsSync('/usr/bin/chromium') },
  { what: '/usr/bin/gst-launch-1.0', packages: ['gstreamer1.0-tools'], ok: () => fs.existsSync('/usr/bin/gst-launch-1.0') },
  {
    what: 'python3 gi GstRtspServer 1.0',
    packages: [
      'python3-gi',
      'gir1.2-gst-rtsp-server-1.0',
      'gstreamer1.0-plugins-base',
      'gstreamer1.0-plugins-good',
      'gstreamer1.0-plugins-bad',
      'gstreamer1.0-plugins-ugly',
      'gstreamer1.0-libav',
    ],
    ok: () => pythonOk('import gi; gi.require_version("GstRtspServer","1.0"); from gi.repository import GstRtspServer'),
  },
  // the test camera burns a running timecode in with timeoverlay (Pango), which Debian ships in gstreamer1.0-x
  {
    what: 'GStreamer timeoverlay',
    packages: ['gstreamer1.0-x'],
    ok: () => spawnSync('/usr/bin/gst-inspect-1.0', ['timeoverlay'], { stdio: 'ignore', timeout: 30000 }).status === 0,
  },
  { what: '/usr/bin/socat (a serial line for Modbus RTU)', packages: ['socat'], ok: () => fs.existsSync('/usr/bin/socat') },
  { what: 'python3 pymodbus server', packages: ['python3-pymodbus', 'python3-serial-asyncio'], ok: () => pythonOk('import pymodbus.server') },
];

function failedChecks(): Check[] {
  return CHECKS.filter((c) => !c.ok());
}

/** Human-readable names of the missing system tools (empty when all present). */
export function missingSystemTools(): string[] {
  return failedChecks().map((c) => c.what);
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Make sure the Debian peers are installed. As root with apt-get, installs the
 * whole DEBIAN_PACKAGES list; otherwise throws naming the packages to install.
 */
export function ensureSystem(): void {
  const failed = failedChecks();
  if (failed.length === 0) return;
  const needed = [...new Set(failed.flatMap((c) => c.packages))];
  const what = failed.map((c) => c.what).join(', ');
  if (isRoot() && fs.existsSync('/usr/bin/apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('/usr/bin/apt-get', ['update'], { stdio: 'inherit', env });
    execFileSync('/usr/bin/apt-get', ['install', '-y', '--no-install-recommends', ...DEBIAN_PACKAGES], {
      stdio: 'inherit',
      env,
    });
    const still = missingSystemTools();
    if (still.length > 0) {
      throw new Error(`system tools still missing after apt-get install: ${still.join(', ')}`);
    }
    return;
  }
  throw new Error(
    `missing system tools: ${what}. Install the Debian packages with:\n` + `  sudo apt-get install -y --no-install-recommends ${needed.join(' ')}`,
  );
}
