import { createHash } from "node:crypto";
import type { CheckpointManifest } from "../../../src/api/protocol.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { verifySequenceOutput } from "../../../src/taskmanager/job/builtin/sequence.js";
import { committedOutputKey } from "../../../src/taskmanager/sink/output-layout.js";
import {
  checkpointProblems,
  CheckpointIdWatch,
  countOutputProblems,
  isHealthy,
  passed,
  summaryLine,
} from "../../support/chaos/verify.js";

const DIR = "checkpoints/default/sequence/";
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Checkpoint `id` of a two-task job, one part per task, written the way the coordinator writes it. */
async function writeCheckpoint(store: MemoryObjectStore, id: number): Promise<{ id: number; path: string }> {
  const parts = [0, 1].map((taskIndex) => {
    const body = Buffer.from(`state of task ${taskIndex} at checkpoint ${id}`);
    return {
      key: `${DIR}chk-${id}/task-${taskIndex}/part-0`,
      body,
      taskIndex,
      keyGroupRange: taskIndex === 0 ? { start: 0, end: 1 } : { start: 2, end: 3 },
    };
  });
  for (const part of parts) await store.put(part.key, part.body);
  const manifest: CheckpointManifest = {
    manifestVersion: 1,
    checkpointId: id,
    kind: "checkpoint",
    job: { namespace: "default", name: "sequence" },
    epoch: 1,
    parallelism: 2,
    maxParallelism: 4,
    triggeredAt: 1_000,
    completedAt: 1_100,
    tasks: parts.map(({ taskIndex, keyGroupRange }) => ({
      taskIndex,
      keyGroupRange,
      syncDurationMs: 1,
      asyncDurationMs: 2,
    })),
    parts: parts.map(({ key, body, taskIndex, keyGroupRange }) => ({
      key,
      sizeBytes: body.length,
      sha256: sha256(body),
      keyGroupRange,
      taskIndex,
    })),
    sourceOffsets: { "seq-0": 10, "seq-1": 12 },
  };
  const path = `${DIR}chk-${id}/_metadata`;
  await store.put(path, Buffer.from(JSON.stringify(manifest)));
  return { id, path };
}

describe("checkpointProblems", () => {
  test("an intact checkpoint has none", async () => {
    const store = new MemoryObjectStore();
    expect(await checkpointProblems(store, await writeCheckpoint(store, 7))).toEqual([]);
  });

  test("a manifest that is missing", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    await store.delete([pointer.path]);
    expect(await checkpointProblems(store, pointer)).toEqual([
      `checkpoint 7 (${pointer.path}): the manifest is missing`,
    ]);
  });

  test("a manifest pointing at a missing part", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    await store.delete([`${DIR}chk-7/task-1/part-0`]);
    expect(await checkpointProblems(store, pointer)).toEqual([
      `checkpoint 7 (${pointer.path}): part ${DIR}chk-7/task-1/part-0 is missing`,
    ]);
  });

  test("a part of another size, and so another sha256", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    await store.put(`${DIR}chk-7/task-0/part-0`, Buffer.from("truncated"));
    const problems = await checkpointProblems(store, pointer);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/part-0 has 9 bytes, the manifest says \d+$/);
    expect(problems[1]).toMatch(/part-0 has sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/);
  });

  test("a part of the right size with other bytes", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    const key = `${DIR}chk-7/task-1/part-0`;
    const bytes = await store.get(key);
    bytes[0] = bytes[0]! ^ 0xff;
    await store.put(key, bytes);
    const problems = await checkpointProblems(store, pointer);
    expect(problems).toEqual([expect.stringMatching(/task-1\/part-0 has sha256 .*, the manifest says/)]);
  });

  test("status naming one checkpoint while the manifest is another's", async () => {
    const store = new MemoryObjectStore();
    const { path } = await writeCheckpoint(store, 7);
    expect(await checkpointProblems(store, { id: 8, path })).toEqual([
      `checkpoint 8 (${path}): the manifest is checkpoint 7's`,
    ]);
  });

  test("a manifest that does not parse", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    await store.put(pointer.path, Buffer.from("{not json"));
    expect(await checkpointProblems(store, pointer)).toEqual([
      `checkpoint 7 (${pointer.path}): the manifest is not JSON`,
    ]);
    await store.put(pointer.path, Buffer.from(JSON.stringify({ checkpointId: 7 })));
    expect((await checkpointProblems(store, pointer))[0]).toMatch(/the manifest is invalid: /);
  });

  test("a store that cannot be read rejects instead of reporting the checkpoint broken", async () => {
    const store = new MemoryObjectStore();
    const pointer = await writeCheckpoint(store, 7);
    store.get = () => Promise.reject(new Error("connect ECONNREFUSED"));
    await expect(checkpointProblems(store, pointer)).rejects.toThrow("ECONNREFUSED");
  });
});

describe("CheckpointIdWatch", () => {
  test("ids that stay or grow pass; an id going back is a violation", () => {
    const watch = new CheckpointIdWatch();
    expect([3, 3, 4, 9].map((id) => watch.observe(id))).toEqual([undefined, undefined, undefined, undefined]);
    expect(watch.observe(8)).toBe("status.latestCheckpoint went back from checkpoint 9 to 8");
    expect(watch.latest).toBe(9);
  });
});

describe("isHealthy", () => {
  const checkpoint = (id: number) => ({
    id,
    path: `${DIR}chk-${id}/_metadata`,
    completedAt: "2026-01-01T00:00:00Z",
    durationMs: 1,
    sizeBytes: 1,
  });
  test("Running with two checkpoints after the mark", () => {
    expect(isHealthy({ phase: "Running", latestCheckpoint: checkpoint(12) }, 10)).toBe(true);
    expect(isHealthy({ phase: "Running", latestCheckpoint: checkpoint(11) }, 10)).toBe(false);
    expect(isHealthy({ phase: "Restarting", latestCheckpoint: checkpoint(20) }, 10)).toBe(false);
    expect(isHealthy(undefined, 0)).toBe(false);
  });
});

describe("committed output", () => {
  const jobDir = DIR;
  async function output(lines: Record<number, string[]>): Promise<MemoryObjectStore> {
    const store = new MemoryObjectStore();
    for (const [checkpointId, text] of Object.entries(lines))
      await store.put(
        committedOutputKey(jobDir, 0, Number(checkpointId)),
        Buffer.from(text.join("\n") + "\n"),
      );
    return store;
  }

  test("exact output has no gap and no duplicate", async () => {
    const store = await output({ 1: ["seq-0 1", "seq-1 1", "seq-0 2"], 2: ["seq-0 3", "seq-1 2"] });
    expect(countOutputProblems(await verifySequenceOutput(store, jobDir))).toEqual({
      gaps: 0,
      duplicates: 0,
      other: [],
    });
  });

  test("doctored output: a record lost, a record replayed, a line garbled", async () => {
    const store = await output({
      1: ["seq-0 1", "seq-0 2", "seq-1 1"],
      2: ["seq-0 2", "seq-0 3", "seq-1 3", "garbage"],
    });
    const counts = countOutputProblems(await verifySequenceOutput(store, jobDir));
    expect(counts.gaps).toBe(1);
    expect(counts.duplicates).toBe(1);
    expect(counts.other).toEqual([expect.stringContaining('unreadable line "garbage"')]);
  });
});

test("the summary line, and whether the run passed", () => {
  const clean = { faults: 40, violations: 0, gaps: 0, duplicates: 0 };
  expect(summaryLine(clean)).toBe("chaos: 40 faults, 0 violations, 0 gaps, 0 duplicates");
  expect(passed(clean)).toBe(true);
  expect(passed({ ...clean, violations: 1 })).toBe(false);
  expect(passed({ ...clean, gaps: 1 })).toBe(false);
  expect(passed({ ...clean, duplicates: 2 })).toBe(false);
});
