// A Kafka job under the operator, as a user runs one: the StreamJob names the Kafka Secret in
// `kafka.secretName`, the TaskManager pods get its brokers from that Secret, and the job's committed
// output holds every produced number of every key exactly once.
import { randomBytes } from "node:crypto";
import { jobDirectory } from "../../src/api/object-layout.js";
import { KAFKA_SECRET_NAME } from "../../src/connectors/kafka/connection.js";
import { MinioObjectStore } from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { ensureTopic, kafkaBootstrapServers, produceNumbers } from "../support/kafka.js";
import { waitFor } from "../support/wait.js";
import { clients } from "./support/cluster.js";
import { storageConfig } from "./support/minio.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import { createStreamJob, installCrd, jobNamespace, taskManagerPods } from "./support/streamjobs.js";

const { core } = clients();
const JOB = "kafka-sequence";
const PARTITIONS = 2;
const KEYS = ["a", "b", "c", "d"];
const ROUNDS = 20;
const topic = `numbers-${randomBytes(4).toString("hex")}`;

let ns: string;
let operator: InstalledOperator;
let bootstrapServers: string[];

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("kafka-operator");
  bootstrapServers = await kafkaBootstrapServers(core);
  await core.createNamespacedSecret({
    namespace: ns,
    body: {
      metadata: { name: KAFKA_SECRET_NAME },
      stringData: { bootstrapServers: bootstrapServers.join(",") },
    },
  });
  await ensureTopic(bootstrapServers, topic, PARTITIONS);
  operator = await installOperator(ns, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall();
});

test("kafka.secretName brings the brokers to the TaskManagers, and the output is exact", async () => {
  // With parallelism 1 every key group and partition is task 0's, so any key may go to any partition.
  await produceNumbers({
    bootstrapServers,
    topic,
    keys: KEYS,
    from: 1,
    to: ROUNDS,
    partitionOf: (_, i) => i % PARTITIONS,
  });
  await createStreamJob(ns, {
    apiVersion: "streamjob.dev/v1alpha1",
    kind: "StreamJob",
    metadata: { name: JOB },
    spec: {
      image: "ghcr.io/streamjob/streamjob-taskmanager:0.1.0",
      parallelism: 1,
      job: { name: "kafka-sequence", args: ["--topic", topic] },
      kafka: { secretName: KAFKA_SECRET_NAME },
      checkpoint: { interval: "1s", storage: { bucket: "streamjob" } },
    },
  });

  const [pod] = await waitFor("the TaskManager pod", async () => {
    const pods = await taskManagerPods(ns, JOB);
    return pods.length === 1 ? pods : undefined;
  });
  const brokers = pod!.spec!.containers[0]!.env!.find(
    (env) => env.name === "STREAMJOB_KAFKA_BOOTSTRAP_SERVERS",
  );
  expect(brokers?.valueFrom).toEqual({ secretKeyRef: { name: KAFKA_SECRET_NAME, key: "bootstrapServers" } });
  expect(brokers?.value).toBeUndefined();

  // Output is committed when a checkpoint completes; done once every round of every key is in it.
  const store = new MinioObjectStore({ ...(await storageConfig()), bucket: "streamjob" });
  const report = await waitFor(
    `${KEYS.length * ROUNDS} records committed`,
    async () => {
      const found = await verifySequenceOutput(store, jobDirectory("checkpoints", ns, JOB));
      return found.records === KEYS.length * ROUNDS ? found : undefined;
    },
    90_000,
    500,
  );
  expect(report.problems).toEqual([]);
  expect(Object.fromEntries(report.lastValues)).toEqual(Object.fromEntries(KEYS.map((key) => [key, ROUNDS])));
}, 180_000);
