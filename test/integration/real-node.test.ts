// The operator and its TaskManagers on the e2e cluster's real node (kubelet, containerd, runc;
// DEVCLUSTER_NODE=real, src/devcluster/real-node/): the project's images as real containers under
// the restricted Pod Security Standard, each pod with its own IP on the node's bridge, the
// operator reaching the API server through kube-proxy's Service rules. A TaskManager SIGKILLed by
// its container's pid, a rescale, and a TaskManager over its memory limit (killed by the kernel,
// reported, and restored once the limit is raised) all leave output with no gap and no duplicate.
import path from "node:path";
import { readState } from "../../src/devcluster/cluster.js";
import { podNetworkOctet } from "../../src/devcluster/pod-networks.js";
import { nodeNetwork } from "../../src/devcluster/real-node/network.js";
import { IMAGES } from "../../src/images/build.js";
import {
  clients,
  containerPid,
  createNamespace,
  kubectl,
  repoRoot,
  testClusterDir,
} from "./support/cluster.js";
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
const cluster = readState(testClusterDir)!;
let operator: InstalledOperator;
let operatorNs: string;
let ns: string;

beforeAll(async () => {
  operatorNs = await createNamespace(core, "real-system", RESTRICTED);
  ns = await jobNamespace("real");
  operator = await installOperator(operatorNs, [ns]);
}, 180_000);

afterAll(async () => {
  await operator?.uninstall().catch(() => undefined);
  for (const name of [ns, operatorNs]) if (name) await core.deleteNamespace({ name }).catch(() => undefined);
});

const sequence = () => getStreamJob(ns, "sequence");
const latestCheckpoint = async () => (await sequence()).status?.latestCheckpoint?.id ?? 0;

const runningWithNewCheckpoint = (after: number, what: string) => runningWith(ns, "sequence", after, what);

async function expectExactOutput(): Promise<void> {
  const report = await exampleSequenceOutput(ns, "sequence");
  expect(report.problems).toEqual([]);
  expect(report.records).toBeGreaterThan(0);
}

test("the node is real: kubectl get nodes -o wide shows containerd://, the operator runs in a container", async () => {
  expect(cluster.node).toBe("real");
  const wide = await kubectl("get", "nodes", "-o", "wide");
  expect(wide).toMatch(/^devcluster-node\s+Ready\s.*containerd:\/\/2\.\d+\.\d+/m);

  const { name } = await operator.pod();
  const pod = await core.readNamespacedPod({ name, namespace: operatorNs });
  const { podCidr } = nodeNetwork(podNetworkOctet(cluster.podNetwork!));
  expect(pod.status?.podIP?.split(".").slice(0, 3)).toEqual(podCidr.split(".").slice(0, 3));
  expect(pod.status?.containerStatuses?.[0]?.containerID).toMatch(/^containerd:\/\//);
  expect(pod.status?.containerStatuses?.[0]?.image).toBe(IMAGES.operator);
  // It watches StreamJobs through the kubernetes Service: kube-proxy's rules in the node's namespace.
  expect(await operator.logs()).toContain("watches synced");
  // Cluster DNS (CoreDNS behind the kube-dns Service), asked from inside the container via the kubelet.
  const resolve = "require('dns').promises.lookup(process.argv[1]).then((a) => console.log(a.address))";
  const lookup = (host: string) =>
    kubectl("exec", "-n", operatorNs, name, "--", "/nodejs/bin/node", "-e", resolve, host);
  expect((await lookup("kubernetes.default.svc.cluster.local")).trim()).toBe("10.0.0.1");
  expect((await lookup("kube-dns.kube-system")).trim()).toBe("10.0.0.10");
});

test("sequence on real containers: a TaskManager SIGKILLed by pid is restored from a checkpoint", async () => {
  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests", "examples", "sequence.yaml"));
  await runningWithNewCheckpoint(0, "Running with a checkpoint");
  const [victim] = await taskManagerPods(ns, "sequence");
  // Its logs come from the kubelet, through the API server.
  expect(await kubectl("logs", "-n", ns, victim!.metadata!.name!)).toContain("checkpoint cut taken");

  process.kill(containerPid(victim!), "SIGKILL");
  const restarted = await waitForStreamJob(
    ns,
    "sequence",
    "restarted",
    (j) => (j.status?.restarts ?? 0) >= 1,
    60_000,
  );
  await runningWithNewCheckpoint(
    restarted.status?.latestCheckpoint?.id ?? 0,
    "a checkpoint after the restore",
  );
  const events = await kubectl(
    "get",
    "events",
    "-n",
    ns,
    "--field-selector",
    "involvedObject.kind=StreamJob",
  );
  expect(events).toContain(
    `TaskManager ${victim!.metadata!.name} was killed by its liveness probe or a SIGKILL (exit code 137`,
  );
  await expectExactOutput();
}, 240_000);

test("kubectl scale to 3: three real TaskManagers, each with its own pod IP", async () => {
  const before = await latestCheckpoint();
  await kubectl("scale", "-n", ns, "sj/sequence", "--replicas=3");
  await waitForStreamJob(ns, "sequence", "3 TaskManagers", (j) => j.status?.parallelism === 3, 120_000);
  await runningWithNewCheckpoint(before, "a checkpoint at parallelism 3");
  const pods = await taskManagerPods(ns, "sequence");
  expect(pods).toHaveLength(3);
  expect(new Set(pods.map((pod) => pod.status?.podIP)).size).toBe(3);
  await expectExactOutput();
}, 240_000);

test("over its memory limit a TaskManager is OOMKilled by the kernel, reported, and restored when the limit is raised", async () => {
  const limit = (memory: string) =>
    kubectl(
      "patch",
      "-n",
      ns,
      "sj/sequence",
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { template: { resources: { limits: { memory } } } } }),
    );
  await limit("20Mi");
  const reported = await waitForStreamJob(
    ns,
    "sequence",
    "a Ready condition naming the memory limit",
    (j) => Boolean(j.status?.conditions?.some((c) => c.type === "Ready" && c.message?.includes("OOMKilled"))),
    120_000,
  );
  const ready = reported.status!.conditions!.find((c) => c.type === "Ready")!;
  expect(ready.message).toMatch(
    /was killed by the kernel for going over its memory limit .*\(exit code 137, OOMKilled\)/,
  );
  const before = await latestCheckpoint();

  await limit("256Mi");
  await runningWithNewCheckpoint(before, "Running again after the limit was raised");
  await expectExactOutput();
}, 300_000);
