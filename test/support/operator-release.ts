// The operator as users run it: installed with the Helm chart, as a pod under its own
// ServiceAccount and the chart's RBAC, watching the namespaces it is given.
import type { CoreV1Api } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { LABELS, OPERATOR_NAME } from "../../src/operator/names.js";
import { OPERATOR_HTTP_PORT } from "../../src/operator/config.js";
import { repoRoot, type LocalCluster } from "./local-cluster.js";
import { containerPid, isDeleting, isReady } from "./pods.js";
import { waitFor } from "./wait.js";

export const chartPath = path.join(repoRoot, "charts", "streamjob-operator");

/** The label selector of a release's operator pods. */
export const operatorSelector = (release: string) =>
  `${LABELS.instance}=${release},${LABELS.name}=${OPERATOR_NAME}`;

/** A URL on the operator pod's HTTP server, e.g. `/metrics`. */
export const operatorUrl = (ip: string, pathname: string) => `http://${ip}:${OPERATOR_HTTP_PORT}${pathname}`;

export interface OperatorPod {
  name: string;
  ip: string;
  /** The operator process (its container's main process on the node agent). */
  pid: number;
}

/** A Ready operator pod of `release` that is not being deleted, or undefined. */
export async function readyOperatorPod(
  core: CoreV1Api,
  namespace: string,
  release: string,
): Promise<OperatorPod | undefined> {
  const pods = await core.listNamespacedPod({ namespace, labelSelector: operatorSelector(release) });
  const pod = pods.items.find((p) => isReady(p) && !isDeleting(p) && p.status?.podIP);
  return pod && { name: pod.metadata!.name!, ip: pod.status!.podIP!, pid: containerPid(pod) };
}

export interface OperatorRelease {
  release: string;
  namespace: string;
  /** Waits for a Ready operator pod. */
  pod(timeoutMs?: number): Promise<OperatorPod>;
  logs(): Promise<string>;
  uninstall(): Promise<void>;
}

/** `helm install` of the chart into `namespace`; resolves when an operator pod is Ready. */
export async function installOperatorRelease(
  cluster: LocalCluster,
  namespace: string,
  watchNamespaces: string[],
  extraArgs: string[] = [],
): Promise<OperatorRelease> {
  const release = `op-${randomBytes(3).toString("hex")}`;
  await cluster.helm(
    "install",
    release,
    chartPath,
    "--namespace",
    namespace,
    "--set",
    `watchNamespaces={${watchNamespaces.join(",")}}`,
    "--wait",
    "--timeout",
    "120s",
    ...extraArgs,
  );
  const { core } = cluster.clients();
  const pod = (timeoutMs = 60_000) =>
    waitFor(
      `a ready operator pod of ${release}`,
      () => readyOperatorPod(core, namespace, release),
      timeoutMs,
    );
  await pod();
  return {
    release,
    namespace,
    pod,
    logs: () => cluster.kubectl("logs", "-n", namespace, "-l", operatorSelector(release), "--tail", "-1"),
    uninstall: async () => {
      await cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s");
    },
  };
}
