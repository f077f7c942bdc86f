import { kafkaConnectionFromSecret } from "../../../src/connectors/kafka/connection.js";

test("bootstrapServers is a comma-separated list of host:port", () => {
  expect(kafkaConnectionFromSecret({ bootstrapServers: "127.0.0.1:9092" })).toEqual({
    bootstrapServers: ["127.0.0.1:9092"],
  });
  expect(
    kafkaConnectionFromSecret({
      bootstrapServers: "kafka-0.kafka.svc:9092, kafka-1.kafka.svc:9092,[::1]:9093",
    }),
  ).toEqual({ bootstrapServers: ["kafka-0.kafka.svc:9092", "kafka-1.kafka.svc:9092", "[::1]:9093"] });
});

test("a missing, empty or malformed bootstrapServers is an error naming the Secret, the key and the entry", () => {
  expect(() => kafkaConnectionFromSecret({}, "my-kafka")).toThrow(
    'Secret my-kafka is invalid: missing key "bootstrapServers"',
  );
  expect(() => kafkaConnectionFromSecret({ bootstrapServers: " , " })).toThrow(
    'Secret streamjob-kafka is invalid: key "bootstrapServers" is empty',
  );
  expect(() => kafkaConnectionFromSecret({ bootstrapServers: "kafka:9092,kafka,kafka:99999" })).toThrow(
    'key "bootstrapServers": "kafka" is not host:port (like kafka.default.svc:9092); ' +
      'key "bootstrapServers": "kafka:99999" is not host:port',
  );
  expect(() => kafkaConnectionFromSecret({ bootstrapServers: "PLAINTEXT://kafka:9092" })).toThrow(
    '"PLAINTEXT://kafka:9092" is not host:port',
  );
});
