// The operator end to end on the real local cluster: installed with the chart (a pod under its own
// ServiceAccount and the chart's least-privilege RBAC, so a missing permission fails here), running
// the shipped `sequence` example in a namespace that enforces the "restricted" Pod Security Standard.
// The tests run in order and share the job: run → recover → scale → suspend/resume → operator
// restart → delete. The sequence job fails a task on any gap or duplicate in its state, and the
// committed output is checked for the same after every step.
import path from "node:path";
import { jobDirectory } from "../../src/api/object-layout.js";
import type { StreamJob } from "../../src/api/streamjob.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { MinioObjectStore } from "../../src/storage/minio-object-store.js";
import { clients, containerPid, kubectl, repoRoot, waitFor } from "./support/cluster.js";
import { storageConfig } from "./support/minio.js";
import { operatorUrl } from "../support/operator-release.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import {
  createStreamJob,
  getStreamJob,
  installCrd,
  jobNamespace,
  taskManagerPods,
  waitForStreamJob,
} from "./support/streamjobs.js";

const { core } = clients();
const example = path.join(repoRoot, "manifests", "examples", "sequence.yaml");
const JOB = "sequence";

let ns: string;
let operator: InstalledOperator;
let store: MinioObjectStore;

const job = (name = JOB) => getStreamJob(ns, name);
const pods = (name = JOB) => taskManagerPods(ns, name);
const waitForStatus = (what: string, predicate: (job: StreamJob) => boolean) =>
  waitForStreamJob(ns, JOB, what, predicate);

/** Waits until `count` more checkpoints completed after the current latest (or after `after`). */
async function checkpointsAdvance(count: number, after?: number): Promise<StreamJob> {
  const from = after ?? (await job()).status?.latestCheckpoint?.id ?? 0;
  return waitForStatus(
    `${count} checkpoints after ${from}`,
    (j) => (j.status?.latestCheckpoint?.id ?? 0) >= from + count,
  );
}

async function expectExactOutput(): Promise<void> {
  const report = await verifySequenceOutput(store, jobDirectory("checkpoints", ns, JOB));
  expect(report.problems).toEqual([]);
  expect(report.records).toBeGreaterThan(0);
}

async function events(reason: string): Promise<string[]> {
  const list = await core.listNamespacedEvent({ namespace: ns, fieldSelector: `reason=${reason}` });
  return list.items.map((event) => event.message ?? "");
}

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("operator");
  store = new MinioObjectStore({ ...(await storageConfig()), bucket: "streamjob" });
  operator = await installOperator(ns, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall();
});

test("the sequence example runs: pods under restricted PSS, checkpoints advance in status", async () => {
  await kubectl("apply", "-n", ns, "-f", example);
  const running = await waitForStatus("phase Running", (j) => j.status?.phase === "Running");
  expect(running.status).toMatchObject({ parallelism: 2, epoch: 1, restarts: 0 });
  const tms = await pods();
  expect(tms.map((pod) => pod.metadata?.name).sort()).toEqual(["sequence-tm-1-0", "sequence-tm-1-1"]);
  for (const pod of tms) {
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "StreamJob",
      name: JOB,
      controller: true,
    });
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
  }
  const advanced = await checkpointsAdvance(2);
  const latest = advanced.status!.latestCheckpoint!;
  expect(latest.path).toBe(`checkpoints/${ns}/${JOB}/chk-${latest.id}/_metadata`);
  // The status names only a committed checkpoint: its manifest is in the bucket.
  expect(await store.stat(latest.path)).not.toBeNull();
  expect(advanced.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
  expect(await kubectl("get", "sj", "-n", ns)).toMatch(new RegExp(`${JOB}\\s+Running\\s+2\\s+\\d+`));
  expect((await events("CheckpointCompleted")).length).toBeGreaterThan(0);
}, 120_000);

test("a deleted pod and a killed TaskManager: the job restarts from the latest checkpoint with exact state", async () => {
  const before = await job();
  const [first, second] = (await pods()).sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
  const killedAt = Date.now();
  await Promise.all([
    core.deleteNamespacedPod({ namespace: ns, name: first!.metadata!.name! }),
    Promise.resolve(process.kill(containerPid(second!), "SIGKILL")),
  ]);
  const restored = await waitForStatus(
    "a new epoch running",
    (j) => (j.status?.epoch ?? 0) > before.status!.epoch! && j.status?.phase === "Running",
  );
  const recoveryMs = Date.now() - killedAt;
  expect(restored.status!.restarts).toBeGreaterThanOrEqual(1);
  // Restored from the newest checkpoint there was, never an older one.
  expect(restored.status!.lastRestore!.checkpointId).toBeGreaterThanOrEqual(
    before.status!.latestCheckpoint!.id,
  );
  expect(recoveryMs).toBeLessThan(30_000);
  expect((await events("Restarting")).join("\n")).toMatch(/restarting from checkpoint \d+/);
  await checkpointsAdvance(2);
  // A replayed or skipped record would have failed a task (and restarted the job again).
  expect((await job()).status!.restarts).toBe(restored.status!.restarts);
  await expectExactOutput();
}, 120_000);

test("kubectl scale 2 → 3 redeploys from a checkpoint with key groups redistributed", async () => {
  const before = await job();
  await kubectl("scale", "-n", ns, `sj/${JOB}`, "--replicas=3");
  const scaled = await waitForStatus(
    "3 TaskManagers running",
    (j) => j.status?.parallelism === 3 && j.status?.phase === "Running",
  );
  expect(scaled.status!.epoch).toBeGreaterThan(before.status!.epoch!);
  expect(scaled.status!.lastRestore!.checkpointId).toBeGreaterThanOrEqual(
    before.status!.latestCheckpoint!.id,
  );
  expect((await pods()).length).toBe(3);
  await checkpointsAdvance(2);
  await expectExactOutput();
}, 120_000);

test("suspend takes a savepoint and removes the pods; resume restores from it", async () => {
  await kubectl("patch", "sj", JOB, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}');
  const suspended = await waitForStatus("phase Suspended", (j) => j.status?.phase === "Suspended");
  const savepoint = suspended.status!.latestSavepoint!;
  expect(savepoint.path).toMatch(/savepoint-\d+\/_metadata$/);
  await waitFor("pods gone", async () => (await pods()).length === 0, 60_000);

  await kubectl("patch", "sj", JOB, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}');
  const resumed = await waitForStatus("Running again", (j) => j.status?.phase === "Running");
  expect(resumed.status!.lastRestore!.checkpointId).toBeGreaterThanOrEqual(savepoint.id);
  await checkpointsAdvance(1);
  await expectExactOutput();
}, 120_000);

test("an operator restart loses nothing: the job keeps its epoch and checkpoint ids keep growing", async () => {
  const before = await job();
  const { name } = await operator.pod();
  await core.deleteNamespacedPod({ namespace: ns, name });
  await waitFor("a new operator pod", async () => (await operator.pod()).name !== name, 90_000);
  const after = await checkpointsAdvance(2, before.status!.latestCheckpoint!.id);
  expect(after.status!.epoch).toBe(before.status!.epoch);
  expect(after.status!.restarts).toBe(before.status!.restarts);
  expect(after.status!.checkpointCounts!.completed).toBeGreaterThan(
    before.status!.checkpointCounts!.completed,
  );
}, 150_000);

test("the operator serves health and Prometheus metrics", async () => {
  const { ip } = await operator.pod();
  expect((await fetch(operatorUrl(ip, "/healthz"))).status).toBe(200);
  expect((await fetch(operatorUrl(ip, "/readyz"))).status).toBe(200);
  const metrics = await (await fetch(operatorUrl(ip, "/metrics"))).text();
  expect(metrics).toMatch(
    new RegExp(
      `streamjob_checkpoints_completed_total\\{namespace="${ns}",name="${JOB}",kind="checkpoint"\\} [1-9]`,
    ),
  );
  expect(metrics).toContain("streamjob_reconcile_duration_seconds_bucket");
});

test("a job whose storage Secret is missing is Degraded with an event; nothing is deleted", async () => {
  const manifest = (await kubectl("create", "--dry-run=client", "-o", "json", "-f", example)).toString();
  const broken = JSON.parse(manifest) as StreamJob;
  broken.metadata = { name: "no-secret", namespace: ns };
  broken.spec.checkpoint.storage.secretName = "does-not-exist";
  await createStreamJob(ns, broken);
  const degraded = await waitFor("Degraded", async () => {
    const current = await job("no-secret");
    return current.status?.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
  });
  expect(degraded.reason).toBe("StorageSecretInvalid");
  expect(degraded.message).toContain("does-not-exist");
  await waitFor("a Warning event", async () => (await events("StorageSecretInvalid")).length > 0);
  expect(await pods("no-secret")).toEqual([]);
  // The running job is untouched by its neighbour's trouble.
  expect((await job()).status?.phase).toBe("Running");
  await kubectl("delete", "sj", "no-secret", "-n", ns);
});

test("deleting the StreamJob removes its pods and token Secret; its checkpoints stay in storage", async () => {
  const last = (await job()).status!.latestCheckpoint!;
  await kubectl("delete", "sj", JOB, "-n", ns);
  await waitFor("pods gone", async () => (await pods()).length === 0, 60_000);
  await waitFor("token Secret gone", async () => {
    const secrets = await core.listNamespacedSecret({ namespace: ns });
    return !secrets.items.some((s) => s.metadata?.name === `${JOB}-token`);
  });
  expect(await store.stat(last.path)).not.toBeNull();
  const logs = await operator.logs();
  expect(logs).not.toMatch(/"level":50/);
}, 90_000);
