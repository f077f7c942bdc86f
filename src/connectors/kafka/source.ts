// A Kafka topic's partitions as source partitions of a job (SourcePartition): each reads from the
// offset the runtime gives it, which is the checkpointed one after a restore. No consumer group
// decides where a job resumes: partitions are fetched explicitly; completed checkpoints' offsets go
// to a consumer group (reportToGroup) only for lag tools.
//
// Isolation is read_committed, and aborted transactions are filtered here, the way the Java client
// does it (below): the client library's own filter keeps an aborted batch whenever a fetch response
// ends before the transaction's abort marker. Offsets skip the markers and the aborted records, so
// reads return records with their offsets (SourceBatch).
import {
  Admin,
  Consumer,
  FetchIsolationLevels,
  IS_CONTROL,
  IS_TRANSACTIONAL,
  ListOffsetTimestamps,
  type fetchV17,
} from "@platformatic/kafka";
import type { SourceBatch, SourcePartition, SourceRecord } from "../../taskmanager/job/job-definition.js";
import { describeKafkaError, kafkaClientOptions, type KafkaClientConnection } from "./connection.js";

/** Where a partition without a checkpointed offset starts (a new job, a new partition). */
export type KafkaStartingPosition =
  | { kind: "earliest" }
  | { kind: "latest" }
  /** The first record with a timestamp at or after this one; the log end when there is none. */
  | { kind: "timestamp"; timestampMs: number };

/**
 * What to do when a checkpointed offset is below the partition's log start (retention or
 * deleteRecords removed it): fail (the default), or skip to the log start or the log end.
 */
export type KafkaOffsetReset = "fail" | "earliest" | "latest";

export interface KafkaSourceOptions extends KafkaClientConnection {
  topic: string;
  /** Default: earliest. */
  startingPosition?: KafkaStartingPosition;
  /** Default: fail. */
  offsetReset?: KafkaOffsetReset;
  clientId?: string;
  /** How long a fetch waits at the broker for new records. Default: 100 ms. */
  maxWaitMs?: number;
  /** The most bytes one fetch returns from a partition (at least one batch). Default: 1 MiB. */
  partitionMaxBytes?: number;
  /** How often reads look for partitions added to the topic. Default: 30 s. */
  partitionDiscoveryMs?: number;
  /**
   * A consumer group whose offsets follow completed checkpoints, for lag tools
   * (`kafka-consumer-groups.sh --describe`). Nothing reads them back. Default: none.
   */
  reportToGroup?: string;
}

export interface KafkaSourceRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** Milliseconds since the epoch, as the producer or the broker set it. */
  readonly timestamp: number;
}

/** The id of a Kafka partition in `sourceOffsets`. */
export function kafkaPartitionId(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

/**
 * The key group of partition `partition` of `partitionCount`: the middle of its 1/N slice of the key
 * groups. Its owner reads the partition, and partition-scoped state lives in it, so that state moves
 * with the partition on a rescale. Tasks own contiguous key group ranges, so they read contiguous
 * runs of partitions, evenly: at the default maxParallelism 128 and up to 16 partitions every task
 * reads ⌊N/parallelism⌋ or ⌈N/parallelism⌉ (tested); hashing 6–12 ids into 128 key groups often
 * gives one task 3 and another none. It depends on the partition count, not on the parallelism.
 */
export function kafkaPartitionKeyGroup(
  partition: number,
  partitionCount: number,
  maxParallelism: number,
): number {
  return Math.floor(((2 * partition + 1) * maxParallelism) / (2 * partitionCount));
}

/** Records of one fetch from `from`, and the offset after its last batch. */
interface FetchedRecords {
  from: number;
  records: SourceRecord<KafkaSourceRecord>[];
  nextOffset: number;
}

/**
 * The topic has more partitions than the job reads: the task fails so that the job restarts from
 * its latest checkpoint, where every task learns the new partitions together (a partition's reader
 * depends on the partition count, so tasks must not change over one by one).
 */
export class KafkaPartitionsAddedError extends Error {
  override readonly name = "KafkaPartitionsAddedError";
}

/** A checkpointed offset the broker no longer has, under the default reset policy "fail". */
export class KafkaOffsetOutOfRangeError extends Error {
  override readonly name = "KafkaOffsetOutOfRangeError";
}

/** Reads one topic; `partitions()` are the job's source partitions, `close()` ends the connections. */
export class KafkaSource {
  /** Per partition, the last stable offset of its latest fetch. */
  private readonly lastStableOffsets = new Map<number, number>();
  /**
   * Per partition, the records of its latest fetch not returned yet: a fetch brings up to
   * partitionMaxBytes (tens of thousands of small records), a read returns maxRecords of them, and
   * decoding the same response again for every read cost 60 ms a read.
   */
  private readonly fetched = new Map<number, FetchedRecords>();
  /** When reads next ask for the partition count (read when the source opened). */
  private nextDiscoveryAt: number;
  private admin: Admin | undefined;
  private readonly unreported = new Map<number, number>();
  private reporting = false;

  private constructor(
    private readonly options: Required<Omit<KafkaSourceOptions, keyof KafkaClientConnection | "clientId">>,
    private readonly consumer: Consumer,
    private readonly partitionCount: number,
    private readonly connection: KafkaClientConnection,
  ) {
    this.nextDiscoveryAt = Date.now() + options.partitionDiscoveryMs;
  }

  /** Connects and learns the topic's partitions; a missing topic is an error naming it. */
  static async open(options: KafkaSourceOptions): Promise<KafkaSource> {
    const consumer = new Consumer({
      clientId: options.clientId ?? "streamjob-kafka-source",
      // Required by the client; never joined and never committed to.
      groupId: "streamjob-kafka-source-unused",
      ...kafkaClientOptions(options),
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    try {
      const partitionCount = await topicPartitionCount(consumer, options.topic);
      return new KafkaSource(
        {
          topic: options.topic,
          startingPosition: options.startingPosition ?? { kind: "earliest" },
          offsetReset: options.offsetReset ?? "fail",
          maxWaitMs: options.maxWaitMs ?? 100,
          partitionMaxBytes: options.partitionMaxBytes ?? 1024 * 1024,
          partitionDiscoveryMs: options.partitionDiscoveryMs ?? 30_000,
          reportToGroup: options.reportToGroup ?? "",
        },
        consumer,
        partitionCount,
        {
          bootstrapServers: options.bootstrapServers,
          ...(options.sasl && { sasl: options.sasl }),
          ...(options.tls && { tls: options.tls }),
        },
      );
    } catch (error) {
      await consumer.close();
      throw error;
    }
  }

  partitions(): SourcePartition<KafkaSourceRecord>[] {
    return Array.from({ length: this.partitionCount }, (_, partition) => ({
      id: kafkaPartitionId(this.options.topic, partition),
      read: (offset, maxRecords) => this.read(partition, offset, maxRecords),
      startOffset: (restored) => this.startOffset(partition, restored),
      keyGroup: (maxParallelism) => kafkaPartitionKeyGroup(partition, this.partitionCount, maxParallelism),
      endOffset: () => this.lastStableOffsets.get(partition),
      checkpointed: (offset) => this.reportOffset(partition, offset),
    }));
  }

  async close(): Promise<void> {
    await Promise.all([this.consumer.close(), this.admin?.close()]);
  }

  /** Commits the checkpointed offsets to `reportToGroup`, one request at a time, the latest winning. */
  private reportOffset(partition: number, offset: number): void {
    const group = this.options.reportToGroup;
    if (group === "") return;
    this.unreported.set(partition, offset);
    if (this.reporting) return;
    this.reporting = true;
    void (async () => {
      while (this.unreported.size > 0) {
        const offsets = [...this.unreported];
        this.unreported.clear();
        this.admin ??= new Admin({ clientId: `${group}-offsets`, ...kafkaClientOptions(this.connection) });
        // Best effort: a lag tool sees the next checkpoint's offsets if this one fails.
        await this.admin
          .alterConsumerGroupOffsets({
            groupId: group,
            topics: [
              {
                name: this.options.topic,
                partitionOffsets: offsets.map(([p, o]) => ({ partition: p, offset: BigInt(o) })),
              },
            ],
          })
          .catch(() => undefined);
      }
      this.reporting = false;
    })();
  }

  private async startOffset(partition: number, restored = false): Promise<number> {
    // A partition added to a running job holds only records written since: read them all.
    const position = restored ? { kind: "earliest" as const } : this.options.startingPosition;
    if (position.kind === "earliest") return this.listOffset(partition, ListOffsetTimestamps.EARLIEST);
    if (position.kind === "latest") return this.listOffset(partition, ListOffsetTimestamps.LATEST);
    const offset = await this.listOffset(partition, BigInt(position.timestampMs));
    // -1: no record at or after the timestamp yet.
    return offset === -1 ? this.listOffset(partition, ListOffsetTimestamps.LATEST) : offset;
  }

  private async listOffset(partition: number, timestamp: bigint): Promise<number> {
    const { topic } = this.options;
    const offsets = await this.consumer.listOffsets({
      topics: [topic],
      partitions: { [topic]: [partition] },
      timestamp,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    const offset = offsets.get(topic)?.[partition];
    if (offset === undefined)
      throw new Error(`Kafka topic ${topic} partition ${partition}: no offset listed`);
    return Number(offset);
  }

  private async read(
    partition: number,
    offset: number,
    maxRecords: number,
  ): Promise<SourceBatch<KafkaSourceRecord>> {
    await this.discoverPartitions();
    const buffered = this.fetched.get(partition);
    this.fetched.delete(partition);
    // Valid only where the previous read left off; a restore or a reset asks elsewhere.
    const batch = buffered?.from === offset ? buffered : await this.fetch(partition, offset);
    if (batch.records.length <= maxRecords) return { records: batch.records, nextOffset: batch.nextOffset };
    const records = batch.records.slice(0, maxRecords);
    this.fetched.set(partition, {
      from: records.at(-1)!.offset + 1,
      records: batch.records.slice(maxRecords),
      nextOffset: batch.nextOffset,
    });
    return { records };
  }

  /** Every partitionDiscoveryMs, fails the read when the topic has gained partitions. */
  private async discoverPartitions(): Promise<void> {
    const now = Date.now();
    if (now < this.nextDiscoveryAt) return;
    this.nextDiscoveryAt = now + this.options.partitionDiscoveryMs;
    const { topic } = this.options;
    const count = (await topicMetadataOf(this.consumer, topic, true)).partitionsCount;
    if (count > this.partitionCount) {
      throw new KafkaPartitionsAddedError(
        `Kafka topic ${topic} now has ${count} partitions, the job reads ${this.partitionCount}: restarting from the latest checkpoint to read the new ones from their beginning`,
      );
    }
  }

  private async fetch(partition: number, offset: number): Promise<FetchedRecords> {
    const { topic } = this.options;
    const topicMetadata = await topicMetadataOf(this.consumer, topic);
    const leader = topicMetadata.partitions[partition]?.leader;
    if (leader === undefined) {
      throw new Error(`Kafka topic ${topic} partition ${partition}: not in the cluster's metadata`);
    }
    let response;
    try {
      response = await this.consumer.fetch({
        node: leader,
        topics: [
          {
            topicId: topicMetadata.id,
            partitions: [
              {
                partition,
                fetchOffset: BigInt(offset),
                partitionMaxBytes: this.options.partitionMaxBytes,
                currentLeaderEpoch: -1,
                lastFetchedEpoch: -1,
              },
            ],
          },
        ],
        maxWaitTime: this.options.maxWaitMs,
        minBytes: 1,
        maxBytes: this.options.partitionMaxBytes,
        isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      });
    } catch (error) {
      if (!isOffsetOutOfRange(error)) {
        // A deleted topic fails fetches with the client's generic retry error: name it instead.
        await topicMetadataOf(this.consumer, topic, true);
        throw error;
      }
      return { from: offset, records: [], nextOffset: await this.resetOffset(partition, offset) };
    }
    const fetched = response.responses[0]?.partitions[0];
    if (fetched === undefined) return { from: offset, records: [], nextOffset: offset };
    // What a read_committed consumer can read up to: the lag lag tools report for it.
    if (fetched.lastStableOffset >= 0n)
      this.lastStableOffsets.set(partition, Number(fetched.lastStableOffset));
    return { from: offset, ...committedRecords(fetched, offset) };
  }

  /** The offset to continue at when `offset` is out of the partition's range, by the reset policy. */
  private async resetOffset(partition: number, offset: number): Promise<number> {
    const { topic, offsetReset } = this.options;
    const logStart = await this.listOffset(partition, ListOffsetTimestamps.EARLIEST);
    const logEnd = await this.listOffset(partition, ListOffsetTimestamps.LATEST);
    const where = `Kafka topic ${topic} partition ${partition}`;
    if (offset > logEnd) {
      // Resetting would move backwards and repeat records: never silently.
      throw new KafkaOffsetOutOfRangeError(
        `${where}: offset ${offset} is beyond the log end ${logEnd} (log start ${logStart}); was the topic deleted and created again?`,
      );
    }
    if (offset >= logStart) return offset; // the log start moved back meanwhile? read again.
    if (offsetReset === "earliest") return logStart;
    if (offsetReset === "latest") return logEnd;
    throw new KafkaOffsetOutOfRangeError(
      `${where}: offset ${offset} no longer exists, the log starts at ${logStart} (retention or deleteRecords removed records the checkpoint had not read); offsetReset is "fail": set it to "earliest" or "latest" to skip them`,
    );
  }
}

/**
 * The committed records of a read_committed fetch from `from`, and the offset after the last batch.
 * The Java client's rule: a transactional batch of a producer is aborted from the first offset of
 * one of its aborted transactions (listed by the broker) until that producer's abort marker.
 */
function committedRecords(
  fetched: fetchV17.FetchResponsePartition,
  from: number,
): { records: SourceRecord<KafkaSourceRecord>[]; nextOffset: number } {
  const aborted = [...fetched.abortedTransactions].sort((a, b) =>
    a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0,
  );
  const abortedProducers = new Set<bigint>();
  let nextAborted = 0;
  const records: SourceRecord<KafkaSourceRecord>[] = [];
  let nextOffset = from;
  for (const batch of fetched.records ?? []) {
    const lastOffset = batch.firstOffset + BigInt(batch.lastOffsetDelta);
    nextOffset = Math.max(nextOffset, Number(lastOffset) + 1);
    while (nextAborted < aborted.length && aborted[nextAborted]!.firstOffset <= lastOffset) {
      abortedProducers.add(aborted[nextAborted]!.producerId);
      nextAborted++;
    }
    if (batch.attributes & IS_CONTROL) {
      // A control record's key is (version: int16, type: int16); type 0 is ABORT, 1 is COMMIT.
      if (batch.records[0]?.key?.readInt16BE(2) === 0) abortedProducers.delete(batch.producerId);
      continue;
    }
    if (batch.attributes & IS_TRANSACTIONAL && abortedProducers.has(batch.producerId)) continue;
    for (const record of batch.records) {
      const offset = Number(batch.firstOffset) + record.offsetDelta;
      if (offset < from) continue; // a fetch returns whole batches
      records.push({
        offset,
        value: {
          key: record.key,
          value: record.value,
          timestamp: Number(batch.firstTimestamp + record.timestampDelta),
        },
      });
    }
  }
  return { records, nextOffset };
}

async function topicPartitionCount(consumer: Consumer, topic: string): Promise<number> {
  return (await topicMetadataOf(consumer, topic)).partitionsCount;
}

/** The topic's metadata (cached by the client); a missing or deleted topic is an error naming it. */
async function topicMetadataOf(consumer: Consumer, topic: string, forceUpdate = false) {
  try {
    const metadata = await consumer.metadata({ topics: [topic], forceUpdate });
    const found = metadata.topics.get(topic);
    if (found === undefined || found.partitionsCount === 0) throw new Error("no partitions");
    return found;
  } catch (error) {
    // The client reports "metadata failed 4 times"; the broker's reason (an unknown topic, refused
    // credentials) is nested inside.
    const why = describeKafkaError(error);
    const missing = /unknown topic|no partitions/i.test(why);
    throw new Error(
      `Kafka topic ${topic}: cannot read its partitions (${why})${missing ? "; does it exist?" : ""}`,
      {
        cause: error,
      },
    );
  }
}

function isOffsetOutOfRange(error: unknown): boolean {
  const found = (error as { findBy?: (property: string, value: unknown) => unknown }).findBy?.(
    "apiId",
    "OFFSET_OUT_OF_RANGE",
  );
  return found !== undefined && found !== null;
}
