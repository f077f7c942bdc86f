// `npm run kafka:orders -- [--rounds 60] [--per-round 20] [--rate 2] [--seed 1]`: the input of the
// two-job pipeline in manifests/examples/kafka-orders.yaml on the local cluster's Kafka broker.
// Creates its three topics (4 partitions each) if missing and writes orders of 4 regions and 10
// customers into `orders`, keyed by region, one transaction per round.
// `npm run kafka:orders -- --verify` checks `customer-totals` against `orders` instead: every
// order counted exactly once, every customer's total right.
import { parseArgs } from "node:util";
import { clusterDir } from "../src/devcluster/cluster.js";
import {
  ensureTopic,
  kafkaBootstrapServers,
  produceOrders,
  readCommittedTopic,
  verifyOrdersPipeline,
} from "../test/support/kafka.js";
import { LocalCluster } from "../test/support/local-cluster.js";

const TOPICS = { orders: "orders", byCustomer: "orders-by-customer", totals: "customer-totals" };
const PARTITIONS = 4;

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "60" },
    "per-round": { type: "string", default: "20" },
    rate: { type: "string", default: "2" },
    seed: { type: "string", default: "1" },
    verify: { type: "boolean", default: false },
  },
  strict: true,
});

function count(flag: "rounds" | "per-round" | "rate" | "seed", min: number): number {
  const value = Number(flags[flag]);
  if (!Number.isInteger(value) || value < min)
    throw new Error(`--${flag}: expected a whole number of at least ${min}, got ${flags[flag]}`);
  return value;
}

const bootstrapServers = await kafkaBootstrapServers(new LocalCluster(clusterDir()).clients().core);
if (flags.verify) {
  const report = await verifyOrdersPipeline(bootstrapServers, TOPICS.orders, TOPICS.totals);
  for (const problem of report.problems.slice(0, 20)) console.log(`  ${problem}`);
  console.log(
    `${TOPICS.totals}: ${report.orders} orders of ${report.customers} customers, ${report.problems.length} problems`,
  );
  process.exit(report.problems.length === 0 ? 0 : 1);
}
for (const topic of Object.values(TOPICS)) await ensureTopic(bootstrapServers, topic, PARTITIONS);
const rounds = count("rounds", 1);
console.log(
  `writing ${rounds} rounds of ${flags["per-round"]} orders into ${TOPICS.orders} at ${bootstrapServers.join(",")}`,
);
const written = await produceOrders({
  bootstrapServers,
  topic: TOPICS.orders,
  existing: await readCommittedTopic(bootstrapServers, TOPICS.orders),
  regions: PARTITIONS,
  customers: 10,
  perRound: count("per-round", 1),
  rounds,
  pauseMs: 1_000 / count("rate", 1),
  seed: count("seed", 0),
  onRound: (n) => {
    if (n % 10 === 0 || n === rounds) console.log(`  round ${n} committed`);
  },
});
console.log(`${written} orders written; check the totals with: npm run kafka:orders -- --verify`);
