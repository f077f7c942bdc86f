import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { CheckpointManifest } from "../../../src/api/protocol.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { ObjectSnapshotStore } from "../../../src/storage/snapshot-store.js";
import { restoreCheckpoint, type RestoreTarget } from "../../../src/taskmanager/restore/restore.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { BUCKET, filledStates, JOB, writeCheckpoint } from "./support/fixtures.js";

async function setUp() {
  const store = new MemoryObjectStore(BUCKET);
  const written = await writeCheckpoint(store, 7, filledStates(200, 2, 12));
  const range = keyGroupRangeForTask(12, 1, 0);
  const target: RestoreTarget = {
    restoreFrom: { checkpointId: 7, bucket: BUCKET, manifestKey: written.manifestKey },
    job: JOB,
    maxParallelism: 12,
    keyGroupRange: range,
  };
  return { store, ...written, target, state: new KeyGroupedStateBackend(12, range) };
}

describe("restore refuses anything it cannot verify", () => {
  test("a part whose block bytes changed (same size) is refused naming the part, the block and both digests, loading nothing", async () => {
    const { store, manifest, target, state } = await setUp();
    const part = manifest.parts[1]!;
    const bytes = await store.get(part.key);
    const at = bytes.indexOf(0x5b); // the first entry's "[", inside the first block
    bytes[at + 2] = bytes[at + 2] === 0x31 ? 0x32 : 0x31;
    await store.put(part.key, bytes);
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      new RegExp(
        `^restore: unreadable part s3://streamjob/${part.key} at byte \\d+: block of key group \\d+ sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}$`,
      ),
    );
    expect(state.size).toBe(0);
  });

  test("an index that does not match the manifest's digest is refused before any block is read", async () => {
    const { store, manifest, manifestKey, target, state } = await setUp();
    const part = manifest.parts[0]!;
    const forged = {
      ...manifest,
      parts: manifest.parts.map((p, i) =>
        i === 0 ? { ...p, index: { ...p.index!, sha256: "0".repeat(64) } } : p,
      ),
    };
    await store.put(manifestKey, Buffer.from(JSON.stringify(forged)));
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      `restore: unreadable part s3://streamjob/${part.key} at byte ${part.index!.offset}: index sha256 mismatch: expected ${"0".repeat(64)}`,
    );
    expect(state.size).toBe(0);
  });

  test("a truncated part is refused: for its index range, or read whole, for its size", async () => {
    const { store, manifest, manifestKey, target, state } = await setUp();
    const part = manifest.parts[0]!;
    await store.put(part.key, (await store.get(part.key)).subarray(0, 10));
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      `restore: unreadable part s3://streamjob/${part.key} at byte ${part.index!.offset}: index range has 0 bytes, the manifest says ${part.index!.length}`,
    );
    const withoutIndex = { ...manifest, parts: manifest.parts.map(({ index: _, ...rest }) => rest) };
    await store.put(manifestKey, Buffer.from(JSON.stringify(withoutIndex)));
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      `restore: part s3://streamjob/${part.key} size mismatch: expected ${part.sizeBytes} bytes, got 10`,
    );
  });

  test("a part read whole (no index in the manifest) whose bytes changed is refused for its sha256", async () => {
    const { store, manifest, manifestKey, target, state } = await setUp();
    const withoutIndex = { ...manifest, parts: manifest.parts.map(({ index: _, ...rest }) => rest) };
    await store.put(manifestKey, Buffer.from(JSON.stringify(withoutIndex)));
    const part = manifest.parts[1]!;
    const bytes = await store.get(part.key);
    bytes[40] = 0x00; // inside the header: the line no longer parses, but the digest is reported
    await store.put(part.key, bytes);
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      new RegExp(
        `^restore: part s3://streamjob/${part.key} sha256 mismatch: expected ${part.sha256}, got [0-9a-f]{64}$`,
      ),
    );
    expect(state.size).toBe(0);
  });

  test("a missing part or manifest is refused naming the object", async () => {
    const { store, manifest, manifestKey, target, state } = await setUp();
    await store.delete([manifest.parts[0]!.key]);
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      `restore: part s3://streamjob/${manifest.parts[0]!.key} not found`,
    );
    await store.delete([manifestKey]);
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      `restore: manifest s3://streamjob/${manifestKey} not found`,
    );
  });

  test("a manifest of another checkpoint, job or maxParallelism is refused naming the field", async () => {
    const { store, target, state } = await setUp();
    await expect(
      restoreCheckpoint({ ...target, restoreFrom: { ...target.restoreFrom, checkpointId: 8 } }, store, {
        default: state,
      }),
    ).rejects.toThrow(/checkpointId: 7, expected 8/);
    await expect(
      restoreCheckpoint({ ...target, job: { ...JOB, name: "other" } }, store, { default: state }),
    ).rejects.toThrow(/job: default\/orders, expected default\/other/);
    await expect(
      restoreCheckpoint({ ...target, maxParallelism: 24, keyGroupRange: { start: 0, end: 23 } }, store, {
        default: state,
      }),
    ).rejects.toThrow(/maxParallelism: 12, expected 24/);
  });

  test("an invalid manifest is refused naming the field", async () => {
    const { store, manifest, manifestKey, target, state } = await setUp();
    await store.put(
      manifestKey,
      Buffer.from(JSON.stringify({ ...manifest, parts: [{ ...manifest.parts[0], sha256: "x" }] })),
    );
    await expect(restoreCheckpoint(target, store, { default: state })).rejects.toThrow(
      /is invalid: parts\[0\]\.sha256: expected 64 lowercase hex/,
    );
  });
});

test("a stored v1 manifest with the fractional durations older TaskManagers wrote still restores", async () => {
  // Written by the reference before durations were whole milliseconds: `"syncDurationMs": 0.1018…`.
  const fixture = fileURLToPath(new URL("fixtures/v1-fractional-durations/", import.meta.url));
  const store = new MemoryObjectStore(BUCKET);
  for (const file of ["chk-3/_metadata", "chk-3/task-0/kg-0-3"]) {
    await store.put(`checkpoints/default/orders/${file}`, readFileSync(path.join(fixture, file)));
  }
  const manifestKey = "checkpoints/default/orders/chk-3/_metadata";
  const stored: unknown = JSON.parse((await store.get(manifestKey)).toString("utf8"));
  expect(CheckpointManifest.safeParse(stored).success).toBe(false);

  const range = keyGroupRangeForTask(4, 1, 0);
  const state = new KeyGroupedStateBackend(4, range);
  const restored = await restoreCheckpoint(
    {
      restoreFrom: { checkpointId: 3, bucket: BUCKET, manifestKey },
      job: JOB,
      maxParallelism: 4,
      keyGroupRange: range,
    },
    store,
    { default: state },
  );
  expect(restored).toMatchObject({ checkpointId: 3, keysRestored: 4 });
  expect(restored.sourceOffsets).toEqual({ "seq-0": 10, "seq-1": 11, "seq-2": 12, "seq-3": 13 });
  expect(["seq-0", "seq-1", "seq-2", "seq-3"].map((key) => state.get(key))).toEqual([10, 11, 12, 13]);
  // The coordinator reads it the same way, rounding to whole milliseconds.
  const manifest = await new ObjectSnapshotStore(store, "checkpoints").getManifest(manifestKey);
  expect(manifest?.tasks[0]).toMatchObject({ syncDurationMs: 0, asyncDurationMs: 96 });
});
