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

// The kubelet's caps (pkg/kubelet/container/runtime.go): a message file is read up to its last
// 4096 bytes; a message taken from the log is its last 80 lines, at most their last 2048 bytes.
export const MAX_TERMINATION_MESSAGE_BYTES = 4096;
export const MAX_TERMINATION_MESSAGE_LOG_BYTES = 2048;
const MAX_TERMINATION_MESSAGE_LOG_LINES = 80;

export type TerminationMessagePolicy = "File" | "FallbackToLogsOnError";

/**
 * A terminated container's `message`, as the kubelet's getTerminationMessage computes it: the message
 * file's tail; with FallbackToLogsOnError and a failed container whose file is missing or empty, the
 * tail of what it logged. `file` is undefined when there is none; `log` is read only when needed.
 */
export function terminationMessage(input: {
  policy: TerminationMessagePolicy;
  exitCode: number;
  file: Buffer | undefined;
  log: () => Buffer;
}): string | undefined {
  const fromFile = input.file && tailBytes(input.file, MAX_TERMINATION_MESSAGE_BYTES);
  if (fromFile) return fromFile;
  if (input.policy !== "FallbackToLogsOnError" || input.exitCode === 0) return undefined;
  const lines = tailLines(input.log(), MAX_TERMINATION_MESSAGE_LOG_LINES);
  return tailBytes(lines, MAX_TERMINATION_MESSAGE_LOG_BYTES) || undefined;
}

function tailBytes(bytes: Buffer, max: number): string {
  return bytes.subarray(Math.max(0, bytes.length - max)).toString("utf8");
}

/** The last `count` lines (a final newline ends the last line, it does not start another). */
export function tailLines(bytes: Buffer, count: number): Buffer {
  let start = bytes.length;
  let seen = 0;
  const end = bytes[bytes.length - 1] === 0x0a ? bytes.length - 1 : bytes.length;
  for (let i = end - 1; i >= 0; i--) {
    if (bytes[i] === 0x0a && ++seen === count) break;
    start = i;
  }
  return bytes.subarray(start);
}
