/**
 * The direct probe of a watched server: a TCP connect to an address of it,
 * answered within the timeout or not. It cannot tell a hung server from a live
 * one (the kernel completes the handshake for a frozen process); it only tells
 * a machine that is gone from one that is there.
 */
import net from 'node:net';

/** Whether a TCP connect to host:port completes within timeoutMs. Never rejects. */
export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let answered = false;
    const finish = (ok: boolean) => {
      if (answered) return;
      answered = true;
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.once('connect', () => finish(true));
    sock.on('error', () => finish(false)); // every error, not just the first: none may escape
  });
}
