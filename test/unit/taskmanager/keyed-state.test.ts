import { keyGroupForKey, keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { restoreCheckpoint } from "../../../src/taskmanager/restore/restore.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { decodeStatePart, encodeStatePart } from "../../../src/taskmanager/state/state-part.js";
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
    const entries = [
      ...decodeStatePart(await bytesOf(encodeStatePart(snapshot)), { start: 0, end: 15 }, "part"),
    ];
    expect(entries).toHaveLength(50);
    expect(entries.find((entry) => entry.key === "key-1")?.value).toBe(1);
    expect(entries.find((entry) => entry.key === "key-2")?.value).toBe(2);
    expect(entries.some((entry) => entry.key === "key-new")).toBe(false);
    expect(state!.get("key-1")).toBe("changed");
    expect(state!.get("key-2")).toBeUndefined();
  });

  test("the part format lets a reader take single key groups, in ascending order", async () => {
    const [state] = filledStates(300, 1, 8);
    const bytes = await bytesOf(encodeStatePart(state!.snapshot()));
    const firstLine = bytes.toString("utf8").split("\n")[0];
    expect(JSON.parse(firstLine!)).toEqual({
      format: "streamjob-keyed-state",
      version: 1,
      keyGroupRange: { start: 0, end: 7 },
    });
    const some = [...decodeStatePart(bytes, { start: 2, end: 3 }, "part")];
    expect(some.length).toBeGreaterThan(0);
    expect(some.every((entry) => entry.keyGroup >= 2 && entry.keyGroup <= 3)).toBe(true);
    expect(some.every((entry) => keyGroupForKey(entry.key, 8) === entry.keyGroup)).toBe(true);
    const all = [...decodeStatePart(bytes, { start: 0, end: 7 }, "part")];
    expect(all).toHaveLength(300);
    expect(all.map((entry) => entry.keyGroup)).toEqual(
      [...all.map((entry) => entry.keyGroup)].sort((a, b) => a - b),
    );
  });

  test("a part with an entry outside its stated range is refused, naming the line", () => {
    const bytes = Buffer.from(
      '{"format":"streamjob-keyed-state","version":1,"keyGroupRange":{"start":0,"end":3}}\n{"g":9,"k":"x","v":1}\n',
    );
    expect(() => [...decodeStatePart(bytes, { start: 0, end: 15 }, "s3://b/part")]).toThrow(
      "s3://b/part line 2: key group 9 outside the part's range 0-3",
    );
  });
});

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
          state,
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
