// The checkpointing core end to end: real TaskManager processes, the real coordinator and the
// real MinIO. Killing processes, corrupting parts and rescaling must never lose or repeat a record.
import { createHash } from "node:crypto";
import { stageOfPart, type CheckpointManifest } from "../../src/api/protocol.js";
import type { TaskManagerClient } from "../../src/coordinator/interfaces.js";
import { latestCompletedCheckpoint } from "../../src/coordinator/completed-checkpoints.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { decodeStatePart } from "../../src/taskmanager/state/state-part-decoder.js";
import type { LocalJob, LocalJobOptions, TaskManagerProcess } from "../support/local-job.js";
import { localJobs } from "./support/local-jobs.js";
import { waitFor } from "../support/wait.js";

const local = localJobs("checkpointing");

function sequenceJob(parallelism: number, args: string[], options: Partial<LocalJobOptions> = {}): LocalJob {
  return local.job({ program: { name: "sequence", args }, parallelism, maxParallelism: 128, ...options });
}

/** Every key's state in a checkpoint, read back from its parts. */
async function stateOf(manifest: CheckpointManifest): Promise<Map<string, unknown>> {
  const state = new Map<string, unknown>();
  for (const part of manifest.parts) {
    const expect = {
      objectName: part.key,
      keyGroupRange: part.keyGroupRange,
      stageId: stageOfPart(part),
      wanted: part.keyGroupRange,
    };
    for (const entry of decodeStatePart(await local.store.get(part.key), expect)) {
      state.set(entry.key, entry.value);
    }
  }
  return state;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
// So slow that no record arrives between a restore and the next checkpoint: state stays as restored.
const frozen = ["--keys", "60", "--rate", "0.0001"];

test("three TaskManagers checkpoint: the manifest lists every task's parts, each one in MinIO with its sha256", async () => {
  const job = sequenceJob(3, ["--keys", "60", "--rate", "200"]);
  await job.deploy({
    epoch: 1,
    parallelism: 3,
    program: { name: "sequence", args: ["--keys", "60", "--rate", "200"] },
  });
  await pause(300);
  const manifest = await job.manifest((await job.completedCheckpoint()).checkpointId);

  expect(new Set(manifest.parts.map((p) => p.taskIndex))).toEqual(new Set([0, 1, 2]));
  for (const part of manifest.parts) {
    const bytes = await local.store.get(part.key);
    expect(bytes.length).toBe(part.sizeBytes);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(part.sha256);
  }
  expect(Object.keys(manifest.sourceOffsets)).toHaveLength(60);
  expect((await stateOf(manifest)).size).toBe(60);
});

test("a TaskManager killed mid-checkpoint aborts that checkpoint and leaves no manifest", async () => {
  // Task 1 dies right after it accepted the trigger, while its snapshot is under way.
  let armed = false;
  const killAfterTrigger = (client: TaskManagerClient, tm: TaskManagerProcess): TaskManagerClient =>
    tm.taskIndex !== 1
      ? client
      : {
          taskIndex: client.taskIndex,
          trigger: async (request) => {
            await client.trigger(request);
            if (armed) await tm.kill("SIGKILL");
          },
          result: (id, epoch, waitMs) => client.result(id, epoch, waitMs),
          notifyComplete: (request) => client.notifyComplete(request),
          abort: (request) => client.abort(request),
          status: () => client.status(),
          setPeers: (request) => client.setPeers(request),
        };
  const job = sequenceJob(3, frozen, { wrapClient: killAfterTrigger });
  await job.deploy({ epoch: 1, parallelism: 3, program: { name: "sequence", args: frozen } });
  const before = (await job.completedCheckpoint()).checkpointId;

  armed = true;
  const outcome = await job.coordinator!.triggerCheckpoint();
  expect(outcome.state).toBe("aborted");
  expect(outcome.state === "aborted" && outcome.reason).toContain("task 1");
  const aborted = outcome.state === "aborted" ? outcome.checkpointId : -1;
  expect(aborted).toBe(before + 1);
  expect(await local.store.stat(`${job.directory}chk-${aborted}/_metadata`)).toBeNull();
  expect((await latestCompletedCheckpoint(job.snapshots, job.job)).latest?.checkpointId).toBe(before);
});

test("restoring the latest completed checkpoint reproduces the exact state, also with 2 -> 3 TaskManagers", async () => {
  const running = ["--keys", "60", "--rate", "300"];
  const job = sequenceJob(2, running);
  await job.deploy({ epoch: 1, parallelism: 2, program: { name: "sequence", args: running } });
  await pause(400);
  const { checkpointId, manifestKey } = await job.completedCheckpoint();
  const original = await job.manifest(checkpointId);
  const originalState = await stateOf(original);
  expect(originalState.size).toBe(60);
  expect([...originalState.values()].some((v) => (v as number) > 1)).toBe(true);

  for (const parallelism of [2, 3]) {
    await job.redeploy({
      parallelism,
      program: { name: "sequence", args: frozen },
      restoreFrom: { checkpointId, manifestKey },
    });
    const restored = await job.manifest((await job.completedCheckpoint()).checkpointId);
    expect(restored.parallelism).toBe(parallelism);
    expect(await stateOf(restored)).toEqual(originalState);
    expect(restored.sourceOffsets).toEqual(original.sourceOffsets);
  }
});

test("a TaskManager refuses to restore a checkpoint with a corrupted part, naming the part", async () => {
  const job = sequenceJob(2, frozen);
  await job.deploy({ epoch: 1, parallelism: 2, program: { name: "sequence", args: frozen } });
  const { checkpointId, manifestKey } = await job.completedCheckpoint();
  const part = (await job.manifest(checkpointId)).parts[0]!;
  const bytes = await local.store.get(part.key);
  const flipped = bytes.length - 2;
  bytes[flipped] = bytes[flipped]! ^ 1; // same size, different content
  await local.store.put(part.key, bytes);

  await expect(job.redeploy({ restoreFrom: { checkpointId, manifestKey } })).rejects.toThrow(part.key);
});

test("the sequence job, with TaskManagers killed again and again, commits output with no gap and no duplicate", async () => {
  const args = ["--keys", "40", "--rate", "200"];
  const job = sequenceJob(3, args, { policy: { intervalMs: 150, timeoutMs: 5000 } });
  await job.deploy({ epoch: 1, parallelism: 3, program: { name: "sequence", args } });
  job.coordinator!.start();

  const restoredFrom: number[] = [];
  for (let round = 0; round < 3; round++) {
    // Each epoch completes a checkpoint of its own before the kill: on a loaded machine 800 ms may
    // not be enough for one, and without it the restore would not move forward.
    const before = job.completed.length;
    await pause(800);
    await waitFor(`a checkpoint in epoch ${round + 1}`, () => job.completed.length > before, 30_000);
    await job.taskManagers[round % 3]!.kill("SIGKILL");
    restoredFrom.push(await job.restartFromLatestCheckpoint());
    job.coordinator!.start();
  }
  await pause(600);
  await job.coordinator!.stop();
  await job.completedCheckpoint(); // its notify-complete commits the last staged output

  const report = await verifySequenceOutput(local.store, job.directory);
  expect(report.problems).toEqual([]);
  expect(report.lastValues.size).toBe(40);
  expect(report.records).toBeGreaterThan(40 * 10);
  expect(restoredFrom).toEqual([...restoredFrom].sort((a, b) => a - b)); // restores never go back
});
