// What integration tests share: the test cluster's clients, namespaces, and waiting.
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const testClusterDir = path.join(repoRoot, ".devcluster", "test");
export const kubeconfigPath = path.join(testClusterDir, "kubeconfig");

export function clients() {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
  };
}

const execFileAsync = promisify(execFile);

/** Runs the cluster's own kubectl against the test cluster. */
export async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(path.join(testClusterDir, "bin", "kubectl"), args, {
    env: { ...process.env, KUBECONFIG: kubeconfigPath },
  });
  return stdout;
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

export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
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

/** The pid of a container's main process (the node agent reports it as `local://<pid>`). */
export function containerPid(pod: V1Pod, index = 0): number {
  const id = pod.status?.containerStatuses?.[index]?.containerID ?? "";
  const pid = Number(id.replace("local://", ""));
  if (!Number.isInteger(pid) || pid <= 0)
    throw new Error(`no running process for ${pod.metadata?.name}: ${id}`);
  return pid;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
