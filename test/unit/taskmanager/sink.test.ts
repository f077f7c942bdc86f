import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { verifySequenceOutput } from "../../../src/taskmanager/job/builtin/sequence.js";
import { readCommittedOutput } from "../../../src/taskmanager/sink/committed-output.js";
import {
  committedOutputKey,
  jobDirectoryOfManifestKey,
  jobDirectoryOfPartsPrefix,
  stagedOutputKey,
} from "../../../src/taskmanager/sink/output-layout.js";
import type { OutputTarget } from "../../../src/taskmanager/sink/sink.js";
import { TwoPhaseCommitSink } from "../../../src/taskmanager/sink/two-phase-commit-sink.js";

const jobDirectory = "checkpoints/default/orders/";

function setUp(taskIndex = 0) {
  const store = new MemoryObjectStore("streamjob");
  return { store, location: { store, jobDirectory }, sink: new TwoPhaseCommitSink(taskIndex) };
}

async function text(store: MemoryObjectStore, key: string): Promise<string> {
  return (await store.get(key)).toString("utf8");
}

test("the job directory is taken from the keys the coordinator gives", () => {
  expect(jobDirectoryOfPartsPrefix("checkpoints/default/orders/chk-7/task-1/")).toBe(jobDirectory);
  expect(jobDirectoryOfPartsPrefix("default/orders/savepoint-12/task-0/")).toBe("default/orders/");
  expect(jobDirectoryOfPartsPrefix("checkpoints/default/orders/")).toBeUndefined();
  expect(jobDirectoryOfManifestKey("checkpoints/default/orders/chk-7/_metadata")).toBe(jobDirectory);
  expect(stagedOutputKey(jobDirectory, 1, 7)).toBe(
    "checkpoints/default/orders/output/staging/task-1/chk-000000000007",
  );
  expect(committedOutputKey(jobDirectory, 1, 7)).toBe(
    "checkpoints/default/orders/output/committed/chk-000000000007/task-1",
  );
});

test("output is staged per checkpoint and committed on notify, nothing visible before", async () => {
  const { store, location, sink } = setUp();
  sink.emit("a 1");
  sink.emit("a 2");
  sink.seal(5);
  sink.emit("a 3");
  await sink.stageThrough(5, location);
  expect(await text(store, stagedOutputKey(jobDirectory, 0, 5))).toBe("a 1\na 2\n");
  expect(await store.list(`${jobDirectory}output/committed/`)).toEqual([]);

  await sink.commitThrough(5, location);
  expect(await text(store, committedOutputKey(jobDirectory, 0, 5))).toBe("a 1\na 2\n");
  expect(await store.list(`${jobDirectory}output/staging/`)).toEqual([]);
  expect(sink.pendingRecords).toBe(1);
});

test("another target encodes the records and publishes each staged segment once, in order, before its staging is deleted", async () => {
  const store = new MemoryObjectStore("streamjob");
  const location = { store, jobDirectory };
  const published: [number, number, string, boolean][] = [];
  const target: OutputTarget = {
    encode: (value, key) => `${key}=${value}\n`,
    async publish(segment) {
      const staged = (await store.get(segment.key)).toString("utf8");
      published.push([
        segment.writerIndex,
        segment.checkpointId,
        segment.data!.toString("utf8"),
        staged !== "",
      ]);
    },
    close: () => Promise.resolve(),
  };
  const sink = new TwoPhaseCommitSink(3, target);
  sink.emit("1", "a");
  sink.seal(4);
  sink.emit("2", "a");
  sink.seal(5);
  await sink.stageThrough(5, location);
  await Promise.all([sink.commitThrough(5, location), sink.commitThrough(4, location)]);
  expect(published).toEqual([
    [3, 4, "a=1\n", true],
    [3, 5, "a=2\n", true],
  ]);
  expect(await store.list(`${jobDirectory}output/`)).toEqual([]);
});

test("a repeated or subsumed notify commits nothing twice, and a later one commits earlier segments too", async () => {
  const { store, location, sink } = setUp();
  sink.emit("a 1");
  sink.seal(5);
  sink.emit("a 2");
  sink.seal(6); // checkpoint 5's notify is lost
  sink.emit("a 3");
  sink.seal(7);
  await sink.stageThrough(7, location);
  await Promise.all([sink.commitThrough(6, location), sink.commitThrough(6, location)]);
  await sink.commitThrough(5, location);
  expect(sink.uncommittedCheckpointIds).toEqual([7]);
  const committed = [];
  for await (const object of readCommittedOutput(store, jobDirectory))
    committed.push([object.checkpointId, object.lines]);
  expect(committed).toEqual([
    [5, ["a 1"]],
    [6, ["a 2"]],
  ]);
});

test("an aborted checkpoint's output is committed with the next completed one", async () => {
  const { store, location, sink } = setUp();
  sink.emit("a 1");
  sink.seal(5); // checkpoint 5 is aborted: its upload may never have been made
  sink.emit("a 2");
  sink.seal(6);
  await sink.stageThrough(6, location); // 6's ack requires 5's output durable too
  expect(await text(store, stagedOutputKey(jobDirectory, 0, 5))).toBe("a 1\n");
  await sink.commitThrough(6, location);
  expect((await verifySequenceOutput(store, jobDirectory)).problems).toEqual([]);
  expect((await verifySequenceOutput(store, jobDirectory)).lastValues.get("a")).toBe(2);
});

test("a failed staging upload is retried by the next attempt", async () => {
  const { store, location, sink } = setUp();
  let puts = 0;
  const put = store.put.bind(store);
  store.put = (key, body) => (++puts === 1 ? Promise.reject(new Error("503 Slow Down")) : put(key, body));
  sink.emit("a 1");
  sink.seal(5);
  await expect(sink.stageThrough(5, location)).rejects.toThrow("503 Slow Down");
  await sink.commitThrough(5, location);
  expect(puts).toBe(2);
  expect(await text(store, committedOutputKey(jobDirectory, 0, 5))).toBe("a 1\n");
});

test("on restore from N: staged output up to N is committed, later output discarded, for the tasks this task covers", async () => {
  const store = new MemoryObjectStore("streamjob");
  const location = { store, jobDirectory };
  // Three tasks of an earlier epoch staged checkpoints 4, 5 and 6; the job restores from 5 with 2 tasks.
  for (const taskIndex of [0, 1, 2]) {
    for (const checkpointId of [4, 5, 6]) {
      await store.put(
        stagedOutputKey(jobDirectory, taskIndex, checkpointId),
        Buffer.from(`t${taskIndex} ${checkpointId}\n`),
      );
    }
  }
  // Checkpoint 4 of task 0 was committed before the notify of 4 reached the others.
  await store.copy(stagedOutputKey(jobDirectory, 0, 4), committedOutputKey(jobDirectory, 0, 4));

  const task0 = await new TwoPhaseCommitSink(0).recover(location, 5, 2); // old tasks 0 and 2
  expect(task0).toEqual({ committed: [4, 4, 5, 5], discarded: [6, 6] });
  const task1 = await new TwoPhaseCommitSink(1).recover(location, 5, 2); // old task 1
  expect(task1).toEqual({ committed: [4, 5], discarded: [6] });
  // Repeating a restore (the new task crashed) changes nothing.
  expect(await new TwoPhaseCommitSink(0).recover(location, 5, 2)).toEqual({ committed: [], discarded: [] });

  expect(await store.list(`${jobDirectory}output/staging/`)).toEqual([]);
  const committed = [];
  for await (const object of readCommittedOutput(store, jobDirectory)) committed.push(object.lines[0]);
  expect(committed).toEqual(["t0 4", "t1 4", "t2 4", "t0 5", "t1 5", "t2 5"]);
});

test("the sequence verifier finds gaps and duplicates in committed output", async () => {
  const store = new MemoryObjectStore("streamjob");
  await store.put(committedOutputKey(jobDirectory, 0, 1), Buffer.from("seq-0 1\nseq-1 1\nseq-0 2\n"));
  await store.put(committedOutputKey(jobDirectory, 1, 2), Buffer.from("seq-0 2\nseq-1 3\n"));
  const report = await verifySequenceOutput(store, jobDirectory);
  expect(report.records).toBe(5);
  expect(report.problems).toEqual([
    `${committedOutputKey(jobDirectory, 1, 2)}: duplicate for seq-0: 2 where 3 was expected`,
    `${committedOutputKey(jobDirectory, 1, 2)}: gap for seq-1: 3 where 2 was expected`,
  ]);
});
