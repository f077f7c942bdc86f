// The real node's configuration files and addresses: pure functions, checked without starting
// containerd or the kubelet. Each assertion is a host workaround or an isolation rule that a
// change could silently drop.
import { parse } from "yaml";
import {
  bridgeName,
  cniConflist,
  containerdConfig,
  kubeletConfig,
  realNodeLayout,
} from "../../../src/devcluster/real-node/config.js";
import { inNodeNetwork, nodeNetwork } from "../../../src/devcluster/real-node/network.js";

const layout = realNodeLayout("/c", "devcluster-node");
const kubelet = (extra: Partial<Parameters<typeof kubeletConfig>[0]> = {}) =>
  parse(
    kubeletConfig({
      layout,
      caCert: "/c/pki/ca.crt",
      servingCert: "/c/k.crt",
      servingKey: "/c/k.key",
      nodeIp: "10.245.7.2",
      port: 10250,
      healthzAddress: "10.245.7.2",
      healthzPort: 10248,
      podCidr: "10.244.7.0/24",
      maxPods: 32,
      ...extra,
    }),
  ) as Record<string, unknown>;

describe("kubelet configuration", () => {
  it("runs on this kind of host: cgroup v1 allowed, cgroupfs, no QoS hierarchy, swap tolerated", () => {
    expect(kubelet()).toMatchObject({
      failCgroupV1: false,
      cgroupDriver: "cgroupfs",
      cgroupsPerQOS: false,
      enforceNodeAllocatable: [],
      failSwapOn: false,
    });
  });

  it("talks to the node's own containerd and keeps every path under the node folder", () => {
    const config = kubelet();
    expect(config.containerRuntimeEndpoint).toBe(`unix://${layout.containerdSocket}`);
    for (const key of ["podLogsDir", "volumePluginDir", "resolvConf"])
      expect(String(config[key])).toMatch(/^\/c\/real-node\/devcluster-node\//);
  });

  it("accepts only clients with a certificate from the cluster CA", () => {
    expect(kubelet().authentication).toEqual({
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: "/c/pki/ca.crt" },
    });
    expect(kubelet().readOnlyPort).toBe(0);
  });

  it("names the cluster DNS only when given one (a node without kube-proxy could not reach it)", () => {
    expect(kubelet().clusterDNS).toBeUndefined();
    expect(kubelet({ clusterDns: "10.0.0.10" }).clusterDNS).toEqual(["10.0.0.10"]);
  });
});

describe("containerd configuration", () => {
  const toml = containerdConfig({
    layout,
    cniBinDir: "/cache/cni",
    runtimeBinary: "/usr/sbin/runc",
    snapshotter: "overlayfs",
    streamingPort: 40000,
  });

  it("clamps oom_score_adj instead of failing without CAP_SYS_RESOURCE", () => {
    expect(toml).toMatch(/^\s*restrict_oom_score_adj = true$/m);
  });

  it("uses runc under cgroupfs, with its state under the node folder", () => {
    expect(toml).toContain('BinaryName = "/usr/sbin/runc"');
    expect(toml).toContain(`Root = "${layout.runcRoot}"`);
    expect(toml).toMatch(/SystemdCgroup = false/);
  });

  it("keeps its socket, root, state and network namespaces to itself, and NRI's machine-wide socket off", () => {
    expect(toml).toContain(`address = "${layout.containerdSocket}"`);
    expect(toml).toContain(`root = "${layout.containerdRoot}"`);
    expect(toml).toContain(`state = "${layout.containerdState}"`);
    expect(toml).toMatch(/netns_mounts_under_state_dir = true/);
    expect(toml).toMatch(/\[plugins\.'io\.containerd\.nri\.v1\.nri'\]\s+disable = true/);
  });
});

describe("CNI bridge", () => {
  it("gives pods addresses from the node's CIDR on a bridge named after the node folder", () => {
    const conflist = JSON.parse(cniConflist({ layout, podCidr: "10.244.7.0/24" })) as {
      plugins: Array<{ type: string; bridge?: string; isGateway?: boolean; ipam?: unknown }>;
    };
    const bridge = conflist.plugins.find((p) => p.type === "bridge")!;
    expect(bridge.bridge).toBe(bridgeName(layout));
    expect(bridgeName(layout).length).toBeLessThanOrEqual(15); // IFNAMSIZ - 1
    expect(bridgeName(realNodeLayout("/d", "devcluster-node"))).not.toBe(bridgeName(layout));
    expect(bridge.isGateway).toBe(true);
    expect(bridge.ipam).toMatchObject({
      ranges: [[{ subnet: "10.244.7.0/24" }]],
      dataDir: layout.cniDataDir,
    });
  });
});

describe("the node's network", () => {
  it("derives every address from the cluster's octet, so two clusters never share one", () => {
    expect(nodeNetwork(7)).toEqual({
      netns: "sjnode7",
      netnsPath: "/run/netns/sjnode7",
      hostIp: "10.245.7.1",
      nodeIp: "10.245.7.2",
      podCidr: "10.244.7.0/24",
      hostLink: "sjh7",
    });
    expect(nodeNetwork(8).podCidr).not.toBe(nodeNetwork(7).podCidr);
  });

  it("refuses an octet outside 1..254", () => {
    expect(() => nodeNetwork(0)).toThrow(/octet 0/);
    expect(() => nodeNetwork(255)).toThrow(/octet 255/);
  });

  it("enters only the network namespace: containerd and the kubelet must share the machine's mounts", () => {
    expect(inNodeNetwork(nodeNetwork(7), "/bin/kubelet", ["--v=2"])).toEqual([
      "nsenter",
      ["--net=/run/netns/sjnode7", "--", "/bin/kubelet", "--v=2"],
    ]);
  });
});
