/** Helpers for failover tests and benches: the events a failover site flow collected, retained states, files. */
import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import type { Broker } from './mosquitto';
import { ffmpegPidsFor, type NodeRedProcess } from './nodered';
import { sleep } from './nr';

export interface Ev {
  node: string;
  port: number;
  topic: string;
  payload: any;
  at: number;
}

/** Every file under a directory, recursively. */
export function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

export async function events(p: NodeRedProcess): Promise<Ev[]> {
  const r = await p.request('GET', '/events');
  return r.body as Ev[];
}

export async function waitEvent(p: NodeRedProcess, pred: (e: Ev) => boolean, what: string, ms = 30000): Promise<Ev> {
  const end = Date.now() + ms;
  for (;;) {
    const ev = (await events(p)).find(pred);
    if (ev) return ev;
    if (Date.now() > end)
      throw new Error(`no ${what} within ${ms} ms; events: ${JSON.stringify((await events(p)).map((e) => `${e.node}:${e.port}:${e.topic}`))}`);
    await sleep(100);
  }
}

/** The retained state a server announced on the broker. */
export async function retainedState(broker: Broker, server: string): Promise<{ epoch: number; state: string }> {
  const c = await mqtt.connectAsync(broker.url, { clientId: `probe-${process.pid}-${Date.now()}` });
  try {
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no retained state of ${server}`)), 5000);
      c.on('message', (_topic, payload) => {
        clearTimeout(t);
        resolve(JSON.parse(payload.toString()));
      });
      void c.subscribeAsync(`twinrec/studio/${server}/state`);
    });
  } finally {
    await c.endAsync();
  }
}

/**
 * Wait until a failover server's settings cache (on its disk) holds a line of a
 * watched server with the given status: what it would take over from now.
 */
export async function waitCachedLine(foUserDir: string, server: string, lineId: string, status = 'recording', ms = 15000): Promise<void> {
  const file = path.join(foUserDir, 'twinrec', 'settings-cache', `${server}.json`);
  const end = Date.now() + ms;
  for (;;) {
    try {
      const list = JSON.parse(fs.readFileSync(file, 'utf8')) as { lines: { id: string; status: string }[] }[];
      if (list.some((c) => c.lines.some((l) => l.id === lineId && l.status === status))) return;
    } catch {
      /* not written yet */
    }
    if (Date.now() > end) throw new Error(`the settings cache in ${foUserDir} has no ${status} line ${lineId} of ${server}`);
    await sleep(100);
  }
}

/**
 * Freeze a server as a kernel stall, a dead NFS mount or a frozen VM would:
 * its Node-RED process and the ffmpeg processes recording under its user
 * directory, with SIGSTOP (alive, sockets open, silent). Returns the PIDs, for thawServer.
 */
export function freezeServer(p: NodeRedProcess): number[] {
  const pids = [p.pid, ...ffmpegPidsFor(p.userDir)];
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  return pids;
}

/** SIGCONT to what freezeServer stopped (those still there). */
export function thawServer(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
}
