// The local cluster's Kafka broker, reached the way TaskManagers reach it (through the Secret
// default/streamjob-kafka that the cluster's `up` writes), and numbered records written into a topic
// in transactions: what the `kafka-sequence` job checks.
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import type { CoreV1Api } from "@kubernetes/client-node";
import { KAFKA_SECRET_NAME, kafkaConnectionFromSecret } from "../../src/connectors/kafka/connection.js";
import { keyGroupForKey, taskIndexForKeyGroup } from "../../src/api/key-groups.js";
import {
  KafkaSource,
  kafkaPartitionKeyGroup,
  type KafkaSourceRecord,
} from "../../src/connectors/kafka/source.js";
import {
  verifyOrderTotals,
  type Order,
  type OrderTotalsReport,
} from "../../src/taskmanager/job/builtin/kafka-orders.js";
import { SequenceCheck, type SequenceOutputReport } from "../../src/taskmanager/job/builtin/sequence.js";
import type { SourceBatch } from "../../src/taskmanager/job/job-definition.js";
import type { LocalJob } from "./local-job.js";
import { seededRandom } from "./random.js";
import { waitFor } from "./wait.js";
import { decodedSecretData } from "./storage.js";

/** The brokers in Secret default/streamjob-kafka. */
export async function kafkaBootstrapServers(core: CoreV1Api): Promise<string[]> {
  const secret = await core.readNamespacedSecret({ name: KAFKA_SECRET_NAME, namespace: "default" });
  return kafkaConnectionFromSecret(decodedSecretData(secret)).bootstrapServers;
}

/** An idempotent, transactional producer of string records, its transactional id unique per topic. */
export function transactionalProducer(clientId: string, bootstrapServers: string[], topic: string) {
  return new Producer({
    clientId,
    bootstrapBrokers: bootstrapServers,
    idempotent: true,
    transactionalId: `${clientId}-${topic}`,
    // A new producer id: the client's default (producer 0, epoch 0) is fenced once the id is known.
    producerId: -1n,
    producerEpoch: -1,
    // Back-to-back transactions meet CONCURRENT_TRANSACTIONS for a few ms; the default retry waits 1 s.
    retries: 40,
    retryDelay: 50,
    serializers: stringSerializers,
  });
}

/** Creates the topic unless it exists. */
export async function ensureTopic(
  bootstrapServers: string[],
  topic: string,
  partitions: number,
): Promise<void> {
  const admin = new Admin({ clientId: "streamjob-topics", bootstrapBrokers: bootstrapServers });
  try {
    const existing = await admin.listTopics();
    if (!existing.includes(topic)) await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

export interface NumbersOptions {
  bootstrapServers: string[];
  topic: string;
  keys: readonly string[];
  /** Rounds `from`..`to`: round n writes `<key>:<n>` for every key, in one transaction. */
  from: number;
  to: number;
  /** The partition of the `index`-th key. */
  partitionOf(key: string, index: number): number;
  /** Pause after each round. */
  pauseMs?: number;
  onRound?(n: number): void;
}

export async function produceNumbers(options: NumbersOptions): Promise<void> {
  const { bootstrapServers, topic, keys, partitionOf } = options;
  const producer = transactionalProducer("streamjob-numbers", bootstrapServers, topic);
  try {
    for (let n = options.from; n <= options.to; n++) {
      const transaction = await producer.beginTransaction();
      await transaction.send({
        messages: keys.map((key, i) => ({
          topic,
          partition: partitionOf(key, i),
          key,
          value: `${key}:${n}`,
        })),
      });
      await transaction.commit();
      options.onRound?.(n);
      if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  } finally {
    await producer.close();
  }
}

export interface TopicRecord {
  partition: number;
  offset: number;
  key: string | null;
  value: string;
}

/** Each partition's last stable offset now, by partition id (`<topic>-<p>`): where reading ends. */
export async function partitionEnds(
  bootstrapServers: string[],
  topic: string,
): Promise<Record<string, number>> {
  const latest = await KafkaSource.open({ bootstrapServers, topic, startingPosition: { kind: "latest" } });
  try {
    return Object.fromEntries(
      await Promise.all(latest.partitions().map(async (p) => [p.id, await p.startOffset!()] as const)),
    );
  } finally {
    await latest.close();
  }
}

/**
 * Every record of `topic` a `read_committed` consumer sees now, partition by partition in offset
 * order: read up to each partition's last stable offset, so open transactions stay unseen.
 */
export async function readCommittedTopic(bootstrapServers: string[], topic: string): Promise<TopicRecord[]> {
  const ends = await partitionEnds(bootstrapServers, topic);
  const source = await KafkaSource.open({ bootstrapServers, topic, maxWaitMs: 10 });
  try {
    const records: TopicRecord[] = [];
    for (const [partition, reader] of source.partitions().entries()) {
      const end = ends[reader.id]!;
      let offset = await reader.startOffset!();
      while (offset < end) {
        const batch = (await reader.read(offset, 1000)) as SourceBatch<KafkaSourceRecord>;
        for (const record of batch.records) {
          if (record.offset >= end) break;
          records.push({
            partition,
            offset: record.offset,
            key: record.value.key?.toString("utf8") ?? null,
            value: record.value.value?.toString("utf8") ?? "",
          });
        }
        offset = batch.nextOffset ?? (batch.records.at(-1)?.offset ?? offset - 1) + 1;
      }
    }
    return records;
  } finally {
    await source.close();
  }
}

/**
 * The exactly-once check of `kafka-sequence` output in a topic: per partition in offset order, every
 * key's values 1, 2, 3, … (a key's records are all in the partition its key hashes to).
 */
export async function verifyKafkaSequenceOutput(
  bootstrapServers: string[],
  topic: string,
): Promise<SequenceOutputReport> {
  const check = new SequenceCheck();
  for (const record of await readCommittedTopic(bootstrapServers, topic)) {
    check.add(`${topic}-${record.partition}@${record.offset}`, record.value);
    if (record.key !== record.value.split(" ")[0]) {
      check.report.problems.push(
        `${topic}-${record.partition}@${record.offset}: key ${record.key} for ${record.value}`,
      );
    }
  }
  return check.report;
}

/**
 * A partition for the `index`-th record of `key` that the task owning the key's key group reads
 * (cycling over that task's partitions), as a topic keyed the way a `kafka-sequence` job keeps
 * state must be.
 */
export function partitionReadByKeyOwner(
  key: string,
  index: number,
  partitions: number,
  parallelism: number,
  maxParallelism: number,
): number {
  const owner = taskIndexForKeyGroup(maxParallelism, parallelism, keyGroupForKey(key, maxParallelism));
  const read = Array.from({ length: partitions }, (_, p) => p).filter(
    (p) =>
      taskIndexForKeyGroup(
        maxParallelism,
        parallelism,
        kafkaPartitionKeyGroup(p, partitions, maxParallelism),
      ) === owner,
  );
  return read[index % read.length]!;
}

export interface OrdersOptions {
  bootstrapServers: string[];
  topic: string;
  /** Regions `region-0`…: region i's orders go to partition i mod the topic's partitions. */
  regions: number;
  /** Customers `customer-0`…, picked at random for each order. */
  customers: number;
  /** Orders per round, one transaction per round. */
  perRound: number;
  rounds: number;
  pauseMs?: number;
  seed: number;
  /** Orders already in the topic: their seqs and count go on, so the jobs see no duplicate. */
  existing?: readonly { value: string }[];
  onRound?(n: number): void;
}

/**
 * Writes orders keyed by region, as `kafka-orders` reads them: `seq` counts a customer's orders in a
 * region from 1, `amount` is 1–10000 cents. Returns how many were written.
 */
export async function produceOrders(options: OrdersOptions): Promise<number> {
  const { bootstrapServers, topic } = options;
  const random = seededRandom(options.seed);
  const seqs = new Map<string, number>();
  for (const { value } of options.existing ?? []) {
    const order = JSON.parse(value) as Order;
    const key = `${order.customer} in ${order.region}`;
    seqs.set(key, Math.max(seqs.get(key) ?? 0, order.seq));
  }
  const producer = transactionalProducer("streamjob-orders", bootstrapServers, topic);
  const before = options.existing?.length ?? 0;
  let written = 0;
  try {
    for (let n = 1; n <= options.rounds; n++) {
      const messages = Array.from({ length: options.perRound }, () => {
        const region = Math.floor(random() * options.regions);
        const customer = `customer-${Math.floor(random() * options.customers)}`;
        const key = `${customer} in region-${region}`;
        const seq = (seqs.get(key) ?? 0) + 1;
        seqs.set(key, seq);
        const order: Order = {
          orderId: `order-${before + ++written}`,
          region: `region-${region}`,
          customer,
          amount: 1 + Math.floor(random() * 10_000),
          seq,
        };
        return { topic, partition: region, key: order.region, value: JSON.stringify(order) };
      });
      const transaction = await producer.beginTransaction();
      await transaction.send({ messages });
      await transaction.commit();
      options.onRound?.(n);
      if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  } finally {
    await producer.close();
  }
  return written;
}

/** The `customer-totals` output checked against the orders topic (verifyOrderTotals). */
export async function verifyOrdersPipeline(
  bootstrapServers: string[],
  ordersTopic: string,
  totalsTopic: string,
): Promise<OrderTotalsReport> {
  const orders = await readCommittedTopic(bootstrapServers, ordersTopic);
  const totals = await readCommittedTopic(bootstrapServers, totalsTopic);
  return verifyOrderTotals(
    orders,
    totals.map((record) => ({
      value: record.value,
      where: `${totalsTopic}-${record.partition}@${record.offset}`,
    })),
  );
}

/**
 * Once the input is complete: stops the schedule and triggers checkpoints until one has read every
 * input partition to its end; its notify-complete publishes the last output.
 */
export async function checkpointThroughEnd(
  job: LocalJob,
  bootstrapServers: string[],
  input: string,
): Promise<void> {
  const ends = await partitionEnds(bootstrapServers, input);
  await job.coordinator!.stop();
  await waitFor(
    "a checkpoint at the end of every input partition",
    async () => {
      const outcome = await job.coordinator!.triggerCheckpoint();
      if (outcome.state !== "completed") return false;
      const offsets = (await job.manifest(outcome.checkpoint.checkpointId)).sourceOffsets;
      return Object.entries(ends).every(([id, end]) => offsets[id] === end);
    },
    60_000,
  );
}
