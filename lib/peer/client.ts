/**
 * The client of another server's peer storage API (lib/peer/api.ts): lists its
 * clips and events, and fetches segments resumably and verified.
 *
 * A segment goes to `<dest>.part` first; a later call resumes from the part's
 * size with a Range request, and only a file whose size is what the peer
 * announced and whose sha256 matches (the catalogue's and the peer's) is renamed
 * to `<dest>`. Errors carry a code the caller can decide on:
 *
 *   ENET        the peer is unreachable or went silent (part kept: try again)
 *   ETRUNC      the connection closed before the whole segment came (part kept)
 *   EHASH       the bytes do not match the sha256 (part deleted: its content is wrong)
 *   EAUTH       the peer refused the shared secret (401)
 *   ENOENT      the peer has no such clip or segment (404)
 *   EREFUSED    the peer refused to serve it (403: outside its storage)
 *   EINVAL      the request was not valid (400)
 *   EUNAVAILABLE the peer answered 502/503/504
 *   ETLS        the peer's certificate is not trusted
 *   EPROTO      the peer's answer is not what the API promises
 *   EPEER       another status from the peer
 *   EABORT      the caller's AbortSignal stopped it (part kept)
 *
 * In parts: the errors (lib/peer/peer-error.ts), the HTTP plumbing
 * (lib/peer/peer-transport.ts), the segment fetch (lib/peer/segment-fetch.ts)
 * and the bandwidth limit (lib/peer/rate-limiter.ts); here the listings.
 *
 * No Node-RED import.
 */
import { CatalogueEvent } from '../store/catalogue';
import { Clip } from '../model/clip';
import { PEER_API_PREFIX } from './protocol';
import { netError, PeerError, readAll } from './peer-error';
import { MAX_JSON } from './peer-transport';
import { PeerSegments } from './segment-fetch';

// still importable from here, as before the split (test/nodes/peer-api-node.test.ts does)

export interface ClipQuery {
  server?: string;
  channel: number;
  from?: number;
  to?: number;
}

export interface EventQuery {
  server?: string;
  channel?: number;
  from?: number;
  to?: number;
}

export class PeerClient extends PeerSegments {
  async info(): Promise<{ server: string; api: number }> {
    const r = await this.getJson<{ server?: unknown; api?: unknown }>(`${PEER_API_PREFIX}/info`, 'info');
    if (typeof r?.server !== 'string' || typeof r.api !== 'number') throw new PeerError(`the peer at ${this.url} is not a twinrec peer API`, 'EPROTO');
    return { server: r.server, api: r.api };
  }

  async clips(q: ClipQuery): Promise<Clip[]> {
    const r = await this.getJson<{ clips?: unknown }>(`${PEER_API_PREFIX}/clips?${query(q)}`, `clip list of channel ${q.channel}`);
    if (!Array.isArray(r?.clips) || r.clips.some((c) => !c || typeof c !== 'object' || typeof c.id !== 'string' || !Array.isArray(c.segments))) {
      throw new PeerError(`the peer at ${this.url} answered the clip list with something that is not a list of clips`, 'EPROTO');
    }
    return r.clips as Clip[];
  }

  async clip(id: string): Promise<Clip> {
    this.checkClipId(id);
    const c = await this.getJson<Clip>(`${PEER_API_PREFIX}/clips/${encodeURIComponent(id)}`, `clip ${id}`);
    if (!c || typeof c !== 'object' || c.id !== id || !Array.isArray(c.segments))
      throw new PeerError(`the peer at ${this.url} answered clip ${id} with something else`, 'EPROTO');
    return c;
  }

  async sidecar(id: string): Promise<Buffer> {
    this.checkClipId(id);
    const what = `sidecar of clip ${id}`;
    const x = await this.request(`${PEER_API_PREFIX}/clips/${encodeURIComponent(id)}/sidecar`);
    if (x.res.statusCode !== 200) throw await this.statusError(x, what);
    try {
      return await readAll(x.res, MAX_JSON);
    } catch (err) {
      throw x.cause() ?? netError(err, this.url);
    } finally {
      x.done();
    }
  }

  async events(q: EventQuery): Promise<CatalogueEvent[]> {
    const r = await this.getJson<{ events?: unknown }>(`${PEER_API_PREFIX}/events?${query(q)}`, 'event list');
    if (!Array.isArray(r?.events)) throw new PeerError(`the peer at ${this.url} answered the event list with something that is not a list`, 'EPROTO');
    return r.events as CatalogueEvent[];
  }
}

function query(q: object): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null) u.set(k, String(v));
  return u.toString();
}
