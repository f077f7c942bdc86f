import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { readEnvironment } from "../../../src/taskmanager/config/environment.js";
import { kafkaSequenceJob } from "../../../src/taskmanager/job/builtin/kafka-sequence.js";
import { sequenceJob } from "../../../src/taskmanager/job/builtin/sequence.js";
import { wordcountJob, wordsOf } from "../../../src/taskmanager/job/builtin/wordcount.js";
import type { JobDefinition } from "../../../src/taskmanager/job/job-definition.js";
import { loadJob } from "../../../src/taskmanager/job/load-job.js";
import { TaskRuntime } from "../../../src/taskmanager/runtime/task-runtime.js";
import { TwoPhaseCommitSink } from "../../../src/taskmanager/sink/two-phase-commit-sink.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import sensorAverage from "./fixtures/sensor-average-job.js";
import { JOB, taskConfig } from "./support/fixtures.js";

const here = path.dirname(fileURLToPath(import.meta.url));

class RecordingSink extends TwoPhaseCommitSink {
  readonly lines: string[] = [];
  override emit(line: string): void {
    this.lines.push(line);
    super.emit(line);
  }
}

/** Runs `job` as task `taskIndex` of `parallelism` until `done` holds for it. */
async function runTask(
  job: JobDefinition<unknown>,
  args: string[],
  parallelism: number,
  taskIndex: number,
  done: (runtime: TaskRuntime) => boolean,
  store = new MemoryObjectStore("streamjob"),
) {
  const maxParallelism = 16;
  const keyGroupRange = keyGroupRangeForTask(maxParallelism, parallelism, taskIndex);
  const state = new KeyGroupedStateBackend(maxParallelism, keyGroupRange);
  const sink = new RecordingSink(taskIndex);
  const runtime = new TaskRuntime({
    job,
    context: { args, job: JOB, taskIndex, parallelism, maxParallelism, keyGroupRange, storage: () => store },
    state,
    partitionState: new PartitionScopedState(maxParallelism, keyGroupRange),
    sink,
    idleMs: 5,
  });
  await runtime.open({});
  const loop = runtime.start();
  const deadline = Date.now() + 10_000;
  while (!done(runtime)) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await runtime.stop();
  await loop;
  return { state, lines: sink.lines, runtime };
}

test("the example in docs/writing-a-job.md is the tested fixture, verbatim", () => {
  const doc = readFileSync(path.join(here, "..", "..", "..", "docs", "writing-a-job.md"), "utf8");
  const fixture = readFileSync(path.join(here, "fixtures", "sensor-average-job.ts"), "utf8");
  expect(doc).toContain(`\`\`\`ts\n${fixture}\`\`\``);
});

test("the example job runs: two tasks split the sensors and keep each one's average", async () => {
  const results = [];
  for (const taskIndex of [0, 1]) {
    results.push(
      await runTask(
        sensorAverage,
        [],
        2,
        taskIndex,
        (runtime) =>
          runtime.recordsProcessed > 0 &&
          Object.values(runtime.sourceOffsets).every((offset) => offset === 1_000),
      ),
    );
  }
  const sensors = results.flatMap(({ runtime }) => Object.keys(runtime.sourceOffsets)).sort();
  expect(sensors).toEqual(Array.from({ length: 8 }, (_, i) => `sensor-${i}`).sort());
  for (const { state, runtime } of results) {
    for (const sensor of Object.keys(runtime.sourceOffsets)) {
      expect((state.get(sensor) as { count: number }).count).toBe(1_000);
    }
  }
});

test("sequence: every key counts up from 1 and a skipped record fails the task", async () => {
  const { state, lines } = await runTask(
    sequenceJob,
    ["--keys", "4", "--rate", "1000"],
    1,
    0,
    (runtime) => runtime.recordsProcessed >= 40,
  );
  for (let i = 0; i < 4; i++) expect(state.get(`seq-${i}`)).toBeGreaterThanOrEqual(10);
  expect(lines.filter((line) => line.startsWith("seq-0 ")).slice(0, 3)).toEqual([
    "seq-0 1",
    "seq-0 2",
    "seq-0 3",
  ]);
  const record = {
    partitionId: "seq-0",
    offset: 5,
    state,
    partitionState: new PartitionScopedState(16, state.keyGroupRange).view("seq-0"),
    emit: () => undefined,
  };
  const current = Number(state.get("seq-0"));
  expect(() => sequenceJob.process(current + 2, record)).toThrow(
    `seq-0 got ${current + 2} after ${current} at offset 5: exactly-once violated`,
  );
  expect(() =>
    sequenceJob.partitions({
      ...record,
      args: ["--keys", "zero"],
      job: JOB,
      taskIndex: 0,
      parallelism: 1,
      maxParallelism: 1,
      keyGroupRange: { start: 0, end: 0 },
      storage: () => new MemoryObjectStore(),
    }),
  ).toThrow("sequence arguments: keys: expected a decimal integer");
});

test("wordcount: two tasks count every word of the corpus once, each word on the task owning it", async () => {
  const store = new MemoryObjectStore("corpus");
  await store.put("books/a.txt", Buffer.from("The cat sat.\nthe dog didn't sit\n"));
  await store.put("books/b.txt", Buffer.from("A cat, a dog; THE end"));
  expect(wordsOf("The dog didn't SIT!")).toEqual(["the", "dog", "didn't", "sit"]);
  const counts = new Map<string, unknown>();
  for (const taskIndex of [0, 1]) {
    const { state } = await runTask(
      wordcountJob,
      ["--input", "s3://corpus/books/"],
      2,
      taskIndex,
      (runtime) => Object.values(runtime.sourceOffsets).every((offset) => offset === 4),
      store,
    );
    for (const word of ["the", "cat", "sat", "dog", "didn't", "sit", "a", "end"]) {
      if (state.owns(word)) counts.set(word, state.get(word));
    }
  }
  expect(Object.fromEntries(counts)).toEqual({
    the: 3,
    cat: 2,
    sat: 1,
    dog: 2,
    "didn't": 1,
    sit: 1,
    a: 2,
    end: 1,
  });
});

test("jobs are found by built-in name; anything else must be an absolute module path", async () => {
  expect(await loadJob("sequence")).toBe(sequenceJob);
  expect(await loadJob("wordcount")).toBe(wordcountJob);
  expect(await loadJob("kafka-sequence")).toBe(kafkaSequenceJob);
  await expect(loadJob("sessions")).rejects.toThrow(
    'job.name "sessions": not a built-in job (sequence, wordcount, kafka-sequence, orders-by-customer, customer-totals, keyed-sequence) nor an absolute module path',
  );
});

test("a module is job code when its default export has partitions() and process(), whatever it imports", async () => {
  const plain = path.join(here, "fixtures", "counter-job.mjs");
  for (const name of [plain, pathToFileURL(plain).href]) {
    const job = await loadJob(name);
    expect(typeof job.partitions).toBe("function");
    expect(typeof (job as JobDefinition<unknown>).process).toBe("function");
  }
  const notAJob = path.join(here, "fixtures", "not-a-job.mjs");
  await expect(loadJob(notAJob)).rejects.toThrow(
    `job.name ${notAJob}: the default export is not a job (needs partitions() and process(), or partitions(), source and stages)`,
  );
});

describe("kafka-sequence", () => {
  const keyGroupRange = keyGroupRangeForTask(16, 2, 0);
  const context = (args: string[]) => ({
    args,
    job: JOB,
    taskIndex: 0,
    parallelism: 2,
    maxParallelism: 16,
    keyGroupRange,
    storage: () => new MemoryObjectStore("streamjob"),
  });
  const record = (value: string) => ({ key: null, value: Buffer.from(value), timestamp: 0 });

  test("without --bootstrap-servers or STREAMJOB_KAFKA_BOOTSTRAP_SERVERS it is a configuration error naming both", async () => {
    delete process.env.STREAMJOB_KAFKA_BOOTSTRAP_SERVERS;
    await expect(kafkaSequenceJob.partitions(context(["--topic", "orders"]))).rejects.toThrow(
      "kafka-sequence: no Kafka: give --bootstrap-servers or set STREAMJOB_KAFKA_BOOTSTRAP_SERVERS",
    );
    await expect(
      kafkaSequenceJob.partitions(context(["--topic", "orders", "--bootstrap-servers", "kafka"])),
    ).rejects.toThrow('"kafka" is not host:port');
  });

  test("counts each key from 1 and fails on a duplicate, a gap, or a key whose key group the task does not own", () => {
    const state = new KeyGroupedStateBackend(16, keyGroupRange);
    const owned = ["a", "b", "c", "d", "e", "f"].find((key) => state.owns(key))!;
    const foreign = ["a", "b", "c", "d", "e", "f"].find((key) => !state.owns(key))!;
    const lines: string[] = [];
    const at = (offset: number) => ({
      partitionId: "orders-0",
      offset,
      state,
      partitionState: new PartitionScopedState(16, keyGroupRange).view("orders-0"),
      emit: (l: string) => lines.push(l),
    });
    kafkaSequenceJob.process(record(`${owned}:1`), at(0));
    kafkaSequenceJob.process(record(`${owned}:2`), at(5));
    expect(lines).toEqual([`${owned} 1`, `${owned} 2`]);
    expect(() => kafkaSequenceJob.process(record(`${owned}:2`), at(6))).toThrow(
      `kafka-sequence: ${owned} got 2 after 2 at orders-0 offset 6: exactly-once violated`,
    );
    expect(() => kafkaSequenceJob.process(record(`${owned}:4`), at(6))).toThrow("got 4 after 2");
    expect(() => kafkaSequenceJob.process(record(`${foreign}:1`), at(7))).toThrow(
      `kafka-sequence: key ${foreign} came from orders-0, whose task does not own the key's key group`,
    );
    expect(() => kafkaSequenceJob.process(record("no number"), at(8))).toThrow('is not "<key>:<n>"');
  });
});

describe("the environment", () => {
  const valid = {
    STREAMJOB_TASKMANAGER_CONFIG: JSON.stringify(taskConfig()),
    STREAMJOB_TOKEN: "secret-token",
    STREAMJOB_S3_ACCESS_KEY: "access",
    STREAMJOB_S3_SECRET_KEY: "secret",
    POD_IP: "10.0.0.7",
  };

  test("a valid environment gives the config, secrets and the pod IP to listen on", () => {
    const env = readEnvironment(valid);
    expect(env).toMatchObject({
      token: "secret-token",
      accessKey: "access",
      secretKey: "secret",
      host: "10.0.0.7",
    });
    expect(env.config.keyGroupRange).toEqual({ start: 0, end: 11 });
    // Never a wildcard address: without POD_IP the TaskManager does not start.
    expect(() => readEnvironment({ ...valid, POD_IP: undefined })).toThrow(
      "invalid environment: POD_IP: missing or not an IP address",
    );
    expect(readEnvironment({ ...valid, POD_IP: "fd00::7" }).host).toBe("fd00::7");
  });

  test("a missing variable or an invalid config field is named, and no secret is repeated", () => {
    expect(() => readEnvironment({ ...valid, STREAMJOB_TOKEN: undefined })).toThrow(
      "invalid environment: STREAMJOB_TOKEN: missing",
    );
    const config = { ...taskConfig({ parallelism: 2, taskIndex: 1 }), keyGroupRange: { start: 0, end: 11 } };
    expect(() => readEnvironment({ ...valid, STREAMJOB_TASKMANAGER_CONFIG: JSON.stringify(config) })).toThrow(
      "invalid STREAMJOB_TASKMANAGER_CONFIG: keyGroupRange: expected {start: 6, end: 11} for task 1 of 2",
    );
    expect(() =>
      readEnvironment({
        ...valid,
        STREAMJOB_TASKMANAGER_CONFIG: JSON.stringify({ ...taskConfig(), protocolVersion: "v2" }),
      }),
    ).toThrow(/protocolVersion/);
    let message = "";
    try {
      readEnvironment({ ...valid, STREAMJOB_S3_SECRET_KEY: "", POD_IP: "not-an-ip" });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/STREAMJOB_S3_SECRET_KEY: empty; POD_IP/);
    expect(message).not.toContain("secret-token");
  });
});
