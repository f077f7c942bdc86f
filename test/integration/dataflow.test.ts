// The keyed dataflow on real TaskManager processes, the real coordinator and the real MinIO: records
// cross TaskManagers through two keyBy exchanges, checkpoints are aligned cuts, and kills, rescales
// and a slow stage never lose or repeat a record (the job itself fails a task on a gap or duplicate
// downstream of each exchange; verifySequenceOutput checks what was committed).
import { stageOfPart } from "../../src/api/protocol.js";
import { HttpTaskManagerClient } from "../../src/coordinator/http-task-manager-client.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import type { LocalJob, LocalJobOptions } from "../support/local-job.js";
import { localJobs } from "./support/local-jobs.js";
import { waitFor } from "../support/wait.js";

const local = localJobs("dataflow");

function keyedSequence(
  parallelism: number,
  args: string[],
  options: Partial<LocalJobOptions> = {},
): LocalJob {
  return local.job({
    program: { name: "keyed-sequence", args },
    parallelism,
    maxParallelism: 64,
    ...options,
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a checkpoint of a dataflow holds every keyed stage's parts and the source offsets; status shows the stages", async () => {
  const args = ["--partitions", "6", "--keys", "30", "--rate", "300"];
  const job = keyedSequence(3, args);
  await job.deploy({ epoch: 1, parallelism: 3, program: { name: "keyed-sequence", args } });
  await pause(500);
  const { checkpointId } = await job.completedCheckpoint();
  const manifest = await job.manifest(checkpointId);

  // Every task wrote a part of each keyed stage; the source stage's partition-scoped state is empty.
  for (const stage of ["count", "verify"]) {
    const parts = manifest.parts.filter((part) => stageOfPart(part) === stage);
    expect(parts.map((part) => part.taskIndex).sort()).toEqual([0, 1, 2]);
  }
  expect(Object.keys(manifest.sourceOffsets).sort()).toEqual([
    "kseq-0",
    "kseq-1",
    "kseq-2",
    "kseq-3",
    "kseq-4",
    "kseq-5",
  ]);

  const client = new HttpTaskManagerClient({
    taskIndex: 0,
    baseUrl: job.taskManagers[0]!.url,
    token: job.token,
  });
  const status = await client.status();
  expect(status.dataflow?.peersKnown).toBe(true);
  expect(status.dataflow?.stages.map((stage) => stage.stageId)).toEqual(["source", "count", "verify"]);
  // Records crossed the exchange into both keyed stages of this task.
  expect(status.dataflow?.stages[1]?.recordsProcessed).toBeGreaterThan(0);
  expect(status.dataflow?.stages[2]?.recordsProcessed).toBeGreaterThan(0);
});

test("keyed-sequence with TaskManagers killed again and again and a rescale commits output with no gap and no duplicate", async () => {
  const args = ["--partitions", "6", "--keys", "40", "--rate", "400"];
  const job = keyedSequence(3, args, { policy: { intervalMs: 150, timeoutMs: 5000 } });
  await job.deploy({ epoch: 1, parallelism: 3, program: { name: "keyed-sequence", args } });
  job.coordinator!.start();

  for (let round = 0; round < 3; round++) {
    const before = job.completed.length;
    await pause(700);
    await waitFor(`a checkpoint in epoch ${round + 1}`, () => job.completed.length > before, 30_000);
    await job.taskManagers[round % job.taskManagers.length]!.kill("SIGKILL");
    await job.restartFromLatestCheckpoint();
    job.coordinator!.start();
  }
  // A rescale: key groups of both keyed stages move to other TaskManagers.
  const before = job.completed.length;
  await waitFor("a checkpoint before the rescale", () => job.completed.length > before, 30_000);
  await job.coordinator!.stop();
  const { checkpointId, manifestKey } = await job.completedCheckpoint();
  await job.redeploy({ parallelism: 2, restoreFrom: { checkpointId, manifestKey } });
  job.coordinator!.start();
  await pause(800);
  await job.coordinator!.stop();
  await job.completedCheckpoint();

  for (const tm of job.taskManagers) expect(tm.running).toBe(true);
  const report = await verifySequenceOutput(local.store, job.directory);
  expect(report.problems).toEqual([]);
  expect(report.lastValues.size).toBe(6 * 40);
  expect(report.records).toBeGreaterThan(6 * 40 * 2);
});
