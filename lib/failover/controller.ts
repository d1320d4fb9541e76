/**
 * The failover server of a redundancy group at work: it feeds the detector with
 * what the link sees (heartbeats, states, Last Wills, direct probes), keeps the
 * settings cache, takes over a failed server's recorders, keeps the failover log,
 * and runs failback (manual, automatic, drill) through lib/failover/failback.ts, whose
 * checks it answers.
 *
 * Events: 'failed' {server, evidence}, 'failover' FailoverStarted, 'released',
 * 'restored' {server, entries}, 'isolated' {evidence}, 'connected',
 * 'failback' FailbackDone, 'failback-failed' {entryId, error}, 'recorder' ChannelEvent.
 *
 * No Node-RED import: the failover-watch node owns one.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { CommandError, errorText } from '../model/errors';
import { checkFailback, FailbackContext, FailbackRefused, finalizeOthers, pickAutomaticFailback, runFailback } from './failback';
import { Decision, FailoverDetector } from './detector';
import { FailoverEntry, FailoverLog, TakeoverRelease } from '../store/failover-log';
import {
  HandbackAck,
  Heartbeat,
  LINK_VERSION,
  ServerState,
  SystemChange,
  TakeoverRecord,
  topicFor,
  validateChannelSettings,
  validateHandbackAck,
  validateHeartbeat,
} from '../link/schemas';
import { SettingsCache } from './settings-cache';
import { channelSnapshotOf } from '../recorder/settings-snapshot';
import { Takeover, TakeoverOptions, takeoverOptionsFor, takeoverRecordOf } from './takeover';
import { OperatorSwitches } from './operator-switches';
import { DirectWitness } from './witness';
import { HandbackRequests } from './handback-request';
import type { FailbackDone, FailoverControllerOptions, FailoverDeps, FailoverStarted, WatchedStatus } from './controller-types';

export type { FailbackDone, FailoverControllerOptions, FailoverDeps, FailoverLink, FailoverStarted, WatchedServer, WatchedStatus } from './controller-types';

export class FailoverController extends EventEmitter {
  readonly options: Required<Omit<FailoverControllerOptions, 'sourceLogin' | 'logSynchronous' | 'livenessKey'>> &
    Pick<FailoverControllerOptions, 'sourceLogin' | 'logSynchronous' | 'livenessKey'>;
  readonly log: FailoverLog;
  readonly cache: SettingsCache;
  readonly detector: FailoverDetector;
  readonly witness: DirectWitness;
  private readonly clock: () => number;
  private readonly takeovers = new Map<string, Takeover>();
  /** Failover on or off, maintenance, servers marked failed or OK by hand: kept in the state folder. */
  private readonly switches: OperatorSwitches;
  private lastHeartbeat = new Map<string, number>();
  private evidence = new Map<string, string>();
  private timers: NodeJS.Timeout[] = [];
  private unsubs: (() => void)[] = [];
  private readonly handbacks = new HandbackRequests();
  private busy = new Map<string, Promise<unknown>>();
  private closed = false;
  private readonly watchedNames: Set<string>;
  private readonly onPeer = (st: ServerState) => this.guard(() => this.peer(st));
  private readonly onTakeoverRecord = (rec: TakeoverRecord) => this.guard(() => this.takeoverRecord(rec));

  constructor(
    opts: FailoverControllerOptions,
    private readonly deps: FailoverDeps,
  ) {
    super();
    this.options = {
      heartbeatTimeoutMs: 750,
      holdDownMs: 10000,
      capacity: 1,
      recordOnDoubt: true,
      rank: 0,
      failoverEnabled: true,
      evaluateMs: 100,
      probeMs: 500,
      livenessMs: 200,
      handbackTimeoutMs: 15000,
      overlapMs: 2000,
      rankGraceMs: 1500,
      ...opts,
    };
    this.clock = deps.clock ?? Date.now;
    this.watchedNames = new Set(this.options.watched.map((w) => w.server));
    if (this.watchedNames.has(this.options.self)) throw new Error(`a failover server cannot watch itself (${this.options.self})`);
    fs.mkdirSync(this.options.stateDir, { recursive: true });
    this.log = new FailoverLog(path.join(this.options.stateDir, 'failover.sqlite'), { synchronous: this.options.logSynchronous });
    this.cache = new SettingsCache(path.join(this.options.stateDir, 'settings-cache'), deps.log);
    this.detector = new FailoverDetector(
      {
        self: this.options.self,
        watched: this.options.watched.map((w) => w.server),
        heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
        holdDownMs: this.options.holdDownMs,
        capacity: this.options.capacity,
        recordOnDoubt: this.options.recordOnDoubt,
        rank: this.options.rank,
      },
      this.clock,
    );
    this.witness = new DirectWitness(
      this.options.watched,
      {
        self: this.options.self,
        group: this.options.group,
        key: this.options.livenessKey ?? null,
        probeMs: this.options.probeMs,
        livenessMs: this.options.livenessMs,
        timeoutMs: this.options.heartbeatTimeoutMs,
        clock: this.clock,
      },
      this.detector,
      deps.log,
    );
    this.switches = new OperatorSwitches(
      { stateDir: this.options.stateDir, self: this.options.self, watched: this.watchedNames, failoverEnabled: this.options.failoverEnabled },
      this.detector,
      this.log,
      this.clock,
    );
  }

  // ---------------------------------------------------------------- lifecycle

  /** Subscribe, resume takeovers this server had when it stopped, start watching. */
  async start(): Promise<void> {
    const { link } = this.deps;
    const g = this.options.group;
    this.unsubs.push(
      link.subscribe(topicFor(g, '+', 'heartbeat'), validateHeartbeat, (_t, p) => {
        if (p === null) return;
        const hb = p as Heartbeat;
        if (!this.watchedNames.has(hb.server)) return;
        const at = this.clock();
        this.lastHeartbeat.set(hb.server, at);
        this.detector.heartbeat(hb.server, at);
      }),
      link.subscribe(topicFor(g, '+', 'settings', '+'), validateChannelSettings, (topic, p) => this.guard(() => this.settings(topic, p))),
      link.subscribe(topicFor(g, this.options.self, 'handback-ack'), validateHandbackAck, (_t, p) => {
        if (p === null) return;
        const ack = p as HandbackAck;
        this.handbacks.answer(ack);
      }),
    );
    link.on('peer', this.onPeer);
    link.on('takeover', this.onTakeoverRecord);
    for (const st of link.peerStates()) this.onPeer(st);
    await this.resumeTakeovers();
    this.timers.push(setInterval(() => this.guard(() => this.tick()), this.options.evaluateMs));
    this.witness.start();
  }

  /** Stop watching. Takeovers are suspended (they resume when this server starts again), unless `stopRecording`. */
  async close(stopRecording = false): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const u of this.unsubs) u();
    this.unsubs = [];
    this.deps.link.off('peer', this.onPeer);
    this.deps.link.off('takeover', this.onTakeoverRecord);
    this.handbacks.close();
    await this.witness.close();
    await Promise.allSettled([...this.busy.values()]);
    await Promise.all([...this.takeovers.values()].map((t) => (stopRecording ? t.stop().catch(() => undefined) : t.suspend())));
    this.takeovers.clear();
    this.cache.close();
    this.log.close();
  }

  // ---------------------------------------------------------------- inputs

  private settings(topic: string, p: unknown): void {
    const parts = topic.split('/');
    const server = parts[2];
    const channel = Number(parts[4]);
    if (!this.watchedNames.has(server)) return;
    if (p === null) {
      // a removed recorder; a server taken over keeps its cache until failback
      if (!this.takeovers.has(server)) this.cache.remove(server, channel);
      return;
    }
    // the envelope is checked by the link schema (validateChannelSettings)
    const c = channelSnapshotOf(p as Parameters<typeof channelSnapshotOf>[0]);
    if (c.server !== server || c.channel !== channel) return;
    // a server that is taken over (and may come back confused) does not rewrite what the takeover records from
    if (this.takeovers.has(server)) return;
    this.cache.put(c);
  }

  private peer(st: ServerState): void {
    if (!this.watchedNames.has(st.server)) return;
    this.detector.serverState(st);
    this.witness.peerState(st, this.deps.log);
  }

  private takeoverRecord(rec: TakeoverRecord): void {
    if (rec.failoverServer === this.options.self) return;
    // another failover server records for it: do not take the same server
    if (rec.active && !rec.drill) this.detector.claim({ failedServer: rec.failedServer, claimant: rec.failoverServer, rank: -1, at: rec.since });
    else this.detector.releaseClaim(rec.failedServer, rec.failoverServer);
  }

  private tick(): void {
    if (this.closed) return;
    const up = this.deps.link.state === 'connected';
    this.detector.broker(up);
    this.witness.feed(up);
    for (const d of this.detector.evaluate()) this.decide(d);
  }

  private decide(d: Decision): void {
    switch (d.kind) {
      case 'failed':
        this.evidence.set(d.server, d.evidence);
        this.deps.log.warn(`${d.server} failed: ${d.evidence}`);
        this.emit('failed', { server: d.server, evidence: d.evidence, at: d.at });
        break;
      case 'takeover':
        this.serial(d.server, () => this.takeOverWhenFirst(d.server)).catch((err) => this.deps.log.error(`takeover of ${d.server}: ${errorText(err)}`));
        break;
      case 'release':
        this.serial(d.server, () => this.release(d.server, d.reason, 'priority')).catch((err) =>
          this.deps.log.error(`release of ${d.server}: ${errorText(err)}`),
        );
        break;
      case 'restored': {
        const entries = this.log.list({ state: 'active', failedServer: d.server });
        this.deps.log.info(`${d.server} is back and connected`);
        this.emit('restored', { server: d.server, at: d.at, entries });
        break;
      }
      case 'isolated':
        this.deps.log.warn(`isolated: ${d.evidence}${this.options.recordOnDoubt ? '; recording on doubt' : ''}`);
        this.emit('isolated', { evidence: d.evidence, at: d.at, recordOnDoubt: this.options.recordOnDoubt });
        break;
      case 'connected':
        this.emit('connected', { at: d.at });
        break;
    }
  }

  /** Run one thing at a time per server (takeover, release, failback). */
  private serial<T>(server: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(server) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    // the caller reports what fails; the chain itself goes on
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.busy.set(server, tail);
    void tail.then(() => {
      if (this.busy.get(server) === tail) this.busy.delete(server);
    });
    return next;
  }

  private async takeOverWhenFirst(server: string): Promise<void> {
    if (this.options.rank > 0) await new Promise((r) => setTimeout(r, this.options.rank * this.options.rankGraceMs));
    if (this.closed) return;
    const rec = this.deps.link.takeoverOf(server);
    if (rec && rec.active && !rec.drill && rec.failoverServer !== this.options.self) {
      this.detector.released(server);
      return;
    }
    if (this.detector.status(server) !== 'failed') {
      this.detector.released(server);
      return;
    }
    await this.takeOver(server, false, this.evidence.get(server) ?? 'failed');
  }

  // ---------------------------------------------------------------- takeover

  private nextEpoch(): number {
    const seen = [this.log.maxEpoch(this.options.group), this.deps.link.epoch, ...this.deps.link.peerStates().map((s) => s.epoch)];
    for (const w of this.options.watched) seen.push(this.deps.link.takeoverOf(w.server)?.epoch ?? 0);
    return Math.max(...seen) + 1;
  }

  private takeoverOptions(entry: FailoverEntry): TakeoverOptions {
    const o = this.options;
    return takeoverOptionsFor(entry, { self: o.self, group: o.group, storageRoot: o.storageRoot, sourceLogin: o.sourceLogin ?? null });
  }

  private publishRecord(entry: FailoverEntry, active: boolean): void {
    this.deps.link.publishRetained(
      topicFor(this.options.group, entry.failedServer, 'takeover'),
      takeoverRecordOf(entry, this.options.self, active, this.clock()),
    );
  }

  private async takeOver(server: string, drill: boolean, evidence: string): Promise<FailoverStarted> {
    if (this.takeovers.has(server)) throw new CommandError(`${this.options.self} already records in place of ${server}`, 'EBUSY');
    const cached = this.cache.channels(server);
    const epoch = drill ? Math.max(this.deps.link.epoch, this.log.maxEpoch(this.options.group)) : this.nextEpoch();
    // the log entry is committed before anything records: a crash from here on is resumed from it
    const entry = this.log.open({
      group: this.options.group,
      failedServer: server,
      failoverServer: this.options.self,
      channels: cached.map((c) => c.channel),
      epoch,
      startedAt: this.clock(),
      drill,
    });
    this.log.appendHistory(entry.id, `evidence: ${evidence}`, this.clock());
    this.switches.markedFailed.add(server);
    if (!drill) this.deps.link.setEpoch(epoch);
    this.publishRecord(entry, true);
    const takeover = new Takeover(this.takeoverOptions(entry), { ...this.deps, log: this.deps.log });
    this.takeovers.set(server, takeover);
    const taken = await takeover.start(cached, (ev) => this.emit('recorder', ev));
    const channels = taken.map((t) => ({ channel: t.channel, started: t.started, error: t.error }));
    const problems = channels.filter((c) => c.error).map((c) => `channel ${c.channel}: ${c.error}`);
    if (cached.length === 0) problems.push(`the settings cache holds nothing of ${server}: no channel to record`);
    if (problems.length) this.log.appendHistory(entry.id, `takeover problems: ${problems.join('; ')}`, this.clock());
    const done: FailoverStarted = { entry: this.log.get(entry.id)!, channels, evidence };
    this.notify({
      kind: 'failover-started',
      failedServer: server,
      failoverServer: this.options.self,
      entryId: entry.id,
      epoch,
      channels: entry.channels,
      startedAt: entry.startedAt,
      drill,
      text: `${this.options.self} records channels ${entry.channels.join(', ') || '(none)'} of ${server}${drill ? ' (drill)' : ''}`,
    });
    this.emit('failover', done);
    return done;
  }

  /** After a restart of this Node-RED: the takeovers of active entries go on recording. */
  private async resumeTakeovers(): Promise<void> {
    for (const e of this.log.active()) {
      if (e.failoverServer !== this.options.self || !this.watchedNames.has(e.failedServer)) continue;
      if (e.takeoverReleased) {
        // ended without a failback before the restart: not resumed; released by hand stays hands off until the server is back
        if (e.takeoverReleased.by === 'hand' && !e.drill) {
          this.switches.markedFailed.add(e.failedServer);
          this.detector.assume(e.failedServer);
          this.detector.standDown(e.failedServer);
        }
        continue;
      }
      if (e.state === 'failback-in-progress') {
        // the failback was cut by the restart: the entry goes back to active, the failback can run again
        this.log.finishFailback(e.id, 'failed', 'Node-RED restarted during the failback', this.clock());
      }
      if (this.takeovers.has(e.failedServer)) continue;
      const takeover = new Takeover(this.takeoverOptions(e), this.deps);
      this.takeovers.set(e.failedServer, takeover);
      this.switches.markedFailed.add(e.failedServer);
      if (!e.drill) {
        this.deps.link.setEpoch(Math.max(this.deps.link.epoch, e.epoch));
        this.detector.assume(e.failedServer);
      }
      this.publishRecord(e, true);
      const cached = this.cache.channels(e.failedServer).filter((c) => e.channels.includes(c.channel));
      await takeover.resume(cached, (ev) => this.emit('recorder', ev));
      this.log.appendHistory(e.id, `takeover resumed after ${this.options.self} restarted`, this.clock());
    }
  }

  private async release(server: string, reason: string, by: TakeoverRelease): Promise<void> {
    const t = this.takeovers.get(server);
    if (!t) return;
    await t.stop().catch((err) => this.deps.log.warn(`release of ${server}: ${errorText(err)}`));
    this.takeovers.delete(server);
    const entry = this.log.list({ state: 'active', failedServer: server }, 1)[0];
    if (entry) {
      this.log.markTakeoverReleased(entry.id, by, reason, this.clock());
      this.publishRecord(entry, false);
    }
    this.emit('released', { server, reason, entry });
  }

  // ---------------------------------------------------------------- failback

  private context(): FailbackContext {
    return {
      log: this.log,
      actingFor: (s) => this.takeovers.get(s)?.acting() ?? false,
      isMarkedFailed: (s) => this.switches.markedFailed.has(s),
      failoverEnabled: () => this.switches.isEnabled(),
      maintenance: (s) => this.switches.inMaintenance(s),
      clock: this.clock,
    };
  }

  /** The five checks only (nothing changes): the entry, or FailbackRefused. */
  check(entryId: number): FailoverEntry {
    return checkFailback(this.context(), entryId);
  }

  /**
   * Fail back one entry (manual), or the newest eligible entry of a restored
   * server (automatic). Refusals throw FailbackRefused (nothing changed).
   */
  async failback(entryId: number, how: 'manual' | 'drill' = 'manual', origin = 'manual'): Promise<FailbackDone> {
    const entry = this.log.get(entryId);
    const server = entry?.failedServer ?? `#${entryId}`;
    return this.serial(server, () => this.doFailback(entryId, how, [], origin));
  }

  /** Automatic failback of a restored server; resolves with what was done or why not. */
  async autoFailback(server: string, origin = 'automatic'): Promise<FailbackDone | { refused: string }> {
    return this.serial(server, async () => {
      if (!this.switches.isEnabled()) return { refused: `No automatic failback for ${server}: failover is disabled for this site.` };
      const pick = pickAutomaticFailback(this.context(), server);
      if ('refused' in pick) return pick;
      if (pick.entry.failoverServer !== this.options.self)
        return { refused: `No automatic failback for ${server} here: ${pick.entry.failoverServer} recorded in its place.` };
      return this.doFailback(pick.entry.id, 'automatic', pick.others, origin);
    });
  }

  private async doFailback(entryId: number, how: FailbackDone['how'], others: FailoverEntry[], origin: string): Promise<FailbackDone> {
    const startedAt = this.clock();
    try {
      // the checks first: a refusal changes nothing, not even the history
      checkFailback(this.context(), entryId);
      this.log.appendHistory(entryId, `failback requested (${how}, by ${origin})`, startedAt);
      const { entry, materialCopy } = await runFailback(this.context(), entryId, {
        giveBack: (e) => this.giveBack(e),
        releaseTakeover: async (e) => {
          const t = this.takeovers.get(e.failedServer);
          if (t) await t.stop();
          this.takeovers.delete(e.failedServer);
          this.detector.released(e.failedServer);
          this.switches.markedFailed.delete(e.failedServer);
          this.publishRecord(e, false);
        },
        notify: async (e) => {
          this.notify({
            kind: 'failback-performed',
            failedServer: e.failedServer,
            failoverServer: e.failoverServer,
            entryId: e.id,
            epoch: e.epoch,
            channels: e.channels,
            startedAt: e.startedAt,
            endedAt: e.endedAt ?? undefined,
            drill: e.drill,
            text: `${e.failedServer} records again; ${e.failoverServer} is a failover server again${e.drill ? ' (drill)' : ''}`,
          });
        },
      });
      const finalized = how === 'automatic' ? finalizeOthers(this.context(), others) : [];
      const endedAt = this.clock();
      const done: FailbackDone = { entry, materialCopy, others: finalized, how, origin, startedAt, endedAt, durationMs: endedAt - startedAt };
      this.emit('failback', done);
      return done;
    } catch (err) {
      if (!(err instanceof FailbackRefused)) {
        const e = this.log.get(entryId);
        if (e) {
          this.notify({ kind: 'failback-failed', failedServer: e.failedServer, failoverServer: e.failoverServer, entryId, text: errorText(err) });
        }
      }
      this.emit('failback-failed', { entryId, error: errorText(err), check: err instanceof FailbackRefused ? err.check : null });
      throw err;
    }
  }

  private async giveBack(e: FailoverEntry): Promise<void> {
    const t = this.takeovers.get(e.failedServer);
    const channels = t ? t.recording() : [];
    const request = {
      v: LINK_VERSION,
      failedServer: e.failedServer,
      failoverServer: this.options.self,
      entryId: e.id,
      epoch: e.epoch,
      drill: e.drill,
      channels,
      ts: this.clock(),
    };
    const ack = await this.handbacks.ask(
      request,
      (m) => this.deps.link.publish(topicFor(this.options.group, e.failedServer, 'handback'), m),
      this.options.handbackTimeoutMs,
    );
    if (!ack.ok) throw new Error(`${e.failedServer} could not take its channels back: ${ack.detail}`);
    this.log.appendHistory(e.id, `${e.failedServer} confirmed: ${ack.detail}`, this.clock());
    // both record for a moment, so the handover leaves no gap
    if (!e.drill && ack.started > 0 && this.options.overlapMs > 0) await new Promise((r) => setTimeout(r, this.options.overlapMs));
  }

  // ---------------------------------------------------------------- commands

  /** A drill: the whole failover and failback of a healthy server, which keeps recording. */
  async drill(server: string, durationMs: number): Promise<{ started: FailoverStarted; done: FailbackDone }> {
    if (!this.watchedNames.has(server))
      throw new CommandError(`${server} is not watched by ${this.options.self}; watched: ${[...this.watchedNames].join(', ')}`);
    if (this.detector.status(server) === 'failed' || this.takeovers.has(server)) {
      throw new CommandError(`no drill for ${server}: it is failed or taken over now`, 'EBUSY');
    }
    if (!(durationMs >= 1000 && durationMs <= 3600000)) throw new CommandError('a drill lasts 1 s to 1 h (duration in seconds)');
    const started = await this.serial(server, () => this.takeOver(server, true, 'drill'));
    await new Promise((r) => setTimeout(r, durationMs));
    const done = await this.failback(started.entry.id, 'drill', 'drill');
    return { started, done };
  }

  setMaintenance(server: string, on: boolean): void {
    this.switches.setMaintenance(server, on);
  }

  /** Enable or disable failover for the site at run time (kept across restarts; the node's setting off wins). */
  setEnabled(on: boolean): void {
    this.switches.setEnabled(on);
  }

  isEnabled(): boolean {
    return this.switches.isEnabled();
  }

  /** Mark a server failed or OK by hand; written to the log entries of the server. */
  mark(server: string, failed: boolean): void {
    this.switches.mark(server, failed);
  }

  /**
   * Stop recording in place of a server without giving its channels back (the
   * operator takes it from here). Its log entry stays active: failback refuses it
   * (the failover server no longer records for it) until it is finalized by hand.
   */
  async releaseByHand(server: string): Promise<void> {
    if (!this.takeovers.has(server)) throw new CommandError(`${this.options.self} does not record in place of ${server}`, 'ENOENT');
    // the detector stands down first: a tick during the release must not take the server over again
    this.detector.standDown(server);
    await this.serial(server, () => this.release(server, 'released by hand', 'hand'));
  }

  inMaintenance(server: string): boolean {
    return this.switches.inMaintenance(server);
  }

  isMarkedFailed(server: string): boolean {
    return this.switches.isMarkedFailed(server);
  }

  actingFor(server: string): boolean {
    return this.takeovers.get(server)?.acting() ?? false;
  }

  takeoverOf(server: string): Takeover | undefined {
    return this.takeovers.get(server);
  }

  watched(): WatchedStatus[] {
    return this.options.watched.map((w) => ({
      server: w.server,
      status: this.detector.status(w.server),
      maintenance: this.switches.inMaintenance(w.server),
      takenOver: this.takeovers.has(w.server),
      markedFailed: this.switches.isMarkedFailed(w.server),
      state: this.deps.link.peerState(w.server) ?? null,
      lastHeartbeat: this.lastHeartbeat.get(w.server) ?? null,
      direct: this.witness.status(w.server),
    }));
  }

  isIsolated(): boolean {
    return this.detector.isIsolated();
  }

  // ---------------------------------------------------------------- helpers

  private notify(c: Omit<SystemChange, 'v' | 'group' | 'ts'>): void {
    const msg: SystemChange = { v: LINK_VERSION, group: this.options.group, ts: this.clock(), ...c };
    this.deps.link
      .publish(topicFor(this.options.group, this.options.self, 'system'), msg)
      .catch((err) => this.deps.log.warn(`system-change message not sent: ${errorText(err)}`));
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.deps.log.error(`failover watch: ${errorText(err)}`);
    }
  }
}
