// One TaskManager's dataflow (parallelism 1: every exchange is the in-process link), with job code
// made up for the test: backpressure from a slow stage, and the cut of a checkpoint.
import { pino } from "pino";
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { BUFFER_BYTES, INPUT_CREDITS, OUTPUT_BACKLOG } from "../../../src/dataflow/channels.js";
import { DataflowRuntime } from "../../../src/dataflow/dataflow-runtime.js";
import { defineDataflow, type DataflowDefinition } from "../../../src/dataflow/definition.js";
import { encodeData } from "../../../src/dataflow/frames.js";
import type { SourcePartition } from "../../../src/taskmanager/job/job-definition.js";
import { TwoPhaseCommitSink } from "../../../src/taskmanager/sink/two-phase-commit-sink.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { waitFor } from "../../support/wait.js";

const maxParallelism = 16;
const keyGroupRange = keyGroupRangeForTask(maxParallelism, 1, 0);
const runtimes: DataflowRuntime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

/** An endless partition: record o is o. */
const endless: SourcePartition<number> = {
  id: "numbers",
  read: (offset, maxRecords) => Promise.resolve(Array.from({ length: maxRecords }, (_, i) => offset + i)),
};

class RecordingSink extends TwoPhaseCommitSink {
  readonly lines: string[] = [];
  readonly sealed: Array<{ checkpointId: number; lines: number }> = [];
  override emit(line: string): void {
    this.lines.push(line);
    super.emit(line);
  }
  override seal(checkpointId: number): void {
    this.sealed.push({ checkpointId, lines: this.lines.length });
    super.seal(checkpointId);
  }
}

async function started(dataflow: DataflowDefinition<unknown>, sink = new RecordingSink(0), batchSize = 100) {
  const stageStates = new Map(
    dataflow.stages.map((stage) => [stage.id, new KeyGroupedStateBackend(maxParallelism, keyGroupRange)]),
  );
  const runtime = new DataflowRuntime({
    dataflow,
    context: {
      args: [],
      job: { namespace: "test", name: "dataflow" },
      taskIndex: 0,
      parallelism: 1,
      maxParallelism,
      keyGroupRange,
      storage: () => new MemoryObjectStore("streamjob"),
    },
    epoch: 1,
    token: "t",
    partitionState: new PartitionScopedState(maxParallelism, keyGroupRange),
    stageStates,
    sink,
    log: pino({ level: "silent" }),
    batchSize,
    onNewerEpoch: () => undefined,
  });
  runtimes.push(runtime);
  await runtime.source.discover();
  await runtime.source.open({});
  expect(runtime.setPeers([{ taskIndex: 0, url: "http://127.0.0.1:1" }])).toBeUndefined();
  await runtime.connect();
  const failed = runtime.start();
  failed.catch(() => undefined);
  return { runtime, stageStates, sink, failed };
}

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test("a slow keyed stage slows the source: records in flight stay within the channels' bound", async () => {
  const dataflow = defineDataflow<number>({
    partitions: () => [endless],
    source: { process: (n, context) => context.send(`k${n % 10}`, n) },
    stages: [
      {
        id: "slow",
        process(value, context) {
          busy(0.05);
          context.emit(`${context.key} ${String(value)}`);
        },
      },
    ],
  });
  // In one process the source and the stage take turns; source batches far larger than what the
  // stage processes in a turn make the source outrun it, as a source outruns a stage on another
  // TaskManager.
  const batchSize = 50_000;
  const { runtime } = await started(dataflow as DataflowDefinition<unknown>, new RecordingSink(0), batchSize);
  // Records are at least 10 bytes of JSON; the bound is in buffers, plus one batch of the source.
  const recordsPerBuffer = Math.ceil(BUFFER_BYTES / 10);
  const bound = (INPUT_CREDITS + OUTPUT_BACKLOG + 1) * recordsPerBuffer + batchSize;
  let maxInFlight = 0;
  const deadline = Date.now() + 2_000;
  while (Date.now() < deadline) {
    const [source, slow] = runtime.stageStatus();
    maxInFlight = Math.max(maxInFlight, source!.recordsProcessed - slow!.recordsProcessed);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const [source, slow] = runtime.stageStatus();
  expect(slow!.recordsProcessed).toBeGreaterThan(1_000);
  expect(maxInFlight).toBeLessThanOrEqual(bound);
  // An endless source with nothing holding it back would have read millions by now.
  expect(source!.recordsProcessed).toBeLessThan(slow!.recordsProcessed + bound);
  expect(source!.backpressure).toBeGreaterThan(0.2);
  expect(slow!.backpressure).toBe(0);
});

test("the cut completes once the last stage aligned: every stage's state, the offsets, the sink sealed there", async () => {
  const dataflow = defineDataflow<number>({
    partitions: () => [endless],
    source: { process: (n, context) => context.send(`k${n % 5}`, n) },
    stages: [
      {
        id: "count",
        process(value, context) {
          context.state.put(context.key, Number(context.state.get(context.key) ?? 0) + 1);
          context.send(context.key, value);
        },
      },
      {
        id: "last",
        process(value, context) {
          context.state.put(context.key, value);
          context.emit(`${context.key} ${String(value)}`);
        },
      },
    ],
  });
  const { runtime, sink } = await started(dataflow as DataflowDefinition<unknown>);
  await waitFor("records through both stages", () => sink.lines.length > 1_000, 5_000);
  const cut = await runtime.cut(1, new AbortController().signal);
  try {
    expect(cut.stages.map((stage) => stage.stageId)).toEqual(["source-partition", "count", "last"]);
    const counted = [...cut.stages[1]!.snapshot.keyGroups].flatMap(({ entries }) => [...entries]);
    const total = counted.reduce((sum, [, count]) => sum + (count as number), 0);
    // Aligned: the counts are exactly the records before the barrier, which is the source's offset,
    // and the output sealed for the checkpoint is exactly those records too.
    expect(total).toBe(cut.sourceOffsets.numbers);
    expect(sink.sealed).toEqual([{ checkpointId: 1, lines: total }]);
    expect(cut.alignmentDurationMs).toBeGreaterThanOrEqual(0);
    expect(Object.keys(cut.backpressure ?? {})).toEqual(["source", "count", "last"]);
  } finally {
    for (const stage of cut.stages) stage.snapshot.release();
  }
});

test("an aborted checkpoint's cut gives up; a stage that throws fails the job; a wrong peer list is refused", async () => {
  const dataflow = defineDataflow<number>({
    partitions: () => [endless],
    source: { process: (n, context) => context.send("k", n) },
    stages: [
      {
        id: "picky",
        process(value) {
          if ((value as number) === 5_000) throw new Error("picky: 5000 is not welcome");
        },
      },
    ],
  });
  const { runtime, failed } = await started(dataflow as DataflowDefinition<unknown>);
  expect(runtime.setPeers([{ taskIndex: 0, url: "http://127.0.0.2:1" }])).toContain("already set");
  const abort = new AbortController();
  // Task 0 never sees barrier 2 on every channel before the abort only if it is aborted at once.
  const cut = runtime.cut(2, abort.signal);
  abort.abort(new Error("checkpoint 2 aborted: test"));
  await cut.then(
    (taken) => taken.stages.forEach((stage) => stage.snapshot.release()),
    (err: Error) => expect(err.message).toBe("checkpoint 2 aborted: test"),
  );
  await expect(failed).rejects.toThrow("picky: 5000 is not welcome");
});

test("a malformed data frame ends the exchange before any record of it is processed", async () => {
  let processed = 0;
  const dataflow = defineDataflow<number>({
    partitions: () => [],
    source: { process: () => undefined },
    stages: [{ id: "count", process: () => void processed++ }],
  });
  for (const payload of ['{"not":"an array"}', '[["k1",1],[2,2]]', '[["k1",1],["k2"]]']) {
    const { runtime } = await started(dataflow as DataflowDefinition<unknown>);
    runtime.exchange.dataLink(0).send(encodeData(0, Buffer.from(payload)));
    await waitFor("the exchange to halt", () => runtime.haltedReason !== undefined, 2_000);
    expect(runtime.haltedReason).toContain(
      "got a data frame that is not a JSON array of [key, value] records of this task's key groups",
    );
  }
  expect(processed).toBe(0);
});

test("stage ids are checked: reserved, repeated or malformed ids are refused", () => {
  const stage = (id: string) => ({ id, process: () => undefined });
  const source = { process: () => undefined };
  const partitions = () => [];
  expect(() => defineDataflow({ partitions, source, stages: [] })).toThrow("at least one keyed stage");
  expect(() => defineDataflow({ partitions, source, stages: [stage("default")] })).toThrow("is reserved");
  expect(() => defineDataflow({ partitions, source, stages: [stage("source-partition")] })).toThrow(
    "is reserved",
  );
  expect(() => defineDataflow({ partitions, source, stages: [stage("a"), stage("a")] })).toThrow(
    "is used twice",
  );
  expect(() => defineDataflow({ partitions, source, stages: [stage("Totals")] })).toThrow(
    "is not a stage id",
  );
});
