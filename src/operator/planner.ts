// The reconcile decision: observed state in, a plan out. Pure: time comes in as `now`, and the
// applier performs the actions in order, then status.ts turns the plan into the one status write.
//
// Actions (each idempotent, so replaying a plan after a crash or a conflict is harmless):
//   CreateTokenSecret  create the job's token Secret with random data if it does not exist
//   CreatePod          create one TaskManager pod (already-exists is success)
//   DeletePod          delete one pod (not-found is success)
//   StartCoordinator   make sure a coordinator runs for exactly this epoch and parallelism
//   StopCoordinator    stop the job's coordinator, aborting its pending checkpoint
//   SendPeers          tell every TaskManager of the epoch where the others are (PUT /v1/peers); a
//                      TaskManager that does not get it is no failure: the next pass sends again
//   TakeSnapshot       ask the coordinator for a checkpoint or savepoint tagged with `purpose`; its
//                      result comes back as Observed.snapshot on a later pass
//   RecordEvent        a Kubernetes Event for `kubectl describe` (status.ts adds the events a status
//                      change calls for)
//
// Decisions:
// - The epoch never goes back: the current epoch is the highest of status.epoch and every pod's
//   epoch label, so pods created by a pass whose status write was lost are still recognised.
// - Restarts and redeploys restore from the newest verified checkpoint or savepoint in storage (ids
//   share one sequence, so the highest id is the newest state); before any exists, from the
//   resolved spec.restoreFrom; else fresh.
// - Backoff between restarts: the n-th restart waits until initial * 2^n (capped at max) after the
//   current epoch's pods were created, so a job that ran longer than that restarts at once.
// - Nothing is deleted while the job cannot run (storage Secret unusable, restore target missing,
//   image not pulled): Degraded, and a retry after as long as it has been degraded (doubling).
// - Upgrade and scale wait for a savepoint / checkpoint only while every TaskManager is ready; a job
//   that is not running, or whose snapshot failed, redeploys from the newest one in storage.
// - Failed is terminal for the spec that failed: only a spec change redeploys.
// - Waiting is not polling: pod events and the coordinator (a snapshot finished, the failure manager
//   gave up) wake the job; a plan asks to look again only at a deadline no event marks (a pod's
//   readiness timeout, the end of a restart backoff, the next retry while degraded), and within a
//   second while the epoch's TaskManagers all have an IP but are not all ready: a dataflow's stay
//   unready until they have their peers, and one that was not listening yet missed the last send.
// - A TaskManager that exits with EXIT_CONFIGURATION_ERROR cannot start as the spec says: the job
//   is Failed at once (ConfigurationError), with the TaskManager's termination message; no restart.
import type { V1Pod } from "@kubernetes/client-node";
import { parseDuration } from "../api/duration.js";
import type { PeersRequest } from "../api/protocol.js";
import type { Phase, StreamJob } from "../api/streamjob.js";
import { desiredChildren, taskManagerUrl, type RestoreTarget } from "./desired.js";
import { classifySpecChanges, strongestSpecChange } from "./spec-changes.js";
import { EXIT_CONFIGURATION_ERROR } from "../taskmanager/config/environment.js";

/** A TaskManager pod as the planner needs it; observe-pod.ts builds it from a V1Pod. */
export interface ObservedPod {
  name: string;
  /** Where the coordinator reaches the TaskManager; undefined until the pod has an IP. */
  podIP?: string;
  /** From the epoch label; undefined when the label is missing or not a number. */
  epoch: number | undefined;
  taskIndex: number | undefined;
  phase: "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";
  ready: boolean;
  /** Milliseconds: when the pod last became (un)ready, or its creation while it never was. */
  readySince: number;
  createdAt: number;
  deleting: boolean;
  /** Why the container is not running yet, e.g. ImagePullBackOff. */
  waitingReason?: string;
  /** How the container ended, for the restart message; `message` is its termination message. */
  terminated?: { exitCode: number; reason?: string; message?: string };
}

/** The last snapshot the planner asked the coordinator for, as the coordinator reports it. */
export type SnapshotObservation =
  | { purpose: string; state: "pending" }
  | { purpose: string; state: "completed"; target: RestoreTarget }
  | { purpose: string; state: "failed"; message: string };

export interface Observed {
  job: StreamJob;
  /** Pods labelled with the job's selector and owned by it, of every epoch. */
  pods: ObservedPod[];
  tokenSecretExists: boolean;
  /** The storage Secret parsed, or why it cannot be used (missing, missing a key). */
  storage:
    | { ok: true; endpoint: string; region: string }
    | { ok: false; reason?: "StorageSecretInvalid" | "StorageUnavailable"; message: string };
  /** Newest checkpoint or savepoint whose manifest and parts exist. */
  latestCompleted: RestoreTarget | null;
  /** Newer checkpoints passed over on the way to it (corrupt manifest, missing part), and why. */
  skippedCheckpoints?: { checkpointId: number; reason: string }[];
  /** spec.restoreFrom looked up in storage: undefined when the spec has none, null when not found. */
  initialRestore?: RestoreTarget | null;
  snapshot?: SnapshotObservation;
  /** The coordinator's failure manager asks for a restart (too many checkpoints failed in a row). */
  coordinatorFailure?: string;
  /** When the Degraded condition became True, if it is. */
  degradedSince?: number;
  now: number;
}

export type Action =
  | { type: "CreateTokenSecret"; name: string }
  | { type: "CreatePod"; pod: V1Pod }
  | { type: "DeletePod"; name: string; reason: string }
  | { type: "StartCoordinator"; epoch: number; parallelism: number }
  | { type: "StopCoordinator"; reason: string }
  | ({ type: "SendPeers" } & PeersRequest)
  | { type: "TakeSnapshot"; kind: "checkpoint" | "savepoint"; purpose: string }
  | {
      type: "RecordEvent";
      eventType: "Normal" | "Warning";
      reason: string;
      message: string;
      /** Repeats of the reason update one Event (its count) instead of adding one each. */
      aggregate?: boolean;
    };

export interface Plan {
  actions: Action[];
  /** Pass again after this long even without a watch event (a deadline); undefined: wait for events. */
  requeueAfterMs?: number;
  /** Working towards the spec: deploying, waiting for pods or a snapshot, backing off a restart. */
  progressing: boolean;
  phase: Phase;
  epoch: number;
  parallelism: number;
  restarts: number;
  /** Set when this plan deploys pods that restore from a checkpoint. */
  restoredFrom?: RestoreTarget;
  /** CamelCase reason and a message for the Progressing or Degraded condition. */
  reason: string;
  message: string;
  /** The job cannot run as specified; no pods were touched. */
  degraded: boolean;
  /** The spec has been acted on completely: status.lastReconciledSpec becomes the current spec. */
  reconciled: boolean;
}

export interface PlannerOptions {
  /** A pod not Ready for this long counts as failed. */
  unreadyTimeoutMs: number;
}

const DEFAULT_PLANNER_OPTIONS: PlannerOptions = { unreadyTimeoutMs: 60_000 };

/** How soon the peers go out again while the TaskManagers they are for are not all ready. */
export const PEERS_RESEND_MS = 1_000;

const IMAGE_FAILURES = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"]);

export function plan(observed: Observed, options: PlannerOptions = DEFAULT_PLANNER_OPTIONS): Plan {
  const { job, now } = observed;
  const { spec } = job;
  const status = job.status ?? {};
  const change = strongestSpecChange(status.lastReconciledSpec, spec);
  const epoch = Math.max(status.epoch ?? 0, ...observed.pods.map((pod) => pod.epoch ?? 0));
  const restarts = status.restarts ?? 0;
  const base = {
    phase: status.phase ?? "Pending",
    epoch,
    // A status write lost after a deploy leaves no parallelism; the pods were built from this spec.
    parallelism: status.parallelism ?? spec.parallelism,
    restarts,
    progressing: false,
    degraded: false,
    reconciled: false,
  };
  const backoff = {
    initial: parseDuration(spec.restart.backoff.initial),
    max: parseDuration(spec.restart.backoff.max),
  };

  const degrade = (reason: string, message: string): Plan => {
    // Retry after as long as the job has been degraded: doubling, within the restart backoff bounds.
    const elapsed = now - (observed.degradedSince ?? now);
    const requeueAfterMs = Math.min(Math.max(elapsed, backoff.initial), backoff.max);
    return { ...base, actions: [], requeueAfterMs, reason, message, degraded: true };
  };

  if (!observed.storage.ok)
    return degrade(observed.storage.reason ?? "StorageSecretInvalid", observed.storage.message);
  const storage = observed.storage;

  const actions: Action[] = [];
  const tokenSecret = desiredChildren({ job, epoch: 1, storage }).tokenSecret.name;
  if (!observed.tokenSecretExists) actions.push({ type: "CreateTokenSecret", name: tokenSecret });

  const live = observed.pods.filter((pod) => !pod.deleting);
  for (const pod of live.filter((pod) => (pod.epoch ?? 0) < epoch)) {
    actions.push({ type: "DeletePod", name: pod.name, reason: `pod of an older epoch than ${epoch}` });
  }
  const current = live.filter((pod) => pod.epoch === epoch && epoch > 0);
  const running = current.length === base.parallelism && current.every((pod) => pod.ready);
  const deleteCurrent = (reason: string) =>
    current.forEach((pod) => actions.push({ type: "DeletePod", name: pod.name, reason }));

  const deploy = (target: RestoreTarget | null | undefined, outcome: Partial<Plan>): Plan => {
    const next = epoch + 1;
    const { pods } = desiredChildren({ job, epoch: next, storage, ...(target && { restoreFrom: target }) });
    actions.push(...pods.map((pod): Action => ({ type: "CreatePod", pod })));
    return {
      ...base,
      actions,
      // The new pods' readiness deadline; their events wake the job before that.
      requeueAfterMs: options.unreadyTimeoutMs,
      progressing: true,
      epoch: next,
      parallelism: spec.parallelism,
      ...(target && { restoredFrom: target }),
      reason: "Deploying",
      message: `deploying epoch ${next}${target ? ` from checkpoint ${target.checkpointId}` : ""}`,
      reconciled: true,
      ...outcome,
    };
  };
  const stop = (reason: string) => actions.push({ type: "StopCoordinator", reason });
  // Waiting for pods or a snapshot: their events (and the coordinator) wake the job.
  const waitFor = (reason: string, message: string, phase: Phase = base.phase): Plan => ({
    ...base,
    actions,
    progressing: true,
    phase,
    reason,
    message,
  });
  // A snapshot for this purpose: asked for now, still pending, or its outcome. It is asked of the
  // epoch's coordinator, started first if need be: after an operator restart none runs yet, and a
  // request nothing can answer would only wake the job again at once.
  const snapshot = (kind: "checkpoint" | "savepoint", purpose: string) => {
    const seen = observed.snapshot?.purpose === purpose ? observed.snapshot : undefined;
    if (!seen) {
      if (!actions.some((action) => action.type === "StartCoordinator"))
        actions.push({ type: "StartCoordinator", epoch, parallelism: base.parallelism });
      actions.push({ type: "TakeSnapshot", kind, purpose });
    }
    return seen ?? { purpose, state: "pending" as const };
  };
  const restoreTarget = observed.latestCompleted ?? observed.initialRestore;

  // ── suspend ──
  if (spec.suspend) {
    if (current.length > 0 && running && change.kind === "suspend") {
      const taken = snapshot("savepoint", `suspend:${job.metadata.generation ?? 0}`);
      if (taken.state === "pending") return waitFor("Suspending", "taking a savepoint before suspending");
    }
    stop("job suspended");
    deleteCurrent("job suspended");
    return {
      ...base,
      actions,
      phase: "Suspended",
      parallelism: 0,
      reason: "Suspended",
      message: "job suspended by spec.suspend",
      reconciled: true,
    };
  }

  // ── first deployment and resume ──
  if (epoch === 0 || change.kind === "resume" || base.phase === "Suspended") {
    if (epoch === 0 && spec.restoreFrom && observed.initialRestore === null) {
      return degrade(
        "RestoreTargetNotFound",
        `spec.restoreFrom ${describeRestoreFrom(job)} not found in storage`,
      );
    }
    const target = epoch === 0 ? observed.initialRestore : restoreTarget;
    return deploy(target, { phase: "Pending", reason: epoch === 0 ? "Deploying" : "Resuming" });
  }

  // ── spec changes that redeploy ──
  if (
    change.kind === "upgrade" ||
    change.kind === "scale" ||
    // Any change to the spec that failed redeploys it, raising maxRestarts included.
    (base.phase === "Failed" && classifySpecChanges(status.lastReconciledSpec, spec).length > 0)
  ) {
    const kind = change.kind === "scale" ? "checkpoint" : "savepoint";
    let target = restoreTarget;
    if (running) {
      const taken = snapshot(kind, `${change.kind}:${job.metadata.generation ?? 0}`);
      if (taken.state === "pending")
        return waitFor("SpecChanging", `${change.reason}; waiting for the ${kind}`);
      // A periodic checkpoint may have completed after the snapshot; the newest state wins.
      if (taken.state === "completed" && taken.target.checkpointId > (target?.checkpointId ?? 0))
        target = taken.target;
    }
    stop(change.reason);
    deleteCurrent(change.reason);
    return deploy(target, {
      phase: "Restarting",
      restarts: 0,
      reason: "SpecChanged",
      message: change.reason,
    });
  }

  if (base.phase === "Failed") {
    // Keep saying why it failed: the condition written when it did.
    const why = status.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
    return {
      ...base,
      actions,
      reason: why?.reason ?? "Failed",
      message: why?.message ?? "job failed; change the spec to redeploy",
    };
  }

  // ── failures of the current epoch ──
  const failure =
    findFailure(current, base.parallelism, now, options.unreadyTimeoutMs) ?? observed.coordinatorFailure;
  const imageFailure = current.find((pod) => pod.waitingReason && IMAGE_FAILURES.has(pod.waitingReason));
  if (!failure && imageFailure) {
    return {
      ...degrade("ImageNotStarting", `pod ${imageFailure.name}: ${imageFailure.waitingReason}`),
      actions,
    };
  }
  if (failure) {
    stop(failure);
    if (current.some(isMisconfigured)) {
      const message = `${failure}; not restarted: no restart fixes a configuration error; change the spec to redeploy`;
      actions.push({ type: "RecordEvent", eventType: "Warning", reason: "ConfigurationError", message });
      return { ...base, actions, phase: "Failed", reason: "ConfigurationError", message };
    }
    if (restarts >= spec.restart.maxRestarts) {
      actions.push({
        type: "RecordEvent",
        eventType: "Warning",
        reason: "Failed",
        message: `${failure}; maxRestarts ${spec.restart.maxRestarts} reached`,
      });
      return {
        ...base,
        actions,
        phase: "Failed",
        reason: "MaxRestartsReached",
        message: `${failure}; restarted ${restarts} times, maxRestarts is ${spec.restart.maxRestarts}; change the spec to redeploy`,
      };
    }
    const delay = Math.min(backoff.initial * 2 ** restarts, backoff.max);
    // With every pod of the epoch gone, its start is only known from the last restore, if any.
    const lastRestoreAt = status.lastRestore ? Date.parse(status.lastRestore.at) : 0;
    const startedAt = current.length > 0 ? Math.min(...current.map((pod) => pod.createdAt)) : lastRestoreAt;
    if (now < startedAt + delay) {
      // A fixed time, not a countdown: each status write wakes the watch, so a message that
      // changes every pass would loop until the backoff ends.
      const at = new Date(startedAt + delay).toISOString();
      return {
        ...waitFor("RestartBackoff", `${failure}; restarting at ${at} (backoff)`, "Restarting"),
        requeueAfterMs: startedAt + delay - now,
      };
    }
    deleteCurrent(failure);
    const message = `${failure}; restarting from ${restoreTarget ? `checkpoint ${restoreTarget.checkpointId}` : "the beginning"}`;
    actions.push({ type: "RecordEvent", eventType: "Warning", reason: "Restarting", message });
    return deploy(restoreTarget, {
      phase: "Restarting",
      restarts: restarts + 1,
      reason: "Restarting",
      message,
      reconciled: false,
    });
  }

  // ── steady state ──
  if (!running) {
    const unready = current.filter((pod) => !pod.ready);
    const deadline = Math.min(...unready.map((pod) => pod.readySince + options.unreadyTimeoutMs));
    const peers = peersOf(current, base.parallelism);
    if (peers) actions.push({ type: "SendPeers", epoch, peers });
    // A pod that stays unready sends no event: look again when it would count as failed.
    const requeueAfterMs = Math.min(Math.max(deadline - now, 0), peers ? PEERS_RESEND_MS : Infinity);
    const waiting = `waiting for ${unready.length} of ${base.parallelism} TaskManagers to become ready`;
    // After a failure, keep saying which one until the job runs again: the Ready condition is
    // where `kubectl describe` and `kubectl wait` readers look, and the events scroll away.
    const failure = status.conditions?.find((c) => c.type === "Ready" && c.reason === "Restarting");
    const failed = base.phase === "Restarting" && failure !== undefined;
    const why = failed
      ? failure.message.replace(/; waiting for \d+ of \d+ TaskManagers to become ready$/, "")
      : "";
    return {
      ...(failed ? waitFor("Restarting", `${why}; ${waiting}`) : waitFor("Starting", waiting)),
      ...(Number.isFinite(requeueAfterMs) && { requeueAfterMs }),
    };
  }
  actions.push({ type: "StartCoordinator", epoch, parallelism: base.parallelism });
  if (change.kind === "savepoint") {
    const taken = snapshot("savepoint", `nonce:${spec.savepointNonce ?? ""}`);
    if (taken.state === "pending") return waitFor("TakingSavepoint", change.reason, "Running");
    const message =
      taken.state === "completed"
        ? `savepoint ${taken.target.checkpointId} taken`
        : `savepoint failed: ${taken.message}`;
    return { ...base, actions, phase: "Running", reason: "Running", message, reconciled: true };
  }
  return {
    ...base,
    actions,
    phase: "Running",
    reason: "Running",
    message: `${base.parallelism} TaskManagers running epoch ${epoch}`,
    reconciled: true,
  };
}

/** Every task's TaskManager in the epoch, once each has an IP; undefined until then. */
function peersOf(current: ObservedPod[], parallelism: number): PeersRequest["peers"] | undefined {
  const peers: PeersRequest["peers"] = [];
  for (let taskIndex = 0; taskIndex < parallelism; taskIndex++) {
    const podIP = current.find((pod) => pod.taskIndex === taskIndex)?.podIP;
    if (!podIP) return undefined;
    peers.push({ taskIndex, url: taskManagerUrl(podIP) });
  }
  return peers;
}

/** A TaskManager that exited because it cannot start as the spec says: no restart fixes that. */
function isMisconfigured(pod: ObservedPod): boolean {
  return pod.phase === "Failed" && pod.terminated?.exitCode === EXIT_CONFIGURATION_ERROR;
}

/** Why the current epoch cannot go on, or undefined while it can. */
function findFailure(
  current: ObservedPod[],
  parallelism: number,
  now: number,
  unreadyTimeoutMs: number,
): string | undefined {
  // A configuration error first: it decides that the job is not restarted.
  const failed =
    current.find(isMisconfigured) ??
    current.find((pod) => pod.phase === "Failed" || pod.phase === "Succeeded");
  if (failed) {
    const exit = failed.terminated;
    // 137 is SIGKILL; the kubelet says OOMKilled for the OOM killer, so what is left is a kill after
    // a failed liveness probe (whose SIGTERM was not enough) or a kill -9.
    const killed = exit?.exitCode === 137 && exit.reason !== "OOMKilled";
    const how =
      exit?.reason === "OOMKilled"
        ? "was killed by the kernel for going over its memory limit (raise spec.template.resources.limits.memory)"
        : killed
          ? "was killed by its liveness probe or a SIGKILL"
          : failed.phase === "Failed"
            ? "failed"
            : "exited";
    return `TaskManager ${failed.name} ${how}${exit ? ` (exit code ${exit.exitCode}${exit.reason ? `, ${exit.reason}` : ""})${exit.message ? `: ${exit.message}` : ""}` : ""}`;
  }
  const present = new Set(current.map((pod) => pod.taskIndex));
  const missing = Array.from({ length: parallelism }, (_, index) => index).filter(
    (index) => !present.has(index),
  );
  if (missing.length > 0) return `TaskManager${missing.length > 1 ? "s" : ""} ${missing.join(", ")} deleted`;
  const unready = current.find(
    (pod) =>
      !pod.ready &&
      !(pod.waitingReason && IMAGE_FAILURES.has(pod.waitingReason)) &&
      now - pod.readySince >= unreadyTimeoutMs,
  );
  if (unready)
    return `TaskManager ${unready.name} not ready for ${Math.round((now - unready.readySince) / 1000)}s`;
  return undefined;
}

function describeRestoreFrom(job: StreamJob): string {
  const from = job.spec.restoreFrom;
  return from?.path ?? `checkpoint ${from?.checkpointId ?? "?"}`;
}
