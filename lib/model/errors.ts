/**
 * Errors a person can act on. A CommandError means the input was refused and
 * nothing was changed; the message is written for the operator who sent it.
 */
export class CommandError extends Error {
  readonly code: string;
  constructor(message: string, code = 'EINVAL') {
    super(message);
    this.name = 'CommandError';
    this.code = code;
  }
}

/** A URL without its password, for logs, statuses and sidecars. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z0-9+.-]+:\/\/)([^:@/]+):[^@/]*@/i, '$1$2:***@');
}

/** A URL without its user name and password, and whether it had a log in. */
export function stripLogin(url: string): { url: string; login: boolean } {
  const m = /^([a-z0-9+.-]+:\/\/)([^/@]*)@(.*)$/i.exec(url);
  if (!m) return { url, login: false };
  return { url: `${m[1]}${m[3]}`, login: true };
}

/** Message of anything thrown, without assuming it is an Error. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}
