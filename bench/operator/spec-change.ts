// Spec change → the operator's first observable action: savepointNonce (a savepoint) and
// parallelism (a checkpoint, then a redeploy), timed from the merge-patch response.
import type { V1Pod } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import type { StreamJob } from "../../src/api/streamjob.js";
import { epochOf, isDeleting, jobOf } from "../../test/support/pods.js";
import { sleep } from "../../test/support/wait.js";
import { percentile } from "../measure.js";
import { rows, type Row } from "./results.js";
import { JOB, patchJob, settle, TARGETS, waitFor, type Context, type Logged } from "./setup.js";

/** The judged row: patch → the operator's status write for the new generation. */
function firstActionRow(field: string, firstAction: number[]): Row {
  return {
    section: "spec change",
    metric: `${field} patch → first action (status write)`,
    unit: "ms",
    values: firstAction,
    target: `p99 < ${TARGETS.specChangeP99Ms} ms`,
    pass: percentile(firstAction, 99) < TARGETS.specChangeP99Ms,
  };
}

export async function benchSavepointNonce(ctx: Context): Promise<void> {
  console.log(`\n── 2a. spec change: savepointNonce, ${ctx.settings.specRuns} runs ──`);
  const { obs } = ctx;
  const firstAction: number[] = [];
  const completed: number[] = [];
  for (let run = 0; run < ctx.settings.specRuns; run++) {
    const nonce = `bench-${run + 1}-${randomBytes(3).toString("hex")}`;
    const from = obs.log.length;
    const { tResponse, generation } = await patchJob(ctx, { savepointNonce: nonce });
    const isJob = (e: Logged) => e.kind === "job" && e.obj.metadata?.name === JOB;
    const ack = await obs.first(
      `run ${run + 1}: a status write for generation ${generation}`,
      from,
      (e) => isJob(e) && ((e.obj as StreamJob).status?.observedGeneration ?? 0) >= generation,
      30_000,
    );
    const done = await obs.first(
      `run ${run + 1}: savepoint with nonce ${nonce} in status`,
      from,
      (e) => isJob(e) && (e.obj as StreamJob).status?.latestSavepoint?.nonce === nonce,
      30_000,
    );
    // Reconciled (lastReconciledSpec carries the nonce) before the next change.
    await waitFor(
      `run ${run + 1}: savepointNonce ${nonce} reconciled`,
      () => {
        const text = obs.jobs.get(JOB)?.status?.lastReconciledSpec;
        return (
          text !== undefined && (JSON.parse(text) as { savepointNonce?: string }).savepointNonce === nonce
        );
      },
      30_000,
    );
    firstAction.push(Math.max(0, ack.t - tResponse));
    completed.push(done.t - tResponse);
    console.log(
      `run ${String(run + 1).padStart(2)}  status written ${(ack.t - tResponse).toFixed(0)} ms  ` +
        `savepoint ${obs.job().status?.latestSavepoint?.id} completed ${(done.t - tResponse).toFixed(0)} ms`,
    );
    await sleep(200 + Math.random() * 300); // not in step with the checkpoint interval
  }
  rows.push(firstActionRow("savepointNonce", firstAction), {
    section: "spec change",
    metric: "  savepointNonce patch → savepoint completed",
    unit: "ms",
    values: completed,
    target: "",
  });
}

export async function benchScale(ctx: Context): Promise<void> {
  if (ctx.settings.scaleRuns === 0) return;
  console.log(`\n── 2b. spec change: parallelism, ${ctx.settings.scaleRuns} runs ──`);
  const { obs } = ctx;
  const firstAction: number[] = [];
  const firstPod: number[] = [];
  const running: number[] = [];
  for (let run = 0; run < ctx.settings.scaleRuns; run++) {
    const before = obs.job().status!;
    const oldEpoch = before.epoch!;
    const to = before.parallelism === 2 ? 3 : 2;
    const from = obs.log.length;
    const { tResponse, generation } = await patchJob(ctx, { parallelism: to });
    const isJob = (e: Logged) => e.kind === "job" && e.obj.metadata?.name === JOB;
    const ack = await obs.first(
      `scale run ${run + 1}: a status write for generation ${generation}`,
      from,
      (e) => isJob(e) && ((e.obj as StreamJob).status?.observedGeneration ?? 0) >= generation,
      30_000,
    );
    const pod = await obs.first(
      `scale run ${run + 1}: a TaskManager pod deleted or created`,
      from,
      (e) =>
        e.kind === "pod" &&
        jobOf(e.obj) === JOB &&
        (epochOf(e.obj) > oldEpoch || e.verb === "delete" || isDeleting(e.obj as V1Pod)),
      60_000,
    );
    const up = await obs.first(
      `scale run ${run + 1}: ${to} TaskManagers Running`,
      from,
      (e) => {
        const status = isJob(e) ? (e.obj as StreamJob).status : undefined;
        return status?.phase === "Running" && (status.epoch ?? 0) > oldEpoch && status.parallelism === to;
      },
      90_000,
    );
    firstAction.push(Math.max(0, ack.t - tResponse));
    firstPod.push(pod.t - tResponse);
    running.push(up.t - tResponse);
    console.log(
      `run ${run + 1}  parallelism ${before.parallelism} → ${to}  status written ${(ack.t - tResponse).toFixed(0)} ms  ` +
        `first pod ${pod.verb === "add" ? "created" : "deleted"} ${(pod.t - tResponse).toFixed(0)} ms  ` +
        `Running ${(up.t - tResponse).toFixed(0)} ms`,
    );
    await settle(ctx, obs.job().status?.latestCheckpoint?.id ?? 0);
  }
  rows.push(
    firstActionRow("parallelism", firstAction),
    {
      section: "spec change",
      metric: "  parallelism patch → first pod deleted/created",
      unit: "ms",
      values: firstPod,
      target: "",
      note: "after a checkpoint",
    },
    {
      section: "spec change",
      metric: "  parallelism patch → Running at new parallelism",
      unit: "ms",
      values: running,
      target: "",
    },
  );
}
