/**
 * What a material copy is asked to do: the failover period of one failover log
 * entry (who failed, who recorded in its place, which channels, from when to
 * when). Built here from a finalized entry, for the failback that ends the
 * period and for the operator who asks again later.
 */
import type { FailoverEntry } from '../store/failover-log';

export interface MaterialCopyRequest {
  failedServer: string;
  failoverServer: string;
  channels: number[];
  from: number;
  to: number;
  entryId: number;
}

/** The material-copy request of a finalized entry (the failover period, its channels). */
export function copyRequestOf(e: FailoverEntry): MaterialCopyRequest {
  if (e.state !== 'finalized' || e.endedAt === null)
    throw new Error(`failover log entry ${e.id} is ${e.state}: its period is not over, so there is nothing to copy yet`);
  return { failedServer: e.failedServer, failoverServer: e.failoverServer, channels: [...e.channels], from: e.startedAt, to: e.endedAt, entryId: e.id };
}
