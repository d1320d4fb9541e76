/**
 * What the editor's "Redundancy" sidebar shows, built from the live parts of
 * this Node-RED: the servers of each group (as the MQTT link heard them), the
 * failover log of each failover server, the material-copy tasks and the
 * transfer queue. Plus the change notifier that tells the editor, at most a few
 * times a second, that something changed.
 *
 * The inputs are the real objects (ServerLink, FailoverController,
 * MaterialCopyService, TransferManager), typed here by the few members read, so
 * this module has no Node-RED import and no dependency on how nodes hold them.
 */
import type { ChannelProgress, CopyTask } from '../store/copy-queue';
import type { WatchedStatus } from './controller';
import type { FailoverEntry } from '../store/failover-log';
import type { ServerState, TakeoverRecord } from '../link/schemas';
import type { Transfer } from '../store/transfer-queue';

// ------------------------------------------------------------------ inputs

/** A redundancy-server config node of this Node-RED, as the overview reads it. */
export interface LocalServerSource {
  serverId: string | null;
  group: string | null;
  role: string | null;
  configError: string | null;
  link: {
    state: string;
    lastError: string | null;
    epoch: number;
    peerStates(): ServerState[];
    takeoverOf(server: string): TakeoverRecord | undefined;
  } | null;
}

export interface FailoverSource {
  options: { self: string; group: string };
  isEnabled(): boolean;
  isIsolated(): boolean;
  watched(): WatchedStatus[];
  log: { active(): FailoverEntry[]; finalized(limit?: number): FailoverEntry[] };
}

export interface CopyServiceSource {
  options: { serverId: string; group: string };
  tasks(limit?: number): (CopyTask & { progress: ChannelProgress[] })[];
}

export interface TransferManagerSource {
  options: { serverId: string; mainServer: string };
  isPaused: boolean;
  peer: { state: 'ok' | 'waiting'; detail: string | null };
  currentClip: string | null;
  queue: { depth(): number; list(limit?: number): Transfer[] };
}

export interface OverviewSources {
  servers: LocalServerSource[];
  controllers: FailoverSource[];
  copies: CopyServiceSource[];
  transfers: TransferManagerSource[];
  now?: number;
  /** Finalized entries per failover server (newest first). */
  finalizedLimit?: number;
}

// ------------------------------------------------------------------ output

export interface LocalServerRow {
  serverId: string | null;
  group: string | null;
  role: string | null;
  /** The MQTT link: idle, connecting, connected, reconnecting, closed; 'none' without a broker. */
  link: string;
  linkError: string | null;
  epoch: number | null;
  configError: string | null;
}

export interface ServerRow {
  group: string;
  server: string;
  role: string | null;
  /** What the server last announced (its retained state or Last Will); 'unknown' when never heard. */
  state: 'online' | 'offline' | 'unknown';
  cause: string | null;
  epoch: number | null;
  since: number | null;
  lastHeard: number | null;
  /** A server of this Node-RED. */
  local: boolean;
  /** How each failover server of this Node-RED sees it. */
  watchedBy: {
    by: string;
    status: string;
    maintenance: boolean;
    takenOver: boolean;
    markedFailed: boolean;
    lastHeartbeat: number | null;
    /** The direct path (liveness or TCP): how, and whether the server answers it. */
    direct: { how: string; answering: boolean | null; rttMs: number | null };
  }[];
  /** The active takeover of this server (who records in its place), from the group's takeover records. */
  takenOverBy: { server: string; epoch: number; since: number; drill: boolean; entryId: number } | null;
}

export interface CopyTaskRow {
  server: string;
  id: number;
  entryId: number;
  failedServer: string;
  failoverServer: string;
  channels: number[];
  from: number;
  to: number;
  state: CopyTask['state'];
  bytesDone: number;
  bytesTotal: number | null;
  percent: number | null;
  segmentsCopied: number;
  segmentsSkipped: number;
  eventsCopied: number;
  attempts: number;
  lastError: string | null;
  updatedAt: number;
  channelsDone: number;
}

export interface EntryRow extends FailoverEntry {
  /** The failover server whose log holds it (?server= for the admin routes). */
  logOf: string;
  /** "Start failback" makes sense: active, not a drill, no failback running. */
  canFailback: boolean;
  /** A material-copy task of this Node-RED for the entry (this is the restored server). */
  copyTask: CopyTaskRow | null;
  /** "Start material copying" makes sense, and why not when it does not. */
  canCopy: boolean;
  copyBlocked: CopyBlock | null;
}

export interface FailoverRow {
  self: string;
  group: string;
  enabled: boolean;
  isolated: boolean;
  active: EntryRow[];
  finalized: EntryRow[];
}

export interface TransferRow {
  server: string;
  main: string;
  paused: boolean;
  peer: { state: 'ok' | 'waiting'; detail: string | null };
  queued: number;
  current: (Transfer & { percent: number | null }) | null;
  counts: Record<string, number>;
  /** The latest clips that failed (at most 10). */
  failed: Transfer[];
  /** The latest clips done (at most 5). */
  recent: Transfer[];
}

export interface Overview {
  at: number;
  local: LocalServerRow[];
  servers: ServerRow[];
  failover: FailoverRow[];
  copies: { server: string; tasks: CopyTaskRow[] }[];
  transfers: TransferRow[];
}

const pct = (done: number, total: number | null): number | null => (total && total > 0 ? Math.min(100, Math.floor((100 * done) / total)) : null);

function taskRow(server: string, t: CopyTask & { progress?: ChannelProgress[] }): CopyTaskRow {
  return {
    server,
    id: t.id,
    entryId: t.entryId,
    failedServer: t.failedServer,
    failoverServer: t.failoverServer,
    channels: [...t.channels],
    from: t.from,
    to: t.to,
    state: t.state,
    bytesDone: t.bytesDone,
    bytesTotal: t.bytesTotal,
    percent: t.state === 'done' ? 100 : pct(t.bytesDone, t.bytesTotal),
    segmentsCopied: t.segmentsCopied,
    segmentsSkipped: t.segmentsSkipped,
    eventsCopied: t.eventsCopied,
    attempts: t.attempts,
    lastError: t.lastError,
    updatedAt: t.updatedAt,
    channelsDone: (t.progress ?? []).filter((p) => p.kind === 'events' && p.done).length,
  };
}

/** Why "Start material copying" does not apply to an entry (the editor says it in the user's words). */
export type CopyBlock = 'drill' | 'done' | 'running' | 'queued' | 'not-over' | 'done-by-newer' | 'no-copy-node';

/**
 * Whether "Start material copying" applies to an entry. A task of this
 * Node-RED for it (this is the restored server) can be started again unless it
 * is done or already queued/running; without one, the entry's period must be
 * over (finalized by its own failback) and its copy not done or under way.
 */
export function copyAction(e: FailoverEntry, task: CopyTaskRow | null): { canCopy: boolean; blocked: CopyBlock | null } {
  if (e.drill) return { canCopy: false, blocked: 'drill' };
  if (task) {
    if (task.state === 'done') return { canCopy: false, blocked: 'done' };
    if (task.state === 'running' || task.state === 'queued') return { canCopy: false, blocked: task.state };
    return { canCopy: true, blocked: null };
  }
  if (e.state !== 'finalized') return { canCopy: false, blocked: 'not-over' };
  if (e.failbackResult === 'done-by-newer') return { canCopy: false, blocked: 'done-by-newer' };
  if (e.materialCopy === 'done') return { canCopy: false, blocked: 'done' };
  if (e.materialCopy === 'running') return { canCopy: false, blocked: 'running' };
  return { canCopy: true, blocked: null };
}

function entryRow(logOf: string, e: FailoverEntry, tasks: CopyTaskRow[], copyServers: Set<string>): EntryRow {
  // newest task of this Node-RED for the entry (task ids grow)
  const task = tasks.filter((t) => t.entryId === e.id && t.failoverServer === e.failoverServer).sort((a, b) => b.id - a.id)[0] ?? null;
  let c = copyAction(e, task);
  if (c.canCopy && !task && !copyServers.has(logOf)) c = { canCopy: false, blocked: 'no-copy-node' };
  return {
    ...e,
    logOf,
    canFailback: e.state === 'active' && !e.drill,
    copyTask: task,
    canCopy: c.canCopy,
    copyBlocked: c.blocked,
  };
}

const ROLE_ORDER: Record<string, number> = { main: 0, backup: 1, failover: 2 };

/** Everything the sidebar shows, from the live parts of this Node-RED. Never throws for one broken part: that part is left out. */
export function buildOverview(src: OverviewSources): Overview {
  const now = src.now ?? Date.now();
  const local: LocalServerRow[] = src.servers.map((s) => ({
    serverId: s.serverId,
    group: s.group,
    role: s.role,
    link: s.link ? s.link.state : 'none',
    linkError: s.link && s.link.state !== 'connected' ? s.link.lastError : null,
    epoch: s.link ? s.link.epoch : null,
    configError: s.configError,
  }));

  const rows = new Map<string, ServerRow>();
  const row = (group: string, server: string): ServerRow => {
    const k = `${group}\u0000${server}`;
    let r = rows.get(k);
    if (!r) {
      r = {
        group,
        server,
        role: null,
        state: 'unknown',
        cause: null,
        epoch: null,
        since: null,
        lastHeard: null,
        local: false,
        watchedBy: [],
        takenOverBy: null,
      };
      rows.set(k, r);
    }
    return r;
  };
  for (const s of src.servers) {
    if (!s.group || !s.serverId) continue;
    const me = row(s.group, s.serverId);
    me.local = true;
    me.role = me.role ?? s.role;
    if (!s.link) continue;
    for (const st of s.link.peerStates()) {
      if (st.group !== s.group) continue;
      const r = row(st.group, st.server);
      if (r.lastHeard !== null && r.lastHeard > st.ts) continue; // another local link heard a newer state
      r.role = st.role;
      r.state = st.state;
      r.cause = st.cause ?? null;
      r.epoch = st.epoch;
      r.since = st.since;
      r.lastHeard = st.ts;
    }
    // this server itself, as its link has it now (its own retained state may be on its way)
    if (s.link.state === 'connected' && me.state === 'unknown') {
      me.state = 'online';
      me.epoch = s.link.epoch;
    }
  }

  const tasks: CopyTaskRow[] = [];
  const copies: Overview['copies'] = [];
  for (const c of src.copies) {
    try {
      const list = c.tasks(50).map((t) => taskRow(c.options.serverId, t));
      tasks.push(...list);
      copies.push({ server: c.options.serverId, tasks: list });
    } catch {
      /* a service closing under us: left out this time */
    }
  }

  const copyServers = new Set(copies.map((c) => c.server));
  const failover: FailoverRow[] = [];
  for (const c of src.controllers) {
    try {
      const watched = c.watched();
      for (const w of watched) {
        const r = row(c.options.group, w.server);
        r.watchedBy.push({
          by: c.options.self,
          status: w.status,
          maintenance: w.maintenance,
          takenOver: w.takenOver,
          markedFailed: w.markedFailed,
          lastHeartbeat: w.lastHeartbeat,
          direct: { how: w.direct.how, answering: w.direct.answering, rttMs: w.direct.rttMs },
        });
        if (w.state && (r.lastHeard === null || w.state.ts > r.lastHeard)) {
          r.role = w.state.role;
          r.state = w.state.state;
          r.cause = w.state.cause ?? null;
          r.epoch = w.state.epoch;
          r.since = w.state.since;
          r.lastHeard = w.state.ts;
        }
      }
      failover.push({
        self: c.options.self,
        group: c.options.group,
        enabled: c.isEnabled(),
        isolated: c.isIsolated(),
        active: c.log.active().map((e) => entryRow(c.options.self, e, tasks, copyServers)),
        finalized: c.log.finalized(src.finalizedLimit ?? 20).map((e) => entryRow(c.options.self, e, tasks, copyServers)),
      });
    } catch {
      /* a controller closing under us: left out this time */
    }
  }

  // who records in place of whom (the group's takeover records, heard by any local link)
  for (const s of src.servers) {
    if (!s.group || !s.link) continue;
    for (const r of rows.values()) {
      if (r.group !== s.group || r.takenOverBy) continue;
      const t = s.link.takeoverOf(r.server);
      if (t && t.active) r.takenOverBy = { server: t.failoverServer, epoch: t.epoch, since: t.since, drill: t.drill, entryId: t.entryId };
    }
  }

  const transfers: TransferRow[] = [];
  for (const m of src.transfers) {
    try {
      const list = m.queue.list(500);
      const counts: Record<string, number> = {};
      for (const t of list) counts[t.state] = (counts[t.state] ?? 0) + 1;
      const cur = m.currentClip ? (list.find((t) => t.clipId === m.currentClip) ?? null) : null;
      const byFinish = (a: Transfer, b: Transfer) => (b.finishedAt ?? b.updatedAt) - (a.finishedAt ?? a.updatedAt);
      transfers.push({
        server: m.options.serverId,
        main: m.options.mainServer,
        paused: m.isPaused,
        peer: { ...m.peer },
        queued: m.queue.depth(),
        current: cur ? { ...cur, percent: pct(cur.bytesDone, cur.bytesTotal) } : null,
        counts,
        failed: list
          .filter((t) => t.state === 'failed')
          .sort(byFinish)
          .slice(0, 10),
        recent: list
          .filter((t) => t.state === 'done')
          .sort(byFinish)
          .slice(0, 5),
      });
    } catch {
      /* a manager closing under us: left out this time */
    }
  }

  const servers = [...rows.values()].sort(
    (a, b) => a.group.localeCompare(b.group) || (ROLE_ORDER[a.role ?? ''] ?? 3) - (ROLE_ORDER[b.role ?? ''] ?? 3) || a.server.localeCompare(b.server),
  );
  return { at: now, local, servers, failover, copies, transfers };
}

// ------------------------------------------------------------------ change notices

export type ChangeReason =
  | 'deploy'
  | 'link'
  | 'peer'
  | 'epoch'
  | 'takeover'
  | 'failed'
  | 'failover'
  | 'released'
  | 'failback'
  | 'failback-failed'
  | 'restored'
  | 'isolated'
  | 'connected'
  | 'copy-progress'
  | 'copy-done'
  | 'copy-failed'
  | 'copy-state'
  | 'transfer-progress'
  | 'transfer-done'
  | 'transfer-failed'
  | 'transfer';

/** What goes to the editor: what kind of thing changed, not the data (the editor reads that through GET /twinrec/overview, which checks the user's permission). */
export interface ChangeNotice {
  seq: number;
  at: number;
  reasons: ChangeReason[];
  servers: string[];
}

export interface NotifierTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

/**
 * Coalesces change notes into notices, at most one per minGapMs: the first note
 * after a quiet spell goes out at once, the notes that follow within the gap go
 * out together when it has passed. A publish that throws is reported to onError
 * and never reaches the caller (an event listener of a node).
 */
export class ChangeNotifier {
  private seq = 0;
  private lastAt = -Infinity;
  private pending: { reasons: Set<ChangeReason>; servers: Set<string> } | null = null;
  private timer: unknown = null;
  private stopped = false;

  constructor(
    private readonly publish: (n: ChangeNotice) => void,
    private readonly opts: { minGapMs?: number; clock?: () => number; timers?: NotifierTimers; onError?: (err: unknown) => void } = {},
  ) {}

  private get gap(): number {
    return this.opts.minGapMs ?? 500;
  }
  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  note(reason: ChangeReason, server?: string | null): void {
    if (this.stopped) return;
    if (!this.pending) this.pending = { reasons: new Set(), servers: new Set() };
    this.pending.reasons.add(reason);
    if (server) this.pending.servers.add(server);
    if (this.timer !== null) return;
    this.due();
  }

  /** Publish what is pending when the gap has passed, else wait for the rest of it (a timer may fire a millisecond early). */
  private due(): void {
    const wait = this.lastAt + this.gap - this.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    const timers = this.opts.timers ?? {
      setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
      clearTimeout: (t: unknown) => clearTimeout(t as NodeJS.Timeout),
    };
    this.timer = timers.setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.due();
    }, Math.ceil(wait));
  }

  private flush(): void {
    const p = this.pending;
    this.pending = null;
    if (!p || this.stopped) return;
    this.lastAt = this.now();
    const n: ChangeNotice = { seq: ++this.seq, at: this.lastAt, reasons: [...p.reasons].sort(), servers: [...p.servers].sort() };
    try {
      this.publish(n);
    } catch (err) {
      try {
        this.opts.onError?.(err);
      } catch {
        /* never out of a listener */
      }
    }
  }

  /** Drop what is pending and publish nothing more. */
  stop(): void {
    this.stopped = true;
    this.pending = null;
    if (this.timer !== null) (this.opts.timers ?? { clearTimeout: (t: unknown) => clearTimeout(t as NodeJS.Timeout) }).clearTimeout(this.timer);
    this.timer = null;
  }
}

/** An event source (EventEmitter) as watchEvents uses it. */
export interface Emitter {
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  off(event: string, fn: (...args: unknown[]) => void): unknown;
}

/**
 * Note a change for each of the given events of an emitter; returns the
 * function that removes those listeners again. server(args) names the server
 * the event is about, when it can.
 */
export function watchEvents(
  em: Emitter,
  events: Partial<Record<string, ChangeReason>>,
  note: (r: ChangeReason, server?: string | null) => void,
  server?: (args: unknown[]) => string | null | undefined,
): () => void {
  const added: [string, (...args: unknown[]) => void][] = [];
  for (const [ev, reason] of Object.entries(events)) {
    if (!reason) continue;
    const fn = (...args: unknown[]) => {
      try {
        note(reason, server ? server(args) : null);
      } catch {
        /* a listener never throws into the emitter */
      }
    };
    em.on(ev, fn);
    added.push([ev, fn]);
  }
  return () => {
    for (const [ev, fn] of added) em.off(ev, fn);
  };
}

/** The events the sidebar follows, per source. */
export const CONTROLLER_EVENTS: Partial<Record<string, ChangeReason>> = {
  failed: 'failed',
  failover: 'failover',
  released: 'released',
  failback: 'failback',
  'failback-failed': 'failback-failed',
  restored: 'restored',
  isolated: 'isolated',
  connected: 'connected',
};
export const LINK_EVENTS: Partial<Record<string, ChangeReason>> = { peer: 'peer', state: 'link', epoch: 'epoch', takeover: 'takeover' };
export const COPY_EVENTS: Partial<Record<string, ChangeReason>> = { progress: 'copy-progress', done: 'copy-done', failed: 'copy-failed', state: 'copy-state' };
export const TRANSFER_EVENTS: Partial<Record<string, ChangeReason>> = {
  progress: 'transfer-progress',
  transferred: 'transfer-done',
  failed: 'transfer-failed',
  skipped: 'transfer',
  deleted: 'transfer',
  peer: 'transfer',
  paused: 'transfer',
  resumed: 'transfer',
};

/** The server an event of a source is about (its first argument's server, failedServer or entry), for the notice. */
export function eventServer(args: unknown[]): string | null {
  const a = args[0] as Record<string, unknown> | null | undefined;
  if (!a || typeof a !== 'object') return null;
  if (typeof a.server === 'string') return a.server;
  if (typeof a.failedServer === 'string') return a.failedServer;
  const e = a.entry as Record<string, unknown> | undefined;
  if (e && typeof e.failedServer === 'string') return e.failedServer;
  return null;
}
