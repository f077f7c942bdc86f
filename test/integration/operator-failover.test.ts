// Guards against two operator processes at once (a deleted pod's process can run on beside its
// ready replacement): the chart elects a leader with one replica too, and a status write based on
// what an operator read earlier is refused by the real API server, which the coordinator's
// conditional writes rely on (their merge after a 409 is unit-tested in job-coordinators.test.ts).
import path from "node:path";
import type { StreamJob } from "../../src/api/streamjob.js";
import { ClientNodeKubeGateway, isConflict } from "../../src/operator/kube-gateway.js";
import { clients, kubectl, repoRoot, waitFor } from "./support/cluster.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import { getStreamJob, installCrd, jobNamespace, waitForStreamJob } from "./support/streamjobs.js";

const { kc } = clients();
const JOB = "sequence";

let ns: string;
let operator: InstalledOperator;

const job = () => getStreamJob(ns, JOB);
const latestId = (j: StreamJob) => j.status?.latestCheckpoint?.id ?? 0;

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("operator-failover");
  operator = await installOperator(ns, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall();
});

test("the chart elects a leader with one replica too", async () => {
  const { name } = await operator.pod();
  await waitFor("the operator holding the Lease", async () => {
    const lease = await kubectl("get", "lease", "-n", ns, "-o", "jsonpath={.items[*].spec.holderIdentity}");
    return lease.split(" ").includes(name);
  });
});

test("a status write based on an old resourceVersion is refused by the API server", async () => {
  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests", "examples", "sequence.yaml"));
  await waitForStreamJob(ns, JOB, "a first checkpoint", (j) => latestId(j) >= 1, 90_000);
  const gateway = new ClientNodeKubeGateway(kc, "operator-failover-test");
  const current = await job();
  const counts = current.status!.checkpointCounts!;
  const stale = String(Number(current.metadata.resourceVersion) - 1);
  const refused = await gateway
    .patchStatus(ns, JOB, { checkpointCounts: { completed: 0, failed: 0 } }, stale)
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  expect(isConflict(refused)).toBe(true);
  expect((await job()).status!.checkpointCounts!.completed).toBeGreaterThanOrEqual(counts.completed);
}, 120_000);
