// Reading pods of the local cluster: the labels the operator puts on TaskManager pods (named in
// src/operator/names.ts), readiness, and the process behind a container.
import type { KubernetesObject, V1Pod } from "@kubernetes/client-node";
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

/** The pid of a container's main process, or undefined (the node agent reports `local://<pid>`). */
export function containerPidOf(pod: V1Pod, index = 0): number | undefined {
  const id = pod.status?.containerStatuses?.[index]?.containerID ?? "";
  if (!id.startsWith("local://")) return undefined;
  const pid = Number(id.slice("local://".length));
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
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
