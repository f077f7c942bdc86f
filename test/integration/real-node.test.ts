// A real node joined to the test cluster: kubelet, containerd and runc, pods on a CNI bridge
// (src/devcluster/real-node/). The TaskManager image runs there as the operator would start it,
// under the restricted Pod Security Standard, and a TaskManager over its memory limit is killed by
// the kernel. (Only pods pinned to the node run there: the cluster's other pods stay on the
// emulated node, and the real node has no kube-proxy yet.)
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { StreamJobSpec, type StreamJob } from "../../src/api/streamjob.js";
import { exportImage, IMAGES } from "../../src/images/build.js";
import { desiredChildren, TASKMANAGER_PORT } from "../../src/operator/desired.js";
import { importImage } from "../../src/devcluster/real-node/images.js";
import {
  startRealNode,
  stopRealNode,
  waitRealNodeReady,
  type RealNodeState,
} from "../../src/devcluster/real-node/node.js";
import { readState } from "../../src/devcluster/cluster.js";
import { sequenceExample } from "../support/streamjob.js";
import { waitFor } from "../support/wait.js";
import { clients, createNamespace, kubeconfigPath, kubectl, testClusterDir } from "./support/cluster.js";

const NODE = "devcluster-real";
let node: RealNodeState;
let namespace: string;

beforeAll(async () => {
  const cluster = readState(testClusterDir)!;
  node = await startRealNode({
    clusterDir: testClusterDir,
    apiserverUrl: cluster.apiserverUrl,
    caCert: path.join(testClusterDir, "pki", "ca.crt"),
    caKey: path.join(testClusterDir, "pki", "ca.key"),
    adminKubeconfig: kubeconfigPath,
    nodeName: NODE,
    log: () => undefined,
  });
  const work = mkdtempSync(path.join(tmpdir(), "real-node-images-"));
  try {
    const tarball = path.join(work, "taskmanager.tar");
    await exportImage(IMAGES.taskmanager, tarball);
    await importImage(node.binaries.ctr, node.containerdSocket, tarball, { snapshotter: node.snapshotter });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  await waitRealNodeReady(kubeconfigPath, NODE);
  namespace = await createNamespace(clients().core, "real-node", {
    "pod-security.kubernetes.io/enforce": "restricted",
  });
}, 600_000);

afterAll(async () => {
  await stopRealNode({ clusterDir: testClusterDir, nodeName: NODE, adminKubeconfig: kubeconfigPath });
}, 120_000);

test("kubectl get nodes -o wide shows the real node with its containerd:// runtime", async () => {
  const wide = await kubectl("get", "nodes", "-o", "wide");
  const row = wide.split("\n").find((line) => line.startsWith(`${NODE} `));
  expect(row).toMatch(/\sReady\s/);
  expect(row).toMatch(/containerd:\/\/2\.\d+\.\d+/);
});

/** The operator's own pod for task 0 of the sequence example, pinned to the real node. */
async function taskManagerPod(name: string, memoryLimit?: string): Promise<{ pod: V1Pod; token: string }> {
  const example = sequenceExample();
  const job: StreamJob = {
    ...example,
    metadata: { name, namespace, uid: randomBytes(8).toString("hex") },
    spec: StreamJobSpec.parse({
      ...example.spec,
      image: IMAGES.taskmanager,
      parallelism: 1,
      ...(memoryLimit && { template: { resources: { limits: { memory: memoryLimit } } } }),
    }),
  };
  const { pods, tokenSecret } = desiredChildren({
    job,
    epoch: 1,
    storage: { endpoint: "http://storage.invalid:9000", region: "us-east-1" },
  });
  const token = randomBytes(24).toString("base64url");
  const core = clients().core;
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: tokenSecret.name }, stringData: { [tokenSecret.key]: token } },
  });
  const storageSecret = job.spec.checkpoint.storage.secretName;
  await core
    .createNamespacedSecret({
      namespace,
      body: { metadata: { name: storageSecret }, stringData: { accessKey: "unused", secretKey: "unused" } },
    })
    .catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const pod = pods[0]!;
  // No StreamJob owns it here (the garbage collector would delete an orphan), and no scheduler
  // places it: it goes to the real node by name. The image is in containerd already.
  pod.metadata!.ownerReferences = undefined;
  pod.spec!.nodeName = NODE;
  pod.spec!.containers[0]!.imagePullPolicy = "Never";
  const created = await core.createNamespacedPod({ namespace, body: pod });
  return { pod: created, token };
}

function readPod(name: string): Promise<V1Pod> {
  return clients().core.readNamespacedPod({ name, namespace });
}

test("the TaskManager image runs as the operator starts it, restricted, with its own pod IP on the bridge", async () => {
  const { pod, token } = await taskManagerPod("sequence");
  const ready = await waitFor(
    "the TaskManager pod Ready",
    async () => {
      const current = await readPod(pod.metadata!.name!);
      const terminated = current.status?.containerStatuses?.[0]?.state?.terminated;
      if (terminated) throw new Error(`terminated: ${terminated.reason} ${terminated.message}`);
      return current.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") && current;
    },
    120_000,
  );
  const podIp = ready.status!.podIP!;
  const [network, prefix] = node.podCidr.split("/");
  expect(prefix).toBe("24");
  expect(podIp.split(".").slice(0, 3)).toEqual(network!.split(".").slice(0, 3));

  // From the host, across the bridge, as the operator calls it: the authenticated status.
  const status = await fetch(`http://${podIp}:${TASKMANAGER_PORT}/v1/status`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(status.status).toBe(200);
  expect(await status.json()).toMatchObject({ epoch: 1, taskIndex: 0, ready: true });
  expect((await fetch(`http://${podIp}:${TASKMANAGER_PORT}/v1/status`)).status).toBe(401);

  // Logs come from the kubelet, through the API server.
  expect(await kubectl("logs", "-n", namespace, pod.metadata!.name!)).toContain('"epoch":1');
});

test("a TaskManager over its memory limit is killed by the kernel: the kubelet reports OOMKilled, exit 137", async () => {
  const { pod } = await taskManagerPod("hungry", "20Mi");
  const terminated = await waitFor(
    "the TaskManager container terminated",
    async () => (await readPod(pod.metadata!.name!)).status?.containerStatuses?.[0]?.state?.terminated,
    120_000,
  );
  expect(terminated).toMatchObject({ reason: "OOMKilled", exitCode: 137 });
});
