/** What the nodes that need the group's link ask of their redundancy-server. */
import type { ServerIdentity } from '../../lib/link/server-identity';
import type { ServerLink } from '../../lib/link/server-link';
import type { RedundancyServerNode } from './types';

type Translate = (key: string, sub?: Record<string, string | number>) => string;

/**
 * The server config of a node that works through the broker, with its identity
 * and link; throws the node's own sentence (errors.noServer, errors.badServer,
 * errors.noLink) when one is missing.
 */
export function linkedServer(server: RedundancyServerNode | null, t: Translate): { server: RedundancyServerNode; identity: ServerIdentity; link: ServerLink } {
  if (!server || !server.identity) throw new Error(server ? t('errors.badServer', { error: server.configError ?? '?' }) : t('errors.noServer'));
  if (!server.link) throw new Error(t('errors.noLink'));
  return { server, identity: server.identity, link: server.link };
}

/** Bytes as megabytes for a status text. */
export function megabytes(n: number): string {
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
}
