/**
 * Config fields that may come from an environment variable (typedInput with the
 * types str and env, the type in <field>Type), so one flow file serves every
 * server of a site and each host sets its own SERVER_ID, storage and broker.
 */
import type { Node, NodeAPI } from 'node-red';

/**
 * The values of the named fields, env ones read now. Throws a sentence naming
 * the variable when one is not set (an empty value would otherwise be reported
 * as a missing field, which the user did fill in).
 */
export function resolveEnvFields<T extends object>(RED: NodeAPI, node: Node, def: T, keys: (keyof T & string)[]): T {
  const out: Record<string, unknown> = { ...(def as unknown as Record<string, unknown>) };
  const d = def as unknown as Record<string, unknown>;
  for (const k of keys) {
    if (d[`${k}Type`] !== 'env') continue;
    const name = String(d[k] ?? '').trim();
    const v = name ? RED.util.evaluateNodeProperty(name, 'env', node, {} as never) : undefined;
    if (v === undefined || v === null || String(v).trim() === '')
      throw new Error(`${k} comes from the environment variable "${name}", which is not set on this host`);
    out[k] = String(v).trim();
  }
  return out as T;
}
