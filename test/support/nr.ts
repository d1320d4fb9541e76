/** Helpers for node tests with node-red-node-test-helper. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');

export { helper };

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `twinrec-${prefix}-`));
}

export interface Msg {
  topic?: string;
  payload: any;
  error?: { message: string; source?: { id: string } };
  [k: string]: unknown;
}

/** Collects every message a helper node receives; wait for ones matching a predicate. */
export class Collector {
  readonly msgs: Msg[] = [];
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  constructor(node: { on(ev: string, fn: (m: Msg) => void): void }) {
    node.on('input', (m: Msg) => {
      this.msgs.push(m);
      for (const w of [...this.waiters]) {
        if (w.pred(m)) {
          clearTimeout(w.timer);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
  }
  wait(pred: (m: Msg) => boolean, timeoutMs = 10000, what = 'message'): Promise<Msg> {
    const found = this.msgs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got: ${JSON.stringify(this.msgs.map((m) => m.topic ?? m.error?.message))}`));
      }, timeoutMs);
      this.waiters.push({ pred, resolve, reject, timer });
    });
  }
  event(name: string, timeoutMs = 10000, extra: (m: Msg) => boolean = () => true): Promise<Msg> {
    return this.wait((m) => m.payload?.event === name && extra(m), timeoutMs, `event ${name}`);
  }
  error(re: RegExp, timeoutMs = 10000): Promise<Msg> {
    return this.wait((m) => !!m.error && re.test(m.error.message), timeoutMs, `error ${re}`);
  }
  clear(): void {
    this.msgs.length = 0;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wait until a condition holds (polled every `interval` ms, sync or async), and
 * return its first truthy value; or fail after `timeout` ms naming what was
 * awaited (and, if `detail` is given, what was seen last). Use it in place of a
 * fixed sleep that waits for something to happen. A fixed sleep stays only
 * where a test proves that something does NOT happen during a period.
 */
export async function waitFor<T>(
  cond: () => T | Promise<T>,
  opts: { timeout?: number; what: string; interval?: number; detail?: () => unknown },
): Promise<NonNullable<T>> {
  const timeout = opts.timeout ?? 10000;
  const interval = opts.interval ?? 100;
  const end = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) {
      let seen = '';
      if (opts.detail) {
        try {
          seen = `; last seen: ${JSON.stringify(await opts.detail())}`;
        } catch {
          /* no detail */
        }
      }
      throw new Error(`timed out after ${timeout} ms waiting for ${opts.what}${seen}`);
    }
    await sleep(interval);
  }
}

/** Wait until a condition holds (polled), or fail naming what was awaited. */
export async function until(fn: () => boolean, what: string, ms = 10000): Promise<void> {
  await waitFor(fn, { what, timeout: ms, interval: 25 });
}
