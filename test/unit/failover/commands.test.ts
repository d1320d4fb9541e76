/** What the failover-watch and failback nodes accept: commands and the watched-server list, refused with a readable sentence. */
import { strict as assert } from 'node:assert';
import { CommandError } from '../../../lib/model/errors';
import { WATCH_COMMANDS, parseFailbackCommand, parseWatchCommand, parseWatched } from '../../../lib/failover/commands';

/** The CommandError fn throws; fails the test when it throws something else or nothing. */
function refusal(fn: () => unknown): CommandError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CommandError, `expected a CommandError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the command to be refused');
}

/** The plain Error fn throws (parseWatched reports settings errors, not command refusals). */
function settingsError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the watched list to be refused');
}

describe('failover commands', () => {
  describe('parseWatchCommand', () => {
    it('accepts every command that needs no server, as an object, a JSON string or a Buffer', () => {
      for (const command of ['status', 'log', 'enable', 'disable'] as const) {
        assert.deepEqual(parseWatchCommand({ command }), { command });
        assert.deepEqual(parseWatchCommand(JSON.stringify({ command })), { command });
        assert.deepEqual(parseWatchCommand(Buffer.from(JSON.stringify({ command }))), { command });
      }
    });

    it('accepts the commands that name a server, with their options', () => {
      assert.deepEqual(parseWatchCommand({ command: 'drill', server: 'main-1', duration: 30 }), { command: 'drill', server: 'main-1', duration: 30 });
      assert.deepEqual(parseWatchCommand({ command: 'maintenance', server: 'main-1', on: true }), { command: 'maintenance', server: 'main-1', on: true });
      assert.deepEqual(parseWatchCommand({ command: 'maintenance', server: 'main-1', on: false }), { command: 'maintenance', server: 'main-1', on: false });
      assert.deepEqual(parseWatchCommand({ command: 'mark', server: 'rec.02_b', failed: false }), { command: 'mark', server: 'rec.02_b', failed: false });
      assert.deepEqual(parseWatchCommand({ command: 'release', server: 'rec.02_b' }), { command: 'release', server: 'rec.02_b' });
      assert.deepEqual(parseWatchCommand({ command: 'log', state: 'finalized', limit: 20 }), { command: 'log', state: 'finalized', limit: 20 });
      assert.deepEqual(parseWatchCommand({ command: 'status', server: 'main-1' }), { command: 'status', server: 'main-1' });
    });

    it('knows exactly the seven commands of the node', () => {
      assert.deepEqual([...WATCH_COMMANDS].sort(), ['disable', 'drill', 'enable', 'log', 'maintenance', 'mark', 'release', 'status']);
    });

    it('refuses a payload that is not JSON, saying so and how a command looks', () => {
      const e = refusal(() => parseWatchCommand('{"command": "status"'));
      assert.match(e.message, /not valid JSON/);
      assert.match(e.message, /expected \{"command": "status"\|"log"\|"drill"/);
    });

    it('refuses a payload that is not an object', () => {
      for (const bad of [null, 42, true, ['status'], '"status"', '[1]']) {
        const e = refusal(() => parseWatchCommand(bad));
        assert.match(e.message, /msg\.payload must be an object/, `for ${JSON.stringify(bad)}`);
      }
    });

    it('refuses an unknown command, listing the known ones', () => {
      const e = refusal(() => parseWatchCommand({ command: 'reboot' }));
      assert.match(e.message, /^Command refused: command must be one of: /);
      for (const c of WATCH_COMMANDS) assert.ok(e.message.includes(`"${c}"`), `${c} is listed in: ${e.message}`);
    });

    it('refuses a command without a command', () => {
      const e = refusal(() => parseWatchCommand({ server: 'main-1' }));
      assert.match(e.message, /needs the field "command"/);
    });

    for (const command of ['drill', 'maintenance', 'mark', 'release']) {
      it(`refuses ${command} without a server, naming the field`, () => {
        const e = refusal(() => parseWatchCommand({ command, on: true }));
        assert.equal(e.message, `Command refused: ${command} needs "server" (the server it is for)`);
      });
    }

    it('refuses maintenance without "on"', () => {
      const e = refusal(() => parseWatchCommand({ command: 'maintenance', server: 'main-1' }));
      assert.match(e.message, /maintenance needs "on": true or false/);
    });

    it('refuses "on" that is not a boolean', () => {
      const e = refusal(() => parseWatchCommand({ command: 'maintenance', server: 'main-1', on: 'yes' }));
      assert.match(e.message, /on must be of type boolean/);
    });

    it('refuses a server name that is not a server id', () => {
      for (const server of ['-main', 'main 1', 'main/1', '', 'x'.repeat(65)]) {
        const e = refusal(() => parseWatchCommand({ command: 'release', server }));
        assert.match(e.message, /^Command refused: server is not in the expected form/, `for "${server}": ${e.message}`);
      }
    });

    it('refuses a server that is not a string', () => {
      const e = refusal(() => parseWatchCommand({ command: 'release', server: 7 }));
      assert.match(e.message, /server must be of type string/);
    });

    it('refuses an extra field, naming it', () => {
      const e = refusal(() => parseWatchCommand({ command: 'status', verbose: true }));
      assert.match(e.message, /unknown field "verbose"/);
    });

    it('refuses a drill duration or log limit out of range', () => {
      assert.match(refusal(() => parseWatchCommand({ command: 'drill', server: 'm1', duration: 0 })).message, /duration/);
      assert.match(refusal(() => parseWatchCommand({ command: 'drill', server: 'm1', duration: 3601 })).message, /duration/);
      assert.match(refusal(() => parseWatchCommand({ command: 'log', limit: 0 })).message, /limit must be >= 1/);
      assert.match(refusal(() => parseWatchCommand({ command: 'log', limit: 2.5 })).message, /limit must be a whole number/);
      assert.match(refusal(() => parseWatchCommand({ command: 'log', state: 'open' })).message, /state must be one of: "active", "finalized", "all"/);
    });
  });

  describe('parseFailbackCommand', () => {
    it('accepts a failover log entry, a server, and check', () => {
      assert.deepEqual(parseFailbackCommand({ entryId: 3 }), { entryId: 3 });
      assert.deepEqual(parseFailbackCommand({ server: 'main-1' }), { server: 'main-1' });
      assert.deepEqual(parseFailbackCommand({ entryId: 3, check: true }), { entryId: 3, check: true });
      assert.deepEqual(parseFailbackCommand({ server: 'main-1', check: false }), { server: 'main-1', check: false });
      assert.deepEqual(parseFailbackCommand('{"entryId": 12}'), { entryId: 12 });
      assert.deepEqual(parseFailbackCommand(Buffer.from('{"server": "main-2"}')), { server: 'main-2' });
    });

    it('refuses a command that names neither an entry nor a server', () => {
      for (const bad of [{}, { check: true }]) {
        const e = refusal(() => parseFailbackCommand(bad));
        assert.match(e.message, /^Failback refused: it names no failover log entry and no server; expected \{"entryId"/);
      }
    });

    it('refuses entryId 0 or a string with a readable sentence', () => {
      const zero = refusal(() => parseFailbackCommand({ entryId: 0 }));
      assert.match(zero.message, /^Failback refused: entryId must be >= 1/);
      const str = refusal(() => parseFailbackCommand({ entryId: '3' }));
      assert.match(str.message, /^Failback refused: entryId must be a whole number/);
      const frac = refusal(() => parseFailbackCommand({ entryId: 1.5 }));
      assert.match(frac.message, /entryId must be a whole number/);
    });

    it('refuses a bad server name, an extra field, a check that is not a boolean', () => {
      assert.match(refusal(() => parseFailbackCommand({ server: '../etc' })).message, /^Failback refused: server is not in the expected form/);
      assert.match(refusal(() => parseFailbackCommand({ entryId: 1, force: true })).message, /unknown field "force"/);
      assert.match(refusal(() => parseFailbackCommand({ entryId: 1, check: 'yes' })).message, /check must be of type boolean/);
    });

    it('refuses what is not JSON or not an object', () => {
      assert.match(refusal(() => parseFailbackCommand('entry 3')).message, /not valid JSON/);
      assert.match(refusal(() => parseFailbackCommand([1])).message, /must be an object/);
      assert.match(refusal(() => parseFailbackCommand(3)).message, /must be an object/);
    });
  });

  describe('parseWatched', () => {
    it('reads names in priority order, without probes', () => {
      assert.deepEqual(parseWatched('main-1\nmain-2\nmain-3'), [
        { server: 'main-1', probe: null },
        { server: 'main-2', probe: null },
        { server: 'main-3', probe: null },
      ]);
    });

    it('reads a host:port probe after the name', () => {
      assert.deepEqual(parseWatched('main-1 10.0.0.5:1880\nmain-2 rec2.example.org:8080\nmain-3 [::1]:1'), [
        { server: 'main-1', probe: { host: '10.0.0.5', port: 1880 } },
        { server: 'main-2', probe: { host: 'rec2.example.org', port: 8080 } },
        { server: 'main-3', probe: { host: '::1', port: 1 } },
      ]);
    });

    it('takes commas, semicolons, newlines, blank lines and spaces alike', () => {
      const w = parseWatched('  b 10.0.0.2:1880 ,a;\r\n\n\t c\t10.0.0.3:65535  \n');
      assert.deepEqual(
        w.map((x) => x.server),
        ['b', 'a', 'c'],
      );
      assert.deepEqual(w[0].probe, { host: '10.0.0.2', port: 1880 });
      assert.equal(w[1].probe, null);
      assert.deepEqual(w[2].probe, { host: '10.0.0.3', port: 65535 });
    });

    it('refuses a server listed twice', () => {
      assert.match(settingsError(() => parseWatched('main-1, main-2, main-1 10.0.0.1:1880')).message, /watched server "main-1" is listed twice/);
    });

    it('refuses a bad port or a probe that is not host:port', () => {
      for (const probe of ['10.0.0.5:0', '10.0.0.5:65536', '10.0.0.5:123456', '10.0.0.5', '10.0.0.5:http', ':1880']) {
        const e = settingsError(() => parseWatched(`main-1 ${probe}`));
        assert.equal(e.message, `probe "${probe}" of main-1 must be host:port, e.g. 10.0.0.5:1880`);
      }
    });

    it('refuses a bad server name and more than one probe', () => {
      assert.match(settingsError(() => parseWatched('main/1')).message, /watched server "main\/1" is not a valid server id/);
      assert.match(settingsError(() => parseWatched('.hidden')).message, /not a valid server id/);
      assert.match(settingsError(() => parseWatched('main-1 10.0.0.1:1 10.0.0.2:2')).message, /give a name and at most one probe address/);
    });

    it('refuses an empty list', () => {
      for (const empty of ['', '  \n , ;\n', undefined as unknown as string, null as unknown as string]) {
        assert.match(settingsError(() => parseWatched(empty)).message, /list at least one server to watch/);
      }
    });
  });
});
