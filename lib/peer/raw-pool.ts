/**
 * The kept-alive connections of lib/peer/raw-get.ts (why they are kept: there):
 * a RawPool of idle connections by host and port, and RawConn, one TCP
 * connection whose reads go to the request using it.
 *
 * No Node-RED import.
 */
import net from 'node:net';

/** The longest answer header a request reads; a connection's spare read buffer is as large. */
export const HEADER_MAX = 16 * 1024;

/** How long a kept connection waits for its next request; under the peer API's 5 s keep-alive timeout. */
export const IDLE_MS = 4000;

/**
 * Connections kept open between requests, by host and port. An idle one keeps
 * reading: the peer closing it, or sending anything unasked, drops it from the
 * pool at once. Idle connections do not keep the process alive (unref) and
 * are closed after idleMs.
 */
export class RawPool {
  readonly idleMs: number;
  readonly maxIdle: number;
  /** Connections opened through this pool (a fresh one per request without reuse). */
  opened = 0;
  /** Requests sent on a kept connection. */
  reused = 0;
  private readonly idle = new Map<string, RawConn[]>();
  private closed = false;

  constructor(o: { idleMs?: number; maxIdle?: number } = {}) {
    this.idleMs = o.idleMs ?? IDLE_MS;
    this.maxIdle = o.maxIdle ?? 4;
  }

  /** Idle connections now. */
  get size(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /** The most recently kept live connection to key, taken out of the pool. */
  take(key: string): RawConn | null {
    const l = this.idle.get(key);
    while (l && l.length > 0) {
      const c = l.pop()!;
      if (c.alive()) {
        if (l.length === 0) this.idle.delete(key);
        return c;
      }
      c.destroy();
    }
    this.idle.delete(key);
    return null;
  }

  /** Keep c for a later request; false when the pool is closed or full. */
  give(c: RawConn): boolean {
    if (this.closed || !c.alive() || this.size >= this.maxIdle) return false;
    const l = this.idle.get(c.key) ?? [];
    l.push(c);
    this.idle.set(c.key, l);
    return true;
  }

  /** Take c out (it closed). */
  forget(c: RawConn): void {
    const l = this.idle.get(c.key);
    if (!l) return;
    const i = l.indexOf(c);
    if (i >= 0) l.splice(i, 1);
    if (l.length === 0) this.idle.delete(c.key);
  }

  /** Close every idle connection; later requests go on connections of their own (closed after them). */
  close(): void {
    this.closed = true;
    for (const l of this.idle.values()) for (const c of l) c.destroy();
    this.idle.clear();
  }
}

/** What a connection's reads and events go to while a request uses it. */
export interface Exchange {
  nextBuffer(): Buffer;
  onRead(n: number, buf: Buffer): boolean;
  onTimeout(): void;
  onClose(socketError: unknown): void;
}

/** One TCP connection: its reads go to the exchange using it, or, idle, to a spare buffer. */
export class RawConn {
  readonly key: string;
  readonly socket: net.Socket;
  ex: Exchange | null = null;
  private socketError: unknown = null;
  private ended = false;
  private spareBuf: Buffer | null = null;

  constructor(
    r: { host: string; port: number },
    private readonly pool: RawPool | undefined,
  ) {
    this.key = connKey(r);
    if (pool) pool.opened++;
    this.socket = net.connect({
      host: r.host,
      port: r.port,
      onread: {
        // the buffer for a read is asked for after the read before it: the first read of a request on
        // a kept (or new) connection lands in the spare, no larger than the header buffer it is copied to
        buffer: () => (this.ex ? this.ex.nextBuffer() : this.spare()),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (this.ex) return this.ex.onRead(n, buf as Buffer);
          // idle: the peer sent something nobody asked for, the connection is not trusted again
          this.destroy();
          return false;
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on('timeout', () => (this.ex ? this.ex.onTimeout() : this.destroy()));
    this.socket.on('error', (err) => {
      this.socketError = err;
    });
    this.socket.on('end', () => {
      this.ended = true;
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.pool?.forget(this);
      const ex = this.ex;
      this.ex = null;
      ex?.onClose(this.socketError);
    });
  }

  /** Where a read goes when nobody has a place for it (idle, or between the header and receive()). */
  spare(): Buffer {
    return (this.spareBuf ??= Buffer.allocUnsafe(HEADER_MAX));
  }

  alive(): boolean {
    return !this.ended && !this.socket.destroyed && this.socket.writable;
  }

  use(ex: Exchange, timeoutMs: number): void {
    this.ex = ex;
    this.socket.ref();
    this.socket.setTimeout(timeoutMs);
  }

  /** The exchange is over: keep the connection for the next one (true) or close it. */
  release(keep: boolean): boolean {
    this.ex = null;
    if (keep && this.pool?.give(this)) {
      this.socket.setTimeout(this.pool.idleMs);
      this.socket.unref();
      this.socket.resume(); // an idle connection reads, so a close by the peer is seen at once
      return true;
    }
    this.destroy();
    return false;
  }

  destroy(): void {
    this.ended = true;
    this.pool?.forget(this);
    this.socket.destroy();
  }
}

export function connKey(r: { host: string; port: number }): string {
  return `${r.host}|${r.port}`;
}
