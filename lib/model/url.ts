/**
 * Logins in stream and broker URLs, in one place: what a URL's user name and
 * password are, the URL without them (for logs, statuses, sidecars and the
 * settings cache) and the URL with a login put in. The parts are found as the
 * WHATWG URL parser finds them (the userinfo ends at the authority's last '@',
 * so a password with an '@' in it is hidden whole); the URL is otherwise kept
 * as written (no re-serialising: a camera's path and query stay byte for byte).
 */

/** The URL cut at its userinfo: scheme and '//', the userinfo (null: none), and the host and what follows. */
function splitAuthority(url: string): { head: string; userinfo: string | null; rest: string } | null {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is.exec(url);
  if (!m) return null;
  const after = m[2];
  const end = after.search(/[/?#]/);
  const authority = end < 0 ? after : after.slice(0, end);
  const at = authority.lastIndexOf('@');
  if (at < 0) return { head: m[1], userinfo: null, rest: after };
  return { head: m[1], userinfo: authority.slice(0, at), rest: after.slice(at + 1) };
}

/** The user name and password of a URL, decoded (null when the URL has no login or does not parse). */
export function loginOf(url: string): { username: string; password: string } | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (!u.username && !u.password) return null;
  const dec = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  return { username: dec(u.username), password: dec(u.password) };
}

/** A URL without its password (the user name stays), for logs, statuses and sidecars. */
export function redactUrl(url: string): string {
  const p = splitAuthority(url);
  if (!p || p.userinfo === null) return url;
  const colon = p.userinfo.indexOf(':');
  if (colon < 0) return url;
  return `${p.head}${p.userinfo.slice(0, colon)}:***@${p.rest}`;
}

/** A URL without its user name and password, and whether it had a login. */
export function stripLogin(url: string): { url: string; login: boolean } {
  const p = splitAuthority(url);
  if (!p || p.userinfo === null) return { url, login: false };
  return { url: `${p.head}${p.rest}`, login: true };
}

/** Put a user name and password (URL-encoded) into a URL that has no login; one that has one is kept. */
export function withLogin(url: string, login: { username: string; password?: string } | null | undefined): string {
  if (!login || !login.username) return url;
  const p = splitAuthority(url);
  if (!p || p.userinfo !== null) return url;
  const userinfo = `${encodeURIComponent(login.username)}:${encodeURIComponent(login.password ?? '')}`;
  return `${p.head}${userinfo}@${p.rest}`;
}
