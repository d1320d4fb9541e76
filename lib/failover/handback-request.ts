/**
 * The failover server's side of a handback: it asks the restored server to take
 * its channels back (a handback message on the link) and waits for its answer
 * (handback-ack), at most timeoutMs. Answers are matched to the failover log
 * entry they are for; close() answers every open request with a refusal.
 */
import { errorText } from '../model/errors';
import { Handback, HandbackAck, LINK_VERSION } from '../link/schemas';

export class HandbackRequests {
  private readonly pending = new Map<number, (ack: HandbackAck) => void>();

  /** An answer that came on the link. */
  answer(ack: HandbackAck): void {
    this.pending.get(ack.entryId)?.(ack);
  }

  /** Publish the request (through `send`) and wait for its answer. Rejects on a timeout or when the request cannot be sent. */
  ask(request: Handback, send: (m: Handback) => Promise<void>, timeoutMs: number): Promise<HandbackAck> {
    const id = request.entryId;
    const server = request.failedServer;
    return new Promise<HandbackAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${server} did not confirm within ${Math.round(timeoutMs / 1000)} s that it records again (is it connected to the broker?)`));
      }, timeoutMs);
      this.pending.set(id, (a) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(a);
      });
      send(request).catch((err) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Error(`cannot reach ${server}: ${errorText(err)}`));
      });
    });
  }

  /** Answer every open request: the watch is closing. */
  close(): void {
    for (const resolve of this.pending.values())
      resolve({ v: LINK_VERSION, server: '', entryId: -1, ok: false, detail: 'the failover watch was closed', started: 0, ts: 0 });
  }
}
