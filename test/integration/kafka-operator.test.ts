// A Kafka job under the operator, as a user runs one: the StreamJob names the Kafka Secret in
// `kafka.secretName`, the TaskManager pods get its brokers from that Secret, and the job's committed
// output holds every produced number of every key exactly once; so does its output topic when
// TaskManager pods are SIGKILLed at random points.
import { Admin } from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { jobDirectory } from "../../src/api/object-layout.js";
import { KAFKA_SECRET_NAME } from "../../src/connectors/kafka/connection.js";
import { KAFKA_SASL_SECRET_NAME } from "../../src/devcluster/cluster.js";
import { decodedSecretData } from "../support/storage.js";
import { MinioObjectStore } from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import {
  ensureTopic,
  kafkaBootstrapServers,
  partitionEnds,
  partitionReadByKeyOwner,
  produceNumbers,
  produceOrders,
  readCommittedTopic,
  verifyKafkaSequenceOutput,
  verifyOrdersPipeline,
} from "../support/kafka.js";
import { seededRandom } from "../support/random.js";
import { sleep, waitFor } from "../support/wait.js";
import { clients, containerPid, kubectl, repoRoot } from "./support/cluster.js";
import { storageConfig } from "./support/minio.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import {
  createStreamJob,
  getStreamJob,
  installCrd,
  jobNamespace,
  taskManagerPods,
} from "./support/streamjobs.js";

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
  // Caught up: the next checkpoint reports no lag, and `kubectl get sj` shows it.
  await waitFor("lag 0 in status.latestCheckpoint", async () => {
    return (await getStreamJob(ns, JOB)).status?.latestCheckpoint?.sourceLag === 0;
  });
  // Lag tools see the checkpointed offsets in the job's consumer group: the end of every partition.
  const admin = new Admin({ clientId: "kafka-operator-test", bootstrapBrokers: bootstrapServers });
  try {
    const expected = Object.values(await partitionEnds(bootstrapServers, topic));
    await waitFor("the job's consumer group at the end of every partition", async () => {
      const [group] = await admin.listConsumerGroupOffsets({
        groups: [{ groupId: `streamjob.${ns}.${JOB}`, topics: [{ name: topic, partitionIndexes: [0, 1] }] }],
      });
      const committed = group?.topics[0]?.partitions.map((p) => Number(p.committedOffset)) ?? [];
      return JSON.stringify(committed) === JSON.stringify(expected);
    });
  } finally {
    await admin.close();
  }
}, 180_000);

test("into a Kafka topic exactly once while TaskManager pods are SIGKILLed at random points", async () => {
  const name = "kafka-exactly-once";
  const parallelism = 2;
  const maxParallelism = 128;
  const input = `numbers-${randomBytes(4).toString("hex")}`;
  const output = `sequence-out-${randomBytes(4).toString("hex")}`;
  await ensureTopic(bootstrapServers, input, 4);
  await ensureTopic(bootstrapServers, output, 3);
  const keys = Array.from({ length: 8 }, (_, i) => `key-${i}`);
  const rounds = 120;
  const producing = produceNumbers({
    bootstrapServers,
    topic: input,
    keys,
    from: 1,
    to: rounds,
    // Every key in partitions read by the task that owns its key group.
    partitionOf: (key, i) => partitionReadByKeyOwner(key, i, 4, parallelism, maxParallelism),
    pauseMs: 150,
  });
  await createStreamJob(ns, {
    apiVersion: "streamjob.dev/v1alpha1",
    kind: "StreamJob",
    metadata: { name },
    spec: {
      image: "ghcr.io/streamjob/streamjob-taskmanager:0.1.0",
      parallelism,
      maxParallelism,
      job: { name: "kafka-sequence", args: ["--topic", input, "--output-topic", output] },
      kafka: { secretName: KAFKA_SECRET_NAME },
      checkpoint: { interval: "1s", storage: { bucket: "streamjob" } },
    },
  });

  // Four SIGKILLs of a random running TaskManager, 2–5 s apart, while records arrive: some land
  // mid-checkpoint, some between a checkpoint's completion and its publish.
  const random = seededRandom(Number(process.env.KAFKA_KILL_SEED ?? 20261201));
  const kills: string[] = [];
  for (let i = 0; i < 4; i++) {
    const running = await waitFor(
      "a running TaskManager",
      async () => {
        const pods = (await taskManagerPods(ns, name)).filter((pod) => pod.status?.phase === "Running");
        return pods.length === parallelism ? pods : undefined;
      },
      120_000,
    );
    await sleep(2_000 + random() * 3_000);
    const victim = running[Math.floor(random() * running.length)]!;
    try {
      process.kill(containerPid(victim), "SIGKILL");
      kills.push(victim.metadata!.name!);
    } catch {
      // Gone meanwhile (replaced by a restore): the next round picks again.
    }
  }
  expect(kills.length).toBeGreaterThan(0);
  await producing;

  const report = await waitFor(
    `${keys.length * rounds} records in ${output}`,
    async () => {
      const found = await verifyKafkaSequenceOutput(bootstrapServers, output);
      return found.records >= keys.length * rounds || found.problems.length > 0 ? found : undefined;
    },
    180_000,
    1_000,
  );
  expect(report.problems).toEqual([]);
  expect(report.records).toBe(keys.length * rounds);
  expect(Object.fromEntries(report.lastValues)).toEqual(Object.fromEntries(keys.map((key) => [key, rounds])));
  // Each kill cost a restore from the latest checkpoint.
  expect((await getStreamJob(ns, name)).status?.restarts ?? 0).toBeGreaterThan(0);
}, 420_000);

test("a Kafka Secret with credentials logs the TaskManagers in by SASL; a wrong password is refused, saying so in the status", async () => {
  const sasl = decodedSecretData(
    await core.readNamespacedSecret({ name: KAFKA_SASL_SECRET_NAME, namespace: "default" }),
  );
  const input = `sasl-in-${randomBytes(4).toString("hex")}`;
  await ensureTopic(bootstrapServers, input, 1);
  await produceNumbers({
    bootstrapServers,
    topic: input,
    keys: ["s"],
    from: 1,
    to: 10,
    partitionOf: () => 0,
  });
  const job = (name: string, secretName: string, output?: string) =>
    createStreamJob(ns, {
      apiVersion: "streamjob.dev/v1alpha1",
      kind: "StreamJob",
      metadata: { name },
      spec: {
        image: "ghcr.io/streamjob/streamjob-taskmanager:0.1.0",
        parallelism: 1,
        job: {
          name: "kafka-sequence",
          args: ["--topic", input, ...(output ? ["--output-topic", output] : [])],
        },
        kafka: { secretName },
        checkpoint: { interval: "1s", storage: { bucket: "streamjob" } },
      },
    });
  const secret = (name: string, data: Record<string, string>) =>
    core.createNamespacedSecret({ namespace: ns, body: { metadata: { name }, stringData: data } });
  await secret("kafka-sasl", sasl);
  await secret("kafka-wrong-password", { ...sasl, password: "not-the-password" });

  const output = `sasl-out-${randomBytes(4).toString("hex")}`;
  await ensureTopic(bootstrapServers, output, 1);
  await job("sasl-ok", "kafka-sasl", output);
  await job("sasl-refused", "kafka-wrong-password");

  const [pod] = await waitFor("the TaskManager pod", async () => {
    const pods = await taskManagerPods(ns, "sasl-ok");
    return pods.length === 1 ? pods : undefined;
  });
  const password = pod!.spec!.containers[0]!.env!.find((env) => env.name === "STREAMJOB_KAFKA_PASSWORD");
  expect(password?.valueFrom).toEqual({
    secretKeyRef: { name: "kafka-sasl", key: "password", optional: true },
  });
  const report = await waitFor(
    "10 records in the output, written through the SASL listener",
    async () => {
      const found = await verifyKafkaSequenceOutput(bootstrapServers, output);
      return found.records >= 10 ? found : undefined;
    },
    90_000,
    500,
  );
  expect(report.problems).toEqual([]);

  const ready = await waitFor(
    "the refused job's Ready condition naming the failure",
    async () => {
      const condition = (await getStreamJob(ns, "sasl-refused")).status?.conditions?.find(
        (c) => c.type === "Ready",
      );
      return condition?.reason === "Restarting" || condition?.reason === "RestartBackoff"
        ? condition
        : undefined;
    },
    90_000,
    500,
  );
  expect(ready.message).toMatch(/SASL|[Aa]uthenticat/);
  expect(ready.message).not.toContain("not-the-password");
  // Its restarts with backoff are done with: they only keep the operator busy for the next test.
  await kubectl("delete", "sj", "sasl-refused", "-n", ns, "--wait=false");
}, 240_000);

test("manifests/examples/kafka-orders.yaml, applied unmodified: every order counted once and every total right after a SIGKILL", async () => {
  const topics = ["orders", "orders-by-customer", "customer-totals"];
  for (const topic of topics) await ensureTopic(bootstrapServers, topic, 4);
  const rounds = 40;
  const perRound = 20;
  const producing = produceOrders({
    bootstrapServers,
    topic: "orders",
    regions: 4,
    customers: 10,
    perRound,
    rounds,
    pauseMs: 150,
    seed: 11,
  });
  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests/examples/kafka-orders.yaml"));

  // A customer-totals TaskManager killed once totals flow: its partitions' state comes back.
  await waitFor(
    "totals in customer-totals",
    async () => (await readCommittedTopic(bootstrapServers, "customer-totals")).length > 0,
    120_000,
    500,
  );
  const [victim] = (await taskManagerPods(ns, "customer-totals")).filter(
    (pod) => pod.status?.phase === "Running",
  );
  process.kill(containerPid(victim!), "SIGKILL");
  expect(await producing).toBe(rounds * perRound);

  await waitFor(
    `${rounds * perRound} totals`,
    async () => (await readCommittedTopic(bootstrapServers, "customer-totals")).length >= rounds * perRound,
    180_000,
    1_000,
  );
  const report = await verifyOrdersPipeline(bootstrapServers, "orders", "customer-totals");
  expect(report.problems).toEqual([]);
  expect(report.orders).toBe(rounds * perRound);
  // The kill cost a restore: the operator counted it (it may see the failure after the last total).
  await waitFor(
    "the restart after the SIGKILL",
    async () => ((await getStreamJob(ns, "customer-totals")).status?.restarts ?? 0) > 0,
    60_000,
  );
}, 300_000);
