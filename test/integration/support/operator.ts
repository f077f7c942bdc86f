// The operator as users run it: installed with the Helm chart into the test cluster, as a pod under
// its own ServiceAccount and the chart's RBAC, watching only the namespaces a test gives it.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import { clients, kubeconfigPath, kubectl, repoRoot, testClusterDir, waitFor } from "./cluster.js";

const execFileAsync = promisify(execFile);
export const chartPath = path.join(repoRoot, "charts", "streamjob-operator");

export async function helm(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(path.join(testClusterDir, "bin", "helm"), args, {
    env: { ...process.env, KUBECONFIG: kubeconfigPath, HELM_CACHE_HOME: path.join(testClusterDir, "helm") },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

export interface InstalledOperator {
  release: string;
  namespace: string;
  /** The running operator pod's name and IP (its HTTP port is 8080). */
  pod(): Promise<{ name: string; ip: string }>;
  logs(): Promise<string>;
  uninstall(): Promise<void>;
}

/** `helm install` of the chart into `namespace`; resolves when the operator pod is Ready. */
export async function installOperator(
  namespace: string,
  watchNamespaces: string[],
  extraArgs: string[] = [],
): Promise<InstalledOperator> {
  const release = `op-${randomBytes(3).toString("hex")}`;
  await helm(
    "install",
    release,
    chartPath,
    "--namespace",
    namespace,
    "--set",
    `watchNamespaces={${watchNamespaces.join(",")}}`,
    "--set",
    "logLevel=debug",
    "--wait",
    "--timeout",
    "90s",
    ...extraArgs,
  );
  const { core } = clients();
  const selector = `app.kubernetes.io/instance=${release},app.kubernetes.io/name=streamjob-operator`;
  const pod = () =>
    waitFor(
      `a ready operator pod of ${release}`,
      async () => {
        const pods = await core.listNamespacedPod({ namespace, labelSelector: selector });
        const ready = pods.items.find(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            p.status?.podIP &&
            p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
        );
        return ready && { name: ready.metadata!.name!, ip: ready.status!.podIP! };
      },
      60_000,
    );
  await pod();
  return {
    release,
    namespace,
    pod,
    logs: async () => kubectl("logs", "-n", namespace, "-l", selector, "--tail", "-1"),
    uninstall: async () => {
      await helm("uninstall", release, "--namespace", namespace, "--wait");
    },
  };
}
