/**
 * lib/studio/gpio-device against a Modbus device we did not write (pymodbus over TCP):
 * the state machine, reconnects with no help, a bounded queue, timeouts,
 * Modbus exceptions, and a stop that leaves nothing live.
 */
import { strict as assert } from 'node:assert';
import { GpioDevice, GpioError, GpioState } from '../../../lib/studio/gpio-device';
import { readRanges } from '../../../lib/studio/gpio-points';
import { freePort } from '../../support/ports';
import { ModbusServer, SerialPair, startModbusServer, startSerialPair } from '../../support/modbus';
import fs from 'node:fs';
import { tmpDir } from '../../support/nr';
import { sleep, until } from '../../support/nr';

function states(d: GpioDevice): GpioState[] {
  const seen: GpioState[] = [];
  d.on('state', (s: GpioState) => seen.push(s));
  return seen;
}

describe('gpio-device (lib) against pymodbus', function () {
  this.timeout(60000);
  let server: ModbusServer | null = null;
  let dev: GpioDevice | null = null;

  afterEach(async function () {
    if (dev) await dev.stop();
    dev = null;
    if (server) await server.kill();
    server = null;
  });

  it('reports a polled discrete input when it flips and writes a coil the device then holds', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port, pollMs: 20 });
    const seen = states(dev);
    const values: boolean[] = [];
    dev.watch({ area: 'discrete', address: 3 }, (v) => values.push(v as boolean));
    dev.start();
    await until(() => dev!.state === 'connected', 'connected');
    await until(() => values.length === 1, 'first value');
    assert.deepEqual(values, [false]);
    await server.set('di', 3, 1);
    await until(() => values.length === 2, 'the flip');
    assert.deepEqual(values, [false, true]);
    await dev.writeCoil(7, true);
    assert.equal(await server.get('co', 7), 1);
    await dev.writeCoil(7, false);
    assert.equal(await server.get('co', 7), 0);
    assert.deepEqual(seen, ['connecting', 'connected']);
  });

  it('reports one bit of a holding register and the register value', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port, pollMs: 20 });
    const bits: unknown[] = [];
    const regs: unknown[] = [];
    dev.watch({ area: 'holding', address: 40, bit: 15 }, (v) => bits.push(v));
    dev.watch({ area: 'holding', address: 40 }, (v) => regs.push(v));
    dev.start();
    await until(() => bits.length === 1 && regs.length === 1, 'first values');
    await server.set('hr', 40, 0x8001);
    await until(() => bits.length === 2, 'bit 15 set');
    assert.deepEqual(bits, [false, true]);
    assert.deepEqual(regs, [0, 0x8001]);
  });

  it('connects by itself when the device appears after the start (off at deploy)', async function () {
    const port = await freePort();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port, pollMs: 20, reconnectMinMs: 100, reconnectMaxMs: 400 });
    const seen = states(dev);
    dev.start();
    await until(() => seen.includes('broken') && seen.includes('reconnecting'), 'broken then reconnecting');
    await assert.rejects(dev.writeCoil(1, true), (e: GpioError) => e.code === 'EOFFLINE' && /offline/.test(e.message));
    server = await startModbusServer(port);
    await until(() => dev!.state === 'connected', 'connected once the device is there', 15000);
    await dev.writeCoil(1, true);
    assert.equal(await server.get('co', 1), 1);
  });

  it('shows broken when the device dies and reconnects when it is back, with no restart', async function () {
    server = await startModbusServer();
    const port = server.port;
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port, pollMs: 20, timeoutMs: 300, reconnectMinMs: 100, reconnectMaxMs: 400 });
    const seen = states(dev);
    const values: boolean[] = [];
    dev.watch({ area: 'discrete', address: 0 }, (v) => values.push(v as boolean));
    dev.start();
    await until(() => values.length === 1, 'first value');
    await server.kill();
    server = null;
    await until(() => dev!.state === 'broken' || dev!.state === 'reconnecting', 'broken after the kill', 10000);
    assert.ok(seen.includes('broken'));
    server = await startModbusServer(port);
    await server.set('di', 0, 1);
    await until(() => dev!.state === 'connected', 'reconnected', 15000);
    await until(() => values.includes(true), 'the input seen after the reconnect');
    assert.equal(dev.stats.connects, 2);
  });

  it('counts a device that accepts but never answers as broken after the set timeouts, and recovers', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port, pollMs: 20, timeoutMs: 200, maxTimeouts: 3, reconnectMinMs: 100 });
    const seen = states(dev);
    dev.watch({ area: 'coil', address: 0 }, () => undefined);
    dev.start();
    await until(() => dev!.state === 'connected', 'connected');
    await server.stall(true);
    await until(() => seen.includes('broken'), 'broken after timeouts', 10000);
    assert.ok(dev.stats.timeouts >= 3, `timeouts: ${dev.stats.timeouts}`);
    await server.stall(false);
    await until(() => dev!.state === 'connected' && dev!.stats.connects >= 2, 'connected again', 15000);
  });

  it('keeps its queue bounded: requests beyond the limit are refused at once and the rest complete', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port, pollMs: 1000, queueMax: 8 });
    dev.start();
    await until(() => dev!.state === 'connected', 'connected');
    let maxDepth = 0;
    dev.on('queue', (n: number) => (maxDepth = Math.max(maxDepth, n)));
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => dev!.writeCoil(100 + i, true)));
    const refused = results.filter((r) => r.status === 'rejected');
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.ok(refused.length > 0, 'some were refused');
    for (const r of refused) assert.equal(((r as PromiseRejectedResult).reason as GpioError).code, 'EQUEUEFULL');
    assert.ok(maxDepth <= 8, `depth ${maxDepth}`);
    assert.equal(ok.length + refused.length, 40);
    // every accepted write reached the device
    for (let i = 0; i < 40; i++) if (results[i].status === 'fulfilled') assert.equal(await server.get('co', 100 + i), 1);
    assert.equal(dev.queueDepth, 0);
  });

  it('passes a Modbus exception on as a refusal and stays connected', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port });
    dev.start();
    await until(() => dev!.state === 'connected', 'connected');
    await assert.rejects(dev.read('holding', 5000, 1), (e: GpioError) => e.code === 'EMODBUS' && /illegal data address/.test(e.message));
    assert.equal(dev.state, 'connected');
    assert.deepEqual(await dev.read('holding', 0, 2), [0, 0]);
  });

  it('refuses bad points and options with a sentence', async function () {
    assert.throws(() => new GpioDevice({ transport: 'tcp', host: '' }), /needs a host/);
    assert.throws(() => new GpioDevice({ transport: 'tcp', host: 'x', unitId: 300 }), /unit id 300/);
    assert.throws(() => new GpioDevice({ transport: 'rtu' }), /serial port/);
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: 1 });
    assert.throws(() => dev!.watch({ area: 'coil', address: 70000 }, () => undefined), /address 70000/);
    assert.throws(() => dev!.watch({ area: 'discrete', address: 1, bit: 2 }, () => undefined), /only for registers/);
    await assert.rejects(dev.writeRegister(1, 70000), /0\.\.65535/);
  });

  it('stop() refuses what waits, clears every timer and listener, and ends in stopped', async function () {
    server = await startModbusServer();
    dev = new GpioDevice({ transport: 'tcp', host: '127.0.0.1', port: server.port, pollMs: 10 });
    dev.watch({ area: 'discrete', address: 0 }, () => undefined);
    dev.start();
    await until(() => dev!.state === 'connected', 'connected');
    await sleep(100);
    const pending = Promise.allSettled([dev.writeCoil(1, true), dev.writeCoil(2, true), dev.writeCoil(3, true)]);
    await dev.stop();
    const r = await pending;
    assert.ok(r.every((x) => x.status === 'fulfilled' || ((x as PromiseRejectedResult).reason as GpioError).code === 'ECLOSED'));
    const res = dev.resources();
    assert.deepEqual(
      { timers: res.timers, clientListeners: res.clientListeners, watches: res.watches, queue: res.queue },
      { timers: 0, clientListeners: 0, watches: 0, queue: 0 },
    );
    assert.equal(dev.state, 'stopped');
    await assert.rejects(dev.writeCoil(1, false), (e: GpioError) => e.code === 'ECLOSED');
  });

  it('speaks Modbus RTU on a serial line (a socat pty pair), and counts a device that went silent as broken until it answers again', async function () {
    const dir = tmpDir('rtu');
    let pair: SerialPair | null = null;
    try {
      pair = await startSerialPair(dir);
      server = await startModbusServer({ rtu: pair.device });
      dev = new GpioDevice({
        transport: 'rtu',
        serialPath: pair.client,
        baudRate: 19200,
        unitId: 1,
        pollMs: 30,
        timeoutMs: 300,
        reconnectMinMs: 200,
        reconnectMaxMs: 800,
      });
      const seen = states(dev);
      const values: boolean[] = [];
      dev.watch({ area: 'discrete', address: 5 }, (v) => values.push(v as boolean));
      dev.start();
      await until(() => values.length === 1, 'first value over RTU');
      await server.set('di', 5, 1);
      await until(() => values.length === 2, 'the flip over RTU');
      await dev.writeCoil(9, true);
      assert.equal(await server.get('co', 9), 1);
      // a serial device cannot close the line: it just stops answering
      await server.kill();
      server = null;
      await until(() => seen.includes('broken'), 'broken after the timeouts', 15000);
      server = await startModbusServer({ rtu: pair.device });
      await until(() => dev!.state === 'connected' && dev!.stats.connects >= 2, 'answering again', 20000);
      await dev.writeCoil(9, false);
      assert.equal(await server.get('co', 9), 0);
    } finally {
      if (dev) await dev.stop();
      dev = null;
      if (server) await server.kill();
      server = null;
      if (pair) await pair.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('joins nearby addresses into one read within the protocol limits', function () {
    assert.deepEqual(
      readRanges([
        { area: 'discrete', address: 5 },
        { area: 'discrete', address: 0 },
        { area: 'discrete', address: 40 },
        { area: 'holding', address: 3, bit: 1 },
        { area: 'holding', address: 3 },
      ]),
      [
        { area: 'discrete', start: 0, count: 6 },
        { area: 'discrete', start: 40, count: 1 },
        { area: 'holding', start: 3, count: 1 },
      ],
    );
  });
});
