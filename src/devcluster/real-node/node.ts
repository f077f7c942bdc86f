// A real node for the local cluster: containerd (CRI) running pods with runc in their own network
// namespaces on a CNI bridge, and a kubelet registered with the cluster's apiserver under the name
// system:node:<name>. Unlike the emulated node agent, containers are real: cgroups, seccomp,
// read-only root filesystems, users, memory limits enforced by the kernel.
//
// Everything lives under <clusterDir>/real-node/<name>/ (containerd's root and state, runc's state,
// the kubelet's root, pod logs, network namespaces, IPAM leases) and listens on ports picked free,
// so two nodes, of one cluster or of two, do not clash. Logs go to <clusterDir>/logs/.
//
// Needs root (mounts, network namespaces, cgroups), runc on PATH (Debian: apt-get install runc),
// and the assets built by `ensureRealNodeAssets` (kubelet, containerd, CNI plugins).
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { ensureRealNodeAssets, type RealNodeBinaryName } from "../assets.js";
import { writeFileAtomic } from "../files.js";
import { httpGetOk, writeKubeconfig } from "../kubeconfig.js";
import { issueFromCa } from "../pki.js";
import {
  freePort,
  isAlive,
  runCommand,
  startDetached,
  stopProcess,
  waitFor,
  type StartedProcess,
} from "../processes.js";
import {
  bridgeName,
  cniConflist,
  containerdConfig,
  kubeletConfig,
  realNodeLayout,
  type Snapshotter,
} from "./config.js";
import { ensureImageTarball, importImage, pauseImage } from "./images.js";
import { CLUSTER_DNS_IP } from "./dns.js";
import { inNodeNetwork, type NodeNetwork } from "./network.js";

export interface RealNodeOptions {
  clusterDir: string;
  apiserverUrl: string;
  /** The cluster CA: it signs the kubelet's certificates and the kubelet trusts its clients. */
  caCert: string;
  caKey: string;
  /** An admin kubeconfig: binds the node's user to the system:node ClusterRole. */
  adminKubeconfig: string;
  nodeName: string;
  /**
   * The node's own network namespace (network.ts): containerd, the kubelet and kube-proxy run in
   * it, so kube-proxy's iptables rules are not the machine's; it sets the node IP and pod CIDR.
   */
  network: NodeNetwork;
  log?: (line: string) => void;
}

export interface RealNodeState {
  nodeName: string;
  dir: string;
  nodeIp: string;
  podCidr: string;
  bridge: string;
  snapshotter: Snapshotter;
  containerdSocket: string;
  kubeletPort: number;
  healthzPort: number;
  streamingPort: number;
  processes: StartedProcess[];
  binaries: Record<RealNodeBinaryName, string>;
  /** Milliseconds from starting containerd to kubelet healthz. */
  startedAfterMs: number;
}

function findRuntime(): string {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    const candidate = path.join(dir, "runc");
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new Error("runc was not found on PATH (Debian/Ubuntu: apt-get install runc)");
}

/** Whether an overlay mount works under `dir` (not on overlayfs itself, not in every container). */
function overlayWorks(dir: string): boolean {
  const probe = path.join(dir, ".overlay-probe");
  const [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map((d) => path.join(probe, d));
  for (const d of [lower!, upper!, work!, merged!]) mkdirSync(d, { recursive: true });
  try {
    const mount = spawnSync(
      "mount",
      ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged!],
      { stdio: "ignore" },
    );
    if (mount.status !== 0) return false;
    spawnSync("umount", [merged!], { stdio: "ignore" });
    return true;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

/** The nameservers of the machine, for pods with dnsPolicy Default (there is no cluster DNS yet). */
function hostResolvConf(): string {
  try {
    const servers = readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .filter((l) => /^\s*nameserver\s+/.test(l) && !/\s127\./.test(l) && !/\s::1\b/.test(l));
    if (servers.length > 0) return servers.join("\n") + "\n";
  } catch {
    // no resolv.conf: fall through
  }
  return "";
}

/** The kubelet authenticates as system:node:<name>; RBAC alone (no Node authorizer) needs a binding. */
async function bindNodeRole(adminKubeconfig: string, nodeName: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(adminKubeconfig);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const name = `devcluster:real-node:${nodeName}`;
  try {
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:node" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: `system:node:${nodeName}` }],
      },
    });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}

export async function startRealNode(options: RealNodeOptions): Promise<RealNodeState> {
  const log = options.log ?? console.log;
  const { nodeName, network } = options;
  const { podCidr, nodeIp } = network;
  /** Starts a node process in the node's namespace and waits until `ready` (its loopback is not the machine's). */
  const start = async (name: string, binary: string, args: string[], ready: () => Promise<boolean>) => {
    const [command, commandArgs] = inNodeNetwork(network, binary, args);
    const proc = startDetached(
      name,
      command,
      commandArgs,
      path.join(logsDir, `real-node-${nodeName}-${name}.log`),
      env,
    );
    processes.push(proc);
    save();
    await waitFor(name, ready, 60_000, proc.pid);
  };
  const layout = realNodeLayout(options.clusterDir, nodeName);
  const logsDir = path.join(options.clusterDir, "logs");

  const binaries = await ensureRealNodeAssets(log);
  const pauseTarball = await ensureImageTarball(pauseImage, log);

  const previous = readRealNodeState(options.clusterDir, nodeName);
  if (previous) await stopRealNode({ clusterDir: options.clusterDir, nodeName });
  rmSync(layout.dir, { recursive: true, force: true });
  for (const d of [layout.dir, layout.cniConfDir, layout.kubeletCertDir, layout.podLogsDir, logsDir])
    mkdirSync(d, { recursive: true });

  const snapshotter = overlayWorks(layout.dir) ? "overlayfs" : "native";
  const [kubeletPort, healthzPort, streamingPort, proxyHealthzPort, proxyMetricsPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const containerdDir = path.dirname(binaries.containerd);

  writeFileSync(
    layout.containerdConfig,
    containerdConfig({
      layout,
      cniBinDir: path.dirname(binaries.bridge),
      runtimeBinary: findRuntime(),
      snapshotter,
      streamingPort,
    }),
  );
  writeFileSync(
    path.join(layout.cniConfDir, "10-devcluster-bridge.conflist"),
    cniConflist({ layout, podCidr }),
  );

  const started = Date.now();
  const processes: StartedProcess[] = [];
  // containerd finds containerd-shim-runc-v2 on PATH.
  const env = {
    ...process.env,
    PATH: `${containerdDir}:${process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`,
  };
  const state: RealNodeState = {
    nodeName,
    dir: layout.dir,
    nodeIp,
    podCidr,
    bridge: bridgeName(layout),
    snapshotter,
    containerdSocket: layout.containerdSocket,
    kubeletPort,
    healthzPort,
    streamingPort,
    processes,
    binaries,
    startedAfterMs: 0,
  };
  const save = () => writeFileAtomic(layout.state, JSON.stringify(state, null, 2) + "\n");
  try {
    await start("containerd", binaries.containerd, ["--config", layout.containerdConfig], async () => {
      await runCommand(binaries.ctr, ["--address", layout.containerdSocket, "version"]);
      return true;
    });
    log(`${nodeName}: containerd ready in ${Date.now() - started} ms (snapshotter ${snapshotter})`);
    await importImage(binaries.ctr, layout.containerdSocket, pauseTarball, { snapshotter, pinned: true });

    const caPem = readFileSync(options.caCert, "utf8");
    const client = await issueFromCa(
      options.caCert,
      options.caKey,
      `CN=system:node:${nodeName}, O=system:nodes`,
      "client",
    );
    const serving = await issueFromCa(options.caCert, options.caKey, `CN=${nodeName}`, "server", {
      dns: [nodeName, "localhost"],
      ip: [nodeIp, "127.0.0.1"],
    });
    const servingCert = path.join(layout.kubeletCertDir, "kubelet.crt");
    const servingKey = path.join(layout.kubeletCertDir, "kubelet.key");
    writeFileSync(servingCert, serving.certPem, { mode: 0o600 });
    writeFileSync(servingKey, serving.keyPem, { mode: 0o600 });
    writeKubeconfig(layout.kubeletKubeconfig, { server: options.apiserverUrl, caPem, ...client });
    writeFileSync(layout.resolvConf, hostResolvConf());
    writeFileSync(
      layout.kubeletConfig,
      kubeletConfig({
        layout,
        caCert: options.caCert,
        servingCert,
        servingKey,
        nodeIp,
        port: kubeletPort,
        healthzAddress: nodeIp,
        healthzPort,
        podCidr,
        maxPods: 32,
        // kube-proxy routes the DNS Service to CoreDNS.
        clusterDns: CLUSTER_DNS_IP,
      }),
    );
    await bindNodeRole(options.adminKubeconfig, nodeName);

    const labels = { "streamjob.dev/real-node": "true" };
    await start(
      "kubelet",
      binaries.kubelet,
      [
        `--config=${layout.kubeletConfig}`,
        `--kubeconfig=${layout.kubeletKubeconfig}`,
        `--root-dir=${layout.kubeletRoot}`,
        `--cert-dir=${layout.kubeletCertDir}`,
        `--hostname-override=${nodeName}`,
        `--node-ip=${nodeIp}`,
        `--node-labels=${Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")}`,
        "--v=2",
      ],
      () => httpGetOk(`http://${nodeIp}:${healthzPort}/healthz`),
    );
    // Services: iptables rules in the node's namespace, as the user the bootstrap policy binds to
    // system:node-proxier.
    const proxyUser = await issueFromCa(options.caCert, options.caKey, "CN=system:kube-proxy", "client");
    const proxyKubeconfig = path.join(layout.dir, "kube-proxy.kubeconfig");
    writeKubeconfig(proxyKubeconfig, { server: options.apiserverUrl, caPem, ...proxyUser });
    await start(
      "kube-proxy",
      binaries["kube-proxy"],
      [
        `--kubeconfig=${proxyKubeconfig}`,
        `--hostname-override=${nodeName}`,
        `--cluster-cidr=${podCidr}`,
        "--proxy-mode=iptables",
        // 0: leave the machine-wide conntrack settings alone (kind does the same).
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        `--healthz-bind-address=${nodeIp}:${proxyHealthzPort}`,
        `--metrics-bind-address=127.0.0.1:${proxyMetricsPort}`,
      ],
      () => httpGetOk(`http://${nodeIp}:${proxyHealthzPort}/healthz`),
    );
    state.startedAfterMs = Date.now() - started;
    save();
    log(`${nodeName}: kubelet healthy ${state.startedAfterMs} ms after containerd started`);
    return state;
  } catch (err) {
    await stopRealNode({ clusterDir: options.clusterDir, nodeName }).catch(() => undefined);
    throw err;
  }
}

export function readRealNodeState(clusterDir: string, nodeName: string): RealNodeState | undefined {
  const file = realNodeLayout(clusterDir, nodeName).state;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as RealNodeState;
  } catch {
    return undefined;
  }
}

/**
 * The running containers of the cluster's real nodes, by container id: the pid of each one's init
 * process, as its runc shim records it. What tests and the chaos run signal.
 */
export function containerInitPids(clusterDir: string): Map<string, number> {
  const pids = new Map<string, number>();
  for (const node of safeReaddir(path.join(clusterDir, "real-node"))) {
    const tasks = path.join(
      realNodeLayout(clusterDir, node).containerdState,
      "io.containerd.runtime.v2.task",
      "k8s.io",
    );
    for (const id of safeReaddir(tasks)) {
      try {
        pids.set(id, Number(readFileSync(path.join(tasks, id, "init.pid"), "utf8")));
      } catch {
        // a sandbox being set up or torn down
      }
    }
  }
  return pids;
}

const CONTAINER_LOG_LINKS = "/var/log/containers";

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Processes whose command line names `needle` (containerd's shims carry `-address <socket>`). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv.some((a) => a === needle)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Mount points under `dir`, deepest first (secret and token volumes, network namespaces, rootfs). */
function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((m): m is string => !!m && m.startsWith(prefix))
    .map((m) => m.replace(/\\040/g, " "))
    .sort((a, b) => b.length - a.length);
}

export interface StopRealNodeOptions {
  clusterDir: string;
  nodeName: string;
  /** With it, the node's pods are deleted first (the kubelet tears their networks down) and so is the Node. */
  adminKubeconfig?: string;
  log?: (line: string) => void;
}

/**
 * Stops the node and undoes what it did to the machine: pods' containers and shims, mounts under
 * the node folder (the bridge goes with the node's network namespace). Safe to call twice, or on a node that never finished starting.
 */
export async function stopRealNode(options: StopRealNodeOptions): Promise<void> {
  const log = options.log ?? (() => undefined);
  const { nodeName } = options;
  const layout = realNodeLayout(options.clusterDir, nodeName);
  const state = readRealNodeState(options.clusterDir, nodeName);
  const kubelet = state?.processes.find((p) => p.name === "kubelet");
  const containerd = state?.processes.find((p) => p.name === "containerd");

  let core: CoreV1Api | undefined;
  if (options.adminKubeconfig) {
    const kc = new KubeConfig();
    kc.loadFromFile(options.adminKubeconfig);
    core = kc.makeApiClient(CoreV1Api);
  }
  if (core && kubelet && isAlive(kubelet.pid)) {
    // The kubelet stops the containers and calls CNI DEL (releasing addresses), then confirms.
    const onNode = async () =>
      (await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` })).items;
    try {
      for (const pod of await onNode()) {
        await core
          .deleteNamespacedPod({
            name: pod.metadata!.name!,
            namespace: pod.metadata!.namespace!,
            gracePeriodSeconds: 1,
          })
          .catch(() => undefined);
      }
      await waitFor(`pods of ${nodeName} gone`, async () => (await onNode()).length === 0, 30_000);
    } catch (err) {
      log(`${nodeName}: ${(err as Error).message}; killing what is left`);
    }
  }
  if (kubelet) await stopProcess(kubelet.pid);
  const proxy = state?.processes.find((p) => p.name === "kube-proxy");
  if (proxy) await stopProcess(proxy.pid);

  if (containerd && isAlive(containerd.pid) && state) {
    const ctr = (...args: string[]) =>
      runCommand(state.binaries.ctr, [
        "--address",
        layout.containerdSocket,
        "--namespace",
        "k8s.io",
        ...args,
      ]);
    try {
      const tasks = (await ctr("tasks", "list", "--quiet")).split("\n").filter(Boolean);
      for (const id of tasks) await ctr("tasks", "kill", "--all", "--signal", "SIGKILL", id).catch(() => "");
      for (const id of tasks) {
        await waitFor(
          `task ${id} stopped`,
          async () => {
            await ctr("tasks", "delete", id);
            return true;
          },
          10_000,
        ).catch(() => undefined);
      }
      const containers = (await ctr("containers", "list", "--quiet")).split("\n").filter(Boolean);
      for (const id of containers) await ctr("containers", "delete", id).catch(() => "");
    } catch (err) {
      log(`${nodeName}: cleaning containers: ${(err as Error).message}`);
    }
  }
  if (containerd) await stopProcess(containerd.pid);
  // A shim outlives containerd by design; these are this node's (their -address is its socket).
  for (const pid of processesMentioning(layout.containerdSocket)) await stopProcess(pid, 2_000);

  for (const mount of mountsUnder(layout.dir)) {
    if (spawnSync("umount", [mount], { stdio: "ignore" }).status !== 0)
      spawnSync("umount", ["-l", mount], { stdio: "ignore" });
  }
  // The kubelet links every container's log into the machine-wide /var/log/containers and drops
  // the link when it collects the container; links of containers it did not collect yet dangle.
  for (const link of safeReaddir(CONTAINER_LOG_LINKS)) {
    const file = path.join(CONTAINER_LOG_LINKS, link);
    try {
      if (readlinkSync(file).startsWith(`${layout.podLogsDir}/`)) rmSync(file);
    } catch {
      // not a link, or gone
    }
  }
  if (core) await core.deleteNode({ name: nodeName }).catch(() => undefined);
  if (existsSync(layout.state)) rmSync(layout.state);
}
