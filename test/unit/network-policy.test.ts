// The NetworkPolicy evaluator against the semantics the Kubernetes API reference documents, then the
// chart's default policies (manifests/install.yaml) in the model cluster. The chart test does the
// same for `helm template` output with other values (test/integration/chart.test.ts).
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { chartNetwork } from "./support/chart-network.js";
import { type Connection, type Pod, PolicyEvaluator } from "./support/network-policy.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

const pod = (namespace: string, labels: Record<string, string>, ip: string): Pod => ({
  kind: "pod",
  namespace,
  labels,
  ip,
  ports: [{ name: "http", containerPort: 8080 }],
});
const web = pod("shop", { app: "web" }, "10.0.0.1");
const db = pod("shop", { app: "db" }, "10.0.0.2");
const batch = pod("jobs", { app: "batch" }, "10.0.1.1");
const webElsewhere = pod("jobs", { app: "web" }, "10.0.1.2");
const outside = { kind: "address", ip: "203.0.113.9" } as const;
const NAMESPACES = { shop: { team: "shop" }, jobs: { team: "data" } };

function policy(namespace: string, spec: Record<string, unknown>) {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "p", namespace },
    spec,
  };
}
const toDb = (from: Connection["from"], port = 5432, protocol?: "UDP"): Connection => ({
  from,
  to: db,
  port,
  ...(protocol && { protocol }),
});
const dbOnly = { matchLabels: { app: "db" } };

describe("the NetworkPolicy evaluator follows the documented semantics", () => {
  test.each<[string, Record<string, unknown>[], Connection, boolean]>([
    ["a pod no policy selects accepts everything", [], toDb(batch), true],
    [
      "a selected pod with no ingress rules accepts nothing",
      [policy("shop", { podSelector: dbOnly, policyTypes: ["Ingress"] })],
      toDb(web),
      false,
    ],
    [
      "a policy in another namespace does not select the pod",
      [policy("jobs", { podSelector: {}, policyTypes: ["Ingress"] })],
      toDb(web),
      true,
    ],
    [
      "the node's traffic (kubelet probes) is always allowed",
      [policy("shop", { podSelector: {}, policyTypes: ["Ingress"] })],
      toDb({ kind: "node", ip: "10.0.255.1" }),
      true,
    ],
    [
      "from with only a podSelector means pods of the policy's own namespace",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }],
        }),
      ],
      toDb(webElsewhere),
      false,
    ],
    [
      "... and allows them there",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }],
        }),
      ],
      toDb(web),
      true,
    ],
    [
      "a namespaceSelector alone selects every pod of the namespaces",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "data" } } }] }],
        }),
      ],
      toDb(batch),
      true,
    ],
    [
      "namespaceSelector and podSelector in one peer: both must match",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [
            {
              from: [
                {
                  namespaceSelector: { matchLabels: { team: "data" } },
                  podSelector: { matchLabels: { app: "web" } },
                },
              ],
            },
          ],
        }),
      ],
      toDb(batch),
      false,
    ],
    [
      "the same selectors as two peers: either may match",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [
            {
              from: [
                { namespaceSelector: { matchLabels: { team: "data" } } },
                { podSelector: { matchLabels: { app: "web" } } },
              ],
            },
          ],
        }),
      ],
      toDb(batch),
      true,
    ],
    [
      "every namespace has kubernetes.io/metadata.name",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [
            {
              from: [
                {
                  namespaceSelector: {
                    matchExpressions: [
                      { key: "kubernetes.io/metadata.name", operator: "In", values: ["jobs"] },
                    ],
                  },
                },
              ],
            },
          ],
        }),
      ],
      toDb(batch),
      true,
    ],
    [
      "matchExpressions NotIn excludes",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [
            {
              from: [
                { podSelector: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] } },
              ],
            },
          ],
        }),
      ],
      toDb(web),
      false,
    ],
    [
      "an ipBlock allows its CIDR",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [{ from: [{ ipBlock: { cidr: "203.0.113.0/24" } }] }],
        }),
      ],
      toDb(outside),
      true,
    ],
    [
      "... but not its except",
      [
        policy("shop", {
          podSelector: dbOnly,
          ingress: [{ from: [{ ipBlock: { cidr: "203.0.113.0/24", except: ["203.0.113.8/29"] } }] }],
        }),
      ],
      toDb(outside),
      false,
    ],
    [
      "a rule without from allows every source on its ports",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ port: 5432 }] }] })],
      toDb(outside),
      true,
    ],
    [
      "a port is TCP unless it says otherwise",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ port: 5432 }] }] })],
      toDb(web, 5432, "UDP"),
      false,
    ],
    [
      "a port outside the rule's ports is refused",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ port: 5432 }] }] })],
      toDb(web, 5433),
      false,
    ],
    [
      "endPort makes a range",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ port: 5000, endPort: 6000 }] }] })],
      toDb(web, 5432),
      true,
    ],
    [
      "a named port is the destination pod's container port of that name",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ port: "http" }] }] })],
      toDb(web, 8080),
      true,
    ],
    [
      "a port with only a protocol allows every port of it",
      [policy("shop", { podSelector: dbOnly, ingress: [{ ports: [{ protocol: "UDP" }] }] })],
      toDb(web, 9, "UDP"),
      true,
    ],
    [
      "policies add up: one allowing is enough",
      [
        policy("shop", { podSelector: dbOnly, policyTypes: ["Ingress"] }),
        policy("shop", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }),
      ],
      toDb(web),
      true,
    ],
    [
      "a policy with an egress section and no policyTypes isolates egress too",
      [policy("shop", { podSelector: { matchLabels: { app: "web" } }, egress: [] })],
      toDb(web),
      false,
    ],
    [
      "a policy without egress section and policyTypes leaves egress open",
      [policy("shop", { podSelector: { matchLabels: { app: "web" } }, ingress: [] })],
      toDb(web),
      true,
    ],
    [
      "egress and ingress must both allow: the source's egress refuses",
      [
        policy("shop", { podSelector: dbOnly, ingress: [{}] }),
        policy("jobs", {
          podSelector: {},
          policyTypes: ["Egress"],
          egress: [{ ports: [{ port: 53, protocol: "UDP" }] }],
        }),
      ],
      toDb(batch),
      false,
    ],
  ])("%s", (_, policies, connection, allowed) => {
    expect(new PolicyEvaluator(policies, NAMESPACES).allows(connection)).toBe(allowed);
  });

  test("a policy the API would read differently (a misspelt field) is refused, not ignored", () => {
    const misspelt = policy("shop", { podSelector: dbOnly, ingress: [{ form: [{ podSelector: {} }] }] });
    expect(() => new PolicyEvaluator([misspelt], NAMESPACES)).toThrow(/form/);
  });
});

describe("manifests/install.yaml (the chart's defaults)", () => {
  const objects = parseAllDocuments(readFileSync(path.join(root, "manifests", "install.yaml"), "utf8"))
    .map((doc) => doc.toJS() as { kind: string; metadata: { namespace?: string } } | null)
    .filter((o) => o !== null);
  const network = chartNetwork(objects);

  test("has the operator's policy only: without watchNamespaces the chart cannot know the job namespaces", () => {
    expect(network.policies.map((p) => `${p.kind} ${p.metadata.namespace}`)).toEqual([
      "NetworkPolicy streamjob-system",
    ]);
  });

  test("anyone may scrape the operator's port 8080, and reach no other port; its egress is open", () => {
    expect(
      network.wrongVerdicts({
        allowed: [
          ["prometheus", "operator", 8080],
          ["podElsewhere", "operator", 8080],
          ["node", "operator", 8080],
          ["operator", "apiServer", 6443],
          ["operator", "ordersTask0", 8080],
        ],
        refused: [["podElsewhere", "operator", 9229]],
      }),
    ).toEqual([]);
  });
});
