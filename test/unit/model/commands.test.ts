import { strict as assert } from 'node:assert';
import { CommandError } from '../../../lib/model/errors';
import { COMMANDS, MAX_COMMAND_BYTES, READ_ONLY_LINE_FIELDS, parseCommand } from '../../../lib/model/commands';

/**
 * parseCommand(input) must throw a CommandError whose message is one readable
 * sentence for the operator: starts with "Command refused", matches every
 * pattern, and shows none of ajv's raw syntax (JSON pointers, "must NOT").
 */
function refused(input: unknown, ...patterns: RegExp[]): string {
  let caught: unknown;
  try {
    parseCommand(input);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected ${describeInput(input)} to be refused, but it was accepted`);
  assert.ok(caught instanceof CommandError, `expected a CommandError, got ${String(caught)}`);
  const e = caught as CommandError;
  assert.equal(e.name, 'CommandError');
  assert.equal(e.code, 'EINVAL');
  assert.match(e.message, /^Command refused: /);
  assert.doesNotMatch(e.message, /must NOT|#\/|\/line|instancePath|undefined/, `raw ajv wording in: ${e.message}`);
  for (const p of patterns) assert.match(e.message, p, `"${e.message}" does not match ${String(p)}`);
  return e.message;
}

function describeInput(input: unknown): string {
  if (Buffer.isBuffer(input)) return `Buffer(${input.length})`;
  const s = typeof input === 'string' ? input : JSON.stringify(input);
  return String(s).length > 120 ? `${String(s).slice(0, 120)}...` : String(s);
}

/** Every input refused; collects the ones whose message misses a pattern, then fails once listing them all. */
function allRefused(inputs: unknown[], ...patterns: RegExp[]): void {
  const problems: string[] = [];
  for (const input of inputs) {
    try {
      refused(input, ...patterns);
    } catch (err) {
      problems.push(`${describeInput(input)}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  if (problems.length > 0) assert.fail(`${problems.length} of ${inputs.length} inputs:\n${problems.join('\n')}`);
}

const FULL_LINE = {
  id: 'NEWS-2026.11.22:evening_1',
  n: 1,
  group: 'news',
  title: 'Nachrichten – Ausgabe 1',
  start: 'time',
  source: 'rtsp://camera.example/stream1',
  startTime: '2026-11-22T21:30:00Z',
  stopTime: 1795383000000,
  duration: null,
  backup: 'on',
  attributes: { house: 'HN-0042', take: 3, live: true, note: null, 'a.b_c-d': 'x' },
};

const VALID: Record<(typeof COMMANDS)[number], object> = {
  add: { command: 'add', line: { title: 'Evening news' }, requestId: 'req-1' },
  update: { command: 'update', line: { id: 'l1', title: 'Late news', attributes: { house: null } } },
  remove: { command: 'remove', line: { n: 2 } },
  start: { command: 'start', line: { id: 'l1' } },
  stop: { command: 'stop' },
  list: { command: 'list' },
  get: { command: 'get', requestId: 'abc' },
};

describe('schemas: parseCommand', () => {
  describe('accepts valid commands', () => {
    it('covers every command name', () => {
      assert.deepEqual(Object.keys(VALID).sort(), [...COMMANDS].sort());
    });

    for (const name of COMMANDS) {
      it(`"${name}" as an object, a JSON string and a Buffer`, () => {
        const cmd = VALID[name];
        const fromObject = parseCommand(cmd);
        assert.deepEqual(fromObject, cmd);
        assert.equal(fromObject.command, name);
        assert.deepEqual(parseCommand(JSON.stringify(cmd)), cmd);
        assert.deepEqual(parseCommand(Buffer.from(JSON.stringify(cmd), 'utf8')), cmd);
      });
    }

    it('a line with every input field set', () => {
      const cmd = { command: 'add', line: FULL_LINE };
      assert.deepEqual(parseCommand(cmd), cmd);
      assert.deepEqual(parseCommand(Buffer.from(JSON.stringify(cmd))), cmd);
    });

    it('durations as timecodes with any separator and as seconds; null clears', () => {
      for (const duration of ['00:30:00:00', '00:01:00;02', '01.00.00.00', 90, 0.5, 86399.5, null]) {
        assert.deepEqual(parseCommand({ command: 'update', line: { id: 'a', duration } }).line, { id: 'a', duration });
      }
    });

    it('times as epoch milliseconds or ISO strings; stopTime may be null', () => {
      for (const t of [0, 1795383000000, '2026-11-22T21:30:00Z', '2026-11-22T22:30:00.000+01:00']) {
        parseCommand({ command: 'add', line: { title: 't', startTime: t, stopTime: null } });
      }
    });

    it('a JSON string of exactly MAX_COMMAND_BYTES bytes', () => {
      const json = JSON.stringify({ command: 'list' });
      const exact = json + ' '.repeat(MAX_COMMAND_BYTES - json.length);
      assert.equal(Buffer.byteLength(exact), MAX_COMMAND_BYTES);
      assert.equal(parseCommand(exact).command, 'list');
    });

    it('does not copy or alter the object it is given', () => {
      const cmd = { command: 'add', line: { title: 'x' } };
      assert.equal(parseCommand(cmd), cmd);
      assert.deepEqual(cmd, { command: 'add', line: { title: 'x' } });
    });
  });

  describe('refuses with a readable CommandError', () => {
    it('a string that is not JSON', () => {
      refused('start line 1', /not valid JSON/, /expected \{"command"/);
      refused('{"command": "add",', /not valid JSON/);
      refused(Buffer.from('\u0000\u0001garbage'), /not valid JSON/);
      refused('', /not valid JSON/);
    });

    it('a value that is not an object', () => {
      for (const v of [null, undefined, 42, true, 'null', '42', '"add"', 'true']) {
        refused(v, /must be an object/, /"command"/);
      }
    });

    it('an array', () => {
      refused([], /must be an object/);
      refused([{ command: 'list' }], /must be an object/);
      refused('[{"command":"list"}]', /must be an object/);
    });

    it('a missing command', () => {
      refused({}, /needs the field "command"/);
      refused({ line: { title: 'x' } }, /needs the field "command"/);
    });

    it('an unknown command, listing the known ones', () => {
      const msg = refused({ command: 'record' }, /command must be one of/);
      for (const c of COMMANDS) assert.match(msg, new RegExp(`"${c}"`));
      refused({ command: 'ADD' }, /one of/);
      refused({ command: 7 }, /one of/);
    });

    it('an unknown top-level field, naming it', () => {
      refused({ command: 'list', verbose: true }, /unknown field "verbose"/);
      refused({ command: 'add', lines: [] }, /unknown field "lines"/);
    });

    it('an unknown line field, naming it', () => {
      refused({ command: 'add', line: { title: 'x', colour: 'red' } }, /\bline\b/, /unknown field "colour"/);
      refused({ command: 'update', line: { id: 'a', Title: 'x' } }, /unknown field "Title"/);
    });

    it('every read-only line field, saying the recorder sets it', () => {
      for (const field of ['status', 'inPoint', 'outPoint', 'curPoint', 'clipId', 'reason', 'origin', 'createdAt', 'updatedAt', 'startTimeTC', 'stopTimeTC']) {
        assert.ok((READ_ONLY_LINE_FIELDS as readonly string[]).includes(field), field);
      }
      for (const field of READ_ONLY_LINE_FIELDS) {
        refused({ command: 'update', line: { id: 'a', [field]: 'x' } }, new RegExp(`line\\.${field}\\b`), /set by the recorder/, /cannot be given/);
      }
    });

    it('fields of the wrong type', () => {
      refused({ command: 'add', line: 'Evening news' }, /\bline must be of type object/);
      refused({ command: 'add', line: { title: 42 } }, /line\.title must be of type string/);
      refused({ command: 'add', line: { title: 'x', n: 1.5 } }, /line\.n must be a whole number/);
      refused({ command: 'add', line: { title: 'x', n: '2' } }, /line\.n must be a whole number/);
      refused({ command: 'add', line: { title: 'x', n: 0 } }, /line\.n must be >= 1/);
      refused({ command: 'add', line: { title: 'x', n: 10000 } }, /line\.n must be <= 9999/);
      refused({ command: 'add', line: { title: 'x', group: ['a'] } }, /line\.group must be of type string/);
      refused({ command: 'add', line: { title: 'x', source: 5 } }, /line\.source must be of type string/);
      refused({ command: 'add', line: { title: 'x', source: '' } }, /line\.source must not be empty/);
      refused({ command: 'add', line: { title: 'x', start: 'later' } }, /line\.start must be one of: "manual", "time"/);
      refused({ command: 'add', line: { title: 'x', backup: 'yes' } }, /line\.backup must be one of: "off", "on", "aux"/);
      refused({ command: 'add', line: { title: 'x', attributes: 'house=1' } }, /line\.attributes must be of type object/);
      refused({ command: 'add', line: { title: 'x', attributes: ['a'] } }, /line\.attributes must be of type object/);
      refused({ command: 'list', requestId: 17 }, /requestId must be of type string/);
      refused({ command: 'list', requestId: 'r'.repeat(129) }, /requestId is too long/, /128/);
    });

    it('an empty or too-long title', () => {
      refused({ command: 'add', line: { title: '' } }, /line\.title must not be empty/);
      refused({ command: 'add', line: { title: 'x'.repeat(201) } }, /line\.title is too long/, /at most 200 characters/);
      assert.equal(parseCommand({ command: 'add', line: { title: 'x'.repeat(200) } }).line!.title!.length, 200);
    });

    it('an id that breaks the id pattern', () => {
      allRefused(
        ['', '-starts-with-dash', '.hidden', 'has space', '../etc', 'a/b', 'x'.repeat(65), 'ümlaut', 'semi;colon'].map((id) => ({
          command: 'start',
          line: { id },
        })),
        /line\.id must be 1 to 64 letters, digits/,
        /starting with a letter or digit/,
      );
      parseCommand({ command: 'start', line: { id: 'A'.repeat(64) } });
    });

    it('an attribute name that breaks the name pattern', () => {
      allRefused(
        ['', 'has space', 'a/b', 'ü', 'x'.repeat(65), 'semi;colon'].map((name) => ({ command: 'add', line: { title: 't', attributes: { [name]: 1 } } })),
        /attribute names must be 1 to 64 letters, digits/,
      );
    });

    it('more than 64 attributes', () => {
      const attributes: Record<string, number> = {};
      for (let i = 0; i < 65; i++) attributes[`a${i}`] = i;
      refused({ command: 'add', line: { title: 't', attributes } }, /line\.attributes has too many entries/, /at most 64/);
    });

    it('an attribute value that is too long', () => {
      refused({ command: 'add', line: { title: 't', attributes: { note: 'x'.repeat(1025) } } }, /line\.attributes\.note is too long/, /1024/);
    });

    it('an attribute value of the wrong type, saying which types are allowed', () => {
      // An object or an array is none of string, number, boolean, null: the message
      // must name the attribute and the allowed kinds, not only the first of them.
      allRefused(
        [{ nested: { a: 1 } }, { list: [1, 2] }].map((attributes) => ({ command: 'add', line: { title: 't', attributes } })),
        /line\.attributes\.(nested|list)/,
        /string/,
        /number/,
        /boolean/,
        /null/,
      );
    });

    it('a command larger than MAX_COMMAND_BYTES (string, Buffer and object)', () => {
      const json = JSON.stringify({ command: 'list' });
      const over = json + ' '.repeat(MAX_COMMAND_BYTES - json.length + 1);
      refused(over, /larger than 65536 bytes/);
      refused(Buffer.from(over), /larger than 65536 bytes/);
      refused({ command: 'add', line: { title: 't', attributes: { note: 'x'.repeat(MAX_COMMAND_BYTES) } } }, /larger than 65536 bytes/);
      // multi-byte characters count as bytes in a string
      const wide = JSON.stringify({ command: 'add', line: { title: 't', attributes: { note: '日'.repeat(22000) } } });
      assert.ok(wide.length < MAX_COMMAND_BYTES && Buffer.byteLength(wide) > MAX_COMMAND_BYTES);
      refused(wide, /larger than 65536 bytes/);
    });

    it('an object whose JSON is larger than MAX_COMMAND_BYTES in UTF-8 bytes, like its string form', () => {
      // 60 attributes of 1000 three-byte characters: about 60 600 UTF-16 units but
      // about 181 000 bytes of JSON. The same command as a string or a Buffer is
      // refused as larger than MAX_COMMAND_BYTES ("in bytes of JSON"); as an object
      // it must be refused too.
      const attributes: Record<string, string> = {};
      for (let i = 0; i < 60; i++) attributes[`a${i}`] = '日'.repeat(1000);
      const cmd = { command: 'add', line: { title: 't', attributes } };
      const json = JSON.stringify(cmd);
      assert.ok(json.length < MAX_COMMAND_BYTES && Buffer.byteLength(json) > MAX_COMMAND_BYTES);
      refused(json, /larger than 65536 bytes/);
      refused(Buffer.from(json), /larger than 65536 bytes/);
      refused(cmd, /larger than 65536 bytes/);
    });

    it('a duration in a form that is neither a timecode nor a number of seconds', () => {
      // The message must tell the operator the two accepted forms, not show a regular
      // expression or ask for a string when a number was given.
      allRefused(
        ['1 hour', '1:00:00:00', '00:30:00', '00-30-00-00', true, { s: 5 }].map((duration) => ({ command: 'add', line: { title: 't', duration } })),
        /line\.duration/,
        /timecode/i,
        /HH:MM:SS:FF/,
        /seconds/,
      );
    });

    it('a duration in seconds out of range, without asking for a string', () => {
      const problems: string[] = [];
      for (const duration of [-5, 0, 100000]) {
        const msg = refused({ command: 'add', line: { title: 't', duration } }, /line\.duration/);
        if (/of type string/.test(msg) || !/seconds|> 0|<= 86400/.test(msg)) problems.push(`${duration}: "${msg}"`);
      }
      if (problems.length > 0) assert.fail(`a number of seconds out of range is answered as if it had to be a string:\n${problems.join('\n')}`);
    });

    it('a time in a form that is neither epoch milliseconds nor an ISO date-time', () => {
      // 'tomorrow' is a string: answering "must be a whole number" misleads the operator.
      allRefused(
        [{ startTime: 'tomorrow' }, { startTime: '21:30' }, { startTime: true }, { startTime: 'x'.repeat(41) }, { stopTime: 'soon' }, { stopTime: false }].map(
          (t) => ({ command: 'add', line: { title: 't', ...t } }),
        ),
        /line\.(startTime|stopTime)/,
        /epoch milliseconds/,
        /ISO 8601/,
      );
    });

    it('a negative time or one past the year 275760', () => {
      refused({ command: 'add', line: { title: 't', startTime: -1 } }, /line\.startTime must be >= 0/);
      refused({ command: 'add', line: { title: 't', startTime: 8640000000001 } }, /line\.startTime must be <= 8640000000000/);
    });

    it('refused input is a CommandError that can be told apart from other errors', () => {
      try {
        parseCommand({ command: 'nope' });
        assert.fail('accepted');
      } catch (err) {
        assert.ok(err instanceof CommandError);
        assert.ok(err instanceof Error);
      }
    });
  });
});
