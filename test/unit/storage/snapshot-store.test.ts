import {
  checkpointDirectory,
  manifestKey,
  parseCheckpointDirectoryName,
  type CheckpointKind,
} from "../../../src/api/object-layout.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { CorruptManifestError, ObjectSnapshotStore } from "../../../src/storage/snapshot-store.js";
import { manifestFor } from "./fixtures.js";

const JOB = { namespace: "default", name: "orders" };
const BASE = "checkpoints";

function setup() {
  const objects = new MemoryObjectStore();
  return { objects, store: new ObjectSnapshotStore(objects, BASE) };
}

const location = (kind: CheckpointKind, checkpointId: number) => ({
  basePrefix: BASE,
  ...JOB,
  kind,
  checkpointId,
});

describe("manifests", () => {
  test("putManifest writes one object at the layout's manifest key; getManifest reads it back equal", async () => {
    const { objects, store } = setup();
    const manifest = manifestFor(BASE, JOB, "checkpoint", 7);
    const key = await store.putManifest(manifest);
    expect(key).toBe("checkpoints/default/orders/chk-7/_metadata");
    await expect(objects.list("")).resolves.toEqual([key]);
    await expect(store.getManifest(key)).resolves.toEqual(manifest);
  });

  test("a savepoint's manifest goes into its savepoint directory", async () => {
    const { store } = setup();
    const key = await store.putManifest(manifestFor(BASE, JOB, "savepoint", 12));
    expect(key).toBe(manifestKey(location("savepoint", 12)));
    expect(key).toBe("checkpoints/default/orders/savepoint-12/_metadata");
  });

  test("the base prefix may be empty", async () => {
    const store = new ObjectSnapshotStore(new MemoryObjectStore(), "");
    await expect(store.putManifest(manifestFor("", JOB, "checkpoint", 1))).resolves.toBe(
      "default/orders/chk-1/_metadata",
    );
  });

  test("putManifest refuses an invalid manifest and writes nothing", async () => {
    const { objects, store } = setup();
    const valid = manifestFor(BASE, JOB, "checkpoint", 7);
    const manifest = { ...valid, completedAt: valid.triggeredAt - 1 };
    await expect(store.putManifest(manifest)).rejects.toThrow(
      "refusing to write the manifest of checkpoint 7: completedAt: must not be before triggeredAt",
    );
    await expect(objects.list("")).resolves.toEqual([]);
  });

  test("getManifest of a key with no object resolves null", async () => {
    const { store } = setup();
    await expect(store.getManifest(manifestKey(location("checkpoint", 3)))).resolves.toBeNull();
  });

  test.each([
    ["not JSON", Buffer.from('{"manifestVersion": 1, "checkpointId": 7,'), /is corrupt: not JSON/],
    ["empty", Buffer.alloc(0), /is corrupt: not JSON/],
    [
      "JSON that is not a manifest",
      Buffer.from(JSON.stringify({ ...manifestFor(BASE, JOB, "checkpoint", 7), epoch: -1 })),
      /is corrupt: epoch: /,
    ],
    [
      "the manifest of another checkpoint",
      Buffer.from(JSON.stringify(manifestFor(BASE, JOB, "checkpoint", 8))),
      /is corrupt: it describes checkpoint 8, not the directory it is in/,
    ],
    [
      "a savepoint's manifest in a checkpoint directory",
      Buffer.from(JSON.stringify(manifestFor(BASE, JOB, "savepoint", 7))),
      /is corrupt: it describes savepoint 7/,
    ],
  ])("getManifest rejects %s with a CorruptManifestError naming the key", async (_what, bytes, message) => {
    const { objects, store } = setup();
    const key = manifestKey(location("checkpoint", 7));
    await objects.put(key, bytes);
    const read = store.getManifest(key);
    await expect(read).rejects.toBeInstanceOf(CorruptManifestError);
    await expect(read).rejects.toThrow(`manifest ${key} is corrupt`);
    await expect(read).rejects.toThrow(message);
  });
});

describe("listCheckpoints", () => {
  test("groups the job's objects by checkpoint and savepoint directory, manifest or not", async () => {
    const { objects, store } = setup();
    const chk3 = checkpointDirectory(location("checkpoint", 3));
    const chk10 = checkpointDirectory(location("checkpoint", 10));
    const sp4 = checkpointDirectory(location("savepoint", 4));
    const keys = [
      `${chk3}_metadata`,
      `${chk3}task-0/kg-0-3`,
      `${chk3}task-1/kg-4-7`,
      `${chk10}task-0/kg-0-3`, // in flight or aborted: no manifest
      `${sp4}_metadata`,
      `${sp4}task-0/kg-0-7`,
    ];
    for (const key of keys) await objects.put(key, Buffer.from(key));

    const listed = await store.listCheckpoints(JOB);
    expect(listed.sort((a, b) => a.directory.localeCompare(b.directory))).toEqual([
      {
        kind: "checkpoint",
        checkpointId: 10,
        directory: "checkpoints/default/orders/chk-10/",
        objectKeys: [`${chk10}task-0/kg-0-3`],
      },
      {
        kind: "checkpoint",
        checkpointId: 3,
        directory: "checkpoints/default/orders/chk-3/",
        objectKeys: [`${chk3}_metadata`, `${chk3}task-0/kg-0-3`, `${chk3}task-1/kg-4-7`],
      },
      {
        kind: "savepoint",
        checkpointId: 4,
        directory: "checkpoints/default/orders/savepoint-4/",
        objectKeys: [`${sp4}_metadata`, `${sp4}task-0/kg-0-7`],
      },
    ]);
  });

  test("ignores other jobs, other namespaces, other prefixes and names that are not checkpoint directories", async () => {
    const { objects, store } = setup();
    const ours = `${checkpointDirectory(location("checkpoint", 1))}_metadata`;
    const others = [
      "checkpoints/default/orders-2/chk-1/_metadata", // a job whose name starts with ours
      "checkpoints/other/orders/chk-1/_metadata",
      "elsewhere/default/orders/chk-1/_metadata",
      "checkpoints/default/orders/chk-1", // an object beside the directories
      "checkpoints/default/orders/chk-01/_metadata",
      "checkpoints/default/orders/chk-x/_metadata",
      "checkpoints/default/orders/sink/staged-1",
      "checkpoints/default/orders/savepoint-/_metadata",
    ];
    for (const key of [ours, ...others]) await objects.put(key, Buffer.from(key));
    await expect(store.listCheckpoints(JOB)).resolves.toEqual([
      {
        kind: "checkpoint",
        checkpointId: 1,
        directory: "checkpoints/default/orders/chk-1/",
        objectKeys: [ours],
      },
    ]);
  });

  test("a job with nothing stored has no checkpoints", async () => {
    await expect(setup().store.listCheckpoints(JOB)).resolves.toEqual([]);
  });

  test.each([
    ["chk-1", { kind: "checkpoint", checkpointId: 1 }],
    ["chk-9007199254740991", { kind: "checkpoint", checkpointId: 9007199254740991 }],
    ["savepoint-42", { kind: "savepoint", checkpointId: 42 }],
    ["chk-0", null],
    ["chk-007", null],
    ["chk-9007199254740992", null],
    ["chk-", null],
    ["chk-1a", null],
    ["chk-1/", null],
    ["savepoint-1.5", null],
    ["task-0", null],
    ["_metadata", null],
    ["CHK-1", null],
  ])("directory name %s parses as %j", (name, expected) => {
    expect(parseCheckpointDirectoryName(name)).toEqual(expected);
  });
});

describe("deleteObjects and statObject", () => {
  /** The store's object store, recording each delete call's keys. */
  function recordingSetup() {
    const { objects, store } = setup();
    const calls: string[][] = [];
    const remove = objects.delete.bind(objects);
    objects.delete = async (keys) => {
      calls.push([...keys]);
      await remove(keys);
    };
    return { objects, store, calls };
  }

  test("a manifest is deleted in a call of its own, before the parts listed after it", async () => {
    const { objects, store, calls } = recordingSetup();
    const dir3 = checkpointDirectory(location("checkpoint", 3));
    const dir4 = checkpointDirectory(location("checkpoint", 4));
    const keys = [
      `${dir3}_metadata`,
      `${dir3}task-0/kg-0-3`,
      `${dir3}task-1/kg-4-7`,
      `${dir4}_metadata`,
      `${dir4}task-0/kg-0-3`,
    ];
    for (const key of keys) await objects.put(key, Buffer.from(key));
    await store.deleteObjects(keys);
    expect(calls).toEqual([
      [`${dir3}_metadata`],
      [`${dir3}task-0/kg-0-3`, `${dir3}task-1/kg-4-7`],
      [`${dir4}_metadata`],
      [`${dir4}task-0/kg-0-3`],
    ]);
    await expect(objects.list("")).resolves.toEqual([]);
  });

  test("parts listed before a manifest are gone before it; without manifests it is one call", async () => {
    const { store, calls } = recordingSetup();
    const dir = checkpointDirectory(location("checkpoint", 5));
    await store.deleteObjects([`${dir}task-0/a`, `${dir}task-0/b`, `${dir}_metadata`]);
    await store.deleteObjects([`${dir}task-1/a`, `${dir}task-1/b`]);
    await store.deleteObjects([]);
    expect(calls).toEqual([
      [`${dir}task-0/a`, `${dir}task-0/b`],
      [`${dir}_metadata`],
      [`${dir}task-1/a`, `${dir}task-1/b`],
    ]);
  });

  test("keys already gone are not an error", async () => {
    const { store } = setup();
    await expect(
      store.deleteObjects([`${checkpointDirectory(location("checkpoint", 9))}_metadata`]),
    ).resolves.toBe(undefined);
  });

  test("statObject gives the size, or null when nothing is there", async () => {
    const { objects, store } = setup();
    await objects.put("checkpoints/default/orders/chk-1/task-0/kg-0-3", Buffer.alloc(1234));
    await expect(store.statObject("checkpoints/default/orders/chk-1/task-0/kg-0-3")).resolves.toEqual({
      sizeBytes: 1234,
    });
    await expect(store.statObject("checkpoints/default/orders/chk-1/task-1/kg-4-7")).resolves.toBeNull();
  });
});
