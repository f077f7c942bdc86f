import {
  CheckpointManifest,
  TriggerCheckpointRequest,
  type CheckpointAck,
} from "../../../src/api/protocol.js";
import type { PendingCheckpoint } from "../../../src/coordinator/pending-checkpoint.js";
import { ackFor, declineFor, pendingCheckpoint, sha256 } from "../support/checkpoints.js";
import { FakeClock } from "../support/fake-clock.js";

function ackAll(checkpoint: PendingCheckpoint, clock: FakeClock): void {
  for (const taskIndex of [0, 1, 2]) {
    clock.advance(10);
    expect(checkpoint.acknowledge(ackFor(checkpoint, taskIndex))).toEqual({ kind: "accepted" });
  }
}

describe("PendingCheckpoint", () => {
  let clock: FakeClock;
  let checkpoint: PendingCheckpoint;

  beforeEach(() => {
    clock = new FakeClock();
    checkpoint = pendingCheckpoint(clock);
  });

  describe("trigger requests", () => {
    it("give each task its own key prefix under chk-<id>/ and the checkpoint's deadline", () => {
      const trigger = checkpoint.triggerRequest(2);
      expect(TriggerCheckpointRequest.parse(trigger)).toEqual(trigger);
      expect(trigger).toEqual({
        checkpointId: 7,
        epoch: 3,
        taskIndex: 2,
        kind: "checkpoint",
        job: { namespace: "default", name: "orders" },
        storage: { bucket: "streamjob", keyPrefix: "checkpoints/default/orders/chk-7/task-2/" },
        deadline: clock.now() + 60_000,
      });
      expect(checkpoint.manifestKey).toBe("checkpoints/default/orders/chk-7/_metadata");
    });

    it("put savepoints in their own directory", () => {
      const savepoint = pendingCheckpoint(clock, { kind: "savepoint" });
      expect(savepoint.triggerRequest(0).storage.keyPrefix).toBe(
        "checkpoints/default/orders/savepoint-7/task-0/",
      );
    });
  });

  describe("acknowledgements", () => {
    it("stay pending until every task acked, then move to committing", () => {
      expect(checkpoint.acknowledge(ackFor(checkpoint, 1))).toEqual({ kind: "accepted" });
      expect(checkpoint.state).toBe("pending");
      expect(checkpoint.isFullyAcked).toBe(false);
      expect(checkpoint.missingTasks).toEqual([0, 2]);
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      checkpoint.acknowledge(ackFor(checkpoint, 2));
      expect(checkpoint.isFullyAcked).toBe(true);
      expect(checkpoint.missingTasks).toEqual([]);
      expect(checkpoint.state).toBe("committing");
    });

    it("treat a duplicate ack as harmless", () => {
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      expect(checkpoint.acknowledge(ackFor(checkpoint, 0))).toEqual({ kind: "duplicate" });
      expect(checkpoint.missingTasks).toEqual([1, 2]);
      expect(checkpoint.state).toBe("pending");
    });

    it.each<[string, Partial<CheckpointAck>, string]>([
      ["an old epoch", { epoch: 2 }, "stale epoch 2 from task 0: checkpoint 7 belongs to epoch 3"],
      ["a newer epoch", { epoch: 4 }, "unexpected epoch 4 from task 0: checkpoint 7 belongs to epoch 3"],
      ["an unknown task", { taskIndex: 3 }, "unknown task 3: checkpoint 7 expects tasks 0..2"],
      ["another checkpoint", { checkpointId: 6 }, "message for checkpoint 6 delivered to checkpoint 7"],
    ])("reject an ack from %s without changing anything", (_, overrides, reason) => {
      expect(checkpoint.acknowledge({ ...ackFor(checkpoint, 0), ...overrides })).toEqual({
        kind: "rejected",
        reason,
      });
      expect(checkpoint.state).toBe("pending");
      expect(checkpoint.missingTasks).toEqual([0, 1, 2]);
      // The real ack from task 0 still counts.
      expect(checkpoint.acknowledge(ackFor(checkpoint, 0))).toEqual({ kind: "accepted" });
    });

    it("ignore acks that arrive after the checkpoint aborted", () => {
      checkpoint.decline(declineFor(checkpoint, 1, "upload failed"));
      const outcome = checkpoint.acknowledge(ackFor(checkpoint, 0));
      expect(outcome.kind).toBe("late");
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortCause).toBe("declined");
      expect(checkpoint.abortReason).toBe("task 1 declined checkpoint 7: upload failed");
    });

    it("treat an ack after completion as a duplicate", () => {
      ackAll(checkpoint, clock);
      checkpoint.markCompleted();
      expect(checkpoint.acknowledge(ackFor(checkpoint, 1))).toEqual({ kind: "duplicate" });
      expect(checkpoint.state).toBe("completed");
    });
  });

  describe("invalid acks from an expected task", () => {
    const prefix = "checkpoints/default/orders/chk-7/task-1/";
    const part = (key: string, start: number, end: number) => ({
      key,
      sizeBytes: 10,
      sha256: sha256(key),
      keyGroupRange: { start, end },
    });

    it.each<[string, Partial<CheckpointAck>, string]>([
      [
        "a part outside its prefix",
        { parts: [part("checkpoints/default/orders/chk-7/task-0/x", 4, 7)] },
        "part checkpoints/default/orders/chk-7/task-0/x is outside checkpoints/default/orders/chk-7/task-1/",
      ],
      [
        "a part holding key groups the task does not own",
        { parts: [part(`${prefix}x`, 3, 7)] },
        `part ${prefix}x holds key groups 3-7, outside the task's 4-7`,
      ],
      [
        "two parts holding the same key group",
        { parts: [part(`${prefix}a`, 4, 5), part(`${prefix}b`, 5, 7)] },
        `parts ${prefix}a and ${prefix}b hold the same key groups`,
      ],
      [
        "the same key twice",
        { parts: [part(`${prefix}a`, 4, 5), part(`${prefix}a`, 6, 7)] },
        `part ${prefix}a is listed twice`,
      ],
      [
        "a source partition another task reported",
        { sourceOffsets: { "partition-0": 5 } },
        "source partition partition-0 is also reported by task 0",
      ],
    ])("abort the checkpoint on %s, naming the task", (_, overrides, problem) => {
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      const reason = `task 1 sent an invalid ack for checkpoint 7: ${problem}`;
      expect(checkpoint.acknowledge(ackFor(checkpoint, 1, overrides))).toEqual({ kind: "invalid", reason });
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortCause).toBe("invalid-ack");
      expect(checkpoint.abortReason).toBe(reason);
    });

    it("accept an ack with no parts (the task's key groups hold no state)", () => {
      expect(checkpoint.acknowledge(ackFor(checkpoint, 1, { parts: [], sourceOffsets: {} }))).toEqual({
        kind: "accepted",
      });
    });
  });

  describe("declines", () => {
    it("abort the checkpoint with a reason naming the task", () => {
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      expect(checkpoint.decline(declineFor(checkpoint, 2, "not ready: restoring"))).toEqual({
        kind: "accepted",
      });
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortReason).toBe("task 2 declined checkpoint 7: not ready: restoring");
    });

    it("are late once the checkpoint aborted, keeping the first reason", () => {
      checkpoint.decline(declineFor(checkpoint, 2, "first"));
      expect(checkpoint.decline(declineFor(checkpoint, 0, "second")).kind).toBe("late");
      expect(checkpoint.abortReason).toBe("task 2 declined checkpoint 7: first");
    });

    it("are late once every task acked", () => {
      ackAll(checkpoint, clock);
      expect(checkpoint.decline(declineFor(checkpoint, 0, "too late")).kind).toBe("late");
      expect(checkpoint.state).toBe("committing");
    });

    it("from an old epoch are rejected and change nothing", () => {
      const outcome = checkpoint.decline({ ...declineFor(checkpoint, 0, "zombie"), epoch: 1 });
      expect(outcome).toEqual({
        kind: "rejected",
        reason: "stale epoch 1 from task 0: checkpoint 7 belongs to epoch 3",
      });
      expect(checkpoint.state).toBe("pending");
    });
  });

  describe("expiry", () => {
    it("does nothing before the deadline", () => {
      clock.advance(59_999);
      expect(checkpoint.expireIfDue()).toBe(false);
      expect(checkpoint.state).toBe("pending");
    });

    it("aborts at the deadline, naming only the tasks that were late", () => {
      checkpoint.acknowledge(ackFor(checkpoint, 1));
      clock.advance(60_000);
      expect(checkpoint.expireIfDue()).toBe(true);
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortCause).toBe("expired");
      expect(checkpoint.abortReason).toBe(
        "checkpoint 7 expired at its deadline (2025-01-01T00:01:00.000Z): task(s) 0, 2 did not acknowledge in time",
      );
      expect(checkpoint.expireIfDue()).toBe(false);
    });

    it("turns an ack arriving at the deadline into a late one", () => {
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      checkpoint.acknowledge(ackFor(checkpoint, 1));
      clock.advance(60_000);
      expect(checkpoint.acknowledge(ackFor(checkpoint, 2)).kind).toBe("late");
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortReason).toContain("task(s) 2 did not acknowledge");
    });

    it("does not touch a checkpoint whose manifest is being written", () => {
      ackAll(checkpoint, clock);
      clock.advance(120_000);
      expect(checkpoint.expireIfDue()).toBe(false);
      expect(checkpoint.state).toBe("committing");
    });
  });

  describe("commit", () => {
    it("produces a manifest that satisfies the schema and lists every part once", () => {
      const triggeredAt = clock.now();
      ackAll(checkpoint, clock);
      const manifest = checkpoint.manifest();
      expect(CheckpointManifest.parse(manifest)).toEqual(manifest);
      expect(manifest).toMatchObject({
        manifestVersion: 1,
        checkpointId: 7,
        kind: "checkpoint",
        job: { namespace: "default", name: "orders" },
        epoch: 3,
        parallelism: 3,
        maxParallelism: 12,
        triggeredAt,
        completedAt: triggeredAt + 30,
        sourceOffsets: { "partition-0": 100, "partition-1": 101, "partition-2": 102 },
      });
      expect(manifest.tasks.map((task) => [task.taskIndex, task.keyGroupRange])).toEqual([
        [0, { start: 0, end: 3 }],
        [1, { start: 4, end: 7 }],
        [2, { start: 8, end: 11 }],
      ]);
      expect(manifest.parts.map((part) => [part.taskIndex, part.key])).toEqual([
        [0, "checkpoints/default/orders/chk-7/task-0/kg-0-3"],
        [1, "checkpoints/default/orders/chk-7/task-1/kg-4-7"],
        [2, "checkpoints/default/orders/chk-7/task-2/kg-8-11"],
      ]);
    });

    it("orders a task's parts by key group", () => {
      const prefix = checkpoint.triggerRequest(0).storage.keyPrefix;
      const part = (start: number, end: number) => ({
        key: `${prefix}${start}`,
        sizeBytes: 1,
        sha256: sha256(String(start)),
        keyGroupRange: { start, end },
      });
      checkpoint.acknowledge(ackFor(checkpoint, 0, { parts: [part(2, 3), part(0, 1)] }));
      checkpoint.acknowledge(ackFor(checkpoint, 1));
      checkpoint.acknowledge(ackFor(checkpoint, 2));
      expect(
        checkpoint
          .manifest()
          .parts.slice(0, 2)
          .map((p) => p.keyGroupRange.start),
      ).toEqual([0, 2]);
    });

    it("refuses to produce a manifest before every task acked", () => {
      checkpoint.acknowledge(ackFor(checkpoint, 0));
      expect(() => checkpoint.manifest()).toThrow("checkpoint 7 is pending, not fully acknowledged");
    });

    it("completes only from committing", () => {
      expect(() => checkpoint.markCompleted()).toThrow("checkpoint 7 is pending, cannot complete");
      ackAll(checkpoint, clock);
      checkpoint.markCompleted();
      expect(checkpoint.state).toBe("completed");
    });

    it("can be aborted while committing (manifest PUT known to have failed), never after completion", () => {
      ackAll(checkpoint, clock);
      expect(checkpoint.abort("manifest-write-failed", "manifest PUT failed: 503")).toBe(true);
      expect(checkpoint.state).toBe("aborted");
      expect(checkpoint.abortCause).toBe("manifest-write-failed");
      expect(() => checkpoint.manifest()).toThrow("checkpoint 7 is aborted");

      const other = pendingCheckpoint(clock);
      ackAll(other, clock);
      other.markCompleted();
      expect(other.abort("coordinator-stopped", "job restarting")).toBe(false);
      expect(other.state).toBe("completed");
      expect(other.abortReason).toBeNull();
      expect(other.abortCause).toBeNull();
    });

    it("keeps the first cause when aborted again", () => {
      checkpoint.decline(declineFor(checkpoint, 1, "upload failed"));
      expect(checkpoint.abort("coordinator-stopped", "the coordinator stopped")).toBe(false);
      expect(checkpoint.abortCause).toBe("declined");
      expect(checkpoint.abortReason).toBe("task 1 declined checkpoint 7: upload failed");
    });
  });

  describe("dataflow figures", () => {
    it("are the longest alignment and, per stage, the highest backpressure of the tasks that reported them", () => {
      checkpoint.acknowledge(
        ackFor(checkpoint, 0, { alignmentDurationMs: 0, backpressure: { source: 0.1, count: 0.5 } }),
      );
      checkpoint.acknowledge(
        ackFor(checkpoint, 1, { alignmentDurationMs: 40, backpressure: { source: 0.3 } }),
      );
      checkpoint.acknowledge(ackFor(checkpoint, 2));
      expect(checkpoint.alignmentDurationMs()).toBe(40);
      expect(checkpoint.backpressure()).toEqual({ source: 0.3, count: 0.5 });
      expect(checkpoint.backpressureByTask()).toEqual({
        0: { source: 0.1, count: 0.5 },
        1: { source: 0.3 },
      });
    });

    it("are absent when no task reported them (not a dataflow); an alignment of 0 is one", () => {
      ackAll(checkpoint, clock);
      expect(checkpoint.alignmentDurationMs()).toBeUndefined();
      expect(checkpoint.backpressure()).toBeUndefined();
      expect(checkpoint.backpressureByTask()).toBeUndefined();

      const aligned = pendingCheckpoint(clock, { checkpointId: 8 });
      aligned.acknowledge(ackFor(aligned, 2, { alignmentDurationMs: 0 }));
      expect(aligned.alignmentDurationMs()).toBe(0);
    });
  });

  it("rejects an impossible parallelism when created", () => {
    expect(() => pendingCheckpoint(clock, { parallelism: 13 })).toThrow("parallelism must be an integer");
  });
});
