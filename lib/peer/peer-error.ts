/**
 * The error of the peer API's client (lib/peer/client.ts, where its codes are
 * listed), and how a socket's failure or an answer too long becomes one.
 *
 * No Node-RED import.
 */
import http from 'node:http';
import { errorText } from '../model/errors';

export class PeerError extends Error {
  readonly code: string;
  readonly status?: number;
  constructor(message: string, code: string, status?: number) {
    super(message);
    this.name = 'PeerError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
  'EHOSTDOWN',
  'ENETDOWN',
]);

export function netError(err: unknown, where: string): PeerError {
  if (err instanceof PeerError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME_MISMATCH|ALTNAME/i.test(code) || /certificate/i.test(errorText(err))) {
    return new PeerError(`the peer at ${where} has a certificate this server does not trust: ${errorText(err)}`, 'ETLS');
  }
  if (NET_CODES.has(code) || /socket hang up|aborted/i.test(errorText(err))) {
    return new PeerError(`cannot reach the peer at ${where}: ${errorText(err)}`, 'ENET');
  }
  return new PeerError(`the peer at ${where} failed: ${errorText(err)}`, 'ENET');
}

export async function readAll(res: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new PeerError(`the peer's answer is larger than ${limit} bytes`, 'EPROTO');
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
