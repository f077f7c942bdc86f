import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { checkpointDirectory, type CheckpointKind } from "../../../src/api/object-layout.js";
import { CheckpointManifest } from "../../../src/api/protocol.js";
import type { StoredCheckpoint } from "../../../src/coordinator/interfaces.js";
import { planRetention, type RetentionInput } from "../../../src/coordinator/retention.js";
import { JOB, sha256 } from "../support/checkpoints.js";
import { randomInt, seededRandom } from "../../support/random.js";

const dir = (kind: CheckpointKind, checkpointId: number): string =>
  checkpointDirectory({ basePrefix: "cp", namespace: JOB.namespace, name: JOB.name, kind, checkpointId });

/** A manifest for two tasks; `partKeys` lets a manifest reference objects in other directories. */
function manifest(
  kind: CheckpointKind,
  checkpointId: number,
  partKeys?: [string, string],
): CheckpointManifest {
  const keys = partKeys ?? [
    `${dir(kind, checkpointId)}task-0/state`,
    `${dir(kind, checkpointId)}task-1/state`,
  ];
  return CheckpointManifest.parse({
    manifestVersion: 1,
    checkpointId,
    kind,
    job: JOB,
    epoch: 1,
    parallelism: 2,
    maxParallelism: 8,
    triggeredAt: checkpointId * 1000,
    completedAt: checkpointId * 1000 + 10,
    tasks: [0, 1].map((taskIndex) => ({
      taskIndex,
      keyGroupRange: keyGroupRangeForTask(8, 2, taskIndex),
      syncDurationMs: 1,
      asyncDurationMs: 5,
    })),
    parts: keys.map((key, taskIndex) => ({
      key,
      sizeBytes: 10,
      sha256: sha256(key),
      keyGroupRange: keyGroupRangeForTask(8, 2, taskIndex),
      taskIndex,
    })),
    sourceOffsets: {},
  });
}

function stored(kind: CheckpointKind, checkpointId: number, withManifest: boolean): StoredCheckpoint {
  const directory = dir(kind, checkpointId);
  const parts = [`${directory}task-0/state`, `${directory}task-1/state`];
  return {
    checkpointId,
    kind,
    directory,
    objectKeys: withManifest ? [...parts, `${directory}_metadata`] : parts,
  };
}

const completed = (id: number) => ({
  stored: stored("checkpoint", id, true),
  manifest: manifest("checkpoint", id),
});

function input(
  entries: Array<{ stored: StoredCheckpoint; manifest?: CheckpointManifest }>,
  options: Partial<Omit<RetentionInput, "stored" | "manifests">> = {},
): RetentionInput {
  return {
    stored: entries.map((entry) => entry.stored),
    manifests: entries.flatMap((entry) => (entry.manifest === undefined ? [] : [entry.manifest])),
    abortedIds: new Set(),
    pinnedIds: new Set(),
    retained: 2,
    ...options,
  };
}

const deletedIds = (plan: ReturnType<typeof planRetention>) => plan.map((deletion) => deletion.checkpointId);

describe("planRetention", () => {
  it("keeps the newest `retained` completed checkpoints and deletes older ones, manifest first", () => {
    const plan = planRetention(input([completed(3), completed(1), completed(4), completed(2)]));
    expect(plan).toEqual([
      {
        checkpointId: 1,
        kind: "checkpoint",
        reason: "superseded",
        keys: [
          `${dir("checkpoint", 1)}_metadata`,
          `${dir("checkpoint", 1)}task-0/state`,
          `${dir("checkpoint", 1)}task-1/state`,
        ],
      },
      expect.objectContaining({ checkpointId: 2, reason: "superseded" }),
    ]);
  });

  it("deletes nothing while there are no more than `retained` manifests", () => {
    expect(planRetention(input([completed(1), completed(2)]))).toEqual([]);
  });

  it("keeps an old checkpoint that newer directories without a manifest follow", () => {
    // chk-2 and chk-3 may still be in flight, or aborted: neither is a newer manifest.
    const entries = [
      completed(1),
      { stored: stored("checkpoint", 2, false) },
      { stored: stored("checkpoint", 3, false) },
    ];
    expect(planRetention(input(entries, { retained: 1 }))).toEqual([]);
  });

  it("deletes the parts of aborted checkpoints, but not of directories that may still be in flight", () => {
    const entries = [
      completed(1),
      { stored: stored("checkpoint", 2, false) },
      { stored: stored("checkpoint", 3, false) },
    ];
    const plan = planRetention(input(entries, { abortedIds: new Set([2]) }));
    expect(plan).toEqual([
      {
        checkpointId: 2,
        kind: "checkpoint",
        reason: "aborted",
        keys: [`${dir("checkpoint", 2)}task-0/state`, `${dir("checkpoint", 2)}task-1/state`],
      },
    ]);
  });

  it("keeps a checkpoint reported aborted whose manifest exists: the manifest is the commit", () => {
    expect(planRetention(input([completed(1), completed(2)], { abortedIds: new Set([2]) }))).toEqual([]);
  });

  it("keeps a directory whose manifest object exists but could not be read", () => {
    const entries = [completed(5), completed(6), { stored: stored("checkpoint", 1, true) }];
    expect(planRetention(input(entries, { abortedIds: new Set([1]) }))).toEqual([]);
  });

  it("keeps the pinned checkpoint (named in status) even when newer manifests exist", () => {
    const plan = planRetention(
      input([completed(1), completed(2), completed(3), completed(4)], { pinnedIds: new Set([1]) }),
    );
    expect(deletedIds(plan)).toEqual([2]);
  });

  it("never deletes savepoints, and they do not count towards `retained`", () => {
    const savepoint = { stored: stored("savepoint", 2, true), manifest: manifest("savepoint", 2) };
    const plan = planRetention(input([completed(1), savepoint, completed(3), completed(4)], { retained: 1 }));
    expect(plan.map((deletion) => [deletion.kind, deletion.checkpointId])).toEqual([
      ["checkpoint", 1],
      ["checkpoint", 3],
    ]);
  });

  it("deletes the leftovers of an aborted savepoint", () => {
    const plan = planRetention(
      input([completed(1), { stored: stored("savepoint", 2, false) }], { abortedIds: new Set([2]) }),
    );
    expect(plan.map((deletion) => [deletion.kind, deletion.reason])).toEqual([["savepoint", "aborted"]]);
  });

  it("keeps objects of an old checkpoint that a retained manifest or a savepoint references", () => {
    const old = `${dir("checkpoint", 1)}task-0/state`;
    const oldOther = `${dir("checkpoint", 1)}task-1/state`;
    const entries = [
      completed(1),
      {
        stored: stored("checkpoint", 2, true),
        manifest: manifest("checkpoint", 2, [old, `${dir("checkpoint", 2)}x`]),
      },
      {
        stored: stored("savepoint", 3, true),
        manifest: manifest("savepoint", 3, [`${dir("savepoint", 3)}y`, oldOther]),
      },
    ];
    const plan = planRetention(input(entries, { retained: 1 }));
    expect(plan).toEqual([
      {
        checkpointId: 1,
        kind: "checkpoint",
        reason: "superseded",
        keys: [`${dir("checkpoint", 1)}_metadata`],
      },
    ]);
  });

  it.each([0, -1, 1.5])("rejects retained = %p", (retained) => {
    expect(() => planRetention(input([completed(1)], { retained }))).toThrow(
      "retained must be an integer of at least 1",
    );
  });

  // Property: over many random storage states, nothing a kept manifest or any savepoint references (or
  // any object in their directories) is planned for deletion; the newest `retained` manifests survive;
  // manifest-less directories go only when aborted; each deleted manifest leads its checkpoint's keys.
  it("never plans to delete anything referenced, over 2000 random storage states", () => {
    const random = seededRandom(20_240_601);
    const problems: string[] = [];
    let deletions = 0;
    for (let round = 0; round < 2000; round++) {
      const entries: Array<{ stored: StoredCheckpoint; manifest?: CheckpointManifest }> = [];
      const allPartKeys: string[] = [];
      const count = randomInt(random, 0, 12);
      for (let id = 1; id <= count; id++) {
        const kind: CheckpointKind = random() < 0.2 ? "savepoint" : "checkpoint";
        const roll = random();
        const entry = { stored: stored(kind, id, roll < 0.7) };
        allPartKeys.push(...entry.stored.objectKeys.filter((key) => !key.endsWith("_metadata")));
        if (roll < 0.65) {
          // Sometimes reference a part of an older directory, as incremental snapshots would.
          const borrowed =
            allPartKeys.length > 0 && random() < 0.3
              ? allPartKeys[randomInt(random, 0, allPartKeys.length - 1)]
              : undefined;
          const own = entry.stored.objectKeys.filter((key) => !key.endsWith("_metadata")) as [string, string];
          entries.push({
            ...entry,
            manifest: manifest(kind, id, borrowed === undefined ? own : [own[0], borrowed]),
          });
        } else {
          entries.push(entry); // no manifest (roll >= 0.7), or a manifest that could not be read
        }
      }
      const ids = entries.map((entry) => entry.stored.checkpointId);
      const options = {
        retained: randomInt(random, 1, 4),
        abortedIds: new Set(ids.filter(() => random() < 0.4)),
        pinnedIds: new Set(ids.filter(() => random() < 0.1)),
      };
      const retentionInput = input(entries, options);
      const plan = planRetention(retentionInput);
      const planned = new Set(plan.flatMap((deletion) => deletion.keys));
      deletions += plan.length;

      const newest = entries
        .filter((entry) => entry.manifest?.kind === "checkpoint")
        .map((entry) => entry.stored.checkpointId)
        .sort((a, b) => b - a)
        .slice(0, options.retained);
      for (const entry of entries) {
        const { checkpointId, kind, directory } = entry.stored;
        const kept =
          entry.manifest !== undefined &&
          (kind === "savepoint" || newest.includes(checkpointId) || options.pinnedIds.has(checkpointId));
        if (kept) {
          for (const key of [
            ...entry.stored.objectKeys,
            ...(entry.manifest?.parts.map((part) => part.key) ?? []),
          ]) {
            if (planned.has(key))
              problems.push(`round ${round}: ${key} referenced by ${kind} ${checkpointId}`);
          }
        }
        const deletion = plan.find((d) => d.checkpointId === checkpointId && d.kind === kind);
        if (deletion === undefined) continue;
        if (entry.manifest === undefined && !options.abortedIds.has(checkpointId)) {
          problems.push(`round ${round}: ${kind} ${checkpointId} has no manifest and did not abort`);
        }
        if (
          entry.manifest !== undefined &&
          newest.filter((id) => id > checkpointId).length < options.retained
        ) {
          problems.push(
            `round ${round}: ${checkpointId} deleted without ${options.retained} newer manifests`,
          );
        }
        const manifestIndex = deletion.keys.indexOf(`${directory}_metadata`);
        if (manifestIndex > 0) problems.push(`round ${round}: manifest of ${checkpointId} not deleted first`);
      }
    }
    expect(problems).toEqual([]);
    // The property is not satisfied by deleting nothing.
    expect(deletions).toBeGreaterThan(1000);
  });
});
