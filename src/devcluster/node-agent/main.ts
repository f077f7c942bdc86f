// The local node agent: stands in for the kubelet and container runtime of one Node, nothing
// more. It registers the Node and keeps its Lease fresh, binds unscheduled pods whose
// nodeSelector fits, runs every pod bound to it as local processes (see PodRunner), finishes
// graceful deletions, and serves the kubelet's log endpoint so `kubectl logs` works.
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { z } from "zod";
import { repoRoot } from "../assets.js";
import { loadImageMap } from "./images.js";
import { startLogServer } from "./log-server.js";
import { PodIPAllocator } from "./pod-ips.js";
import { PodRunner } from "./pod-runner.js";

const Config = z.object({
  KUBECONFIG: z.string().min(1),
  DEVCLUSTER_DIR: z.string().min(1),
  DEVCLUSTER_NODE_NAME: z.string().min(1),
  DEVCLUSTER_CA_FILE: z.string().min(1),
  DEVCLUSTER_KUBELET_PORT: z.coerce.number().int().positive(),
  DEVCLUSTER_KUBELET_CERT: z.string().min(1),
  DEVCLUSTER_KUBELET_KEY: z.string().min(1),
  DEVCLUSTER_IMAGES: z.string().optional(),
  /** N of the 127.N.0.0/16 block the cluster claimed for its pods. */
  DEVCLUSTER_POD_NETWORK_OCTET: z.coerce.number().int().min(1).max(254),
});

const config = Config.parse(process.env);
const log = pino({ name: "node-agent", level: process.env.LOG_LEVEL ?? "info" });
const kc = new KubeConfig();
kc.loadFromFile(config.KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const nodeName = config.DEVCLUSTER_NODE_NAME;
const apiserverUrl = new URL(kc.getCurrentCluster()!.server);
const imageMap = loadImageMap(repoRoot, config.DEVCLUSTER_IMAGES);
const logDir = path.join(config.DEVCLUSTER_DIR, "logs");
const podsDir = path.join(config.DEVCLUSTER_DIR, "pods");
const caCert = readFileSync(config.DEVCLUSTER_CA_FILE, "utf8");
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const isNotFound = (err: unknown) => (err as { code?: number }).code === 404;

const nodeLabels = {
  "kubernetes.io/hostname": nodeName,
  "kubernetes.io/os": "linux",
  "kubernetes.io/arch": "amd64",
  "node.kubernetes.io/instance-type": "devcluster",
};

function readyCondition() {
  const at = new Date();
  return [
    {
      type: "Ready",
      status: "True",
      reason: "KubeletReady",
      message: "node agent is posting ready status",
      lastHeartbeatTime: at,
      lastTransitionTime: at,
    },
    ...["MemoryPressure", "DiskPressure", "PIDPressure"].map((type) => ({
      type,
      status: "False",
      reason: `KubeletHas${type === "PIDPressure" ? "SufficientPID" : type === "MemoryPressure" ? "SufficientMemory" : "NoDiskPressure"}`,
      lastHeartbeatTime: at,
      lastTransitionTime: at,
    })),
  ];
}

async function registerNode(): Promise<void> {
  const node: V1Node = { metadata: { name: nodeName, labels: nodeLabels } };
  try {
    await core.createNode({ body: node });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  const capacity = { cpu: "2", memory: "24Gi", pods: "110", "ephemeral-storage": "50Gi" };
  await core.patchNodeStatus(
    {
      name: nodeName,
      body: {
        status: {
          capacity,
          allocatable: capacity,
          conditions: readyCondition(),
          addresses: [
            { type: "InternalIP", address: "127.0.0.1" },
            { type: "Hostname", address: nodeName },
          ],
          daemonEndpoints: { kubeletEndpoint: { Port: config.DEVCLUSTER_KUBELET_PORT } },
          nodeInfo: {
            architecture: "amd64",
            operatingSystem: "linux",
            kubeletVersion: "v1.36.3-devcluster",
            kubeProxyVersion: "",
            containerRuntimeVersion: "local-process://1",
            kernelVersion: "",
            osImage: "streamjob devcluster",
            machineID: "",
            systemUUID: "",
            bootID: "",
          },
        },
      },
    },
    mergePatch,
  );
}

// The node lifecycle controller marks a Node NotReady (and evicts its pods) when its Lease is
// not renewed; the kubelet renews every 10s.
async function renewLease(): Promise<void> {
  const namespace = "kube-node-lease";
  // MicroTime wants six fractional digits; the client would send Date's three.
  const renewTime = new Date().toISOString().replace(/Z$/, "000Z");
  const body = { spec: { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime } };
  try {
    await coordination.patchNamespacedLease({ name: nodeName, namespace, body }, mergePatch);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await coordination.createNamespacedLease({ namespace, body: { metadata: { name: nodeName } } });
    await coordination.patchNamespacedLease({ name: nodeName, namespace, body }, mergePatch);
  }
}

function every(ms: number, what: string, fn: () => Promise<void>): NodeJS.Timeout {
  return setInterval(() => fn().catch((err: Error) => log.warn({ err }, `${what} failed`)), ms);
}

const decode = (data: Record<string, string> | undefined) =>
  data &&
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));

const sources = {
  async secret(namespace: string, name: string) {
    try {
      return decode((await core.readNamespacedSecret({ name, namespace })).data) ?? {};
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  },
  async configMap(namespace: string, name: string) {
    try {
      return (await core.readNamespacedConfigMap({ name, namespace })).data ?? {};
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  },
  async serviceAccountToken(pod: V1Pod, audience: string | undefined, expirationSeconds: number) {
    const response = await core.createNamespacedServiceAccountToken({
      name: pod.spec?.serviceAccountName ?? "default",
      namespace: pod.metadata!.namespace!,
      body: {
        spec: {
          audiences: audience ? [audience] : [],
          expirationSeconds,
          // Bound to the pod: the token stops working once the pod is gone.
          boundObjectRef: {
            kind: "Pod",
            apiVersion: "v1",
            name: pod.metadata!.name!,
            uid: pod.metadata!.uid!,
          },
        },
      },
    });
    return response.status!.token;
  },
  caCert: () => caCert,
};

/** Best effort, like the kubelet's: a lost event is not worth failing anything for. */
function recordEvent(pod: V1Pod, type: "Normal" | "Warning", reason: string, message: string): void {
  const now = new Date();
  const namespace = pod.metadata!.namespace!;
  core
    .createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${pod.metadata!.name}.` },
        involvedObject: {
          apiVersion: "v1",
          kind: "Pod",
          name: pod.metadata!.name,
          namespace,
          uid: pod.metadata!.uid,
        },
        type,
        reason,
        message,
        source: { component: "devcluster-node-agent", host: nodeName },
        reportingComponent: "devcluster-node-agent",
        reportingInstance: nodeName,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    })
    .catch((err: Error) => log.warn({ err, reason }, "recording an event failed"));
}

const runners = new Map<string, PodRunner>();
const ips = new PodIPAllocator(config.DEVCLUSTER_POD_NETWORK_OCTET);

function keyOf(pod: V1Pod): string {
  return `${pod.metadata?.namespace}/${pod.metadata?.name}`;
}

async function bindIfFits(pod: V1Pod): Promise<void> {
  const selector = pod.spec?.nodeSelector ?? {};
  const fits = Object.entries(selector).every(([k, v]) => (nodeLabels as Record<string, string>)[k] === v);
  if (!fits) return; // stays Pending, as with a real scheduler and no matching node
  try {
    await core.createNamespacedPodBinding({
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      body: {
        metadata: { name: pod.metadata!.name! },
        target: { apiVersion: "v1", kind: "Node", name: nodeName },
      },
    });
    recordEvent(pod, "Normal", "Scheduled", `Successfully assigned ${keyOf(pod)} to ${nodeName}`);
  } catch (err) {
    if ((err as { code?: number }).code !== 409) log.warn({ err, pod: keyOf(pod) }, "binding failed");
  }
}

/** Finishes a graceful deletion: containers stopped, then the object removed (uid-guarded). */
async function finishDeletion(pod: V1Pod): Promise<void> {
  const uid = pod.metadata!.uid!;
  const runner = runners.get(uid);
  if (runner) {
    await runner.stop(pod.metadata?.deletionGracePeriodSeconds ?? 30);
    runners.delete(uid);
    ips.release(uid);
  }
  try {
    await core.deleteNamespacedPod({
      name: pod.metadata!.name!,
      namespace: pod.metadata!.namespace!,
      body: { gracePeriodSeconds: 0, preconditions: { uid } },
    });
  } catch (err) {
    if (!isNotFound(err) && (err as { code?: number }).code !== 409) throw err;
  }
}

// One sync at a time per pod; events that arrive meanwhile are folded into one more pass.
const inFlight = new Map<string, Promise<void>>();
const again = new Set<string>();

function enqueue(pod: V1Pod): void {
  const key = pod.metadata!.uid!;
  if (inFlight.has(key)) {
    again.add(key);
    return;
  }
  const run = syncPod(pod)
    .catch((err: Error) => log.warn({ err, pod: keyOf(pod) }, "sync failed"))
    .finally(() => {
      inFlight.delete(key);
      if (again.delete(key)) {
        const latest = informer.get(pod.metadata!.name!, pod.metadata!.namespace);
        if (latest?.metadata?.uid === key) enqueue(latest);
      }
    });
  inFlight.set(key, run);
}

async function syncPod(pod: V1Pod): Promise<void> {
  if (!pod.spec?.nodeName) {
    if (!pod.metadata?.deletionTimestamp) await bindIfFits(pod);
    return;
  }
  if (pod.spec.nodeName !== nodeName) return;
  const uid = pod.metadata!.uid!;
  if (pod.metadata?.deletionTimestamp) return finishDeletion(pod);
  const existing = runners.get(uid);
  if (existing) return existing.update(pod);
  if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") return;

  const podIP = ips.allocate(uid);
  const podLog = log.child({ pod: keyOf(pod) });
  const runner = new PodRunner(pod, {
    sources,
    imageMap,
    podIP,
    podDir: path.join(podsDir, `${pod.metadata!.namespace}_${pod.metadata!.name}_${uid.slice(0, 8)}`),
    logDir,
    apiserver: { host: apiserverUrl.hostname, port: apiserverUrl.port },
    log: podLog,
    recordEvent,
    reportStatus: async (p, status) => {
      if (!runners.has(uid)) return;
      await core.patchNamespacedPodStatus(
        { name: p.metadata!.name!, namespace: p.metadata!.namespace!, body: { status } },
        mergePatch,
      );
    },
  });
  runners.set(uid, runner);
  podLog.info({ podIP }, "starting pod");
  await runner.start();
}

const informer = makeInformer<V1Pod>(kc, "/api/v1/pods", () => core.listPodForAllNamespaces());

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  mkdirSync(podsDir, { recursive: true });
  await registerNode();
  await renewLease();
  const timers = [every(10_000, "lease renewal", renewLease), every(30_000, "node status", registerNode)];
  const logServer = startLogServer({
    port: config.DEVCLUSTER_KUBELET_PORT,
    cert: readFileSync(config.DEVCLUSTER_KUBELET_CERT),
    key: readFileSync(config.DEVCLUSTER_KUBELET_KEY),
    ca: caCert,
    logDir,
  });

  informer.on("add", enqueue);
  informer.on("update", enqueue);
  informer.on("delete", (pod) => {
    // Deleted without a grace period (or the agent missed the graceful part): stop at once.
    const runner = runners.get(pod.metadata!.uid!);
    if (!runner) return;
    runners.delete(pod.metadata!.uid!);
    ips.release(pod.metadata!.uid!);
    void runner.stop(0);
  });
  informer.on("error", (err) => {
    log.warn({ err }, "pod watch failed; restarting in 1s");
    setTimeout(() => void informer.start(), 1000);
  });
  await informer.start();
  log.info({ node: nodeName }, "node agent ready");

  const shutdown = async (signal: string) => {
    log.info({ signal }, "stopping every pod");
    timers.forEach(clearInterval);
    logServer.close();
    await informer.stop();
    await Promise.all([...runners.values()].map((r) => r.stop(5)));
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err: Error) => {
  log.fatal({ err }, "node agent failed");
  process.exit(1);
});
