// What the Kafka integration tests share: the test cluster's brokers, read from the Secret that
// cluster:up creates, and a transactional producer for a test topic.
import { Producer, stringSerializers } from "@platformatic/kafka";
import { KAFKA_SECRET_NAME, kafkaConnectionFromSecret } from "../../../src/connectors/kafka/connection.js";
import { clients } from "./cluster.js";

export async function bootstrapServersFromSecret(): Promise<string[]> {
  const secret = await clients().core.readNamespacedSecret({ name: KAFKA_SECRET_NAME, namespace: "default" });
  const data = Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, "base64").toString()]),
  );
  return kafkaConnectionFromSecret(data).bootstrapServers;
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
