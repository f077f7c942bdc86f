// What integration tests share: the test cluster's clients, namespaces, and waiting.
import type { CoreV1Api, V1Pod } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { LocalCluster, repoRoot } from "../../support/local-cluster.js";
import { waitFor } from "../../support/wait.js";

export { repoRoot, waitFor };
export { containerPid } from "../../support/pods.js";
export { isAlive as processAlive } from "../../../src/devcluster/processes.js";

// The jest project names the cluster (jest.config.js): "test", or "e2e" for the end-to-end tests.
const clusterName = (globalThis as { STREAMJOB_TEST_CLUSTER?: string }).STREAMJOB_TEST_CLUSTER ?? "test";
export const testClusterDir = path.join(repoRoot, ".devcluster", clusterName);
export const testCluster = new LocalCluster(testClusterDir);
export const kubeconfigPath = testCluster.kubeconfigPath;

export function clients() {
  return testCluster.clients();
}

/** Runs the cluster's own kubectl against the test cluster. */
export function kubectl(...args: string[]): Promise<string> {
  return testCluster.kubectl(...args);
}

export async function createNamespace(
  core: CoreV1Api,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString("hex")}`;
  await core.createNamespace({ body: { metadata: { name, labels } } });
  // Pods need the namespace's default ServiceAccount, made by the controller manager.
  await waitFor(`ServiceAccount ${name}/default`, async () => {
    await core.readNamespacedServiceAccount({ name: "default", namespace: name });
    return true;
  });
  return name;
}

export async function waitForPod(
  core: CoreV1Api,
  namespace: string,
  name: string,
  what: string,
  predicate: (pod: V1Pod) => boolean,
  timeoutMs = 30_000,
): Promise<V1Pod> {
  return waitFor(
    `pod ${namespace}/${name} ${what}`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace });
      return predicate(pod) ? pod : undefined;
    },
    timeoutMs,
  );
}
