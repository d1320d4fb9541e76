/**
 * What an operator switches on a failover server, kept across restarts in its
 * state folder: failover enabled for the site or not, servers in maintenance
 * (watched but never taken over, and never failed back automatically), and
 * servers marked failed or OK by hand. The detector is paused while failover is
 * off or this server itself is in maintenance.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CommandError } from '../model/errors';
import type { FailoverLog } from '../store/failover-log';
import { writeFileAtomic } from '../store/clip-files';
import type { FailoverDetector } from './detector';

export interface SwitchesConfig {
  stateDir: string;
  /** This failover server. */
  self: string;
  /** The servers it watches. */
  watched: ReadonlySet<string>;
  /** The node's setting: off wins over a run-time switch. */
  failoverEnabled: boolean;
}

export class OperatorSwitches {
  /** Servers this failover server has marked failed (taken over), until failback marks them OK. */
  readonly markedFailed = new Set<string>();
  private readonly maintenance = new Set<string>();
  private enabled: boolean;

  constructor(
    private readonly cfg: SwitchesConfig,
    private readonly detector: FailoverDetector,
    private readonly log: FailoverLog,
    private readonly clock: () => number,
  ) {
    this.enabled = cfg.failoverEnabled && this.loadEnabled();
    this.loadMaintenance();
    this.applyPause();
  }

  setMaintenance(server: string, on: boolean): void {
    if (server !== this.cfg.self && !this.cfg.watched.has(server)) {
      throw new CommandError(`${server} is neither this failover server nor one it watches (${[...this.cfg.watched].join(', ')})`);
    }
    if (on) this.maintenance.add(server);
    else this.maintenance.delete(server);
    this.detector.setMaintenance(server, on);
    this.applyPause();
    this.saveMaintenance();
  }

  inMaintenance(server: string): boolean {
    return this.maintenance.has(server);
  }

  /** Enable or disable failover for the site at run time (kept across restarts; the node's setting off wins). */
  setEnabled(on: boolean): void {
    this.enabled = on;
    this.applyPause();
    writeFileAtomic(path.join(this.cfg.stateDir, 'failover-enabled.json'), JSON.stringify({ enabled: on }));
  }

  isEnabled(): boolean {
    return this.enabled;
  }

  /**
   * Mark a server failed or OK by hand (for example OK after it was repaired and
   * reconfigured by other means). Written to the log entries of the server.
   */
  mark(server: string, failed: boolean): void {
    if (!this.cfg.watched.has(server)) throw new CommandError(`${server} is not watched by ${this.cfg.self}; watched: ${[...this.cfg.watched].join(', ')}`);
    if (failed) this.markedFailed.add(server);
    else this.markedFailed.delete(server);
    for (const e of this.log.active().filter((x) => x.failedServer === server))
      this.log.appendHistory(e.id, `${server} marked ${failed ? 'failed' : 'OK'} by hand`, this.clock());
  }

  isMarkedFailed(server: string): boolean {
    return this.markedFailed.has(server);
  }

  private applyPause(): void {
    this.detector.pause(!this.enabled || this.maintenance.has(this.cfg.self));
  }

  private loadEnabled(): boolean {
    try {
      const v = JSON.parse(fs.readFileSync(path.join(this.cfg.stateDir, 'failover-enabled.json'), 'utf8')) as { enabled?: unknown };
      return v.enabled !== false;
    } catch {
      return true;
    }
  }

  private maintenanceFile(): string {
    return path.join(this.cfg.stateDir, 'maintenance.json');
  }

  private loadMaintenance(): void {
    try {
      const list = JSON.parse(fs.readFileSync(this.maintenanceFile(), 'utf8')) as unknown;
      if (Array.isArray(list)) {
        for (const s of list) {
          if (typeof s === 'string') {
            this.maintenance.add(s);
            this.detector.setMaintenance(s, true);
          }
        }
      }
    } catch {
      // none set
    }
  }

  private saveMaintenance(): void {
    writeFileAtomic(this.maintenanceFile(), JSON.stringify([...this.maintenance]));
  }
}
