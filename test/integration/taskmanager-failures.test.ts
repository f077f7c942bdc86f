// A TaskManager that cannot start says why, all the way up: it writes its termination message, the
// node agent puts it into the pod's container status as the kubelet does, and the operator (installed
// with the chart) puts it into the StreamJob's events and Degraded condition. A configuration error
// fails the job at once instead of restarting it up to maxRestarts times; a spec change redeploys.
// A TaskManager killed by its liveness probe reads as such, not as a clean exit.
import { exampleJob } from "../support/streamjob.js";
import { sleep } from "../support/wait.js";
import { clients, containerPid, kubectl } from "./support/cluster.js";
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
const JOB = "misnamed";
const WHY =
  'job.name "nope": not a built-in job (sequence, wordcount, kafka-sequence, orders-by-customer, customer-totals, keyed-sequence) nor an absolute module path';

let ns: string;
let operator: InstalledOperator;

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("start-failure");
  operator = await installOperator(ns, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall();
});

async function jobEvents(): Promise<{ reason: string; message: string }[]> {
  const list = await core.listNamespacedEvent({
    namespace: ns,
    fieldSelector: `involvedObject.kind=StreamJob,involvedObject.name=${JOB}`,
  });
  return list.items.map((event) => ({ reason: event.reason ?? "", message: event.message ?? "" }));
}

test("an unknown job.name fails the job with the TaskManager's reason, without restarts, until the spec changes", async () => {
  const example = exampleJob("sequence");
  const body = {
    ...example,
    metadata: { name: JOB, namespace: ns },
    spec: { ...example.spec, parallelism: 1, job: { name: "nope" }, restart: { maxRestarts: 5 } },
  };
  await createStreamJob(ns, body);

  const failed = await waitForStreamJob(ns, JOB, "phase Failed", (j) => j.status?.phase === "Failed", 90_000);
  expect(failed.status).toMatchObject({ epoch: 1, restarts: 0 });
  const degraded = failed.status?.conditions?.find((c) => c.type === "Degraded");
  expect(degraded).toMatchObject({ status: "True", reason: "ConfigurationError" });
  expect(degraded?.message).toContain(`exit code 78, Error): refusing to start: configuration error: ${WHY}`);
  expect(degraded?.message).toContain("change the spec to redeploy");

  // The kubelet's part: the container's termination message, from the file the TaskManager wrote.
  const [pod] = await taskManagerPods(ns, JOB);
  const terminated = pod?.status?.containerStatuses?.[0]?.state?.terminated;
  expect(terminated).toMatchObject({ exitCode: 78, reason: "Error" });
  expect(terminated?.message).toBe(`refusing to start: configuration error: ${WHY}`);

  const events = await jobEvents();
  expect(events).toContainEqual({ reason: "ConfigurationError", message: expect.stringContaining(WHY) });
  expect(events.some((event) => event.reason === "Restarting")).toBe(false);

  // Given time to restart (its backoff starts at 1s), it does not: still the one pod of epoch 1.
  await sleep(8_000);
  const later = await getStreamJob(ns, JOB);
  expect(later.status).toMatchObject({ phase: "Failed", epoch: 1, restarts: 0 });
  expect((await taskManagerPods(ns, JOB)).map((p) => p.metadata?.name)).toEqual([`${JOB}-tm-1-0`]);
  expect((await jobEvents()).filter((event) => event.reason === "ConfigurationError")).toHaveLength(1);

  // A new generation with a job that exists redeploys it.
  await kubectl(
    "patch",
    "sj",
    JOB,
    "-n",
    ns,
    "--type=merge",
    "-p",
    JSON.stringify({ spec: { job: { name: "sequence", args: ["--keys", "4", "--rate", "5"] } } }),
  );
  const fixed = await waitForStreamJob(
    ns,
    JOB,
    "phase Running",
    (j) => j.status?.phase === "Running",
    90_000,
  );
  expect(fixed.status?.epoch).toBe(2);
  expect(fixed.status?.conditions?.find((c) => c.type === "Degraded")).toMatchObject({ status: "False" });
}, 240_000);

test("a hung TaskManager killed by its liveness probe restarts the job, and the event says it was killed", async () => {
  const running = await getStreamJob(ns, JOB);
  expect(running.status?.phase).toBe("Running");
  const [pod] = await taskManagerPods(ns, JOB);
  // Stopped, it answers no probe and cannot act on SIGTERM: after 3 failed probes (5s apart) and the
  // 30s grace period the node agent kills it, as a kubelet would.
  process.kill(containerPid(pod!), "SIGSTOP");
  const restarted = await waitForStreamJob(
    ns,
    JOB,
    "a restart",
    (j) => (j.status?.epoch ?? 0) > running.status!.epoch!,
    120_000,
  );
  expect(restarted.status?.restarts).toBe(1);
  const restarting = (await jobEvents()).filter((event) => event.reason === "Restarting");
  expect(restarting).toHaveLength(1);
  expect(restarting[0]!.message).toContain(
    `TaskManager ${pod!.metadata!.name} was killed by its liveness probe or a SIGKILL (exit code 137, Error)`,
  );
  const killing = await core.listNamespacedEvent({
    namespace: ns,
    fieldSelector: `involvedObject.name=${pod!.metadata!.name},reason=Killing`,
  });
  expect(killing.items.map((event) => event.message)).toContain(
    "Container taskmanager failed liveness probe, will be restarted",
  );
}, 180_000);
