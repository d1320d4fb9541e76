/** A pymodbus Modbus TCP device (test/support/modbus-server.py) on 127.0.0.1, driven over stdin. */
import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { freePort } from './ports';

export const MODBUS_PYTHON = '/usr/bin/python3';
export const MODBUS_SERVER_SCRIPT = path.join(__dirname, 'modbus-server.py');
type Table = 'di' | 'co' | 'hr' | 'ir';

export interface ModbusServer {
  port: number;
  pid: number;
  set(table: Table, address: number, value: number): Promise<void>;
  get(table: Table, address: number): Promise<number>;
  /** Accept requests but answer none (1), or answer again (0). */
  stall(on: boolean): Promise<void>;
  /** kill -9, resolves when it is gone. */
  kill(): Promise<void>;
  log(): string;
}

export async function startModbusServer(port?: number): Promise<ModbusServer> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(MODBUS_PYTHON, ['-X', 'faulthandler', MODBUS_SERVER_SCRIPT, String(p)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<(line: string) => void> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    out += d;
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('listening')) continue;
      waiters.shift()?.(line);
    }
  });
  child.stderr!.on('data', (d) => (err = (err + d).slice(-20000)));
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  const until = Date.now() + 20000;
  while (!out.includes('listening')) {
    if (child.exitCode !== null) throw new Error(`modbus server exited: ${err}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`modbus server did not start on port ${p}: ${out} ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // one command at a time: answers come back in order
  let chain = Promise.resolve('');
  const ask = (line: string): Promise<string> => {
    const next = chain.then(
      () =>
        new Promise<string>((resolve, reject) => {
          if (child.exitCode !== null || child.signalCode !== null) return reject(new Error('modbus server is not running'));
          const t = setTimeout(() => reject(new Error(`modbus server did not answer "${line}"`)), 10000);
          waiters.push((a) => {
            clearTimeout(t);
            if (a.startsWith('error')) reject(new Error(a));
            else resolve(a);
          });
          child.stdin!.write(`${line}\n`);
        }),
    );
    chain = next.catch(() => '');
    return next;
  };
  return {
    port: p,
    pid: child.pid!,
    async set(table, address, value) {
      await ask(`set ${table} ${address} ${value}`);
    },
    async get(table, address) {
      const a = await ask(`get ${table} ${address}`);
      return Number(a.split(' ')[1]);
    },
    async stall(on) {
      await ask(`stall ${on ? 1 : 0}`);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await gone;
    },
    log: () => out + err,
  };
}
