/**
 * Failover decisions of one failover server, as pure logic fed with what the
 * server link sees (heartbeats, retained states and Last Wills, its own broker
 * connection, direct probes) and a clock. No timers, no I/O: the caller calls
 * evaluate() (every heartbeat interval or so) and acts on the decisions.
 *
 * - A watched server is failed when its heartbeats stopped for heartbeatTimeoutMs
 *   and its Last Will (state offline) or a direct probe agrees. A probe that
 *   answers outweighs the Last Will (a broker that restarts sends the wills of
 *   every client, live or not).
 * - This watcher is isolated when it has lost the broker and the probes fail for
 *   every watched server; it then takes over only with recordOnDoubt.
 * - Flapping is damped: a failed server counts as restored only after its
 *   heartbeats have come back for holdDownMs without a break.
 * - N+1: at most `capacity` servers are taken over, chosen by priority order; with
 *   several failover servers, a failed server is taken by one of them only (the
 *   claim of the lowest rank, then the smallest server id, wins).
 */
import { ServerState } from '../link/schemas';

export interface DetectorOptions {
  self: string;
  /** Watched servers, highest priority first. */
  watched: string[];
  heartbeatTimeoutMs?: number;
  holdDownMs?: number;
  capacity?: number;
  recordOnDoubt?: boolean;
  /** This failover server's rank among the group's failover servers (0 first). */
  rank?: number;
}

export type PeerStatus = 'unknown' | 'ok' | 'suspect' | 'failed' | 'restoring';

export type Decision =
  | { kind: 'failed'; server: string; at: number; evidence: string }
  | { kind: 'takeover'; server: string; at: number }
  | { kind: 'release'; server: string; at: number; reason: string }
  | { kind: 'restored'; server: string; at: number }
  | { kind: 'isolated'; at: number; evidence: string }
  | { kind: 'connected'; at: number };

interface Peer {
  lastHeartbeat: number | null;
  state: ServerState | null;
  probeOk: boolean | null;
  status: PeerStatus;
  failedAt: number | null;
  backSince: number | null;
  maintenance: boolean;
}

export interface Claim {
  failedServer: string;
  claimant: string;
  rank: number;
  at: number;
}

export class FailoverDetector {
  readonly options: Required<DetectorOptions>;
  private peers = new Map<string, Peer>();
  private brokerUp = false;
  private isolated = false;
  private takenOver = new Set<string>();
  /** Failed servers released by hand: not taken over again until they have been restored. */
  private handsOff = new Set<string>();
  private claims = new Map<string, Claim[]>();
  private paused = false;

  constructor(
    opts: DetectorOptions,
    private readonly clock: () => number = Date.now,
  ) {
    this.options = { heartbeatTimeoutMs: 750, holdDownMs: 10000, capacity: 1, recordOnDoubt: true, rank: 0, ...opts };
    for (const s of this.options.watched) {
      this.peers.set(s, { lastHeartbeat: null, state: null, probeOk: null, status: 'unknown', failedAt: null, backSince: null, maintenance: false });
    }
  }

  private peer(server: string): Peer | undefined {
    return this.peers.get(server);
  }

  heartbeat(server: string, at = this.clock()): void {
    const p = this.peer(server);
    if (!p) return;
    if (p.lastHeartbeat !== null && at - p.lastHeartbeat > this.options.heartbeatTimeoutMs) p.backSince = null; // a break
    p.lastHeartbeat = at;
    if (p.backSince === null) p.backSince = at;
  }

  serverState(st: ServerState): void {
    const p = this.peer(st.server);
    if (!p) return;
    p.state = st;
    if (st.state === 'online' && p.backSince === null) p.backSince = this.clock();
  }

  probe(server: string, reachable: boolean): void {
    const p = this.peer(server);
    if (p) p.probeOk = reachable;
  }

  broker(connected: boolean): void {
    this.brokerUp = connected;
  }

  setMaintenance(server: string, on: boolean): void {
    const p = this.peer(server);
    if (p) p.maintenance = on;
  }

  /** Another failover server's claim on a failed server (from the broker). */
  claim(c: Claim): void {
    const list = (this.claims.get(c.failedServer) ?? []).filter((x) => x.claimant !== c.claimant);
    list.push(c);
    this.claims.set(c.failedServer, list);
  }

  releaseClaim(failedServer: string, claimant: string): void {
    this.claims.set(
      failedServer,
      (this.claims.get(failedServer) ?? []).filter((x) => x.claimant !== claimant),
    );
  }

  /** The failover server that should record for a failed server, among the claims (ours included). */
  winner(failedServer: string): string {
    const mine: Claim = { failedServer, claimant: this.options.self, rank: this.options.rank, at: 0 };
    const all = [...(this.claims.get(failedServer) ?? []), mine];
    all.sort((a, b) => a.rank - b.rank || a.claimant.localeCompare(b.claimant));
    return all[0].claimant;
  }

  status(server: string): PeerStatus {
    return this.peer(server)?.status ?? 'unknown';
  }

  takenOverServers(): string[] {
    return [...this.takenOver];
  }

  /** Mark a takeover as handed back (after failback). */
  released(server: string): void {
    this.takenOver.delete(server);
  }

  /**
   * A takeover ended by hand while the server is still failed (the operator
   * takes it from here): no new takeover of it until it has come back and been
   * restored; a later failure is taken over as usual.
   */
  standDown(server: string): void {
    this.released(server);
    if (this.peers.has(server)) this.handsOff.add(server);
  }

  /**
   * A takeover already under way (this failover server restarted during it):
   * the server counts as failed and taken over until its heartbeats come back.
   */
  assume(server: string, at = this.clock()): void {
    const p = this.peer(server);
    if (!p) return;
    p.status = 'failed';
    p.failedAt = at;
    p.backSince = null;
    this.takenOver.add(server);
  }

  /** While paused (failover disabled, or this server in maintenance), no new takeover is decided. */
  pause(on: boolean): void {
    this.paused = on;
  }

  isIsolated(): boolean {
    return this.isolated;
  }

  /** Look at everything known now; return what changed. */
  evaluate(now = this.clock()): Decision[] {
    const out: Decision[] = [];
    const silent = (p: Peer) => p.lastHeartbeat === null || now - p.lastHeartbeat > this.options.heartbeatTimeoutMs;
    // isolation: no broker, and no watched server answers a probe
    const allProbesFail = [...this.peers.values()].every((p) => p.probeOk === false);
    const isolatedNow = !this.brokerUp && allProbesFail;
    if (isolatedNow && !this.isolated) {
      this.isolated = true;
      out.push({ kind: 'isolated', at: now, evidence: 'the broker and every watched server are out of reach' });
    } else if (!isolatedNow && this.isolated) {
      this.isolated = false;
      out.push({ kind: 'connected', at: now });
    }
    for (const [server, p] of this.peers) {
      if (p.status === 'failed' || p.status === 'restoring') {
        if (!silent(p) && p.backSince !== null && (p.state === null || p.state.state === 'online')) {
          p.status = 'restoring';
          if (now - p.backSince >= this.options.holdDownMs) {
            p.status = 'ok';
            p.failedAt = null;
            this.handsOff.delete(server);
            out.push({ kind: 'restored', server, at: now });
          }
        } else {
          p.status = 'failed';
          p.backSince = null;
        }
        continue;
      }
      if (p.lastHeartbeat === null && p.state === null) continue; // never seen: nothing to judge
      if (!silent(p)) {
        p.status = 'ok';
        continue;
      }
      // silent: a witness must agree (its Last Will / offline state, or a failed direct probe)
      const willSaysOffline = p.state !== null && p.state.state === 'offline';
      const probeSaysDown = p.probeOk === false;
      // a direct probe that answers outweighs a Last Will: the broker lost the server (or went down itself), the server lives
      const probeSaysUp = p.probeOk === true;
      if ((willSaysOffline && !probeSaysUp) || probeSaysDown || (this.isolated && this.options.recordOnDoubt)) {
        if (p.maintenance) {
          p.status = 'suspect';
          continue;
        }
        p.status = 'failed';
        p.failedAt = now;
        p.backSince = null;
        const evidence = willSaysOffline
          ? `no heartbeat for ${Math.round((now - (p.lastHeartbeat ?? now)) / 100) / 10} s and the broker says offline (${p.state!.cause ?? 'offline'})`
          : probeSaysDown
            ? 'no heartbeat and no answer to a direct probe'
            : 'isolated, and the site records on doubt';
        out.push({ kind: 'failed', server, at: now, evidence });
      } else {
        p.status = 'suspect';
      }
    }
    // takeovers: the failed servers this watcher should record for, by priority, within capacity,
    // not those a better-placed failover server claims; a higher priority failure displaces a lower one
    if (!this.paused && (!this.isolated || this.options.recordOnDoubt)) {
      const desired = this.options.watched
        .filter((s) => this.peers.get(s)!.status === 'failed' && !this.handsOff.has(s) && this.winner(s) === this.options.self)
        .slice(0, this.options.capacity);
      for (const server of [...this.takenOver]) {
        const p = this.peers.get(server)!;
        if (p.status === 'failed' && !desired.includes(server)) {
          this.takenOver.delete(server);
          out.push({ kind: 'release', server, at: now, reason: 'a server of higher priority failed and this failover server is at capacity' });
        }
      }
      for (const server of desired) {
        if (this.takenOver.has(server)) continue;
        this.takenOver.add(server);
        out.push({ kind: 'takeover', server, at: now });
      }
    }
    return out;
  }
}
