// A TaskManager pod as the planner sees it: a pure function of the V1Pod read from the API server.
import type { V1Pod } from "@kubernetes/client-node";
import { LABELS } from "./names.js";
import type { ObservedPod } from "./planner.js";

const PHASES = new Set(["Pending", "Running", "Succeeded", "Failed", "Unknown"]);

export function observePod(pod: V1Pod): ObservedPod {
  const labels = pod.metadata?.labels ?? {};
  const createdAt = toMillis(pod.metadata?.creationTimestamp) ?? 0;
  const ready = pod.status?.conditions?.find((condition) => condition.type === "Ready");
  const container = pod.status?.containerStatuses?.[0];
  const phase = pod.status?.phase ?? "Pending";
  const terminated = container?.state?.terminated;
  return {
    name: pod.metadata?.name ?? "",
    ...(pod.status?.podIP && { podIP: pod.status.podIP }),
    epoch: label(labels[LABELS.epoch]),
    taskIndex: label(labels[LABELS.taskIndex]),
    phase: PHASES.has(phase) ? (phase as ObservedPod["phase"]) : "Unknown",
    ready: ready?.status === "True",
    readySince: toMillis(ready?.lastTransitionTime) ?? createdAt,
    createdAt,
    deleting: pod.metadata?.deletionTimestamp !== undefined,
    ...(container?.state?.waiting?.reason && { waitingReason: container.state.waiting.reason }),
    ...(terminated && {
      terminated: {
        exitCode: terminated.exitCode,
        ...(terminated.reason && { reason: terminated.reason }),
        ...(terminated.message?.trim() && { message: oneLine(terminated.message) }),
      },
    }),
  };
}

/** Short enough for an event and a condition; the end of a log tail is what says most. */
const MAX_TERMINATION_MESSAGE_CHARS = 512;

function oneLine(message: string): string {
  const line = message.replace(/\s+/g, " ").trim();
  return line.length <= MAX_TERMINATION_MESSAGE_CHARS
    ? line
    : `…${line.slice(line.length - MAX_TERMINATION_MESSAGE_CHARS + 1)}`;
}

function label(value: string | undefined): number | undefined {
  if (value === undefined || !/^[0-9]+$/.test(value)) return undefined;
  return Number(value);
}

/** Milliseconds of an API timestamp: client-node deserialises some to Date, leaves others strings. */
export function toMillis(value: Date | string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}
