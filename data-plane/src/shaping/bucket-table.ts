/**
 * Token buckets in one SharedArrayBuffer that every worker thread of a data plane maps: a limit is
 * per data plane, not per thread (`--workers N` does not multiply it by N).
 *
 * The table is a fixed set-associative hash table (WAYS slots per set), so its memory is fixed when
 * the data plane starts, whatever the number of keys clients make up. A key is a 64-bit seeded hash
 * (the seed is random per data plane: clients cannot aim keys at one set). A key that is not in its
 * set takes an empty slot or evicts the slot whose bucket is full soonest: a bucket that has refilled
 * is idle, and forgetting it loses nothing (a new bucket starts full). So a flood of new keys evicts
 * idle buckets, then the least drained ones; a drained bucket is the last to go.
 *
 * Each set has a lock word (Atomics.compareExchange); a take holds it for a few dozen instructions.
 * The plain reads and writes of the slot under the lock are ordered by the lock's atomics (the
 * ECMAScript memory model: data-race-free under the lock).
 */

const WAYS = 8;
/** Int32 words before the slots: the two hash seeds and the bucket count. */
const HEADER_WORDS = 3;

/** 2^20 buckets: 32 bytes each (two hash words, tokens, last refill, full-at), 32 MiB at most. */
export const DEFAULT_BUCKETS = 1 << 20;

export interface BucketMemory {
  readonly buffer: SharedArrayBuffer;
}

/** The shared memory of a table of `buckets` (a power of two, at least WAYS). */
export function bucketMemory(buckets: number = DEFAULT_BUCKETS): BucketMemory {
  if (buckets < WAYS || (buckets & (buckets - 1)) !== 0)
    throw new Error(`bucket count ${buckets} is not a power of two of at least ${WAYS}`);
  const sets = buckets / WAYS;
  // Int32 part: header, one lock per set, two hash words per slot; then Float64: three per slot.
  const intWords = HEADER_WORDS + sets + buckets * 2;
  const intBytes = Math.ceil((intWords * 4) / 8) * 8;
  const buffer = new SharedArrayBuffer(intBytes + buckets * 3 * 8);
  const ints = new Int32Array(buffer, 0, HEADER_WORDS);
  const seeds = new Int32Array(2);
  crypto.getRandomValues(seeds);
  ints[0] = seeds[0] as number;
  ints[1] = seeds[1] as number;
  ints[2] = buckets;
  return { buffer };
}

export class BucketTable {
  readonly buckets: number;
  private readonly sets: number;
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly seed1: number;
  private readonly seed2: number;
  private readonly lockBase = HEADER_WORDS;
  private readonly slotBase: number;
  /** Tokens left in the bucket of the last take (after it), for the RateLimit field. */
  tokens = 0;
  /** This thread's decisions per route, kept across configs (metrics sum the threads). */
  readonly decisions = new Map<string, { admitted: number; refused: number }>();
  /** The hash of the last key(): two words. */
  private h1 = 0;
  private h2 = 0;

  constructor(memory: BucketMemory) {
    const buffer = memory.buffer;
    const buckets = new Int32Array(buffer, 0, HEADER_WORDS)[2] as number;
    this.buckets = buckets;
    this.sets = buckets / WAYS;
    const intWords = HEADER_WORDS + this.sets + buckets * 2;
    this.ints = new Int32Array(buffer, 0, intWords);
    const intBytes = Math.ceil((intWords * 4) / 8) * 8;
    this.floats = new Float64Array(buffer, intBytes, buckets * 3);
    this.seed1 = this.ints[0] as number;
    this.seed2 = this.ints[1] as number;
    this.slotBase = HEADER_WORDS + this.sets;
  }

  /** Starts a key: the limit's identity (the same string on every worker). */
  keyStart(identity: string): void {
    this.h1 = this.seed1 ^ 0x811c9dc5;
    this.h2 = this.seed2 ^ 0x01000193;
    this.keyPart(identity);
  }

  /** Adds one part of the key (a separator goes between parts). */
  keyPart(part: string): void {
    let a = this.h1;
    let b = this.h2;
    for (let i = 0; i < part.length; i++) {
      const c = part.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    // The separator: "a" + "bc" and "ab" + "c" are different keys.
    this.h1 = Math.imul(a ^ 0xff, 0x01000193);
    this.h2 = Math.imul(b ^ 0xff, 0x5bd1e995);
  }

  /**
   * Takes one token from the key's bucket (`rate` tokens per ms, at most `burst`); false when it is
   * empty. `this.tokens` is then what is left (after the take, or the fraction short of one).
   */
  take(rate: number, burst: number, now: number): boolean {
    // Finalise both words (murmur3's fmix32); neither is 0 (0,0 marks an empty slot).
    let a = this.h1;
    a ^= a >>> 16;
    a = Math.imul(a, 0x85ebca6b);
    a ^= a >>> 13;
    a = Math.imul(a, 0xc2b2ae35);
    a ^= a >>> 16;
    let b = this.h2;
    b ^= b >>> 16;
    b = Math.imul(b, 0x85ebca6b);
    b ^= b >>> 13;
    b = Math.imul(b, 0xc2b2ae35);
    b ^= b >>> 16;
    b |= 1;
    const set = (a >>> 0) & (this.sets - 1);
    const ints = this.ints;
    const floats = this.floats;
    const lock = this.lockBase + set;
    while (Atomics.compareExchange(ints, lock, 0, 1) !== 0);
    try {
      const first = set * WAYS;
      let slot = -1;
      let victim = first;
      let victimFullAt = Number.POSITIVE_INFINITY;
      for (let s = first; s < first + WAYS; s++) {
        const w = this.slotBase + s * 2;
        const k1 = ints[w] as number;
        const k2 = ints[w + 1] as number;
        if (k1 === a && k2 === b) {
          slot = s;
          break;
        }
        const fullAt = k2 === 0 ? Number.NEGATIVE_INFINITY : (floats[s * 3 + 2] as number);
        if (fullAt < victimFullAt) {
          victimFullAt = fullAt;
          victim = s;
        }
      }
      let tokens: number;
      if (slot < 0) {
        slot = victim;
        const w = this.slotBase + slot * 2;
        ints[w] = a;
        ints[w + 1] = b;
        tokens = burst;
      } else {
        const f = slot * 3;
        const elapsed = now - (floats[f + 1] as number);
        tokens = Math.min(burst, (floats[f] as number) + (elapsed > 0 ? elapsed * rate : 0));
      }
      const admitted = tokens >= 1;
      if (admitted) tokens -= 1;
      const f = slot * 3;
      floats[f] = tokens;
      floats[f + 1] = now;
      floats[f + 2] = now + (burst - tokens) / rate;
      this.tokens = tokens;
      return admitted;
    } finally {
      Atomics.store(ints, lock, 0);
    }
  }

  /** The decision counts of a route, the same object for every config that has the route. */
  counts(route: string): { admitted: number; refused: number } {
    let c = this.decisions.get(route);
    if (c === undefined) {
      c = { admitted: 0, refused: 0 };
      this.decisions.set(route, c);
    }
    return c;
  }

  /** Buckets in use (a scan, for tests and the admin). */
  used(): number {
    let n = 0;
    for (let s = 0; s < this.buckets; s++) if (this.ints[this.slotBase + s * 2 + 1] !== 0) n++;
    return n;
  }
}
