// The local cluster: etcd, kube-apiserver, kube-controller-manager, MinIO, a Kafka broker and the
// node agent, started on loopback with free ports. Everything lives under .devcluster/ (git-ignored).
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { Admin } from "@platformatic/kafka";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import {
  ensureAssets,
  ensureRealNodeAssets,
  kafkaLibsDir,
  kafkaStorageTemplateDir,
  repoRoot,
  type BinaryName,
} from "./assets.js";
import { STORAGE_SECRET_NAME } from "../storage/minio-object-store.js";
import { foldersClosedToOthers } from "./node-agent/images.js";
import { KAFKA_SECRET_NAME } from "../connectors/kafka/connection.js";
import { kafkaJavaArgs, writeKafkaConfig } from "./kafka.js";
import { httpGetOk, writeKubeconfigFromFiles } from "./kubeconfig.js";
import { buildImages } from "../images/build.js";
import { loadProjectImages, startScheduler } from "./real-node/cluster-node.js";
import { startClusterDns } from "./real-node/dns.js";
import { createNodeNetwork, deleteNodeNetwork, nodeNetwork } from "./real-node/network.js";
import { startRealNode, stopRealNode } from "./real-node/node.js";
import { createPki, type PkiPaths } from "./pki.js";
import {
  claimPodNetwork,
  podNetworkCidr,
  podNetworkOctet,
  preferredOctet,
  releasePodNetwork,
} from "./pod-networks.js";
import { freePort, isAlive, startDetached, stopProcess, waitFor, type StartedProcess } from "./processes.js";

export const nodeName = "devcluster-node";

/** The local cluster's Secret for the Kafka broker's SASL/PLAIN listener, in namespace default. */
export const KAFKA_SASL_SECRET_NAME = "streamjob-kafka-sasl";

export interface ClusterState {
  apiserverUrl: string;
  etcdUrl: string;
  minioEndpoint: string;
  /** host:port of the Kafka broker. Absent in the state of a cluster started before it had one. */
  kafkaBootstrapServers?: string;
  /** The 127.N.0.0/16 block this cluster claimed for pod addresses. */
  /** Absent in the state of a cluster started before pod networks were claimed. */
  podNetwork?: string;
  kubeconfig: string;
  processes: StartedProcess[];
  startedAt: string;
  readyAfterMs: number;
  /** Which node runs the pods; absent in the state of a cluster started before there was a choice. */
  node?: NodeMode;
}

/**
 * `emulated`: the node agent runs pods as host processes (fast, needs nothing but Node.js).
 * `real`: a kubelet on containerd and runc in the node's own network namespace, with kube-proxy,
 * kube-scheduler and the project's images (real-node/). DEVCLUSTER_NODE picks; emulated by default.
 */
export type NodeMode = "emulated" | "real";

export function nodeMode(env: NodeJS.ProcessEnv = process.env): NodeMode {
  const mode = env.DEVCLUSTER_NODE ?? "emulated";
  if (mode !== "emulated" && mode !== "real")
    throw new Error(`DEVCLUSTER_NODE=${mode}: expected emulated or real`);
  return mode;
}

export function clusterDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.DEVCLUSTER_DIR ? path.resolve(env.DEVCLUSTER_DIR) : path.join(repoRoot, ".devcluster");
}

function paths(dir: string) {
  return {
    state: path.join(dir, "state.json"),
    kubeconfig: path.join(dir, "kubeconfig"),
    bin: path.join(dir, "bin"),
    logs: path.join(dir, "logs"),
    pki: path.join(dir, "pki"),
    etcdData: path.join(dir, "etcd"),
    minioData: path.join(dir, "minio"),
    kafka: path.join(dir, "kafka"),
    pods: path.join(dir, "pods"),
    controllerManagerKubeconfig: path.join(dir, "pki", "kube-controller-manager.kubeconfig"),
  };
}

export function readState(dir = clusterDir()): ClusterState | undefined {
  const file = paths(dir).state;
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, "utf8")) as ClusterState;
}

/** True once the broker answers a metadata request naming itself: registered and unfenced. */
async function kafkaReady(bootstrapServers: string): Promise<boolean> {
  const admin = new Admin({
    clientId: "devcluster-readiness",
    bootstrapBrokers: [bootstrapServers],
    retries: 0,
    timeout: 2_000,
  });
  try {
    const metadata = await admin.metadata({ topics: [] });
    return metadata.brokers.size > 0;
  } finally {
    await admin.close();
  }
}

/** True when every recorded process runs, the cluster has a broker, and the apiserver answers /readyz. */
export async function isHealthy(
  state: ClusterState | undefined,
  pki: PkiPaths | undefined,
): Promise<boolean> {
  if (!state?.kafkaBootstrapServers || !pki || !state.processes.every((p) => isAlive(p.pid))) return false;
  try {
    return await httpGetOk(`${state.apiserverUrl}/readyz`, { ca: readFileSync(pki.caCert) });
  } catch {
    return false;
  }
}

function pkiPaths(dir: string): PkiPaths {
  const f = (name: string) => path.join(paths(dir).pki, name);
  return {
    caCert: f("ca.crt"),
    caKey: f("ca.key"),
    apiserverCert: f("apiserver.crt"),
    apiserverKey: f("apiserver.key"),
    adminCert: f("admin.crt"),
    adminKey: f("admin.key"),
    controllerManagerCert: f("kube-controller-manager.crt"),
    controllerManagerKey: f("kube-controller-manager.key"),
    serviceAccountKey: f("sa.key"),
    serviceAccountPublicKey: f("sa.pub"),
  };
}

function linkBinaries(binDir: string, binaries: Record<BinaryName, string>): void {
  rmSync(binDir, { recursive: true, force: true });
  mkdirSync(binDir, { recursive: true });
  for (const [name, target] of Object.entries(binaries)) symlinkSync(target, path.join(binDir, name));
}

export interface UpResult {
  state: ClusterState;
  alreadyRunning: boolean;
}

export async function up(log: (line: string) => void = console.log): Promise<UpResult> {
  const dir = clusterDir();
  const p = paths(dir);
  const existing = readState(dir);
  if (await isHealthy(existing, pkiPaths(dir))) return { state: existing!, alreadyRunning: true };
  if (existing) await down(() => undefined);

  const binaries = await ensureAssets(log);
  const mode = nodeMode();
  const realNodeBinaries = mode === "real" ? await ensureRealNodeAssets(log) : undefined;
  // The real node runs the project's images, which no registry serves here: build them (seconds
  // when nothing changed) so the node gets the current code.
  if (mode === "real") await buildImages(log);
  const started = Date.now();
  for (const d of [p.etcdData, p.minioData, p.kafka, p.logs, p.pods, p.pki])
    rmSync(d, { recursive: true, force: true });
  for (const d of [dir, p.etcdData, p.minioData, p.kafka, p.logs, p.pods]) mkdirSync(d, { recursive: true });
  const octet = await claimPodNetwork({
    clusterDir: dir,
    preferred: preferredOctet(dir, clusterDir({})),
    clusterMayRun,
  });
  linkBinaries(p.bin, binaries);
  // The real node's pods reach the cluster's services on the machine's end of the node's link.
  const network = mode === "real" ? await createNodeNetwork(octet) : undefined;
  const serviceHost = network?.hostIp ?? "127.0.0.1";
  const pki = await createPki(p.pki, network ? [serviceHost] : []);

  const [
    etcdPort,
    etcdPeerPort,
    apiserverPort,
    minioPort,
    kcmPort,
    kubeletPort,
    kafkaPort,
    kafkaControllerPort,
    kafkaSaslPort,
    schedulerPort,
  ] = await Promise.all(Array.from({ length: 10 }, () => freePort()));
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const apiserverUrl = `https://${serviceHost}:${apiserverPort}`;
  const minioEndpoint = `http://${serviceHost}:${minioPort}`;
  const kafkaBootstrapServers = `${serviceHost}:${kafkaPort}`;
  const processes: StartedProcess[] = [];
  const logFile = (name: string) => path.join(p.logs, `${name}.log`);
  const state: ClusterState = {
    apiserverUrl,
    etcdUrl,
    minioEndpoint,
    kafkaBootstrapServers,
    podNetwork: podNetworkCidr(octet),
    kubeconfig: p.kubeconfig,
    processes,
    startedAt: new Date(started).toISOString(),
    readyAfterMs: 0,
    node: mode,
  };
  // Recorded as processes start, so `down` can stop a half-started cluster.
  const record = (proc: StartedProcess) => {
    processes.push(proc);
    writeFileSync(p.state, JSON.stringify(state, null, 2));
    return proc;
  };

  try {
    const etcd = record(
      startDetached(
        "etcd",
        binaries.etcd,
        [
          "--name=devcluster",
          `--data-dir=${p.etcdData}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-cluster=devcluster=http://127.0.0.1:${etcdPeerPort}`,
          "--unsafe-no-fsync", // a throwaway dev cluster: durability across power loss does not matter
          "--log-level=warn",
        ],
        logFile("etcd"),
      ),
    );

    const minioUser = `devcluster-${randomBytes(4).toString("hex")}`;
    const minioPassword = randomBytes(18).toString("base64url");
    const minio = record(
      startDetached(
        "minio",
        binaries.minio,
        ["server", p.minioData, `--address=${serviceHost}:${minioPort}`, "--quiet"],
        logFile("minio"),
        {
          ...process.env,
          MINIO_ROOT_USER: minioUser,
          MINIO_ROOT_PASSWORD: minioPassword,
          MINIO_BROWSER: "off",
        },
      ),
    );

    // The JVM is the slowest to start: it comes up while the control plane does.
    const kafkaUser = { username: "streamjob", password: randomBytes(12).toString("hex") };
    const kafkaFiles = writeKafkaConfig(
      p.kafka,
      { broker: kafkaPort!, controller: kafkaControllerPort!, sasl: kafkaSaslPort! },
      kafkaUser,
      serviceHost,
    );
    cpSync(kafkaStorageTemplateDir(), kafkaFiles.dataDir, { recursive: true });
    const kafka = record(
      startDetached(
        "kafka",
        "java",
        kafkaJavaArgs(kafkaLibsDir(), kafkaFiles, "kafka.Kafka", [kafkaFiles.config]),
        logFile("kafka"),
      ),
    );

    await waitFor("etcd", () => httpGetOk(`${etcdUrl}/health`), 30_000, etcd.pid);
    const apiserver = record(
      startDetached(
        "kube-apiserver",
        binaries["kube-apiserver"],
        [
          `--etcd-servers=${etcdUrl}`,
          `--bind-address=${serviceHost}`,
          `--secure-port=${apiserverPort}`,
          // Without a default route the apiserver cannot pick an address to advertise.
          `--advertise-address=${serviceHost}`,
          `--tls-cert-file=${pki.apiserverCert}`,
          `--tls-private-key-file=${pki.apiserverKey}`,
          `--client-ca-file=${pki.caCert}`,
          `--cert-dir=${path.join(p.pki, "apiserver")}`,
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          `--service-account-key-file=${pki.serviceAccountPublicKey}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          "--service-cluster-ip-range=10.0.0.0/24",
          "--authorization-mode=RBAC",
          // Privileged pods are allowed cluster-wide so that refusals come from PodSecurity admission.
          "--allow-privileged=true",
          "--enable-admission-plugins=PodSecurity",
          "--profiling=false",
          // `kubectl logs` goes through the apiserver to the node agent's kubelet endpoint.
          `--kubelet-client-certificate=${pki.adminCert}`,
          `--kubelet-client-key=${pki.adminKey}`,
          "--kubelet-preferred-address-types=InternalIP",
        ],
        logFile("kube-apiserver"),
      ),
    );
    await waitFor(
      "kube-apiserver /readyz",
      () => httpGetOk(`${apiserverUrl}/readyz`, { ca: readFileSync(pki.caCert) }),
      60_000,
      apiserver.pid,
    );

    writeKubeconfigFromFiles(
      p.kubeconfig,
      apiserverUrl,
      { ca: pki.caCert, cert: pki.adminCert, key: pki.adminKey },
      "default",
    );
    writeKubeconfigFromFiles(p.controllerManagerKubeconfig, apiserverUrl, {
      ca: pki.caCert,
      cert: pki.controllerManagerCert,
      key: pki.controllerManagerKey,
    });
    record(
      startDetached(
        "kube-controller-manager",
        binaries["kube-controller-manager"],
        [
          `--kubeconfig=${p.controllerManagerKubeconfig}`,
          `--authentication-kubeconfig=${p.controllerManagerKubeconfig}`,
          `--authorization-kubeconfig=${p.controllerManagerKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${kcmPort}`,
          "--leader-elect=false",
          // Each controller acts as its own ServiceAccount, as in kubeadm clusters.
          "--use-service-account-credentials=true",
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.caCert}`,
          `--cluster-signing-cert-file=${pki.caCert}`,
          `--cluster-signing-key-file=${pki.caKey}`,
          "--profiling=false",
        ],
        logFile("kube-controller-manager"),
      ),
    );

    if (network && realNodeBinaries) {
      record(
        await startScheduler({
          binaries: realNodeBinaries,
          apiserverUrl,
          caCert: pki.caCert,
          caKey: pki.caKey,
          pkiDir: p.pki,
          port: schedulerPort!,
          log: logFile("kube-scheduler"),
        }),
      );
      // Cluster DNS before the node: its pods get 10.0.0.10 as their nameserver.
      record(
        (
          await startClusterDns({
            clusterDir: dir,
            listenIp: serviceHost,
            adminKubeconfig: p.kubeconfig,
            log,
          })
        ).process,
      );
      const node = await startRealNode({
        clusterDir: dir,
        apiserverUrl,
        caCert: pki.caCert,
        caKey: pki.caKey,
        adminKubeconfig: p.kubeconfig,
        nodeName,
        network,
        log,
      });
      await loadProjectImages(node);
    } else {
      const agentEntry = path.join(repoRoot, "dist", "devcluster", "node-agent", "main.js");
      if (!existsSync(agentEntry)) throw new Error(`${agentEntry} is missing: run \`npm run build\` first`);
      openCheckoutToPods(log);
      record(
        startDetached("node-agent", process.execPath, [agentEntry], logFile("node-agent"), {
          ...process.env,
          KUBECONFIG: p.kubeconfig,
          DEVCLUSTER_DIR: dir,
          DEVCLUSTER_NODE_NAME: nodeName,
          DEVCLUSTER_CA_FILE: pki.caCert,
          DEVCLUSTER_KUBELET_PORT: String(kubeletPort),
          // The apiserver's certificate also names 127.0.0.1, where the node agent listens.
          DEVCLUSTER_KUBELET_CERT: pki.apiserverCert,
          DEVCLUSTER_KUBELET_KEY: pki.apiserverKey,
          DEVCLUSTER_POD_NETWORK_OCTET: String(octet),
        }),
      );
    }

    await waitFor(
      "MinIO /minio/health/ready",
      () => httpGetOk(`${minioEndpoint}/minio/health/ready`),
      60_000,
      minio.pid,
    );
    await waitFor("Kafka metadata", () => kafkaReady(kafkaBootstrapServers), 90_000, kafka.pid);
    const kc = new KubeConfig();
    kc.loadFromFile(p.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    await waitFor(
      "namespace default",
      async () => (await core.readNamespace({ name: "default" })).metadata?.name === "default",
      60_000,
    );
    // Pods cannot be created before the ServiceAccount controller made the namespace's default account.
    await waitFor(
      "ServiceAccount default/default",
      async () => !!(await core.readNamespacedServiceAccount({ name: "default", namespace: "default" })),
      60_000,
    );
    await waitFor(
      `node ${nodeName} Ready`,
      async () => {
        const node = await core.readNode({ name: nodeName });
        return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
      },
      60_000,
    );
    // Where the cluster's storage and Kafka are, for jobs in namespace default; the same broker
    // also behind SASL/PLAIN, for jobs that log in (and a wrong password to be refused).
    const secrets: Record<string, Record<string, string>> = {
      [STORAGE_SECRET_NAME]: { endpoint: minioEndpoint, accessKey: minioUser, secretKey: minioPassword },
      [KAFKA_SECRET_NAME]: { bootstrapServers: kafkaBootstrapServers },
      [KAFKA_SASL_SECRET_NAME]: {
        bootstrapServers: `${serviceHost}:${kafkaSaslPort}`,
        username: kafkaUser.username,
        password: kafkaUser.password,
        saslMechanism: "PLAIN",
      },
    };
    for (const [name, stringData] of Object.entries(secrets)) {
      await core.createNamespacedSecret({
        namespace: "default",
        body: {
          metadata: { name, labels: { "app.kubernetes.io/part-of": "streamjob-devcluster" } },
          type: "Opaque",
          stringData,
        },
      });
    }
    const exited = processes.filter((proc) => !isAlive(proc.pid));
    if (exited.length > 0) throw new Error(`${exited.map((x) => x.name).join(", ")} exited during start-up`);
    state.readyAfterMs = Date.now() - started;
    writeFileSync(p.state, JSON.stringify(state, null, 2));
    return { state, alreadyRunning: false };
  } catch (err) {
    log(`cluster failed to start: ${(err as Error).message}`);
    log(`logs are in ${p.logs}`);
    await down(() => undefined);
    throw err;
  }
}

/**
 * False when the folder records a cluster none of whose processes runs any more (it crashed or was
 * killed without `cluster:down`); a folder recording none may be starting one.
 */
function clusterMayRun(dir: string): boolean {
  try {
    const state = readState(dir);
    return state === undefined || state.processes.some((proc) => isAlive(proc.pid));
  } catch {
    return true; // a state file being written: assume the cluster runs
  }
}

/**
 * Stops every process the cluster started (the node agent first, so it stops its pods), then gives
 * its pod address block back.
 */
export async function down(log: (line: string) => void = console.log): Promise<void> {
  const dir = clusterDir();
  const state = readState(dir);
  if (!state) {
    log("no local cluster is recorded in " + dir);
    await releasePodNetwork({ clusterDir: dir });
    return;
  }
  if (state.node === "real") {
    // While the apiserver still answers: the kubelet deletes its pods' containers and networks.
    await stopRealNode({ clusterDir: dir, nodeName, adminKubeconfig: state.kubeconfig, log });
    log(`stopped the real node ${nodeName}`);
  }
  const order = [
    "node-agent",
    "kube-scheduler",
    "coredns",
    "kube-controller-manager",
    "kube-apiserver",
    "kafka",
    "minio",
    "etcd",
  ];
  const sorted = [...state.processes].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  for (const proc of sorted) {
    await stopProcess(proc.pid, proc.name === "node-agent" ? 40_000 : 10_000);
    log(`stopped ${proc.name} (pid ${proc.pid})`);
  }
  await stopLeftoverPods(paths(dir).pods);
  if (state.node === "real" && state.podNetwork)
    deleteNodeNetwork(nodeNetwork(podNetworkOctet(state.podNetwork)));
  await releasePodNetwork({ clusterDir: dir });
  rmSync(paths(dir).state, { force: true });
}

/** Pod processes are the node agent's children; should it have died, their pid files remain. */
async function stopLeftoverPods(podsDir: string): Promise<void> {
  if (!existsSync(podsDir)) return;
  for (const pod of readdirSync(podsDir)) {
    const podDir = path.join(podsDir, pod);
    for (const file of readdirSync(podDir).filter((f) => f.endsWith(".pid"))) {
      const pid = Number(readFileSync(path.join(podDir, file), "utf8"));
      if (Number.isInteger(pid) && pid > 0) await stopProcess(pid, 2_000);
    }
  }
}

/**
 * The node agent runs this project's images from the checkout as the pods' non-root users (only as
 * root can it switch users), so every folder down to the checkout must be searchable by others: add
 * o+x (search, not read) to those of ours that are not, and refuse to start when another user's is.
 */
function openCheckoutToPods(log: (line: string) => void): void {
  if (process.getuid?.() !== 0) return;
  for (const dir of foldersClosedToOthers(repoRoot)) {
    const { mode, uid } = statSync(dir);
    if (uid !== 0)
      throw new Error(
        `pods cannot reach the checkout: ${dir} is not searchable by others (chmod o+x ${dir})`,
      );
    chmodSync(dir, (mode & 0o7777) | 0o001);
    log(`made ${dir} searchable by others (o+x): pods run this project's images from the checkout`);
  }
}
