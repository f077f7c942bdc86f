// A job's output as records of a Kafka topic, exactly once or at least once.
//
// Exactly once (docs/kafka.md, "The exactly-once sink"): no Kafka transaction is open while the job
// runs. The two-phase-commit sink stages each checkpoint's records in object storage with the
// checkpoint; after the checkpoint completes (notify-complete, or a restore from it) this target
// publishes them in one short Kafka transaction that also commits an idempotence marker: the
// offset of partition 0 of the output topic in the consumer group `streamjob-sink.<ns>.<job>.<w>`
// is set to the checkpoint id, for writer (task index) w. Before publishing, a writer's producer
// registers its transactional id (the same name), which fences every older producer of that writer
// and completes their pending transaction, then reads the marker (read-stable): a segment at or
// below it was published already and is skipped. So a lost notify, a crash between the Kafka commit
// and the staging delete, or a zombie TaskManager never publishes a segment twice, and a
// transaction never outlives a publish (transaction.max.timeout.ms cannot abort committed output).
//
// At least once: records are produced as they are emitted (idempotent producer, no transaction),
// and a checkpoint acks only once everything emitted before its cut is acknowledged by Kafka. A
// restore produces the records after the checkpoint again: duplicates, never loss.
import {
  Admin,
  compatibilityPartitioner,
  FindCoordinatorKeyTypes,
  Producer,
  stringSerializers,
  type MessageToProduce,
} from "@platformatic/kafka";
import type { JobRef } from "../../api/protocol.js";
import { describeKafkaError, kafkaClientOptions, type KafkaClientConnection } from "./connection.js";
import type {
  OutputTarget,
  RecoveredOutput,
  Sink,
  SinkLocation,
  StagedSegment,
} from "../../taskmanager/sink/sink.js";
import { TwoPhaseCommitSink } from "../../taskmanager/sink/two-phase-commit-sink.js";

export type KafkaDelivery = "exactly-once" | "at-least-once";

export interface KafkaSinkOptions extends KafkaClientConnection {
  topic: string;
  delivery: KafkaDelivery;
  job: JobRef;
  taskIndex: number;
}

/** The sink a job's `output` returns to write its records to a Kafka topic. */
export function kafkaSink(options: KafkaSinkOptions): Sink {
  return options.delivery === "exactly-once"
    ? new TwoPhaseCommitSink(options.taskIndex, new KafkaTransactionalOutput(options))
    : new AtLeastOnceKafkaSink(options);
}

/** The transactional id of writer `writerIndex`, and the consumer group holding its marker. */
export function kafkaSinkWriterId(job: JobRef, writerIndex: number): string {
  return `streamjob-sink.${job.namespace}.${job.name}.${writerIndex}`;
}

type StringMessage = MessageToProduce<string, string, string, string>;

/**
 * The client waits 1 s before retrying a retriable error, 3 times. A transaction begun right after
 * the previous commit meets CONCURRENT_TRANSACTIONS until the broker has written its markers (a few
 * ms): retry like the Java client (tens of ms), for up to about 2 s.
 */
const QUICK_RETRIES = { retries: 40, retryDelay: 50 };

// Records per produce request: a staged segment may hold a checkpoint interval's output.
const SEND_CHUNK = 2_000;

function outputMessage(topic: string, writerIndex: number, key: string | null, value: string): StringMessage {
  // Keyed records go where Java clients put them (murmur2), so a job reading the topic finds a
  // key in the partition Kafka Streams or Flink would; unkeyed ones stay in one partition per writer.
  return key === null ? { topic, value, partition: writerIndex } : { topic, key, value };
}

function newProducer(options: KafkaSinkOptions, transactionalId?: string) {
  return new Producer<string, string, string, string>({
    clientId:
      transactionalId ?? `streamjob-sink.${options.job.namespace}.${options.job.name}.${options.taskIndex}`,
    ...kafkaClientOptions(options),
    idempotent: true,
    serializers: stringSerializers,
    partitioner: compatibilityPartitioner,
    ...QUICK_RETRIES,
    ...(transactionalId !== undefined && {
      transactionalId,
      // A new producer id, not "producer 0 epoch 0" (the client's default), which the broker
      // answers with PRODUCER_FENCED once the transactional id belongs to another producer id.
      producerId: -1n,
      producerEpoch: -1,
    }),
  });
}

interface Writer {
  producer: Producer<string, string, string, string>;
  /** The marker read when the producer registered, then the last segment it published. */
  publishedThrough: number;
}

export class KafkaTransactionalOutput implements OutputTarget {
  private readonly writers = new Map<number, Promise<Writer>>();
  private admin: Admin | undefined;

  constructor(private readonly options: KafkaSinkOptions) {}

  encode(value: string, key: string | undefined): string {
    return `${JSON.stringify([key ?? null, value])}\n`;
  }

  async publish(segment: StagedSegment, location: SinkLocation): Promise<void> {
    const writer = await this.writer(segment.writerIndex);
    if (segment.checkpointId <= writer.publishedThrough) return;
    const { topic } = this.options;
    const messages = decodeSegment(segment.data ?? (await location.store.get(segment.key))).map(
      ([key, value]) => outputMessage(topic, segment.writerIndex, key, value),
    );
    const groupId = kafkaSinkWriterId(this.options.job, segment.writerIndex);
    try {
      const transaction = await writer.producer.beginTransaction();
      for (let i = 0; i < messages.length; i += SEND_CHUNK) {
        await transaction.send({ messages: messages.slice(i, i + SEND_CHUNK) });
      }
      await transaction.addConsumer({ groupId } as Parameters<typeof transaction.addConsumer>[0]);
      await transaction.addOffset(await this.markerMessage(groupId, segment.checkpointId));
      await transaction.commit();
      writer.publishedThrough = segment.checkpointId;
    } catch (err) {
      // Start over with a new registration and a fresh marker: the transaction is aborted by it, or
      // this producer was fenced by a newer TaskManager, which then owns the writer.
      this.writers.delete(segment.writerIndex);
      await closeNow(writer.producer);
      throw new Error(
        `publishing checkpoint ${segment.checkpointId} of writer ${segment.writerIndex} to Kafka topic ${topic} failed: ${describeKafkaError(err)}`,
        { cause: err },
      );
    }
  }

  async close(): Promise<void> {
    const writers = await Promise.allSettled(this.writers.values());
    this.writers.clear();
    await Promise.allSettled([
      ...writers.flatMap((writer) => (writer.status === "fulfilled" ? [writer.value.producer.close()] : [])),
      this.admin?.close(),
    ]);
  }

  private writer(writerIndex: number): Promise<Writer> {
    let writer = this.writers.get(writerIndex);
    if (writer === undefined) {
      writer = this.register(writerIndex);
      this.writers.set(writerIndex, writer);
      writer.catch(() => this.writers.delete(writerIndex));
    }
    return writer;
  }

  /** Fences older producers of the writer, then reads how far they published. */
  private async register(writerIndex: number): Promise<Writer> {
    const id = kafkaSinkWriterId(this.options.job, writerIndex);
    const producer = newProducer(this.options, id);
    try {
      // Beginning a transaction registers the transactional id (InitProducerId): the broker
      // bumps its epoch, aborting or completing a pending transaction of an older producer first.
      const registration = await producer.beginTransaction();
      await registration.cancel();
      return { producer, publishedThrough: await this.readMarker(id) };
    } catch (err) {
      await closeNow(producer);
      throw new Error(
        `registering Kafka producer ${id} for topic ${this.options.topic} failed: ${describeKafkaError(err)}`,
        { cause: err },
      );
    }
  }

  /** The checkpoint id the writer's group holds, 0 when none: read-stable, so never a pending one. */
  private async readMarker(groupId: string): Promise<number> {
    const [group] = await this.adminClient().listConsumerGroupOffsets({
      groups: [{ groupId, topics: [{ name: this.options.topic, partitionIndexes: [0] }] }],
      requireStable: true,
    });
    const offset = group?.topics[0]?.partitions[0]?.committedOffset ?? -1n;
    return offset < 0n ? 0 : Number(offset);
  }

  /**
   * TxnOffsetCommit through the client's public API takes a consumed message; this one names the
   * marker's group and partition, and offset + 1 is what gets committed.
   */
  private async markerMessage(groupId: string, checkpointId: number) {
    const [coordinator] = await this.adminClient().findCoordinator({
      keyType: FindCoordinatorKeyTypes.GROUP,
      keys: [groupId],
    });
    if (coordinator === undefined) throw new Error(`no coordinator for consumer group ${groupId}`);
    return {
      topic: this.options.topic,
      partition: 0,
      offset: BigInt(checkpointId - 1),
      metadata: { consumer: { groupId, generationId: -1, memberId: "", coordinatorId: coordinator.nodeId } },
    } as unknown as Parameters<Awaited<ReturnType<Producer["beginTransaction"]>>["addOffset"]>[0];
  }

  private adminClient(): Admin {
    this.admin ??= new Admin({
      clientId: kafkaSinkWriterId(this.options.job, this.options.taskIndex),
      ...kafkaClientOptions(this.options),
    });
    return this.admin;
  }
}

/** Closes without waiting for requests in flight; a failure to close leaves nothing to do. */
function closeNow(producer: Producer<string, string, string, string>): Promise<void> {
  return new Promise((resolve) => producer.close(true, () => resolve()));
}

/** The `[key, value]` lines of a staged segment. */
export function decodeSegment(data: Buffer): [string | null, string][] {
  const records: [string | null, string][] = [];
  for (const line of data.toString("utf8").split("\n")) {
    if (line === "") continue;
    const record: unknown = JSON.parse(line);
    if (
      !Array.isArray(record) ||
      record.length !== 2 ||
      !(record[0] === null || typeof record[0] === "string") ||
      typeof record[1] !== "string"
    ) {
      throw new Error(`a staged Kafka segment holds ${line.slice(0, 80)}, not [key, value]`);
    }
    records.push(record as [string | null, string]);
  }
  return records;
}

/** Produces on emit; a checkpoint's ack waits until Kafka has acknowledged everything before its cut. */
export class AtLeastOnceKafkaSink implements Sink {
  private readonly producer: Producer<string, string, string, string>;
  private buffer: StringMessage[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  /** Every send so far, in order; rejects with the first failure. */
  private sent: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private readonly sealed = new Map<number, Promise<void>>();

  constructor(
    private readonly options: KafkaSinkOptions,
    private readonly lingerMs = 20,
  ) {
    this.producer = newProducer(options);
  }

  emit(value: string, key?: string): void {
    // Fails the task, which restores from the last checkpoint and produces the records again.
    if (this.failure !== undefined) throw this.failure;
    this.buffer.push(outputMessage(this.options.topic, this.options.taskIndex, key ?? null, value));
    if (this.buffer.length >= SEND_CHUNK) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), this.lingerMs);
  }

  get pendingRecords(): number {
    return this.buffer.length;
  }

  seal(checkpointId: number): void {
    this.flush();
    this.sealed.set(checkpointId, this.sent);
  }

  async stageThrough(checkpointId: number): Promise<void> {
    const sent = this.sealed.get(checkpointId) ?? this.sent;
    for (const id of this.sealed.keys()) if (id <= checkpointId) this.sealed.delete(id);
    await sent;
  }

  commitThrough(): Promise<void> {
    return Promise.resolve();
  }

  recover(): Promise<RecoveredOutput> {
    return Promise.resolve({ committed: [], discarded: [] });
  }

  async close(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.buffer = [];
    await closeNow(this.producer);
  }

  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.buffer.length === 0) return;
    const messages = this.buffer;
    this.buffer = [];
    this.sent = this.sent.then(async () => {
      try {
        await this.producer.send({ messages });
      } catch (err) {
        this.failure ??= new Error(
          `producing to Kafka topic ${this.options.topic} failed: ${describeKafkaError(err)}`,
          { cause: err },
        );
        throw this.failure;
      }
    });
    // Reported through stageThrough and emit; never as an unhandled rejection.
    this.sent.catch(() => undefined);
  }
}
