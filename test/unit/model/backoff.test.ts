/** lib/model/backoff: the one retry delay of the package, doubling to a cap, with jitter. */
import assert from 'node:assert/strict';
import { Backoff } from '../../../lib/model/backoff';

describe('Backoff (lib/model/backoff)', () => {
  it('doubles from the minimum to the cap, and reset starts again at the minimum', () => {
    const b = new Backoff(500, 4000, 0);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [500, 1000, 2000, 4000, 4000]);
    b.reset();
    assert.equal(b.next(), 500);
  });

  it('adds at most ±jitter of the step, drawn at random', () => {
    let r = 0;
    const b = new Backoff(1000, 8000, 0.2, () => r);
    assert.equal(b.next(), 800, 'random 0: 20 % shorter');
    r = 1;
    assert.equal(b.next(), 2400, 'random 1: 20 % longer');
    r = 0.5;
    assert.equal(b.next(), 4000, 'random 0.5: the step itself');
    for (let i = 0; i < 200; i++) {
      const d = new Backoff(1000, 1000).next();
      assert.ok(d >= 800 && d <= 1200, `${d} within ±20 % of 1000`);
    }
  });

  it('a minimum of 0 still grows, and a bad range is refused', () => {
    const b = new Backoff(0, 10, 0);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [0, 2, 4, 8, 10]);
    assert.throws(() => new Backoff(100, 10), /0 <= min <= max/);
    assert.throws(() => new Backoff(-1, 10), /0 <= min <= max/);
  });
});
