// `npm run kafka:numbers -- --topic numbers [--keys 8] [--rounds 100] [--from 1] [--partitions 4] [--rate 5]`:
// writes numbered records into a topic of the local cluster's Kafka broker (the one in Secret
// default/streamjob-kafka), for the `kafka-sequence` job to check: round n writes `<key>:<n>` for
// every key in one transaction, `--rate` rounds a second. Creates the topic if it is missing.
// Key i goes to partition i mod partitions, which suits a job of parallelism 1 (see
// docs/builtin-jobs.md, `kafka-sequence`, for the rule with more TaskManagers).
import { parseArgs } from "node:util";
import { clusterDir } from "../src/devcluster/cluster.js";
import { ensureTopic, kafkaBootstrapServers, produceNumbers } from "../test/support/kafka.js";
import { LocalCluster } from "../test/support/local-cluster.js";

const { values: flags } = parseArgs({
  options: {
    topic: { type: "string" },
    keys: { type: "string", default: "8" },
    rounds: { type: "string", default: "100" },
    from: { type: "string", default: "1" },
    partitions: { type: "string", default: "4" },
    rate: { type: "string", default: "5" },
  },
  strict: true,
});

function count(flag: keyof typeof flags, min: number): number {
  const value = Number(flags[flag]);
  if (!Number.isInteger(value) || value < min)
    throw new Error(`--${flag}: expected a whole number of at least ${min}, got ${flags[flag]}`);
  return value;
}

if (flags.topic === undefined) throw new Error("--topic: required");
const topic = flags.topic;
const keys = Array.from({ length: count("keys", 1) }, (_, i) => `key-${i}`);
const from = count("from", 1);
const to = from + count("rounds", 1) - 1;
const partitions = count("partitions", 1);
const rate = count("rate", 1);

const bootstrapServers = await kafkaBootstrapServers(new LocalCluster(clusterDir()).clients().core);
await ensureTopic(bootstrapServers, topic, partitions);
console.log(
  `writing rounds ${from}..${to} of ${keys.length} keys into ${topic} at ${bootstrapServers.join(",")}`,
);
await produceNumbers({
  bootstrapServers,
  topic,
  keys,
  from,
  to,
  partitionOf: (_, i) => i % partitions,
  pauseMs: 1_000 / rate,
  onRound: (n) => {
    if (n % 10 === 0 || n === to) console.log(`  round ${n} committed`);
  },
});
