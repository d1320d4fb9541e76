/**
 * The failover controller's contract: what it watches and how (options), what
 * it needs of the server link and the recorders (deps), and what it reports.
 */
import type { ValidateFunction } from 'ajv';
import type { MaterialCopyRequest } from '../copy/copy-request';
import type { ServerState, TakeoverRecord } from '../link/schemas';
import type { FfmpegInfo } from '../media/ffmpeg';
import type { ChannelSettings } from '../recorder/types';
import type { Catalogue } from '../store/catalogue';
import type { FailoverEntry } from '../store/failover-log';
import type { PeerStatus } from './detector';
import type { WitnessStatus } from './witness';

export interface WatchedServer {
  server: string;
  /**
   * Where the server is asked directly, host:port: its liveness address (UDP) when the
   * watch has the group's secret, else a TCP port of it. Optional: without it the
   * address the server announces is asked (with the secret).
   */
  probe?: { host: string; port: number } | null;
}

export interface FailoverControllerOptions {
  self: string;
  group: string;
  /** Highest priority first. */
  watched: WatchedServer[];
  storageRoot: string;
  /** Where the log, the settings cache and the maintenance flags live (e.g. <userDir>/twinrec). */
  stateDir: string;
  heartbeatTimeoutMs?: number;
  holdDownMs?: number;
  capacity?: number;
  recordOnDoubt?: boolean;
  rank?: number;
  failoverEnabled?: boolean;
  evaluateMs?: number;
  probeMs?: number;
  /** How often the liveness of each watched server is asked (with a liveness key). */
  livenessMs?: number;
  /** The group's liveness key (lib/peer/liveness.ts livenessKey(secret)); null: TCP probes only. */
  livenessKey?: Buffer | null;
  /** How long failback waits for the restored server to confirm. */
  handbackTimeoutMs?: number;
  /** The failover server keeps recording this long after the restored server confirmed (no gap). */
  overlapMs?: number;
  /** Before a lower-ranked failover server takes a server over, it waits rank x this for a better-placed one. */
  rankGraceMs?: number;
  sourceLogin?: { username: string; password: string } | null;
  logSynchronous?: 'NORMAL' | 'FULL';
}

/** The part of the server link failover uses. */
export interface FailoverLink {
  readonly epoch: number;
  readonly state: string;
  setEpoch(epoch: number): void;
  subscribe(pattern: string, validate: ValidateFunction, handler: (topic: string, payload: unknown) => void): () => void;
  publish(topic: string, payload: unknown, qos?: 0 | 1): Promise<void>;
  publishRetained(topic: string, payload: unknown | null): void;
  peerState(server: string): ServerState | undefined;
  peerStates(): ServerState[];
  takeoverOf(server: string): TakeoverRecord | undefined;
  on(event: 'peer', fn: (st: ServerState) => void): unknown;
  on(event: 'takeover', fn: (rec: TakeoverRecord) => void): unknown;
  on(event: 'state', fn: (state: string) => void): unknown;

  off(event: string, fn: (...args: any[]) => void): unknown;
}

export interface FailoverDeps {
  link: FailoverLink;
  catalogue: Catalogue;
  ffmpeg: FfmpegInfo;
  log: { info(m: string): void; warn(m: string): void; error(m: string): void };
  clock?: () => number;
  tune?: Partial<ChannelSettings>;
}

export interface FailoverStarted {
  entry: FailoverEntry;
  channels: { channel: number; started: string[]; error: string | null }[];
  evidence: string;
}

export interface FailbackDone {
  entry: FailoverEntry;
  materialCopy: MaterialCopyRequest;
  others: FailoverEntry[];
  how: 'manual' | 'automatic' | 'drill';
  /** Who asked (a node id, "admin:<user>", "watch"), so a node can tell its own failbacks from others. */
  origin: string;
  startedAt: number;
  endedAt: number;
  durationMs: number;
}

export interface WatchedStatus {
  server: string;
  status: PeerStatus;
  maintenance: boolean;
  takenOver: boolean;
  markedFailed: boolean;
  state: ServerState | null;
  lastHeartbeat: number | null;
  /** The path that does not go through the broker: how the server is asked and whether it answers. */
  direct: WitnessStatus;
}
