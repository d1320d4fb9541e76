/** A pymodbus Modbus TCP device (test/support/modbus-server.py) on 127.0.0.1, driven over stdin. */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
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

/** A pymodbus device on TCP (127.0.0.1, the given or a free port), or on RTU over a serial device with { rtu: path }. */
export async function startModbusServer(port?: number | { rtu: string }): Promise<ModbusServer> {
  const rtu = typeof port === 'object' ? port.rtu : null;
  const p = rtu ? 0 : typeof port === 'number' ? port : await freePort();
  const args = rtu ? ['--rtu', rtu] : [String(p)];
  const child: ChildProcess = spawn(MODBUS_PYTHON, ['-X', 'faulthandler', MODBUS_SERVER_SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
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

export interface SerialPair {
  /** The device end the Modbus server opens. */
  device: string;
  /** The end the client (our gpio-device) opens. */
  client: string;
  stop(): Promise<void>;
}

/** Two linked pseudo-terminals (socat), a serial line without hardware. */
export async function startSerialPair(dir: string): Promise<SerialPair> {
  const device = path.join(dir, 'tty-device');
  const client = path.join(dir, 'tty-client');
  const child = spawn('/usr/bin/socat', ['pty,raw,echo=0,link=' + device, 'pty,raw,echo=0,link=' + client], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  const until = Date.now() + 10000;
  while (!(fs.existsSync(device) && fs.existsSync(client))) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`socat gave no pty pair: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    device,
    client,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await gone;
    },
  };
}
