// Sources whose offsets have gaps (Kafka: transaction markers, aborted records, retention): the
// runtime checkpoints the offset of the next record to read, never a count of records read.
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import {
  defineJob,
  type SourceBatch,
  type SourcePartition,
} from "../../../src/taskmanager/job/job-definition.js";
import { TaskRuntime } from "../../../src/taskmanager/runtime/task-runtime.js";
import { TwoPhaseCommitSink } from "../../../src/taskmanager/sink/two-phase-commit-sink.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { JOB } from "./support/fixtures.js";

// Offsets 3–4 and 7–9 hold no record (say, an aborted transaction and its marker); 13 neither.
const RECORD_OFFSETS = [0, 1, 2, 5, 6, 10, 11, 12, 14, 15];

/** A live partition with gaps: records up to `availableUpTo` (exclusive) can be read. */
class GappedPartition implements SourcePartition<string> {
  readonly id = "gapped";
  availableUpTo = 0;
  readonly reads: number[] = [];
  constructor(private readonly start = 0) {}

  read(offset: number, maxRecords: number): Promise<SourceBatch<string>> {
    this.reads.push(offset);
    const records = RECORD_OFFSETS.filter((o) => o >= offset && o < this.availableUpTo)
      .slice(0, maxRecords)
      .map((o) => ({ offset: o, value: `record@${o}` }));
    // Like a Kafka fetch that saw only markers: nothing to process, but the source moved on.
    const nextOffset = records.length === 0 ? Math.max(offset, this.availableUpTo) : undefined;
    return Promise.resolve({ records, nextOffset });
  }

  startOffset(): Promise<number> {
    return Promise.resolve(this.start);
  }
}

function runtimeFor(partition: SourcePartition<string>, processed: string[]) {
  const keyGroupRange = keyGroupRangeForTask(4, 1, 0);
  const job = defineJob<string>({
    partitions: () => [partition],
    process(value, context) {
      expect(value).toBe(`record@${context.offset}`);
      processed.push(value);
    },
  });
  const store = new MemoryObjectStore("streamjob");
  return new TaskRuntime({
    job,
    context: {
      args: [],
      job: JOB,
      taskIndex: 0,
      parallelism: 1,
      maxParallelism: 4,
      keyGroupRange,
      storage: () => store,
    },
    state: new KeyGroupedStateBackend(4, keyGroupRange),
    partitionState: new PartitionScopedState(4, keyGroupRange),
    sink: new TwoPhaseCommitSink(0),
    batchSize: 2,
    idleMs: 1,
  });
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test("a cut after a gap records the next offset to read, and a restore from it neither skips nor repeats a record", async () => {
  const partition = new GappedPartition();
  const before: string[] = [];
  const runtime = runtimeFor(partition, before);
  await runtime.open({});
  const loop = runtime.start();

  // Records 0, 1, 2, 5, 6: five records, but the next one to read is at 7.
  partition.availableUpTo = 7;
  await until(() => before.length === 5 && partition.reads.at(-1) === 7);
  expect(runtime.cut(1).sourceOffsets).toEqual({ gapped: 7 });

  // Offsets 7–9 hold markers only: the source moves past them without a record.
  partition.availableUpTo = 10;
  await until(() => partition.reads.at(-1) === 10);
  const cut = runtime.cut(2);
  expect(cut.sourceOffsets).toEqual({ gapped: 10 });
  expect(before).toHaveLength(5);

  partition.availableUpTo = 16;
  await until(() => before.length === RECORD_OFFSETS.length);
  expect(runtime.cut(3).sourceOffsets).toEqual({ gapped: 16 });
  await runtime.stop();
  await loop;

  // A restore from the cut at 10 processes exactly the records after it.
  const restoredPartition = new GappedPartition();
  restoredPartition.availableUpTo = 16;
  const after: string[] = [];
  const restored = runtimeFor(restoredPartition, after);
  await restored.open(cut.sourceOffsets);
  const restoredLoop = restored.start();
  await until(() => after.length === 5);
  await new Promise((resolve) => setTimeout(resolve, 20)); // nothing more must arrive
  await restored.stop();
  await restoredLoop;
  expect(restoredPartition.reads[0]).toBe(10);
  expect([...before.slice(0, 5), ...after]).toEqual(RECORD_OFFSETS.map((o) => `record@${o}`));
});

test("a partition the checkpoint does not list starts at its startOffset, which the first cut records", async () => {
  const partition = new GappedPartition(11);
  const processed: string[] = [];
  const runtime = runtimeFor(partition, processed);
  await runtime.open({});
  expect(runtime.cut(1).sourceOffsets).toEqual({ gapped: 11 });
  partition.availableUpTo = 100;
  const loop = runtime.start();
  await until(() => processed.length === 4);
  await runtime.stop();
  await loop;
  expect(processed).toEqual(["record@11", "record@12", "record@14", "record@15"]);
});

test("offsets that do not increase are refused naming the partition", async () => {
  const backwards: SourcePartition<string> = {
    id: "backwards",
    read: (offset) =>
      Promise.resolve({
        records: [
          { offset: offset + 1, value: `record@${offset + 1}` },
          { offset, value: `record@${offset}` },
        ],
      }),
  };
  const runtime = runtimeFor(backwards, []);
  await runtime.open({ backwards: 4 });
  await expect(runtime.start()).rejects.toThrow(
    "source partition backwards: read(4) returned offset 4 where at least 6 was expected (offsets must increase)",
  );
});

test("a source that knows its end gives the cut its lag: end minus the next offset to read", async () => {
  // The end is what the source last reported; the lag counts offsets, gaps included, as Kafka's does.
  const partition = Object.assign(new GappedPartition(), { endOffset: () => 16 });
  const runtime = runtimeFor(partition, []);
  await runtime.open({});
  expect(runtime.cut(1).sourceLag).toEqual({ gapped: 16 });
  partition.availableUpTo = 6;
  const running = runtime.start();
  await until(() => runtime.sourceOffsets.gapped === 6);
  const cut = runtime.cut(2);
  expect(cut.sourceLag).toEqual({ gapped: 10 });
  for (const stage of cut.stages) stage.snapshot.release();
  await runtime.stop();
  await running;

  const unknown = runtimeFor(new GappedPartition(), []);
  await unknown.open({});
  expect(unknown.cut(1).sourceLag).toEqual({});
});

test("a partition the restored checkpoint does not list is told the task restored: it was added since", async () => {
  const asked: (boolean | undefined)[] = [];
  const partition = Object.assign(new GappedPartition(), {
    startOffset: (restored?: boolean) => {
      asked.push(restored);
      return Promise.resolve(restored ? 0 : 12);
    },
  });
  const fresh = runtimeFor(partition, []);
  await fresh.open({});
  expect(fresh.sourceOffsets).toEqual({ gapped: 12 });
  const restored = runtimeFor(partition, []);
  await restored.open({ "another-partition": 7 });
  expect(restored.sourceOffsets).toEqual({ gapped: 0 });
  expect(asked).toEqual([false, true]);
});

test("after a checkpoint completed, each partition's source learns the offset it holds", async () => {
  const told: number[] = [];
  const partition = Object.assign(new GappedPartition(), {
    checkpointed: (offset: number) => told.push(offset),
  });
  const runtime = runtimeFor(partition, []);
  await runtime.open({ gapped: 5 });
  runtime.checkpointed({ gapped: 11, "another-task's": 3 });
  expect(told).toEqual([11]);
});
