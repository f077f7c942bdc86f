// Reading pods of the local cluster: the labels the operator puts on TaskManager pods (named in
// src/operator/names.ts), readiness, and the process behind a container.
import type { KubernetesObject, V1Pod } from "@kubernetes/client-node";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { containerInitPids } from "../../src/devcluster/real-node/node.js";
import { repoRoot } from "../../src/devcluster/assets.js";
import { LABELS } from "../../src/operator/names.js";

const label = (obj: KubernetesObject, key: string) => obj.metadata?.labels?.[key];

/** The StreamJob a TaskManager pod belongs to (its job label). */
export const jobOf = (pod: KubernetesObject) => label(pod, LABELS.job);
export const epochOf = (pod: KubernetesObject) => Number(label(pod, LABELS.epoch) ?? NaN);
export const taskIndexOf = (pod: KubernetesObject) => Number(label(pod, LABELS.taskIndex) ?? NaN);

/** A label selector for every TaskManager pod of the job `name`. */
export const jobPodSelector = (name: string) => `${LABELS.job}=${name}`;

export const isDeleting = (pod: V1Pod) => pod.metadata?.deletionTimestamp !== undefined;
export const isReady = (pod: V1Pod) =>
  pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/**
 * The pid of a container's main process, or undefined: the emulated node reports `local://<pid>`;
 * on a real node, containerd's runc shim keeps the pid of a running container's init process in
 * the node's state folder (src/devcluster/real-node/config.ts), for any cluster under .devcluster/.
 */
export function containerPidOf(pod: V1Pod, index = 0): number | undefined {
  const id = pod.status?.containerStatuses?.[index]?.containerID ?? "";
  const pid = id.startsWith("local://")
    ? Number(id.slice("local://".length))
    : id.startsWith("containerd://")
      ? containerdInitPid(id.slice("containerd://".length))
      : undefined;
  return pid !== undefined && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function containerdInitPid(containerId: string): number | undefined {
  // The default cluster folder is .devcluster itself; others are folders in it.
  const top = path.join(repoRoot, ".devcluster");
  const clusters = existsSync(top) ? [top, ...readdirSync(top).map((name) => path.join(top, name))] : [];
  for (const cluster of clusters) {
    const pid = containerInitPids(cluster).get(containerId);
    if (pid !== undefined) return pid;
  }
  return undefined;
}

/** Like containerPidOf, but a pod without a running process is an error. */
export function containerPid(pod: V1Pod, index = 0): number {
  const pid = containerPidOf(pod, index);
  if (pid === undefined) {
    const id = pod.status?.containerStatuses?.[index]?.containerID ?? "";
    throw new Error(`no running process for ${pod.metadata?.name}: ${id}`);
  }
  return pid;
}
