/** Failback on the restored server: record again what the failover server gives back, on a fake recorder channel. */
import { strict as assert } from 'node:assert';
import { CommandError } from '../../../lib/model/errors';
import { HandbackTarget, applyHandback } from '../../../lib/failover/handback';
import { Handback, HandbackChannel } from '../../../lib/link/schemas';
import { LineStatus } from '../../../lib/model/reclist';
import { ChannelEvent, LineRef, PresentedLine } from '../../../lib/recorder/types';
import { LineInput } from '../../../lib/model/commands';

const T0 = Date.UTC(2026, 10, 22, 20, 0, 0);

function line(id: string, status: LineStatus, title = `Title ${id}`): PresentedLine {
  return {
    id,
    n: 1,
    group: 'news',
    title,
    status,
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
    createdAt: T0,
    updatedAt: T0,
    startTimeTC: null,
    stopTimeTC: null,
  };
}

/** A recorder channel that records the commands it is given and applies add/start to its lines. */
class FakeChannel implements HandbackTarget {
  readonly commands: { command: string; line: Record<string, unknown> }[] = [];
  fail: ((cmd: { command: string; line: Record<string, unknown> }) => unknown) | null = null;
  constructor(public list: PresentedLine[] = []) {}
  lines(): PresentedLine[] {
    return this.list.map((l) => ({ ...l }));
  }
  async execute(cmd: unknown): Promise<ChannelEvent[]> {
    const c = cmd as { command: string; line: Record<string, unknown> };
    this.commands.push(c);
    const err = this.fail?.(c);
    if (err !== undefined && err !== null) throw err;
    if (c.command === 'add')
      this.list.push({
        ...line(String(c.line.id), 'ready', String(c.line.title)),
        group: String(c.line.group),
        attributes: c.line.attributes as PresentedLine['attributes'],
      });
    if (c.command === 'start') {
      const l = this.list.find((x) => x.id === c.line.id);
      if (!l) throw new CommandError(`start: there is no line with id "${String(c.line.id)}"`, 'ENOENT');
      l.status = 'recording';
    }
    return [];
  }
  // the typed calls applyHandback makes, recorded as the commands they stand for
  addLine(input: LineInput): Promise<ChannelEvent[]> {
    return this.execute({ command: 'add', line: input });
  }
  updateLine(change: LineInput): Promise<ChannelEvent[]> {
    return this.execute({ command: 'update', line: change });
  }
  startLine(ref: LineRef): Promise<ChannelEvent[]> {
    return this.execute({ command: 'start', line: ref });
  }
}

function rec(id: string, title = `Title ${id}`): HandbackChannel['recording'][number] {
  return { id, title, group: 'news', n: 1 };
}

function handback(channels: HandbackChannel[], p: Partial<Handback> = {}): Handback {
  return { v: 1, failedServer: 'main-1', failoverServer: 'fo-1', entryId: 5, epoch: 8, drill: false, channels, ts: T0, ...p };
}

describe('handback (applyHandback)', () => {
  let chans: Map<number, FakeChannel>;
  const lookup = (ch: number) => chans.get(ch);

  beforeEach(() => {
    chans = new Map();
  });

  it('confirms only when the media flows: a line armed first is waited for, one that stays armed is named', async () => {
    const slow = new FakeChannel([line('a', 'interrupted')]);
    const exec = slow.execute.bind(slow);
    slow.execute = async (cmd: unknown) => {
      const r = await exec(cmd);
      const a = slow.list.find((x) => x.id === 'a')!;
      if ((cmd as { command: string }).command === 'start') {
        a.status = 'armed';
        setTimeout(() => (a.status = 'recording'), 30); // the first frame comes a moment later
      }
      return r;
    };
    chans.set(1, slow);
    const t0 = Date.now();
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup, { pollMs: 5 });
    assert.equal(slow.list[0].status, 'recording', 'answered once it records');
    assert.ok(Date.now() - t0 >= 25);
    assert.doesNotMatch(r.detail, /not recording yet/);
    const stuck = new FakeChannel([line('b', 'interrupted')]);
    const exec2 = stuck.execute.bind(stuck);
    stuck.execute = async (cmd: unknown) => {
      const res = await exec2(cmd);
      if ((cmd as { command: string }).command === 'start') stuck.list.find((x) => x.id === 'b')!.status = 'armed';
      return res;
    };
    chans.set(2, stuck);
    const r2 = await applyHandback(handback([{ channel: 2, recording: [rec('b')] }]), lookup, { recordingWithinMs: 50, pollMs: 5 });
    assert.match(r2.detail, /channel 2: "Title b" is armed, not recording yet/);
  });

  it('changes nothing for a drill', async () => {
    const c = new FakeChannel([line('a', 'interrupted')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }], { drill: true }), lookup);
    assert.deepEqual(r, { ok: true, detail: 'drill: nothing changed on this server', started: 0 });
    assert.deepEqual(c.commands, []);
  });

  it('says so when nothing was recording', async () => {
    chans.set(1, new FakeChannel([line('a', 'stopped')]));
    const r = await applyHandback(handback([{ channel: 1, recording: [] }]), lookup);
    assert.deepEqual(r, { ok: true, detail: 'nothing was recording', started: 0 });
  });

  it('is not ok for a channel without a recorder here, naming the channel, and goes on with the others', async () => {
    const c = new FakeChannel([line('b', 'interrupted')]);
    chans.set(2, c);
    const r = await applyHandback(
      handback([
        { channel: 7, recording: [rec('a')] },
        { channel: 2, recording: [rec('b')] },
      ]),
      lookup,
    );
    assert.equal(r.ok, false);
    assert.match(r.detail, /channel 7: no recorder for it on this server/);
    assert.match(r.detail, /channel 2: "Title b" records again/);
    assert.equal(r.started, 1);
  });

  it('starts a line that is here and interrupted', async () => {
    const c = new FakeChannel([line('a', 'interrupted')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, [{ command: 'start', line: { id: 'a' } }]);
    assert.deepEqual(r, { ok: true, detail: 'channel 1: "Title a" records again', started: 1 });
  });

  it('starts a line that is here and ready', async () => {
    const c = new FakeChannel([line('a', 'ready')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, [{ command: 'start', line: { id: 'a' } }]);
    assert.equal(r.started, 1);
  });

  it('adds a line that is not here, with the same id, then starts it', async () => {
    const c = new FakeChannel([]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [{ id: 'new', title: 'Late show', group: 'ent', n: 4 }] }]), lookup);
    assert.deepEqual(c.commands, [
      { command: 'add', line: { id: 'new', title: 'Late show', group: 'ent', attributes: { failbackOf: 'fo-1', failbackEntry: 5 } } },
      { command: 'start', line: { id: 'new' } },
    ]);
    assert.deepEqual(r, { ok: true, detail: 'channel 1: "Late show" records again', started: 1 });
  });

  it('sends an untitled line a title and shortens a long title and group', async () => {
    const c1 = new FakeChannel([]);
    const c2 = new FakeChannel([]);
    chans.set(1, c1);
    chans.set(2, c2);
    await applyHandback(
      handback([
        { channel: 1, recording: [{ id: 'x', title: '', group: '', n: 1 }] },
        { channel: 2, recording: [{ id: 'y', title: 't'.repeat(500), group: 'g'.repeat(100), n: 2 }] },
      ]),
      lookup,
    );
    assert.equal(c1.commands[0].command, 'add');
    assert.equal(c1.commands[0].line.title, 'untitled');
    assert.equal(c1.commands[0].line.group, '');
    assert.equal(c2.commands[0].line.title, 't'.repeat(200));
    assert.equal(c2.commands[0].line.group, 'g'.repeat(64));
  });

  it('starts only the first of two lines given back for one channel (the first one records)', async () => {
    const c = new FakeChannel([]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a'), rec('b')] }]), lookup);
    assert.deepEqual(
      c.commands.map((x) => `${x.command} ${String(x.line.id)}`),
      ['add a', 'start a'],
    );
    assert.equal(r.started, 1);
    assert.match(r.detail, /"Title a" records here, so "Title b" was not started/);
  });

  it('counts a line already recording here as started, sending nothing', async () => {
    const c = new FakeChannel([line('a', 'recording')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, []);
    assert.deepEqual(r, { ok: true, detail: 'channel 1: "Title a" was still recording here', started: 1 });
  });

  it('counts a line armed here as started, sending nothing', async () => {
    const c = new FakeChannel([line('a', 'armed')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, []);
    assert.equal(r.started, 1);
  });

  it('records a line stopped here as a new line, its id suffixed with the entry', async () => {
    const c = new FakeChannel([line('a', 'stopped')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }], { entryId: 42 }), lookup);
    assert.deepEqual(c.commands, [
      { command: 'add', line: { id: 'a-fb42', title: 'Title a', group: 'news', attributes: { failbackOf: 'fo-1', failbackEntry: 42 } } },
      { command: 'start', line: { id: 'a-fb42' } },
    ]);
    assert.equal(r.ok, true);
    assert.equal(r.started, 1);
    assert.deepEqual(
      c.list.map((l) => [l.id, l.status]),
      [
        ['a', 'stopped'],
        ['a-fb42', 'recording'],
      ],
    );
  });

  it('keeps the suffixed id of a long line id within 64 characters', async () => {
    const long = 'L'.repeat(64);
    const c = new FakeChannel([line(long, 'stopped')]);
    chans.set(1, c);
    await applyHandback(handback([{ channel: 1, recording: [rec(long)] }], { entryId: 123456 }), lookup);
    const id = String(c.commands[0].line.id);
    assert.equal(id, `${'L'.repeat(48)}-fb123456`);
    assert.ok(id.length <= 64);
  });

  it('starts the suffixed line without adding it again when an earlier failback added it', async () => {
    const c = new FakeChannel([line('a', 'stopped'), line('a-fb5', 'ready')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, [{ command: 'start', line: { id: 'a-fb5' } }]);
    assert.equal(r.started, 1);
  });

  it('does not start a line while another line records on that channel, and notes it', async () => {
    const c = new FakeChannel([line('other', 'recording', 'Breaking news'), line('a', 'interrupted')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a', 'Evening news')] }]), lookup);
    assert.deepEqual(c.commands, []);
    assert.equal(r.started, 0);
    assert.equal(r.ok, true);
    assert.equal(r.detail, 'channel 1: "Breaking news" records here, so "Evening news" was not started');
  });

  it('is not held back by another line that is only armed', async () => {
    const c = new FakeChannel([line('later', 'armed'), line('a', 'interrupted')]);
    chans.set(1, c);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.deepEqual(c.commands, [{ command: 'start', line: { id: 'a' } }]);
    assert.equal(r.started, 1);
  });

  it('is not ok when a command throws, giving the reason, and goes on with the next line', async () => {
    const a = new FakeChannel([line('a', 'interrupted')]);
    a.fail = (cmd) => (cmd.command === 'start' ? new CommandError('start refused: the channel is closed') : null);
    const b = new FakeChannel([]);
    b.fail = (cmd) => (cmd.command === 'add' ? new Error('disk full') : null);
    const c = new FakeChannel([line('c', 'ready')]);
    chans.set(1, a);
    chans.set(2, b);
    chans.set(3, c);
    const r = await applyHandback(
      handback([
        { channel: 1, recording: [rec('a')] },
        { channel: 2, recording: [rec('b')] },
        { channel: 3, recording: [rec('c')] },
      ]),
      lookup,
    );
    assert.equal(r.ok, false);
    assert.equal(r.started, 1);
    assert.equal(
      r.detail,
      [
        'channel 1: "Title a" could not start: start refused: the channel is closed',
        'channel 2: "Title b" could not start: disk full',
        'channel 3: "Title c" records again',
      ].join('; '),
    );
    assert.deepEqual(
      b.commands.map((x) => x.command),
      ['add'],
      'no start after a failed add',
    );
  });

  it('does not throw when lines() throws', async () => {
    chans.set(1, {
      lines: () => {
        throw new Error('channel closed');
      },
      execute: async () => [],
    } as unknown as FakeChannel);
    const r = await applyHandback(handback([{ channel: 1, recording: [rec('a')] }]), lookup);
    assert.equal(r.ok, false);
    assert.match(r.detail, /could not start: channel closed/);
  });
});
