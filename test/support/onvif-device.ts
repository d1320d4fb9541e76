/**
 * A minimal ONVIF device for tests: SOAP 1.2 over plain HTTP (node:http),
 * bound to 127.0.0.1 only. It answers the device and media (ver10) requests
 * that the `onvif` library and lib/onvif-camera.ts send while connecting and
 * afterwards, and checks WS-Security UsernameToken PasswordDigest when a
 * username is configured.
 *
 * Not a conformant ONVIF implementation: request parsing is regex based and
 * only as strict as the tests need.
 */
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeOnvifProfile {
  token: string;
  name: string;
  width: number;
  height: number;
  /** Video encoder encoding (H264, H265, JPEG...). Default 'H264'. */
  encoding?: string;
  fps?: number;
  rtspUri: string;
}

export interface FakeOnvifDeviceOptions {
  /** Port to listen on; 0 or undefined picks a free one. */
  port?: number;
  username?: string;
  password?: string;
  profiles: FakeOnvifProfile[];
  /** The device clock runs this far ahead of ours (negative: behind). Default 0. */
  clockOffsetMs?: number;
  /** Accepted difference between a UsernameToken's Created and the device clock. Default 10 s. */
  maxClockSkewMs?: number;
  deviceInfo?: Partial<Record<'Manufacturer' | 'Model' | 'FirmwareVersion' | 'SerialNumber' | 'HardwareId', string>>;
}

export interface FakeOnvifDevice {
  port: number;
  /** The SOAP action names received, in order (e.g. 'GetSystemDateAndTime'), including refused ones. */
  requests: string[];
  stop(): Promise<void>;
  /** true: stop listening and drop open connections (connections are refused); false: listen again on the same port. */
  setOffline(offline: boolean): Promise<void>;
}

const NS =
  'xmlns:s="http://www.w3.org/2003/05/soap-envelope" ' +
  'xmlns:tt="http://www.onvif.org/ver10/schema" ' +
  'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" ' +
  'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" ' +
  'xmlns:ter="http://www.onvif.org/ver10/error"';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function unesc(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function envelope(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope ${NS}><s:Body>${body}</s:Body></s:Envelope>`;
}

function fault(subcode: string, reason: string): string {
  return envelope(
    '<s:Fault><s:Code><s:Value>s:Sender</s:Value>' +
      `<s:Subcode><s:Value>${subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en">${esc(reason)}</s:Text></s:Reason></s:Fault>`,
  );
}

/** Text of the first element with this local name (any prefix). */
function element(xml: string, localName: string): string | undefined {
  const m = new RegExp(`<(?:[\\w.-]+:)?${localName}(?:\\s[^>]*)?>([^<]*)</(?:[\\w.-]+:)?${localName}>`).exec(xml);
  return m ? unesc(m[1].trim()) : undefined;
}

/** Local name of the first element inside the SOAP Body. */
function actionOf(xml: string): string {
  const m = /<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([\w.-]+)/.exec(xml);
  return m ? m[1] : 'Unknown';
}

/** The device answers SOAP here only; other paths get an HTML 404 like a camera's web server. */
const SERVICE_PATHS = new Set(['/onvif/device_service', '/onvif/media_service']);

type AuthResult = 'ok' | 'missing' | 'wrong' | 'time';

export async function startOnvifDevice(opts: FakeOnvifDeviceOptions): Promise<FakeOnvifDevice> {
  const requests: string[] = [];
  const clockOffsetMs = opts.clockOffsetMs ?? 0;
  const maxSkewMs = opts.maxClockSkewMs ?? 10_000;
  const info = {
    Manufacturer: 'TwinRec Test',
    Model: 'FakeCam 1',
    FirmwareVersion: '1.00',
    SerialNumber: '000123',
    HardwareId: 'HW-1',
    ...opts.deviceInfo,
  };
  const sockets = new Set<Socket>();
  let port = opts.port ?? 0;

  const deviceNow = (): Date => new Date(Date.now() + clockOffsetMs);

  function checkAuth(xml: string): AuthResult {
    if (!opts.username) return 'ok';
    const user = element(xml, 'Username');
    const digest = element(xml, 'Password');
    const nonce = element(xml, 'Nonce');
    const created = element(xml, 'Created');
    if (user === undefined || digest === undefined || nonce === undefined || created === undefined) return 'missing';
    const expected = createHash('sha1')
      .update(Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created, 'utf8'), Buffer.from(opts.password ?? '', 'utf8')]))
      .digest('base64');
    if (user !== opts.username || digest !== expected) return 'wrong';
    const createdMs = Date.parse(created);
    if (!Number.isFinite(createdMs) || Math.abs(createdMs - deviceNow().getTime()) > maxSkewMs) return 'time';
    return 'ok';
  }

  function xaddr(path: string): string {
    return `http://127.0.0.1:${port}${path}`;
  }

  function profileXml(p: FakeOnvifProfile, index: number): string {
    const encoding = p.encoding ?? 'H264';
    return (
      `<trt:Profiles token="${esc(p.token)}" fixed="true">` +
      `<tt:Name>${esc(p.name)}</tt:Name>` +
      '<tt:VideoSourceConfiguration token="vsc0"><tt:Name>VideoSourceConfig</tt:Name><tt:UseCount>' +
      opts.profiles.length +
      '</tt:UseCount><tt:SourceToken>vs0</tt:SourceToken>' +
      '<tt:Bounds x="0" y="0" width="1920" height="1080"></tt:Bounds></tt:VideoSourceConfiguration>' +
      `<tt:VideoEncoderConfiguration token="vec${index}"><tt:Name>VideoEncoder${index}</tt:Name><tt:UseCount>1</tt:UseCount>` +
      `<tt:Encoding>${esc(encoding)}</tt:Encoding>` +
      `<tt:Resolution><tt:Width>${p.width}</tt:Width><tt:Height>${p.height}</tt:Height></tt:Resolution>` +
      '<tt:Quality>5</tt:Quality>' +
      `<tt:RateControl><tt:FrameRateLimit>${p.fps ?? 25}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>` +
      '<tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl>' +
      '<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>' +
      '</trt:Profiles>'
    );
  }

  /** Returns [HTTP status, SOAP body XML]. */
  function answer(action: string, xml: string): [number, string] {
    // ONVIF lets GetSystemDateAndTime through without authentication, so a
    // client can learn the device clock before it signs anything.
    if (action !== 'GetSystemDateAndTime') {
      const auth = checkAuth(xml);
      if (auth === 'time') return [400, fault('ter:NotAuthorized', 'Wsse authorized time check failed.')];
      if (auth !== 'ok') {
        return [400, fault('ter:NotAuthorized', 'The action requested requires authorization and the sender is not authorized')];
      }
    }
    switch (action) {
      case 'GetSystemDateAndTime': {
        const d = deviceNow();
        return [
          200,
          envelope(
            '<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>' +
              '<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>' +
              '<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>' +
              '<tt:UTCDateTime>' +
              `<tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
              `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date>` +
              '</tt:UTCDateTime>' +
              '</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>',
          ),
        ];
      }
      case 'GetServices':
        return [
          200,
          envelope(
            '<tds:GetServicesResponse>' +
              '<tds:Service><tds:Namespace>http://www.onvif.org/ver10/device/wsdl</tds:Namespace>' +
              `<tds:XAddr>${xaddr('/onvif/device_service')}</tds:XAddr>` +
              '<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>' +
              '<tds:Service><tds:Namespace>http://www.onvif.org/ver10/media/wsdl</tds:Namespace>' +
              `<tds:XAddr>${xaddr('/onvif/media_service')}</tds:XAddr>` +
              '<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>' +
              '</tds:GetServicesResponse>',
          ),
        ];
      case 'GetCapabilities':
        return [
          200,
          envelope(
            '<tds:GetCapabilitiesResponse><tds:Capabilities>' +
              `<tt:Device><tt:XAddr>${xaddr('/onvif/device_service')}</tt:XAddr></tt:Device>` +
              `<tt:Media><tt:XAddr>${xaddr('/onvif/media_service')}</tt:XAddr>` +
              '<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>' +
              '<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>' +
              '</tds:Capabilities></tds:GetCapabilitiesResponse>',
          ),
        ];
      case 'GetDeviceInformation':
        return [
          200,
          envelope(
            '<tds:GetDeviceInformationResponse>' +
              Object.entries(info)
                .map(([k, v]) => `<tds:${k}>${esc(String(v))}</tds:${k}>`)
                .join('') +
              '</tds:GetDeviceInformationResponse>',
          ),
        ];
      case 'GetScopes':
        return [
          200,
          envelope(
            '<tds:GetScopesResponse>' +
              '<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/type/video_encoder</tt:ScopeItem></tds:Scopes>' +
              '<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/Profile/Streaming</tt:ScopeItem></tds:Scopes>' +
              '</tds:GetScopesResponse>',
          ),
        ];
      case 'GetHostname':
        return [
          200,
          envelope('<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP><tt:Name>fakecam</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>'),
        ];
      case 'GetProfiles':
        return [200, envelope(`<trt:GetProfilesResponse>${opts.profiles.map(profileXml).join('')}</trt:GetProfilesResponse>`)];
      case 'GetVideoSources':
        return [
          200,
          envelope(
            '<trt:GetVideoSourcesResponse><trt:VideoSources token="vs0"><tt:Framerate>25</tt:Framerate>' +
              '<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>' +
              '</trt:VideoSources></trt:GetVideoSourcesResponse>',
          ),
        ];
      case 'GetStreamUri': {
        const token = element(xml, 'ProfileToken');
        const p = opts.profiles.find((x) => x.token === token);
        if (!p) return [400, fault('ter:InvalidArgVal', `No profile with token ${token ?? '(none)'}`)];
        return [
          200,
          envelope(
            '<trt:GetStreamUriResponse><trt:MediaUri>' +
              `<tt:Uri>${esc(p.rtspUri)}</tt:Uri>` +
              '<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>' +
              '<tt:Timeout>PT60S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>',
          ),
        ];
      }
      default:
        return [400, fault('ter:ActionNotSupported', `${action} is not supported by this test device`)];
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      let status = 500;
      let body = '';
      try {
        const xml = Buffer.concat(chunks).toString('utf8');
        if (req.method !== 'POST') {
          status = 405;
          body = 'POST only';
        } else if (!SERVICE_PATHS.has((req.url ?? '').split('?')[0])) {
          status = 404;
          body = '<html><body><h1>404 Not Found</h1></body></html>';
          requests.push(`404 ${req.url ?? ''}`);
        } else {
          const action = actionOf(xml);
          requests.push(action);
          [status, body] = answer(action, xml);
        }
      } catch (err) {
        status = 500;
        body = fault('ter:Receiver', `test device failure: ${String(err)}`);
      }
      const type = status === 404 ? 'text/html' : 'application/soap+xml; charset=utf-8';
      res.writeHead(status, { 'Content-Type': type, Connection: 'close' });
      res.end(body);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  let listening = false;

  function listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', onError);
        listening = true;
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  function close(): Promise<void> {
    if (!listening) return Promise.resolve();
    listening = false;
    return new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
      sockets.clear();
    });
  }

  await listen();

  return {
    get port() {
      return port;
    },
    requests,
    stop: close,
    async setOffline(offline: boolean): Promise<void> {
      if (offline) await close();
      else if (!listening) await listen();
    },
  };
}

/** A port that was free a moment ago (for a device that starts later). */
export { freePort } from './ports';
