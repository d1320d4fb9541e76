/** A TCP port on 127.0.0.1 that is free right now (for test peers). */
import net from 'node:net';

/**
 * Every port handed out in this process. A test often takes two ports before
 * either is listened on (a Node-RED process and its peer API, started later);
 * the kernel may give the same free port twice in a row, and the second
 * listener then fails with EADDRINUSE (seen in CI: Node-RED and the peer API
 * of one server on one port). A port handed out once is not handed out again.
 */
const handedOut = new Set<number>();

function osFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await osFreePort();
    if (handedOut.has(p)) continue;
    handedOut.add(p);
    return p;
  }
  throw new Error('no free port on 127.0.0.1 that this test run has not handed out already (50 tries)');
}
