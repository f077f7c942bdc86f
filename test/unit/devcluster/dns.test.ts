// The cluster DNS's Corefile and objects: pure functions, checked without starting CoreDNS.
import type { V1ClusterRoleBinding, V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import {
  CLUSTER_DNS_IP,
  clusterDnsObjects,
  corefile,
  upstreamNameservers,
} from "../../../src/devcluster/real-node/dns.js";

const base = {
  listenIp: "10.99.0.1",
  port: 53,
  kubeconfig: "/c/real-node/dns/coredns.kubeconfig",
  healthPort: 41234,
};

/** Directive lines of the block opened by the line starting with `opener`, without the braces. */
function block(text: string, opener: string): string[] {
  const lines = text.split("\n").map((l) => l.trim());
  const start = lines.findIndex((l) => l.startsWith(opener) && l.endsWith("{"));
  if (start < 0) throw new Error(`no block ${opener} in\n${text}`);
  const body: string[] = [];
  let depth = 1;
  for (const line of lines.slice(start + 1)) {
    if (line.endsWith("{")) depth++;
    if (line === "}" && --depth === 0) return body;
    body.push(line);
  }
  throw new Error(`block ${opener} is not closed in\n${text}`);
}

describe("corefile", () => {
  const text = corefile({ ...base, upstreams: ["10.255.255.53", "2001:db8::53"] });

  test("one server block for every name on the port, bound to the listen address", () => {
    const lines = text.trim().split("\n");
    expect(lines[0]).toBe(".:53 {");
    expect(lines.filter((l) => /^\S.*\{$/.test(l))).toHaveLength(1);
    expect(block(text, ".:53")).toContain("bind 10.99.0.1");
    expect(text).not.toMatch(/bind .*127\./);
  });

  test("the kubernetes plugin serves the cluster and reverse zones from the given kubeconfig", () => {
    expect(block(text, ".:53")).toContain("kubernetes cluster.local in-addr.arpa ip6.arpa {");
    expect(block(text, "kubernetes ")).toEqual([
      "kubeconfig /c/real-node/dns/coredns.kubeconfig",
      "pods insecure",
      "fallthrough in-addr.arpa ip6.arpa",
      "ttl 30",
    ]);
  });

  test("other names go to every upstream; readiness on loopback; no loop detection", () => {
    const server = block(text, ".:53");
    expect(server).toContain("forward . 10.255.255.53 2001:db8::53");
    expect(server).toContain("ready 127.0.0.1:41234");
    expect(server).toContain("cache 30");
    expect(server).toContain("errors");
    expect(server.some((l) => /^loop\b/.test(l))).toBe(false);
  });

  test("without upstreams: no forward, and only the cluster zones are served (the rest refused)", () => {
    const alone = corefile({ ...base, port: 5353, upstreams: [] });
    expect(alone).not.toContain("forward");
    // Nothing to fall through to: unknown reverse names get NXDOMAIN instead of SERVFAIL.
    expect(alone).not.toContain("fallthrough");
    expect(alone.split("\n")[0]).toBe("cluster.local:5353 in-addr.arpa:5353 ip6.arpa:5353 {");
    expect(block(alone, "cluster.local:5353")).toContain("bind 10.99.0.1");
  });
});

test("upstreams: the resolv.conf nameservers a pod or CoreDNS can reach, in order, once each", () => {
  const resolvConf = [
    "# generated",
    "nameserver 127.0.0.53",
    "nameserver 10.255.255.53",
    "search example.internal",
    "nameserver ::1",
    "nameserver fe80::1%eth0",
    "  nameserver 192.0.2.1",
    "nameserver 10.255.255.53",
    "options edns0",
  ].join("\n");
  expect(upstreamNameservers(resolvConf)).toEqual(["10.255.255.53", "192.0.2.1"]);
  expect(upstreamNameservers("nameserver 127.0.0.53\n")).toEqual([]);
});

test("kube-dns: ClusterIP 10.0.0.10, no selector, its EndpointSlice points at the listen address", () => {
  const objects = clusterDnsObjects("10.99.0.1", 53);
  const service = objects.find((o) => o.kind === "Service") as V1Service;
  const slice = objects.find((o) => o.kind === "EndpointSlice") as V1EndpointSlice;
  expect(service.metadata).toMatchObject({ name: "kube-dns", namespace: "kube-system" });
  expect(service.metadata?.labels?.["k8s-app"]).toBe("kube-dns");
  expect(service.spec?.clusterIP).toBe(CLUSTER_DNS_IP);
  expect(CLUSTER_DNS_IP).toBe("10.0.0.10");
  expect(service.spec?.selector).toBeUndefined();
  expect(slice.apiVersion).toBe("discovery.k8s.io/v1");
  expect(slice.metadata?.namespace).toBe("kube-system");
  expect(slice.metadata?.labels?.["kubernetes.io/service-name"]).toBe("kube-dns");
  expect(slice.addressType).toBe("IPv4");
  expect(slice.endpoints).toEqual([{ addresses: ["10.99.0.1"], conditions: { ready: true } }]);
  // kube-proxy matches the slice's ports to the Service's by name and protocol.
  const key = (p: { name?: string; protocol?: string }) => `${p.name}/${p.protocol}`;
  expect(slice.ports?.map(key).sort()).toEqual(["dns-tcp/TCP", "dns/UDP"]);
  expect(service.spec?.ports?.map(key).sort()).toEqual(["dns-tcp/TCP", "dns/UDP"]);
  expect(slice.ports?.every((p) => p.port === 53)).toBe(true);

  const binding = objects.find((o) => o.kind === "ClusterRoleBinding") as V1ClusterRoleBinding;
  expect(binding.subjects).toEqual([
    { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "system:coredns" },
  ]);
});
