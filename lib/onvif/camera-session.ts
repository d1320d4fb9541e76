/**
 * One connection of lib/onvif/camera.ts to its camera (a Session): the small
 * part of the onvif library it uses, letting a session go, and the failures
 * of a connection, classified so lastError says what to do. No Node-RED import.
 */
import { EventEmitter } from 'node:events';
import { errorText } from '../model/errors';
import { ClosableAgent, fmtSeconds, LibCallback, LibClientOptions, LibError, LibSession, NETWORK_CODES as SOCKET_CODES, shorten } from './shared';

// ---------------------------------------------------------------------------
// The small part of the onvif library we use (the package's own typings do
// not describe the fields we rely on: timeShift, media2Support, uri).

export interface CamLike extends EventEmitter {
  timeShift?: number;
  media2Support?: boolean;
  uri?: Record<string, unknown>;
  getSystemDateAndTime(cb: LibCallback<Date>): void;
  getServices(includeCapability: boolean, cb: LibCallback): void;
  getCapabilities(cb: LibCallback): void;
  getProfiles(cb: LibCallback<unknown[]>): void;
  getDeviceInformation(cb: LibCallback): void;
  getStreamUri(opts: { protocol?: string; stream?: string; profileToken?: string }, cb: LibCallback<{ uri?: unknown }>): void;
}

export interface OnvifModule {
  Cam: new (opts: LibClientOptions) => CamLike;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const onvif: OnvifModule = require('onvif');

// ---------------------------------------------------------------------------
// Failures, classified so lastError says what to do.

export type FailureKind = 'network' | 'timeout' | 'auth' | 'clock' | 'protocol' | 'config' | 'other';

export class CameraFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
}

export interface Session extends LibSession {
  cam: CamLike;
  agent: ClosableAgent;
}

/** Settles what the session still has in flight, lets go of its Cam (which keeps an 'error' listener) and closes its sockets. */
export function releaseSession(s: Session): void {
  for (const abandon of [...s.pending]) abandon();
  try {
    s.cam.removeAllListeners();
    // The library may still emit after we let go; an 'error' without a listener would throw.
    s.cam.on('error', () => undefined);
  } catch {
    /* ignore */
  }
  try {
    s.agent.close();
  } catch {
    /* ignore */
  }
}

/** The camera client also counts a socket timeout as unreachable. */
const NETWORK_CODES = new Set([...SOCKET_CODES, 'ETIMEDOUT']);

/** What the classification says of the camera: its settings and what the connection learnt. */
export interface FailureContext {
  address: string;
  host: string;
  path: string;
  timeoutMs: number;
  clockSkewMs: number | undefined;
  credentialHint: string | undefined;
}

export function classifyFailure(err: unknown, s: Session | undefined, camera: FailureContext): CameraFailure {
  if (err instanceof CameraFailure) return err;
  const what = err instanceof LibError ? err.what : 'request';
  const cause = err instanceof LibError ? err.original : err;
  const xml = err instanceof LibError ? (err.raw ?? '') : '';
  const text = errorText(cause);
  const code = String((cause as { code?: unknown } | undefined)?.code ?? '');
  const status = s?.lastStatus;
  const hay = `${text} ${xml}`.toLowerCase();
  const skewNote =
    camera.clockSkewMs !== undefined && Math.abs(camera.clockSkewMs) > 5000
      ? ` (the camera clock differs from this host by ${Math.round(camera.clockSkewMs / 1000)} s; check the camera's time/NTP settings)`
      : '';

  if (code === 'ETIMEDOUT' || /network timeout|no answer to/i.test(text)) {
    return new CameraFailure(
      'timeout',
      `Camera ${camera.address} did not answer ${what} within ${fmtSeconds(camera.timeoutMs)}; check that it is powered and reachable`,
    );
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new CameraFailure('network', `Camera host name "${camera.host}" cannot be resolved (${code}); check the address`);
  }
  if (NETWORK_CODES.has(code) || /socket hang up|econnrefused|econnreset/i.test(text)) {
    const syscall = String((cause as { syscall?: unknown } | undefined)?.syscall ?? '');
    return new CameraFailure('network', `Camera ${camera.address} does not answer (${syscall ? syscall + ' ' : ''}${code || text})`);
  }
  if (/time ?check|timestamp|message ?expired|messageexpired|clock/i.test(text)) {
    return new CameraFailure(
      'clock',
      `Camera ${camera.address} rejected the request time (WS-Security clock check: ${shorten(text)})${skewNote || "; check the camera's time/NTP settings"}`,
    );
  }
  if (
    status === 401 ||
    /not ?authori[sz]ed|unauthori[sz]ed|authentication failed|authorization required|access denied|invalidsecurity|failedauthentication/.test(hay)
  ) {
    return new CameraFailure(
      'auth',
      `Camera ${camera.address} refused the credentials (${shorten(text)}); check the username and password${skewNote}${camera.credentialHint ? `; note: ${camera.credentialHint}` : ''}`,
    );
  }
  if (
    /wrong onvif soap response|non-whitespace before first tag|unexpected|invalid character/i.test(text) ||
    (status && status >= 400 && !/soap fault/i.test(text))
  ) {
    return new CameraFailure(
      'protocol',
      `Camera ${camera.address} answered ${what}${status ? ` with HTTP ${status}` : ''} but not as an ONVIF device at path ${camera.path}; check the port and the device service path`,
    );
  }
  if (cause instanceof TypeError || cause instanceof RangeError) {
    // The library reading an answer it did not expect (missing elements).
    return new CameraFailure('protocol', `Camera ${camera.address} sent an answer to ${what} that could not be read (${shorten(text)})`);
  }
  if (/soap fault/i.test(text)) {
    return new CameraFailure('protocol', `Camera ${camera.address} refused ${what}: ${shorten(text)}`);
  }
  return new CameraFailure('other', `Camera ${camera.address}: ${what} failed: ${shorten(text)}`);
}
