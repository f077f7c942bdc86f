// The Helm chart (charts/streamjob-operator) and manifests/: static checks with the real helm binary
// from the test assets (lint, RBAC, Pod Security, values schema, the generated install.yaml), then
// the examples, the MinIO manifest and the rendered chart against the test cluster's API server
// (server-side dry runs: nothing is installed).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { parseStreamJobSpec } from "../../src/api/streamjob.js";
import { resolveBinary } from "../../src/devcluster/assets.js";
import { chartDir, installManifestPath, renderInstall } from "../../scripts/render-install.js";
import { clients, createNamespace, kubeconfigPath, kubectl, repoRoot } from "./support/cluster.js";
import { installCrd } from "./support/streamjobs.js";
import { chartNetwork, JOB_NAMESPACE } from "../unit/support/chart-network.js";

const helmBinary = resolveBinary("helm");
const scratch = mkdtempSync(path.join(tmpdir(), "chart-test-"));
const RELEASE_NAMESPACE = "streamjob-system";

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
  verbs: string[];
}

interface Container {
  name: string;
  image: string;
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    privileged?: boolean;
  };
  volumeMounts?: { name: string; mountPath: string }[];
}

interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  containers: Container[];
  volumes?: { name: string; emptyDir?: object }[];
  [field: string]: unknown;
}

interface Deployment extends K8sObject {
  spec: {
    replicas: number;
    strategy: { type: string };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

function run(binary: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(binary, args, { encoding: "utf8" });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

let valuesFiles = 0;
/** `helm template` with these values (written to a values file, as a user would); exit code and output. */
function template(
  values: Record<string, unknown> = {},
  namespace = RELEASE_NAMESPACE,
  release = "streamjob-operator",
) {
  const file = path.join(scratch, `values-${valuesFiles++}.yaml`);
  writeFileSync(file, JSON.stringify(values));
  return run(helmBinary, ["template", release, chartDir, "--namespace", namespace, "-f", file]);
}

function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

/** The chart's objects for these values; fails the test with helm's message if rendering fails. */
function render(values: Record<string, unknown> = {}, namespace = RELEASE_NAMESPACE): K8sObject[] {
  const result = template(values, namespace);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseObjects(result.stdout);
}

const ofKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const deploymentOf = (objects: K8sObject[]) => {
  const deployments = ofKind(objects, "Deployment") as Deployment[];
  expect(deployments).toHaveLength(1);
  return deployments[0]!;
};
const envOf = (deployment: Deployment) =>
  Object.fromEntries(
    (deployment.spec.template.spec.containers[0]!.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]),
  );
const rulesOf = (object: K8sObject) => (object as unknown as { rules: PolicyRule[] }).rules;
const leaderElectionRoles = (objects: K8sObject[]) =>
  ofKind(objects, "Role").filter((role) =>
    rulesOf(role).some((rule) => rule.apiGroups?.includes("coordination.k8s.io")),
  );

// The contract with the operator: exactly what it needs to run StreamJobs in a namespace.
const OPERATOR_RULES: PolicyRule[] = [
  {
    apiGroups: ["streamjob.dev"],
    resources: ["streamjobs"],
    verbs: ["get", "list", "watch"],
  },
  { apiGroups: ["streamjob.dev"], resources: ["streamjobs/status"], verbs: ["patch"] },
  { apiGroups: ["streamjob.dev"], resources: ["streamjobs/finalizers"], verbs: ["update"] },
  { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "create", "delete", "patch"] },
  { apiGroups: [""], resources: ["secrets"], verbs: ["get", "create"] },
  { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
];

/** Every NetworkPolicy value set, TaskManager policy in `namespace`: for lint and the API server. */
function fullNetworkPolicy(namespace: string) {
  const monitoring = { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } };
  return {
    networkPolicy: {
      namespaces: [namespace],
      taskManager: {
        ingress: { enabled: true, from: [monitoring] },
        egress: {
          enabled: true,
          extra: [
            {
              to: [{ ipBlock: { cidr: "198.51.100.0/24", except: ["198.51.100.0/28"] } }],
              ports: [{ port: 9092 }],
            },
          ],
        },
      },
      operator: {
        ingress: { enabled: true, metricsFrom: [monitoring] },
        egress: {
          enabled: true,
          apiServer: { to: [{ ipBlock: { cidr: "192.0.2.1/32" } }], ports: [{ port: 6443 }] },
        },
      },
      storage: {
        to: [
          {
            namespaceSelector: {
              matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["default"] }],
            },
            podSelector: { matchLabels: { app: "minio" } },
          },
        ],
        ports: [{ port: 9000, protocol: "TCP" }],
      },
      dns: {
        to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
        ports: [{ port: 53, protocol: "UDP" }],
      },
    },
  };
}

const exampleFiles = ["sequence.yaml", "wordcount.yaml"].map((f) =>
  path.join(repoRoot, "manifests", "examples", f),
);
const readYaml = (file: string) => parse(readFileSync(file, "utf8")) as Record<string, unknown>;

describe("the chart, rendered by helm", () => {
  test("helm lint --strict finds nothing to fix, with default and non-default values", () => {
    for (const values of [{}, { replicas: 2 }, { watchNamespaces: ["a", "b"] }, fullNetworkPolicy("a")]) {
      const file = path.join(scratch, `lint-${valuesFiles++}.yaml`);
      writeFileSync(file, JSON.stringify(values));
      const result = run(helmBinary, ["lint", "--strict", chartDir, "-f", file]);
      expect({ status: result.status, output: result.stdout + result.stderr }).toEqual({
        status: 0,
        output: expect.not.stringMatching(/\[(WARNING|ERROR)\]/),
      });
    }
  });

  test("the chart's CRD is a byte-identical copy of crds/streamjob.yaml", () => {
    const chartCrd = readFileSync(path.join(chartDir, "crds", "streamjob.yaml"), "utf8");
    const crd = readFileSync(path.join(repoRoot, "crds", "streamjob.yaml"), "utf8");
    if (chartCrd !== crd) {
      throw new Error(
        "charts/streamjob-operator/crds/streamjob.yaml differs from crds/streamjob.yaml: " +
          "cp crds/streamjob.yaml charts/streamjob-operator/crds/ && npm run manifests",
      );
    }
  });

  test("manifests/install.yaml is the chart rendered now", () => {
    const committed = readFileSync(installManifestPath, "utf8");
    if (committed !== renderInstall(helmBinary)) {
      throw new Error(
        "manifests/install.yaml is out of date with the chart or the CRD: run `npm run manifests`",
      );
    }
    const objects = parseObjects(committed);
    expect(objects[0]).toMatchObject({
      kind: "Namespace",
      metadata: {
        name: RELEASE_NAMESPACE,
        labels: { "pod-security.kubernetes.io/enforce": "restricted" },
      },
    });
    expect(objects[1]).toMatchObject({
      kind: "CustomResourceDefinition",
      metadata: { name: "streamjobs.streamjob.dev" },
    });
    for (const object of objects.slice(2)) {
      if (!["ClusterRole", "ClusterRoleBinding"].includes(object.kind))
        expect(`${object.kind} in ${object.metadata.namespace}`).toBe(
          `${object.kind} in ${RELEASE_NAMESPACE}`,
        );
    }
  });

  test("no RBAC rule grants a wildcard, whatever the values", () => {
    for (const values of [
      {},
      { replicas: 3 },
      { leaderElection: { enabled: true }, watchNamespaces: ["a", "b"] },
    ]) {
      const rules = render(values)
        .filter((o) => o.kind === "ClusterRole" || o.kind === "Role")
        .flatMap(rulesOf);
      expect(rules.length).toBeGreaterThan(0);
      for (const rule of rules) {
        const fields = [rule.apiGroups, rule.resources, rule.resourceNames, rule.nonResourceURLs, rule.verbs];
        expect(fields.flat().filter((v) => v?.includes("*"))).toEqual([]);
      }
    }
  });

  test("by default one ClusterRole, bound to the operator's ServiceAccount, holds exactly the rules the operator needs", () => {
    const objects = render();
    const [clusterRole, ...moreClusterRoles] = ofKind(objects, "ClusterRole");
    expect(moreClusterRoles).toEqual([]);
    expect(rulesOf(clusterRole!)).toEqual(OPERATOR_RULES);
    // The only Role is the Lease's (leader election is on by default).
    expect(ofKind(objects, "Role")).toEqual(leaderElectionRoles(objects));
    expect(leaderElectionRoles(objects)).toHaveLength(1);
    expect(ofKind(objects, "ClusterRoleBinding")).toEqual([
      expect.objectContaining({
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: clusterRole!.metadata.name,
        },
        subjects: [{ kind: "ServiceAccount", name: "streamjob-operator", namespace: RELEASE_NAMESPACE }],
      }),
    ]);
    const deployment = deploymentOf(objects);
    expect(deployment.spec.template.spec.serviceAccountName).toBe("streamjob-operator");
    expect(envOf(deployment).STREAMJOB_WATCH_NAMESPACES).toBe("");
  });

  test("with watchNamespaces, a Role and RoleBinding in each watched namespace and nothing cluster-wide", () => {
    const objects = render({ watchNamespaces: ["a", "b"] });
    expect(ofKind(objects, "ClusterRole")).toEqual([]);
    expect(ofKind(objects, "ClusterRoleBinding")).toEqual([]);
    const leaseRoles = leaderElectionRoles(objects);
    const roles = ofKind(objects, "Role").filter((role) => !leaseRoles.includes(role));
    expect(roles.map((r) => r.metadata.namespace).sort()).toEqual(["a", "b"]);
    for (const role of roles) expect(rulesOf(role)).toEqual(OPERATOR_RULES);
    const bindings = ofKind(objects, "RoleBinding").filter(
      (binding) =>
        !leaseRoles.some((role) => role.metadata.name === (binding.roleRef as { name: string }).name),
    );
    expect(bindings.map((b) => b.metadata.namespace).sort()).toEqual(["a", "b"]);
    for (const binding of bindings) {
      expect(binding).toMatchObject({
        roleRef: { kind: "Role", name: "streamjob-operator" },
        subjects: [{ kind: "ServiceAccount", name: "streamjob-operator", namespace: RELEASE_NAMESPACE }],
      });
    }
    expect(envOf(deploymentOf(objects)).STREAMJOB_WATCH_NAMESPACES).toBe("a,b");
  });

  test.each([
    // On by default for every replica count: a deleted pod's process can outlive its replacement's start.
    ["one replica, default", {}, true],
    ["two replicas, default", { replicas: 2 }, true],
    ["one replica, turned off", { leaderElection: { enabled: false } }, false],
    ["watched namespaces, two replicas", { replicas: 2, watchNamespaces: ["a"] }, true],
  ])("leader election (%s): Lease Role in the release namespace iff on", (_, values, on) => {
    const objects = render(values);
    const roles = leaderElectionRoles(objects);
    const deployment = deploymentOf(objects);
    const env = envOf(deployment);
    expect(env.STREAMJOB_LEADER_ELECT).toBe(String(on));
    if (!on) {
      expect(roles).toEqual([]);
      // Never two operators at once without a leader: the old pod stops before the new one starts.
      expect(deployment.spec.strategy.type).toBe("Recreate");
      return;
    }
    expect(deployment.spec.strategy.type).toBe("RollingUpdate");
    expect(roles).toHaveLength(1);
    const role = roles[0]!;
    expect(role.metadata.namespace).toBe(RELEASE_NAMESPACE);
    expect(env.STREAMJOB_LEADER_ELECTION_NAMESPACE).toBe(RELEASE_NAMESPACE);
    expect(env.STREAMJOB_LEADER_ELECTION_ID).toBe("streamjob-operator");
    // Only leases, only get/create/update, and reading and renewing only the operator's own Lease.
    expect(rulesOf(role)).toEqual([
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: ["streamjob-operator"],
        verbs: ["get", "update"],
      },
    ]);
    expect(ofKind(objects, "RoleBinding")).toContainEqual(
      expect.objectContaining({
        metadata: expect.objectContaining({ namespace: RELEASE_NAMESPACE }),
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
      }),
    );
  });

  test("more than one replica with leader election off is refused", () => {
    const result = template({ replicas: 2, leaderElection: { enabled: false } });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("replicas: 2 needs leader election");
  });

  test("the operator pod meets Pod Security 'restricted' and writes only to an emptyDir at /tmp", () => {
    const pod = deploymentOf(render()).spec.template.spec;
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.containers).toHaveLength(1);
    expect(pod.containers[0]!.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
    });
    expect(pod.containers[0]!.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
    expect(pod.volumes).toEqual([{ name: "tmp", emptyDir: expect.any(Object) }]);
    for (const field of ["hostNetwork", "hostPID", "hostIPC"]) expect(pod[field]).toBeUndefined();
  });

  test("the operator container gets the environment, port and probes of the contract", () => {
    const deployment = deploymentOf(render({ logLevel: "debug" }));
    const container = deployment.spec.template.spec.containers[0]!;
    expect(container.image).toBe(`ghcr.io/streamjob/streamjob-operator:${chartYaml().appVersion}`);
    expect(envOf(deployment)).toEqual({
      NODE_OPTIONS: "--max-semi-space-size=2",
      MALLOC_ARENA_MAX: "2",
      STREAMJOB_WATCH_NAMESPACES: "",
      STREAMJOB_LEADER_ELECT: "true",
      STREAMJOB_LEADER_ELECTION_NAMESPACE: RELEASE_NAMESPACE,
      STREAMJOB_LEADER_ELECTION_ID: "streamjob-operator",
      STREAMJOB_HTTP_PORT: "8080",
      STREAMJOB_HTTP_HOST: { fieldRef: { fieldPath: "status.podIP" } },
      STREAMJOB_LOG_LEVEL: "debug",
      POD_NAME: { fieldRef: { fieldPath: "metadata.name" } },
      POD_NAMESPACE: { fieldRef: { fieldPath: "metadata.namespace" } },
    });
    expect(container.ports).toEqual([{ name: "http", containerPort: 8080, protocol: "TCP" }]);
    expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(deployment.spec.template.metadata.labels).toMatchObject({
      "app.kubernetes.io/name": "streamjob-operator",
      "app.kubernetes.io/instance": "streamjob-operator",
      "app.kubernetes.io/managed-by": "Helm",
      "helm.sh/chart": "streamjob-operator-0.1.0",
    });
  });

  test("a streamjob-taskmanager ServiceAccount without token or bindings in the release and each watched namespace", () => {
    for (const [values, namespaces] of [
      [{}, [RELEASE_NAMESPACE]],
      [{ watchNamespaces: ["a", RELEASE_NAMESPACE, "b"] }, [RELEASE_NAMESPACE, "a", "b"]],
    ] as const) {
      const objects = render(values);
      const accounts = ofKind(objects, "ServiceAccount").filter(
        (sa) => sa.metadata.name === "streamjob-taskmanager",
      );
      expect(accounts.map((sa) => sa.metadata.namespace).sort()).toEqual([...namespaces].sort());
      for (const account of accounts) expect(account.automountServiceAccountToken).toBe(false);
      const bound = [...ofKind(objects, "RoleBinding"), ...ofKind(objects, "ClusterRoleBinding")].flatMap(
        (b) => (b as unknown as { subjects: { name: string }[] }).subjects,
      );
      expect(bound.map((s) => s.name)).not.toContain("streamjob-taskmanager");
    }
    expect(ofKind(render({ taskManagerServiceAccount: { create: false } }), "ServiceAccount")).toHaveLength(
      1,
    );
  });

  test("metrics: a Service by default, a ServiceMonitor only when asked for", () => {
    const defaults = render();
    expect(ofKind(defaults, "ServiceMonitor")).toEqual([]);
    expect(ofKind(defaults, "Service")).toEqual([
      expect.objectContaining({
        spec: expect.objectContaining({
          ports: [{ name: "http", port: 8080, targetPort: "http", protocol: "TCP" }],
        }),
      }),
    ]);
    expect(ofKind(render({ metrics: { service: { enabled: false } } }), "Service")).toEqual([]);
    const monitored = render({
      metrics: {
        service: { enabled: false },
        serviceMonitor: { enabled: true, labels: { release: "prom" } },
      },
    });
    // The ServiceMonitor scrapes through the Service, so it brings the Service along.
    const [service] = ofKind(monitored, "Service");
    const [monitor] = ofKind(monitored, "ServiceMonitor");
    expect(monitor).toMatchObject({
      apiVersion: "monitoring.coreos.com/v1",
      metadata: { labels: { release: "prom" } },
      spec: { endpoints: [{ port: "http", path: "/metrics" }] },
    });
    const selector = (monitor as unknown as { spec: { selector: { matchLabels: Record<string, string> } } })
      .spec.selector.matchLabels;
    expect(service!.metadata.labels).toMatchObject(selector);
  });

  test.each([
    ["replicas as a word", { replicas: "two" }, ["/replicas", "want integer"]],
    ["an unknown key", { colour: "red" }, ["'colour' not allowed"]],
    ["an unknown log level", { logLevel: "loud" }, ["/logLevel", "'info'"]],
    [
      "leaderElection.enabled not a boolean (auto is gone: it is on unless turned off)",
      { leaderElection: { enabled: "auto" } },
      ["/leaderElection/enabled"],
    ],
    [
      "a watched namespace that is no namespace name",
      { watchNamespaces: ["Team_A"] },
      ["/watchNamespaces/0", "Team_A"],
    ],
  ])("bad values fail at install naming the value: %s", (_, values, messages) => {
    const result = template(values);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("values don't meet the specifications of the schema");
    for (const message of messages) expect(result.stderr).toContain(message);
  });
});

describe("the chart's NetworkPolicies (their meaning, from an evaluator of the documented semantics)", () => {
  const policyPlaces = (objects: K8sObject[]) =>
    ofKind(objects, "NetworkPolicy").map((p) => `${p.metadata.namespace}/${p.metadata.name}`);

  test.each([
    ["defaults: the operator's only (the job namespaces are unknown)", {}, []],
    ["watchNamespaces: one per watched namespace", { watchNamespaces: ["a", "b"] }, ["a", "b"]],
    [
      "networkPolicy.namespaces when watchNamespaces is empty",
      { networkPolicy: { namespaces: ["c"] } },
      ["c"],
    ],
    [
      "watchNamespaces wins over networkPolicy.namespaces",
      { watchNamespaces: ["a"], networkPolicy: { namespaces: ["c"] } },
      ["a"],
    ],
  ])("where the TaskManager policy goes: %s", (_, values, namespaces) => {
    expect(policyPlaces(render(values)).sort()).toEqual(
      [
        `${RELEASE_NAMESPACE}/streamjob-operator`,
        ...namespaces.map((ns) => `${ns}/streamjob-operator-taskmanager`),
      ].sort(),
    );
  });

  test("every policy can be turned off", () => {
    const off = { enabled: false };
    const values = {
      watchNamespaces: ["a"],
      networkPolicy: { taskManager: { ingress: off, egress: off }, operator: { ingress: off, egress: off } },
    };
    expect(policyPlaces(render(values))).toEqual([]);
  });

  test("defaults, with a watched job namespace: TaskManager port 8080 only from the operator and the namespace's TaskManagers", () => {
    const network = chartNetwork(render({ watchNamespaces: [JOB_NAMESPACE] }));
    expect(
      network.wrongVerdicts({
        allowed: [
          ["operator", "ordersTask0", 8080],
          ["node", "ordersTask0", 8080],
          ["ordersTask1", "ordersTask0", 8080],
          // Namespace-wide, not per job (docs/operations.md#network-policies): the token keeps jobs apart.
          ["clicksTask0", "ordersTask0", 8080],
          // Egress stays open: storage, DNS, the API server and what job code calls.
          ["ordersTask0", "s3", 443],
          ["ordersTask0", "coreDns", 53, "UDP"],
          ["ordersTask0", "database", 5432],
          ["operator", "apiServer", 6443],
          ["operator", "s3", 443],
          // Anyone may scrape the operator.
          ["podElsewhere", "operator", 8080],
        ],
        refused: [
          ["podElsewhere", "ordersTask0", 8080],
          ["impostorElsewhere", "ordersTask0", 8080],
          ["otherInReleaseNamespace", "ordersTask0", 8080],
          ["operatorImpostorElsewhere", "ordersTask0", 8080],
          ["webInJobNamespace", "ordersTask0", 8080],
          ["prometheus", "ordersTask0", 8080],
          ["s3", "ordersTask0", 8080],
          ["operator", "ordersTask0", 8081],
          ["ordersTask1", "ordersTask0", 9229],
          ["podElsewhere", "operator", 9229],
        ],
      }),
    ).toEqual([]);
  });

  test("egress on, storage an S3 outside the cluster, metrics only from the monitoring namespace, Kafka in extra", () => {
    const network = chartNetwork(
      render({
        watchNamespaces: [JOB_NAMESPACE],
        networkPolicy: {
          taskManager: {
            egress: {
              enabled: true,
              extra: [{ to: [{ ipBlock: { cidr: "198.51.100.0/24" } }], ports: [{ port: 9092 }] }],
            },
          },
          operator: {
            ingress: {
              metricsFrom: [
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } },
              ],
            },
            egress: {
              enabled: true,
              apiServer: { to: [{ ipBlock: { cidr: "192.0.2.0/24" } }], ports: [{ port: 6443 }] },
            },
          },
          storage: { to: [{ ipBlock: { cidr: "203.0.113.0/24" } }], ports: [{ port: 443, protocol: "TCP" }] },
        },
      }),
    );
    expect(
      network.wrongVerdicts({
        allowed: [
          ["operator", "ordersTask0", 8080],
          ["operator", "clicksTask0", 8080],
          ["ordersTask0", "ordersTask1", 8080],
          ["ordersTask0", "s3", 443],
          ["ordersTask0", "coreDns", 53, "UDP"],
          ["ordersTask0", "coreDns", 53, "TCP"],
          ["ordersTask0", "database", 9092],
          ["operator", "apiServer", 6443],
          ["operator", "s3", 443],
          ["operator", "coreDns", 53, "UDP"],
          ["prometheus", "operator", 8080],
          ["node", "operator", 8080],
          ["node", "ordersTask0", 8080],
        ],
        refused: [
          ["ordersTask0", "database", 443],
          ["ordersTask0", "database", 5432],
          ["ordersTask0", "s3", 9000],
          ["ordersTask0", "apiServer", 6443],
          ["ordersTask0", "impostorElsewhere", 8080],
          ["operator", "database", 6443],
          ["operator", "apiServer", 443],
          // TaskManager labels in a namespace the operator does not watch.
          ["operator", "impostorElsewhere", 8080],
          ["podElsewhere", "operator", 8080],
          ["podElsewhere", "ordersTask0", 8080],
        ],
      }),
    ).toEqual([]);
  });

  test("a malformed peer fails at install, naming it", () => {
    const result = template({
      networkPolicy: { storage: { to: [{ ipBlock: { except: [] } }], ports: [{ port: 443 }] } },
    });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("/networkPolicy/storage/to/0/ipBlock");
  });
});

function chartYaml(): { version: string; appVersion: string } {
  return readYaml(path.join(chartDir, "Chart.yaml")) as { version: string; appVersion: string };
}

describe("versions and examples", () => {
  test("the chart's appVersion is package.json's version and the examples' image tag", () => {
    const { appVersion } = chartYaml();
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
    expect(appVersion).toBe(pkg.version);
    for (const file of exampleFiles) {
      const spec = readYaml(file).spec as { image: string };
      expect(`${path.basename(file)}: ${spec.image}`).toBe(
        `${path.basename(file)}: ghcr.io/streamjob/streamjob-taskmanager:${appVersion}`,
      );
    }
  });

  test.each(exampleFiles.map((f) => [path.basename(f), f]))(
    "%s is a StreamJob the operator parses",
    (_, file) => {
      const example = readYaml(file) as { kind: string; spec: unknown };
      expect(example.kind).toBe("StreamJob");
      const parsed = parseStreamJobSpec(example.spec);
      expect(parsed.ok ? "ok" : parsed.error).toBe("ok");
    },
  );
});

describe("against the test cluster's API server (dry runs)", () => {
  const { core } = clients();
  let ns: string;
  let restricted: string;

  beforeAll(async () => {
    await installCrd();
    ns = await createNamespace(core, "chart");
    restricted = await createNamespace(core, "chart-restricted", {
      "pod-security.kubernetes.io/enforce": "restricted",
    });
  });

  afterAll(async () => {
    for (const name of [ns, restricted]) {
      if (name !== undefined) await core.deleteNamespace({ name }).catch(() => undefined);
    }
  });

  test("the examples pass the CRD's validation", async () => {
    for (const file of exampleFiles) {
      const out = await kubectl("apply", "--dry-run=server", "-n", ns, "-f", file);
      expect(out).toMatch(/^streamjob\.streamjob\.dev\/\S+ created \(server dry run\)/);
    }
  });

  test("manifests/minio.yaml and the rendered chart are accepted by the API server", async () => {
    const minio = await kubectl(
      "apply",
      "--dry-run=server",
      "-f",
      path.join(repoRoot, "manifests", "minio.yaml"),
    );
    expect(minio).toContain("deployment.apps/minio created (server dry run)");
    const result = template({}, ns, `chart-${ns}`);
    expect(result.stderr).toBe("");
    const file = path.join(scratch, "rendered.yaml");
    writeFileSync(file, result.stdout);
    const out = await kubectl("apply", "--dry-run=server", "-f", file);
    for (const kind of [
      "serviceaccount",
      "clusterrole.rbac.authorization.k8s.io",
      "deployment.apps",
      "service",
    ])
      expect(out).toContain(`${kind}/`);
  });

  test("the rendered NetworkPolicies, every value set, are valid to the API server", async () => {
    const policies = ofKind(render(fullNetworkPolicy(ns)), "NetworkPolicy");
    expect(policies.map((p) => p.metadata.namespace).sort()).toEqual([ns, RELEASE_NAMESPACE].sort());
    // The release namespace need not exist: create the operator's policy in the test namespace.
    const file = path.join(scratch, "network-policies.json");
    const items = policies.map((p): K8sObject => ({ ...p, metadata: { ...p.metadata, namespace: ns } }));
    writeFileSync(file, JSON.stringify({ apiVersion: "v1", kind: "List", items }));
    const out = await kubectl("create", "--dry-run=server", "-f", file);
    expect(out).toContain(
      "networkpolicy.networking.k8s.io/streamjob-operator-taskmanager created (server dry run)",
    );
    expect(out).toContain("networkpolicy.networking.k8s.io/streamjob-operator created (server dry run)");
    // The check is real: a port number out of range is refused.
    const broken = {
      ...items[0]!,
      spec: { ...(items[0]!.spec as object), ingress: [{ ports: [{ port: 70000 }] }] },
    };
    writeFileSync(file, JSON.stringify(broken));
    await expect(kubectl("create", "--dry-run=server", "-f", file)).rejects.toThrow(/70000|port/);
  });

  test("the install notes say when no TaskManager is protected, and what to set", () => {
    const notes = (...set: string[]) => {
      const args = [
        "install",
        "notes",
        chartDir,
        "-n",
        ns,
        "--dry-run=client",
        "--kubeconfig",
        kubeconfigPath,
      ];
      const result = run(helmBinary, [...args, ...set.flatMap((s) => ["--set", s])]);
      if (result.status !== 0) throw new Error(`helm install --dry-run failed: ${result.stderr}`);
      return result.stdout.slice(result.stdout.indexOf("NOTES:"));
    };
    expect(notes()).toContain("No NetworkPolicy protects the TaskManagers");
    expect(notes()).toContain("networkPolicy.namespaces");
    expect(notes(`watchNamespaces={${ns}}`)).not.toContain("No NetworkPolicy");
    expect(notes(`networkPolicy.namespaces={${ns}}`)).not.toContain("No NetworkPolicy");
  });

  /** Creates (dry run) a pod with the Deployment's pod template in the namespace enforcing "restricted". */
  async function admitPod(name: string, spec: PodSpec): Promise<string> {
    const file = path.join(scratch, `${name}.json`);
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name },
      spec: { ...spec, serviceAccountName: "default" },
    };
    writeFileSync(file, JSON.stringify(pod));
    return kubectl("create", "--dry-run=server", "-n", restricted, "-f", file);
  }

  test("the operator's and MinIO's pods are admitted where Pod Security 'restricted' is enforced", async () => {
    const operatorPod = deploymentOf(render()).spec.template.spec;
    expect(await admitPod("operator", operatorPod)).toContain("pod/operator created (server dry run)");
    const minio = parseObjects(readFileSync(path.join(repoRoot, "manifests", "minio.yaml"), "utf8"));
    const minioPod = (minio.find((o) => o.kind === "Deployment") as Deployment).spec.template.spec;
    expect(await admitPod("minio", minioPod)).toContain("pod/minio created (server dry run)");
    // The check is real: the same pod without its seccomp profile is refused.
    const { seccompProfile: _, ...withoutSeccomp } = operatorPod.securityContext!;
    await expect(admitPod("unconfined", { ...operatorPod, securityContext: withoutSeccomp })).rejects.toThrow(
      /violates PodSecurity "restricted:latest"/,
    );
  });
});
