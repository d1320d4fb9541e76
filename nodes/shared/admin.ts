/** What the admin routes of the nodes share: which node of this Node-RED a request names, and the answer when there is none. */
import type { Request, Response } from 'express';

/** A per-server registry of nodes (failover controllers, copy services, transfer managers). */
export interface ByServer<T> {
  get(server: string): T | undefined;
  all(): T[];
}

/** The node a request names with ?server=, or the only one when it names none (undefined: none, or several and no name). */
export function pickByServer<T>(registry: ByServer<T>, req: Request): T | undefined {
  const q = typeof req.query.server === 'string' ? req.query.server : undefined;
  if (q !== undefined) return registry.get(q);
  const all = registry.all();
  return all.length === 1 ? all[0] : undefined;
}

/** 404 for a route whose node is not on this server. */
export function noNode(res: Response, type: string): void {
  res.status(404).json({ error: `no ${type} node on this server (or name one with ?server=)` });
}
