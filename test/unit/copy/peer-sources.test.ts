/** Where a copier reads a server from: its announced API, refused without the secret, and refused over plain http when the group uses TLS. */
import { strict as assert } from 'node:assert';
import { PeerSources } from '../../../lib/copy/peer-sources';

const messages = { notAnnounced: (s: string) => `${s} not announced`, noSecret: () => 'no secret', notHttps: (s: string) => `${s} is plain http` };

describe('peer sources of a copier', () => {
  const made: PeerSources[] = [];
  afterEach(() => {
    for (const p of made.splice(0)) p.close();
  });
  const sources = (o: Partial<ConstructorParameters<typeof PeerSources>[0]>) => {
    const p = new PeerSources({ secret: 'a-group-secret-of-length', announcedApi: () => undefined, messages, ...o });
    made.push(p);
    return p;
  };

  it('reads a server at the API it announced, one client per address', () => {
    const p = sources({ announcedApi: (s) => (s === 'main-1' ? 'http://10.0.0.5:8080' : undefined) });
    const c = p.sourceFor('main-1');
    assert.equal(c.url, 'http://10.0.0.5:8080');
    assert.equal(p.sourceFor('main-1'), c);
    assert.throws(
      () => p.sourceFor('main-2'),
      (e: Error & { code?: string }) => e.code === 'EUNAVAILABLE' && e.message === 'main-2 not announced',
    );
  });

  it('refuses every source without the secret', () => {
    const p = sources({ secret: null, announcedApi: () => 'https://main-1.studio:8443' });
    assert.throws(() => p.sourceFor('main-1'), /no secret/);
  });

  it('with TLS in the group, refuses a peer API announced as plain http (the secret would go in the clear) and takes https', () => {
    const announced: Record<string, string> = { 'main-1': 'http://attacker.invalid:80', 'main-2': 'https://main-2.studio:8443' };
    const p = sources({ httpsOnly: true, announcedApi: (s) => announced[s] });
    assert.throws(
      () => p.sourceFor('main-1'),
      (e: Error & { code?: string }) => e.code === 'EINSECURE' && e.message === 'main-1 is plain http',
    );
    assert.equal(p.sourceFor('main-2').url, 'https://main-2.studio:8443');
  });
});
