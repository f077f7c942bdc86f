// Cluster DNS for a cluster with a real node: CoreDNS as a process on the machine (there is no
// registry to pull its image from), answering for cluster.local from the apiserver with the
// `kubernetes` plugin and forwarding other names to the machine's nameservers.
//
// Pods reach it the usual way: the kubelet hands them nameserver 10.0.0.10 (clusterDNS), the
// Service kube-system/kube-dns has that ClusterIP and no selector, and an EndpointSlice written
// here points it at <listenIp>:53, so kube-proxy DNATs 10.0.0.10:53 to this process. The listen
// address must therefore be an IPv4 address the pods can reach, not a 127.x one: the apiserver
// rejects loopback endpoint addresses (and kube-proxy would not DNAT pod traffic to one).
//
// CoreDNS authenticates as CN=system:coredns, a client certificate signed by the cluster CA, bound
// to a ClusterRole like the upstream system:coredns one (list/watch services, endpointslices,
// namespaces, pods).
//
// Files: <clusterDir>/real-node/dns/{Corefile,coredns.kubeconfig}; log <clusterDir>/logs/coredns.log.
// The cluster records its process with the others, and cluster:down stops it.
import {
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { Resolver } from "node:dns/promises";
import path from "node:path";
import { ensureRealNodeAssets } from "../assets.js";
import { httpGetOk, writeKubeconfig } from "../kubeconfig.js";
import { issueFromCa } from "../pki.js";
import { freePort, startDetached, stopProcess, waitFor, type StartedProcess } from "../processes.js";

/** The kube-dns Service's ClusterIP (service CIDR 10.0.0.0/24; 10.0.0.1 is `kubernetes`). */
export const CLUSTER_DNS_IP = "10.0.0.10";
export const CLUSTER_DOMAIN = "cluster.local";
/** The user CoreDNS authenticates as (its certificate's CN) and the ClusterRole(Binding) name. */
export const COREDNS_USER = "system:coredns";

const FIELD_MANAGER = "devcluster-dns";

export interface CorefileOptions {
  /** Address the DNS server binds (UDP and TCP). */
  listenIp: string;
  port: number;
  /** Kubeconfig the `kubernetes` plugin watches the apiserver with (its current context). */
  kubeconfig: string;
  /** Nameservers for names outside the cluster; none: those are refused. */
  upstreams: string[];
  /** Port on 127.0.0.1 of the readiness endpoint: GET /ready is 200 once the plugin has synced. */
  healthPort: number;
}

/**
 * The Corefile: the kubeadm default without `loop` (the upstreams are never this server), `reload`
 * and `prometheus`. Without upstreams the server answers only the cluster zones (REFUSED for the
 * rest, NXDOMAIN for reverse names of addresses that are no Service's or pod's).
 */
export function corefile(o: CorefileOptions): string {
  const zones = [CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa"];
  const forward = o.upstreams.length > 0;
  // A `.` server block answers every name (reverse lookups of other addresses fall through to
  // `forward`); without one, the server blocks are the cluster zones themselves.
  const serverKeys = (forward ? ["."] : zones).map((zone) => `${zone}:${o.port}`).join(" ");
  const lines = [
    `${serverKeys} {`,
    `    bind ${o.listenIp}`,
    "    errors",
    `    ready 127.0.0.1:${o.healthPort}`,
    `    kubernetes ${zones.join(" ")} {`,
    `        kubeconfig ${o.kubeconfig}`,
    "        pods insecure",
    // Reverse names of addresses outside the cluster go on to `forward`; with nothing to go on
    // to they are answered NXDOMAIN here rather than SERVFAIL ("no next plugin found").
    ...(forward ? ["        fallthrough in-addr.arpa ip6.arpa"] : []),
    "        ttl 30",
    "    }",
    ...(forward ? [`    forward . ${o.upstreams.join(" ")}`] : []),
    "    cache 30",
    "    loadbalance",
    "}",
  ];
  return lines.join("\n") + "\n";
}

/**
 * The nameservers of a resolv.conf that CoreDNS can forward to: not loopback (systemd-resolved's
 * 127.0.0.53, a local dnsmasq: from a pod's point of view, or CoreDNS's own, they loop or vanish),
 * not link-local with a zone (`fe80::1%eth0`).
 */
export function upstreamNameservers(resolvConf: string): string[] {
  const servers: string[] = [];
  for (const line of resolvConf.split("\n")) {
    const match = line.match(/^\s*nameserver\s+(\S+)/);
    const server = match?.[1];
    if (!server || server.includes("%")) continue;
    if (/^127\./.test(server) || server === "::1" || server === "0.0.0.0") continue;
    if (!servers.includes(server)) servers.push(server);
  }
  return servers;
}

/** The machine's nameservers; behind systemd-resolved (127.0.0.53) its own upstream list. */
export function hostUpstreams(): string[] {
  for (const file of ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]) {
    try {
      const servers = upstreamNameservers(readFileSync(file, "utf8"));
      if (servers.length > 0) return servers;
    } catch {
      // no such file: try the next
    }
  }
  return [];
}

export function clusterDnsDir(clusterDir: string): string {
  return path.join(clusterDir, "real-node", "dns");
}

export interface ClusterDnsOptions {
  clusterDir: string;
  /**
   * Where CoreDNS listens; kube-dns's EndpointSlice points at it, so a non-loopback IPv4 address the
   * pods can reach (the apiserver rejects 127.0.0.0/8 endpoint addresses).
   */
  listenIp: string;
  /** Admin kubeconfig: its cluster (server, CA) is the one CoreDNS watches; it writes the objects. */
  adminKubeconfig: string;
  /** Default 53 (what the kube-dns Service forwards to; needs root or CAP_NET_BIND_SERVICE). */
  port?: number;
  /** The cluster CA that signs CoreDNS's client certificate; default <clusterDir>/pki/ca.{crt,key}. */
  caCert?: string;
  caKey?: string;
  /** Default the machine's non-loopback nameservers (`hostUpstreams`). */
  upstreams?: string[];
  /** Default the one `ensureRealNodeAssets` builds. */
  binary?: string;
  log?: (line: string) => void;
}

/** The objects written with the admin kubeconfig: RBAC for CoreDNS, the kube-dns Service and its endpoints. */
export function clusterDnsObjects(listenIp: string, port: number): KubernetesObject[] {
  const labels = { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS" };
  const rbac = "rbac.authorization.k8s.io";
  return [
    {
      apiVersion: `${rbac}/v1`,
      kind: "ClusterRole",
      metadata: { name: COREDNS_USER },
      // Upstream's system:coredns role (endpoints kept for older plugin versions).
      rules: [
        {
          apiGroups: [""],
          resources: ["endpoints", "services", "pods", "namespaces"],
          verbs: ["list", "watch"],
        },
        { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
      ],
    } as KubernetesObject,
    {
      apiVersion: `${rbac}/v1`,
      kind: "ClusterRoleBinding",
      metadata: { name: COREDNS_USER },
      roleRef: { apiGroup: rbac, kind: "ClusterRole", name: COREDNS_USER },
      subjects: [{ apiGroup: rbac, kind: "User", name: COREDNS_USER }],
    } as KubernetesObject,
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kube-dns", namespace: "kube-system", labels },
      // No selector: the EndpointSlice below is ours, not the endpointslice controller's.
      spec: {
        clusterIP: CLUSTER_DNS_IP,
        ports: [
          { name: "dns", port: 53, protocol: "UDP", targetPort: port },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: port },
        ],
      },
    } as KubernetesObject,
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "kube-dns-host",
        namespace: "kube-system",
        labels: {
          ...labels,
          "kubernetes.io/service-name": "kube-dns",
          "endpointslice.kubernetes.io/managed-by": "devcluster",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [listenIp], conditions: { ready: true } }],
      ports: [
        { name: "dns", port, protocol: "UDP" },
        { name: "dns-tcp", port, protocol: "TCP" },
      ],
    } as KubernetesObject,
  ];
}

/**
 * Starts CoreDNS (stopping one this cluster folder ran before), waits until it has synced with the
 * apiserver and answers on <listenIp>:<port>, then points kube-system/kube-dns (10.0.0.10) at it.
 */
export async function startClusterDns(
  o: ClusterDnsOptions,
): Promise<{ process: StartedProcess; port: number }> {
  const log = o.log ?? (() => undefined);
  const port = o.port ?? 53;
  const dir = clusterDnsDir(o.clusterDir);
  const logsDir = path.join(o.clusterDir, "logs");
  const caCert = o.caCert ?? path.join(o.clusterDir, "pki", "ca.crt");
  const caKey = o.caKey ?? path.join(o.clusterDir, "pki", "ca.key");
  const upstreams = o.upstreams ?? hostUpstreams();
  // The apiserver refuses loopback endpoint addresses (and kube-proxy could not DNAT to one).
  if (!net.isIPv4(o.listenIp) || o.listenIp.startsWith("127."))
    throw new Error(`cluster DNS listen address ${o.listenIp}: expected a non-loopback IPv4 address`);

  const binary = o.binary ?? (await ensureRealNodeAssets(log)).coredns;
  mkdirSync(dir, { recursive: true });
  mkdirSync(logsDir, { recursive: true });

  const admin = new KubeConfig();
  admin.loadFromFile(o.adminKubeconfig);
  const server = admin.getCurrentCluster()?.server;
  if (!server) throw new Error(`${o.adminKubeconfig} names no cluster server`);
  const objects = KubernetesObjectApi.makeApiClient(admin);
  const apply = (obj: KubernetesObject) =>
    objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
  const [role, binding, service, slice] = clusterDnsObjects(o.listenIp, port);
  // RBAC first: the plugin lists services, endpointslices and namespaces as soon as it starts.
  await apply(role!);
  await apply(binding!);

  const user = await issueFromCa(caCert, caKey, `CN=${COREDNS_USER}`, "client");
  const kubeconfig = path.join(dir, "coredns.kubeconfig");
  const caPem = readFileSync(caCert, "utf8");
  writeKubeconfig(kubeconfig, { server, caPem, ...user });
  const healthPort = await freePort();
  const text = corefile({ listenIp: o.listenIp, port, kubeconfig, upstreams, healthPort });
  const corefilePath = path.join(dir, "Corefile");
  writeFileSync(corefilePath, text);

  const started = Date.now();
  const proc = startDetached(
    "coredns",
    binary,
    ["-conf", corefilePath],
    path.join(logsDir, "coredns.log"),
    process.env,
    dir,
  );
  try {
    await waitFor("coredns ready", () => httpGetOk(`http://127.0.0.1:${healthPort}/ready`), 60_000, proc.pid);
    // Ready means synced; the DNS listener itself is checked with a query.
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([port === 53 ? o.listenIp : `${o.listenIp}:${port}`]);
    await waitFor(
      `coredns answering on ${o.listenIp}:${port}`,
      async () => (await resolver.resolve4(`kubernetes.default.svc.${CLUSTER_DOMAIN}`)).length > 0,
      30_000,
      proc.pid,
    );
    await apply(service!);
    await apply(slice!);
  } catch (err) {
    await stopProcess(proc.pid);
    throw err;
  }
  log(
    `coredns: answering on ${o.listenIp}:${port} in ${Date.now() - started} ms; kube-dns ${CLUSTER_DNS_IP} -> it`,
  );
  return { process: proc, port };
}
