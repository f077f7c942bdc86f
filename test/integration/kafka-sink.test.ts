// The exactly-once Kafka sink against the local cluster's broker and MinIO: a segment is published
// once however often a crashed task publishes it again, a fenced (zombie) producer publishes
// nothing, and a real job whose TaskManagers are SIGKILLed after a checkpoint completed but before
// its notify-complete arrived, and right after a trigger, leaves every key's numbers exactly once,
// in order, in the output topic as a read_committed consumer sees it. At least once loses nothing.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { KafkaTransactionalOutput } from "../../src/connectors/kafka/sink.js";
import type { TaskManagerClient } from "../../src/coordinator/interfaces.js";
import type { MinioObjectStore, StorageConfig } from "../../src/storage/minio-object-store.js";
import { stagedOutputKey } from "../../src/taskmanager/sink/output-layout.js";
import type { SinkLocation, StagedSegment } from "../../src/taskmanager/sink/sink.js";
import { TwoPhaseCommitSink } from "../../src/taskmanager/sink/two-phase-commit-sink.js";
import {
  checkpointThroughEnd,
  ensureTopic,
  kafkaBootstrapServers,
  partitionReadByKeyOwner,
  produceNumbers,
  readCommittedTopic,
  verifyKafkaSequenceOutput,
} from "../support/kafka.js";
import { LocalJob, type LocalJobOptions, type TaskManagerProcess } from "../support/local-job.js";
import { removeBucket } from "../support/storage.js";
import { waitFor } from "../support/wait.js";
import { clients, testClusterDir } from "./support/cluster.js";
import { storageConfig, storeOnFreshBucket } from "./support/minio.js";

let store: MinioObjectStore;
let storage: StorageConfig;
let bootstrapServers: string[];
const jobs: LocalJob[] = [];
const targets: KafkaTransactionalOutput[] = [];

beforeAll(async () => {
  storage = await storageConfig();
  store = await storeOnFreshBucket("kafka-sink");
  bootstrapServers = await kafkaBootstrapServers(clients().core);
});

afterAll(async () => {
  await Promise.all(jobs.map((job) => job.stop()));
  await Promise.all(targets.map((target) => target.close()));
  await removeBucket(store);
});

async function newTopic(prefix: string, partitions: number): Promise<string> {
  const topic = `${prefix}-${randomBytes(4).toString("hex")}`;
  await ensureTopic(bootstrapServers, topic, partitions);
  return topic;
}

describe("the transactional output", () => {
  const job = () => ({ namespace: "sink-test", name: `job-${randomBytes(3).toString("hex")}` });

  function target(topic: string, ref: { namespace: string; name: string }) {
    const output = new KafkaTransactionalOutput({
      bootstrapServers,
      topic,
      delivery: "exactly-once",
      job: ref,
      taskIndex: 0,
    });
    targets.push(output);
    return output;
  }

  function segment(output: KafkaTransactionalOutput, location: SinkLocation, id: number, values: string[]) {
    const data = Buffer.from(values.map((value) => output.encode(value, value.split(" ")[0])).join(""));
    return { writerIndex: 0, checkpointId: id, key: stagedOutputKey(location.jobDirectory, 0, id), data };
  }

  const values = async (topic: string) =>
    (await readCommittedTopic(bootstrapServers, topic)).map((record) => record.value).sort();

  test("a crash after the Kafka commit, before the staging delete: the restore publishes the rest, nothing twice", async () => {
    const topic = await newTopic("sink-crash", 2);
    const ref = job();
    const location = { store, jobDirectory: `crash/${ref.name}/` };
    const before = target(topic, ref);
    const staged: StagedSegment[] = [
      segment(before, location, 1, ["a 1", "b 1"]),
      segment(before, location, 2, ["a 2"]),
      segment(before, location, 3, ["a 3"]),
    ];
    for (const s of staged) await store.put(s.key, s.data!);
    // Checkpoint 1 published; the task dies before it deletes the staged object.
    await before.publish(staged[0]!, location);
    await before.close();

    // Restored from checkpoint 2: 1 and 2 are published (1 already was), 3 is discarded.
    const sink = new TwoPhaseCommitSink(0, target(topic, ref));
    expect(await sink.recover(location, 2, 1)).toEqual({ committed: [1, 2], discarded: [3] });
    expect(await values(topic)).toEqual(["a 1", "a 2", "b 1"]);
    expect(await store.list(`${location.jobDirectory}output/staging/`)).toEqual([]);
    // A second restore from 2 (the new task crashed too) publishes nothing again.
    for (const s of staged.slice(0, 2)) await store.put(s.key, s.data!);
    expect(await new TwoPhaseCommitSink(0, target(topic, ref)).recover(location, 2, 1)).toEqual({
      committed: [1, 2],
      discarded: [],
    });
    expect(await values(topic)).toEqual(["a 1", "a 2", "b 1"]);
  }, 60_000);

  test("a zombie's producer is fenced by the newer one and publishes nothing", async () => {
    const topic = await newTopic("sink-zombie", 1);
    const ref = job();
    const location = { store, jobDirectory: `zombie/${ref.name}/` };
    const zombie = target(topic, ref);
    const successor = target(topic, ref);
    await zombie.publish(segment(zombie, location, 1, ["z 1"]), location);
    await successor.publish(segment(successor, location, 2, ["z 2"]), location);
    await expect(zombie.publish(segment(zombie, location, 3, ["z 3"]), location)).rejects.toThrow(
      /publishing checkpoint 3 of writer 0 to Kafka topic .* failed: .*(fence|epoch)/i,
    );
    expect(await values(topic)).toEqual(["z 1", "z 2"]);
    await successor.publish(segment(successor, location, 3, ["z 3"]), location);
    expect(await values(topic)).toEqual(["z 1", "z 2", "z 3"]);
  }, 60_000);
});

const PARTITIONS = 4;
const PARALLELISM = 2;
const MAX_PARALLELISM = 16;
const KEYS = Array.from({ length: 8 }, (_, i) => `key-${i}`);
const ROUNDS = 80;

/** A partition read by the task owning the key's key group, as a topic keyed the job's way is. */
function partitionOf(key: string, i: number): number {
  return partitionReadByKeyOwner(key, i, PARTITIONS, PARALLELISM, MAX_PARALLELISM);
}

/** Round n writes `<key>:<n>` for every key in one transaction, 250 ms apart (20 s in all). */
function produceRounds(topic: string): Promise<void> {
  return produceNumbers({
    bootstrapServers,
    topic,
    keys: KEYS,
    from: 1,
    to: ROUNDS,
    partitionOf,
    pauseMs: 250,
  });
}

/** A kafka-sequence job from `input` to `output` on real TaskManager processes. */
function kafkaSequenceJob(
  program: { name: string; args: string[] },
  options: Pick<LocalJobOptions, "policy" | "wrapClient">,
): LocalJob {
  const job = new LocalJob({
    program,
    parallelism: PARALLELISM,
    maxParallelism: MAX_PARALLELISM,
    store,
    storage,
    logDir: path.join(testClusterDir, "logs", "local-jobs"),
    ...options,
  });
  jobs.push(job);
  return job;
}

test("exactly once: TaskManagers SIGKILLed with a lost notify-complete and right after a trigger", async () => {
  const input = await newTopic("sink-in", PARTITIONS);
  const output = await newTopic("sink-out", 3);
  const program = {
    name: "kafka-sequence",
    args: ["--topic", input, "--output-topic", output, "--bootstrap-servers", bootstrapServers.join(",")],
  };
  // Task 1 dies instead of hearing that a checkpoint completed: its output is staged, unpublished.
  // Task 0 dies right after accepting a trigger: that checkpoint never completes.
  const faults = { lostNotify: false, killAfterTrigger: false };
  const killed: number[] = [];
  const faulty = (client: TaskManagerClient, tm: TaskManagerProcess): TaskManagerClient => ({
    taskIndex: client.taskIndex,
    trigger: async (request) => {
      await client.trigger(request);
      if (tm.taskIndex === 0 && faults.killAfterTrigger) {
        faults.killAfterTrigger = false;
        killed.push(request.checkpointId);
        await tm.kill("SIGKILL");
      }
    },
    result: (id, epoch, waitMs) => client.result(id, epoch, waitMs),
    notifyComplete: async (request) => {
      if (tm.taskIndex === 1 && faults.lostNotify) {
        faults.lostNotify = false;
        killed.push(request.checkpointId);
        await tm.kill("SIGKILL");
        return;
      }
      await client.notifyComplete(request);
    },
    abort: (request) => client.abort(request),
    status: () => client.status(),
    setPeers: (request) => client.setPeers(request),
  });
  const job = kafkaSequenceJob(program, {
    policy: { intervalMs: 300, timeoutMs: 10_000 },
    wrapClient: faulty,
  });
  await job.deploy({ epoch: 1, parallelism: PARALLELISM, program });
  job.coordinator!.start();
  let produced = false;
  const producing = produceRounds(input).then(() => (produced = true));

  const outputSoFar = async () => (await readCommittedTopic(bootstrapServers, output)).length;
  await waitFor("some output published", async () => (await outputSoFar()) > 0, 60_000);
  faults.lostNotify = true;
  await waitFor("task 1 killed at a notify-complete", () => Promise.resolve(!faults.lostNotify), 30_000);
  const lostNotifyOf = killed[0]!;
  const restored = await job.restartFromLatestCheckpoint();
  // The restore starts from the checkpoint whose notify was lost, and publishes its output.
  expect(restored).toBe(lostNotifyOf);
  job.coordinator!.start();

  await waitFor(
    "a checkpoint after the restore",
    () => job.completed.at(-1)!.checkpointId > restored,
    30_000,
  );
  faults.killAfterTrigger = true;
  await waitFor("task 0 killed after a trigger", () => Promise.resolve(!faults.killAfterTrigger), 30_000);
  expect(await job.restartFromLatestCheckpoint()).toBeLessThan(killed[1]!);
  job.coordinator!.start();
  expect(produced).toBe(false); // both kills happened while records were still arriving
  await producing;
  await checkpointThroughEnd(job, bootstrapServers, input);

  const report = await verifyKafkaSequenceOutput(bootstrapServers, output);
  expect(report.problems).toEqual([]);
  expect(Object.fromEntries(report.lastValues)).toEqual(Object.fromEntries(KEYS.map((key) => [key, ROUNDS])));
  expect(report.records).toBe(KEYS.length * ROUNDS);
}, 240_000);

test("at least once: records are visible before their checkpoint, and a SIGKILL loses none", async () => {
  const input = await newTopic("sink-alo-in", PARTITIONS);
  const output = await newTopic("sink-alo-out", 3);
  const program = {
    name: "kafka-sequence",
    args: [
      "--topic",
      input,
      "--output-topic",
      output,
      "--delivery",
      "at-least-once",
      "--bootstrap-servers",
      bootstrapServers.join(","),
    ],
  };
  // Checkpoints far apart: output that shows up before the first one was not held for it.
  const job = kafkaSequenceJob(program, { policy: { intervalMs: 60_000, timeoutMs: 10_000 } });
  await job.deploy({ epoch: 1, parallelism: PARALLELISM, program });
  const producing = produceRounds(input);
  await waitFor(
    "output before any checkpoint",
    async () => (await readCommittedTopic(bootstrapServers, output)).length > 0,
    30_000,
  );
  expect(job.completed).toEqual([]);
  expect((await job.coordinator!.triggerCheckpoint()).state).toBe("completed");
  await job.taskManagers[1]!.kill("SIGKILL");
  await job.restartFromLatestCheckpoint();
  await producing;
  await checkpointThroughEnd(job, bootstrapServers, input);

  // Every number of every key, in order per key; a number may repeat after the restore.
  const seen = new Map<string, number[]>();
  for (const record of await readCommittedTopic(bootstrapServers, output)) {
    const [key, n] = record.value.split(" ");
    seen.set(key!, [...(seen.get(key!) ?? []), Number(n)]);
  }
  for (const key of KEYS) {
    const numbers = seen.get(key) ?? [];
    expect(new Set(numbers)).toEqual(new Set(Array.from({ length: ROUNDS }, (_, i) => i + 1)));
    // In order except where the restore went back to the checkpoint.
    const drops = numbers.filter((n, i) => i > 0 && n <= numbers[i - 1]!).length;
    expect(drops).toBeLessThanOrEqual(1);
  }
}, 240_000);
