/**
 * One Modbus GPIO device (a studio GPI/GPO box, a PLC, an I/O module) over
 * Modbus TCP or RTU (serial), with modbus-serial. No Node-RED import; the
 * gpio-device config node owns one of these, gpio-in and gpio-out use it.
 *
 * What it guarantees, learnt from the complaints about other Modbus nodes:
 * - The connection is an explicit state machine: connecting -> connected ->
 *   broken -> reconnecting -> connected ... -> stopped. Every transition is a
 *   'state' event with a reason. It reconnects by itself, also when the device
 *   is off at deploy, with exponential backoff; it never waits for a redeploy.
 * - One request on the wire at a time, from a bounded queue whose depth is
 *   visible. Writes go before polls. A full queue refuses at once (EQUEUEFULL)
 *   instead of growing; a poll is never queued twice, so a slow device makes
 *   the polls slower, not the queue longer.
 * - Every request ends: answered, refused by the device (a Modbus exception),
 *   timed out, or failed because the link went down. Consecutive timeouts mean
 *   the link is dead even when TCP has not noticed: it is closed and rebuilt.
 * - stop() clears every timer, removes every listener it put on the library,
 *   and refuses what was still queued (ECLOSED), so a partial deploy leaks
 *   nothing. `resources()` counts what is live, for tests and diagnostics.
 * - No exception from the library (callback, event, late answer) reaches the
 *   caller's stack: callbacks only settle promises.
 */
import { EventEmitter } from 'node:events';
import ModbusRTU from 'modbus-serial';
import { errorText } from '../model/errors';
import { closeClient, connectClient, modbusException, readArea } from './gpio-modbus';
import { checkOptions, deviceLabel, GpioDeviceOptions } from './gpio-options';
import { GpioArea, GpioPoint, MAX_ADDRESS, pointKey, PointListener, PointValue, readRanges, validPoint } from './gpio-points';
import { Backoff } from '../model/backoff';

// gpio-signal.ts takes these from here

export type GpioState = 'idle' | 'connecting' | 'connected' | 'broken' | 'reconnecting' | 'stopped';

export class GpioError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'GpioError';
    this.code = code;
  }
}

export interface GpioStats {
  requests: number;
  answered: number;
  exceptions: number;
  timeouts: number;
  refused: number;
  polls: number;
  connects: number;
}

interface Job {
  kind: 'poll' | 'write';
  run: (c: ModbusRTU) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Watch {
  point: GpioPoint;
  listener: PointListener;
}

export class GpioDevice extends EventEmitter {
  readonly label: string;
  private readonly options: Required<Omit<GpioDeviceOptions, 'host' | 'port' | 'serialPath'>> & GpioDeviceOptions;
  private _state: GpioState = 'idle';
  private client: ModbusRTU | null = null;
  private clientListeners: Array<[string, (...a: unknown[]) => void]> = [];
  private queue: Job[] = [];
  private busy = false;
  private inFlight: Job | null = null;
  private watches = new Set<Watch>();
  private last = new Map<string, PointValue>();
  private pollTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;
  private timeoutsInRow = 0;
  private generation = 0;
  private lastError = '';
  private connectedAt = 0;
  readonly stats: GpioStats = { requests: 0, answered: 0, exceptions: 0, timeouts: 0, refused: 0, polls: 0, connects: 0 };

  constructor(options: GpioDeviceOptions) {
    super();
    const bad = checkOptions(options);
    if (bad) throw new GpioError(bad, 'EINVAL');
    this.options = {
      unitId: 1,
      pollMs: 50,
      timeoutMs: 1000,
      maxTimeouts: 3,
      reconnectMinMs: 500,
      reconnectMaxMs: 10000,
      queueMax: 32,
      baudRate: 9600,
      parity: 'none',
      dataBits: 8,
      stopBits: 1,
      ...options,
    };
    this.backoff = new Backoff(this.options.reconnectMinMs, this.options.reconnectMaxMs);
    this.label = deviceLabel(this.options);
    this.setMaxListeners(0);
  }

  get state(): GpioState {
    return this._state;
  }
  get queueDepth(): number {
    return this.queue.length + (this.inFlight ? 1 : 0);
  }
  get queueMax(): number {
    return this.options.queueMax;
  }
  get pollMs(): number {
    return this.options.pollMs;
  }
  get error(): string {
    return this.lastError;
  }

  /** What is live: for leak checks and the diagnostics route. */
  resources(): { timers: number; clientListeners: number; watches: number; listeners: number; queue: number } {
    const timers = [this.pollTimer, this.retryTimer, this.connectTimer].filter(Boolean).length;
    const listeners = this.eventNames().reduce((n, e) => n + this.listenerCount(e), 0);
    return { timers, clientListeners: this.clientListeners.length, watches: this.watches.size, listeners, queue: this.queueDepth };
  }

  start(): void {
    if (this._state !== 'idle') return;
    this.connect('connecting');
  }

  /** Close the link, clear every timer, refuse what is queued. Idempotent. */
  async stop(): Promise<void> {
    if (this._state === 'stopped') return;
    this.generation++;
    this.clearTimers();
    this.failQueue(new GpioError(`${this.label}: the device node was stopped`, 'ECLOSED'));
    this.watches.clear();
    this.last.clear();
    await this.dropClient();
    this.setState('stopped', 'stopped');
  }

  /**
   * Watch a point: the listener gets the value of every poll in which it
   * changed, and the current value at once when one is known. Returns the
   * function that ends the watch.
   */
  watch(point: GpioPoint, listener: PointListener): () => void {
    const bad = validPoint(point);
    if (bad) throw new GpioError(bad, 'EINVAL');
    const w: Watch = { point: { ...point }, listener };
    this.watches.add(w);
    const known = this.last.get(pointKey(point));
    if (known !== undefined) queueMicrotask(() => this.watches.has(w) && safeCall(listener, known, Date.now()));
    if (this._state === 'connected' && !this.pollTimer && !this.queue.some((j) => j.kind === 'poll') && !(this.inFlight?.kind === 'poll')) this.schedulePoll(0);
    return () => {
      this.watches.delete(w);
    };
  }

  /** The last polled value of a point (undefined before the first poll). */
  value(point: GpioPoint): PointValue | undefined {
    return this.last.get(pointKey(point));
  }

  writeCoil(address: number, value: boolean): Promise<void> {
    const bad = validPoint({ area: 'coil', address });
    if (bad) return Promise.reject(new GpioError(bad, 'EINVAL'));
    return this.enqueue({ kind: 'write', run: (c) => c.writeCoil(address, value) }).then(() => {
      this.noteValue({ area: 'coil', address }, value, Date.now());
    });
  }

  writeRegister(address: number, value: number): Promise<void> {
    const bad = validPoint({ area: 'holding', address });
    if (bad) return Promise.reject(new GpioError(bad, 'EINVAL'));
    if (!Number.isInteger(value) || value < 0 || value > 65535)
      return Promise.reject(new GpioError(`register value ${String(value)} is not 0..65535`, 'EINVAL'));
    return this.enqueue({ kind: 'write', run: (c) => c.writeRegister(address, value) }).then(() => undefined);
  }

  read(area: GpioArea, address: number, count = 1): Promise<PointValue[]> {
    const bad = validPoint({ area, address }) ?? (count >= 1 && address + count - 1 <= MAX_ADDRESS ? null : `count ${count} from ${address} is out of range`);
    if (bad) return Promise.reject(new GpioError(bad, 'EINVAL'));
    return this.enqueue({ kind: 'write', run: (c) => readArea(c, area, address, count) }).then((r) => (r as { data: PointValue[] }).data.slice(0, count));
  }

  // ------------------------------------------------------------- connection

  private setState(s: GpioState, reason: string): void {
    if (this._state === s && s !== 'broken') return;
    this._state = s;
    this.emit('state', s, reason);
  }

  private connect(as: 'connecting' | 'reconnecting'): void {
    const gen = ++this.generation;
    this.setState(as, as === 'connecting' ? `connecting to ${this.label}` : `reconnecting to ${this.label}`);
    const client = new ModbusRTU();
    this.client = client;
    const on = (ev: string, fn: (...a: unknown[]) => void) => {
      client.on(ev as 'close', fn as () => void);
      this.clientListeners.push([ev, fn]);
    };
    // the library emits 'error' for port errors; without a listener it would throw
    on('error', (e: unknown) => {
      if (gen === this.generation) this.lostLink(`link error: ${errorText(e)}`);
    });
    on('close', () => {
      if (gen === this.generation) this.lostLink('the device closed the connection');
    });
    let settled = false;
    const done = (err: unknown) => {
      if (settled) return;
      settled = true;
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.connectTimer = null;
      queueMicrotask(() => this.afterConnect(gen, err));
    };
    // a connect that never answers (a black-holed address) ends on our own timer
    this.connectTimer = setTimeout(() => done(new GpioError(`no answer within ${this.options.timeoutMs} ms`, 'ETIMEDOUT')), this.options.timeoutMs + 50);
    connectClient(client, this.options, done);
  }

  private afterConnect(gen: number, err: unknown): void {
    if (gen !== this.generation || this._state === 'stopped') return;
    if (err) {
      this.lostLink(`cannot connect: ${errorText(err) || 'refused'}`);
      return;
    }
    try {
      this.client!.setID(this.options.unitId);
      this.client!.setTimeout(this.options.timeoutMs);
    } catch (e) {
      this.lostLink(`cannot set up the link: ${errorText(e)}`);
      return;
    }
    this.stats.connects++;
    this.backoff.reset();
    this.timeoutsInRow = 0;
    this.lastError = '';
    this.connectedAt = Date.now();
    this.setState('connected', `connected to ${this.label}`);
    this.schedulePoll(0);
    this.pump();
  }

  /** The link is gone (or never came): refuse what waits, drop the client, retry later. */
  private lostLink(reason: string): void {
    if (this._state === 'stopped') return;
    const wasUp = this._state === 'connected';
    this.generation++;
    this.lastError = reason;
    this.clearTimers();
    this.failQueue(new GpioError(`${this.label} is offline (${reason})`, 'EOFFLINE'));
    void this.dropClient();
    this.setState('broken', reason);
    // a link that was up is tried again at once (the shortest delay); one that keeps failing waits longer each time
    if (wasUp) this.backoff.reset();
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this._state === 'broken') this.connect('reconnecting');
    }, delay);
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (!c) return;
    const listeners = this.clientListeners;
    this.clientListeners = [];
    await closeClient(c, listeners);
  }

  private clearTimers(): void {
    for (const t of [this.pollTimer, this.retryTimer, this.connectTimer]) if (t) clearTimeout(t);
    this.pollTimer = this.retryTimer = this.connectTimer = null;
  }

  // ------------------------------------------------------------------ queue

  private enqueue(j: Omit<Job, 'resolve' | 'reject'>): Promise<unknown> {
    if (this._state !== 'connected') {
      this.stats.refused++;
      const why = this._state === 'stopped' ? 'the device node was stopped' : this.lastError || this._state;
      return Promise.reject(new GpioError(`${this.label} is offline (${why})`, this._state === 'stopped' ? 'ECLOSED' : 'EOFFLINE'));
    }
    if (this.queueDepth >= this.options.queueMax) {
      this.stats.refused++;
      return Promise.reject(
        new GpioError(
          `${this.label}: the request queue is full (${this.options.queueMax} waiting); the flow sends faster than the device answers`,
          'EQUEUEFULL',
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const job: Job = { ...j, resolve, reject };
      if (job.kind === 'write') {
        // writes go before polls, in their own order
        const firstPoll = this.queue.findIndex((q) => q.kind === 'poll');
        if (firstPoll < 0) this.queue.push(job);
        else this.queue.splice(firstPoll, 0, job);
      } else {
        this.queue.push(job);
      }
      this.emit('queue', this.queueDepth);
      this.pump();
    });
  }

  private pump(): void {
    if (this.busy || this._state !== 'connected' || !this.client) return;
    const job = this.queue.shift();
    if (!job) return;
    this.busy = true;
    this.inFlight = job;
    const gen = this.generation;
    const client = this.client;
    this.stats.requests++;
    let p: Promise<unknown>;
    try {
      p = job.run(client);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => this.finish(gen, job, null, v),
      (e) => this.finish(gen, job, e, undefined),
    );
  }

  private finish(gen: number, job: Job, err: unknown, value: unknown): void {
    if (this.inFlight !== job) return; // already refused by lostLink/stop
    this.inFlight = null;
    this.busy = false;
    if (gen !== this.generation) return;
    if (err) {
      const e = err as { name?: string; errno?: string; modbusCode?: number; message?: string };
      if (e.name === 'TransactionTimedOutError' || e.errno === 'ETIMEDOUT') {
        this.stats.timeouts++;
        this.timeoutsInRow++;
        job.reject(new GpioError(`${this.label} did not answer within ${this.options.timeoutMs} ms`, 'ETIMEDOUT'));
        if (this.timeoutsInRow >= this.options.maxTimeouts) {
          this.lostLink(`${this.timeoutsInRow} requests in a row without an answer`);
          return;
        }
      } else if (typeof e.modbusCode === 'number') {
        this.stats.exceptions++;
        this.timeoutsInRow = 0;
        job.reject(new GpioError(`${this.label} refused the request: ${modbusException(e.modbusCode)}`, 'EMODBUS'));
      } else if (e.name === 'PortNotOpenError') {
        job.reject(new GpioError(`${this.label} is offline (port not open)`, 'EOFFLINE'));
        this.lostLink('port not open');
        return;
      } else {
        job.reject(new GpioError(`${this.label}: ${errorText(err)}`, 'EIO'));
      }
    } else {
      this.stats.answered++;
      this.timeoutsInRow = 0;
      job.resolve(value);
    }
    this.emit('queue', this.queueDepth);
    this.pump();
  }

  private failQueue(err: GpioError): void {
    const jobs = this.queue;
    this.queue = [];
    const inflight = this.inFlight;
    this.inFlight = null;
    this.busy = false;
    for (const j of inflight ? [inflight, ...jobs] : jobs) j.reject(err);
    if (inflight || jobs.length) this.emit('queue', 0);
  }

  // ---------------------------------------------------------------- polling

  private schedulePoll(delay: number): void {
    if (this.pollTimer || this._state !== 'connected' || this.watches.size === 0) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.pollCycle();
    }, delay);
  }

  private async pollCycle(): Promise<void> {
    const gen = this.generation;
    const started = Date.now();
    const ranges = readRanges([...this.watches].map((w) => w.point));
    for (const r of ranges) {
      if (gen !== this.generation || this._state !== 'connected') return;
      if (this.queueDepth >= this.options.queueMax) break; // writes fill the queue: skip this poll, not the writes
      let data: PointValue[];
      try {
        const res = (await this.enqueue({ kind: 'poll', run: (c) => readArea(c, r.area, r.start, r.count) })) as { data: PointValue[] };
        data = res.data;
      } catch (err) {
        if (gen !== this.generation) return;
        this.emit('pollError', err);
        continue;
      }
      if (gen !== this.generation) return;
      const at = Date.now();
      this.stats.polls++;
      for (let i = 0; i < r.count; i++) {
        const raw = data[i];
        if (raw === undefined) continue;
        this.noteValue({ area: r.area, address: r.start + i }, raw, at);
      }
    }
    if (gen !== this.generation) return;
    this.schedulePoll(Math.max(0, this.options.pollMs - (Date.now() - started)));
  }

  /** Record a value read or written and tell the watchers of every point it covers that changed. */
  private noteValue(base: { area: GpioArea; address: number }, raw: PointValue, at: number): void {
    const points: Array<[GpioPoint, PointValue]> = [];
    if (base.area === 'coil' || base.area === 'discrete') points.push([base, Boolean(raw)]);
    else {
      const v = Number(raw) & 0xffff;
      points.push([base, v]);
      for (let b = 0; b < 16; b++) points.push([{ ...base, bit: b }, ((v >> b) & 1) === 1]);
    }
    for (const [p, v] of points) {
      const k = pointKey(p);
      if (this.last.get(k) === v) continue;
      this.last.set(k, v);
      for (const w of this.watches) if (pointKey(w.point) === k) safeCall(w.listener, v, at);
    }
  }
}

function safeCall(fn: PointListener, v: PointValue, at: number): void {
  try {
    fn(v, at);
  } catch {
    /* a watcher's fault must not stop the poll loop */
  }
}
