/**
 * Network namespaces for tests and benches that cut a server off the network
 * for real (as root): a namespace joined to the host by a veth pair.
 */
import { execFile, execFileSync } from 'node:child_process';

export function run(argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { stdio: 'pipe', encoding: 'utf8' });
}

export function tryRun(argv: string[]): void {
  try {
    run(argv);
  } catch {
    /* already gone */
  }
}

/**
 * A network namespace joined to the host by a veth pair on a private /24:
 * cut() takes the host end down (the namespace's end stays up, without carrier),
 * heal() brings it back.
 */
export class Netns {
  readonly name = `twrec-${process.pid}`;
  readonly hostIf = `twh${process.pid}`.slice(0, 15);
  readonly nsIf = `twn${process.pid}`.slice(0, 15);
  hostAddr = '';
  nsAddr = '';
  private created = false;

  create(): void {
    const used = run(['ip', '-4', '-o', 'addr', 'show']);
    for (let i = 0; ; i++) {
      const net = `10.${200 + Math.floor(Math.random() * 50)}.${1 + Math.floor(Math.random() * 250)}`;
      if (!used.includes(` ${net}.`)) {
        this.hostAddr = `${net}.1`;
        this.nsAddr = `${net}.2`;
        break;
      }
      if (i > 50) throw new Error('no free 10.x.y.0/24 for the veth pair');
    }
    this.destroy(); // leftovers of an earlier run with the same PID
    this.created = true;
    run(['ip', 'netns', 'add', this.name]);
    run(['ip', 'link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf]);
    run(['ip', 'link', 'set', this.nsIf, 'netns', this.name]);
    run(['ip', 'addr', 'add', `${this.hostAddr}/24`, 'dev', this.hostIf]);
    run(['ip', 'link', 'set', this.hostIf, 'up']);
    run(['ip', '-n', this.name, 'addr', 'add', `${this.nsAddr}/24`, 'dev', this.nsIf]);
    run(['ip', '-n', this.name, 'link', 'set', this.nsIf, 'up']);
    run(['ip', '-n', this.name, 'link', 'set', 'lo', 'up']);
  }

  /** The argv prefix that runs a command inside the namespace. */
  get wrap(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  cut(): void {
    run(['ip', 'link', 'set', this.hostIf, 'down']);
  }

  heal(): void {
    run(['ip', 'link', 'set', this.hostIf, 'up']);
  }

  destroy(): void {
    tryRun(['ip', 'link', 'del', this.hostIf]);
    tryRun(['ip', 'netns', 'del', this.name]);
    this.created = false;
  }

  get exists(): boolean {
    return this.created;
  }

  /** An HTTP request made from inside the namespace (reaches a Node-RED there while the host cannot). */
  request(port: number, method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
    const script = `
      const [method, port, p, body] = process.argv.slice(1);
      const data = body ? Buffer.from(body) : undefined;
      const req = require('http').request({ host: '127.0.0.1', port: Number(port), path: p, method,
        headers: { 'content-type': 'application/json', ...(data ? { 'content-length': String(data.length) } : {}) } }, (res) => {
        let t = ''; res.setEncoding('utf8'); res.on('data', (d) => (t += d));
        res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, text: t })));
      });
      req.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });
      req.setTimeout(15000, () => req.destroy(new Error('timed out')));
      if (data) req.write(data);
      req.end();`;
    const argv = [...this.wrap, process.execPath, '-e', script, method, String(port), urlPath, body === undefined ? '' : JSON.stringify(body)];
    return new Promise((resolve, reject) => {
      execFile(argv[0], argv.slice(1), { timeout: 20000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`${method} ${urlPath} inside ${this.name}: ${stderr || err.message}`));
        const r = JSON.parse(stdout) as { status: number; text: string };
        let parsed: unknown = r.text;
        try {
          parsed = JSON.parse(r.text);
        } catch {
          /* text */
        }
        resolve({ status: r.status, body: parsed });
      });
    });
  }
}
