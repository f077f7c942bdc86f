// The multi-stage example of docs/writing-a-job.md (fixtures/customer-totals-dataflow.ts) run the
// way a user runs it: compiled on its own to one ES module, named by absolute path, on real
// TaskManager processes with the real coordinator and MinIO. A TaskManager is killed mid-run and the
// job restarts from its latest checkpoint; once the finite input is done, the committed output must
// hold every order exactly once, with customer totals and region revenues that add up to what the
// generator's formula (repeated here, not imported) gives.
import { build } from "esbuild";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HttpTaskManagerClient } from "../../src/coordinator/http-task-manager-client.js";
import { readCommittedOutput } from "../../src/taskmanager/sink/committed-output.js";
import type { LocalJob } from "../support/local-job.js";
import { localJobs } from "./support/local-jobs.js";
import { waitFor } from "../support/wait.js";
import { testClusterDir } from "./support/cluster.js";

const here = path.dirname(fileURLToPath(import.meta.url));

// The generator of the fixture, written out again: the expected results do not come from its code.
const REGIONS = ["eu", "us", "apac"];
const ORDERS_PER_REGION = 5_000;
const CUSTOMERS = 50;

interface Order {
  id: string;
  region: string;
  customer: string;
  cents: number;
}

const ORDERS = new Map<string, Order>(
  REGIONS.flatMap((region, r) =>
    Array.from({ length: ORDERS_PER_REGION }, (_, n): [string, Order] => [
      `${region}-${n}`,
      {
        id: `${region}-${n}`,
        region,
        customer: `customer-${(n * 7 + r * 3) % CUSTOMERS}`,
        cents: 100 + ((n * 37 + r * 11) % 900),
      },
    ]),
  ),
);

/** Per key: how many orders and how many cents, from `ORDERS`. */
function expectedSums(keyOf: (order: Order) => string): Record<string, { orders: number; cents: number }> {
  const sums: Record<string, { orders: number; cents: number }> = {};
  for (const order of ORDERS.values()) {
    const sum = (sums[keyOf(order)] ??= { orders: 0, cents: 0 });
    sum.orders++;
    sum.cents += order.cents;
  }
  return sums;
}

interface Line {
  id: string;
  customer: string;
  orders: number;
  total: number;
  region: string;
  revenue: number;
}

const LINE =
  /^([a-z]+-\d+) (customer-\d+) orders=(\d+) total=(\d+\.\d\d) region=([a-z]+) revenue=(\d+\.\d\d)$/;
const cents = (money: string) => Number(money.replace(".", ""));

interface OutputCheck {
  problems: string[];
  /** Per customer, its last committed line's order count and total. */
  customers: Record<string, { orders: number; cents: number }>;
  /** Per region, its last committed line's order count and revenue. */
  regions: Record<string, { orders: number; cents: number }>;
}

/**
 * Every order once, and per customer (per region) a chain of lines: sorted by the running count (the
 * running revenue), each line's total is the previous one plus that line's order. A line lost,
 * repeated, or computed from state that saw an order twice or not at all breaks a chain.
 */
function checkOutput(lines: readonly string[]): OutputCheck {
  const problems: string[] = [];
  const parsed: Line[] = [];
  for (const line of lines) {
    const m = LINE.exec(line);
    if (m === null) {
      problems.push(`unreadable line ${JSON.stringify(line)}`);
      continue;
    }
    const [, id = "", customer = "", orders = "", total = "", region = "", revenue = ""] = m;
    parsed.push({
      id,
      customer,
      orders: Number(orders),
      total: cents(total),
      region,
      revenue: cents(revenue),
    });
  }
  const seen = new Set<string>();
  for (const line of parsed) {
    const order = ORDERS.get(line.id);
    if (order === undefined) problems.push(`${line.id}: no such order`);
    else if (order.customer !== line.customer || order.region !== line.region)
      problems.push(
        `${line.id}: ${line.customer} in ${line.region}, expected ${order.customer} in ${order.region}`,
      );
    if (seen.has(line.id)) problems.push(`${line.id}: emitted twice`);
    seen.add(line.id);
  }
  for (const id of ORDERS.keys()) if (!seen.has(id)) problems.push(`${id}: never emitted`);

  /** Per key, its lines sorted by `position` must add up order by order to `running`. */
  const chains = (
    keyOf: (line: Line) => string,
    position: (line: Line) => number,
    running: (line: Line) => number,
  ) => {
    const groups = new Map<string, Line[]>();
    for (const line of parsed) {
      const group = groups.get(keyOf(line)) ?? [];
      group.push(line);
      groups.set(keyOf(line), group);
    }
    const last: Record<string, { orders: number; cents: number }> = {};
    for (const [key, group] of groups) {
      group.sort((a, b) => position(a) - position(b));
      let previous = 0;
      for (const line of group) {
        const step = running(line) - previous;
        const order = ORDERS.get(line.id);
        if (step !== order?.cents)
          problems.push(`${key}: ${line.id} adds ${step} cents, the order has ${order?.cents}`);
        previous = running(line);
      }
      last[key] = { orders: group.length, cents: previous };
    }
    return [groups, last] as const;
  };
  // A customer's lines count its orders 1, 2, 3, …; a region's only have a revenue, which grows.
  const [byCustomer, customers] = chains(
    (line) => line.customer,
    (line) => line.orders,
    (line) => line.total,
  );
  for (const [customer, group] of byCustomer) {
    group.forEach((line, i) => {
      if (line.orders !== i + 1)
        problems.push(`${customer}: ${line.id} is order ${line.orders}, expected ${i + 1}`);
    });
  }
  const [, regions] = chains(
    (line) => line.region,
    (line) => line.revenue,
    (line) => line.revenue,
  );
  return { problems, customers, regions };
}

const local = localJobs("dataflow-example");
let workDir: string;
let modulePath: string;

beforeAll(async () => {
  // Compiled on its own, as a user compiles a job: with `import type` only, nothing is left to import.
  mkdirSync(path.join(testClusterDir, "tmp"), { recursive: true });
  workDir = mkdtempSync(path.join(testClusterDir, "tmp", "dataflow-example-"));
  modulePath = path.join(workDir, "customer-totals-dataflow.mjs");
  await build({
    entryPoints: [path.join(here, "fixtures", "customer-totals-dataflow.ts")],
    outfile: modulePath,
    bundle: false,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
  });
});

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function latestOffsets(job: LocalJob): Promise<Record<string, number> | undefined> {
  const latest = job.completed.at(-1);
  return latest && (await job.manifest(latest.checkpointId)).sourceOffsets;
}

const ordersRead = (offsets: Record<string, number>) => Object.values(offsets).reduce((a, b) => a + b, 0);

test("the compiled module imports nothing", () => {
  expect(readFileSync(modulePath, "utf8")).not.toMatch(/^\s*import\b|\brequire\(|\bimport\(/m);
});

test("the documented multi-stage example, with a TaskManager killed mid-run, commits every order exactly once", async () => {
  const program = { name: modulePath, args: [] };
  const job = local.job({
    program,
    parallelism: 2,
    maxParallelism: 128,
    policy: { intervalMs: 200, timeoutMs: 5000 },
  });
  await job.deploy({ epoch: 1, parallelism: 2, program });
  job.coordinator!.start();

  // Each region's first 50 orders go to every customer once: past them, every customer and every
  // region has records in the checkpoint, so in every stage of both TaskManagers.
  await waitFor("a checkpoint with orders of every customer in it", async () => {
    const offsets = await latestOffsets(job);
    return (
      offsets !== undefined && REGIONS.every((region) => (offsets[`orders-${region}`] ?? 0) >= CUSTOMERS)
    );
  });
  // Every stage runs on both TaskManagers: at maxParallelism 128 the partitions (orders-us on task 1),
  // the customers and the regions (eu and us on task 1, apac on task 0) are spread over the two.
  for (const tm of job.taskManagers) {
    const client = new HttpTaskManagerClient({ taskIndex: tm.taskIndex, baseUrl: tm.url, token: job.token });
    const stages = (await client.status()).dataflow?.stages ?? [];
    expect(stages.map((stage) => stage.stageId)).toEqual(["source", "customer-totals", "region-revenue"]);
    expect(stages.map((stage) => stage.recordsProcessed > 0)).toEqual([true, true, true]);
  }

  // Orders processed after the latest checkpoint die with the TaskManager: the restart replays them.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await job.taskManagers[1]!.kill("SIGKILL");
  const restoredFrom = await job.restartFromLatestCheckpoint();
  const restoredOffsets = (await job.manifest(restoredFrom)).sourceOffsets;
  expect(ordersRead(restoredOffsets)).toBeGreaterThan(0);
  expect(ordersRead(restoredOffsets)).toBeLessThan(REGIONS.length * ORDERS_PER_REGION);
  for (const tm of job.taskManagers) {
    const client = new HttpTaskManagerClient({ taskIndex: tm.taskIndex, baseUrl: tm.url, token: job.token });
    expect((await client.status()).restoredFromCheckpointId).toBe(restoredFrom);
  }
  job.coordinator!.start();

  // A checkpoint whose offsets are at the end holds every order: its cut has nothing in flight.
  await waitFor(
    "a checkpoint after the last order",
    async () => {
      const offsets = await latestOffsets(job);
      return (
        offsets !== undefined && REGIONS.every((region) => offsets[`orders-${region}`] === ORDERS_PER_REGION)
      );
    },
    60_000,
  );
  await job.coordinator!.stop();
  // Its notify-complete commits the output of every task, up to and including it.
  const final = await job.completedCheckpoint();
  expect((await job.manifest(final.checkpointId)).sourceOffsets).toEqual(
    Object.fromEntries(REGIONS.map((region) => [`orders-${region}`, ORDERS_PER_REGION])),
  );
  for (const tm of job.taskManagers) expect(tm.running).toBe(true);

  const lines: string[] = [];
  for await (const object of readCommittedOutput(local.store, job.directory)) lines.push(...object.lines);
  const check = checkOutput(lines);
  expect(check.problems.slice(0, 20)).toEqual([]);
  expect(lines).toHaveLength(ORDERS.size);
  expect(check.customers).toEqual(expectedSums((order) => order.customer));
  expect(check.regions).toEqual(expectedSums((order) => order.region));
  expect(Object.keys(check.customers)).toHaveLength(CUSTOMERS);

  // The check itself catches a repeated line, a lost line and a wrong total.
  const at = lines.length >> 1;
  expect(checkOutput([...lines, lines[at]!]).problems).toEqual(
    expect.arrayContaining([`${LINE.exec(lines[at]!)?.[1]}: emitted twice`]),
  );
  expect(checkOutput(lines.filter((_, i) => i !== at)).problems).toEqual(
    expect.arrayContaining([`${LINE.exec(lines[at]!)?.[1]}: never emitted`]),
  );
  const doctored = lines[at]!.replace(/total=(\d+)\./, (_, whole: string) => `total=${Number(whole) + 1}.`);
  expect(checkOutput(lines.map((line, i) => (i === at ? doctored : line))).problems).not.toEqual([]);
});
