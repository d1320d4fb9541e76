/**
 * How a Modbus GPIO device is configured (TCP or RTU, unit id, timings, queue
 * size), checked before lib/studio/gpio-device.ts uses it, and its name for logs.
 */
export interface GpioDeviceOptions {
  transport: 'tcp' | 'rtu';
  /** TCP: host and port (default 502). */
  host?: string;
  port?: number;
  /** RTU: serial device path and line settings. */
  serialPath?: string;
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
  /** Modbus unit id (slave address) 0..255. Default 1. */
  unitId?: number;
  /** Interval between the starts of two poll cycles, ms. Default 50. */
  pollMs?: number;
  /** Time to wait for an answer (and for a TCP connect), ms. Default 1000. */
  timeoutMs?: number;
  /** Consecutive timeouts after which the link counts as broken. Default 3. */
  maxTimeouts?: number;
  /** First reconnect delay and its cap (exponential backoff), ms. Defaults 500 and 10000. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Most requests waiting at once (polls and writes). Default 32. */
  queueMax?: number;
}

/** The device's name for logs and statuses, without anything secret. */
export function deviceLabel(o: GpioDeviceOptions): string {
  return o.transport === 'rtu' ? `${o.serialPath ?? '?'} unit ${o.unitId ?? 1}` : `${o.host ?? '?'}:${o.port ?? 502} unit ${o.unitId ?? 1}`;
}

export function checkOptions(o: GpioDeviceOptions): string | null {
  if (o.transport !== 'tcp' && o.transport !== 'rtu') return `transport must be tcp or rtu, not "${String(o.transport)}"`;
  if (o.transport === 'tcp') {
    if (!o.host || !/^[A-Za-z0-9.:_-]{1,253}$/.test(o.host)) return 'a TCP device needs a host name or address';
    if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) return `port ${String(o.port)} is not 1..65535`;
  } else {
    if (!o.serialPath) return 'an RTU device needs a serial port (for example /dev/ttyUSB0)';
    if (o.baudRate !== undefined && (!Number.isInteger(o.baudRate) || o.baudRate < 300 || o.baudRate > 921600))
      return `baud rate ${String(o.baudRate)} is not 300..921600`;
  }
  if (o.unitId !== undefined && (!Number.isInteger(o.unitId) || o.unitId < 0 || o.unitId > 255)) return `unit id ${String(o.unitId)} is not 0..255`;
  if (o.pollMs !== undefined && (!(o.pollMs >= 5) || o.pollMs > 3600000)) return `poll interval ${String(o.pollMs)} ms is not 5..3600000`;
  if (o.timeoutMs !== undefined && (!(o.timeoutMs >= 20) || o.timeoutMs > 60000)) return `timeout ${String(o.timeoutMs)} ms is not 20..60000`;
  if (o.queueMax !== undefined && (!Number.isInteger(o.queueMax) || o.queueMax < 1 || o.queueMax > 10000))
    return `queue size ${String(o.queueMax)} is not 1..10000`;
  return null;
}
