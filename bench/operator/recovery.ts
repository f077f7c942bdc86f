// Recovery: one TaskManager SIGKILLed (pid from the pod's containerID) or its pod deleted,
// alternately, timed until processing resumed in the new epoch.
import type { V1Pod } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { StreamJob } from "../../src/api/streamjob.js";
import { containerPid, epochOf, isDeleting, jobOf, taskIndexOf } from "../../test/support/pods.js";
import { taskManagerStatus } from "../../test/support/taskmanager.js";
import { percentile } from "../measure.js";
import { rows, type Row } from "./results.js";
import {
  cluster,
  FLINK_HEARTBEAT_TIMEOUT_S,
  JOB,
  settle,
  TARGETS,
  TM_POLL_MS,
  waitFor,
  type Context,
} from "./setup.js";

interface RecoveryRun {
  mode: "SIGKILL" | "delete pod";
  victim: string;
  /** Milliseconds after the kill (NaN when not seen). */
  reported: number;
  noticed: number;
  spawned: number;
  listening: number;
  restored: number;
  ready: number;
  processing: number;
  epochs: number;
  /** A TaskManager of a new epoch could not listen: its pod IP was taken by another local cluster's pod. */
  ipCollision: boolean;
}

/** Wall-clock milliseconds at which the machine booted, to place /proc starttimes (10 ms ticks). */
const bootWallMs = Date.now() - Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000;
/** performance.now() of a wall-clock time. */
const perfOf = (wallMs: number) => wallMs - performance.timeOrigin;

/** When the process was started (forked by the node agent), as performance.now() time. */
function processStart(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return perfOf(bootWallMs + (Number(fields[19]) / 100) * 1000); // starttime is field 22
}

/** A TaskManager's own log (written by the node agent): when it listened and was restored, and EADDRINUSE. */
function taskManagerLog(
  namespace: string,
  pod: string,
): { listening?: number; restored?: number; addrInUse: boolean } {
  let text: string;
  try {
    text = readFileSync(path.join(cluster.dir, "logs", `${namespace}_${pod}_taskmanager.log`), "utf8");
  } catch {
    return { addrInUse: false };
  }
  const result: { listening?: number; restored?: number; addrInUse: boolean } = {
    addrInUse: text.includes("EADDRINUSE"),
  };
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { time: number; msg: string };
    if (entry.msg === "TaskManager listening") result.listening ??= perfOf(entry.time);
    if (entry.msg.startsWith("ready")) result.restored ??= perfOf(entry.time);
  }
  return result;
}

async function recoveryRun(ctx: Context, run: number): Promise<RecoveryRun> {
  const { obs, core, namespace } = ctx;
  const before = obs.job().status!;
  const oldEpoch = before.epoch!;
  const pods = obs.jobPods(oldEpoch);
  const victim = pods[Math.floor(run / 2) % pods.length]!;
  const victimName = victim.metadata!.name!;
  const mode: RecoveryRun["mode"] = run % 2 === 0 ? "SIGKILL" : "delete pod";
  const from = obs.log.length;
  let t0: number;
  if (mode === "SIGKILL") {
    const pid = containerPid(victim);
    t0 = performance.now();
    process.kill(pid, "SIGKILL");
  } else {
    t0 = performance.now();
    await core.deleteNamespacedPod({ namespace, name: victimName });
  }

  // TaskManagers of a newer epoch are polled until each has processed records: the counter starts
  // at 0 in every TaskManager process, so > 0 means processing after the restore. The job and epoch
  // in the answer must be this job's (an address may answer for another cluster's pod).
  const processedAt = new Map<string, number>();
  const resumed = await waitFor(
    `run ${run + 1} (${mode} ${victimName}): processing resumed in an epoch after ${oldEpoch}`,
    async () => {
      const candidates = obs
        .jobPods()
        .filter(
          (pod) => epochOf(pod) > oldEpoch && pod.status?.podIP && !processedAt.has(pod.metadata!.name!),
        );
      await Promise.all(
        candidates.map(async (pod) => {
          const status = await taskManagerStatus(pod.status!.podIP!, ctx.token!);
          if (
            status &&
            status.job.namespace === namespace &&
            status.epoch === epochOf(pod) &&
            status.taskIndex === taskIndexOf(pod) &&
            status.recordsProcessed > 0
          )
            processedAt.set(pod.metadata!.name!, performance.now());
        }),
      );
      for (const [epoch, readyAt] of obs.epochReadyAt) {
        if (epoch <= oldEpoch) continue;
        const epochPods = obs.jobPods(epoch);
        if (epochPods.length === 0 || !epochPods.every((pod) => processedAt.has(pod.metadata!.name!)))
          continue;
        const processing = Math.max(
          readyAt,
          ...epochPods.map((pod) => processedAt.get(pod.metadata!.name!)!),
        );
        return { epoch, readyAt, processing, pods: epochPods };
      }
      return undefined;
    },
    60_000,
    TM_POLL_MS,
  );

  const events = obs.log.slice(from);
  const reported = events.find(
    (e) =>
      e.kind === "pod" &&
      e.obj.metadata?.name === victimName &&
      ((e.obj as V1Pod).status?.phase === "Failed" || isDeleting(e.obj as V1Pod) || e.verb === "delete"),
  );
  const noticed = events.find(
    (e) =>
      (e.kind === "job" &&
        e.obj.metadata?.name === JOB &&
        (((e.obj as StreamJob).status?.epoch ?? 0) > oldEpoch ||
          (e.obj as StreamJob).status?.phase === "Restarting")) ||
      (e.kind === "pod" && jobOf(e.obj) === JOB && epochOf(e.obj) > oldEpoch),
  );
  const logs = resumed.pods.map((pod) => taskManagerLog(namespace, pod.metadata!.name!));
  const latest = (values: (number | undefined)[]) =>
    values.some((v) => v === undefined) ? NaN : Math.max(...(values as number[]));
  let spawned = NaN;
  try {
    spawned = Math.max(...resumed.pods.map((pod) => processStart(containerPid(pod))));
  } catch {
    // a TaskManager already gone: no start time
  }
  // Every pod of every new epoch, including ones replaced again before they ran.
  const newPods = new Set(
    events
      .filter((e) => e.kind === "pod" && jobOf(e.obj) === JOB && epochOf(e.obj) > oldEpoch)
      .map((e) => e.obj.metadata!.name!),
  );
  const result: RecoveryRun = {
    mode,
    victim: victimName,
    reported: (reported?.t ?? NaN) - t0,
    noticed: (noticed?.t ?? NaN) - t0,
    spawned: spawned - t0,
    listening: latest(logs.map((l) => l.listening)) - t0,
    restored: latest(logs.map((l) => l.restored)) - t0,
    ready: resumed.readyAt - t0,
    processing: resumed.processing - t0,
    epochs: resumed.epoch - oldEpoch,
    ipCollision: [...newPods].some((pod) => taskManagerLog(namespace, pod).addrInUse),
  };
  await settle(ctx, obs.job().status?.latestCheckpoint?.id ?? 0);
  return result;
}

export async function benchRecovery(ctx: Context): Promise<void> {
  console.log(
    `\n── 1. recovery: ${ctx.settings.runs} runs, SIGKILL of a TaskManager and pod deletion alternately ──`,
  );
  const runs: RecoveryRun[] = [];
  const sec = (ms: number) => (ms / 1000).toFixed(2);
  for (let run = 0; run < ctx.settings.runs; run++) {
    const r = await recoveryRun(ctx, run);
    runs.push(r);
    console.log(
      `run ${String(run + 1).padStart(2)}  ${r.mode.padEnd(10)}  ${r.victim.padEnd(18)}  ` +
        `reported ${sec(r.reported)}  noticed ${sec(r.noticed)}  spawned ${sec(r.spawned)}  ` +
        `listening ${sec(r.listening)}  restored ${sec(r.restored)}  pods Ready ${sec(r.ready)}  ` +
        `processing ${sec(r.processing)} s` +
        (r.epochs > 1 ? `  (${r.epochs} new epochs: restarted again)` : "") +
        (r.ipCollision ? "  [pod IP collision with another local cluster: EADDRINUSE]" : ""),
    );
  }
  const s = (list: RecoveryRun[], pick: (r: RecoveryRun) => number) =>
    list
      .map(pick)
      .filter((ms) => !Number.isNaN(ms))
      .map((ms) => ms / 1000);
  const total = s(runs, (r) => r.processing);
  const clean = runs.filter((r) => !r.ipCollision);
  const cleanTotal = s(clean, (r) => r.processing);
  const collided = runs.length - clean.length;
  const breakdown = (metric: string, pick: (r: RecoveryRun) => number, note?: string): Row => ({
    section: "recovery",
    metric,
    unit: "s",
    values: s(runs, pick),
    target: "",
    ...(note && { note }),
  });
  const byMode = (mode: RecoveryRun["mode"], metric: string): Row => ({
    section: "recovery",
    metric,
    unit: "s",
    values: s(
      runs.filter((r) => r.mode === mode),
      (r) => r.processing,
    ),
    target: "",
  });
  rows.push(
    {
      section: "recovery",
      metric: "kill → processing resumed, p50",
      unit: "s",
      values: total,
      target: `p50 ≤ ${TARGETS.recoveryP50S} s`,
      pass: percentile(total, 50) <= TARGETS.recoveryP50S,
    },
    {
      section: "recovery",
      metric: "kill → processing resumed, p99",
      unit: "s",
      values: total,
      target: `p99 ≤ ${TARGETS.recoveryP99S} s`,
      pass: percentile(total, 99) <= TARGETS.recoveryP99S,
    },
  );
  if (collided > 0)
    rows.push({
      section: "recovery",
      metric: `  without the ${collided} run(s) hit by a pod IP collision`,
      unit: "s",
      values: cleanTotal,
      target: `p50 ≤ ${TARGETS.recoveryP50S}, p99 ≤ ${TARGETS.recoveryP99S}`,
      pass:
        cleanTotal.length > 0 &&
        percentile(cleanTotal, 50) <= TARGETS.recoveryP50S &&
        percentile(cleanTotal, 99) <= TARGETS.recoveryP99S,
    });
  rows.push(
    byMode("SIGKILL", "  SIGKILL runs"),
    byMode("delete pod", "  pod deletion runs"),
    breakdown("  kill → node agent reported the pod", (r) => r.reported),
    breakdown("  kill → operator noticed", (r) => r.noticed),
    breakdown("  kill → new TaskManager processes spawned", (r) => r.spawned),
    breakdown("  kill → TaskManagers listening", (r) => r.listening),
    breakdown("  kill → TaskManagers restored, processing", (r) => r.restored),
    breakdown("  kill → new epoch's pods all Ready", (r) => r.ready),
    {
      section: "recovery",
      metric: "Flink default heartbeat.timeout (reference)",
      unit: "s",
      value: FLINK_HEARTBEAT_TIMEOUT_S,
      target: "",
      note: "how long Flink may take just to declare a silent TaskManager lost",
    },
  );
}
