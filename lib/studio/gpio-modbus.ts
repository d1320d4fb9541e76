/**
 * The modbus-serial library as lib/studio/gpio-device.ts uses it: opening a
 * link over TCP or RTU, closing one so nothing of it lingers, reading an area,
 * and the name of a Modbus exception.
 */
import type { EventEmitter } from 'node:events';
import ModbusRTU from 'modbus-serial';
import type { GpioDeviceOptions } from './gpio-options';
import type { GpioArea, PointValue } from './gpio-points';

function noop(): void {
  /* inert */
}

/** Opens the link over TCP or RTU; `done` gets the library's answer, or what it threw. */
export function connectClient(
  client: ModbusRTU,
  o: Required<Omit<GpioDeviceOptions, 'host' | 'port' | 'serialPath'>> & GpioDeviceOptions,
  done: (err: unknown) => void,
): void {
  try {
    if (o.transport === 'tcp') {
      client.connectTCP(o.host!, { port: o.port ?? 502, timeout: o.timeoutMs }, (err: unknown) => done(err));
    } else {
      client.connectRTUBuffered(o.serialPath!, { baudRate: o.baudRate, parity: o.parity, dataBits: o.dataBits, stopBits: o.stopBits }, (err: unknown) =>
        done(err),
      );
    }
  } catch (err) {
    done(err);
  }
}

/** Closes a client we let go of, waiting at most 500 ms, then destroys it; `listeners` are the ones we put on it. */
export async function closeClient(c: ModbusRTU, listeners: Array<[string, (...a: unknown[]) => void]>): Promise<void> {
  // keep one inert error listener: the socket may still report an error while closing
  for (const [ev, fn] of listeners) if (ev !== 'error') (c as unknown as EventEmitter).removeListener(ev, fn);
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 500);
    try {
      c.close(() => {
        clearTimeout(t);
        resolve();
      });
    } catch {
      clearTimeout(t);
      resolve();
    }
  });
  try {
    c.destroy?.(() => undefined);
  } catch {
    /* already gone */
  }
  for (const [ev, fn] of listeners) if (ev === 'error') (c as unknown as EventEmitter).removeListener(ev, fn);
  c.on('error', noop);
}

export function readArea(c: ModbusRTU, area: GpioArea, start: number, count: number): Promise<{ data: PointValue[] }> {
  switch (area) {
    case 'coil':
      return c.readCoils(start, count);
    case 'discrete':
      return c.readDiscreteInputs(start, count);
    case 'holding':
      return c.readHoldingRegisters(start, count);
    case 'input':
      return c.readInputRegisters(start, count);
  }
}

const EXCEPTIONS: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

export function modbusException(code: number): string {
  return `Modbus exception ${code} (${EXCEPTIONS[code] ?? 'unknown'})`;
}
