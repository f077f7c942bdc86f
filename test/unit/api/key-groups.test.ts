import {
  isWithinRange,
  keyGroupForKey,
  keyGroupRangeForTask,
  murmur3_32,
  rangesOverlap,
  taskIndexForKeyGroup,
  type KeyGroupRange,
} from "../../../src/api/key-groups.js";

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("keyGroupRangeForTask", () => {
  it.each([
    // Values from Flink's KeyGroupRangeAssignment for the same inputs.
    [128, 3, [0, 42, 43, 85, 86, 127]],
    [10, 4, [0, 2, 3, 4, 5, 7, 8, 9]],
    [4, 4, [0, 0, 1, 1, 2, 2, 3, 3]],
    [7, 1, [0, 6]],
  ])("maxParallelism %p, parallelism %p gives ranges %p", (maxParallelism, parallelism, bounds) => {
    const ranges = Array.from({ length: parallelism }, (_, i) =>
      keyGroupRangeForTask(maxParallelism, parallelism, i),
    );
    expect(ranges.flatMap((range) => [range.start, range.end])).toEqual(bounds);
  });

  const pairs: Array<[number, number]> = [];
  for (const maxParallelism of [1, 2, 3, 7, 10, 16, 100, 128, 129, 1000, 4096, 32_768]) {
    for (const parallelism of [1, 2, 3, 4, 5, 7, 8, 16, 31, 100, 128, 1000, 32_768]) {
      if (parallelism <= maxParallelism) pairs.push([maxParallelism, parallelism]);
    }
  }

  // Problems are collected and asserted once: hundreds of thousands of expect() calls are slow.
  it.each(pairs)(
    "maxParallelism %p over parallelism %p covers every key group exactly once",
    (max, parallelism) => {
      const problems: string[] = [];
      let expectedStart = 0;
      for (let taskIndex = 0; taskIndex < parallelism; taskIndex++) {
        const { start, end } = keyGroupRangeForTask(max, parallelism, taskIndex);
        const size = end - start + 1;
        if (start !== expectedStart)
          problems.push(`task ${taskIndex} starts at ${start}, not ${expectedStart}`);
        // Balanced: sizes differ by at most one.
        if (size !== Math.floor(max / parallelism) && size !== Math.ceil(max / parallelism)) {
          problems.push(`task ${taskIndex} owns ${size} key groups`);
        }
        for (const keyGroup of [start, end, (start + end) >> 1]) {
          const owner = taskIndexForKeyGroup(max, parallelism, keyGroup);
          if (owner !== taskIndex) problems.push(`key group ${keyGroup} maps to ${owner}, not ${taskIndex}`);
        }
        expectedStart = end + 1;
      }
      expect(problems).toEqual([]);
      expect(expectedStart).toBe(max);
    },
  );

  it("agrees with taskIndexForKeyGroup on every key group for small sizes", () => {
    const problems: string[] = [];
    for (let max = 1; max <= 64; max++) {
      for (let parallelism = 1; parallelism <= max; parallelism++) {
        for (let keyGroup = 0; keyGroup < max; keyGroup++) {
          const owner = taskIndexForKeyGroup(max, parallelism, keyGroup);
          const range = keyGroupRangeForTask(max, parallelism, owner);
          if (keyGroup < range.start || keyGroup > range.end)
            problems.push(`${max}/${parallelism}/${keyGroup}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it.each([
    [128, 0, 0, "parallelism must be an integer in [1, maxParallelism=128], got 0"],
    [4, 5, 0, "parallelism must be an integer in [1, maxParallelism=4], got 5"],
    [0, 1, 0, "maxParallelism must be an integer in [1, 32768], got 0"],
    [32_769, 1, 0, "maxParallelism must be an integer in [1, 32768], got 32769"],
    [128, 4, 4, "taskIndex must be an integer in [0, 3], got 4"],
    [128, 4, -1, "taskIndex must be an integer in [0, 3], got -1"],
    [128, 4, 1.5, "taskIndex must be an integer in [0, 3], got 1.5"],
  ])("rejects maxParallelism %p, parallelism %p, taskIndex %p", (max, parallelism, taskIndex, message) => {
    expect(() => keyGroupRangeForTask(max, parallelism, taskIndex)).toThrow(message);
  });

  it("rejects a key group outside [0, maxParallelism)", () => {
    expect(() => taskIndexForKeyGroup(128, 2, 128)).toThrow(
      "keyGroup must be an integer in [0, 127], got 128",
    );
  });
});

describe("murmur3_32", () => {
  it.each([
    // Published MurmurHash3_x86_32 test vectors.
    ["", 0, 0x00000000],
    ["", 1, 0x514e28b7],
    ["", 0xffffffff, 0x81f16f39],
    ["\0\0\0\0", 0, 0x2362f9de],
    ["a", 0x9747b28c, 0x7fa09ea6],
    ["Hello, world!", 0x9747b28c, 0x24884cba],
    ["The quick brown fox jumps over the lazy dog", 0x9747b28c, 0x2fa826cd],
    ["hello", 0, 0x248bfa47],
    ["ab", 0, 0x9bbfd75f],
    ["abc", 0, 0xb3dd93fa],
    ["abcd", 0, 0x43ed676a],
  ])("hashes %p with seed %p to %p", (text, seed, hash) => {
    expect(murmur3_32(utf8(text), seed)).toBe(hash);
  });

  it("hashes a view into a larger buffer by its own bytes only", () => {
    const buffer = utf8("xxhelloxx");
    expect(murmur3_32(buffer.subarray(2, 7))).toBe(0x248bfa47);
  });
});

describe("keyGroupForKey", () => {
  it("is murmur3_32 of the UTF-8 bytes, seed 0, modulo maxParallelism", () => {
    expect(keyGroupForKey("hello", 128)).toBe(0x248bfa47 % 128);
    expect(keyGroupForKey("hello", 1000)).toBe(0x248bfa47 % 1000);
    // "é" is two UTF-8 bytes; hashing UTF-16 code units would give a different group.
    expect(keyGroupForKey("é", 32_768)).toBe(murmur3_32(Uint8Array.of(0xc3, 0xa9)) % 32_768);
  });

  it("hashes the same bytes whether a key is ASCII, starts ASCII or not, long or short", () => {
    // ASCII keys take a faster path than the encoder; every kind must give the encoder's bytes.
    const keys = [
      "",
      "a",
      "k42",
      "x".repeat(1_000),
      "ascii-then-é",
      "é-then-ascii",
      "𝄞 clef",
      "\u007f\u0080",
    ];
    for (const key of keys) {
      expect([key, keyGroupForKey(key, 32_768)]).toEqual([key, murmur3_32(utf8(key)) % 32_768]);
    }
    // A short key after a long non-ASCII one: no byte of the earlier key leaks into the hash.
    keyGroupForKey("éééééééé", 128);
    expect(keyGroupForKey("ab", 128)).toBe(murmur3_32(utf8("ab")) % 128);
  });

  it("spreads keys over all key groups", () => {
    const counts = new Array<number>(128).fill(0);
    for (let i = 0; i < 12_800; i++) {
      const keyGroup = keyGroupForKey(`key-${i}`, 128);
      counts[keyGroup] = (counts[keyGroup] ?? 0) + 1;
    }
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(150);
  });
});

describe("range helpers", () => {
  const r = (start: number, end: number): KeyGroupRange => ({ start, end });

  it.each([
    [r(3, 5), r(0, 9), true],
    [r(0, 9), r(0, 9), true],
    [r(0, 10), r(0, 9), false],
    [r(2, 4), r(3, 9), false],
  ])("isWithinRange(%p, %p) is %p", (inner, outer, expected) => {
    expect(isWithinRange(inner, outer)).toBe(expected);
  });

  it.each([
    [r(0, 4), r(4, 9), true],
    [r(0, 4), r(5, 9), false],
    [r(5, 9), r(0, 4), false],
    [r(2, 3), r(0, 9), true],
  ])("rangesOverlap(%p, %p) is %p", (a, b, expected) => {
    expect(rangesOverlap(a, b)).toBe(expected);
  });
});
