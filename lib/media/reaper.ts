/**
 * No orphan ffmpeg, even when Node-RED is killed with SIGKILL and cannot run its
 * close handlers. One tiny /bin/sh process per Node-RED process holds the list of
 * ffmpeg PIDs on its stdin; when its stdin reaches end-of-file (our process is
 * gone, whatever the cause), it interrupts those ffmpeg processes (so they close
 * their segment cleanly) and kills any that are still there a moment later.
 */
import { ChildProcess, spawn } from 'node:child_process';

const SCRIPT = `
pids=" "
while IFS= read -r cmd; do
  case "$cmd" in
    +*) pids="$pids\${cmd#+} " ;;
    -*) pids=$(printf '%s' "$pids" | sed "s/ \${cmd#-} / /") ;;
  esac
done
[ -n "$(echo $pids)" ] || exit 0
kill -INT $pids 2>/dev/null
sleep 2
kill -KILL $pids 2>/dev/null
exit 0
`;

let reaper: ChildProcess | null = null;
let broken = false;

function ensure(): ChildProcess | null {
  if (reaper && reaper.exitCode === null && !reaper.killed && reaper.stdin && !reaper.stdin.destroyed) return reaper;
  if (broken) return null;
  try {
    const child = spawn('/bin/sh', ['-c', SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    child.on('error', () => {
      broken = true;
      reaper = null;
    });
    child.on('exit', () => {
      if (reaper === child) reaper = null;
    });
    child.stdin?.on('error', () => undefined);
    child.unref();
    (child.stdin as unknown as { unref?: () => void })?.unref?.();
    reaper = child;
    return child;
  } catch {
    broken = true;
    return null;
  }
}

/** Hand a child process to the reaper. */
export function watchPid(pid: number | undefined): void {
  if (!pid) return;
  ensure()?.stdin?.write(`+${pid}\n`);
}

/** The child ended normally: the reaper can forget it. */
export function forgetPid(pid: number | undefined): void {
  if (!pid || !reaper) return;
  reaper.stdin?.write(`-${pid}\n`);
}

/** PID of the reaper itself (for tests). */
export function reaperPid(): number | undefined {
  return reaper?.pid;
}
