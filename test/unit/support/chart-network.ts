// A model cluster for the chart's NetworkPolicies: the operator pod with the labels of the rendered
// Deployment's pod template, TaskManager pods with the labels the operator gives them
// (taskManagerLabels), and the pods and addresses around them. The unit test runs it on
// manifests/install.yaml, the chart test on `helm template` output for other values.
import { taskManagerLabels } from "../../../src/operator/desired.js";
import { streamJob } from "../operator/fixtures.js";
import { type Address, type Namespaces, type Node, type Pod, PolicyEvaluator } from "./network-policy.js";

interface RenderedObject {
  kind: string;
  metadata: { namespace?: string };
  spec?: unknown;
}

export const JOB_NAMESPACE = "team-a";
const OTHER_NAMESPACE = "other";

function taskManager(job: string, taskIndex: number, ip: string, namespace = JOB_NAMESPACE): Pod {
  return {
    kind: "pod",
    namespace,
    labels: taskManagerLabels(streamJob({}, { name: job }), 1, taskIndex),
    ip,
    ports: [{ name: "http", containerPort: 8080 }],
  };
}

/** Every endpoint of the model, for the connections a test checks. */
function chartEndpoints(operatorLabels: Record<string, string>, releaseNamespace: string) {
  return {
    operator: { kind: "pod", namespace: releaseNamespace, labels: operatorLabels, ip: "10.0.0.10" } as Pod,
    // Another pod beside the operator, and one with the operator's labels in another namespace.
    otherInReleaseNamespace: {
      kind: "pod",
      namespace: releaseNamespace,
      labels: { app: "other" },
      ip: "10.0.0.11",
    } as Pod,
    operatorImpostorElsewhere: {
      kind: "pod",
      namespace: OTHER_NAMESPACE,
      labels: operatorLabels,
      ip: "10.0.2.3",
    } as Pod,
    // Two tasks of the job "orders" and one of "clicks", in a namespace the operator runs jobs in.
    ordersTask0: taskManager("orders", 0, "10.0.1.1"),
    ordersTask1: taskManager("orders", 1, "10.0.1.2"),
    clicksTask0: taskManager("clicks", 0, "10.0.1.3"),
    // A pod of the job namespace that is no TaskManager.
    webInJobNamespace: {
      kind: "pod",
      namespace: JOB_NAMESPACE,
      labels: { app: "web" },
      ip: "10.0.1.9",
    } as Pod,
    // A pod elsewhere, and one elsewhere that copies a TaskManager's labels.
    podElsewhere: {
      kind: "pod",
      namespace: OTHER_NAMESPACE,
      labels: { app: "curious" },
      ip: "10.0.2.1",
    } as Pod,
    impostorElsewhere: taskManager("orders", 0, "10.0.2.2", OTHER_NAMESPACE),
    prometheus: {
      kind: "pod",
      namespace: "monitoring",
      labels: { "app.kubernetes.io/name": "prometheus" },
      ip: "10.0.3.1",
    } as Pod,
    coreDns: {
      kind: "pod",
      namespace: "kube-system",
      labels: { "k8s-app": "kube-dns" },
      ip: "10.0.4.1",
    } as Pod,
    // S3 outside the cluster, the API server behind the `kubernetes` Service, another server.
    s3: { kind: "address", ip: "203.0.113.5" } as Address,
    apiServer: { kind: "address", ip: "192.0.2.1" } as Address,
    database: { kind: "address", ip: "198.51.100.7" } as Address,
    // The kubelet probing pods on its node.
    node: { kind: "node", ip: "10.0.255.1" } as Node,
  };
}

const MODEL_NAMESPACES: Namespaces = {
  [JOB_NAMESPACE]: {},
  [OTHER_NAMESPACE]: {},
  monitoring: {},
  "kube-system": {},
  "streamjob-system": {},
};

type Endpoints = ReturnType<typeof chartEndpoints>;
/** A connection by endpoint names: from, to, port, protocol (TCP unless given). */
type Flow = [keyof Endpoints, keyof Endpoints, number, ("TCP" | "UDP")?];

/** The model cluster under the rendered objects' NetworkPolicies. */
export function chartNetwork(objects: RenderedObject[]) {
  const deployment = objects.find((o) => o.kind === "Deployment") as
    | {
        metadata: { namespace: string };
        spec: { template: { metadata: { labels: Record<string, string> } } };
      }
    | undefined;
  if (!deployment) throw new Error("the rendered chart has no Deployment");
  const endpoints = chartEndpoints(deployment.spec.template.metadata.labels, deployment.metadata.namespace);
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const evaluator = new PolicyEvaluator(policies, MODEL_NAMESPACES);
  return {
    policies,
    /** The flows whose verdict is not the expected one, named: an empty list when all are right. */
    wrongVerdicts(expected: { allowed: Flow[]; refused: Flow[] }): string[] {
      return (["allowed", "refused"] as const).flatMap((verdict) =>
        expected[verdict]
          .filter(([from, to, port, protocol]) => {
            const allowed = evaluator.allows({ from: endpoints[from], to: endpoints[to], port, protocol });
            return allowed !== (verdict === "allowed");
          })
          .map(
            ([from, to, port, protocol = "TCP"]) =>
              `${from} -> ${to}:${port}/${protocol} should be ${verdict}`,
          ),
      );
    },
  };
}
