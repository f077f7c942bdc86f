// The local cluster's Kafka broker, reached the way TaskManagers reach it (through the Secret
// default/streamjob-kafka that the cluster's `up` writes), and numbered records written into a topic
// in transactions: what the `kafka-sequence` job checks.
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import type { CoreV1Api } from "@kubernetes/client-node";
import { KAFKA_SECRET_NAME, kafkaConnectionFromSecret } from "../../src/connectors/kafka/connection.js";
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
