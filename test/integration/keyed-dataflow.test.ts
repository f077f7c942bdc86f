// manifests/examples/keyed-sequence.yaml under the operator on the e2e cluster: TaskManagers in
// their pods exchange records over the pod network (two keyBy exchanges, peers given by the
// operator), checkpoints are aligned barrier snapshots, and TaskManagers SIGKILLed mid-checkpoint
// again and again and a rescale leave committed output with no gap and no duplicate per (key,
// source partition). The job itself fails a TaskManager on any gap or duplicate behind an exchange.
import path from "node:path";
import { HttpTaskManagerClient } from "../../src/coordinator/http-task-manager-client.js";
import { taskManagerUrl } from "../../src/operator/desired.js";
import { TOKEN_SECRET_KEY, tokenSecretName } from "../../src/operator/names.js";
import { clients, containerPid, createNamespace, kubectl, repoRoot } from "./support/cluster.js";
import { operatorUrl } from "../support/operator-release.js";
import { waitFor } from "../support/wait.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import {
  getStreamJob,
  jobNamespace,
  RESTRICTED,
  taskManagerPods,
  waitForStreamJob,
  runningWithNewCheckpoint as runningWith,
  exampleSequenceOutput,
} from "./support/streamjobs.js";

const { core } = clients();
const NAME = "keyed-sequence";
let operator: InstalledOperator;
let operatorNs: string;
let ns: string;

beforeAll(async () => {
  operatorNs = await createNamespace(core, "dataflow-system", RESTRICTED);
  ns = await jobNamespace("dataflow");
  operator = await installOperator(operatorNs, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall().catch(() => undefined);
  for (const name of [ns, operatorNs]) if (name) await core.deleteNamespace({ name }).catch(() => undefined);
});

const latestCheckpoint = async () => (await getStreamJob(ns, NAME)).status?.latestCheckpoint?.id ?? 0;

const runningWithNewCheckpoint = (after: number, what: string) => runningWith(ns, NAME, after, what, 180_000);

async function expectExactOutput(): Promise<void> {
  const report = await exampleSequenceOutput(ns, NAME);
  expect(report.problems).toEqual([]);
  // Every (key, partition) pair of the example's 30 keys and 6 partitions got through both exchanges.
  expect(report.lastValues.size).toBe(30 * 6);
}

test("keyed-sequence runs as applied: aligned checkpoints, their alignment and backpressure in status and metrics", async () => {
  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests", "examples", "keyed-sequence.yaml"));
  const running = await runningWithNewCheckpoint(0, "Running with a checkpoint");
  const latest = running.status!.latestCheckpoint!;
  expect(latest.alignmentDurationMs).toBeGreaterThanOrEqual(0);
  expect(Object.keys(latest.backpressure ?? {}).sort()).toEqual(["count", "source", "verify"]);
  const pods = await taskManagerPods(ns, NAME);
  expect(pods).toHaveLength(3);
  expect(await kubectl("logs", "-n", ns, pods[0]!.metadata!.name!)).toContain("alignmentDurationMs");
  const { ip } = await operator.pod();
  const metrics = await (await fetch(operatorUrl(ip, "/metrics"))).text();
  expect(metrics).toMatch(new RegExp(`streamjob_backpressure_ratio\\{[^}]*name="${NAME}"[^}]*stage="count"`));
  expect(metrics).toMatch(
    new RegExp(`streamjob_checkpoint_alignment_duration_seconds_count\\{[^}]*name="${NAME}"`),
  );
}, 300_000);

test("TaskManagers SIGKILLed mid-checkpoint again and again, then a rescale: no gap, no duplicate", async () => {
  // Checkpoints back to back, so that a kill lands while one is being aligned or uploaded.
  await kubectl(
    "patch",
    "-n",
    ns,
    `sj/${NAME}`,
    "--type=merge",
    "-p",
    JSON.stringify({ spec: { checkpoint: { interval: "500ms" } } }),
  );
  const secret = await core.readNamespacedSecret({ namespace: ns, name: tokenSecretName(NAME) });
  const token = Buffer.from(secret.data![TOKEN_SECRET_KEY]!, "base64").toString("utf8");
  for (let round = 0; round < 3; round++) {
    const before = await getStreamJob(ns, NAME);
    await runningWithNewCheckpoint(
      before.status?.latestCheckpoint?.id ?? 0,
      `a checkpoint before kill ${round + 1}`,
    );
    const pods = await taskManagerPods(ns, NAME);
    const victim = pods[round % pods.length]!;
    // Killed while a checkpoint is under way on it: triggered, not yet completed.
    const tm = new HttpTaskManagerClient({
      taskIndex: round % pods.length,
      baseUrl: taskManagerUrl(victim.status!.podIP!),
      token,
    });
    await waitFor(
      `${victim.metadata!.name} in the middle of a checkpoint`,
      async () => {
        const status = await tm.status();
        return (status.highestTriggeredCheckpointId ?? 0) > (status.lastCompletedCheckpointId ?? 0);
      },
      30_000,
      10,
    );
    process.kill(containerPid(victim), "SIGKILL");
    await waitForStreamJob(
      ns,
      NAME,
      `restart ${round + 1}`,
      (job) => (job.status?.restarts ?? 0) > (before.status?.restarts ?? 0),
      120_000,
    );
  }
  const beforeScale = await latestCheckpoint();
  await runningWithNewCheckpoint(beforeScale, "Running again after the kills");
  await kubectl("scale", "-n", ns, `sj/${NAME}`, "--replicas=2");
  await waitForStreamJob(ns, NAME, "2 TaskManagers", (j) => j.status?.parallelism === 2, 180_000);
  await runningWithNewCheckpoint(await latestCheckpoint(), "a checkpoint at parallelism 2");
  expect(await taskManagerPods(ns, NAME)).toHaveLength(2);

  const events = await kubectl(
    "get",
    "events",
    "-n",
    ns,
    "--field-selector",
    "involvedObject.kind=StreamJob",
  );
  expect(events).not.toContain("exactly-once violated");
  await expectExactOutput();
}, 600_000);
