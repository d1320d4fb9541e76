/**
 * Liveness over real UDP sockets on 127.0.0.1: signed questions get signed
 * answers with each channel's progress; a wrong key, a forged or replayed
 * answer, a stopped responder and a frozen event loop all count as no answer.
 */
import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import {
  ChannelProgress,
  LivenessEndpoints,
  LivenessProber,
  LivenessResponder,
  livenessKey,
  MAX_ANSWER,
  parseLivenessAddress,
} from '../../../lib/peer/liveness';
import { until } from '../../support/nr';

const SECRET = 'a-group-secret-of-some-length';

describe('liveness (signed UDP question and answer)', function () {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (closers.length) await closers.pop()!();
  });

  async function responder(serverId = 'main-1', progress: () => ChannelProgress[] = () => [], secret = SECRET) {
    const r = new LivenessResponder({ host: '127.0.0.1', port: 0 });
    const port = await r.start();
    r.serve({ group: 'studio', serverId, key: livenessKey(secret), progress });
    closers.push(() => r.close());
    return { r, port };
  }
  function prober(secret = SECRET, timeoutMs = 750) {
    const p = new LivenessProber({ self: 'fo-1', group: 'studio', key: livenessKey(secret), intervalMs: 50, timeoutMs });
    closers.push(() => p.close());
    return p;
  }

  it('answers a signed question with the server, its uptime and each channel progress', async () => {
    const { port } = await responder('main-1', () => [
      { channel: 1, recording: true, frames: 1234, sinceProgressMs: 80 },
      { channel: 2, recording: false, frames: 0, sinceProgressMs: null },
    ]);
    const p = prober();
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    p.start();
    await until(() => p.alive('main-1') === true, 'an answer');
    const v = p.view('main-1')!;
    assert.equal(v.address, `127.0.0.1:${port}`);
    assert.ok(v.rttMs !== null && v.rttMs >= 0);
    assert.ok(v.uptimeMs !== null && v.uptimeMs >= 0);
    assert.deepEqual(v.channels, [
      { channel: 1, recording: true, frames: 1234, sinceProgressMs: 80 },
      { channel: 2, recording: false, frames: 0, sinceProgressMs: null },
    ]);
    assert.equal(v.rejected, 0);
  });

  it('gives no answer to a question signed with another key, and the prober counts the server as not alive', async () => {
    const { r, port } = await responder();
    const p = prober('another-secret-of-the-length', 100);
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    p.start();
    await until(() => r.dropped >= 3, 'questions dropped');
    await until(() => p.alive('main-1') === false, 'a verdict: not alive');
    assert.equal(r.answered, 0);
  });

  it('gives no answer for a server it does not serve, nor to a question of another group', async () => {
    const { r, port } = await responder('main-1');
    const p = prober(SECRET, 100);
    p.setTarget({ server: 'main-2', host: '127.0.0.1', port });
    p.start();
    const other = new LivenessProber({ self: 'fo-1', group: 'another', key: livenessKey(SECRET), intervalMs: 50, timeoutMs: 100 });
    closers.push(() => other.close());
    other.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    other.start();
    await until(() => r.dropped >= 6, 'questions dropped');
    await until(() => p.alive('main-2') === false && other.alive('main-1') === false, 'verdicts: not alive');
    assert.equal(r.answered, 0);
  });

  it('an answer counts only from the server asked, signed: one naming another server or unsigned is rejected', async () => {
    // a fake server that signs with the right key but answers as another server, then replays an old nonce
    const key = livenessKey(SECRET);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise((r) => sock.close(() => r(undefined))));
    const seen: string[] = [];
    sock.on('message', (msg, rinfo) => {
      const q = JSON.parse(msg.subarray(32).toString());
      seen.push(q.n);
      const body = Buffer.from(JSON.stringify({ v: 1, k: 'live', g: 'studio', s: 'main-9', to: 'fo-1', n: q.n, t: Date.now(), up: 1, ch: [] }));
      const forged = Buffer.concat([crypto.createHmac('sha256', key).update(body).digest(), body]);
      sock.send(forged, rinfo.port, rinfo.address);
      const unsigned = Buffer.concat([
        Buffer.alloc(32),
        Buffer.from(JSON.stringify({ v: 1, k: 'live', g: 'studio', s: 'main-1', to: 'fo-1', n: q.n, t: Date.now() })),
      ]);
      sock.send(unsigned, rinfo.port, rinfo.address);
    });
    const p = prober(SECRET, 100);
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port: sock.address().port });
    p.start();
    await until(() => p.view('main-1')!.rejected >= 4, 'answers rejected');
    await until(() => p.alive('main-1') === false, 'a verdict: not alive');
    assert.equal(p.view('main-1')!.lastAnswerAt, null);
    assert.ok(seen.length >= 2);
  });

  it('a responder that stops answering is not alive after the timeout', async () => {
    const { r, port } = await responder();
    const p = prober(SECRET, 300);
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    p.start();
    await until(() => p.alive('main-1') === true, 'an answer');
    await r.close();
    await until(() => p.alive('main-1') === false, 'not alive after the responder closed');
  });

  it('keeps an answer to one datagram whatever the channel count', async () => {
    const many = Array.from({ length: 400 }, (_, i) => ({ channel: i + 1, recording: true, frames: 123456789, sinceProgressMs: 1000 }));
    const { port } = await responder('main-1', () => many);
    const sizes: number[] = [];
    const p = prober();
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port });
    p.start();
    await until(() => p.alive('main-1') === true, 'an answer');
    const got = p.view('main-1')!.channels;
    assert.ok(got.length > 20 && got.length < 400, `a part of the channels fits (${got.length})`);
    assert.deepEqual(
      got.map((c) => c.channel),
      got.map((_, i) => i + 1),
    );
    // measure one answer on the wire
    const key = livenessKey(SECRET);
    const sock = dgram.createSocket('udp4');
    closers.push(() => new Promise((r) => sock.close(() => r(undefined))));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    sock.on('message', (m) => sizes.push(m.length));
    const body = Buffer.from(JSON.stringify({ v: 1, k: 'live?', g: 'studio', to: 'main-1', from: 'fo-1', n: '0123456789abcdef', t: Date.now() }));
    sock.send(Buffer.concat([crypto.createHmac('sha256', key).update(body).digest(), body]), port, '127.0.0.1');
    await until(() => sizes.length === 1, 'the answer');
    assert.ok(sizes[0] <= MAX_ANSWER, `${sizes[0]} bytes`);
  });

  it('endpoints: servers of one process share a port; the last one to stop closes it; a taken port is an error', async () => {
    const eps = new LivenessEndpoints();
    const log = { warn: () => undefined };
    // a free UDP port: bound by the system, then let go
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const port = probe.address().port;
    await new Promise((r) => probe.close(() => r(undefined)));
    const a = await eps.serve('127.0.0.1', port, { group: 'studio', serverId: 'main-1', key: livenessKey(SECRET), progress: () => [] }, log);
    const b = await eps.serve('127.0.0.1', port, { group: 'studio', serverId: 'main-2', key: livenessKey(SECRET), progress: () => [] }, log);
    closers.push(b.stop);
    assert.equal(a.port, port);
    assert.equal(b.port, port);
    const p = prober();
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port: a.port });
    p.start();
    p.setTarget({ server: 'main-2', host: '127.0.0.1', port });
    await until(() => p.alive('main-1') === true && p.alive('main-2') === true, 'both answer on one port');
    await a.stop();
    await until(() => p.alive('main-1') === false, 'main-1 no longer answers');
    assert.equal(p.alive('main-2'), true, 'main-2 still answers on the shared socket');
    await b.stop();
    await until(() => p.alive('main-2') === false, 'the socket closed with its last server');
    const held = dgram.createSocket('udp4');
    await new Promise<void>((r) => held.bind(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise((r) => held.close(() => r(undefined))));
    await assert.rejects(
      eps.serve('127.0.0.1', held.address().port, { group: 'studio', serverId: 'main-3', key: livenessKey(SECRET), progress: () => [] }, log),
      /EADDRINUSE/,
    );
  });

  it('gives no verdict before a first answer could have come: a server just asked is neither alive nor dead', () => {
    let now = 1000;
    const p = new LivenessProber({ self: 'fo-1', group: 'studio', key: livenessKey(SECRET), timeoutMs: 750, clock: () => now });
    closers.push(() => p.close());
    assert.equal(p.alive('main-1'), null, 'not asked');
    p.setTarget({ server: 'main-1', host: '127.0.0.1', port: 9 });
    assert.equal(p.alive('main-1'), null);
    now += 750;
    assert.equal(p.alive('main-1'), null);
    now += 1;
    assert.equal(p.alive('main-1'), false);
  });

  it('reads host:port and [v6]:port, and says what is wrong with anything else', () => {
    assert.deepEqual(parseLivenessAddress('m', '10.0.0.5:1880'), { server: 'm', host: '10.0.0.5', port: 1880 });
    assert.deepEqual(parseLivenessAddress('m', '[::1]:1880'), { server: 'm', host: '::1', port: 1880 });
    assert.deepEqual(parseLivenessAddress('m', 'rec-a.studio:9'), { server: 'm', host: 'rec-a.studio', port: 9 });
    for (const bad of ['10.0.0.5', '10.0.0.5:0', '10.0.0.5:70000', '::1:1880', 'a b:1']) {
      assert.throws(() => parseLivenessAddress('m', bad), /liveness address ".*" of m must be host:port/);
    }
  });
});
