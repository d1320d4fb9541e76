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
