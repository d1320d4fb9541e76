/**
 * The editor's websocket (/comms) of a real Node-RED, as the editor uses it:
 * log in with a token (when adminAuth is on), subscribe to a topic, and keep
 * every message that arrives on it.
 */
import WebSocket from 'ws';

export interface CommsMessage {
  topic: string;
  data: any;
  receivedAt: number;
}

export class CommsClient {
  readonly messages: CommsMessage[] = [];
  private constructor(private readonly ws: WebSocket) {}

  /** Connect to <url>/comms, log in with the token (if any) and subscribe to topic. */
  static open(url: string, topic: string, token?: string, timeoutMs = 10000): Promise<CommsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/comms`);
      const c = new CommsClient(ws);
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`comms of ${url}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const ready = () => {
        clearTimeout(timer);
        resolve(c);
      };
      ws.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      ws.on('open', () => {
        if (token) ws.send(JSON.stringify({ auth: token }));
        else {
          ws.send(JSON.stringify({ subscribe: topic }));
          ready();
        }
      });
      ws.on('message', (raw) => {
        let m: unknown;
        try {
          m = JSON.parse(String(raw));
        } catch {
          return;
        }
        if (m && typeof m === 'object' && !Array.isArray(m) && 'auth' in m) {
          const auth = (m as { auth: string }).auth;
          if (auth === 'ok') {
            ws.send(JSON.stringify({ subscribe: topic }));
            ready();
          } else {
            clearTimeout(timer);
            ws.terminate();
            reject(new Error(`comms of ${url}: login refused (${auth})`));
          }
          return;
        }
        const list = Array.isArray(m) ? m : [m];
        for (const x of list as { topic?: string; data?: unknown }[]) {
          if (x && x.topic === topic) c.messages.push({ topic: x.topic, data: x.data, receivedAt: Date.now() });
        }
      });
    });
  }

  /** The first message (from index `from` on) that matches, waiting up to ms for it. */
  async wait(pred: (m: CommsMessage) => boolean, what: string, ms = 30000, from = 0): Promise<CommsMessage> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.messages.slice(from).find(pred);
      if (m) return m;
      if (Date.now() > end) throw new Error(`no comms message ${what} within ${ms} ms; got ${JSON.stringify(this.messages.map((x) => x.data))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    this.ws.terminate();
  }
}
