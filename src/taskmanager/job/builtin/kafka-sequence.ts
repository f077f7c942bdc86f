// The `kafka-sequence` job: the exactly-once check of the Kafka source, `sequence` over a real topic.
// Arguments: `--topic T` (required), `--bootstrap-servers host:port[,…]` (default: the environment
// variable STREAMJOB_KAFKA_BOOTSTRAP_SERVERS, which the operator sets from the Secret named in the
// StreamJob's `kafka.secretName`), `--start earliest|latest` (default earliest), `--output-topic T`
// (default: files in the bucket) and `--delivery exactly-once|at-least-once` (default exactly-once)
// for the output topic.
//
// Every record's value is `<key>:<n>`; the job keeps a counter per key (state keyed by the key) and
// requires every n to be exactly counter + 1, failing the task on a gap or a duplicate, and emits
// `<key> <n>` keyed by the key, so verifySequenceOutput checks the committed output. A key's state lives in its key
// group, so the topic must be partitioned such that the task reading a key's partition owns the
// key's key group (partition p is read by task p mod parallelism); any other key fails the task.
import { z } from "zod";
import { kafkaConnectionFromSecret } from "../../../connectors/kafka/connection.js";
import { kafkaSink } from "../../../connectors/kafka/sink.js";
import { KafkaSource, type KafkaSourceRecord } from "../../../connectors/kafka/source.js";
import { ConfigurationError, ENV } from "../../config/environment.js";
import { TwoPhaseCommitSink } from "../../sink/two-phase-commit-sink.js";
import { defineJob } from "../job-definition.js";
import { parseJobArgs } from "./job-args.js";

export const KafkaSequenceArgs = {
  topic: z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, "expected a Kafka topic name"),
  "bootstrap-servers": z.string().optional(),
  start: z.enum(["earliest", "latest"]).default("earliest"),
  "output-topic": z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,249}$/, "expected a Kafka topic name")
    .optional(),
  delivery: z.enum(["exactly-once", "at-least-once"]).default("exactly-once"),
};

function bootstrapServersOf(servers: string | undefined): string[] {
  if (servers === undefined) {
    throw new ConfigurationError(
      `kafka-sequence: no Kafka: give --bootstrap-servers or set ${ENV.kafkaBootstrapServers}`,
    );
  }
  try {
    return kafkaConnectionFromSecret({ bootstrapServers: servers }).bootstrapServers;
  } catch (error) {
    throw new ConfigurationError(`kafka-sequence: ${(error as Error).message}`);
  }
}

export const kafkaSequenceJob = defineJob<KafkaSourceRecord>({
  async partitions(context) {
    const args = parseJobArgs("kafka-sequence", context.args, KafkaSequenceArgs);
    const bootstrapServers = bootstrapServersOf(
      args["bootstrap-servers"] ?? process.env[ENV.kafkaBootstrapServers],
    );
    const source = await KafkaSource.open({
      bootstrapServers,
      topic: args.topic,
      startingPosition: { kind: args.start },
      clientId: `kafka-sequence-${context.job.namespace}-${context.job.name}-${context.taskIndex}`,
    });
    return source.partitions();
  },
  output(context) {
    const args = parseJobArgs("kafka-sequence", context.args, KafkaSequenceArgs);
    const topic = args["output-topic"];
    if (topic === undefined) return new TwoPhaseCommitSink(context.taskIndex);
    return kafkaSink({
      bootstrapServers: bootstrapServersOf(
        args["bootstrap-servers"] ?? process.env[ENV.kafkaBootstrapServers],
      ),
      topic,
      delivery: args.delivery,
      job: context.job,
      taskIndex: context.taskIndex,
    });
  },
  process(record, context) {
    const text = record.value?.toString("utf8") ?? "";
    const match = /^(.+):(\d+)$/.exec(text);
    if (match === null || match[1] === undefined) {
      throw new Error(
        `kafka-sequence: ${context.partitionId} offset ${context.offset}: value ${JSON.stringify(text)} is not "<key>:<n>"`,
      );
    }
    const key = match[1];
    const value = Number(match[2]);
    if (!context.state.owns(key)) {
      throw new Error(
        `kafka-sequence: key ${key} came from ${context.partitionId}, whose task does not own the key's key group: partition the topic so that a key's partition is read by the task owning the key`,
      );
    }
    const previous = Number(context.state.get(key) ?? 0);
    if (value !== previous + 1) {
      throw new Error(
        `kafka-sequence: ${key} got ${value} after ${previous} at ${context.partitionId} offset ${context.offset}: exactly-once violated`,
      );
    }
    context.state.put(key, value);
    context.emit(`${key} ${value}`, key);
  },
});
