/**
 * The peer storage API's contract, shared by the server (api.ts), its clients
 * (client.ts, and the share source of lib/copy) and the server identity that
 * advertises it: the path prefix, the clip id shape, the secret's minimum
 * length, and how one segment is asked for.
 */
export const PEER_API_PREFIX = '/twinrec/v1';
export const CLIP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
export const MIN_SECRET_LENGTH = 16;

/** How one segment is fetched (lib/peer/client.ts and lib/copy/share-source.ts take these). */
export interface SegmentFetchOptions {
  /** sha256 the segment must have (the catalogue's); null/undefined: the peer's X-Sha256 only. */
  expectedSha256?: string | null;
  /** A part file longer than this cannot be a prefix of the segment and is started over. */
  expectedBytes?: number;
  limiter?: { take(bytes: number): Promise<void> };
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
  /** The clip folder and segment file as the catalogue names them (a share reads them there; the API finds them by clip id and index). */
  where?: { dir: string; file: string };
  /** Called once every byte of the segment is in its part file, before its fsync and hash (a copier may start the next fetch). */
  onReceived?: () => void;
  /**
   * 0 when the caller knows there is no part file (it just listed the folder): no look on disk, which
   * in a folder whose renames wait for the journal costs the event loop about 0.3 ms. Else it is looked up.
   */
  partBytes?: 0;
}
