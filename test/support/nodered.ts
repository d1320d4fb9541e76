/** A real Node-RED process for end-to-end tests: own user directory, stopped by PID. */
import { ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { freePort } from './ports';
import { prepareUserDir, redJs, SiteOptions, spawnNodeRed, waitForHttp } from '../../demo/site';

export interface NodeRedProcess {
  pid: number;
  url: string;
  port: number;
  userDir: string;
  log(): string;
  /** Graceful stop (SIGTERM, SIGKILL after 10 s); resolves when the process is gone. */
  stop(): Promise<void>;
  /** kill -9; resolves when the process is gone. */
  kill9(): Promise<void>;
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
}

export { freePort };

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

export async function startNodeRed(opts: {
  userDir: string;
  port?: number;
  flows?: object[];
  settings?: Record<string, unknown>;
  /** The address Node-RED listens on (default 127.0.0.1). */
  host?: string;
  /** The address the test reaches it at (default: host, or 127.0.0.1 for 0.0.0.0). */
  reachAt?: string;
  /** A command that runs Node-RED, e.g. ['ip', 'netns', 'exec', ns] (it must exec, so the PID stays Node-RED's). */
  wrap?: string[];
  /** Node credentials by node id (written encrypted to flows_cred.json). */
  credentials?: Record<string, Record<string, string>>;
}): Promise<NodeRedProcess> {
  const port = opts.port ?? (await freePort());
  const site = { userDir: opts.userDir, port, flows: opts.flows, settings: opts.settings, host: opts.host, credentials: opts.credentials };
  const child = opts.wrap?.length ? spawnWrapped(site, opts.wrap) : spawnNodeRed(site, 'pipe');
  let out = '';
  child.stdout?.on('data', (d) => (out = (out + d).slice(-200000)));
  child.stderr?.on('data', (d) => (out = (out + d).slice(-200000)));
  const reach = opts.reachAt ?? (!opts.host || opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host);
  const url = `http://${reach}:${port}`;
  try {
    await Promise.race([
      // with adminAuth /settings needs a token; /auth/login answers anyone
      waitForHttp(`${url}${opts.settings?.adminAuth ? '/auth/login' : '/settings'}`, 40000),
      exited(child).then(() => {
        throw new Error(`Node-RED exited at start:\n${out}`);
      }),
    ]);
    // flows started?
    const until = Date.now() + 20000;
    while (!/Started flows/.test(out)) {
      if (Date.now() > until) throw new Error(`flows did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    child.kill('SIGKILL');
    await exited(child);
    throw err;
  }
  const proc: NodeRedProcess = {
    pid: child.pid!,
    url,
    port,
    userDir: opts.userDir,
    log: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited(child);
      clearTimeout(t);
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited(child);
    },
    request(method, path, body, headers = {}) {
      return new Promise((resolve, reject) => {
        const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const req = http.request(
          `${url}${path}`,
          { method, headers: { 'content-type': 'application/json', ...(data ? { 'content-length': String(data.length) } : {}), ...headers } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => {
              let parsed: unknown = text;
              try {
                parsed = JSON.parse(text);
              } catch {
                /* text */
              }
              resolve({ status: res.statusCode ?? 0, body: parsed });
            });
          },
        );
        req.on('error', reject);
        req.setTimeout(20000, () => req.destroy(new Error(`${method} ${path} timed out`)));
        if (data) req.write(data);
        req.end();
      });
    },
  };
  return proc;
}

/**
 * Start several Node-RED processes at once (each start is mostly waiting for
 * its own process: two in a row take twice as long). All or none: if one does
 * not start, the others are stopped and the first error is thrown.
 */
export async function startNodeReds(list: Parameters<typeof startNodeRed>[0][]): Promise<NodeRedProcess[]> {
  const settled = await Promise.allSettled(list.map((o) => startNodeRed(o)));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<NodeRedProcess>).value);
  for (const r of settled) if (r.status === 'fulfilled') await r.value.stop();
  throw failed.reason;
}

/** spawnNodeRed's command line behind a wrapper command (for example into a network namespace). */
function spawnWrapped(o: SiteOptions, wrap: string[]): ChildProcess {
  prepareUserDir(o);
  const nodeArgs = (process.env.TWINREC_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return spawn(wrap[0], [...wrap.slice(1), process.execPath, ...nodeArgs, redJs(), '-u', o.userDir, '-p', String(o.port)], {
    cwd: o.userDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_RED_HOME: o.userDir },
  });
}

/** Is a process with this PID alive (a zombie waiting for its reaper is not)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const stat = (require('node:fs') as typeof import('node:fs')).readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** PIDs of ffmpeg processes whose command line mentions a path. */
export function ffmpegPidsFor(pathPart: string): number[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes('ffmpeg') && cmd.includes(pathPart)) pids.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/**
 * A flow with an HTTP command endpoint in front of a recorder:
 * POST /cmd/<channel> with a JSON command answers with the first event (200)
 * or the refusal (400).
 */
export function recorderSiteFlow(o: {
  serverId: string;
  storageRoot: string;
  recorders: Record<string, unknown>[];
  role?: string;
  brokerUrl?: string;
  /** Add a backup-link node fed by every recorder. */
  backupLink?: boolean;
  /** Serve the peer storage API on this port (give the secret as credentials of srv1: peerSecret). */
  peerPort?: number;
  /** Add a material-copy node; its messages are kept for GET /events. */
  materialCopy?: { bandwidth?: number };
  /** Add a transfer-manager node (on a backup); its messages are kept for GET /events, POST /tm sends it a command. */
  transferManager?: { mainServer: string; channels: string; bandwidth?: number; pollInterval?: number; retentionDays?: number; shareFolder?: string };
}): object[] {
  const tab = { id: 'tab1', type: 'tab', label: 'site' };
  const srv = {
    id: 'srv1',
    type: 'redundancy-server',
    group: 'studio',
    serverId: o.serverId,
    role: o.role ?? 'main',
    storageRoot: o.storageRoot,
    durability: 'NORMAL',
    brokerUrl: o.brokerUrl ?? '',
    keepalive: 1,
    heartbeatMs: 250,
    peerHost: '127.0.0.1',
    peerPort: o.peerPort ?? '',
    peerUrl: '',
  };
  const nodes: object[] = [tab, srv];
  if (o.materialCopy) nodes.push(...materialCopyNodes(o.materialCopy.bandwidth ?? 0));
  if (o.transferManager) nodes.push(...transferManagerNodes(o.transferManager, !o.materialCopy));
  if (o.backupLink) nodes.push({ id: 'blink', type: 'backup-link', z: 'tab1', server: 'srv1', wires: [[]] });
  o.recorders.forEach((r, i) => {
    const ch = Number(r.channel ?? i + 1);
    nodes.push(
      { id: `in${ch}`, type: 'http in', z: 'tab1', url: `/cmd/${ch}`, method: 'post', upload: false, wires: [[`rec${ch}`]] },
      {
        id: `rec${ch}`,
        type: 'recorder',
        z: 'tab1',
        server: 'srv1',
        channel: ch,
        channelName: `Channel ${ch}`,
        frameRate: '25',
        sourceType: 'testpattern',
        url: '',
        camera: '',
        segmentSeconds: 2,
        container: 'ts',
        videoCodec: 'copy',
        tcMode: 'zero',
        backupServer: '',
        backupChannel: '',
        startTimeout: 15,
        stallTimeout: 6,
        ...r,
        wires: [o.backupLink ? [`resp${ch}`, 'blink'] : [`resp${ch}`]],
      },
      { id: `resp${ch}`, type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
      { id: `catch${ch}`, type: 'catch', z: 'tab1', scope: [`rec${ch}`], uncaught: false, wires: [[`err${ch}`]] },
      {
        id: `err${ch}`,
        type: 'function',
        z: 'tab1',
        outputs: 1,
        func: 'if (!msg.res) return null;\nmsg.statusCode = 400;\nmsg.payload = { error: msg.error.message };\nreturn msg;',
        wires: [[`resp${ch}`]],
      },
    );
  });
  return nodes;
}

/**
 * A failover server's flow: redundancy-server (role failover), failover-watch and
 * failback, with HTTP endpoints in front of them:
 *   POST /fw        a failover-watch command (answers with its reply, 400 with the refusal)
 *   POST /failback  a failback command (answers with "Failback OK", 400 with the refusal)
 *   GET  /events    every message the two nodes sent, in order: {node, port, topic, payload}
 */
/** A material-copy node whose messages (and errors) are kept in flow context, and GET /events to read them. */
function materialCopyNodes(bandwidth: number): object[] {
  return [
    { id: 'mcopy', type: 'material-copy', z: 'tab1', server: 'srv1', bandwidth, wires: [['mcol']] },
    {
      id: 'mcol',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: "const ev = flow.get('events') || [];\nev.push({ node: 'material-copy', port: 0, topic: msg.topic, payload: msg.payload, at: Date.now() });\nflow.set('events', ev);\nreturn msg.res ? msg : null;",
      wires: [['mresp']],
    },
    { id: 'mresp', type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
    { id: 'mcin', type: 'http in', z: 'tab1', url: '/copy', method: 'post', upload: false, wires: [['mcopy']] },
    { id: 'mevin', type: 'http in', z: 'tab1', url: '/events', method: 'get', upload: false, wires: [['mevout']] },
    { id: 'mevout', type: 'function', z: 'tab1', outputs: 1, func: "msg.payload = flow.get('events') || [];\nreturn msg;", wires: [['mresp']] },
    { id: 'mcatch', type: 'catch', z: 'tab1', scope: ['mcopy'], uncaught: false, wires: [['merr']] },
    {
      id: 'merr',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: "const ev = flow.get('events') || [];\nev.push({ node: 'catch', port: -1, topic: msg.topic, payload: msg.error && msg.error.message, at: Date.now() });\nflow.set('events', ev);\nif (!msg.res) return null;\nmsg.statusCode = 400;\nmsg.payload = { error: msg.error.message };\nreturn msg;",
      wires: [['mresp']],
    },
  ];
}

/** A transfer-manager node whose messages (and errors) are kept in flow context; POST /tm for commands, GET /events (unless material copy has it). */
function transferManagerNodes(t: NonNullable<Parameters<typeof recorderSiteFlow>[0]['transferManager']>, withEvents: boolean): object[] {
  const keep = (node: string, port: number, payload: string) =>
    `const ev = flow.get('events') || [];\nev.push({ node: '${node}', port: ${port}, topic: msg.topic, payload: ${payload}, at: Date.now() });\nflow.set('events', ev);\n`;
  return [
    {
      id: 'tmgr',
      type: 'transfer-manager',
      z: 'tab1',
      server: 'srv1',
      mainServer: t.mainServer,
      channels: t.channels,
      bandwidth: t.bandwidth ?? 0,
      pollInterval: t.pollInterval ?? 1,
      retentionDays: t.retentionDays ?? 0,
      shareFolder: t.shareFolder ?? '',
      wires: [['tmcol']],
    },
    {
      id: 'tmcol',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: `${keep('transfer-manager', 0, 'msg.payload')}return msg.res ? msg : null;`,
      wires: [['tmresp']],
    },
    { id: 'tmresp', type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
    { id: 'tmin', type: 'http in', z: 'tab1', url: '/tm', method: 'post', upload: false, wires: [['tmgr']] },
    ...(withEvents
      ? [
          { id: 'tmevin', type: 'http in', z: 'tab1', url: '/events', method: 'get', upload: false, wires: [['tmevout']] },
          { id: 'tmevout', type: 'function', z: 'tab1', outputs: 1, func: "msg.payload = flow.get('events') || [];\nreturn msg;", wires: [['tmresp']] },
        ]
      : []),
    { id: 'tmcatch', type: 'catch', z: 'tab1', scope: ['tmgr'], uncaught: false, wires: [['tmerr']] },
    {
      id: 'tmerr',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: `${keep('catch', -1, 'msg.error && msg.error.message')}if (!msg.res) return null;\nmsg.statusCode = 400;\nmsg.payload = { error: msg.error.message };\nreturn msg;`,
      wires: [['tmresp']],
    },
  ];
}

export function failoverSiteFlow(o: {
  serverId: string;
  storageRoot: string;
  brokerUrl: string;
  watched: string;
  automatic?: boolean;
  holdDown?: number;
  capacity?: number;
  rank?: number;
  overlap?: number;
  heartbeatTimeout?: number;
  recordOnDoubt?: boolean;
  /** Serve the peer storage API on this port (credentials of srv1: peerSecret). */
  peerPort?: number;
  /** A material-copy node after the failback node. */
  materialCopy?: boolean;
}): object[] {
  const collect = (id: string, node: string, port: number) => ({
    id,
    type: 'function',
    z: 'tab1',
    outputs: 1,
    func: `const ev = flow.get('events') || [];\nev.push({ node: '${node}', port: ${port}, topic: msg.topic, payload: msg.payload, at: Date.now() });\nflow.set('events', ev);\nreturn msg.res ? msg : null;`,
    wires: [['fresp']],
  });
  return [
    { id: 'tab1', type: 'tab', label: 'failover' },
    {
      id: 'srv1',
      type: 'redundancy-server',
      group: 'studio',
      serverId: o.serverId,
      role: 'failover',
      storageRoot: o.storageRoot,
      durability: 'NORMAL',
      brokerUrl: o.brokerUrl,
      keepalive: 1,
      heartbeatMs: 250,
      peerHost: '127.0.0.1',
      peerPort: o.peerPort ?? '',
      peerUrl: '',
    },
    ...(o.materialCopy
      ? [
          { id: 'mcopy', type: 'material-copy', z: 'tab1', server: 'srv1', bandwidth: 0, wires: [['mcol']] },
          {
            id: 'mcol',
            type: 'function',
            z: 'tab1',
            outputs: 1,
            func: "const ev = flow.get('events') || [];\nev.push({ node: 'material-copy', port: 0, topic: msg.topic, payload: msg.payload, at: Date.now() });\nflow.set('events', ev);\nreturn null;",
            wires: [[]],
          },
        ]
      : []),
    { id: 'fwin', type: 'http in', z: 'tab1', url: '/fw', method: 'post', upload: false, wires: [['fwatch']] },
    {
      id: 'fwatch',
      type: 'failover-watch',
      z: 'tab1',
      server: 'srv1',
      watched: o.watched,
      heartbeatTimeout: o.heartbeatTimeout ?? 750,
      holdDown: o.holdDown ?? 3,
      capacity: o.capacity ?? 1,
      rank: o.rank ?? 0,
      recordOnDoubt: o.recordOnDoubt ?? true,
      failoverEnabled: true,
      overlap: o.overlap ?? 1,
      handbackTimeout: 20,
      wires: [['fw0'], ['fw1', ...(o.automatic === false ? [] : [])], ['fw2']],
    },
    collect('fw0', 'watch', 0),
    collect('fw1', 'watch', 1),
    collect('fw2', 'watch', 2),
    { id: 'fbin', type: 'http in', z: 'tab1', url: '/failback', method: 'post', upload: false, wires: [['fback']] },
    {
      id: 'fback',
      type: 'failback',
      z: 'tab1',
      server: 'srv1',
      automatic: o.automatic ?? true,
      wires: [['fb0'], ['fb1', ...(o.materialCopy ? ['mcopy'] : [])]],
    },
    collect('fb0', 'failback', 0),
    {
      ...collect('fb1', 'failback', 1),
      func: `const ev = flow.get('events') || [];\nev.push({ node: 'failback', port: 1, topic: msg.topic, payload: msg.payload, at: Date.now() });\nflow.set('events', ev);\nreturn null;`,
    },
    { id: 'fresp', type: 'http response', z: 'tab1', statusCode: '', headers: {}, wires: [] },
    { id: 'evin', type: 'http in', z: 'tab1', url: '/events', method: 'get', upload: false, wires: [['evout']] },
    { id: 'evout', type: 'function', z: 'tab1', outputs: 1, func: "msg.payload = flow.get('events') || [];\nreturn msg;", wires: [['fresp']] },
    { id: 'fcatch', type: 'catch', z: 'tab1', scope: ['fwatch', 'fback', ...(o.materialCopy ? ['mcopy'] : [])], uncaught: false, wires: [['ferr']] },
    {
      id: 'ferr',
      type: 'function',
      z: 'tab1',
      outputs: 1,
      func: "const ev = flow.get('events') || [];\nev.push({ node: 'catch', port: -1, topic: msg.topic, payload: msg.error && msg.error.message, at: Date.now() });\nflow.set('events', ev);\nif (!msg.res) return null;\nmsg.statusCode = 400;\nmsg.payload = { error: msg.error.message };\nreturn msg;",
      wires: [['fresp']],
    },
  ];
}

/**
 * The end of a test of several servers: their logs when it failed, each
 * Node-RED stopped by its PID (its slot set to null), the ffmpeg processes
 * recording under their folders killed, and the folders removed.
 */
export async function stopServers(procs: Record<string, NodeRedProcess | null>, dirs: Record<string, string>, failed = false): Promise<void> {
  if (failed) for (const [k, p] of Object.entries(procs)) if (p) console.log(`---- ${k} log (tail)\n${p.log().slice(-6000)}`);
  for (const [k, p] of Object.entries(procs)) {
    if (p) await p.stop();
    procs[k] = null;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  for (const d of Object.values(dirs)) {
    for (const pid of ffmpegPidsFor(d)) process.kill(pid, 'SIGKILL');
    fs.rmSync(d, { recursive: true, force: true });
  }
}
