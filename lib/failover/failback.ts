/**
 * Failback: giving a restored server its recorders back from the failover server
 * that recorded in its place. The preconditions live here and nowhere else; the
 * failback node only calls this module.
 *
 * Preconditions, checked in this order, each refusing with its own reason and
 * changing nothing (Mirasys failback process):
 *   1. entry        a valid failover log entry in the right state (active)
 *   2. acting       the failover server still records in place of the failed server
 *   3. still-failed the failed server is still marked failed by the watcher
 *   4. enabled      failover is enabled for the site
 *   5. not-running  no failback already running for that recorder
 *
 * Pure logic: all I/O goes through the injected context and steps.
 */
import { errorText } from '../model/errors';
import { FailoverEntry, FailoverLog } from '../store/failover-log';
import { copyRequestOf, MaterialCopyRequest } from '../copy/copy-request';

export interface FailbackContext {
  log: FailoverLog;
  /** Does this failover server still record in place of the failed server (its takeover recorders running)? */
  actingFor(failedServer: string): boolean;
  /** Is the failed server still marked failed (by the watcher)? */
  isMarkedFailed(failedServer: string): boolean;
  failoverEnabled(): boolean;
  maintenance(server: string): boolean;
  clock(): number;
}

export type FailbackCheck = 'entry' | 'acting' | 'still-failed' | 'enabled' | 'not-running';

/** The order in which the preconditions are checked. */
export const FAILBACK_CHECKS: readonly FailbackCheck[] = ['entry', 'acting', 'still-failed', 'enabled', 'not-running'];

/** A failback refused by one of its preconditions; nothing was changed. */
export class FailbackRefused extends Error {
  readonly check: FailbackCheck;
  readonly entryId: number;
  readonly code = 'EREFUSED';
  constructor(check: FailbackCheck, entryId: number, message: string) {
    super(message);
    this.name = 'FailbackRefused';
    this.check = check;
    this.entryId = entryId;
  }
}

/** A failback step that failed; the entry is back to active with the reason kept. */
export class FailbackStepFailed extends Error {
  readonly step: FailbackStep;
  readonly entryId: number;
  constructor(step: FailbackStep, entryId: number, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'FailbackStepFailed';
    this.step = step;
    this.entryId = entryId;
  }
}

export type FailbackStep = 'giveBack' | 'releaseTakeover' | 'notify';

export interface FailbackSteps {
  /** Give the failed recorder's settings (from the cache) back to the restored server and let it record. */
  giveBack(entry: FailoverEntry): Promise<void>;
  /** Stop the takeover recorders: the failover server acts as failover again, the recorder is OK. */
  releaseTakeover(entry: FailoverEntry): Promise<void>;
  /** Tell the clients that the system changed. */
  notify(entry: FailoverEntry): Promise<void>;
}

function describe(e: FailoverEntry): string {
  return `failover log entry ${e.id} (${e.failedServer} recorded on ${e.failoverServer})`;
}

/**
 * The five preconditions in order. Returns the entry when all pass; throws
 * FailbackRefused with the first failing check otherwise. Changes nothing.
 */
export function checkFailback(ctx: FailbackContext, entryId: number): FailoverEntry {
  // 1. a valid failover log entry in the right state
  const entry = ctx.log.get(entryId);
  if (!entry) {
    throw new FailbackRefused('entry', entryId, `Failback refused: there is no failover log entry ${entryId}; pick an active entry from the failover log.`);
  }
  if (entry.state !== 'active') {
    const why =
      entry.state === 'finalized'
        ? `it is finalized (failback ${entry.failbackResult === 'none' ? 'not needed' : entry.failbackResult}); nothing is left to give back`
        : 'a failback is already in progress for it; wait for it to finish';
    throw new FailbackRefused('entry', entryId, `Failback refused: ${describe(entry)} is ${entry.state}: ${why}.`);
  }
  // 2. the failover server still acts as recorder for it
  if (!ctx.actingFor(entry.failedServer)) {
    throw new FailbackRefused(
      'acting',
      entryId,
      `Failback refused for ${describe(entry)}: ${entry.failoverServer} no longer records in place of ${entry.failedServer}; ` +
        'check its takeover recorders, or finalize the entry by hand if the takeover was ended another way.',
    );
  }
  // 3. the failed server is still marked failed
  if (!ctx.isMarkedFailed(entry.failedServer)) {
    throw new FailbackRefused(
      'still-failed',
      entryId,
      `Failback refused for ${describe(entry)}: ${entry.failedServer} is no longer marked failed by the watcher; ` +
        'check that it is not recording on its own before giving its channels back.',
    );
  }
  // 4. failover is enabled for the site
  if (!ctx.failoverEnabled()) {
    throw new FailbackRefused(
      'enabled',
      entryId,
      `Failback refused for ${describe(entry)}: failover is disabled for this site; enable it in the failover settings first.`,
    );
  }
  // 5. no failback already running for that recorder
  const running = ctx.log.list({ state: 'failback-in-progress', failedServer: entry.failedServer });
  if (running.length > 0) {
    throw new FailbackRefused(
      'not-running',
      entryId,
      `Failback refused for ${describe(entry)}: a failback of ${entry.failedServer} is already running ` +
        `(entry ${running.map((r) => r.id).join(', ')}); wait for it to finish.`,
    );
  }
  return entry;
}

/**
 * The entry automatic failback uses for a restored server: the newest eligible
 * one (active: failover performed, failback neither done nor in progress). The
 * other eligible entries are returned to be marked done by the newer one.
 * Refused when the failed server or its failover server is in maintenance mode,
 * when a failback of the server is already running, or when there is no entry.
 */
export function pickAutomaticFailback(ctx: FailbackContext, failedServer: string): { entry: FailoverEntry; others: FailoverEntry[] } | { refused: string } {
  if (ctx.maintenance(failedServer)) {
    return { refused: `No automatic failback for ${failedServer}: it is in maintenance mode; end maintenance mode or fail back by hand.` };
  }
  const running = ctx.log.list({ state: 'failback-in-progress', failedServer });
  if (running.length > 0) {
    return { refused: `No automatic failback for ${failedServer}: a failback is already running (entry ${running.map((r) => r.id).join(', ')}).` };
  }
  const eligible = ctx.log.list({ state: 'active', failedServer });
  if (eligible.length === 0) {
    return { refused: `No automatic failback for ${failedServer}: the failover log has no active entry for it.` };
  }
  const [entry, ...others] = eligible;
  if (ctx.maintenance(entry.failoverServer)) {
    return {
      refused: `No automatic failback for ${failedServer}: its failover server ${entry.failoverServer} is in maintenance mode; end maintenance mode or fail back by hand.`,
    };
  }
  return { entry, others };
}

/** Mark the other eligible entries of an automatic failback as done by the newer one (failback and material copy done). */
export function finalizeOthers(ctx: FailbackContext, others: FailoverEntry[]): FailoverEntry[] {
  if (others.length === 0) return [];
  return ctx.log.markDoneByNewer(
    others.map((e) => e.id),
    ctx.clock(),
  );
}

/**
 * Run a failback: the preconditions, then log "failback started", give the
 * recorders back, release the takeover, log "failback performed", request the
 * material copy, notify. A failing giveBack or releaseTakeover puts the entry
 * back to active with failback failed and the reason, and throws
 * FailbackStepFailed naming the step. A failing notify is written to the
 * entry's history and does not undo the failback (the material copy request is
 * still returned, so nothing recorded during the failover is left behind).
 */
export async function runFailback(
  ctx: FailbackContext,
  entryId: number,
  steps: FailbackSteps,
): Promise<{ entry: FailoverEntry; materialCopy: MaterialCopyRequest }> {
  checkFailback(ctx, entryId);
  let entry = ctx.log.beginFailback(entryId, ctx.clock());

  for (const step of ['giveBack', 'releaseTakeover'] as const) {
    try {
      await steps[step](entry);
    } catch (err) {
      const reason = `${step}: ${errorText(err)}`;
      ctx.log.finishFailback(entryId, 'failed', reason, ctx.clock());
      throw new FailbackStepFailed(step, entryId, `Failback of ${describe(entry)} failed at step ${step}: ${errorText(err)}`, err);
    }
  }

  entry = ctx.log.transaction(() => {
    const at = ctx.clock();
    ctx.log.finishFailback(entryId, 'ok', null, at);
    return ctx.log.setMaterialCopy(entryId, 'requested', at);
  });

  try {
    await steps.notify(entry);
  } catch (err) {
    ctx.log.appendHistory(entryId, `notify failed: ${errorText(err)}`, ctx.clock());
    entry = ctx.log.get(entryId)!;
  }

  return { entry, materialCopy: copyRequestOf(entry) };
}
