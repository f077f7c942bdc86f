// The two-job pipeline of manifests/examples/kafka-orders.yaml on real TaskManager processes, the
// real coordinator, MinIO and the local Kafka broker: `orders-by-customer` re-keys orders by
// customer, `customer-totals` keeps each customer's total in partition-scoped state. A
// `customer-totals` TaskManager is SIGKILLed and the job is then rescaled from 2 to 3 TaskManagers
// while orders arrive; every order is counted exactly once and every total is right.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { PARTITION_STATE_STAGE_ID } from "../../src/api/protocol.js";
import { latestCompletedCheckpoint } from "../../src/coordinator/completed-checkpoints.js";
import type { MinioObjectStore, StorageConfig } from "../../src/storage/minio-object-store.js";
import {
  checkpointThroughEnd,
  ensureTopic,
  kafkaBootstrapServers,
  produceOrders,
  verifyOrdersPipeline,
} from "../support/kafka.js";
import { LocalJob } from "../support/local-job.js";
import { removeBucket } from "../support/storage.js";
import { waitFor } from "../support/wait.js";
import { clients, testClusterDir } from "./support/cluster.js";
import { storageConfig, storeOnFreshBucket } from "./support/minio.js";

const PARTITIONS = 4;
const ROUNDS = 60;
const PER_ROUND = 20;
const suffix = randomBytes(4).toString("hex");
const topics = {
  orders: `orders-${suffix}`,
  byCustomer: `by-customer-${suffix}`,
  totals: `totals-${suffix}`,
};

let store: MinioObjectStore;
let storage: StorageConfig;
let bootstrapServers: string[];
const jobs: LocalJob[] = [];

beforeAll(async () => {
  storage = await storageConfig();
  store = await storeOnFreshBucket("kafka-orders");
  bootstrapServers = await kafkaBootstrapServers(clients().core);
  for (const topic of Object.values(topics)) await ensureTopic(bootstrapServers, topic, PARTITIONS);
});

afterAll(async () => {
  await Promise.all(jobs.map((job) => job.stop()));
  await removeBucket(store);
});

function pipelineJob(name: string, input: string, output: string) {
  const program = {
    name,
    args: ["--topic", input, "--output-topic", output, "--bootstrap-servers", bootstrapServers.join(",")],
  };
  const job = new LocalJob({
    name: `${name}-${suffix}`,
    program,
    parallelism: 2,
    maxParallelism: 16,
    store,
    storage,
    policy: { intervalMs: 300, timeoutMs: 10_000 },
    logDir: path.join(testClusterDir, "logs", "local-jobs"),
  });
  jobs.push(job);
  return { job, program };
}

test("orders → by customer → totals: exact after a SIGKILL and a rescale of the stateful job", async () => {
  const pipeline = [
    pipelineJob("orders-by-customer", topics.orders, topics.byCustomer),
    pipelineJob("customer-totals", topics.byCustomer, topics.totals),
  ];
  for (const { job, program } of pipeline) {
    await job.deploy({ epoch: 1, parallelism: 2, program });
    job.coordinator!.start();
  }
  const [byCustomer, totals] = pipeline.map(({ job }) => job) as [LocalJob, LocalJob];
  let produced = false;
  const producing = produceOrders({
    bootstrapServers,
    topic: topics.orders,
    regions: PARTITIONS,
    customers: 10,
    perRound: PER_ROUND,
    rounds: ROUNDS,
    pauseMs: 250,
    seed: 7,
  }).then((written) => {
    produced = true;
    return written;
  });

  // Killed once a checkpoint holds partition-scoped state.
  const withState = async () => {
    const latest = totals.completed.at(-1);
    if (latest === undefined) return false;
    const manifest = await totals.manifest(latest.checkpointId);
    return manifest.parts.some((part) => part.stageId === PARTITION_STATE_STAGE_ID) && latest.checkpointId;
  };
  await waitFor("a customer-totals checkpoint with partition-scoped state", withState, 60_000);
  await totals.taskManagers[1]!.kill("SIGKILL");
  const restored = await totals.restartFromLatestCheckpoint();
  totals.coordinator!.start();

  // Rescaled to 3: each partition's totals move to the TaskManager that now reads it.
  const before = await waitFor(
    "a checkpoint after the restore",
    async () => (totals.completed.at(-1)!.checkpointId > restored ? withState() : false),
    60_000,
  );
  await totals.stop();
  const { latest } = await latestCompletedCheckpoint(totals.snapshots, totals.job);
  expect(latest!.checkpointId).toBeGreaterThanOrEqual(before);
  await totals.redeploy({
    parallelism: 3,
    restoreFrom: { checkpointId: latest!.checkpointId, manifestKey: latest!.manifestKey },
  });
  totals.coordinator!.start();
  expect(produced).toBe(false); // the kill and the rescale happened while orders were arriving

  expect(await producing).toBe(ROUNDS * PER_ROUND);
  await checkpointThroughEnd(byCustomer, bootstrapServers, topics.orders);
  await checkpointThroughEnd(totals, bootstrapServers, topics.byCustomer);
  const report = await verifyOrdersPipeline(bootstrapServers, topics.orders, topics.totals);
  expect(report.problems).toEqual([]);
  expect(report.orders).toBe(ROUNDS * PER_ROUND);
  expect(report.customers).toBe(10);
}, 300_000);
