// The local cluster's Kafka broker, through the Secret jobs use: transactions commit and abort for
// real (read_committed hides the aborted ones), and `cluster:down` stops the JVM.
import {
  Admin,
  Consumer,
  FetchIsolationLevels,
  MessagesStreamModes,
  stringDeserializers,
} from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { readState } from "../../src/devcluster/cluster.js";
import { LocalCluster } from "../support/local-cluster.js";
import {
  clients,
  createNamespace,
  kubectl,
  processAlive,
  repoRoot,
  testClusterDir,
} from "./support/cluster.js";
import { kafkaBootstrapServers, transactionalProducer } from "../support/kafka.js";

const { core } = clients();
const namespaces: string[] = [];

afterAll(async () => {
  await Promise.all(namespaces.map((name) => core.deleteNamespace({ name }).catch(() => undefined)));
});

/** Every record of `topic` from the start, as "value@partition:offset", once `done` says enough. */
async function readTopic(
  bootstrapServers: string[],
  topic: string,
  isolationLevel: number,
  done: (values: string[]) => boolean,
): Promise<string[]> {
  const consumer = new Consumer({
    clientId: "kafka-broker-test",
    groupId: `kafka-broker-test-${randomBytes(4).toString("hex")}`,
    bootstrapBrokers: bootstrapServers,
    deserializers: stringDeserializers,
    isolationLevel,
    maxWaitTime: 500,
  });
  try {
    const stream = await consumer.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST });
    const seen: string[] = [];
    const timer = setTimeout(() => void stream.close(), 30_000);
    try {
      for await (const message of stream) {
        seen.push(`${message.value}@${message.partition}:${message.offset}`);
        if (done(seen.map((s) => s.split("@")[0]!))) break;
      }
    } finally {
      clearTimeout(timer);
      await stream.close();
    }
    return seen;
  } finally {
    await consumer.close();
  }
}

test("the Secret names the broker, and read_committed consumers see committed transactions and never aborted ones", async () => {
  const bootstrapServers = await kafkaBootstrapServers(core);
  expect(bootstrapServers).toEqual([readState(testClusterDir)!.kafkaBootstrapServers]);
  expect(bootstrapServers[0]).toMatch(/^127\.0\.0\.1:\d+$/);

  const topic = `transactions-${randomBytes(4).toString("hex")}`;
  const admin = new Admin({ clientId: "kafka-broker-test", bootstrapBrokers: bootstrapServers });
  const producer = transactionalProducer("kafka-broker-test", bootstrapServers, topic);
  try {
    await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
    // Each batch writes to both partitions, so the last committed one follows the aborted one in each.
    const batch = (name: string) =>
      [0, 1].flatMap((partition) =>
        [1, 2].map((n) => ({ topic, partition, key: `k${partition}`, value: `${name}-p${partition}-${n}` })),
      );
    for (const [name, outcome] of [
      ["first", "commit"],
      ["aborted", "abort"],
      ["last", "commit"],
    ] as const) {
      const transaction = await producer.beginTransaction();
      await transaction.send({ messages: batch(name) });
      await (outcome === "commit" ? transaction.commit() : transaction.abort());
    }

    // Every aborted record precedes a "last" one in its partition: once all four "last" records
    // are read, any aborted record a read_committed consumer would wrongly see has been read too.
    const committed = (
      await readTopic(
        bootstrapServers,
        topic,
        FetchIsolationLevels.READ_COMMITTED,
        (values) => values.filter((v) => v.startsWith("last")).length === 4,
      )
    ).map((s) => s.split("@")[0]);
    expect(committed.sort()).toEqual([...batch("first"), ...batch("last")].map((m) => m.value).sort());

    // The aborted records are in the log: a read_uncommitted consumer sees them.
    const everything = await readTopic(
      bootstrapServers,
      topic,
      FetchIsolationLevels.READ_UNCOMMITTED,
      (v) => v.length === 12,
    );
    expect(everything.filter((s) => s.startsWith("aborted"))).toHaveLength(4);
    // Transaction markers take offsets: after 2 records and a commit marker, the aborted batch starts at 3.
    expect(everything).toContain("aborted-p0-1@0:3");
  } finally {
    await producer.close();
    await admin.close();
  }
});

test("`cluster:down` leaves no JVM of the cluster behind", async () => {
  const cluster = new LocalCluster(path.join(repoRoot, ".devcluster", `kafka-down-${process.pid}`));
  cluster.cli("up");
  let kafkaPid: number | undefined;
  try {
    const state = readState(cluster.dir)!;
    kafkaPid = state.processes.find((p) => p.name === "kafka")?.pid;
    expect(kafkaPid).toBeDefined();
    const commandLine = readFileSync(`/proc/${kafkaPid}/cmdline`, "utf8").split("\0");
    expect(commandLine[0]).toMatch(/java$/);
    expect(commandLine).toContain("kafka.Kafka");
  } finally {
    cluster.cli("down");
  }
  expect(processAlive(kafkaPid!)).toBe(false);
  // Any JVM started from this cluster's folder (the broker, a storage format) names it on its command line.
  expect(javaProcessesNaming(cluster.dir)).toEqual([]);
  rmSync(cluster.dir, { recursive: true, force: true });
}, 300_000);

function javaProcessesNaming(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // exited meanwhile
    }
    if (/(^|\/)java$/.test(args[0] ?? "") && args.some((arg) => arg.includes(dir)))
      found.push(`${pid}: ${args.join(" ")}`);
  }
  return found;
}

test("manifests/kafka.yaml is accepted by the API server, and its pod where Pod Security 'restricted' is enforced", async () => {
  const manifest = path.join(repoRoot, "manifests", "kafka.yaml");
  const applied = await kubectl("apply", "--dry-run=server", "-f", manifest);
  // The local cluster already has the Secret: applying it would update it.
  expect(applied).toContain("secret/streamjob-kafka configured (server dry run)");
  for (const object of ["service/kafka", "deployment.apps/kafka"])
    expect(applied).toContain(`${object} created (server dry run)`);

  const ns = await createNamespace(core, "kafka-restricted", {
    "pod-security.kubernetes.io/enforce": "restricted",
  });
  namespaces.push(ns);
  const deployment = parseAllDocuments(readFileSync(manifest, "utf8"))
    .map((doc) => doc.toJS() as { kind: string; spec: { template: { spec: object } } })
    .find((object) => object.kind === "Deployment")!;
  const scratch = mkdtempSync(path.join(tmpdir(), "kafka-manifest-"));
  try {
    const pod = (spec: object) => {
      const file = path.join(scratch, "pod.json");
      writeFileSync(
        file,
        JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "kafka" }, spec }),
      );
      return kubectl("create", "--dry-run=server", "-n", ns, "-f", file);
    };
    const podSpec = deployment.spec.template.spec as { securityContext: { seccompProfile?: object } };
    expect(await pod(podSpec)).toContain("pod/kafka created (server dry run)");
    // The check is real: the same pod without its seccomp profile is refused.
    const { seccompProfile: _, ...unconfined } = podSpec.securityContext;
    await expect(pod({ ...podSpec, securityContext: unconfined })).rejects.toThrow(
      /violates PodSecurity "restricted:latest"/,
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
