/** Eclipse Mosquitto (Debian package) as the site's broker in tests: own config, loopback, stopped by PID. */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports';

export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface Broker {
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** The CA certificate of a TLS broker (null without TLS). */
  cafile: string | null;
  /** A client certificate the broker accepts (with requireClientCert), else null. */
  clientCert: { certfile: string; keyfile: string } | null;
  /** Stop (SIGTERM, SIGKILL after 3 s). */
  stop(): Promise<void>;
  /** Stop and start again on the same port (a broker restart). */
  restart(): Promise<void>;
  /** Stop the broker for an outage (resume() brings it back on the same port). */
  halt(): Promise<void>;
  resume(): Promise<void>;
  log(): string;
}

function waitPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > until) reject(new Error(`mosquitto did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** A CA and a server certificate for 127.0.0.1 made with openssl, for a TLS listener. */
/** A client certificate and key signed by the CA of makeTlsFiles (for a broker that requires one). */
export function makeClientCert(dir: string, cn = 'twinrec client'): { certfile: string; keyfile: string } {
  const f = (n: string) => path.join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f('client.key'), '-out', f('client.csr')]);
  run(['x509', '-req', '-in', f('client.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f('client.crt')]);
  return { certfile: f('client.crt'), keyfile: f('client.key') };
}

export function makeTlsFiles(dir: string): { cafile: string; certfile: string; keyfile: string } {
  const f = (n: string) => path.join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=twinrec test CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr')]);
  fs.writeFileSync(f('san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run([
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('san.cnf'),
    '-out',
    f('server.crt'),
  ]);
  return { cafile: f('ca.crt'), certfile: f('server.crt'), keyfile: f('server.key') };
}

export async function startMosquitto(
  opts: {
    users?: Record<string, string>;
    port?: number;
    tls?: boolean;
    /** With tls: every client must present a certificate signed by the test CA (mutual TLS); broker.clientCert has one. */
    requireClientCert?: boolean;
    /** More addresses to listen on (same port, no TLS), besides 127.0.0.1: e.g. the host end of a veth pair. */
    listen?: string[];
  } = {},
): Promise<Broker> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-mosq-'));
  const port = opts.port ?? (await freePort());
  const lines = [`listener ${port} 127.0.0.1`, 'persistence false', `log_dest file ${path.join(dir, 'mosquitto.log')}`, 'log_type all'];
  // as root, mosquitto would switch to its own user, which cannot read our temp folder
  if (process.getuid?.() === 0) lines.push('user root');
  let tlsFiles: ReturnType<typeof makeTlsFiles> | null = null;
  if (opts.tls) {
    tlsFiles = makeTlsFiles(dir);
    lines.push(`cafile ${tlsFiles.cafile}`, `certfile ${tlsFiles.certfile}`, `keyfile ${tlsFiles.keyfile}`, 'tls_version tlsv1.2');
    if (opts.requireClientCert) lines.push('require_certificate true');
  }
  const clientCert = opts.tls && opts.requireClientCert ? makeClientCert(dir) : null;
  if (opts.users) {
    const pw = path.join(dir, 'passwd');
    fs.writeFileSync(pw, '');
    for (const [u, p] of Object.entries(opts.users)) execFileSync('/usr/bin/mosquitto_passwd', ['-b', pw, u, p]);
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else {
    lines.push('allow_anonymous true');
  }
  // after the first listener's own settings (TLS): plain listeners on the extra addresses
  for (const addr of new Set(opts.listen ?? [])) if (addr !== '127.0.0.1') lines.push(`listener ${port} ${addr}`);
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, lines.join('\n') + '\n');
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    await Promise.race([
      waitPort(port, 10000),
      new Promise<void>((_, reject) => child.once('exit', (code) => reject(new Error(`mosquitto exited (${code}): ${err}`)))),
    ]);
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };
  await launch();
  const broker: Broker = {
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    cafile: tlsFiles?.cafile ?? null,
    clientCert,
    port,
    get pid() {
      return child.pid!;
    },
    dir,
    async stop() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await stop();
      await launch();
    },
    async halt() {
      await stop();
    },
    async resume() {
      await launch();
    },
    log: () => {
      try {
        return fs.readFileSync(path.join(dir, 'mosquitto.log'), 'utf8');
      } catch {
        return '';
      }
    },
  };
  return broker;
}
