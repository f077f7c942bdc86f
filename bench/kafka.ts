// `npm run bench:kafka`: Kafka in and out, against the local cluster's broker (started if needed).
//
// 1. Throughput. The same records (`key-<i>:<n>`, 16 keys, 4 partitions) are
//    - produced raw: the client library's idempotent producer, sends of 2,000 records, and the same
//      in transactions of 2,000 (what the sink does); and consumed raw: KafkaSource reading every
//      partition from the start, as the runtime reads (the physical limits of this broker here);
//    - run through `kafka-sequence` (source → keyed state → exactly-once sink), 1 TaskManager,
//      checkpoints every second, from a topic already full, until the checkpoint that read all
//      of it has published its output. The output is then checked: every key 1..n once.
// 2. Latency: records produced at 320/s for 12 s, each visible to a read_committed consumer of the
//    output topic how long after its producer committed it, at checkpoint intervals 250 ms, 1 s, 2 s.
//
// Prints two tables; writes bench/results/kafka.csv and kafka-latency.csv.
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { kafkaSinkWriterId } from "../src/connectors/kafka/sink.js";
import { KafkaSource, type KafkaSourceRecord } from "../src/connectors/kafka/source.js";
import { clusterDir } from "../src/devcluster/cluster.js";
import type { SourceBatch } from "../src/taskmanager/job/job-definition.js";
import {
  ensureTopic,
  kafkaBootstrapServers,
  partitionEnds,
  transactionalProducer,
  verifyKafkaSequenceOutput,
} from "../test/support/kafka.js";
import { LocalCluster, repoRoot } from "../test/support/local-cluster.js";
import { LocalJob } from "../test/support/local-job.js";
import { sleep, waitFor } from "../test/support/wait.js";
import { percentile } from "./measure.js";
import { benchStorage } from "./local-storage.js";

const RECORDS = Number(process.env.BENCH_KAFKA_RECORDS ?? 200_000);
const KEYS = 16;
const PARTITIONS = 4;
const SEND = 2_000;
const INTERVALS_MS = [250, 1_000, 2_000];

const run = randomBytes(3).toString("hex");
const keys = Array.from({ length: KEYS }, (_, i) => `key-${i}`);
/** Record i: key i mod KEYS, its (i div KEYS + 1)-th number, in the key's partition. */
const message = (topic: string, i: number) => {
  const k = i % KEYS;
  return { topic, key: keys[k]!, value: `${keys[k]}:${Math.floor(i / KEYS) + 1}`, partition: k % PARTITIONS };
};
const bytesOf = (count: number) => {
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const m = message("", i);
    bytes += m.key.length + m.value.length;
  }
  return bytes;
};

interface Rate {
  what: string;
  seconds: number;
  recordsPerSecond: number;
  mbPerSecond: number;
}

function rate(what: string, ms: number, records: number, bytes: number): Rate {
  return {
    what,
    seconds: ms / 1000,
    recordsPerSecond: records / (ms / 1000),
    mbPerSecond: bytes / 1e6 / (ms / 1000),
  };
}

async function produceRaw(
  bootstrapServers: string[],
  topic: string,
  transactional: boolean,
): Promise<number> {
  const producer = transactional
    ? transactionalProducer(`bench-${run}`, bootstrapServers, topic)
    : new Producer({
        clientId: `bench-${run}`,
        bootstrapBrokers: bootstrapServers,
        idempotent: true,
        serializers: stringSerializers,
      });
  const started = performance.now();
  try {
    for (let from = 0; from < RECORDS; from += SEND) {
      const messages = Array.from({ length: Math.min(SEND, RECORDS - from) }, (_, j) =>
        message(topic, from + j),
      );
      if (transactional) {
        const transaction = await producer.beginTransaction();
        await transaction.send({ messages });
        await transaction.commit();
      } else {
        await producer.send({ messages });
      }
    }
  } finally {
    await producer.close();
  }
  return performance.now() - started;
}

/** Reads every partition from its start to its end as the runtime does; returns ms and records. */
async function consumeRaw(
  bootstrapServers: string[],
  topic: string,
): Promise<{ ms: number; records: number }> {
  const endOffsets = Object.values(await partitionEnds(bootstrapServers, topic));
  const source = await KafkaSource.open({ bootstrapServers, topic, maxWaitMs: 10 });
  const started = performance.now();
  let records = 0;
  const partitions = source.partitions();
  const offsets = await Promise.all(partitions.map((p) => p.startOffset!()));
  let open = true;
  while (open) {
    open = false;
    for (const [i, partition] of partitions.entries()) {
      if (offsets[i]! >= endOffsets[i]!) continue;
      open = true;
      const batch = (await partition.read(offsets[i]!, 500)) as SourceBatch<KafkaSourceRecord>;
      records += batch.records.length;
      offsets[i] = batch.nextOffset ?? (batch.records.at(-1)?.offset ?? offsets[i]! - 1) + 1;
    }
  }
  const ms = performance.now() - started;
  await source.close();
  return { ms, records };
}

function kafkaSequence(
  bootstrapServers: string[],
  storage: Awaited<ReturnType<typeof benchStorage>>,
  input: string,
  output: string,
  intervalMs: number,
) {
  const program = {
    name: "kafka-sequence",
    args: ["--topic", input, "--output-topic", output, "--bootstrap-servers", bootstrapServers.join(",")],
  };
  const job = new LocalJob({
    program,
    parallelism: 1,
    maxParallelism: 128,
    ...storage,
    policy: { intervalMs, timeoutMs: 30_000 },
    retained: 2,
    logDir: path.join(clusterDir(), "logs", "bench"),
  });
  return { job, program };
}

async function pipeline(
  bootstrapServers: string[],
  storage: Awaited<ReturnType<typeof benchStorage>>,
  input: string,
) {
  const output = `bench-out-${run}`;
  await ensureTopic(bootstrapServers, output, PARTITIONS);
  const ends = await partitionEnds(bootstrapServers, input);
  const { job, program } = kafkaSequence(bootstrapServers, storage, input, output, 1_000);
  const started = performance.now();
  await job.deploy({ epoch: 1, parallelism: 1, program });
  job.coordinator!.start();
  // Done when the checkpoint that read everything has been notified (its output published).
  const done = await waitFor(
    "a checkpoint that read the whole input",
    async () => {
      const last = job.completed.at(-1);
      if (last === undefined) return false;
      const offsets = (await job.manifest(last.checkpointId)).sourceOffsets;
      return Object.entries(ends).every(([id, end]) => offsets[id] === end) && last;
    },
    600_000,
    50,
  );
  // Published once the sink's idempotence marker (docs/kafka.md) has reached that checkpoint.
  const admin = new Admin({ clientId: `bench-${run}`, bootstrapBrokers: bootstrapServers });
  const groupId = kafkaSinkWriterId(job.job, 0);
  await waitFor(
    "the output published",
    async () => {
      const [group] = await admin.listConsumerGroupOffsets({
        groups: [{ groupId, topics: [{ name: output, partitionIndexes: [0] }] }],
        requireStable: true,
      });
      return Number(group?.topics[0]?.partitions[0]?.committedOffset ?? -1) >= done.checkpointId;
    },
    60_000,
    20,
  );
  await admin.close();
  const ms = performance.now() - started;
  await job.stop();
  const check = await verifyKafkaSequenceOutput(bootstrapServers, output);
  if (check.problems.length > 0 || check.records !== RECORDS) {
    throw new Error(`output not exact: ${check.records} records, ${check.problems.slice(0, 3).join("; ")}`);
  }
  return { ms, checkpointId: done.checkpointId };
}

/** Produce → visible to read_committed in the output, per record, at one checkpoint interval. */
async function latency(
  bootstrapServers: string[],
  storage: Awaited<ReturnType<typeof benchStorage>>,
  intervalMs: number,
): Promise<number[]> {
  const input = `bench-lat-in-${intervalMs}-${run}`;
  const output = `bench-lat-out-${intervalMs}-${run}`;
  await ensureTopic(bootstrapServers, input, PARTITIONS);
  await ensureTopic(bootstrapServers, output, PARTITIONS);
  const { job, program } = kafkaSequence(bootstrapServers, storage, input, output, intervalMs);
  await job.deploy({ epoch: 1, parallelism: 1, program });
  job.coordinator!.start();
  const committedAt = new Map<string, number>();
  const visibleAt = new Map<string, number>();
  const rounds = 240; // 20 rounds of 16 records a second, 12 s
  let producing = true;
  let lastCommit = performance.now();
  const reader = (async () => {
    const source = await KafkaSource.open({ bootstrapServers, topic: output, maxWaitMs: 5 });
    const partitions = source.partitions();
    const offsets = await Promise.all(partitions.map((p) => p.startOffset!()));
    while (producing || visibleAt.size < committedAt.size) {
      for (const [i, partition] of partitions.entries()) {
        const batch = (await partition.read(offsets[i]!, 1000)) as SourceBatch<KafkaSourceRecord>;
        const now = performance.now();
        for (const record of batch.records) visibleAt.set(record.value.value!.toString("utf8"), now);
        offsets[i] = batch.nextOffset ?? (batch.records.at(-1)?.offset ?? offsets[i]! - 1) + 1;
      }
      if (!producing && performance.now() > lastCommit + 30_000) break;
    }
    await source.close();
  })();
  const producer = transactionalProducer(`bench-lat-${run}`, bootstrapServers, input);
  for (let n = 1; n <= rounds; n++) {
    const transaction = await producer.beginTransaction();
    await transaction.send({
      messages: keys.map((key, k) => ({
        topic: input,
        key,
        value: `${key}:${n}`,
        partition: k % PARTITIONS,
      })),
    });
    await transaction.commit();
    lastCommit = performance.now();
    for (const key of keys) committedAt.set(`${key} ${n}`, lastCommit);
    await sleep(50);
  }
  await producer.close();
  producing = false;
  await reader;
  await job.stop();
  return [...committedAt].map(([record, at]) => (visibleAt.get(record) ?? Number.NaN) - at);
}

async function main(): Promise<void> {
  const storage = await benchStorage();
  const bootstrapServers = await kafkaBootstrapServers(new LocalCluster(clusterDir()).clients().core);
  const bytes = bytesOf(RECORDS);
  const rawTopic = `bench-raw-${run}`;
  const txnTopic = `bench-txn-${run}`;
  await ensureTopic(bootstrapServers, rawTopic, PARTITIONS);
  await ensureTopic(bootstrapServers, txnTopic, PARTITIONS);

  const rates: Rate[] = [];
  rates.push(
    rate("raw produce, idempotent", await produceRaw(bootstrapServers, rawTopic, false), RECORDS, bytes),
  );
  rates.push(
    rate("raw produce, transactions", await produceRaw(bootstrapServers, txnTopic, true), RECORDS, bytes),
  );
  const consumed = await consumeRaw(bootstrapServers, txnTopic);
  if (consumed.records !== RECORDS) throw new Error(`raw consume read ${consumed.records} of ${RECORDS}`);
  rates.push(rate("raw consume, read_committed", consumed.ms, RECORDS, bytes));
  const through = await pipeline(bootstrapServers, storage, txnTopic);
  rates.push(rate("kafka-sequence, exactly once", through.ms, RECORDS, bytes));
  const limit = Math.min(...rates.slice(0, 3).map((r) => r.recordsPerSecond));

  console.log(
    `\n${RECORDS} records of ${(bytes / RECORDS).toFixed(1)} bytes (key + value), ${PARTITIONS} partitions`,
  );
  console.log("what                               seconds  records/s     MB/s");
  for (const r of rates) {
    console.log(
      `${r.what.padEnd(34)} ${r.seconds.toFixed(2).padStart(7)} ${Math.round(r.recordsPerSecond).toString().padStart(10)} ${r.mbPerSecond.toFixed(2).padStart(8)}`,
    );
  }
  const pipelineRate = rates.at(-1)!.recordsPerSecond;
  console.log(
    `pipeline / slowest raw leg: ${((100 * pipelineRate) / limit).toFixed(0)}% (the job's output became visible with checkpoint ${through.checkpointId})`,
  );

  const latencies: { intervalMs: number; p50: number; p99: number; max: number; lost: number }[] = [];
  for (const intervalMs of INTERVALS_MS) {
    const samples = await latency(bootstrapServers, storage, intervalMs);
    const seen = samples.filter((ms) => Number.isFinite(ms));
    latencies.push({
      intervalMs,
      p50: percentile(seen, 50),
      p99: percentile(seen, 99),
      max: Math.max(...seen),
      lost: samples.length - seen.length,
    });
  }
  console.log("\ncheckpoint interval  p50 ms  p99 ms  max ms  not visible");
  for (const l of latencies) {
    console.log(
      `${String(l.intervalMs).padStart(16)} ms ${l.p50.toFixed(0).padStart(7)} ${l.p99.toFixed(0).padStart(7)} ${l.max.toFixed(0).padStart(7)} ${String(l.lost).padStart(12)}`,
    );
  }

  const results = path.join(repoRoot, "bench", "results");
  mkdirSync(results, { recursive: true });
  writeFileSync(
    path.join(results, "kafka.csv"),
    [
      "what,seconds,records_per_s,mb_per_s",
      ...rates.map(
        (r) =>
          `"${r.what}",${r.seconds.toFixed(3)},${Math.round(r.recordsPerSecond)},${r.mbPerSecond.toFixed(3)}`,
      ),
    ].join("\n") + "\n",
  );
  writeFileSync(
    path.join(results, "kafka-latency.csv"),
    [
      "checkpoint_interval_ms,p50_ms,p99_ms,max_ms,not_visible",
      ...latencies.map(
        (l) => `${l.intervalMs},${l.p50.toFixed(0)},${l.p99.toFixed(0)},${l.max.toFixed(0)},${l.lost}`,
      ),
    ].join("\n") + "\n",
  );
}

await main();
process.exit(0);
