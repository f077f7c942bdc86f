// Configuration files of a real node: containerd (config schema version 3, CRI plugin), the CNI
// bridge network, and the kubelet. Pure functions of the node's layout, so they can be read and
// tested without starting anything. Every path a node writes lies under its own folder, so two
// nodes (of one cluster or of two) never share a socket, a state folder or a pod address.
import { createHash } from "node:crypto";
import path from "node:path";

export interface RealNodeLayout {
  /** <clusterDir>/real-node/<nodeName>: everything the node writes. */
  dir: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  containerdConfig: string;
  /** runc's state (`runc --root`), one per node instead of /run/containerd/runc. */
  runcRoot: string;
  cniConfDir: string;
  /** host-local IPAM's leases, instead of /var/lib/cni/networks. */
  cniDataDir: string;
  kubeletRoot: string;
  kubeletConfig: string;
  kubeletKubeconfig: string;
  kubeletCertDir: string;
  podLogsDir: string;
  resolvConf: string;
  state: string;
}

export function realNodeLayout(clusterDir: string, nodeName: string): RealNodeLayout {
  const dir = path.join(clusterDir, "real-node", nodeName);
  return {
    dir,
    containerdRoot: path.join(dir, "containerd", "root"),
    containerdState: path.join(dir, "containerd", "state"),
    // A Unix socket path is at most 107 bytes: keep it short and near the top of the folder.
    containerdSocket: path.join(dir, "containerd.sock"),
    containerdConfig: path.join(dir, "containerd.toml"),
    runcRoot: path.join(dir, "runc"),
    cniConfDir: path.join(dir, "cni", "net.d"),
    cniDataDir: path.join(dir, "cni", "networks"),
    kubeletRoot: path.join(dir, "kubelet"),
    kubeletConfig: path.join(dir, "kubelet.yaml"),
    kubeletKubeconfig: path.join(dir, "kubelet.kubeconfig"),
    kubeletCertDir: path.join(dir, "pki"),
    podLogsDir: path.join(dir, "pod-logs"),
    resolvConf: path.join(dir, "resolv.conf"),
    state: path.join(dir, "state.json"),
  };
}

/** The sandbox ("pause") image the CRI plugin runs for every pod; imported, never pulled. */
export const PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2";

export type Snapshotter = "overlayfs" | "native";

export interface ContainerdOptions {
  layout: RealNodeLayout;
  /** Folder holding bridge, host-local, loopback and portmap. */
  cniBinDir: string;
  /** The OCI runtime: /usr/sbin/runc, or a wrapper around it. */
  runtimeBinary: string;
  snapshotter: Snapshotter;
  /** The CRI streaming server (exec, attach, port-forward) listens on 127.0.0.1:<port>. */
  streamingPort: number;
}

const q = (value: string) => JSON.stringify(value); // a TOML basic string is a JSON string

export function containerdConfig(o: ContainerdOptions): string {
  const cri = "plugins.'io.containerd.cri.v1.runtime'";
  const runc = `${cri}.containerd.runtimes.runc`;
  return `# Written by src/devcluster/real-node: a containerd for one dev-cluster node.
version = 3
root = ${q(o.layout.containerdRoot)}
state = ${q(o.layout.containerdState)}

[grpc]
  address = ${q(o.layout.containerdSocket)}

[ttrpc]
  address = ${q(`${o.layout.containerdSocket}.ttrpc`)}

[plugins.'io.containerd.internal.v1.opt']
  path = ${q(path.join(o.layout.dir, "containerd", "opt"))}

# NRI's socket is machine-wide (/var/run/nri/nri.sock): two nodes would fight over it.
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = ${q(o.snapshotter)}
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${q(PAUSE_IMAGE)}

[${cri}]
  # Without CAP_SYS_RESOURCE runc cannot lower a process's oom_score_adj below containerd's own
  # (the kubelet asks -998 for sandboxes, -997 for Guaranteed pods): clamp instead of failing.
  restrict_oom_score_adj = true
  # Network namespaces under the state folder, not the machine-wide /var/run/netns.
  netns_mounts_under_state_dir = true
  [${cri}.containerd]
    default_runtime_name = "runc"
    [${runc}]
      runtime_type = "io.containerd.runc.v2"
      [${runc}.options]
        BinaryName = ${q(o.runtimeBinary)}
        Root = ${q(o.layout.runcRoot)}
        SystemdCgroup = false
  [${cri}.cni]
    bin_dirs = [${q(o.cniBinDir)}]
    conf_dir = ${q(o.layout.cniConfDir)}
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = ${q(String(o.streamingPort))}
`;
}

export interface CniOptions {
  layout: RealNodeLayout;
  /** The node's pod addresses, e.g. 10.244.0.0/24; the bridge takes the first one. */
  podCidr: string;
}

/** A Linux interface name is at most 15 bytes; derived from the node folder, so unique per node. */
export function bridgeName(layout: RealNodeLayout): string {
  return `sjbr${createHash("sha256").update(layout.dir).digest("hex").slice(0, 8)}`;
}

export function cniConflist(o: CniOptions): string {
  const conflist = {
    cniVersion: "1.0.0",
    name: `devcluster-${bridgeName(o.layout)}`,
    plugins: [
      {
        type: "bridge",
        bridge: bridgeName(o.layout),
        isGateway: true,
        // No masquerading: the pods talk only to the cluster's services on the machine, which
        // route back to the pod CIDR through the node's link.
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: o.layout.cniDataDir,
          ranges: [[{ subnet: o.podCidr }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  return JSON.stringify(conflist, null, 2) + "\n";
}

export interface KubeletOptions {
  layout: RealNodeLayout;
  caCert: string;
  servingCert: string;
  servingKey: string;
  /** The kubelet's API (logs, exec) on <nodeIp>:<port>; healthz on <healthzAddress>:<healthzPort>. */
  nodeIp: string;
  port: number;
  healthzAddress: string;
  healthzPort: number;
  podCidr: string;
  maxPods: number;
  /** The cluster DNS Service's IP (dns.ts); without it pods resolve with the machine's nameservers. */
  clusterDns?: string;
}

/** KubeletConfiguration (kubelet.config.k8s.io/v1beta1) as JSON, which is YAML too. */
export function kubeletConfig(o: KubeletOptions): string {
  const config = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: o.nodeIp,
    port: o.port,
    readOnlyPort: 0,
    healthzBindAddress: o.healthzAddress,
    healthzPort: o.healthzPort,
    tlsCertFile: o.servingCert,
    tlsPrivateKeyFile: o.servingKey,
    // The apiserver calls the kubelet with a client certificate from the cluster CA; no webhook,
    // so the kubelet never asks the apiserver for TokenReviews or SubjectAccessReviews.
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: o.caCert },
    },
    authorization: { mode: "AlwaysAllow" },
    containerRuntimeEndpoint: `unix://${o.layout.containerdSocket}`,
    // The machine's cgroups are v1 (hybrid), driven through cgroupfs; no QoS hierarchy and no
    // node allocatable enforcement, which would need the kubelet to own the cgroup root.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    resolvConf: o.layout.resolvConf,
    podLogsDir: o.layout.podLogsDir,
    volumePluginDir: path.join(o.layout.dir, "volume-plugins"),
    podCIDR: o.podCidr,
    maxPods: o.maxPods,
    serializeImagePulls: false,
    // A shared development disk: evict only when it is really full, never collect the imported
    // images (they cannot be pulled again).
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "1%",
      "nodefs.inodesFree": "1%",
      "imagefs.available": "1%",
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    clusterDomain: "cluster.local",
    ...(o.clusterDns && { clusterDNS: [o.clusterDns] }),
  };
  return JSON.stringify(config, null, 2) + "\n";
}
