// Two operator replicas (leader election with a Lease): only the leader reconciles and coordinates;
// when it goes, the standby takes over the running job without restarting it.
import path from "node:path";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { operatorUrl } from "../support/operator-release.js";
import { clients, kubectl, repoRoot, waitFor } from "./support/cluster.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";
import { getStreamJob, installCrd, jobNamespace } from "./support/streamjobs.js";

const { kc, core } = clients();
const coordination = kc.makeApiClient(CoordinationV1Api);
let ns: string;
let operator: InstalledOperator;

const job = () => getStreamJob(ns, "sequence");

async function operatorPods(): Promise<{ name: string; ip: string }[]> {
  const pods = await core.listNamespacedPod({
    namespace: ns,
    labelSelector: `app.kubernetes.io/instance=${operator.release}`,
  });
  return pods.items
    .filter((p) => !p.metadata?.deletionTimestamp && p.status?.podIP && p.status.phase === "Running")
    .map((p) => ({ name: p.metadata!.name!, ip: p.status!.podIP! }));
}

async function gauge(ip: string, metric: string): Promise<number> {
  const text = await (await fetch(operatorUrl(ip, "/metrics"))).text();
  const line = text.split("\n").find((l) => l.startsWith(`${metric} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

async function leaseHolder(): Promise<string | undefined> {
  const leases = await coordination.listNamespacedLease({ namespace: ns });
  return leases.items.find((lease) => lease.spec?.holderIdentity)?.spec?.holderIdentity;
}

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("operator-ha");
  operator = await installOperator(ns, [ns], ["--set", "replicas=2"]);
  await waitFor("two operator pods", async () => (await operatorPods()).length === 2, 60_000);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall();
});

test("one leader coordinates; the standby takes over without restarting the job", async () => {
  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests", "examples", "sequence.yaml"));
  const first = await waitFor(
    "two checkpoints",
    async () => {
      const current = await job();
      return (current.status?.latestCheckpoint?.id ?? 0) >= 2 ? current : undefined;
    },
    90_000,
  );

  const leader = await waitFor("a Lease holder", leaseHolder);
  const pods = await operatorPods();
  expect(pods.map((p) => p.name)).toContain(leader);
  for (const pod of pods) {
    const leading = pod.name === leader;
    expect(await gauge(pod.ip, "streamjob_leader")).toBe(leading ? 1 : 0);
    expect(await gauge(pod.ip, "streamjob_coordinators")).toBe(leading ? 1 : 0);
  }

  await core.deleteNamespacedPod({ namespace: ns, name: leader });
  const successor = await waitFor(
    "another Lease holder",
    async () => {
      const holder = await leaseHolder();
      return holder && holder !== leader ? holder : undefined;
    },
    60_000,
  );
  expect(successor).not.toBe(leader);
  const after = await waitFor(
    "checkpoints continuing under the new leader",
    async () => {
      const current = await job();
      return (current.status?.latestCheckpoint?.id ?? 0) >= first.status!.latestCheckpoint!.id + 2
        ? current
        : undefined;
    },
    90_000,
  );
  // Taken over, not restarted: same epoch, no restart counted.
  expect(after.status!.epoch).toBe(first.status!.epoch);
  expect(after.status!.restarts).toBe(0);
}, 240_000);
