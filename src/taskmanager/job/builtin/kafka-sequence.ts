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
// key's key group (src/connectors/kafka/source.ts says which task reads partition p); any other key
// fails the task.
import type { KafkaSourceRecord } from "../../../connectors/kafka/source.js";
import { defineJob } from "../job-definition.js";
import { kafkaJobIo } from "./kafka-job.js";

export const kafkaSequenceJob = defineJob<KafkaSourceRecord>({
  ...kafkaJobIo("kafka-sequence"),
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
