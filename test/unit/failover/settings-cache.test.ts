/** The settings cache of a failover server: in memory, one JSON file per watched server, read back after a restart. */
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CachedChannel, SettingsCache } from '../../../lib/failover/settings-cache';

function cached(server: string, channel: number, ts: number, p: Partial<CachedChannel['recorder']> = {}): CachedChannel {
  return {
    server,
    channel,
    ts,
    recorder: { channelName: `Cam ${channel}`, frameRate: '25', sourceType: 'url', sourceUrl: `rtsp://10.0.0.${channel}/stream`, sourceLogin: false, ...p },
    lines: [],
  };
}

describe('settings cache', () => {
  let dir: string;
  let warnings: string[];
  const log = { warn: (m: string) => void warnings.push(m) };
  const open: SettingsCache[] = [];
  /** A cache whose flush timer never fires during a test: writes happen on flush()/close() only. */
  function cache(): SettingsCache {
    const c = new SettingsCache(dir, log, 3_600_000);
    open.push(c);
    return c;
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-settings-cache-'));
    warnings = [];
  });

  afterEach(() => {
    for (const c of open.splice(0)) c.close(); // clears any pending flush timer
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates its directory when it is missing', () => {
    const sub = path.join(dir, 'a', 'b');
    const c = new SettingsCache(sub, log, 3_600_000);
    open.push(c);
    assert.ok(fs.statSync(sub).isDirectory());
    assert.deepEqual(c.servers(), []);
  });

  it('keeps what each server publishes, channels in order', () => {
    const c = cache();
    assert.equal(c.put(cached('main-1', 3, 10)), true);
    assert.equal(c.put(cached('main-1', 1, 10)), true);
    assert.equal(c.put(cached('main-2', 2, 10)), true);
    assert.deepEqual(c.servers().sort(), ['main-1', 'main-2']);
    assert.deepEqual(
      c.channels('main-1').map((x) => x.channel),
      [1, 3],
    );
    assert.deepEqual(c.channels('main-2'), [cached('main-2', 2, 10)]);
    assert.deepEqual(c.channels('main-3'), []);
  });

  it('replaces a channel with newer (or equally new) settings and ignores older ones', () => {
    const c = cache();
    c.put(cached('main-1', 1, 100, { channelName: 'first' }));
    assert.equal(c.put(cached('main-1', 1, 200, { channelName: 'newer' })), true);
    assert.equal(c.channels('main-1')[0].recorder.channelName, 'newer');
    assert.equal(c.put(cached('main-1', 1, 150, { channelName: 'older' })), false);
    assert.equal(c.channels('main-1')[0].recorder.channelName, 'newer');
    assert.equal(c.put(cached('main-1', 1, 200, { channelName: 'same ts' })), true);
    assert.equal(c.channels('main-1')[0].recorder.channelName, 'same ts');
  });

  it('removes a channel that is no longer published', () => {
    const c = cache();
    c.put(cached('main-1', 1, 1));
    c.put(cached('main-1', 2, 1));
    c.remove('main-1', 1);
    c.remove('main-1', 9); // unknown: nothing happens
    c.remove('nobody', 1);
    assert.deepEqual(
      c.channels('main-1').map((x) => x.channel),
      [2],
    );
  });

  it('ignores settings of a server whose name is not a server id', () => {
    const c = cache();
    for (const bad of ['../evil', 'a/b', '', '-x', 'x'.repeat(65)]) assert.equal(c.put(cached(bad, 1, 1)), false, `"${bad}"`);
    assert.deepEqual(c.servers(), []);
    c.flush();
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('writes one JSON file per server on flush, and a new instance reads it back', () => {
    const c = cache();
    c.put(cached('main-1', 2, 5));
    c.put(cached('main-1', 1, 5, { sourceType: 'testpattern', sourceUrl: null }));
    c.put(cached('main-2', 1, 7));
    c.flush();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['main-1.json', 'main-2.json']);
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'main-1.json'), 'utf8')) as CachedChannel[];
    assert.deepEqual(
      onDisk.map((x) => x.channel),
      [1, 2],
    );

    const again = cache();
    assert.deepEqual(again.servers().sort(), ['main-1', 'main-2']);
    assert.deepEqual(again.channels('main-1'), c.channels('main-1'));
    assert.deepEqual(again.channels('main-2'), c.channels('main-2'));
    assert.deepEqual(warnings, []);
  });

  it('writes on close, including removals, and keeps older settings out after a restart', () => {
    const c = cache();
    c.put(cached('main-1', 1, 100, { channelName: 'kept' }));
    c.put(cached('main-1', 2, 100));
    c.remove('main-1', 2);
    c.close();
    const again = cache();
    assert.deepEqual(
      again.channels('main-1').map((x) => [x.channel, x.recorder.channelName]),
      [[1, 'kept']],
    );
    assert.equal(again.put(cached('main-1', 1, 50, { channelName: 'stale' })), false);
    assert.equal(again.channels('main-1')[0].recorder.channelName, 'kept');
  });

  it('writes by itself shortly after a change', async () => {
    const c = new SettingsCache(dir, log, 1);
    open.push(c);
    c.put(cached('main-1', 1, 1));
    for (let i = 0; i < 200 && !fs.existsSync(path.join(dir, 'main-1.json')); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(fs.existsSync(path.join(dir, 'main-1.json')), 'the cache was written without flush()');
  });

  it('skips a corrupt file with a warning and keeps the others', () => {
    const c = cache();
    c.put(cached('main-1', 1, 1));
    c.flush();
    fs.writeFileSync(path.join(dir, 'main-2.json'), '[{"server": "main-2", "chan');
    fs.writeFileSync(path.join(dir, 'main-3.json'), '{"not": "a list"}');
    const again = cache();
    assert.deepEqual(again.servers(), ['main-1']);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(
      warnings.find((w) => w.includes('main-2.json'))!,
      /settings cache: cannot read main-2\.json \(.+\); waiting for main-2 to publish again/,
    );
    assert.match(
      warnings.find((w) => w.includes('main-3.json'))!,
      /waiting for main-3 to publish again/,
    );
    // main-2 publishes again: the cache takes it and rewrites the file
    assert.equal(again.put(cached('main-2', 4, 1)), true);
    again.flush();
    const third = cache();
    assert.deepEqual(
      third.channels('main-2').map((x) => x.channel),
      [4],
    );
  });

  it('ignores files that are not a server cache and entries of another server', () => {
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    fs.writeFileSync(path.join(dir, 'bad name.json'), '[]');
    fs.writeFileSync(path.join(dir, 'main-1.json'), JSON.stringify([cached('main-1', 1, 1), cached('main-9', 2, 1), null]));
    const c = cache();
    assert.deepEqual(c.servers(), ['main-1']);
    assert.deepEqual(
      c.channels('main-1').map((x) => x.channel),
      [1],
    );
    assert.deepEqual(warnings, []);
  });

  it('warns instead of throwing when it cannot write', () => {
    const c = cache();
    c.put(cached('main-1', 1, 1));
    fs.mkdirSync(path.join(dir, 'main-1.json')); // a directory where the file goes
    assert.doesNotThrow(() => c.flush());
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot write the settings of main-1/);
  });
});
