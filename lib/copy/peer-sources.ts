/**
 * Where a copier reads another server's recordings from: that server's peer
 * storage API (its address as it announced it on the link), or, with a share
 * folder, its storage mounted here for the media and its API for lists and
 * events. One client per server, kept while its address stays the same (its
 * kept-alive connections serve segment after segment); close() lets them go.
 * Material copy reads failover servers through it, the transfer manager its main.
 */
import { PeerClient } from '../peer/client';
import { shareFolderFor, ShareSource, withShareMedia } from './share-source';

export interface PeerSourcesOptions {
  /** The group's peer API secret (null: none is set, every source is refused). */
  secret: string | null;
  /** CA to trust for a peer's https. */
  ca?: string | Buffer;
  /** The API address a server announced on the link (undefined while it has not). */
  announcedApi(server: string): string | undefined;
  /** Template of the folder where a server's storage is mounted here ({server} is replaced); null: media over the API. */
  shareFolder?: string | null;
  /** This server's group uses TLS: a peer API announced as plain http:// is refused (the secret would travel in the clear). */
  httpsOnly?: boolean;
  /** The sentences of the refusals, in the words of the node that shows them. */
  messages: { notAnnounced(server: string): string; noSecret(): string; notHttps?(server: string): string };
}

export class PeerSources {
  private readonly clients = new Map<string, PeerClient>();
  private readonly shares = new Map<string, ShareSource>();

  constructor(private readonly opts: PeerSourcesOptions) {}

  /** The source of `server` now; throws (code EUNAVAILABLE) while its address is not known, and when there is no secret. */
  sourceFor(server: string): PeerClient {
    const url = this.opts.announcedApi(server);
    if (!url) throw Object.assign(new Error(this.opts.messages.notAnnounced(server)), { code: 'EUNAVAILABLE' });
    const secret = this.opts.secret;
    if (!secret) throw new Error(this.opts.messages.noSecret());
    if (this.opts.httpsOnly && new URL(url).protocol !== 'https:') {
      const text = this.opts.messages.notHttps?.(server) ?? `${server} announced a plain http:// peer API while this group uses TLS`;
      throw Object.assign(new Error(text), { code: 'EINSECURE' });
    }
    let client = this.clients.get(server);
    if (!client || client.url !== new URL(url).origin) {
      client?.close();
      client = new PeerClient({ url, secret, ca: this.opts.ca });
      this.clients.set(server, client);
    }
    if (!this.opts.shareFolder) return client;
    let share = this.shares.get(server);
    if (!share) this.shares.set(server, (share = new ShareSource(shareFolderFor(this.opts.shareFolder, server))));
    return withShareMedia(client, share);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    this.shares.clear();
  }
}
