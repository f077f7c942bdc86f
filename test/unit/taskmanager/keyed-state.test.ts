import { keyGroupForKey, keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { restoreCheckpoint } from "../../../src/taskmanager/restore/restore.js";
import {
  KeyGroupedStateBackend,
  type JsonValue,
  type KeyedStateSnapshot,
} from "../../../src/taskmanager/state/keyed-state.js";
import { decodeStatePart } from "../../../src/taskmanager/state/state-part-decoder.js";
import { encodeStatePart } from "../../../src/taskmanager/state/state-part.js";
import { BUCKET, filledStates, JOB, writeCheckpoint } from "./support/fixtures.js";

async function bytesOf(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

describe("KeyGroupedStateBackend", () => {
  test("routes keys to their key group and refuses keys outside the task's range", () => {
    const state = new KeyGroupedStateBackend(128, keyGroupRangeForTask(128, 3, 1)); // 43-85
    expect(keyGroupForKey("hello", 128)).toBe(71);
    state.put("hello", 1);
    expect(state.get("hello")).toBe(1);
    const foreign = Array.from({ length: 100 }, (_, i) => `k${i}`).find((key) => !state.owns(key));
    expect(foreign).toBeDefined();
    expect(() => state.put(foreign!, 1)).toThrow(/outside this task's key groups 43-85/);
  });

  test("a snapshot is a consistent cut: later writes and deletes do not change it", async () => {
    const [state] = filledStates(50, 1, 16);
    const snapshot = state!.snapshot();
    state!.put("key-1", "changed");
    state!.delete("key-2");
    state!.put("key-new", 7);
    const range = { start: 0, end: 15 };
    const entries = decodeStatePart(await bytesOf(encodeStatePart(snapshot)), {
      objectName: "part",
      keyGroupRange: range,
      stageId: "default",
      wanted: range,
    });
    expect(entries).toHaveLength(50);
    expect(entries.find((entry) => entry.key === "key-1")?.value).toBe(1);
    expect(entries.find((entry) => entry.key === "key-2")?.value).toBe(2);
    expect(entries.some((entry) => entry.key === "key-new")).toBe(false);
    expect(state!.get("key-1")).toBe("changed");
    expect(state!.get("key-2")).toBeUndefined();
  });
});

/** Every entry of a snapshot, in the order it yields them, key group first. */
function* entriesOf(snapshot: KeyedStateSnapshot): Generator<[number, string, JsonValue]> {
  for (const { keyGroup, entries } of snapshot.keyGroups) {
    for (const [key, value] of entries) yield [keyGroup, key, value];
  }
}

/** Collects a snapshot's entries, failing on a key seen twice or in the wrong key group. */
class SnapshotReader {
  readonly seen = new Map<string, JsonValue>();
  private readonly entries: Generator<[number, string, JsonValue]>;

  constructor(
    readonly snapshot: KeyedStateSnapshot,
    private readonly maxParallelism: number,
  ) {
    this.entries = entriesOf(snapshot);
  }

  /** Reads up to `count` more entries; false once the snapshot is read to its end. */
  read(count = Infinity): boolean {
    for (let i = 0; i < count; i++) {
      const next = this.entries.next();
      if (next.done) return false;
      const [keyGroup, key, value] = next.value;
      if (this.seen.has(key)) throw new Error(`key ${key} read twice`);
      expect(keyGroupForKey(key, this.maxParallelism)).toBe(keyGroup);
      this.seen.set(key, value);
    }
    return true;
  }

  readAll(): Record<string, JsonValue> {
    this.read();
    return Object.fromEntries(this.seen);
  }
}

describe("per-entry copy-on-write snapshots", () => {
  // Keys of 4 key groups, all owned; `put k v`, `delete k`, `snapshot s`, `release s`.
  const cases: Array<{ name: string; ops: string[]; expected: Record<string, Record<string, number>> }> = [
    {
      name: "an overwrite after the snapshot began",
      ops: ["put a 1", "put b 2", "snapshot s", "put a 10"],
      expected: { s: { a: 1, b: 2 } },
    },
    {
      name: "a key added after it began",
      ops: ["put a 1", "snapshot s", "put n 5"],
      expected: { s: { a: 1 } },
    },
    {
      name: "a key deleted after it began",
      ops: ["put a 1", "snapshot s", "delete a"],
      expected: { s: { a: 1 } },
    },
    {
      name: "a key deleted and written again",
      ops: ["put a 1", "snapshot s", "delete a", "put a 3", "delete a", "put a 4"],
      expected: { s: { a: 1 } },
    },
    { name: "a key added and deleted", ops: ["snapshot s", "put n 1", "delete n"], expected: { s: {} } },
    {
      name: "two snapshots, each its own cut",
      ops: ["put a 1", "snapshot s1", "put a 2", "put b 2", "snapshot s2", "put a 3", "delete b"],
      expected: { s1: { a: 1 }, s2: { a: 2, b: 2 } },
    },
    {
      name: "a delete between two snapshots, the older released first",
      ops: [
        "put a 1",
        "put b 1",
        "snapshot s1",
        "delete a",
        "snapshot s2",
        "release s1",
        "put a 7",
        "delete b",
      ],
      expected: { s2: { b: 1 } },
    },
    {
      name: "a delete between two snapshots, the newer released first",
      ops: ["put a 1", "snapshot s1", "delete a", "snapshot s2", "release s2", "put a 7"],
      expected: { s1: { a: 1 } },
    },
  ];

  test.each(cases)("$name", ({ ops, expected }) => {
    const state = new KeyGroupedStateBackend(4, { start: 0, end: 3 });
    const model = new Map<string, JsonValue>();
    const snapshots = new Map<string, KeyedStateSnapshot>();
    for (const op of ops) {
      const [verb, name, value] = op.split(" ") as [string, string, string | undefined];
      if (verb === "put") {
        state.put(name, Number(value));
        model.set(name, Number(value));
      } else if (verb === "delete") {
        state.delete(name);
        model.delete(name);
      } else if (verb === "snapshot") {
        snapshots.set(name, state.snapshot());
      } else {
        snapshots.get(name)!.release();
      }
    }
    for (const [name, contents] of Object.entries(expected)) {
      const snapshot = snapshots.get(name)!;
      expect(new SnapshotReader(snapshot, 4).readAll()).toEqual(contents);
      expect(snapshot.entryCount).toBe(Object.keys(contents).length);
    }
    expect(state.size).toBe(model.size);
    for (const key of ["a", "b", "n"]) expect(state.get(key)).toBe(model.get(key));
  });

  test("a released snapshot can no longer be read, and its tombstones are gone", () => {
    const state = new KeyGroupedStateBackend(4, { start: 0, end: 3 });
    state.put("a", 1);
    const snapshot = state.snapshot();
    state.delete("a");
    expect(state.size).toBe(0);
    snapshot.release();
    snapshot.release();
    expect(() => new SnapshotReader(snapshot, 4).readAll()).toThrow(/read after its release/);
    const next = state.snapshot();
    expect(next.keyGroups).toEqual([]);
    expect(next.entryCount).toBe(0);
    state.put("a", 2);
    expect(new SnapshotReader(next, 4).readAll()).toEqual({});
    expect(state.get("a")).toBe(2);
  });

  // A seeded sequence of puts, deletes, snapshots, partial reads and releases against a model that
  // deep-copies the state at every snapshot: each snapshot, read a little at a time while the state
  // keeps changing, must yield exactly the state at its start.
  test.each([1, 2, 3, 4, 5, 6, 7, 8])("random interleavings match a copying model (seed %i)", (seed) => {
    const random = mulberry32(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const maxParallelism = 8;
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const state = new KeyGroupedStateBackend(maxParallelism, { start: 0, end: maxParallelism - 1 });
    const model = new Map<string, JsonValue>();
    const held: Array<{ reader: SnapshotReader; expected: Map<string, JsonValue> }> = [];
    let snapshotsChecked = 0;
    const finish = (index: number) => {
      const [{ reader, expected }] = held.splice(index, 1) as [(typeof held)[number]];
      reader.read();
      expect(reader.seen).toEqual(expected);
      expect(reader.snapshot.entryCount).toBe(expected.size);
      reader.snapshot.release();
      snapshotsChecked++;
    };
    for (let step = 0; step < 3_000; step++) {
      const roll = random();
      const key = keys[pick(keys.length)]!;
      if (roll < 0.45) {
        const value = { step, nested: [step % 3] };
        state.put(key, value);
        model.set(key, value);
      } else if (roll < 0.7) {
        state.delete(key);
        model.delete(key);
      } else if (roll < 0.8 && held.length < 4) {
        const expected = new Map([...model].map(([k, v]) => [k, structuredClone(v)]));
        held.push({ reader: new SnapshotReader(state.snapshot(), maxParallelism), expected });
      } else if (roll < 0.95 && held.length > 0) {
        held[pick(held.length)]!.reader.read(1 + pick(5));
      } else if (held.length > 0) {
        finish(pick(held.length));
      }
      if (step % 100 === 0) {
        expect(state.size).toBe(model.size);
        for (const k of keys) expect(state.get(k)).toEqual(model.get(k));
      }
    }
    while (held.length > 0) finish(0);
    expect(snapshotsChecked).toBeGreaterThan(50);
    expect(state.size).toBe(model.size);
    // With nothing held, the live maps hold no tombstones: a snapshot counts only live keys.
    expect(state.snapshot().entryCount).toBe(model.size);
  });
});

/** A small seeded PRNG (mulberry32): the same seed gives the same sequence of operations. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("restore with another parallelism", () => {
  test.each([
    [2, 3],
    [3, 2],
    [2, 1],
  ])(
    "a checkpoint of %i tasks restored by %i tasks keeps every key's state exactly once",
    async (before, after) => {
      const store = new MemoryObjectStore(BUCKET);
      const keys = 500;
      const { manifestKey } = await writeCheckpoint(store, 7, filledStates(keys, before, 128), { "p-0": 41 });
      const restored = new Map<string, unknown>();
      for (let taskIndex = 0; taskIndex < after; taskIndex++) {
        const range = keyGroupRangeForTask(128, after, taskIndex);
        const state = new KeyGroupedStateBackend(128, range);
        const result = await restoreCheckpoint(
          {
            restoreFrom: { checkpointId: 7, bucket: BUCKET, manifestKey },
            job: JOB,
            maxParallelism: 128,
            keyGroupRange: range,
          },
          store,
          { default: state },
        );
        expect(result.sourceOffsets).toEqual({ "p-0": 41 });
        expect(result.keysRestored).toBe(state.size);
        for (let i = 0; i < keys; i++) {
          if (!state.owns(`key-${i}`)) continue;
          expect(restored.has(`key-${i}`)).toBe(false);
          restored.set(`key-${i}`, state.get(`key-${i}`));
        }
      }
      expect(restored.size).toBe(keys);
      for (let i = 0; i < keys; i++) expect(restored.get(`key-${i}`)).toBe(i);
    },
  );
});
