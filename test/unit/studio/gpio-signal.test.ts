/** lib/studio/gpio-signal: debounce, edge filters, output values, and a tally that follows a recorder channel. */
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { ControllerRegistry } from '../../../lib/link/server-identity';
import { DebouncedInput, InputChange, lampFor, outputValue, RecorderFollower } from '../../../lib/studio/gpio-signal';
import { sleep } from '../../support/nr';

class FakeChannel extends EventEmitter {
  state: 'idle' | 'armed' | 'recording' | 'interrupted' | 'failed' | 'closed' = 'idle';
  status() {
    return { state: this.state, line: null, curPoint: null, lines: 0, detail: null };
  }
  go(state: FakeChannel['state']) {
    this.state = state;
    this.emit('event', { event: state === 'recording' ? 'recording' : 'stopped', server: 's', channel: 1, at: Date.now() });
  }
}

describe('gpio signals (lib)', function () {
  it('reports the first value as the start state, not as an edge, and only when asked', function () {
    const got: InputChange[] = [];
    const quiet = new DebouncedInput({ debounceMs: 0, filter: 'both', sendInitial: false }, (c) => got.push(c));
    quiet.feed(true, 1);
    assert.equal(got.length, 0);
    assert.equal(quiet.value, true);
    const loud = new DebouncedInput({ debounceMs: 0, filter: 'both', sendInitial: true }, (c) => got.push(c));
    loud.feed(false, 1);
    assert.equal(got[0].edge, 'initial');
  });

  it('ignores a bounce shorter than the debounce and reports a change that stays', async function () {
    const got: InputChange[] = [];
    const d = new DebouncedInput({ debounceMs: 60, filter: 'both', sendInitial: false }, (c) => got.push(c));
    d.feed(false, 0);
    d.feed(true, 1);
    await sleep(20);
    d.feed(false, 2); // bounced back within 60 ms
    await sleep(100);
    assert.equal(got.length, 0);
    d.feed(true, 3);
    await sleep(20);
    d.feed(true, 4); // still pressed: the same pending change
    await sleep(100);
    assert.equal(got.length, 1);
    assert.equal(got[0].edge, 'rising');
    assert.equal(got[0].seenAt, 3);
    assert.equal(got[0].previous, false);
    d.stop();
    assert.equal(d.hasTimer(), false);
  });

  it('passes only the edges asked for', function () {
    const got: InputChange[] = [];
    const d = new DebouncedInput({ debounceMs: 0, filter: 'rising', sendInitial: false }, (c) => got.push(c));
    d.feed(false, 0);
    d.feed(true, 1);
    d.feed(false, 2);
    d.feed(true, 3);
    assert.deepEqual(
      got.map((c) => c.edge),
      ['rising', 'rising'],
    );
  });

  it('tells every accepted value to the status, also the edges it does not send', function () {
    const values: unknown[] = [];
    const d = new DebouncedInput(
      { debounceMs: 0, filter: 'rising', sendInitial: false },
      () => undefined,
      (v) => values.push(v),
    );
    d.feed(false, 0);
    d.feed(true, 1);
    d.feed(false, 2);
    assert.deepEqual(values, [false, true, false]);
  });

  it('turns a payload into a coil or register value, and says what it accepts when it cannot', function () {
    assert.equal(outputValue(true, 'coil'), true);
    assert.equal(outputValue('OFF', 'coil'), false);
    assert.equal(outputValue(1, 'coil'), true);
    assert.equal(outputValue('1234', 'holding'), 1234);
    assert.throws(() => outputValue('maybe', 'coil'), /true\/false, 1\/0 or "on"\/"off".*"maybe"/);
    assert.throws(() => outputValue(2, 'coil'), /not 2/);
    assert.throws(() => outputValue(70000, 'holding'), /0\.\.65535 to set a register, not 70000/);
    assert.throws(() => outputValue({}, 'holding'), /not an object/);
  });

  it('maps channel states to the lamp of each follow mode', function () {
    assert.equal(lampFor('recording', 'recording'), true);
    assert.equal(lampFor('recording', 'armed'), false);
    assert.equal(lampFor('active', 'armed'), true);
    assert.equal(lampFor('fault', 'interrupted'), true);
    assert.equal(lampFor('fault', 'recording'), false);
    assert.equal(lampFor('recording', null), false);
  });

  it('follows a recorder channel through its events, a redeploy and its removal, and leaves no listener', function () {
    const reg = new ControllerRegistry<FakeChannel>();
    const lamps: boolean[] = [];
    const f = new RecorderFollower(reg, 'main-1', 1, 'recording', (on) => lamps.push(on));
    assert.deepEqual(lamps, [false]);
    const ch = new FakeChannel();
    reg.set('main-1', 2, new FakeChannel()); // another channel: ignored
    reg.set('main-1', 1, ch);
    ch.go('recording');
    assert.deepEqual(lamps, [false, true]);
    // redeploy of the recorder: the channel leaves (lamp off) and a new one comes back recording
    reg.delete('main-1', 1, ch);
    assert.equal(ch.listenerCount('event'), 0);
    const ch2 = new FakeChannel();
    ch2.state = 'recording';
    reg.set('main-1', 1, ch2);
    assert.deepEqual(lamps, [false, true, false, true]);
    // a stop by command comes as 'commanded', not as a spontaneous 'event'
    ch2.state = 'idle';
    ch2.emit('commanded', [{ event: 'stopped', server: 'main-1', channel: 1, at: Date.now() }]);
    assert.deepEqual(lamps, [false, true, false, true, false]);
    f.stop();
    assert.equal(ch2.listenerCount('event') + ch2.listenerCount('commanded'), 0);
    assert.equal(reg.listenerCount('set') + reg.listenerCount('delete'), 0);
  });
});
