// Key groups, as in Flink's KeyGroupRangeAssignment: keyed state is partitioned into maxParallelism
// key groups, and each task owns one contiguous range of them. A checkpoint stores state per key
// group, so restoring with a different parallelism only moves whole key groups between tasks.
// Shared by the coordinator (what each task must snapshot) and the TaskManager (which keys it owns).

/** Inclusive range of key groups: [start, end]. */
export interface KeyGroupRange {
  start: number;
  end: number;
}

/** Flink's upper bound for maxParallelism (1 << 15); key group ids must stay small integers. */
export const MAX_PARALLELISM_UPPER_BOUND = 32_768;

function checkParallelism(maxParallelism: number, parallelism: number): void {
  if (
    !Number.isInteger(maxParallelism) ||
    maxParallelism < 1 ||
    maxParallelism > MAX_PARALLELISM_UPPER_BOUND
  ) {
    throw new RangeError(
      `maxParallelism must be an integer in [1, ${MAX_PARALLELISM_UPPER_BOUND}], got ${maxParallelism}`,
    );
  }
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > maxParallelism) {
    throw new RangeError(
      `parallelism must be an integer in [1, maxParallelism=${maxParallelism}], got ${parallelism}`,
    );
  }
}

/** The contiguous key group range task `taskIndex` owns (Flink's computeKeyGroupRangeForOperatorIndex). */
export function keyGroupRangeForTask(
  maxParallelism: number,
  parallelism: number,
  taskIndex: number,
): KeyGroupRange {
  checkParallelism(maxParallelism, parallelism);
  if (!Number.isInteger(taskIndex) || taskIndex < 0 || taskIndex >= parallelism) {
    throw new RangeError(`taskIndex must be an integer in [0, ${parallelism - 1}], got ${taskIndex}`);
  }
  return {
    start: Math.floor((taskIndex * maxParallelism + parallelism - 1) / parallelism),
    end: Math.floor(((taskIndex + 1) * maxParallelism - 1) / parallelism),
  };
}

/** The task that owns `keyGroup` (Flink's computeOperatorIndexForKeyGroup); inverse of keyGroupRangeForTask. */
export function taskIndexForKeyGroup(maxParallelism: number, parallelism: number, keyGroup: number): number {
  checkParallelism(maxParallelism, parallelism);
  if (!Number.isInteger(keyGroup) || keyGroup < 0 || keyGroup >= maxParallelism) {
    throw new RangeError(`keyGroup must be an integer in [0, ${maxParallelism - 1}], got ${keyGroup}`);
  }
  return Math.floor((keyGroup * parallelism) / maxParallelism);
}

// keyGroupForKey runs for every record a job processes: one encoder and one scratch buffer, reused,
// instead of an encoder and an array per call (which cost more than the hash itself).
const utf8 = new TextEncoder();
let scratch = new Uint8Array(256);

/** The key group of a key: murmur3_32(UTF-8 bytes of key, seed 0) mod maxParallelism. */
export function keyGroupForKey(key: string, maxParallelism: number): number {
  checkParallelism(maxParallelism, 1);
  // A UTF-16 code unit takes at most 3 UTF-8 bytes.
  if (scratch.length < key.length * 3) scratch = new Uint8Array(key.length * 3);
  return murmur3_32(scratch.subarray(0, utf8Bytes(key)), 0) % maxParallelism;
}

/** Writes the key's UTF-8 bytes into `scratch`; ASCII (most keys) without the encoder's overhead. */
function utf8Bytes(key: string): number {
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code > 0x7f) return utf8.encodeInto(key, scratch).written;
    scratch[i] = code;
  }
  return key.length;
}

/**
 * MurmurHash3 x86 32-bit, unsigned result. Hand-written rather than taken from a package because the
 * exact function is part of the wire contract: a TaskManager in any language must map a key to the
 * same key group, so the algorithm is pinned here (with published test vectors in the unit tests)
 * instead of depending on whatever a library considers "a string hash" (UTF-16 vs UTF-8, seed, sign).
 */
export function murmur3_32(data: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = data.length >>> 2;
  for (let i = 0; i < blocks; i++) {
    const at = i * 4;
    // Little-endian 32-bit block.
    let k = data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  const remaining = data.length & 3;
  if (remaining > 0) {
    let k = 0;
    for (let i = remaining - 1; i >= 0; i--) k = (k << 8) | (data[tail + i] ?? 0);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** True when `inner` lies entirely within `outer`. */
export function isWithinRange(inner: KeyGroupRange, outer: KeyGroupRange): boolean {
  return inner.start >= outer.start && inner.end <= outer.end;
}

/** True when the two ranges share at least one key group. */
export function rangesOverlap(a: KeyGroupRange, b: KeyGroupRange): boolean {
  return a.start <= b.end && b.start <= a.end;
}
