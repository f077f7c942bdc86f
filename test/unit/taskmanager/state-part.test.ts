import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { keyGroupForKey, keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { CheckpointManifest } from "../../../src/api/protocol.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { restoreCheckpoint, type RestoreTarget } from "../../../src/taskmanager/restore/restore.js";
import { duplicateMemberName, unwritableValue } from "../../../src/taskmanager/state/i-json.js";
import { KeyGroupedStateBackend, type JsonValue } from "../../../src/taskmanager/state/keyed-state.js";
import { decodeStatePart, type PartExpectation } from "../../../src/taskmanager/state/state-part-decoder.js";
import { encodeStatePart, type StatePartStream } from "../../../src/taskmanager/state/state-part.js";
import { BUCKET, filledStates, JOB, writeCheckpoint } from "./support/fixtures.js";

async function bytesOf(stream: StatePartStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function expectation(
  maxParallelism: number,
  wanted = { start: 0, end: maxParallelism - 1 },
): PartExpectation {
  return {
    objectName: "s3://b/part",
    keyGroupRange: { start: 0, end: maxParallelism - 1 },
    stageId: "default",
    wanted,
    maxParallelism,
  };
}

const HEADER =
  '{"format":"streamjob-keyed-state","version":2,"stageId":"default","keyGroupRange":{"start":0,"end":7}}';

/** A v2 part of key groups 0-7: the header, then `lines` as they are. */
function partWith(lines: string[]): Buffer {
  return Buffer.from(`${HEADER}\n${lines.map((line) => `${line}\n`).join("")}`);
}

/** A v2 part of key groups 0-7 holding `blocks` (each a key group line and entries), with its index. */
function indexedPart(blocks: string[][]): Buffer {
  let offset = HEADER.length + 1;
  const rows = blocks.map((lines) => {
    const bytes = Buffer.from(lines.map((line) => `${line}\n`).join(""));
    const row = [
      (JSON.parse(lines[0]!) as { keyGroup: number }).keyGroup,
      offset,
      bytes.length,
      createHash("sha256").update(bytes).digest("hex"),
    ];
    offset += bytes.length;
    return row;
  });
  return partWith([...blocks.flat(), `${HEADER.slice(0, -1)},"keyGroups":${JSON.stringify(rows)}}`]);
}

describe("part format v2: encoding", () => {
  const values: JsonValue[] = [
    0,
    -17,
    1.5,
    9007199254740991,
    -9007199254740991,
    2 ** 60,
    -1e300,
    5e-324,
    "ünïcödé ✓ 😀",
    "",
    null,
    true,
    [1, "two", [3]],
    { nested: { a: [null, { b: 0.1 }] }, 'with "quotes"': "\n\t" },
  ];

  test("round trip: every value reads back equal, entries grouped by ascending key group, index last", async () => {
    const state = new KeyGroupedStateBackend(8, { start: 0, end: 7 });
    values.forEach((value, i) => state.put(`key-${i}`, value));
    const snapshot = state.snapshot();
    const stream = encodeStatePart(snapshot);
    const bytes = await bytesOf(stream);
    snapshot.release();
    const lines = bytes.toString("utf8").split("\n");
    expect(lines.pop()).toBe("");
    expect(lines[0]).toBe(HEADER);
    // One key group line per non-empty key group; entries are [key, value], the key group not repeated.
    const groups = lines.filter((line) => line.startsWith('{"keyGroup":'));
    expect(groups.length).toBe(new Set(values.map((_, i) => keyGroupForKey(`key-${i}`, 8))).size);
    expect(lines.filter((line) => line.startsWith("[")).length).toBe(values.length);
    const index = JSON.parse(lines.at(-1)!) as { keyGroups: [number, number, number, string][] };
    expect(index.keyGroups.map(([g]) => g)).toEqual(
      groups.map((line) => (JSON.parse(line) as { keyGroup: number }).keyGroup),
    );
    expect(stream.indexLocation).toMatchObject({
      offset: bytes.length - lines.at(-1)!.length - 1,
      length: lines.at(-1)!.length + 1,
    });

    const decoded = decodeStatePart(bytes, expectation(8));
    expect(new Map(decoded.map((entry) => [entry.key, entry.value]))).toEqual(
      new Map(values.map((value, i) => [`key-${i}`, value])),
    );
    const some = decodeStatePart(bytes, expectation(8, { start: 2, end: 3 }));
    expect(some.every((entry) => entry.keyGroup >= 2 && entry.keyGroup <= 3)).toBe(true);
    expect(some.length).toBe(decoded.filter((entry) => entry.keyGroup >= 2 && entry.keyGroup <= 3).length);
  });

  test.each<[string, unknown, string]>([
    ["NaN", { a: Number.NaN }, "$.a: NaN is not a finite number"],
    ["Infinity", [Infinity], "$[0]: Infinity is not a finite number"],
    ["a lone surrogate", { s: "a\ud800" }, "$.s: string holds a lone surrogate"],
    ["a lone surrogate in a member name", { "\udc00": 1 }, "$: member name holds a lone surrogate"],
    ["undefined", { u: undefined }, "$.u: undefined is not JSON"],
    ["a function", [() => 1], "$[0]: function is not JSON"],
    ["a BigInt", 1n, "$: bigint is not JSON"],
    ["a Date", { at: new Date(0) }, "$.at: Date is not plain JSON data"],
    ["an array hole", [1, , 3], "$[1]: array hole"], // eslint-disable-line no-sparse-arrays
  ])("the encoder refuses %s, naming the key and the place", async (_, value, problem) => {
    expect(unwritableValue(value)).toContain(problem);
    const state = new KeyGroupedStateBackend(8, { start: 0, end: 7 });
    state.put("k", value as JsonValue);
    const snapshot = state.snapshot();
    await expect(bytesOf(encodeStatePart(snapshot))).rejects.toThrow(
      `state of key "k" (key group ${keyGroupForKey("k", 8)}) cannot be written: ${problem}`,
    );
    snapshot.release();
  });
});

describe("part format v2: the reader refuses what the format forbids, naming the object and byte", () => {
  const at = HEADER.length + 1; // the first line after the header
  const block = '{"keyGroup":2}';
  const key = ["a", "b", "c", "d", "e", "f", "g"].find((k) => keyGroupForKey(k, 8) === 2)!;

  test.each<[string, string[], string]>([
    ["a duplicate member name", [block, `["${key}",{"a":1,"b":2,"a":3}]`], 'member name "a" occurs twice'],
    ["a number beyond the doubles", [block, `["${key}",1e400]`], "$[1]: Infinity is not a finite number"],
    ["a lone surrogate escape", [block, `["${key}","\\ud800"]`], "$[1]: string holds a lone surrogate"],
    [
      "an entry before any key group line",
      [`["${key}",1]`],
      `at byte ${at}: an entry before the first key group line`,
    ],
    [
      "a key stored under another key group",
      ['{"keyGroup":3}', `["${key}",1]`],
      `does not belong to key group 3`,
    ],
    ["key groups out of order", ['{"keyGroup":3}', block], "key group 2 after key group 3"],
    ["a key group outside the part's range", ['{"keyGroup":9}'], "key group 9 outside the part's range 0-7"],
    ["a part without its index line", [block, `["${key}",1]`], "ends without its index line"],
    [
      "an index that does not describe the blocks",
      [block, `["${key}",1]`, `${HEADER.slice(0, -1)},"keyGroups":[]}`],
      "the index does not describe the part's blocks",
    ],
  ])("%s", (_, lines, message) => {
    expect(() => decodeStatePart(partWith(lines), expectation(8))).toThrow(message);
    expect(() => decodeStatePart(partWith(lines), expectation(8))).toThrow(/^s3:\/\/b\/part at byte \d+: /);
  });

  test("invalid UTF-8 is refused", () => {
    const bytes = Buffer.concat([
      Buffer.from(`${HEADER}\n${block}\n["${key}","`),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"]\n'),
    ]);
    expect(() => decodeStatePart(bytes, expectation(8))).toThrow(
      `s3://b/part at byte ${at + block.length + 1}: not UTF-8`,
    );
  });

  test("duplicate member names are found at any depth and through escapes, not inside strings", () => {
    expect(duplicateMemberName('{"a":{"x":1,"\\u0078":2}}')).toBe("x");
    expect(duplicateMemberName('[{"a":1},{"a":2}]')).toBeUndefined();
    expect(duplicateMemberName('{"a":"{\\"a\\":1}","b":["a","a"]}')).toBeUndefined();
  });

  test("a part of another writer reads as the format says: 1.0 is the number 1", () => {
    const entries = decodeStatePart(indexedPart([[block, `["${key}",1.0]`]]), expectation(8));
    expect(entries).toEqual([{ keyGroup: 2, key, value: 1 }]);
    expect(Object.is(entries[0]!.value, 1)).toBe(true);
  });

  test("an integer literal beyond 2^53 reads as the nearest double, as in every conforming reader", () => {
    const entries = decodeStatePart(indexedPart([[block, `["${key}",9007199254740993]`]]), expectation(8));
    expect(entries[0]!.value).toBe(2 ** 53);
  });
});

describe("ranged restore after a rescale", () => {
  /** Records what restore reads; whole-object reads of parts would defeat the index. */
  class RecordingStore extends MemoryObjectStore {
    readonly ranges: Array<[string, number, number]> = [];
    readonly wholeReads: string[] = [];
    override async getRange(key: string, offset: number, length: number) {
      this.ranges.push([key, offset, length]);
      return super.getRange(key, offset, length);
    }
    override async getStream(key: string) {
      this.wholeReads.push(key);
      return super.getStream(key);
    }
  }

  test("each new task reads only its key groups' byte ranges (plus the index) and gets exactly its keys", async () => {
    const store = new RecordingStore(BUCKET);
    const keys = 2000;
    const { manifestKey, manifest } = await writeCheckpoint(store, 7, filledStates(keys, 2, 128));
    const totalBytes = manifest.parts.reduce((sum, part) => sum + part.sizeBytes, 0);
    const restored = new Map<string, unknown>();
    for (let taskIndex = 0; taskIndex < 5; taskIndex++) {
      const range = keyGroupRangeForTask(128, 5, taskIndex);
      const state = new KeyGroupedStateBackend(128, range);
      store.ranges.length = 0;
      await restoreCheckpoint(
        {
          restoreFrom: { checkpointId: 7, bucket: BUCKET, manifestKey },
          job: JOB,
          maxParallelism: 128,
          keyGroupRange: range,
        },
        store,
        { default: state },
      );
      expect(store.wholeReads).toEqual([]);
      const read = store.ranges.reduce((sum, [, , length]) => sum + length, 0);
      // About a fifth of the bytes, plus the indexes of the (one or two) parts it overlaps.
      expect(read).toBeLessThan(
        totalBytes / 5 + 2 * Math.max(...manifest.parts.map((part) => part.index!.length)) + 200,
      );
      for (let i = 0; i < keys; i++) {
        if (!state.owns(`key-${i}`)) continue;
        expect(restored.has(`key-${i}`)).toBe(false);
        restored.set(`key-${i}`, state.get(`key-${i}`));
      }
    }
    expect(restored.size).toBe(keys);
    for (let i = 0; i < keys; i++) expect(restored.get(`key-${i}`)).toBe(i);
  });

  test("a part of a stage this job does not have is refused", async () => {
    const store = new MemoryObjectStore(BUCKET);
    const { manifestKey, manifest } = await writeCheckpoint(store, 7, filledStates(10, 1, 8));
    const withStage = { ...manifest, parts: manifest.parts.map((part) => ({ ...part, stageId: "join" })) };
    await store.put(manifestKey, Buffer.from(JSON.stringify(withStage)));
    const range = { start: 0, end: 7 };
    await expect(
      restoreCheckpoint(
        {
          restoreFrom: { checkpointId: 7, bucket: BUCKET, manifestKey },
          job: JOB,
          maxParallelism: 8,
          keyGroupRange: range,
        },
        store,
        { default: new KeyGroupedStateBackend(8, range) },
      ),
    ).rejects.toThrow(
      `restore: part s3://streamjob/${manifest.parts[0]!.key} holds state of stage "join", which this job does not have`,
    );
  });
});

test("a v1 checkpoint written by the v1 writer restores under the v2 reader, also rescaled", async () => {
  // fixtures/v1-parts: 2 tasks, maxParallelism 8, written by the part and manifest writers of the
  // commit before format v2 (values of every JSON kind, non-ASCII keys, 1e300 which v1 allowed).
  const fixture = fileURLToPath(new URL("fixtures/v1-parts/", import.meta.url));
  const store = new MemoryObjectStore(BUCKET);
  for (const file of ["chk-5/_metadata", "chk-5/task-0/kg-0-3", "chk-5/task-1/kg-4-7"]) {
    await store.put(`checkpoints/default/orders/${file}`, readFileSync(path.join(fixture, file)));
  }
  const manifestKey = "checkpoints/default/orders/chk-5/_metadata";
  const stored = CheckpointManifest.parse(JSON.parse((await store.get(manifestKey)).toString("utf8")));
  expect(stored.parts.every((part) => part.index === undefined && part.stageId === undefined)).toBe(true);
  const restored: Record<string, unknown> = {};
  for (let taskIndex = 0; taskIndex < 3; taskIndex++) {
    const range = keyGroupRangeForTask(8, 3, taskIndex);
    const state = new KeyGroupedStateBackend(8, range);
    const target: RestoreTarget = {
      restoreFrom: { checkpointId: 5, bucket: BUCKET, manifestKey },
      job: JOB,
      maxParallelism: 8,
      keyGroupRange: range,
    };
    const result = await restoreCheckpoint(target, store, { default: state });
    expect(result.sourceOffsets).toEqual({ "seq-0": 20, "seq-1": 21 });
    for (let i = 0; i < 40; i++) {
      const key = i < 30 ? `key-${i}` : `ключ-${i}`;
      if (state.owns(key)) restored[key] = state.get(key);
    }
  }
  const expected = JSON.parse(readFileSync(path.join(fixture, "expected-state.json"), "utf8")) as Record<
    string,
    unknown
  >;
  expect(restored).toEqual(expected);
  expect(Object.keys(restored)).toHaveLength(40);
});
