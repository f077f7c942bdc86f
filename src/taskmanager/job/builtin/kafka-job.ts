// What the built-in Kafka jobs share: their Kafka arguments, the brokers (an argument or the
// environment the operator fills from the StreamJob's Kafka Secret), the topic as source
// partitions, and the output (a topic, or the bucket's files).
import { z } from "zod";
import { kafkaConnectionFromSecret, type KafkaConnection } from "../../../connectors/kafka/connection.js";
import { kafkaSink, type KafkaDelivery } from "../../../connectors/kafka/sink.js";
import { KafkaSource, type KafkaSourceRecord } from "../../../connectors/kafka/source.js";
import { ConfigurationError, ENV } from "../../config/environment.js";
import type { Sink } from "../../sink/sink.js";
import { TwoPhaseCommitSink } from "../../sink/two-phase-commit-sink.js";
import type { JobContext, JobDefinition } from "../job-definition.js";
import { parseJobArgs } from "./job-args.js";

export const topicName = z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, "expected a Kafka topic name");

/** The arguments every built-in Kafka job takes. */
export const KafkaJobArgs = {
  topic: topicName,
  "bootstrap-servers": z.string().optional(),
  start: z.enum(["earliest", "latest"]).default("earliest"),
  "output-topic": topicName.optional(),
  delivery: z.enum(["exactly-once", "at-least-once"]).default("exactly-once"),
};

export interface KafkaJobOptions {
  topic: string;
  "bootstrap-servers"?: string | undefined;
  start: "earliest" | "latest";
  "output-topic"?: string | undefined;
  delivery: KafkaDelivery;
}

/** The brokers and credentials: `--bootstrap-servers`, or the Kafka Secret through the environment. */
function connectionOf(job: string, args: KafkaJobOptions): KafkaConnection {
  const servers = args["bootstrap-servers"] ?? process.env[ENV.kafkaBootstrapServers];
  if (servers === undefined) {
    throw new ConfigurationError(
      `${job}: no Kafka: give --bootstrap-servers or set ${ENV.kafkaBootstrapServers}`,
    );
  }
  try {
    return kafkaConnectionFromSecret(
      {
        bootstrapServers: servers,
        username: process.env[ENV.kafkaUsername],
        password: process.env[ENV.kafkaPassword],
        saslMechanism: process.env[ENV.kafkaSaslMechanism],
        tls: process.env[ENV.kafkaTls],
      },
      "of the StreamJob's kafka.secretName",
    );
  } catch (error) {
    throw new ConfigurationError(`${job}: ${(error as Error).message}`);
  }
}

/** The input topic's partitions, read from `--start` where a checkpoint has no offset. */
async function kafkaInput(job: string, context: JobContext, args: KafkaJobOptions) {
  const source = await KafkaSource.open({
    ...connectionOf(job, args),
    topic: args.topic,
    startingPosition: { kind: args.start },
    // For lag tools: `kafka-consumer-groups.sh --describe --group streamjob.<namespace>.<job>`.
    reportToGroup: `streamjob.${context.job.namespace}.${context.job.name}`,
    clientId: `${job}-${context.job.namespace}-${context.job.name}-${context.taskIndex}`,
  });
  return source.partitions();
}

/** `--output-topic` with `--delivery`, or the bucket's files when there is none. */
function kafkaOutput(job: string, context: JobContext, args: KafkaJobOptions): Sink {
  const topic = args["output-topic"];
  if (topic === undefined) return new TwoPhaseCommitSink(context.taskIndex);
  return kafkaSink({
    ...connectionOf(job, args),
    topic,
    delivery: args.delivery,
    job: context.job,
    taskIndex: context.taskIndex,
  });
}

/** A built-in job's source and output from its Kafka arguments (KafkaJobArgs). */
export function kafkaJobIo(job: string): Pick<JobDefinition<KafkaSourceRecord>, "partitions" | "output"> {
  const args = (context: JobContext) => parseJobArgs(job, context.args, KafkaJobArgs);
  return {
    partitions: (context) => kafkaInput(job, context, args(context)),
    output: (context) => kafkaOutput(job, context, args(context)),
  };
}
