/** A small seeded generator (xorshift32) for the fuzz tests: a failure names its seed and
 * round, and the same seed gives the same inputs again. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }

  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x;
    return x >>> 0;
  }

  /** 0 ≤ n' < n. */
  below(n: number): number {
    return this.next() % n;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.below(list.length)]!;
  }
}
