/**
 * The bandwidth limit of a copy (material copy, the transfer manager): a token
 * bucket the segment fetches of lib/peer/client.ts take their bytes from.
 *
 * No Node-RED import.
 */

/** A token bucket: `take(n)` resolves when n more bytes fit into bytesPerSecond (0 = unlimited). */
export class RateLimiter {
  private tokens: number;
  private last: number;
  private bps: number;
  private burst: number;
  /** Bytes taken so far. */
  taken = 0;
  private readonly clock: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(bytesPerSecond: number, o: { burstBytes?: number; clock?: () => number; sleep?: (ms: number) => Promise<void> } = {}) {
    this.clock = o.clock ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.bps = 0;
    this.burst = 0;
    this.setRate(bytesPerSecond, o.burstBytes);
    this.tokens = this.burst;
    this.last = this.clock();
  }

  get bytesPerSecond(): number {
    return this.bps;
  }

  /** Change the rate; the bucket holds at most burstBytes (default: one second's worth). */
  setRate(bytesPerSecond: number, burstBytes?: number): void {
    if (!(Number.isFinite(bytesPerSecond) && bytesPerSecond >= 0))
      throw new Error(`a rate limit must be 0 (unlimited) or more bytes per second, not ${bytesPerSecond}`);
    this.bps = bytesPerSecond;
    this.burst = burstBytes ?? bytesPerSecond;
    if (this.tokens !== undefined) this.tokens = Math.min(this.tokens, this.burst);
  }

  private refill(): void {
    const now = this.clock();
    if (now > this.last && this.bps > 0) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.bps) / 1000);
    this.last = Math.max(this.last, now);
  }

  /** Take bytes only when they fit now (no wait): true when taken. */
  tryTake(bytes: number): boolean {
    if (!(bytes > 0)) return true;
    if (this.bps > 0) {
      this.refill();
      if (this.tokens < bytes) return false;
      this.tokens -= bytes;
    }
    this.taken += bytes;
    return true;
  }

  /**
   * Take bytes from the bucket; the bucket may go into debt, and the caller
   * waits until the debt is paid back at the rate (so concurrent takers queue).
   */
  take(bytes: number): Promise<void> {
    if (!(bytes > 0)) return Promise.resolve();
    this.taken += bytes;
    if (this.bps <= 0) return Promise.resolve();
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return Promise.resolve();
    return this.sleep(Math.ceil((-this.tokens * 1000) / this.bps));
  }
}
