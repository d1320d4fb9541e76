import { strict as assert } from 'node:assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Clip } from '../../../lib/model/clip';
import {
  SIDECAR_FORMAT,
  SIDECAR_NAME,
  channelDir,
  hashFile,
  insideRoot,
  newClipDir,
  readSidecar,
  sanitizeName,
  sidecarOf,
  writeFileAtomic,
  writeSidecar,
} from '../../../lib/store/clip-files';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The promises every sanitized name keeps. */
function assertSafeName(input: string, name: string): void {
  const shown = JSON.stringify(input).slice(0, 60);
  assert.equal(typeof name, 'string');
  assert.ok(name.length > 0, `empty name for ${shown}`);
  assert.ok(!name.includes('/'), `"/" in ${JSON.stringify(name)} for ${shown}`);
  assert.ok(!name.includes('\\'), `"\\" in ${JSON.stringify(name)} for ${shown}`);
  assert.ok(!name.includes('..'), `".." in ${JSON.stringify(name)} for ${shown}`);
  assert.ok(!name.includes('\0'), `NUL in ${JSON.stringify(name)} for ${shown}`);
  assert.doesNotMatch(name, /[\u0000-\u001f\u007f]/, `control character in ${JSON.stringify(name)} for ${shown}`);
  assert.ok(!name.startsWith('.'), `leading dot in ${JSON.stringify(name)} for ${shown}`);
  assert.ok(Buffer.byteLength(name) <= 100, `${Buffer.byteLength(name)} bytes for ${shown}`);
  assert.ok(name !== '.' && name !== '..');
  assert.doesNotMatch(name, /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/i, `Windows device name ${name}`);
}

const HOSTILE = [
  '../../etc/passwd',
  '..',
  '.',
  '',
  '/',
  '\\',
  'a/b\\c',
  '..\\..\\windows\\system32',
  '/etc/passwd',
  'a\0b',
  '\0',
  '\u0001\u0002\u001b[31mred\u001b[0m\u007f',
  'line\nbreak\rand\ttab',
  'CON',
  'nul',
  'Aux',
  'com1',
  'LPT9',
  '.hidden',
  '..hidden',
  '...',
  '. . .',
  ' .. ',
  'a..b',
  '．．／etc／passwd', // full-width dots and slashes, NFKC makes them ASCII
  '\u2025', // two dot leader, NFKC ".."
  '\u202Eevil\u202Cfdp.exe',
  'x'.repeat(300),
  'é'.repeat(300),
  '日本語'.repeat(100),
  '%2e%2e%2f',
  '~/.ssh/id_rsa',
  '   ',
  '*?<>|:"',
];

describe('storage', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twinrec-storage-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('sanitizeName', () => {
    it('keeps every hostile input safe', () => {
      for (const input of HOSTILE) assertSafeName(input, sanitizeName(input));
    });

    it('turns path tricks into plain names', () => {
      assert.equal(sanitizeName('../../etc/passwd'), '____etc_passwd');
      assert.equal(sanitizeName('a/b\\c'), 'a_b_c');
      assert.equal(sanitizeName('/'), '_');
      assert.equal(sanitizeName('\\'), '_');
      assert.equal(sanitizeName('..'), '_');
      assert.equal(sanitizeName('a..b'), 'a_b');
    });

    it('never returns an empty name', () => {
      for (const input of ['', '.', ' ', '   ', '. .', '\t']) {
        const name = sanitizeName(input);
        assert.ok(name.length > 0, JSON.stringify(input));
        assertSafeName(input, name);
      }
      assert.equal(sanitizeName(''), 'clip');
      assert.equal(sanitizeName('.'), 'clip');
    });

    it('replaces NUL and control characters', () => {
      assert.equal(sanitizeName('a\0b'), 'a_b');
      assert.equal(sanitizeName('a\u0007b\u007fc'), 'a_b_c');
    });

    it('prefixes Windows device names', () => {
      assert.equal(sanitizeName('CON'), '_CON');
      assert.equal(sanitizeName('nul'), '_nul');
      assert.equal(sanitizeName('com3'), '_com3');
      assert.equal(sanitizeName('console'), 'console');
    });

    it('drops leading dots', () => {
      assert.equal(sanitizeName('.hidden'), 'hidden');
      assert.ok(!sanitizeName('..hidden').startsWith('.'));
      assert.ok(!sanitizeName(' .x').startsWith('.'));
    });

    it('keeps letters, digits, space, ".", "_", "-" and "+"', () => {
      assert.equal(sanitizeName('News 20.15 - part_2 + extra'), 'News 20.15 - part_2 + extra');
      assert.equal(sanitizeName('  spaced   out  '), 'spaced out');
    });

    it('keeps German and Japanese titles readable', () => {
      const de = sanitizeName('Nachrichten – Ausgabe 1');
      assertSafeName('Nachrichten – Ausgabe 1', de);
      assert.match(de, /^Nachrichten .* Ausgabe 1$/);
      assert.equal(sanitizeName('Größe für Übertragung'), 'Größe für Übertragung');
      assert.equal(sanitizeName('ニュース 第1回'), 'ニュース 第1回');
      assert.equal(sanitizeName('夜のニュース'), '夜のニュース');
      assert.equal(sanitizeName('Новости 21:00'), 'Новости 21_00');
      assert.equal(sanitizeName('뉴스 9'), '뉴스 9');
      // composed to NFC only: full-width digits stay as typed (NFKC would also break Thai SARA AM)
      assert.equal(sanitizeName('第１回'), '第１回');
      assert.equal(sanitizeName('Cafe\u0301'), 'Caf\u00e9');
    });

    it('keeps titles in scripts written with combining marks readable (Hindi, Thai)', () => {
      // Devanagari vowel signs and viramas, and Thai vowels and tone marks, are
      // combining marks (\p{M}), part of the letters: they must not become "_".
      const problems: string[] = [];
      for (const title of ['समाचार हिन्दी', 'ข่าวภาคค่ำ']) {
        const name = sanitizeName(title);
        assertSafeName(title, name);
        if (name !== title) problems.push(`${title} -> ${name}`);
      }
      if (problems.length > 0) assert.fail(problems.join('; '));
    });

    it('cuts long titles to at most 100 bytes', () => {
      for (const title of ['x'.repeat(300), 'é'.repeat(300), '日本語'.repeat(100), 'ab '.repeat(100), `${'a'.repeat(99)}日本`]) {
        const name = sanitizeName(title);
        assertSafeName(title, name);
        assert.ok(Buffer.byteLength(name) >= 97, `${title.slice(0, 10)}: cut too short (${Buffer.byteLength(name)} bytes)`);
        assert.ok(title.startsWith(name), 'a prefix of the title');
      }
      assert.equal(sanitizeName('x'.repeat(300)), 'x'.repeat(100));
      assert.ok(!sanitizeName(`${'a'.repeat(99)} b`).endsWith(' '));
    });

    it('cuts long titles only between characters, never inside a surrogate pair', () => {
      // '𠀀' (U+20000, a CJK letter) is 4 UTF-8 bytes and 2 UTF-16 units. Cutting a
      // unit at a time can leave a lone high surrogate, which the file system writes
      // as U+FFFD: the clip folder and segment files would then not have the name
      // stored in the catalogue.
      for (let pad = 90; pad <= 100; pad++) {
        const title = 'x'.repeat(pad) + '\u{20000}'.repeat(5);
        const name = sanitizeName(title);
        assert.ok(Buffer.byteLength(name) <= 100);
        assert.ok(!LONE_SURROGATE.test(name), `${pad} x + 5 U+20000: name ends with lone surrogate ${JSON.stringify(name.slice(-2))}`);
      }
    });

    it('a sanitized name can be created as a folder inside the root', () => {
      for (const input of HOSTILE) {
        const name = sanitizeName(input);
        const dir = insideRoot(tmp, name);
        assert.equal(path.dirname(dir), tmp, `${JSON.stringify(input)} -> ${name}`);
        fs.mkdirSync(dir, { recursive: true });
        assert.ok(fs.readdirSync(tmp).includes(name));
      }
    });
  });

  describe('insideRoot', () => {
    it('throws for paths that escape the root', () => {
      for (const parts of [
        ['..'],
        ['../x'],
        ['a/../../x'],
        ['/etc/passwd'],
        ['a', '..', '..', 'x'],
        ['a', '/etc'],
        ['../' + path.basename(tmp) + '-other/x'],
      ]) {
        assert.throws(() => insideRoot(tmp, ...parts), /refused: .* would be outside the storage root/, JSON.stringify(parts));
      }
    });

    it('throws for the root itself', () => {
      for (const parts of [[], [''], ['.'], ['a/..'], ['./']]) {
        assert.throws(() => insideRoot(tmp, ...parts), /outside the storage root/, JSON.stringify(parts));
      }
    });

    it('accepts normal subpaths and returns the absolute path', () => {
      assert.equal(insideRoot(tmp, 'a'), path.join(tmp, 'a'));
      assert.equal(insideRoot(tmp, 'srv/ch01/2026-01-01/clip_000000'), path.join(tmp, 'srv', 'ch01', '2026-01-01', 'clip_000000'));
      assert.equal(insideRoot(tmp, 'a', 'b', 'c.json'), path.join(tmp, 'a', 'b', 'c.json'));
      assert.equal(insideRoot(tmp, 'a/../b'), path.join(tmp, 'b'));
      assert.equal(insideRoot(tmp, './a'), path.join(tmp, 'a'));
      assert.equal(insideRoot(path.relative(process.cwd(), tmp), 'a'), path.join(tmp, 'a'));
    });

    it('accepts a name inside the root that merely starts with two dots', () => {
      // "..notes" is a file inside the root, not the parent directory.
      assert.equal(insideRoot(tmp, '..notes'), path.join(tmp, '..notes'));
    });
  });

  describe('newClipDir', () => {
    const at = Date.UTC(2026, 0, 2, 3, 4, 5); // 2026-01-02T03:04:05Z

    it('is <server>/chNN/YYYY-MM-DD/<name>_HHMMSS, relative to the root', () => {
      assert.equal(newClipDir(tmp, 'srv-a', 3, 'News', at), 'srv-a/ch03/2026-01-02/News_030405');
      assert.equal(newClipDir(tmp, 'srv-a', 12, 'News', at), 'srv-a/ch12/2026-01-02/News_030405');
      assert.equal(channelDir(1), 'ch01');
      assert.equal(channelDir(123), 'ch123');
    });

    it('uses UTC, whatever the local time zone', () => {
      const tz = process.env.TZ;
      try {
        process.env.TZ = 'Pacific/Kiritimati'; // UTC+14: local date is already 2026-01-02
        const lateUtc = Date.UTC(2026, 0, 1, 23, 30, 0);
        assert.equal(new Date(lateUtc).getDate(), 2, 'the time zone took effect');
        assert.equal(newClipDir(tmp, 'srv', 1, 'Late', lateUtc), 'srv/ch01/2026-01-01/Late_233000');
      } finally {
        if (tz === undefined) delete process.env.TZ;
        else process.env.TZ = tz;
      }
    });

    it('adds -2, -3 ... when the folder is taken', () => {
      const first = newClipDir(tmp, 'srv', 1, 'News', at);
      fs.mkdirSync(path.join(tmp, first), { recursive: true });
      const second = newClipDir(tmp, 'srv', 1, 'News', at);
      assert.equal(second, `${first}-2`);
      fs.mkdirSync(path.join(tmp, second));
      assert.equal(newClipDir(tmp, 'srv', 1, 'News', at), `${first}-3`);
      assert.equal(newClipDir(tmp, 'srv', 1, 'Other', at), 'srv/ch01/2026-01-02/Other_030405');
    });

    it('sanitizes the server id', () => {
      const rel = newClipDir(tmp, '../../evil', 1, 'News', at);
      assert.equal(rel.split('/').length, 4);
      assert.ok(!rel.includes('..'));
      assert.equal(path.dirname(path.dirname(path.dirname(insideRoot(tmp, rel)))), path.join(tmp, sanitizeName('../../evil')));
    });

    it('does not create the folder', () => {
      const rel = newClipDir(tmp, 'srv', 1, 'News', at);
      assert.equal(fs.existsSync(path.join(tmp, rel)), false);
    });
  });

  describe('writeFileAtomic', () => {
    it('writes, replaces the content, and leaves no temp file', () => {
      const file = path.join(tmp, 'clip.json');
      writeFileAtomic(file, 'first version, quite long\n');
      assert.equal(fs.readFileSync(file, 'utf8'), 'first version, quite long\n');
      writeFileAtomic(file, 'second\n');
      assert.equal(fs.readFileSync(file, 'utf8'), 'second\n');
      const bytes = crypto.randomBytes(70_000);
      writeFileAtomic(file, bytes);
      assert.deepEqual(fs.readFileSync(file), bytes);
      writeFileAtomic(file, '');
      assert.equal(fs.readFileSync(file, 'utf8'), '');
      assert.deepEqual(fs.readdirSync(tmp), ['clip.json']);
    });

    it('writes unicode as UTF-8', () => {
      const file = path.join(tmp, 'u.txt');
      writeFileAtomic(file, 'Nachrichten – ニュース');
      assert.equal(fs.readFileSync(file, 'utf8'), 'Nachrichten – ニュース');
    });

    it('throws when the folder does not exist, leaving nothing behind', () => {
      assert.throws(() => writeFileAtomic(path.join(tmp, 'missing', 'x.json'), 'x'), /ENOENT/);
      assert.deepEqual(fs.readdirSync(tmp), []);
    });
  });

  describe('hashFile', () => {
    it('is the sha256 and size of the bytes', async () => {
      const cases: [string, Buffer][] = [
        ['empty.bin', Buffer.alloc(0)],
        ['small.txt', Buffer.from('hello\n')],
        ['big.bin', crypto.randomBytes(3 * 1024 * 1024 + 17)],
      ];
      for (const [name, data] of cases) {
        const file = path.join(tmp, name);
        fs.writeFileSync(file, data);
        const h = await hashFile(file);
        assert.equal(h.sha256, crypto.createHash('sha256').update(data).digest('hex'), name);
        assert.equal(h.bytes, data.length, name);
      }
      assert.equal((await hashFile(path.join(tmp, 'empty.bin'))).sha256, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    });

    it('rejects for a missing file', async () => {
      await assert.rejects(hashFile(path.join(tmp, 'nope.ts')), /ENOENT/);
    });
  });

  describe('sidecar', () => {
    function clip(dir: string): Clip {
      return {
        id: '7d3c2a4e-0000-4000-8000-000000000001',
        name: 'Nachrichten _ Ausgabe 1',
        dir,
        serverId: 'srv-a',
        group: 'news',
        channel: 2,
        channelName: 'Studio 2',
        lineId: 'line-1',
        title: 'Nachrichten – Ausgabe 1',
        attributes: { house: 'HN-42', take: 3, live: true, none: null },
        backup: 'on',
        frameRate: '25',
        tcIn: '10:00:00:00',
        tcOut: '10:00:10:00',
        startedAt: Date.UTC(2026, 10, 22, 20, 0, 0),
        stoppedAt: Date.UTC(2026, 10, 22, 20, 0, 10),
        frames: 250,
        durationMs: 10_000,
        state: 'closed',
        container: 'ts',
        source: 'rtsp://camera/1',
        gaps: [{ fromMs: 1, toMs: 2, reason: 'source lost', afterSegment: 0 }],
        segments: [
          { index: 0, file: 'x_00000.ts', run: 1, startSec: 0, endSec: 6, frames: 150, bytes: 1000, sha256: 'ab'.repeat(32), complete: true, wallStart: 1 },
          { index: 1, file: 'x_00001.ts', run: 1, startSec: 6, endSec: 10, frames: 100, bytes: 800, sha256: null, complete: false, wallStart: null },
        ],
        runs: 1,
        reason: null,
        createdAt: 1,
        updatedAt: 2,
      };
    }

    it('writeSidecar / readSidecar round trip', () => {
      const c = clip('srv-a/ch02/2026-11-22/Nachrichten _ Ausgabe 1_200000');
      fs.mkdirSync(path.join(tmp, c.dir), { recursive: true });
      writeSidecar(tmp, c);
      assert.deepEqual(fs.readdirSync(path.join(tmp, c.dir)), [SIDECAR_NAME]);
      const back = readSidecar(tmp, c.dir);
      assert.deepEqual(back, JSON.parse(JSON.stringify(sidecarOf(c))));
      assert.equal(back.format, SIDECAR_FORMAT);
      assert.equal(back.id, c.id);
      assert.equal(back.title, 'Nachrichten – Ausgabe 1');
      assert.deepEqual(back.attributes, c.attributes);
      assert.equal(back.server, 'srv-a');
      assert.equal(back.duration, '00:00:10:00');
      assert.equal(back.startedAtIso, '2026-11-22T20:00:00.000Z');
      assert.equal(back.stoppedAtIso, '2026-11-22T20:00:10.000Z');
      assert.equal((back.segments as unknown[]).length, 2);
      assert.deepEqual(back.segments, c.segments);
    });

    it('rewrites the sidecar in place', () => {
      const c = clip('d');
      fs.mkdirSync(path.join(tmp, 'd'));
      writeSidecar(tmp, c);
      writeSidecar(tmp, { ...c, state: 'recording', stoppedAt: null, tcOut: null });
      const back = readSidecar(tmp, 'd');
      assert.equal(back.state, 'recording');
      assert.equal(back.stoppedAt, null);
      assert.equal(back.stoppedAtIso, null);
      assert.deepEqual(fs.readdirSync(path.join(tmp, 'd')), [SIDECAR_NAME]);
    });

    it('refuses a clip folder outside the root', () => {
      assert.throws(() => writeSidecar(tmp, clip('../escape')), /outside the storage root/);
      assert.throws(() => readSidecar(tmp, '../../etc'), /outside the storage root/);
      assert.throws(() => writeSidecar(tmp, clip('')), /outside the storage root/);
    });
  });
});
