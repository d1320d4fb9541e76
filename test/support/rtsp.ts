/**
 * Test helper: a real RTSP camera (GStreamer's GstRtspServer, driven by
 * test/support/rtsp-server.py through Debian's /usr/bin/python3).
 */
import { spawn, ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { freePort } from './ports';

export const RTSP_PYTHON = '/usr/bin/python3';
/** Compiled JS sits beside the TS, so the .py is next to both. */
export const RTSP_SERVER_SCRIPT = path.join(__dirname, 'rtsp-server.py');

export interface RtspServerOptions {
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /** Mount points, default ['/cam']. */
  paths?: string[];
  /** Frame rate: '25', '30000/1001', ... default '25'. */
  fps?: string;
  /** 'WIDTHxHEIGHT', default '640x360'. */
  size?: string;
  /** Keyframe interval in frames, default one second of frames. */
  gop?: number;
}

export interface RtspServerHandle {
  /** URL of the first mount. */
  url: string;
  /** URLs of all mounts, in the order of opts.paths. */
  urls: string[];
  port: number;
  pid: number;
  /** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
  stop(): Promise<void>;
  /** Immediate SIGKILL (simulates a camera crash). */
  kill9(): void;
}

const READY_TIMEOUT_MS = 20000;
const STOP_GRACE_MS = 3000;

export { freePort };

function normalisePath(p: string): string {
  return p.startsWith('/') ? p : `/${p}`;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function launchRtspServer(
  opts: RtspServerOptions = {},
): Promise<RtspServerHandle & { exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> {
  const port = opts.port ?? (await freePort());
  const paths = (opts.paths && opts.paths.length > 0 ? opts.paths : ['/cam']).map(normalisePath);
  const args = [RTSP_SERVER_SCRIPT, '--port', String(port)];
  for (const p of paths) args.push('--path', p);
  if (opts.fps !== undefined) args.push('--fps', String(opts.fps));
  if (opts.size !== undefined) args.push('--size', opts.size);
  if (opts.gop !== undefined) args.push('--gop', String(opts.gop));

  const child = spawn(RTSP_PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-64 * 1024);
  });

  const exited = new Promise<void>((resolve) => {
    if (hasExited(child)) resolve();
    else child.once('exit', () => resolve());
  });

  const urls: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        finish(new Error(`RTSP server did not print READY within ${READY_TIMEOUT_MS} ms (port ${port}). stderr:\n${stderr}`));
      }, READY_TIMEOUT_MS);
      const onData = (d: string) => {
        stdout += d;
        let nl: number;
        while ((nl = stdout.indexOf('\n')) >= 0) {
          const line = stdout.slice(0, nl).trim();
          stdout = stdout.slice(nl + 1);
          const m = /^READY (rtsp:\/\/\S+)$/.exec(line);
          if (m) urls.push(m[1]);
        }
        if (urls.length >= paths.length) finish();
      };
      const onExit = (code: number | null, sig: NodeJS.Signals | null) => {
        // Give the stderr stream a moment to drain before reporting.
        setImmediate(() => finish(new Error(`RTSP server exited before READY (code ${code}, signal ${sig}). stderr:\n${stderr}`)));
      };
      const onError = (err: Error) => finish(new Error(`cannot spawn ${RTSP_PYTHON}: ${err.message}`));
      let done = false;
      function finish(err?: Error) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        child.off('error', onError);
        if (err) reject(err);
        else resolve();
      }
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
      child.once('error', onError);
    });
  } catch (err) {
    if (child.pid !== undefined && !hasExited(child)) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await exited;
    }
    throw err;
  }
  // Keep draining stdout so the pipe never fills.
  child.stdout!.resume();

  const pid = child.pid!;
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (hasExited(child)) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      let timer: NodeJS.Timeout | undefined;
      const killer = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (!hasExited(child)) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
          resolve();
        }, STOP_GRACE_MS);
      });
      await Promise.race([exited, killer]);
      clearTimeout(timer);
      await exited;
    })();
    return stopping;
  };

  const kill9 = (): void => {
    if (hasExited(child)) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };

  const exitInfo = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (hasExited(child)) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { url: urls[0], urls, port, pid, stop, kill9, exited: exitInfo };
}

/**
 * Start GStreamer's RTSP server as the test camera. GStreamer 1.22 sometimes
 * aborts (gst_rtsp_media_get_rates: assertion failed) while clients connect and
 * disconnect; when it dies without being asked, it is started again at once on
 * the same port, like a camera that reboots (the recorders reconnect by
 * themselves). stop() and kill9() end it for good.
 */
export async function startRtspServer(opts: RtspServerOptions = {}): Promise<RtspServerHandle & { restarts: number; drops: number }> {
  let current = await launchRtspServer(opts);
  const port = current.port;
  let ended = false;
  const handle = {
    url: current.url,
    urls: current.urls,
    port,
    restarts: 0,
    /** times the camera died without being asked to (counted at once, before the restart) */
    drops: 0,
    get pid() {
      return current.pid;
    },
    async stop() {
      ended = true;
      await current.stop();
    },
    kill9() {
      ended = true;
      current.kill9();
    },
  };
  const watch = (h: typeof current) => {
    h.exited.then(async ({ code, signal }) => {
      if (ended || h !== current) return;
      handle.drops++;
      process.stderr.write(`  (test camera on port ${port} died: code ${code}, signal ${signal}; restarting it)\n`);
      for (let attempt = 0; attempt < 5 && !ended; attempt++) {
        try {
          current = await launchRtspServer({ ...opts, port });
          handle.restarts++;
          if (ended) await current.stop();
          else watch(current);
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    });
  };
  watch(current);
  return handle;
}

/**
 * Run one take against the test camera; when it fails and the camera aborted
 * during it (a GStreamer 1.22 assertion, see startRtspServer), run it again,
 * up to `attempts` takes in all. A failure while the camera stayed up is
 * never retried.
 */
export async function onSteadyCamera<T>(camera: { drops: number }, attempts: number, take: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const drops = camera.drops;
    try {
      return await take(attempt);
    } catch (err) {
      if (camera.drops === drops || attempt >= attempts) throw err;
      process.stderr.write(`  (the test camera aborted during take ${attempt}, which failed: ${(err as Error).message.split('\n')[0]}; taking it again)\n`);
    }
  }
}
