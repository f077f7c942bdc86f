// Two operator replicas (leader election with a Lease): only the leader reconciles and coordinates;
// when it goes, the standby takes over the running job without restarting it.
import path from "node:path";
import { CoordinationV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../../src/api/streamjob.js";
import { clients, createNamespace, kubectl, repoRoot, waitFor } from "./support/cluster.js";
import { storageSecretData } from "./support/minio.js";
import { installOperator, type InstalledOperator } from "./support/operator.js";

const { kc, core } = clients();
const custom = kc.makeApiClient(CustomObjectsApi);
const coordination = kc.makeApiClient(CoordinationV1Api);
let ns: string;
let operator: InstalledOperator;

async function job(): Promise<StreamJob> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: PLURAL,
    name: "sequence",
  })) as StreamJob;
}

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
  const text = await (await fetch(`http://${ip}:8080/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${metric} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

async function leaseHolder(): Promise<string | undefined> {
  const leases = await coordination.listNamespacedLease({ namespace: ns });
  return leases.items.find((lease) => lease.spec?.holderIdentity)?.spec?.holderIdentity;
}

beforeAll(async () => {
  ns = await createNamespace(core, "operator-ha", { "pod-security.kubernetes.io/enforce": "restricted" });
  await kubectl("apply", "--server-side", "-f", path.join(repoRoot, "crds", "streamjob.yaml"));
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: "streamjob-storage" }, stringData: await storageSecretData() },
  });
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
