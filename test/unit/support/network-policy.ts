// Decides whether a connection is allowed by a set of networking.k8s.io/v1 NetworkPolicies, by the
// semantics of the Kubernetes API reference (NetworkPolicySpec, NetworkPolicyPeer,
// NetworkPolicyPort, LabelSelector) and the "Network Policies" concept page. The test cluster's
// network does not enforce policies, so tests ask this what the chart's policies mean.
// Left out, as implementation-defined: hostNetwork pods, and whether ipBlock sees addresses before
// or after NAT (here: the endpoint's own address).
import { BlockList, isIPv4 } from "node:net";
import { z } from "zod";

const labels = z.record(z.string(), z.string());

const labelSelector = z.strictObject({
  matchLabels: labels.optional(),
  matchExpressions: z
    .array(
      z.strictObject({
        key: z.string(),
        operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
        values: z.array(z.string()).optional(),
      }),
    )
    .optional(),
});
type LabelSelector = z.infer<typeof labelSelector>;

const peer = z.strictObject({
  podSelector: labelSelector.optional(),
  namespaceSelector: labelSelector.optional(),
  ipBlock: z.strictObject({ cidr: z.string(), except: z.array(z.string()).optional() }).optional(),
});
type Peer = z.infer<typeof peer>;

const protocol = z.enum(["TCP", "UDP", "SCTP"]);
type Protocol = z.infer<typeof protocol>;

const policyPort = z.strictObject({
  protocol: protocol.default("TCP"),
  port: z.union([z.int(), z.string()]).optional(),
  endPort: z.int().optional(),
});
type PolicyPort = z.infer<typeof policyPort>;

const networkPolicySchema = z.object({
  apiVersion: z.literal("networking.k8s.io/v1"),
  kind: z.literal("NetworkPolicy"),
  metadata: z.object({ name: z.string(), namespace: z.string() }),
  spec: z.strictObject({
    podSelector: labelSelector,
    policyTypes: z.array(z.enum(["Ingress", "Egress"])).optional(),
    ingress: z
      .array(z.strictObject({ from: z.array(peer).optional(), ports: z.array(policyPort).optional() }))
      .optional(),
    egress: z
      .array(z.strictObject({ to: z.array(peer).optional(), ports: z.array(policyPort).optional() }))
      .optional(),
  }),
});
type NetworkPolicy = z.infer<typeof networkPolicySchema>;

export interface Pod {
  kind: "pod";
  namespace: string;
  labels: Record<string, string>;
  ip: string;
  /** Container ports, for policies that name a port. */
  ports?: { name: string; containerPort: number; protocol?: Protocol }[];
}
/** An address that is no pod: a server outside the cluster, a Service's backend on a host. */
export interface Address {
  kind: "address";
  ip: string;
}
/** The node a pod runs on (the kubelet's probes): policies never block it. */
export interface Node {
  kind: "node";
  ip: string;
}
export type Endpoint = Pod | Address | Node;

export interface Connection {
  from: Endpoint;
  to: Endpoint;
  port: number;
  protocol?: Protocol;
}

function matchesSelector(selector: LabelSelector, of: Record<string, string>): boolean {
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => of[key] === value);
  return (
    byLabel &&
    (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
      switch (operator) {
        case "In":
          return key in of && values.includes(of[key]!);
        case "NotIn":
          return !(key in of) || !values.includes(of[key]!);
        case "Exists":
          return key in of;
        case "DoesNotExist":
          return !(key in of);
      }
    })
  );
}

/** Namespaces by name with their labels; every namespace also has kubernetes.io/metadata.name. */
export type Namespaces = Record<string, Record<string, string>>;

export class PolicyEvaluator {
  private readonly policies: NetworkPolicy[];

  constructor(
    policies: unknown[],
    private readonly namespaces: Namespaces,
  ) {
    this.policies = policies.map((p) => networkPolicySchema.parse(p));
  }

  /** Allowed only if the source's egress and the destination's ingress both allow it. */
  allows(connection: Connection): boolean {
    const { from, to } = connection;
    const egress =
      from.kind !== "pod" || to.kind === "node" || this.allowedBy("Egress", from, to, connection);
    const ingress =
      to.kind !== "pod" || from.kind === "node" || this.allowedBy("Ingress", to, from, connection);
    return egress && ingress;
  }

  private allowedBy(
    direction: "Ingress" | "Egress",
    pod: Pod,
    peerEndpoint: Endpoint,
    connection: Connection,
  ) {
    const isolating = this.policies.filter(
      (policy) =>
        policy.metadata.namespace === pod.namespace &&
        matchesSelector(policy.spec.podSelector, pod.labels) &&
        policyTypes(policy).includes(direction),
    );
    // A pod no policy isolates in this direction accepts everything.
    if (isolating.length === 0) return true;
    const destination = direction === "Ingress" ? pod : connection.to;
    return isolating.some((policy) => {
      const rules =
        direction === "Ingress"
          ? (policy.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports }))
          : (policy.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
      return rules.some(
        (rule) =>
          matchesAny(rule.ports, (p) => this.portMatches(p, connection, destination)) &&
          matchesAny(rule.peers, (p) => this.peerMatches(p, policy.metadata.namespace, peerEndpoint)),
      );
    });
  }

  private peerMatches(peer: Peer, policyNamespace: string, endpoint: Endpoint): boolean {
    if (peer.ipBlock) return inBlock(endpoint.ip, peer.ipBlock.cidr, peer.ipBlock.except ?? []);
    if (endpoint.kind !== "pod") return false;
    // namespaceSelector alone: every pod of the selected namespaces; podSelector alone: pods of the
    // policy's own namespace; both: the selected pods in the selected namespaces.
    const inNamespace = peer.namespaceSelector
      ? matchesSelector(peer.namespaceSelector, this.namespaceLabels(endpoint.namespace))
      : endpoint.namespace === policyNamespace;
    return (
      inNamespace && (peer.podSelector === undefined || matchesSelector(peer.podSelector, endpoint.labels))
    );
  }

  private portMatches(port: PolicyPort, connection: Connection, destination: Endpoint): boolean {
    if (port.protocol !== (connection.protocol ?? "TCP")) return false;
    if (port.port === undefined) return true;
    if (typeof port.port === "string") {
      // A named port is the destination pod's container port of that name and protocol.
      if (destination.kind !== "pod") return false;
      return (destination.ports ?? []).some(
        (p) =>
          p.name === port.port &&
          (p.protocol ?? "TCP") === port.protocol &&
          p.containerPort === connection.port,
      );
    }
    return port.endPort === undefined
      ? connection.port === port.port
      : connection.port >= port.port && connection.port <= port.endPort;
  }

  private namespaceLabels(name: string): Record<string, string> {
    const namespace = this.namespaces[name];
    if (namespace === undefined) throw new Error(`namespace ${name} is not in the evaluator's cluster`);
    return { ...namespace, "kubernetes.io/metadata.name": name };
  }
}

/** policyTypes, or its default: Ingress always, Egress when the policy has an egress section. */
function policyTypes(policy: NetworkPolicy): ("Ingress" | "Egress")[] {
  return policy.spec.policyTypes ?? (policy.spec.egress === undefined ? ["Ingress"] : ["Ingress", "Egress"]);
}

/** A missing or empty list of peers or ports matches everything; else one item must match. */
function matchesAny<T>(items: T[] | undefined, matches: (item: T) => boolean): boolean {
  return items === undefined || items.length === 0 || items.some(matches);
}

function inBlock(ip: string, cidr: string, except: string[]): boolean {
  const contains = (block: string) => {
    const [network, prefix] = block.split("/");
    const family = isIPv4(network!) ? "ipv4" : "ipv6";
    const list = new BlockList();
    list.addSubnet(network!, Number(prefix), family);
    return list.check(ip, isIPv4(ip) ? "ipv4" : "ipv6");
  };
  return contains(cidr) && !except.some(contains);
}
