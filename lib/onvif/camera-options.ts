/**
 * What a recorder configures for an ONVIF camera (OnvifCameraOptions) and
 * how the camera's host, port and device service path are read from it.
 */
export interface OnvifCameraOptions {
  host: string;
  /** HTTP port of the device service. Default 80. */
  port?: number;
  /** Device service path. Default '/onvif/device_service'. */
  path?: string;
  username?: string;
  password?: string;
  /** Choose the profile by token (wins over resolution). */
  profileToken?: string;
  /** Choose the profile by resolution 'WIDTHxHEIGHT': exact match, else the closest by pixel count. */
  resolution?: string;
  /** Per request. Default 5000. */
  timeoutMs?: number;
  /** First reconnect delay. Default 1000. */
  reconnectMinMs?: number;
  /** Reconnect delay cap (exponential backoff). Default 30000. */
  reconnectMaxMs?: number;
  /** Interval of the GetSystemDateAndTime health check while connected; 0 disables it. Default 30000. */
  healthCheckMs?: number;
}

/** Accepts 'host', 'host:port', '[v6]:port' or 'http://host:port/path' in host. */
export function normaliseTarget(opts: OnvifCameraOptions): { host: string; port: number; path: string } {
  let host = (opts.host ?? '').trim();
  let port = opts.port;
  let path = opts.path?.trim() || undefined;
  if (/^https?:\/\//i.test(host)) {
    try {
      const u = new URL(host);
      host = u.hostname;
      if (!port && u.port) port = Number(u.port);
      if (!path && u.pathname && u.pathname !== '/') path = u.pathname;
    } catch {
      /* keep as typed; the connection attempt will explain */
    }
  } else {
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
    const v4 = /^([^:]+):(\d+)$/.exec(host);
    if (v6) {
      host = v6[1];
      if (!port && v6[2]) port = Number(v6[2]);
    } else if (v4) {
      host = v4[1];
      if (!port) port = Number(v4[2]);
    }
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return {
    host,
    port: port && Number.isInteger(port) && port > 0 && port < 65536 ? port : 80,
    path: path ? (path.startsWith('/') ? path : '/' + path) : '/onvif/device_service',
  };
}
