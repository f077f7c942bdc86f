// The Kafka source against the local cluster's broker: committed records exactly once and in order,
// aborted ones never (also when a fetch ends before the abort marker), reads from any offset,
// starting positions, and the reset policy when retention moved the log start past a checkpoint.
import { Admin } from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  KafkaOffsetOutOfRangeError,
  KafkaSource,
  type KafkaSourceOptions,
  type KafkaSourceRecord,
} from "../../src/connectors/kafka/source.js";
import type { SourceBatch, SourcePartition } from "../../src/taskmanager/job/job-definition.js";
import { kafkaBootstrapServers, transactionalProducer } from "../support/kafka.js";
import { clients } from "./support/cluster.js";

const PARTITIONS = 3;
const topic = `source-${randomBytes(4).toString("hex")}`;
let bootstrapServers: string[];
const sources: KafkaSource[] = [];

async function openSource(options: Partial<KafkaSourceOptions> = {}): Promise<KafkaSource> {
  const source = await KafkaSource.open({ bootstrapServers, topic, maxWaitMs: 20, ...options });
  sources.push(source);
  return source;
}

interface Read {
  offset: number;
  value: string;
  timestamp: number;
}

/** Reads `partition` from `from` to `end` the way the runtime does: each read at the next offset. */
async function readUpTo(
  partition: SourcePartition<KafkaSourceRecord>,
  from: number,
  end: number,
  maxRecords = 500,
): Promise<Read[]> {
  const records: Read[] = [];
  let offset = from;
  while (offset < end) {
    const batch = (await partition.read(offset, maxRecords)) as SourceBatch<KafkaSourceRecord>;
    for (const record of batch.records) {
      records.push({
        offset: record.offset,
        value: String(record.value.value),
        timestamp: record.value.timestamp,
      });
    }
    offset = batch.nextOffset ?? (batch.records.at(-1)?.offset ?? offset - 1) + 1;
  }
  expect(offset).toBe(end);
  return records;
}

// Per partition p: committed k<p>:1..5, an aborted transaction of three records, committed k<p>:6..10.
const committed = (p: number) => Array.from({ length: 10 }, (_, i) => `k${p}:${i + 1}`);
let logEnd: number[];

beforeAll(async () => {
  bootstrapServers = await kafkaBootstrapServers(clients().core);
  const admin = new Admin({ clientId: "kafka-source-test", bootstrapBrokers: bootstrapServers });
  const producer = transactionalProducer("kafka-source-test", bootstrapServers, topic);
  try {
    await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
    const messages = (values: (p: number) => string[]) =>
      Array.from({ length: PARTITIONS }, (_, partition) =>
        values(partition).map((value) => ({ topic, partition, key: `k${partition}`, value })),
      ).flat();
    for (const [values, outcome] of [
      [(p: number) => committed(p).slice(0, 5), "commit"],
      [(p: number) => [1, 2, 3].map((n) => `aborted-k${p}:${n}`), "abort"],
      [(p: number) => committed(p).slice(5), "commit"],
    ] as const) {
      const transaction = await producer.beginTransaction();
      await transaction.send({ messages: messages(values) });
      await (outcome === "commit" ? transaction.commit() : transaction.abort());
      await sleep(5); // distinct timestamps per transaction, for the timestamp start
    }
  } finally {
    await producer.close();
    await admin.close();
  }
  const latest = await openSource({ startingPosition: { kind: "latest" } });
  logEnd = await Promise.all(latest.partitions().map((partition) => partition.startOffset!()));
});

afterAll(async () => {
  await Promise.all(sources.map((source) => source.close()));
});

test("every committed record exactly once and in order, no aborted one, with the offsets' gaps", async () => {
  const source = await openSource();
  const partitions = source.partitions();
  expect(partitions.map((partition) => partition.id)).toEqual([0, 1, 2].map((p) => `${topic}-${p}`));
  // 5 records + commit marker, 3 aborted + abort marker, 5 records + commit marker.
  expect(logEnd).toEqual([16, 16, 16]);
  for (const [p, partition] of partitions.entries()) {
    expect(await partition.startOffset!()).toBe(0);
    const records = await readUpTo(partition, 0, logEnd[p]!);
    expect(records.map((record) => record.value)).toEqual(committed(p));
    expect(records.map((record) => record.offset)).toEqual([0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
    // A few records per read: the runtime's next offset after each one skips the gap the same way.
    expect(await readUpTo(partition, 0, logEnd[p]!, 3)).toEqual(records);
  }
});

test("a fetch that ends before the abort marker still hides the aborted records", async () => {
  // One batch per fetch: the aborted batch arrives alone, its abort marker in the next response.
  const source = await openSource({ partitionMaxBytes: 1 });
  const [partition] = source.partitions();
  const records = await readUpTo(partition!, 0, logEnd[0]!);
  expect(records.map((record) => record.value)).toEqual(committed(0));
});

test("reading from a mid offset, also one inside the gap, continues with the next committed record", async () => {
  const source = await openSource();
  const partition = source.partitions()[1]!;
  const fromSecond = await readUpTo(partition, 1, logEnd[1]!);
  expect(fromSecond.map((record) => record.value)).toEqual(committed(1).slice(1));
  for (const insideGap of [5, 6, 9]) {
    const records = await readUpTo(partition, insideGap, logEnd[1]!);
    expect(records.map((record) => record.value)).toEqual(committed(1).slice(5));
  }
});

test("starting positions: earliest, latest, and the first record at or after a timestamp", async () => {
  const all = await readUpTo((await openSource()).partitions()[2]!, 0, logEnd[2]!);
  const sixth = all[5]!;
  const [earliest, latest, fromTimestamp, future] = await Promise.all([
    openSource({ startingPosition: { kind: "earliest" } }),
    openSource({ startingPosition: { kind: "latest" } }),
    openSource({ startingPosition: { kind: "timestamp", timestampMs: sixth.timestamp } }),
    openSource({ startingPosition: { kind: "timestamp", timestampMs: Date.now() + 3_600_000 } }),
  ]);
  expect(await earliest.partitions()[2]!.startOffset!()).toBe(0);
  expect(await latest.partitions()[2]!.startOffset!()).toBe(logEnd[2]);
  const start = await fromTimestamp.partitions()[2]!.startOffset!();
  const records = await readUpTo(fromTimestamp.partitions()[2]!, start, logEnd[2]!);
  expect(records.map((record) => record.value)).toEqual(committed(2).slice(5));
  expect(await future.partitions()[2]!.startOffset!()).toBe(logEnd[2]);
});

test("a checkpointed offset below the log start fails naming topic, partition, offset and log start, unless a reset policy says where to go", async () => {
  const admin = new Admin({ clientId: "kafka-source-test", bootstrapBrokers: bootstrapServers });
  try {
    // Retention, made immediate: the log of partition 0 now starts at k0:7 (offset 11).
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 11n }] }] });
  } finally {
    await admin.close();
  }
  const failing = (await openSource()).partitions()[0]!;
  const read = failing.read(3, 100);
  await expect(read).rejects.toThrow(KafkaOffsetOutOfRangeError);
  await expect(read).rejects.toThrow(
    `Kafka topic ${topic} partition 0: offset 3 no longer exists, the log starts at 11 (retention or deleteRecords removed records the checkpoint had not read); offsetReset is "fail": set it to "earliest" or "latest" to skip them`,
  );

  const earliest = (await openSource({ offsetReset: "earliest" })).partitions()[0]!;
  expect(await earliest.read(3, 100)).toEqual({ records: [], nextOffset: 11 });
  expect((await readUpTo(earliest, 3, logEnd[0]!)).map((record) => record.value)).toEqual(
    committed(0).slice(6),
  );
  const latest = (await openSource({ offsetReset: "latest" })).partitions()[0]!;
  expect(await latest.read(3, 100)).toEqual({ records: [], nextOffset: logEnd[0] });
  // An offset past the log end is never reset: that would repeat records.
  await expect(latest.read(logEnd[0]! + 5, 100)).rejects.toThrow(
    `Kafka topic ${topic} partition 0: offset ${logEnd[0]! + 5} is beyond the log end ${logEnd[0]} (log start 11)`,
  );
});

test("a topic that does not exist, or is deleted while read, is refused naming it", async () => {
  await expect(KafkaSource.open({ bootstrapServers, topic: `${topic}-missing` })).rejects.toThrow(
    `Kafka topic ${topic}-missing: cannot read its partitions`,
  );
  const deleted = `${topic}-deleted`;
  const admin = new Admin({ clientId: "kafka-source-test", bootstrapBrokers: bootstrapServers });
  try {
    await admin.createTopics({ topics: [deleted], partitions: 1, replicas: 1 });
    const [partition] = (await openSource({ topic: deleted })).partitions();
    expect(await partition!.read(0, 10)).toEqual({ records: [], nextOffset: 0 });
    await admin.deleteTopics({ topics: [deleted] });
    await expect(partition!.read(0, 10)).rejects.toThrow(
      `Kafka topic ${deleted}: cannot read its partitions`,
    );
  } finally {
    await admin.close();
  }
});

test("partitions added to the topic fail the read so the job restarts with them; after a restore they start at their beginning", async () => {
  const growing = `${topic}-growing`;
  const admin = new Admin({ clientId: "kafka-source-test", bootstrapBrokers: bootstrapServers });
  const producer = transactionalProducer("kafka-source-test", bootstrapServers, growing);
  try {
    await admin.createTopics({ topics: [growing], partitions: 1, replicas: 1 });
    const [only] = (await openSource({ topic: growing, partitionDiscoveryMs: 0 })).partitions();
    expect(await only!.read(0, 10)).toEqual({ records: [], nextOffset: 0 });
    await admin.createPartitions({ topics: [{ name: growing, count: 2 }] });
    const transaction = await producer.beginTransaction();
    await transaction.send({ messages: [{ topic: growing, partition: 1, key: "k", value: "first" }] });
    await transaction.commit();
    await expect(only!.read(0, 10)).rejects.toThrow(
      `Kafka topic ${growing} now has 2 partitions, the job reads 1: restarting from the latest checkpoint`,
    );
    // The restarted job: a new partition starts at its first record even when new jobs start at the end.
    const added = (
      await openSource({ topic: growing, startingPosition: { kind: "latest" } })
    ).partitions()[1]!;
    expect(await added.startOffset!(true)).toBe(0);
    expect(await added.startOffset!(false)).toBe(2); // after the record and its commit marker
  } finally {
    await producer.close();
    await admin.close();
  }
});
