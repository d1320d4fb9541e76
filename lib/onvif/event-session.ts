/**
 * One pull-point subscription as lib/onvif/events.ts holds it (a Session):
 * the small part of the onvif library it uses, how a failure is classified,
 * what is read from the raw answers (when the subscription ends, its address
 * when the library could not read it) and how a session is let go
 * (Unsubscribe, bounded). No Node-RED import.
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import { errorText } from '../model/errors';
import { elements, elementText } from './event-parsing';
import { ClosableAgent, LibCallback, LibClientOptions, LibError, LibSession, NETWORK_CODES, shorten } from './shared';

// ---------------------------------------------------------------------------
// The small part of the onvif library we use.

export interface SubscriptionAddress {
  href?: string;
  agent?: http.Agent;
  [k: string]: unknown;
}

export interface CamLike extends EventEmitter {
  timeShift?: number;
  uri?: Record<string, unknown>;
  events?: { subscription?: { subscriptionReference?: { address?: SubscriptionAddress; referenceParameters?: unknown } } };
  getSystemDateAndTime(cb: LibCallback<Date>): void;
  getServices(includeCapability: boolean, cb: LibCallback): void;
  getCapabilities(cb: LibCallback): void;
  createPullPointSubscription(cb: LibCallback): void;
  pullMessages(opts: { messageLimit?: number }, cb: LibCallback): void;
  renew(opts: Record<string, never>, cb: LibCallback): void;
  unsubscribe(cb: LibCallback, preserveListeners?: boolean): void;
}

export interface OnvifModule {
  Cam: new (opts: LibClientOptions) => CamLike;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const onvif: OnvifModule = require('onvif');

// ---------------------------------------------------------------------------
// Failures

export type FailureKind = 'network' | 'timeout' | 'auth' | 'fault' | 'unsupported' | 'protocol';

export class EventsFailure extends Error {
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
  /** The subscription as the library keeps it (set once CreatePullPointSubscription succeeded). */
  address?: SubscriptionAddress;
  /** Our clock's time when the subscription ends, by the camera's last word (undefined: unknown). */
  endsAt?: number;
  lastRenew: number;
}

/** TerminationTime - CurrentTime of an answer, as a time on our clock (the camera's clock may be off). */
export function subscriptionEndsAt(raw: string | undefined): number | undefined {
  if (!raw) return undefined;
  const current = Date.parse(elementText(raw, 'CurrentTime') ?? '');
  const termination = Date.parse(elementText(raw, 'TerminationTime') ?? '');
  if (!Number.isFinite(current) || !Number.isFinite(termination)) return undefined;
  return Date.now() + (termination - current);
}

export function addressFromRaw(
  raw: string | undefined,
  status: number | undefined,
  configuredHost: string,
  configuredPort: number,
): SubscriptionAddress | undefined {
  if (!raw || (status !== undefined && status !== 200) || /<([\w.-]+:)?Fault\b/.test(raw)) return undefined;
  const ref = elements(raw, 'SubscriptionReference')[0];
  const href = ref ? elementText(ref.body, 'Address') : undefined;
  if (!href) return undefined;
  try {
    const u = new URL(href);
    // Like the library with preserveAddress: the configured host and port, the camera's path.
    const hostname = configuredHost;
    const host = `${configuredHost.includes(':') ? `[${configuredHost}]` : configuredHost}:${configuredPort}`;
    return {
      protocol: u.protocol,
      hostname,
      host,
      port: configuredPort,
      path: u.pathname + u.search,
      pathname: u.pathname,
      href: `${u.protocol}//${host}${u.pathname}${u.search}`,
    };
  } catch {
    return undefined;
  }
}

export function classifyFailure(err: unknown, address: string): EventsFailure {
  if (err instanceof EventsFailure) return err;
  const what = err instanceof LibError ? err.what : 'request';
  const cause = err instanceof LibError ? err.original : err;
  const status = err instanceof LibError ? err.status : undefined;
  const raw = err instanceof LibError ? (err.raw ?? '') : '';
  const text = errorText(cause);
  const code = String((cause as { code?: unknown } | undefined)?.code ?? '');
  const hay = `${text} ${raw}`.toLowerCase();
  if (code === 'ETIMEDOUT' || /network timeout|no answer to/i.test(text)) {
    return new EventsFailure('timeout', `Camera ${address} did not answer ${what}`);
  }
  if (NETWORK_CODES.has(code) || /socket hang up|econnrefused|econnreset/i.test(text)) {
    return new EventsFailure('network', `Camera ${address} does not answer (${code || shorten(text)})`);
  }
  if (status === 401 || /not ?authori[sz]ed|unauthori[sz]ed|authentication failed|access denied|invalidsecurity|failedauthentication/.test(hay)) {
    return new EventsFailure('auth', `Camera ${address} refused the credentials for ${what} (${shorten(text)}); check the user and password of the camera`);
  }
  if (/soap fault/i.test(text)) {
    return new EventsFailure('fault', `Camera ${address} refused ${what}: ${shorten(text.replace(/^ONVIF SOAP Fault:\s*/i, ''))}`);
  }
  return new EventsFailure('protocol', `Camera ${address} sent an answer to ${what} that could not be read (${shorten(text)})`);
}

/** Settles what the session has in flight, closes its sockets, optionally unsubscribes (bounded). */
export function dropSession(s: Session, unsubscribe: boolean, timeoutMs: number, cleanups: Set<Promise<void>>): void {
  for (const abandon of [...s.pending]) abandon();
  try {
    s.agent.close();
  } catch {
    /* ignore */
  }
  const finishCam = (): void => {
    try {
      s.cam.removeAllListeners();
      // The library may still emit after we let go; an 'error' without a listener would throw.
      s.cam.on('error', () => undefined);
    } catch {
      /* ignore */
    }
  };
  if (!unsubscribe || !s.address) {
    finishCam();
    return;
  }
  const address = s.address;
  const cleanup = new Promise<void>((resolve) => {
    const agent = new ClosableAgent({ keepAlive: false }, 'ONVIF event subscription stopped');
    let done = false;
    const finish = (): void => {
      try {
        if (done) return;
        done = true;
        clearTimeout(timer);
        agent.close();
        finishCam();
      } catch {
        /* ignore */
      }
      resolve();
    };
    const timer = setTimeout(finish, Math.min(timeoutMs, 2000));
    try {
      address.agent = agent;
      s.cam.unsubscribe(() => finish(), true);
    } catch {
      finish();
    }
  });
  cleanups.add(cleanup);
  void cleanup.then(() => cleanups.delete(cleanup));
}
