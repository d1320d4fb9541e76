/**
 * The direct witness of each watched server, the path that does not go
 * through the broker, feeding the detector's probe evidence:
 *
 * - with the group's key: a signed liveness exchange (lib/peer/liveness.ts) at
 *   the address the watch names for the server, or else at the address the
 *   server announces in its retained state. An answer proves the application
 *   runs; a frozen process, a frozen machine and a cut network stop answering.
 * - without a key: a TCP connect to the address the watch names (it tells a
 *   machine that is gone from one that is there, never a hung server).
 * - a server with neither counts as out of reach when the broker is.
 */
import { LivenessProber, LivenessView, parseLivenessAddress } from '../peer/liveness';
import type { ServerState } from '../link/schemas';
import type { WatchedServer } from './controller-types';
import type { FailoverDetector } from './detector';
import { tcpProbe } from './probe';

export interface WitnessOptions {
  self: string;
  group: string;
  /** The liveness key of the group (livenessKey(secret)), null without a secret. */
  key: Buffer | null;
  /** How often the TCP probe asks. */
  probeMs: number;
  /** How often liveness asks. */
  livenessMs: number;
  /** How late an answer may be and still count: the heartbeat timeout. */
  timeoutMs: number;
  clock: () => number;
}

/** How a watched server is witnessed directly, for the status and the overview. */
export interface WitnessStatus {
  how: 'liveness' | 'tcp' | 'none';
  address: string | null;
  answering: boolean | null;
  lastAnswerAt: number | null;
  rttMs: number | null;
}

export class DirectWitness {
  private readonly prober: LivenessProber | null;
  private readonly probing = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly watched: WatchedServer[],
    private readonly options: WitnessOptions,
    private readonly detector: FailoverDetector,
    log: { warn(m: string): void },
  ) {
    this.prober = options.key
      ? new LivenessProber(
          { self: options.self, group: options.group, key: options.key, intervalMs: options.livenessMs, timeoutMs: options.timeoutMs, clock: options.clock },
          log,
        )
      : null;
    if (this.prober) for (const w of watched) if (w.probe) this.prober.setTarget({ server: w.server, host: w.probe.host, port: w.probe.port });
  }

  start(): void {
    if (this.prober) this.prober.start();
    else if (this.watched.some((w) => w.probe)) this.timer = setInterval(() => this.tcpAll(), this.options.probeMs);
  }

  /** A watched server's retained state: its announced liveness address is asked when the watch names none. */
  peerState(st: ServerState, log: { warn(m: string): void }): void {
    const w = this.watched.find((x) => x.server === st.server);
    if (!w) return;
    if (this.prober && !w.probe && st.live) {
      try {
        const t = parseLivenessAddress(st.server, st.live);
        this.prober.setTarget(t);
      } catch (err) {
        log.warn(`${st.server} announces a liveness address that is not host:port: ${(err as Error).message}`);
      }
    }
    // a Last Will: a TCP probe asks at once rather than at the next round (liveness asks often enough)
    if (st.state === 'offline' && !this.prober && w.probe) this.tcpOne(w);
  }

  /** Give the detector what is known now (called at each evaluation). */
  feed(brokerUp: boolean): void {
    const now = this.options.clock();
    for (const w of this.watched) {
      if (this.prober?.hasTarget(w.server)) {
        const alive = this.prober.alive(w.server, now);
        if (alive !== null) this.detector.probe(w.server, alive); // just asked: no verdict yet
      } else if (!w.probe && !brokerUp) this.detector.probe(w.server, false);
      // a TCP probe gives its results as they come (tcpOne)
    }
  }

  status(server: string): WitnessStatus {
    const w = this.watched.find((x) => x.server === server);
    const v: LivenessView | undefined = this.prober?.view(server);
    if (v) return { how: 'liveness', address: v.address, answering: this.prober!.alive(server), lastAnswerAt: v.lastAnswerAt, rttMs: v.rttMs };
    if (w?.probe && !this.prober) return { how: 'tcp', address: `${w.probe.host}:${w.probe.port}`, answering: null, lastAnswerAt: null, rttMs: null };
    return { how: 'none', address: null, answering: null, lastAnswerAt: null, rttMs: null };
  }

  /** What the server's last liveness answer said of its channels. */
  view(server: string): LivenessView | undefined {
    return this.prober?.view(server);
  }

  private tcpAll(): void {
    for (const w of this.watched) this.tcpOne(w);
  }

  private tcpOne(w: WatchedServer): void {
    if (!w.probe || this.probing.has(w.server) || this.closed) return;
    this.probing.add(w.server);
    void tcpProbe(w.probe.host, w.probe.port, Math.max(100, this.options.probeMs - 50)).then((ok) => {
      this.probing.delete(w.server);
      if (!this.closed) this.detector.probe(w.server, ok);
    });
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.prober ? this.prober.close() : Promise.resolve();
  }
}
