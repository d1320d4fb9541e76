/**
 * Prepare a Node-RED user directory that runs this package, and start Node-RED
 * in it as one process. Used by `npm start` (the demo site) and by the
 * end-to-end tests (several servers, each with its own user directory).
 */
import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export const PACKAGE_ROOT = path.resolve(__dirname, '..');
export const PACKAGE_NAME = '@twinrec/node-red-recording-redundancy';

export interface SiteOptions {
  userDir: string;
  port: number;
  host?: string;
  /** Flows to write as flows.json (when given, replaces what is there). */
  flows?: object[];
  /** Write these flows only if the user directory has none yet. */
  initialFlows?: object[];
  /** Extra settings merged into settings.js (JSON-serialisable). */
  settings?: Record<string, unknown>;
  /** Log level of Node-RED's console logger. */
  logLevel?: string;
  /** Node credentials by node id, written to flows_cred.json encrypted as Node-RED does (with the settings' credentialSecret). */
  credentials?: Record<string, Record<string, string>>;
}

/** Node-RED's credentials file format: aes-256-ctr, key sha256(credentialSecret), "$": hex IV + base64. */
export function encryptCredentials(secret: string, creds: object): { $: string } {
  const key = crypto.createHash('sha256').update(secret).digest();
  const iv = crypto.randomBytes(16);
  const c = crypto.createCipheriv('aes-256-ctr', key, iv);
  return { $: iv.toString('hex') + c.update(JSON.stringify(creds), 'utf8', 'base64') + c.final('base64') };
}

/** Write settings.js, link this package into node_modules, and the flows. */
export function prepareUserDir(o: SiteOptions): void {
  fs.mkdirSync(o.userDir, { recursive: true });
  const settings = {
    uiHost: o.host ?? '127.0.0.1',
    uiPort: o.port,
    flowFile: 'flows.json',
    credentialSecret: 'twinrec-demo-not-secret',
    diagnostics: { enabled: false, ui: false },
    telemetry: { enabled: false },
    editorTheme: { projects: { enabled: false }, tours: false },
    logging: { console: { level: o.logLevel ?? 'info', metrics: false, audit: false } },
    ...(o.settings ?? {}),
  };
  fs.writeFileSync(path.join(o.userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
  const pkgFile = path.join(o.userDir, 'package.json');
  if (!fs.existsSync(pkgFile)) {
    fs.writeFileSync(pkgFile, JSON.stringify({ name: 'node-red-site', private: true, dependencies: { [PACKAGE_NAME]: `file:${PACKAGE_ROOT}` } }, null, 2));
  }
  const scopeDir = path.join(o.userDir, 'node_modules', '@twinrec');
  fs.mkdirSync(scopeDir, { recursive: true });
  const link = path.join(scopeDir, 'node-red-recording-redundancy');
  try {
    const current = fs.readlinkSync(link);
    if (path.resolve(scopeDir, current) !== PACKAGE_ROOT) {
      fs.unlinkSync(link);
      fs.symlinkSync(PACKAGE_ROOT, link, 'dir');
    }
  } catch {
    fs.rmSync(link, { recursive: true, force: true });
    fs.symlinkSync(PACKAGE_ROOT, link, 'dir');
  }
  const flowFile = path.join(o.userDir, 'flows.json');
  if (o.flows) fs.writeFileSync(flowFile, JSON.stringify(o.flows, null, 2));
  if (o.credentials) {
    const secret = String((settings as Record<string, unknown>).credentialSecret);
    fs.writeFileSync(path.join(o.userDir, 'flows_cred.json'), JSON.stringify(encryptCredentials(secret, o.credentials)));
  } else if (o.initialFlows && !fs.existsSync(flowFile)) fs.writeFileSync(flowFile, JSON.stringify(o.initialFlows, null, 2));
}

/** The Node-RED runtime entry point (red.js) of the Node-RED this package is developed with. */
export function redJs(): string {
  return require.resolve('node-red/red.js', { paths: [PACKAGE_ROOT] });
}

/** Start Node-RED as one process (node red.js -u userDir). */
export function spawnNodeRed(o: SiteOptions, stdio: 'inherit' | 'pipe' = 'pipe', nodeBin = process.execPath): ChildProcess {
  prepareUserDir(o);
  // TWINREC_NODE_ARGS: extra Node.js options for the Node-RED process (e.g. --cpu-prof for profiling)
  const nodeArgs = (process.env.TWINREC_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return spawn(nodeBin, [...nodeArgs, redJs(), '-u', o.userDir, '-p', String(o.port)], {
    cwd: o.userDir,
    stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_RED_HOME: o.userDir },
  });
}

/** Resolve when GET url answers 200, or reject after timeoutMs. */
export function waitForHttp(url: string, timeoutMs = 30000, headers: Record<string, string> = {}): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const req = http.get(url, { headers }, (res) => {
        res.resume();
        if (res.statusCode === 200) resolve();
        else retry();
      });
      req.on('error', retry);
      req.setTimeout(2000, () => req.destroy());
    };
    const retry = () => {
      if (Date.now() > until) reject(new Error(`${url} did not answer 200 within ${timeoutMs} ms`));
      else setTimeout(attempt, 200);
    };
    attempt();
  });
}
