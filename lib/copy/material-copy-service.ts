/**
 * Material copy between servers, as a material-copy node runs it on any server
 * of the group:
 *
 * - On the failover server, a failback's material-copy request for another
 *   server is handed to that server: published retained on
 *   `twinrec/<group>/<restored>/copy-request/<failover>/<entry>` (it waits on the
 *   broker if the server is away), and the copy states it reports back update
 *   the failover log entry (requested, running, done, failed).
 * - On the restored server, each request addressed to it becomes a task of its
 *   durable queue; the copier fetches from the failover server's peer storage
 *   API, and the task's state is published retained on
 *   `twinrec/<group>/<failover>/copy-state/<entry>`.
 *
 * No Node-RED import.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { ValidateFunction } from 'ajv';
import { Catalogue } from '../store/catalogue';
import { CopyQueue, CopyTask } from '../store/copy-queue';
import { CommandError, errorText } from '../model/errors';
import type { MaterialCopyRequest } from './copy-request';
import type { FailoverLog, MaterialCopyState } from '../store/failover-log';
import { CopyRequestMessage, CopyStateMessage, LINK_VERSION, topicFor, validateCopyRequest, validateCopyState } from '../link/schemas';
import { NAME_PATTERN } from '../model/names';
import { CopyProgress, CopySource, MaterialCopier } from './material-copy';

export interface CopyLink {
  subscribe(pattern: string, validate: ValidateFunction, handler: (topic: string, payload: unknown) => void): () => void;
  publishRetained(topic: string, payload: unknown | null): void;
}

export interface MaterialCopyServiceOptions {
  group: string;
  serverId: string;
  storageRoot: string;
  /** Where the copy queue lives (e.g. <userDir>/twinrec). */
  stateDir: string;
  retryMinMs?: number;
  retryMaxMs?: number;
  giveUpAfterMs?: number;
  synchronous?: 'NORMAL' | 'FULL';
}

export interface MaterialCopyServiceDeps {
  link: CopyLink;
  catalogue: Catalogue;
  /** The peer storage API of a failover server; throws (code EUNAVAILABLE) when it is not known yet. */
  source(failoverServer: string): CopySource;
  limiter?: { take(bytes: number): Promise<void> };
  /** The failover log of this server, when it is a failover server (its failover-watch). */
  failoverLog?(): FailoverLog | undefined;
  log: { info(m: string): void; warn(m: string): void };
  clock?: () => number;
}

const NAME = new RegExp(NAME_PATTERN);

/** Check a material-copy request (the failback node's second output); throws a CommandError that says what is wrong. */
export function parseCopyRequest(p: unknown): MaterialCopyRequest {
  const r = p as Partial<MaterialCopyRequest> | null;
  const usage = 'expected the material-copy request of a failback node: {failedServer, failoverServer, channels, from, to, entryId}';
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw new CommandError(`Material copy refused: msg.payload is not an object; ${usage}`);
  for (const k of ['failedServer', 'failoverServer'] as const) {
    if (typeof r[k] !== 'string' || !NAME.test(r[k]!)) throw new CommandError(`Material copy refused: ${k} must be a server id; ${usage}`);
  }
  if (!Number.isInteger(r.entryId) || r.entryId! < 1)
    throw new CommandError(`Material copy refused: entryId must be the failover log entry (a whole number from 1); ${usage}`);
  if (!Array.isArray(r.channels) || r.channels.length === 0 || !r.channels.every((c) => Number.isInteger(c) && c >= 1 && c <= 999)) {
    throw new CommandError(`Material copy refused: channels must list the channels to copy (1 to 999); ${usage}`);
  }
  if (!Number.isInteger(r.from) || !Number.isInteger(r.to) || r.from! < 0 || r.to! <= r.from!) {
    throw new CommandError(`Material copy refused: from and to must be the failover period in UTC ms, from before to; ${usage}`);
  }
  return { failedServer: r.failedServer!, failoverServer: r.failoverServer!, entryId: r.entryId!, channels: [...r.channels], from: r.from!, to: r.to! };
}

export class MaterialCopyService extends EventEmitter {
  readonly queue: CopyQueue;
  readonly copier: MaterialCopier;
  private unsubs: (() => void)[] = [];
  private lastLogged = new Map<number, MaterialCopyState>();

  constructor(
    readonly options: MaterialCopyServiceOptions,
    private readonly deps: MaterialCopyServiceDeps,
  ) {
    super();
    this.queue = new CopyQueue(path.join(options.stateDir, 'copy-queue.sqlite'), deps.clock, { synchronous: options.synchronous });
    this.copier = new MaterialCopier(this.queue, deps.catalogue, {
      serverId: options.serverId,
      storageRoot: options.storageRoot,
      source: (s) => deps.source(s),
      limiter: deps.limiter,
      retryMinMs: options.retryMinMs,
      retryMaxMs: options.retryMaxMs,
      giveUpAfterMs: options.giveUpAfterMs,
      clock: deps.clock,
      log: deps.log,
    });
    this.copier.on('progress', (p: CopyProgress) => this.emit('progress', p));
    this.copier.on('started', (t: CopyTask) => this.report(t));
    this.copier.on('done', (t: CopyTask) => {
      this.report(t);
      this.emit('done', t);
    });
    this.copier.on('failed', (t: CopyTask) => {
      this.report(t);
      this.emit('failed', t);
    });
  }

  start(): void {
    const { group, serverId } = this.options;
    // requests addressed to this server (it is the restored server)
    this.unsubs.push(
      this.deps.link.subscribe(topicFor(group, serverId, 'copy-request', '+', '+'), validateCopyRequest, (topic, p) => {
        if (p === null) return;
        const m = p as CopyRequestMessage;
        const parts = topic.split('/');
        if (m.failedServer !== serverId || parts[4] !== m.failoverServer || Number(parts[5]) !== m.entryId) return;
        try {
          let t = this.copier.request({
            entryId: m.entryId,
            failedServer: m.failedServer,
            failoverServer: m.failoverServer,
            channels: m.channels,
            from: m.from,
            to: m.to,
          });
          // a request sent again after the task failed ("Start material copying" on the failover server) starts it again;
          // the same retained request delivered again at a reconnect is older than the failure and only gets the state
          if (t.state === 'failed' && m.ts > t.updatedAt) t = this.copier.retry(t.id);
          else if (t.state === 'done' || t.state === 'failed') this.report(t); // answer a repeated request with what is known
        } catch (err) {
          this.deps.log.warn(`material copy request of ${m.failoverServer} (entry ${m.entryId}) refused: ${errorText(err)}`);
        }
      }),
      // states reported to this server (it is the failover server)
      this.deps.link.subscribe(topicFor(group, serverId, 'copy-state', '+'), validateCopyState, (_topic, p) => {
        if (p === null) return;
        const s = p as CopyStateMessage;
        this.onState(s);
      }),
    );
    this.copier.kick(); // tasks left running or queued when this server stopped
  }

  /** A failback's request: copy here, or hand it to the restored server. */
  request(r: MaterialCopyRequest): { forwarded: boolean; task: CopyTask | null } {
    const { serverId, group } = this.options;
    if (r.failedServer === serverId) return { forwarded: false, task: this.copier.request(r) };
    if (r.failoverServer !== serverId) {
      throw new CommandError(
        `Material copy refused: this server (${serverId}) is neither the restored server ${r.failedServer} nor the failover server ${r.failoverServer} of that request`,
      );
    }
    const m: CopyRequestMessage = { v: LINK_VERSION, ...r, ts: (this.deps.clock ?? Date.now)() };
    this.deps.link.publishRetained(topicFor(group, r.failedServer, 'copy-request', serverId, r.entryId), m);
    this.setLogState(r.entryId, 'requested');
    return { forwarded: true, task: null };
  }

  retry(taskId: number): CopyTask {
    return this.copier.retry(taskId);
  }

  tasks(limit = 100): (CopyTask & { progress: ReturnType<CopyQueue['progress']> })[] {
    return this.queue.list(limit).map((t) => ({ ...t, progress: this.queue.progress(t.id) }));
  }

  private report(t: CopyTask): void {
    const m: CopyStateMessage = {
      v: LINK_VERSION,
      entryId: t.entryId,
      server: this.options.serverId,
      taskId: t.id,
      state: t.state,
      bytesDone: t.bytesDone,
      bytesTotal: t.bytesTotal,
      segmentsCopied: t.segmentsCopied,
      segmentsSkipped: t.segmentsSkipped,
      eventsCopied: t.eventsCopied,
      error: t.lastError ? t.lastError.slice(0, 2000) : null,
      ts: (this.deps.clock ?? Date.now)(),
    };
    this.deps.link.publishRetained(topicFor(this.options.group, t.failoverServer, 'copy-state', t.entryId), m);
  }

  private onState(s: CopyStateMessage): void {
    const state: MaterialCopyState = s.state === 'queued' ? 'requested' : s.state;
    this.setLogState(s.entryId, state);
    this.emit('state', s);
    // done: the request has been served; it no longer needs to wait on the broker
    if (s.state === 'done') this.deps.link.publishRetained(topicFor(this.options.group, s.server, 'copy-request', this.options.serverId, s.entryId), null);
  }

  private setLogState(entryId: number, state: MaterialCopyState): void {
    const log = this.deps.failoverLog?.();
    if (!log) return;
    try {
      const e = log.get(entryId);
      if (!e || e.materialCopy === state || this.lastLogged.get(entryId) === state) return;
      if (e.materialCopy === 'done' && state !== 'done') return; // never back from done
      log.setMaterialCopy(entryId, state);
      this.lastLogged.set(entryId, state);
    } catch (err) {
      this.deps.log.warn(`failover log entry ${entryId}: material copy state not written: ${errorText(err)}`);
    }
  }

  async stop(): Promise<void> {
    for (const u of this.unsubs) u();
    this.unsubs = [];
    await this.copier.stop();
    this.queue.close();
  }
}
