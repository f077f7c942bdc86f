// Pure pod status rules, as the kubelet applies them.
import type { V1ContainerStatus } from "@kubernetes/client-node";

export type RestartPolicy = "Always" | "OnFailure" | "Never";

/** Whether a container that exited with `exitCode` is started again. */
export function shouldRestart(policy: RestartPolicy, exitCode: number): boolean {
  return policy === "Always" || (policy === "OnFailure" && exitCode !== 0);
}

/** The kubelet's CrashLoopBackOff, scaled down for a dev cluster: 1s doubling to at most 30s. */
export function restartBackoffMs(restartCount: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, restartCount - 1));
}

/**
 * Pending until every container has started once; Succeeded/Failed once every container has
 * terminated and none will be restarted; Running otherwise.
 */
export function podPhase(
  policy: RestartPolicy,
  statuses: Pick<V1ContainerStatus, "state" | "restartCount">[],
  initFailed = false,
): "Pending" | "Running" | "Succeeded" | "Failed" {
  if (initFailed) return "Failed";
  const terminated = statuses.map((s) => s.state?.terminated).filter((t) => t !== undefined);
  if (statuses.length > 0 && terminated.length === statuses.length) {
    const willRestart = terminated.some((t) => shouldRestart(policy, t.exitCode));
    if (!willRestart) return terminated.every((t) => t.exitCode === 0) ? "Succeeded" : "Failed";
  }
  const everStarted = statuses.every(
    (s) => s.state?.running || s.state?.terminated || (s.restartCount ?? 0) > 0,
  );
  return everStarted ? "Running" : "Pending";
}
