import { strict as assert } from 'node:assert';
import { CommandError } from '../../../lib/model/errors';
import { Line, RecList, RecListOptions, durationMs, parseDuration, parseTime, plannedStop } from '../../../lib/model/reclist';
import { LineInput } from '../../../lib/model/commands';

const NOW = Date.UTC(2026, 10, 22, 20, 0, 0); // 2026-11-22T20:00:00Z
const MIN = 60_000;

/** A complete line, for states the rec-list itself never creates (recording, stopped ...). */
function mkLine(p: Partial<Line> & { id: string; n: number }): Line {
  return {
    group: '',
    title: `Line ${p.id}`,
    status: 'ready',
    start: 'manual',
    source: 'LIVE',
    inPoint: null,
    outPoint: null,
    curPoint: null,
    startTime: null,
    stopTime: null,
    duration: null,
    backup: 'off',
    attributes: {},
    clipId: null,
    reason: null,
    origin: null,
    createdAt: NOW - 3_600_000,
    updatedAt: NOW - 3_600_000,
    ...p,
  };
}

function recordingLine(p: Partial<Line> & { id: string; n: number }): Line {
  return mkLine({ status: 'recording', clipId: `clip-${p.id}`, startTime: NOW - 5 * MIN, inPoint: '10:00:00:00', ...p });
}

function stoppedLine(p: Partial<Line> & { id: string; n: number }): Line {
  return mkLine({
    status: 'stopped',
    clipId: `clip-${p.id}`,
    startTime: NOW - 30 * MIN,
    stopTime: NOW - 20 * MIN,
    inPoint: '09:30:00:00',
    outPoint: '09:40:00:00',
    duration: '00:10:00:00',
    ...p,
  });
}

/** The channel tells its rec-list which line owns it (is recording); a status alone does not. */
function active(list: RecList, id: string): RecList {
  list.setActive(id);
  return list;
}

/** A rec-list with lines a, b, c ... added through planAdd/commit. */
function listOf(ids: string[], opts: Partial<RecListOptions> = {}): RecList {
  const list = new RecList({ frameRate: '25', ...opts });
  for (const id of ids) list.commit(list.planAdd({ id, title: `Title ${id}` }, NOW).renumbered);
  return list;
}

const ids = (l: RecList | Line[]) => (Array.isArray(l) ? l : l.all()).map((x) => `${x.n}:${x.id}`);
const snapshot = (l: RecList) => JSON.stringify(l.all());

/** fn must throw a CommandError whose message matches every pattern (and code, if given). */
function refuses(fn: () => unknown, patterns: RegExp[], code?: string): CommandError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, 'expected a CommandError, nothing was thrown');
  assert.ok(caught instanceof CommandError, `expected a CommandError, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  if (code) assert.equal(caught.code, code);
  return caught;
}

/** fn must be refused and leave the list exactly as it was. */
function refusesUnchanged(list: RecList, fn: () => unknown, patterns: RegExp[], code?: string): void {
  const before = snapshot(list);
  refuses(fn, patterns, code);
  assert.equal(snapshot(list), before, 'a refused command changed the rec-list');
}

describe('reclist', () => {
  describe('planAdd', () => {
    it('assigns an id and the next number, and the defaults of a manual line', () => {
      const list = new RecList({ frameRate: '25' });
      const { line, renumbered } = list.planAdd({ title: 'Evening news' }, NOW);
      assert.match(line.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(line.n, 1);
      assert.equal(line.title, 'Evening news');
      assert.equal(line.status, 'ready');
      assert.equal(line.start, 'manual');
      assert.equal(line.backup, 'off');
      assert.equal(line.source, 'LIVE');
      assert.equal(line.group, '');
      assert.deepEqual(line.attributes, {});
      assert.equal(line.startTime, null);
      assert.equal(line.stopTime, null);
      assert.equal(line.duration, null);
      assert.equal(line.inPoint, null);
      assert.equal(line.outPoint, null);
      assert.equal(line.curPoint, null);
      assert.equal(line.clipId, null);
      assert.equal(line.reason, null);
      assert.equal(line.origin, null);
      assert.equal(line.createdAt, NOW);
      assert.equal(line.updatedAt, NOW);
      assert.deepEqual(renumbered, [line]);
      const second = list.planAdd({ title: 'x' }, NOW).line;
      assert.notEqual(second.id, line.id, 'ids are unique');
    });

    it('does not change the list until commit()', () => {
      const list = listOf(['a', 'b']);
      const before = snapshot(list);
      const { line, renumbered } = list.planAdd({ id: 'z', title: 'Z', n: 1 }, NOW);
      assert.equal(snapshot(list), before);
      assert.equal(list.size, 2);
      assert.equal(list.byId('z'), undefined);
      list.commit(renumbered);
      assert.deepEqual(ids(list), ['1:z', '2:a', '3:b']);
      assert.deepEqual(list.byId('z'), line);
    });

    it('numbers lines in order and appends at the end by default', () => {
      const list = listOf(['a', 'b', 'c']);
      assert.deepEqual(ids(list), ['1:a', '2:b', '3:c']);
      const { line } = list.planAdd({ title: 'd' }, NOW);
      assert.equal(line.n, 4);
    });

    it('inserts at a position and renumbers the lines after it', () => {
      const list = listOf(['a', 'b', 'c']);
      const { line, renumbered } = list.planAdd({ id: 'x', title: 'X', n: 2 }, NOW);
      assert.equal(line.n, 2);
      assert.deepEqual(ids(renumbered), ['1:a', '2:x', '3:b', '4:c']);
      const { renumbered: atEnd } = list.planAdd({ id: 'y', title: 'Y', n: 4 }, NOW);
      assert.deepEqual(ids(atEnd), ['1:a', '2:b', '3:c', '4:y']);
      const { renumbered: first } = list.planAdd({ id: 'w', title: 'W', n: 1 }, NOW);
      assert.deepEqual(ids(first), ['1:w', '2:a', '3:b', '4:c']);
    });

    it('keeps the given id, group, source, backup and attributes (copied)', () => {
      const list = new RecList({ frameRate: '25' });
      const attributes = { house: 'HN-1', take: 2, live: true };
      const { line } = list.planAdd({ id: 'news-1', title: 'N', group: 'news', source: 'TESTPATTERN', backup: 'on', attributes }, NOW);
      assert.equal(line.id, 'news-1');
      assert.equal(line.group, 'news');
      assert.equal(line.source, 'TESTPATTERN');
      assert.equal(line.backup, 'on');
      assert.deepEqual(line.attributes, attributes);
      attributes.take = 99;
      assert.equal(line.attributes.take, 2, 'attributes are a copy of the input');
    });

    it('a line with startTime is a timed, armed line (start inferred)', () => {
      const list = new RecList({ frameRate: '25' });
      const t = NOW + 10 * MIN;
      const { line } = list.planAdd({ title: 'Timed', startTime: new Date(t).toISOString(), duration: 90 }, NOW);
      assert.equal(line.start, 'time');
      assert.equal(line.status, 'armed');
      assert.equal(line.startTime, t);
      assert.equal(line.duration, '00:01:30:00');
      const explicit = list.planAdd({ title: 'T2', start: 'time', startTime: t, stopTime: t + 5 * MIN }, NOW).line;
      assert.equal(explicit.status, 'armed');
      assert.equal(explicit.stopTime, t + 5 * MIN);
    });

    it('accepts a timed start a little in the past, within the tolerance', () => {
      const list = new RecList({ frameRate: '25' });
      assert.equal(list.planAdd({ title: 'x', startTime: NOW - 4000 }, NOW).line.status, 'armed');
      const strict = new RecList({ frameRate: '25', lateStartToleranceMs: 0 });
      refuses(() => strict.planAdd({ title: 'x', startTime: NOW - 1 }, NOW), [/in the past/]);
    });

    describe('refuses', () => {
      it('a line without a title', () => {
        const list = listOf(['a']);
        refusesUnchanged(list, () => list.planAdd({}, NOW), [/needs line\.title/]);
        refusesUnchanged(list, () => list.planAdd({ title: '' }, NOW), [/needs line\.title/]);
      });

      it('a duplicate id', () => {
        const list = listOf(['a']);
        refusesUnchanged(list, () => list.planAdd({ id: 'a', title: 'again' }, NOW), [/id "a" already exists/, /update/], 'EEXIST');
      });

      it('backup "aux" unless allowAux', () => {
        const list = listOf(['a']);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', backup: 'aux' }, NOW), [/backup "aux"/, /backup-link/]);
        const aux = listOf(['a'], { allowAux: true });
        assert.equal(aux.planAdd({ title: 'x', backup: 'aux' }, NOW).line.backup, 'aux');
      });

      it('a timed line without startTime', () => {
        const list = listOf([]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', start: 'time' }, NOW), [/start "time" needs line\.startTime/]);
      });

      it('a start time in the past beyond the tolerance', () => {
        const list = listOf([]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', startTime: NOW - 6000 }, NOW), [/in the past/, /manual/]);
        const lenient = new RecList({ frameRate: '25', lateStartToleranceMs: 60_000 });
        assert.equal(lenient.planAdd({ title: 'x', startTime: NOW - 59_000 }, NOW).line.status, 'armed');
        refuses(() => lenient.planAdd({ title: 'x', startTime: NOW - 61_000 }, NOW), [/in the past/]);
      });

      it('a stopTime at or before the startTime', () => {
        const list = listOf([]);
        const t = NOW + 10 * MIN;
        refusesUnchanged(list, () => list.planAdd({ title: 'x', startTime: t, stopTime: t - 1 }, NOW), [/stopTime must be after line\.startTime/]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', startTime: t, stopTime: t }, NOW), [/stopTime must be after/]);
      });

      it('stopTime and duration together', () => {
        const list = listOf([]);
        const t = NOW + 10 * MIN;
        refusesUnchanged(list, () => list.planAdd({ title: 'x', startTime: t, stopTime: t + MIN, duration: 60 }, NOW), [
          /stopTime or line\.duration, not both/,
        ]);
      });

      it('a number that would leave a hole', () => {
        const list = listOf(['a', 'b']);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', n: 4 }, NOW), [/line\.n 4 would leave a hole/, /1 to 3/]);
      });

      it('startTime on a manual line', () => {
        const list = listOf([]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', start: 'manual', startTime: NOW + MIN }, NOW), [
          /startTime is only for lines with start "time"/,
        ]);
      });

      it('an unparseable time or duration', () => {
        const list = listOf([]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', startTime: 'next tuesday 9pm' }, NOW), [/line\.startTime/, /not a date-time/]);
        refusesUnchanged(list, () => list.planAdd({ title: 'x', duration: '00:00:61:00' }, NOW), [/line\.duration/, /not a valid timecode/]);
      });
    });
  });

  describe('planUpdate', () => {
    it('does not change the list until commit()', () => {
      const list = listOf(['a', 'b', 'c']);
      const before = snapshot(list);
      const { line, renumbered } = list.planUpdate({ id: 'c', n: 1, title: 'C!', attributes: { k: 'v' } }, NOW + 1000);
      assert.equal(snapshot(list), before);
      assert.equal(list.byId('c')!.title, 'Title c');
      assert.deepEqual(list.byId('c')!.attributes, {});
      list.commit(renumbered);
      assert.deepEqual(ids(list), ['1:c', '2:a', '3:b']);
      assert.deepEqual(list.byId('c'), line);
      assert.equal(line.updatedAt, NOW + 1000);
    });

    it('moves a line by n and renumbers', () => {
      const list = listOf(['a', 'b', 'c', 'd']);
      assert.deepEqual(ids(list.planUpdate({ id: 'a', n: 3 }, NOW).renumbered), ['1:b', '2:c', '3:a', '4:d']);
      assert.deepEqual(ids(list.planUpdate({ id: 'd', n: 1 }, NOW).renumbered), ['1:d', '2:a', '3:b', '4:c']);
      assert.deepEqual(ids(list.planUpdate({ id: 'b', n: 4 }, NOW).renumbered), ['1:a', '2:c', '3:d', '4:b']);
      assert.deepEqual(ids(list.planUpdate({ id: 'b', n: 2, title: 'same place' }, NOW).renumbered), ['1:a', '2:b', '3:c', '4:d']);
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', n: 5 }, NOW), [/line\.n 5 is past the end/, /4 lines/]);
    });

    it('finds the line by n when no id is given (n is then not a move)', () => {
      const list = listOf(['a', 'b', 'c']);
      const { line, renumbered } = list.planUpdate({ n: 2, title: 'B' }, NOW);
      assert.equal(line.id, 'b');
      assert.equal(line.title, 'B');
      assert.deepEqual(ids(renumbered), ['1:a', '2:b', '3:c']);
    });

    it('refuses an unknown line', () => {
      const list = listOf(['a']);
      refusesUnchanged(list, () => list.planUpdate({ id: 'zz', title: 'x' }, NOW), [/no line with id "zz"/], 'ENOENT');
      refusesUnchanged(list, () => list.planUpdate({ n: 7, title: 'x' }, NOW), [/no line with number 7/], 'ENOENT');
      refusesUnchanged(list, () => list.planUpdate({ title: 'x' }, NOW), [/needs line\.id or line\.n/]);
    });

    it('merges attributes and deletes those set to null', () => {
      const list = new RecList({ frameRate: '25' });
      list.commit(list.planAdd({ id: 'a', title: 'A', attributes: { house: 'HN-1', take: 1, keep: true } }, NOW).renumbered);
      const { line } = list.planUpdate({ id: 'a', attributes: { take: 2, house: null, added: 'yes', missing: null } }, NOW);
      assert.deepEqual(line.attributes, { take: 2, keep: true, added: 'yes' });
      assert.deepEqual(list.byId('a')!.attributes, { house: 'HN-1', take: 1, keep: true }, 'the planned merge did not touch the stored line');
    });

    it('refuses more than 64 attributes after the merge', () => {
      const list = new RecList({ frameRate: '25' });
      const attributes: Record<string, number> = {};
      for (let i = 0; i < 60; i++) attributes[`a${i}`] = i;
      list.commit(list.planAdd({ id: 'a', title: 'A', attributes }, NOW).renumbered);
      const more: Record<string, number> = {};
      for (let i = 0; i < 5; i++) more[`b${i}`] = i;
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', attributes: more }, NOW), [/more than 64/]);
      assert.equal(Object.keys(list.planUpdate({ id: 'a', attributes: { ...more, a0: null } }, NOW).line.attributes).length, 64);
    });

    it('a ready line may change source, backup, title and group', () => {
      const list = listOf(['a']);
      const { line } = list.planUpdate({ id: 'a', source: 'rtsp://cam/1', backup: 'on', title: 'New', group: 'g' }, NOW);
      assert.equal(line.source, 'rtsp://cam/1');
      assert.equal(line.backup, 'on');
      assert.equal(line.title, 'New');
      assert.equal(line.group, 'g');
      assert.equal(line.status, 'ready');
    });

    it('switching start manual -> time arms the line; time -> manual makes it ready and clears startTime', () => {
      const list = listOf(['a']);
      const t = NOW + 15 * MIN;
      const armed = list.planUpdate({ id: 'a', start: 'time', startTime: t }, NOW);
      assert.equal(armed.line.status, 'armed');
      assert.equal(armed.line.start, 'time');
      assert.equal(armed.line.startTime, t);
      assert.equal(list.byId('a')!.status, 'ready', 'not before commit');
      list.commit(armed.renumbered);
      const back = list.planUpdate({ id: 'a', start: 'manual' }, NOW);
      assert.equal(back.line.status, 'ready');
      assert.equal(back.line.start, 'manual');
      assert.equal(back.line.startTime, null);
      assert.equal(list.byId('a')!.status, 'armed', 'not before commit');
    });

    it('switching to start "time" needs a startTime that is not in the past', () => {
      const list = listOf(['a']);
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', start: 'time' }, NOW), [/needs line\.startTime/]);
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', start: 'time', startTime: NOW - 10 * MIN }, NOW), [/in the past/]);
    });

    it('re-arms a failed timed line given a new start time, clearing the reason', () => {
      const list = new RecList({ frameRate: '25' }, [mkLine({ id: 'a', n: 1, start: 'time', startTime: NOW - 10 * MIN, status: 'failed', reason: 'missed' })]);
      const { line } = list.planUpdate({ id: 'a', startTime: NOW + 10 * MIN }, NOW);
      assert.equal(line.status, 'armed');
      assert.equal(line.reason, null);
    });

    it('a duration replaces a stopTime and a stopTime replaces a duration', () => {
      const t = NOW + 10 * MIN;
      const list = new RecList({ frameRate: '25' });
      list.commit(list.planAdd({ id: 'a', title: 'A', startTime: t, stopTime: t + 5 * MIN }, NOW).renumbered);
      const withDuration = list.planUpdate({ id: 'a', duration: '00:02:00:00' }, NOW).line;
      assert.equal(withDuration.duration, '00:02:00:00');
      assert.equal(withDuration.stopTime, null);
      list.commit(list.planUpdate({ id: 'a', duration: 120 }, NOW).renumbered);
      const withStop = list.planUpdate({ id: 'a', stopTime: t + 3 * MIN }, NOW).line;
      assert.equal(withStop.stopTime, t + 3 * MIN);
      assert.equal(withStop.duration, null);
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', stopTime: t + MIN, duration: 30 }, NOW), [/not both/]);
      refusesUnchanged(list, () => list.planUpdate({ id: 'a', stopTime: t - MIN }, NOW), [/stopTime must be after line\.startTime/]);
    });

    describe('a recording line', () => {
      const rec = () =>
        active(
          new RecList({ frameRate: '25' }, [
            mkLine({ id: 'a', n: 1 }),
            recordingLine({ id: 'r', n: 2, attributes: { house: 'HN-9' } }),
            mkLine({ id: 'c', n: 3 }),
          ]),
          'r',
        );

      it('may change title, group, attributes, stopTime, duration, n and (the same) backup', () => {
        const list = rec();
        const before = snapshot(list);
        const { line, renumbered } = list.planUpdate(
          { id: 'r', title: 'Renamed', group: 'g', attributes: { take: 2 }, stopTime: NOW + 10 * MIN, n: 1, backup: 'off' },
          NOW,
        );
        assert.equal(snapshot(list), before);
        assert.equal(line.title, 'Renamed');
        assert.equal(line.group, 'g');
        assert.deepEqual(line.attributes, { house: 'HN-9', take: 2 });
        assert.equal(line.stopTime, NOW + 10 * MIN);
        assert.equal(line.status, 'recording');
        assert.equal(line.clipId, 'clip-r');
        assert.deepEqual(ids(renumbered), ['1:r', '2:a', '3:c']);
        const d = list.planUpdate({ id: 'r', duration: '00:30:00:00' }, NOW).line;
        assert.equal(d.duration, '00:30:00:00');
        assert.equal(d.status, 'recording');
      });

      it('refuses source, start and startTime', () => {
        const list = rec();
        refusesUnchanged(list, () => list.planUpdate({ id: 'r', source: 'rtsp://other/1' }, NOW), [
          /is recording/,
          /line\.source cannot change now/,
          /stop it first/,
        ]);
        refusesUnchanged(list, () => list.planUpdate({ id: 'r', start: 'time' }, NOW), [/is recording/, /line\.start cannot change/]);
        refusesUnchanged(list, () => list.planUpdate({ id: 'r', startTime: NOW + MIN }, NOW), [/is recording/, /line\.startTime cannot change/]);
      });

      it('refuses a change of backup mode', () => {
        const list = rec();
        refusesUnchanged(list, () => list.planUpdate({ id: 'r', backup: 'on' }, NOW), [/is recording/, /Backup can only change before the recording starts/]);
      });

      it('refuses a stopTime already past', () => {
        const list = rec();
        refusesUnchanged(list, () => list.planUpdate({ id: 'r', stopTime: NOW - 1000 }, NOW), [/already past/, /stop command/]);
      });

      it('cannot be removed', () => {
        const list = rec();
        refusesUnchanged(list, () => list.planRemove({ id: 'r' }), [/is recording/, /stop it before removing/], 'EBUSY');
      });
    });

    describe('a stopped (recorded) line', () => {
      const done = () => new RecList({ frameRate: '25' }, [stoppedLine({ id: 's', n: 1, attributes: { a: 1 } }), mkLine({ id: 'b', n: 2 })]);

      it('may change title, group, attributes and n only', () => {
        const list = done();
        const { line, renumbered } = list.planUpdate({ id: 's', title: 'T', group: 'G', attributes: { a: null, b: 2 }, n: 2 }, NOW);
        assert.equal(line.title, 'T');
        assert.equal(line.group, 'G');
        assert.deepEqual(line.attributes, { b: 2 });
        assert.equal(line.status, 'stopped');
        assert.equal(line.stopTime, NOW - 20 * MIN);
        assert.equal(line.duration, '00:10:00:00');
        assert.deepEqual(ids(renumbered), ['1:b', '2:s']);
      });

      it('refuses every other field', () => {
        const list = done();
        const others: LineInput[] = [
          { source: 'TESTPATTERN' },
          { start: 'time' },
          { startTime: NOW + MIN },
          { stopTime: NOW + MIN },
          { duration: 10 },
          { backup: 'on' },
        ];
        for (const change of others) {
          refusesUnchanged(list, () => list.planUpdate({ id: 's', ...change }, NOW), [/already recorded/, /only title, group, attributes and n/]);
        }
      });

      it('may be removed', () => {
        const list = done();
        const before = snapshot(list);
        const { line, renumbered } = list.planRemove({ id: 's' });
        assert.equal(line.id, 's');
        assert.deepEqual(ids(renumbered), ['1:b']);
        assert.equal(snapshot(list), before);
      });
    });

    describe('an Aux line', () => {
      const auxLine = () => mkLine({ id: 'x', n: 1, backup: 'aux', origin: { server: 'main-1', channel: 2, lineId: 'L7' } });

      it('is refused when allowAux is false, naming the main line', () => {
        const list = new RecList({ frameRate: '25' }, [auxLine()]);
        refusesUnchanged(
          list,
          () => list.planUpdate({ id: 'x', title: 'x' }, NOW),
          [/Aux line kept by backup-link/, /line L7 of server main-1 channel 2/, /main server/],
          'EPERM',
        );
        refusesUnchanged(list, () => list.planRemove({ id: 'x' }), [/Aux line/, /main server/], 'EPERM');
        refusesUnchanged(list, () => list.checkStart({ id: 'x' }), [/Aux line/], 'EPERM');
        refusesUnchanged(list, () => list.checkStop({ id: 'x' }), [/Aux line/], 'EPERM');
      });

      it('is accepted when allowAux is true', () => {
        const list = new RecList({ frameRate: '25', allowAux: true }, [auxLine()]);
        assert.equal(list.planUpdate({ id: 'x', title: 'mirrored' }, NOW).line.title, 'mirrored');
        assert.deepEqual(list.planRemove({ id: 'x' }).renumbered, []);
      });

      it('a normal line may not be switched to aux without allowAux', () => {
        const list = listOf(['a']);
        refusesUnchanged(list, () => list.planUpdate({ id: 'a', backup: 'aux' }, NOW), [/backup "aux"/]);
      });
    });

    it('a manual line given only a startTime is either switched to a timed line or refused (as add refuses it)', () => {
      // planAdd refuses startTime on a manual line ("a manual line gets its start time
      // when it starts"); an update giving only startTime must not leave a manual,
      // ready line carrying a planned start time that nothing will act on.
      const list = listOf(['a']);
      let result: Line | undefined;
      try {
        result = list.planUpdate({ id: 'a', startTime: NOW + 10 * MIN }, NOW).line;
      } catch (err) {
        assert.ok(err instanceof CommandError);
        assert.match(err.message, /startTime/);
        return;
      }
      assert.ok(
        (result.start === 'time' && result.status === 'armed') || result.startTime === null,
        `update left start "${result.start}", status "${result.status}" with startTime ${new Date(result.startTime!).toISOString()}`,
      );
    });
  });

  describe('planRemove', () => {
    it('removes and renumbers, without changing the list until commit()', () => {
      const list = listOf(['a', 'b', 'c']);
      const before = snapshot(list);
      const { line, renumbered } = list.planRemove({ id: 'b' });
      assert.equal(line.id, 'b');
      assert.deepEqual(ids(renumbered), ['1:a', '2:c']);
      assert.equal(snapshot(list), before);
      list.commit(renumbered);
      assert.deepEqual(ids(list), ['1:a', '2:c']);
      assert.deepEqual(ids(list.planRemove({ n: 1 }).renumbered), ['1:c']);
    });

    it('refuses a recording line, also one armed with a clip or interrupted', () => {
      for (const line of [
        recordingLine({ id: 'r', n: 1 }),
        mkLine({ id: 'r', n: 1, status: 'armed', clipId: 'clip-r' }),
        mkLine({ id: 'r', n: 1, status: 'interrupted', clipId: 'clip-r', reason: 'source lost' }),
      ]) {
        const list = active(new RecList({ frameRate: '25' }, [line]), 'r');
        refusesUnchanged(list, () => list.planRemove({ id: 'r' }), [/is recording/], 'EBUSY');
      }
    });

    it('removes an armed timed line that has not started', () => {
      const list = new RecList({ frameRate: '25' }, [mkLine({ id: 't', n: 1, status: 'armed', start: 'time', startTime: NOW + MIN })]);
      assert.deepEqual(list.planRemove({ id: 't' }).renumbered, []);
    });

    it('refuses an unknown line', () => {
      const list = listOf(['a']);
      refusesUnchanged(list, () => list.planRemove({ id: 'nope' }), [/remove: there is no line with id "nope"/, /1 line\)/], 'ENOENT');
    });
  });

  describe('checkStart', () => {
    it('returns a ready line, found by id or by n', () => {
      const list = listOf(['a', 'b']);
      assert.equal(list.checkStart({ id: 'b' }).id, 'b');
      assert.equal(list.checkStart({ n: 1 }).id, 'a');
    });

    it('needs a line', () => {
      const list = listOf(['a']);
      refuses(() => list.checkStart(undefined), [/start needs line\.id or line\.n/]);
      refuses(() => list.checkStart({}), [/start needs line\.id or line\.n/]);
    });

    it('refuses a line already recording', () => {
      for (const line of [recordingLine({ id: 'r', n: 1 }), mkLine({ id: 'r', n: 1, status: 'armed', clipId: 'clip-r' })]) {
        const list = active(new RecList({ frameRate: '25' }, [line]), 'r');
        refusesUnchanged(list, () => list.checkStart({ id: 'r' }), [/already recording/], 'EBUSY');
      }
    });

    it('refuses a line already recorded', () => {
      const list = new RecList({ frameRate: '25' }, [stoppedLine({ id: 's', n: 1 })]);
      refusesUnchanged(list, () => list.checkStart({ id: 's' }), [/already recorded/, /clip clip-s/, /add a new line/], 'EBUSY');
    });

    it('refuses while another line is recording on the channel', () => {
      const list = active(new RecList({ frameRate: '25' }, [recordingLine({ id: 'r', n: 1, title: 'Live show' }), mkLine({ id: 'b', n: 2 })]), 'r');
      refusesUnchanged(list, () => list.checkStart({ id: 'b' }), [/line 2 .* cannot start/, /line 1 \("Live show"\) is recording/, /stop it first/], 'EBUSY');
    });

    it('lets a failed line start again', () => {
      const list = new RecList({ frameRate: '25' }, [
        stoppedLine({ id: 's', n: 1 }),
        mkLine({ id: 'f', n: 2, status: 'failed', clipId: 'clip-f', reason: 'the source refused the connection' }),
      ]);
      assert.equal(list.checkStart({ id: 'f' }).id, 'f');
    });

    it('lets an armed timed line (not started yet) start now', () => {
      const list = new RecList({ frameRate: '25' }, [mkLine({ id: 't', n: 1, status: 'armed', start: 'time', startTime: NOW + MIN })]);
      assert.equal(list.checkStart({ id: 't' }).id, 't');
    });

    it('lets an interrupted line left by a crash (its clip closed, nothing recording) start again', () => {
      // The state RecorderChannel.recoverInterrupted() stores after a kill -9 of
      // Node-RED during a recording: status "interrupted", clipId kept, stopTime and
      // outPoint set, and no active recording on the channel.
      const crashed = mkLine({
        id: 'i',
        n: 1,
        status: 'interrupted',
        clipId: 'clip-i',
        reason: 'Node-RED stopped unexpectedly while recording',
        startTime: NOW - 30 * MIN,
        stopTime: NOW - 20 * MIN,
        inPoint: '09:30:00:00',
        outPoint: '09:40:00:00',
        duration: '00:10:00:00',
      });
      const list = new RecList({ frameRate: '25' }, [crashed, mkLine({ id: 'b', n: 2 })]);
      assert.equal(list.checkStart({ id: 'i' }).id, 'i');
      assert.equal(list.checkStart({ id: 'b' }).id, 'b', 'the interrupted line must not block the other lines of the channel');
    });
  });

  describe('checkStop', () => {
    it('with no line given, returns the line recording', () => {
      const list = active(new RecList({ frameRate: '25' }, [mkLine({ id: 'a', n: 1 }), recordingLine({ id: 'r', n: 2 })]), 'r');
      assert.equal(list.checkStop(undefined).id, 'r');
      assert.equal(list.checkStop({}).id, 'r');
      assert.equal(list.recording()!.id, 'r');
    });

    it('with no line given and nothing recording, refuses', () => {
      const list = listOf(['a', 'b']);
      refuses(() => list.checkStop(undefined), [/nothing is recording/]);
      assert.equal(list.recording(), undefined);
    });

    it('returns a named line that is recording or interrupted (while the channel retries)', () => {
      const list = active(new RecList({ frameRate: '25' }, [recordingLine({ id: 'r', n: 1 })]), 'r');
      assert.equal(list.checkStop({ id: 'r' }).id, 'r');
      assert.equal(list.checkStop({ n: 1 }).id, 'r');
      const i = active(new RecList({ frameRate: '25' }, [mkLine({ id: 'i', n: 1, status: 'interrupted', clipId: 'c' })]), 'i');
      assert.equal(i.checkStop({ id: 'i' }).id, 'i');
    });

    it('returns an armed timed line (stop disarms it)', () => {
      const list = new RecList({ frameRate: '25' }, [mkLine({ id: 't', n: 1, status: 'armed', start: 'time', startTime: NOW + MIN })]);
      assert.equal(list.checkStop({ id: 't' }).id, 't');
    });

    it('refuses a named line that is not recording', () => {
      const list = new RecList({ frameRate: '25' }, [
        mkLine({ id: 'a', n: 1 }),
        stoppedLine({ id: 's', n: 2 }),
        mkLine({ id: 'f', n: 3, status: 'failed', reason: 'x' }),
      ]);
      refuses(() => list.checkStop({ id: 'a' }), [/line 1 .* is not recording/, /status ready/], 'EINVAL');
      refuses(() => list.checkStop({ id: 's' }), [/is not recording/, /status stopped/]);
      refuses(() => list.checkStop({ id: 'f' }), [/is not recording/, /status failed/]);
      refuses(() => list.checkStop({ id: 'zz' }), [/stop: there is no line/], 'ENOENT');
    });
  });

  describe('commit, put, all', () => {
    it('plans never mutate the line objects the list holds (lines are values)', () => {
      const list = new RecList({ frameRate: '25' }, [
        mkLine({ id: 'a', n: 1, attributes: { k: 1 } }),
        recordingLine({ id: 'r', n: 2, attributes: { house: 'HN' } }),
        mkLine({ id: 'c', n: 3 }),
      ]);
      const held = list.all().slice();
      const frozen = held.map((l) => JSON.stringify(l));
      list.planAdd({ id: 'x', title: 'X', n: 1 }, NOW);
      list.planUpdate({ id: 'a', title: 'changed', attributes: { k: null, j: 2 }, n: 3 }, NOW);
      list.planUpdate({ id: 'r', title: 'renamed', stopTime: NOW + MIN, attributes: { house: null } }, NOW);
      list.planUpdate({ id: 'c', start: 'time', startTime: NOW + MIN }, NOW);
      list.planRemove({ id: 'a' });
      assert.deepEqual(
        held.map((l) => JSON.stringify(l)),
        frozen,
        'held lines changed by a plan',
      );
      list.commit(list.planUpdate({ id: 'a', title: 'changed', attributes: { k: null }, n: 3 }, NOW).renumbered);
      assert.deepEqual(
        held.map((l) => JSON.stringify(l)),
        frozen,
        'held lines changed by a commit',
      );
      assert.deepEqual(ids(list), ['1:r', '2:c', '3:a']);
      assert.equal(list.byId('a')!.title, 'changed');
      assert.deepEqual(list.byId('a')!.attributes, {});
    });

    it('put() replaces a line by id, or appends a new one numbered last', () => {
      const list = listOf(['a', 'b']);
      list.put({ ...list.byId('a')!, status: 'recording', clipId: 'c1' });
      assert.equal(list.byId('a')!.status, 'recording');
      assert.deepEqual(ids(list), ['1:a', '2:b']);
      list.put(mkLine({ id: 'z', n: 99 }));
      assert.deepEqual(ids(list), ['1:a', '2:b', '3:z']);
    });

    it('the constructor orders initial lines by n', () => {
      const list = new RecList({ frameRate: '25' }, [mkLine({ id: 'c', n: 3 }), mkLine({ id: 'a', n: 1 }), mkLine({ id: 'b', n: 2 })]);
      assert.deepEqual(ids(list), ['1:a', '2:b', '3:c']);
      assert.equal(list.size, 3);
    });
  });

  describe('parseTime', () => {
    it('passes numbers, parses ISO 8601, keeps null and undefined as null', () => {
      assert.equal(parseTime(1795383000000, 'startTime'), 1795383000000);
      assert.equal(parseTime('2026-11-22T21:30:00Z', 'startTime'), Date.UTC(2026, 10, 22, 21, 30));
      assert.equal(parseTime('2026-11-22T22:30:00+01:00', 'startTime'), Date.UTC(2026, 10, 22, 21, 30));
      assert.equal(parseTime(null, 'stopTime'), null);
      assert.equal(parseTime(undefined, 'stopTime'), null);
    });

    it('refuses a string that is not a date-time, naming the field', () => {
      refuses(() => parseTime('half past nine', 'stopTime'), [/line\.stopTime "half past nine" is not a date-time/, /ISO 8601/]);
    });
  });

  describe('parseDuration', () => {
    it('seconds at 25 fps', () => {
      assert.equal(parseDuration(10, '25'), '00:00:10:00');
      assert.equal(parseDuration(1.5, '25'), '00:00:01:12');
      assert.equal(parseDuration(0.04, '25'), '00:00:00:01');
      assert.equal(parseDuration(3600, '25'), '01:00:00:00');
      assert.equal(parseDuration(5400.5, '25'), '01:30:00:12');
      assert.equal(parseDuration(null, '25'), null);
      assert.equal(parseDuration(undefined, '25'), null);
    });

    it('timecodes at 25 fps, with any separator', () => {
      assert.equal(parseDuration('00:30:00:00', '25'), '00:30:00:00');
      assert.equal(parseDuration('01.02.03.04', '25'), '01:02:03:04');
      assert.equal(parseDuration('00:00:00:24', '25'), '00:00:00:24');
    });

    it('refuses timecodes that are not valid at 25 fps, and zero length', () => {
      refuses(() => parseDuration('00:00:00:25', '25'), [/line\.duration "00:00:00:25" is not a valid timecode at 25 fps/, /frames 25 out of range/]);
      refuses(() => parseDuration('00:60:00:00', '25'), [/not a valid timecode/, /minutes/]);
      refuses(() => parseDuration('1:00:00:00', '25'), [/not a valid timecode/]);
      refuses(() => parseDuration('00:00:00:00', '25'), [/at least one frame/]);
      refuses(() => parseDuration(0.01, '25'), [/at least one frame/]);
    });

    it('seconds at 29.97 drop-frame (real time, drop-frame labels)', () => {
      // 60 s = 1798.2 frames -> 1798 frames -> 00:00:59;28
      assert.equal(parseDuration(60, '29.97df'), '00:00:59;28');
      // 600 s = 17982 frames exactly = 00:10:00;00
      assert.equal(parseDuration(600, '29.97df'), '00:10:00;00');
      // 3600 s = 107892 frames = 01:00:00;00
      assert.equal(parseDuration(3600, '29.97df'), '01:00:00;00');
      assert.equal(parseDuration(1, '29.97df'), '00:00:00;29');
    });

    it('timecodes at 29.97 drop-frame', () => {
      assert.equal(parseDuration('00:01:00;02', '29.97df'), '00:01:00;02');
      assert.equal(parseDuration('00:01:00:02', '29.97df'), '00:01:00;02');
      assert.equal(parseDuration('00:10:00;00', '29.97df'), '00:10:00;00');
      assert.equal(parseDuration('00:00:59;29', '29.97df'), '00:00:59;29');
    });

    it('refuses dropped drop-frame labels', () => {
      for (const tc of ['00:01:00;00', '00:01:00;01', '00:09:00;01', '01:23:00;00']) {
        refuses(
          () => parseDuration(tc, '29.97df'),
          [new RegExp(`line\\.duration "${tc}" is not a valid timecode at 29\\.97df fps`), /does not exist/, /dropped/],
        );
      }
    });

    it('never turns a long accepted duration into a near-zero one', () => {
      // The schema accepts up to 86400 seconds. A duration of 24 h does not fit in a
      // timecode (which wraps at 24 h): it must be refused, not wrapped to 00:00:00:00
      // (25 fps) or 00:00:00;02 (29.97df), which would stop the recording at once.
      const problems: string[] = [];
      for (const [seconds, rate] of [
        [86400, '25'],
        [86400, '29.97df'],
        [86399.95, '29.97df'],
      ] as const) {
        let tc: string | null;
        try {
          tc = parseDuration(seconds, rate);
        } catch (err) {
          assert.ok(err instanceof CommandError, String(err));
          continue;
        }
        const ms = durationMs({ duration: tc }, rate)!;
        if (ms < (seconds - 1) * 1000) problems.push(`parseDuration(${seconds}, '${rate}') = '${tc}' (${ms} ms)`);
      }
      if (problems.length > 0) assert.fail(problems.join('; '));
    });
  });

  describe('plannedStop', () => {
    it('is the stopTime when one is set', () => {
      const line = mkLine({ id: 'a', n: 1, startTime: NOW, stopTime: NOW + 5 * MIN });
      assert.equal(plannedStop(line, '25'), NOW + 5 * MIN);
      assert.equal(plannedStop({ ...line, startTime: null }, '25'), NOW + 5 * MIN);
    });

    it('is startTime + duration at 25 fps', () => {
      assert.equal(plannedStop(mkLine({ id: 'a', n: 1, startTime: NOW, duration: '00:10:00:00' }), '25'), NOW + 10 * MIN);
      assert.equal(plannedStop(mkLine({ id: 'a', n: 1, startTime: NOW, duration: '00:00:01:12' }), '25'), NOW + 1480);
    });

    it('is startTime + duration in real time at 29.97 drop-frame', () => {
      // 00:10:00;00 at 29.97df is 17982 frames = 17982 * 1001 / 30 ms = 599 999.4 ms
      const ten = plannedStop(mkLine({ id: 'a', n: 1, startTime: NOW, duration: '00:10:00;00' }), '29.97df')!;
      assert.ok(Math.abs(ten - (NOW + 599_999.4)) < 1e-3, String(ten - NOW));
      // 00:01:00;02 is the label after 00:00:59;29: 1800 frames = 60 060 ms
      const stop = plannedStop(mkLine({ id: 'a', n: 1, startTime: NOW, duration: '00:01:00;02' }), '29.97df')!;
      assert.ok(Math.abs(stop - (NOW + 60_060)) < 1e-6, String(stop - NOW));
    });

    it('is null without a stopTime, or with a duration but no start yet', () => {
      assert.equal(plannedStop(mkLine({ id: 'a', n: 1 }), '25'), null);
      assert.equal(plannedStop(mkLine({ id: 'a', n: 1, startTime: NOW }), '25'), null);
      assert.equal(plannedStop(mkLine({ id: 'a', n: 1, duration: '00:10:00:00' }), '25'), null);
    });

    it('agrees with a line built by planAdd', () => {
      const list = new RecList({ frameRate: '25' });
      const t = NOW + 10 * MIN;
      const { line } = list.planAdd({ title: 'x', startTime: t, duration: 90 }, NOW);
      assert.equal(plannedStop(line, '25'), t + 90_000);
    });
  });
});
