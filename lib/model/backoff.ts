/**
 * Exponential backoff with jitter for anything that retries a peer: a broker
 * link, a Modbus device, a camera, a copy, an ffmpeg restart. Each delay is the
 * current step with up to ±jitter of it added at random (so a hundred servers
 * that lost one broker do not all come back in the same millisecond), and the
 * step doubles up to `maxMs`. `reset()` after a success starts again at `minMs`.
 */
export class Backoff {
  private step: number;
  constructor(
    readonly minMs: number,
    readonly maxMs: number,
    /** Fraction of the step added or taken at random, 0..1 (0: no jitter). */
    readonly jitter = 0.2,
    private readonly random: () => number = Math.random,
  ) {
    if (!(minMs >= 0) || !(maxMs >= minMs)) throw new RangeError(`backoff needs 0 <= min <= max (got ${minMs} and ${maxMs})`);
    this.step = minMs;
  }

  /** The delay before the next try; the step after it doubles (up to the cap). */
  next(): number {
    const base = this.step;
    this.step = Math.min(this.maxMs, Math.max(1, this.step) * 2);
    const j = Math.min(1, Math.max(0, this.jitter));
    return Math.max(0, Math.round(base * (1 - j + 2 * j * this.random())));
  }

  /** The step the next delay is drawn around (no jitter), for a status ("retrying in 4 s"). */
  peek(): number {
    return this.step;
  }

  /** After a success: the next failure waits the shortest again. */
  reset(): void {
    this.step = this.minMs;
  }
}
