/**
 * The media side of an ONVIF camera, pure: the profiles and device information
 * read from the library's answers (and their raw XML), the choice of a
 * profile, and the stream URI with credentials added or redacted for logs.
 * lib/onvif/camera.ts uses these while connecting.
 */
import { xmlUnescape } from './shared';
import { redactUrl, withLogin } from '../model/url';

export interface OnvifProfileInfo {
  token: string;
  name: string;
  width?: number;
  height?: number;
  encoding?: string;
  fps?: number;
}

// ---------------------------------------------------------------------------
// Pure helpers

const isH264 = (p: OnvifProfileInfo): boolean => /^(h\.?264|avc)/i.test(p.encoding ?? '');

export function describeProfile(p: OnvifProfileInfo): string {
  const res = p.width && p.height ? ` ${p.width}x${p.height}` : '';
  return `"${p.token}"${res}${p.encoding ? ' ' + p.encoding : ''}`;
}

function listProfiles(profiles: OnvifProfileInfo[]): string {
  return profiles.length ? profiles.map(describeProfile).join(', ') : '(none)';
}

/** Parses 'WIDTHxHEIGHT' (also 'X', '×', spaces); undefined when malformed. */
function parseResolution(s: string): { width: number; height: number } | undefined {
  const m = /^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$/.exec(s);
  if (!m) return undefined;
  const width = Number(m[1]);
  const height = Number(m[2]);
  return width > 0 && height > 0 ? { width, height } : undefined;
}

/** Among equally good candidates, prefer H.264, then the camera's order. */
function preferH264(candidates: OnvifProfileInfo[]): OnvifProfileInfo {
  return candidates.find(isH264) ?? candidates[0];
}

/**
 * Chooses the media profile: by token (exact), else by resolution (exact,
 * else closest by pixel count), else the first profile with a video encoder,
 * H.264 preferred. Throws an Error listing what the camera offers.
 */
export function pickProfile(profiles: OnvifProfileInfo[], opts: { profileToken?: string; resolution?: string }): OnvifProfileInfo {
  if (!profiles.length) throw new Error('The camera reports no media profiles');
  const token = opts.profileToken?.trim();
  if (token) {
    const found = profiles.find((p) => p.token === token);
    if (!found) throw new Error(`Profile token "${token}" does not exist on the camera; available profiles: ${listProfiles(profiles)}`);
    return found;
  }
  const resolution = opts.resolution?.trim();
  if (resolution) {
    const wanted = parseResolution(resolution);
    if (!wanted) {
      throw new Error(`Resolution "${resolution}" is not WIDTHxHEIGHT (for example 1920x1080); available profiles: ${listProfiles(profiles)}`);
    }
    const sized = profiles.filter((p) => p.width && p.height);
    if (!sized.length) {
      throw new Error(`No profile on the camera reports a resolution, so "${resolution}" cannot be matched; available profiles: ${listProfiles(profiles)}`);
    }
    const exact = sized.filter((p) => p.width === wanted.width && p.height === wanted.height);
    if (exact.length) return preferH264(exact);
    const target = wanted.width * wanted.height;
    const distance = (p: OnvifProfileInfo): number => Math.abs((p.width ?? 0) * (p.height ?? 0) - target);
    const best = Math.min(...sized.map(distance));
    return preferH264(sized.filter((p) => distance(p) === best));
  }
  const withEncoder = profiles.filter((p) => p.encoding);
  if (!withEncoder.length) {
    throw new Error(`No profile on the camera has a video encoder; available profiles: ${listProfiles(profiles)}`);
  }
  return preferH264(withEncoder);
}

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

type Obj = Record<string, unknown>;

export const asObj = (v: unknown): Obj | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const num = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

/**
 * Profiles from the library's parsed GetProfiles answer. The library turns
 * numeric-looking strings into numbers ('1.10' -> 1.1), so tokens are read
 * from the raw XML when it lines up with the parsed list.
 */
export function profilesFrom(data: unknown, xml: string | undefined): OnvifProfileInfo[] {
  const list = Array.isArray(data) ? data : data ? [data] : [];
  const rawTokens: string[] = [];
  if (xml) {
    const re = /<(?:[\w.-]+:)?Profiles\b[^>]*?\btoken\s*=\s*"([^"]*)"/g;
    for (let m = re.exec(xml); m; m = re.exec(xml)) rawTokens.push(xmlUnescape(m[1]));
  }
  const useRaw = rawTokens.length === list.length;
  const out: OnvifProfileInfo[] = [];
  list.forEach((item, i) => {
    const p = asObj(item);
    if (!p) return;
    const attrs = asObj(p.$);
    const token = useRaw ? rawTokens[i] : attrs?.token !== undefined ? String(attrs.token) : '';
    if (!token) return;
    const info: OnvifProfileInfo = { token, name: p.name !== undefined ? String(p.name) : token };
    const vec = asObj(p.videoEncoderConfiguration);
    if (vec) {
      if (vec.encoding !== undefined && vec.encoding !== '') info.encoding = String(vec.encoding);
      const res = asObj(vec.resolution);
      info.width = num(res?.width);
      info.height = num(res?.height);
      info.fps = num(asObj(vec.rateControl)?.frameRateLimit);
    }
    out.push(info);
  });
  return out;
}

/** GetDeviceInformation fields, read from the raw XML so '000123' stays a string. */
export function deviceInfoFrom(data: unknown, xml: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const fields = ['Manufacturer', 'Model', 'FirmwareVersion', 'SerialNumber', 'HardwareId'];
  const parsed = asObj(data);
  for (const f of fields) {
    const m = xml ? new RegExp(`<(?:[\\w.-]+:)?${f}\\b[^>]*>([^<]*)<`).exec(xml) : null;
    if (m) out[f.charAt(0).toLowerCase() + f.slice(1)] = xmlUnescape(m[1].trim());
    else {
      const key = f.charAt(0).toLowerCase() + f.slice(1);
      if (parsed && parsed[key] !== undefined) out[key] = String(parsed[key]);
    }
  }
  return out;
}

/** Inserts user:password (URL-encoded) into an rtsp(s) URI that has no userinfo. */
export function withCredentials(uri: string, username?: string, password?: string): string {
  return username ? withLogin(uri, { username, password: password ?? '' }) : uri;
}

/** The URI without secrets: password in the userinfo and password-like query/path parameters. */
export function redact(uri: string): string {
  return redactUrl(uri).replace(/([?&;/](?:password|passwd|pwd|pass)=)[^&;/?#]*/gi, '$1***');
}
