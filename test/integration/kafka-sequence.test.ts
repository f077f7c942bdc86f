// The Kafka source under real TaskManager processes, the real coordinator and MinIO: a producer
// writes numbered records per key (with aborted transactions between), a TaskManager is SIGKILLed
// mid-run and the job restores from its latest checkpoint; the committed output holds every key's
// numbers exactly once, in order.
import { Admin } from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { kafkaPartitionId } from "../../src/connectors/kafka/source.js";
import type { MinioObjectStore, StorageConfig } from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { LocalJob } from "../support/local-job.js";
import { removeBucket } from "../support/storage.js";
import { waitFor } from "../support/wait.js";
import { clients, testClusterDir } from "./support/cluster.js";
import {
  kafkaBootstrapServers,
  partitionEnds,
  partitionReadByKeyOwner,
  transactionalProducer,
} from "../support/kafka.js";
import { storageConfig, storeOnFreshBucket } from "./support/minio.js";

const PARTITIONS = 4;
const PARALLELISM = 2;
const MAX_PARALLELISM = 16;
const KEYS = Array.from({ length: 8 }, (_, i) => `key-${i}`);
const ROUNDS = 60;
const topic = `kafka-sequence-${randomBytes(4).toString("hex")}`;

let store: MinioObjectStore;
let storage: StorageConfig;
let bootstrapServers: string[];
let job: LocalJob | undefined;

beforeAll(async () => {
  storage = await storageConfig();
  store = await storeOnFreshBucket("kafka-sequence");
  bootstrapServers = await kafkaBootstrapServers(clients().core);
  const admin = new Admin({ clientId: "kafka-sequence-test", bootstrapBrokers: bootstrapServers });
  try {
    await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
  } finally {
    await admin.close();
  }
});

afterAll(async () => {
  await job?.stop();
  await removeBucket(store);
});

/** A partition read by the task owning the key's key group, as a topic keyed the job's way is. */
function partitionOf(key: string, i: number): number {
  return partitionReadByKeyOwner(key, i, PARTITIONS, PARALLELISM, MAX_PARALLELISM);
}

/** Round n writes `<key>:<n>` for every key in one transaction; every fourth is preceded by an aborted one. */
async function produce(): Promise<void> {
  const producer = transactionalProducer("kafka-sequence-test", bootstrapServers, topic);
  const round = (n: number) =>
    KEYS.map((key, i) => ({ topic, partition: partitionOf(key, i), key, value: `${key}:${n}` }));
  try {
    for (let n = 1; n <= ROUNDS; n++) {
      if (n % 4 === 0) {
        // The same numbers, aborted: read, they would be duplicates and fail the job.
        const aborted = await producer.beginTransaction();
        await aborted.send({ messages: round(n) });
        await aborted.abort();
      }
      const transaction = await producer.beginTransaction();
      await transaction.send({ messages: round(n) });
      await transaction.commit();
      await sleep(100);
    }
  } finally {
    await producer.close();
  }
}

test("a TaskManager SIGKILLed mid-run: after the restore every key's numbers are committed exactly once, in order", async () => {
  const program = {
    name: "kafka-sequence",
    args: ["--topic", topic, "--bootstrap-servers", bootstrapServers.join(",")],
  };
  job = new LocalJob({
    program,
    parallelism: PARALLELISM,
    maxParallelism: MAX_PARALLELISM,
    store,
    storage,
    policy: { intervalMs: 300, timeoutMs: 10_000 },
    logDir: path.join(testClusterDir, "logs", "local-jobs"),
  });
  await job.deploy({ epoch: 1, parallelism: PARALLELISM, program });
  job.coordinator!.start();
  let produced = false;
  const producing = produce().then(() => (produced = true));

  // Killed once a checkpoint holds some of the records, while the producer still writes.
  await waitFor(
    "a checkpoint with records read",
    async () => {
      const latest = job!.completed.at(-1);
      if (latest === undefined) return false;
      const offsets = Object.values((await job!.manifest(latest.checkpointId)).sourceOffsets);
      return offsets.some((offset) => offset > 0);
    },
    60_000,
  );
  expect(produced).toBe(false);
  await job.taskManagers[1]!.kill("SIGKILL");
  const restoredFrom = await job.restartFromLatestCheckpoint();
  const restored = await job.manifest(restoredFrom);
  job.coordinator!.start();
  await producing;
  expect(Object.keys(restored.sourceOffsets).sort()).toEqual(
    Array.from({ length: PARTITIONS }, (_, p) => kafkaPartitionId(topic, p)).sort(),
  );

  // Done when a checkpoint has read every partition to its end (the offsets of its last marker + 1).
  const ends = await partitionEnds(bootstrapServers, topic);
  await waitFor(
    "a checkpoint at the end of every partition",
    async () => {
      const last = job!.completed.at(-1);
      if (last === undefined) return false;
      const offsets = (await job!.manifest(last.checkpointId)).sourceOffsets;
      return Object.entries(ends).every(([id, end]) => offsets[id] === end);
    },
    60_000,
  );
  await job.coordinator!.stop();
  const outcome = await job.coordinator!.triggerCheckpoint(); // its notify-complete commits the last output
  expect(outcome.state).toBe("completed");

  const report = await verifySequenceOutput(store, job.directory);
  expect(report.problems).toEqual([]);
  expect(Object.fromEntries(report.lastValues)).toEqual(Object.fromEntries(KEYS.map((key) => [key, ROUNDS])));
  expect(report.records).toBe(KEYS.length * ROUNDS);
}, 240_000);
