// One reconcile pass of one StreamJob, level-based (it never asks what event woke it):
//
//   1. read the StreamJob and its pods from the API server (quorum reads, so a pass never acts on a
//      cache that has not yet seen the previous pass's writes)
//   2. observe storage and the coordinator: the storage Secret, the newest restorable checkpoint
//   3. plan (pure, planner.ts); if the plan stops a running coordinator, stop it and plan again:
//      a checkpoint can still commit until the coordinator has stopped, so the restore target may
//      only be read from storage after that
//   4. apply the actions in order
//   5. record the events the plan and the status change call for (status.ts decides which)
//   6. write status once (status.ts), only the fields the reconciler owns, only when changed
import { randomBytes } from "node:crypto";
import type { V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { isDeepStrictEqual } from "node:util";
import { MANIFEST_NAME, manifestKey } from "../api/object-layout.js";
import type { JobRef, PeersRequest } from "../api/protocol.js";
import { parseStreamJobSpec, StreamJobStatus, type StreamJob } from "../api/streamjob.js";
import { latestCompletedCheckpoint, missingParts } from "../coordinator/completed-checkpoints.js";
import type { HttpTaskManagerClientOptions } from "../coordinator/http-task-manager-client.js";
import { TaskManagerCallError, type TaskManagerClient } from "../coordinator/interfaces.js";
import {
  decodeBase64,
  StorageSecretError,
  type JobStorage,
  type StorageResolver,
} from "./checkpoint-storage.js";
import { ownerReference, type RestoreTarget } from "./desired.js";
import { COORDINATOR_FIELDS, jobKey, type JobCoordinators } from "./job-coordinators.js";
import { isNotFound, type KubeGateway } from "./kube-gateway.js";
import type { OperatorMetrics } from "./metrics.js";
import { jobSelector, LABELS, OPERATOR_NAME, TOKEN_SECRET_KEY, tokenSecretName } from "./names.js";
import { observePod, toMillis } from "./observe-pod.js";
import {
  plan,
  PEERS_RESEND_MS,
  type Action,
  type Observed,
  type Plan,
  type PlannerOptions,
} from "./planner.js";
import { nextStatus, refusal, statusEvents, type RecordEvent } from "./status.js";

/** What the reconciler asks of the job coordinators (JobCoordinators in the operator). */
export type Coordinators = Pick<
  JobCoordinators,
  | "adopt"
  | "isRunning"
  | "snapshotOf"
  | "restartRequestOf"
  | "checkpointFailureOf"
  | "start"
  | "stop"
  | "takeSnapshot"
  | "forget"
>;

export interface ReconcilerDeps {
  gateway: KubeGateway;
  storage: StorageResolver;
  coordinators: Coordinators;
  /** The client the peers reach a TaskManager with: the coordinators' (HttpTaskManagerClient). */
  connect(options: HttpTaskManagerClientOptions): Pick<TaskManagerClient, "setPeers">;
  metrics: OperatorMetrics;
  log: Logger;
  now(): number;
  planner: PlannerOptions;
}

interface Observation {
  observed: Observed;
  pods: V1Pod[];
  token?: string;
  storage?: JobStorage;
}

export class Reconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  /** Resolves with when to look again (undefined: on the next event); throws to be retried with backoff. */
  async reconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const [namespace, name] = key.split("/") as [string, string];
    const log = this.deps.log.child({ namespace, name, reconcile: randomBytes(4).toString("hex") });
    const raw = (await this.deps.gateway.getStreamJob(namespace, name)) as StreamJob | null;
    if (raw === null || raw.metadata.deletionTimestamp) {
      // Pods carry owner references: the garbage collector removes them. Checkpoints stay in storage.
      await this.deps.coordinators.forget(key);
      this.deps.storage.forget(key);
      if (raw?.metadata.uid) this.deps.gateway.forgetEvents(raw.metadata.uid);
      log.debug("StreamJob gone; coordinator stopped");
      return {};
    }
    const parsed = parseStreamJobSpec(raw.spec);
    if (!parsed.ok) return this.refuseSpec(raw, parsed.error, log);
    const status = StreamJobStatus.safeParse(raw.status ?? {});
    const job: StreamJob = { ...raw, spec: parsed.spec, status: status.success ? status.data : {} };
    await this.deps.coordinators.adopt(key, raw.metadata.uid ?? "");

    let observation = await this.observe(job, log);
    let decided = plan(observation.observed, this.deps.planner);
    const stop = decided.actions.find((action) => action.type === "StopCoordinator");
    if (stop && this.deps.coordinators.isRunning(key)) {
      await this.deps.coordinators.stop(key, stop.reason);
      observation = await this.observe(job, log);
      decided = plan(observation.observed, this.deps.planner);
    }
    log.debug(
      { phase: decided.phase, reason: decided.reason, actions: decided.actions.map((a) => a.type) },
      "planned",
    );
    await this.apply(
      job,
      [...decided.actions, ...statusEvents(observation.observed, decided)],
      observation,
      log,
    );
    await this.writeStatus(job, decided, log);
    return decided.requeueAfterMs === undefined ? {} : { requeueAfterMs: decided.requeueAfterMs };
  }

  private async observe(job: StreamJob, log: Logger): Promise<Observation> {
    const { gateway, coordinators, now } = this.deps;
    const ref = refOf(job);
    const key = jobKey(ref);
    const pods = (await gateway.listPods(ref.namespace, jobSelector(ref.name))).filter((pod) =>
      pod.metadata?.ownerReferences?.some((owner) => owner.uid === job.metadata.uid),
    );
    const observedPods = pods.map(observePod);
    const tokenSecret = await gateway.getSecret(ref.namespace, tokenSecretName(ref.name));
    const token = tokenSecret?.data?.[TOKEN_SECRET_KEY];
    const epoch = Math.max(job.status?.epoch ?? 0, ...observedPods.map((pod) => pod.epoch ?? 0));
    const degraded = job.status?.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
    const observed: Observed = {
      job,
      pods: observedPods,
      tokenSecretExists: token !== undefined,
      storage: { ok: false, message: "" },
      latestCompleted: null,
      snapshot: coordinators.snapshotOf(key),
      coordinatorFailure: coordinators.restartRequestOf(key, epoch),
      ...(degraded && { degradedSince: Date.parse(degraded.lastTransitionTime) }),
      now: now(),
    };
    const withToken = token ? { token: decodeBase64(token) } : {};
    let storage: JobStorage;
    try {
      storage = await this.deps.storage.resolve(job);
    } catch (err) {
      // Any other error (the API server unreachable) fails the pass, to be retried with backoff.
      if (!(err instanceof StorageSecretError)) throw err;
      observed.storage = { ok: false, reason: "StorageSecretInvalid", message: err.message };
      return { observed, pods, ...withToken };
    }
    try {
      // While a coordinator runs, a plan that needs the restore target stops it and observes again.
      if (!coordinators.isRunning(key)) {
        await storage.ensureBucket();
        // Checkpoints older than the resource belong to a deleted job of the same name.
        const completedAfter = toMillis(job.metadata.creationTimestamp);
        const { latest, skipped } = await latestCompletedCheckpoint(storage.snapshots, ref, {
          completedAfter,
        });
        for (const { checkpointId, reason } of skipped)
          log.warn({ checkpointId, reason }, "checkpoint not restorable; passed over");
        observed.skippedCheckpoints = skipped;
        observed.latestCompleted = latest && {
          checkpointId: latest.checkpointId,
          manifestKey: latest.manifestKey,
        };
        if (job.spec.restoreFrom && epoch === 0)
          observed.initialRestore = await this.resolveRestoreFrom(job, storage);
      }
    } catch (err) {
      const where = `bucket ${storage.bucket} at ${storage.endpoint}`;
      observed.storage = {
        ok: false,
        reason: "StorageUnavailable",
        message: `${where}: ${(err as Error).message}`,
      };
      return { observed, pods, ...withToken };
    }
    observed.storage = { ok: true, endpoint: storage.endpoint, region: storage.region };
    return { observed, pods, storage, ...withToken };
  }

  /** spec.restoreFrom as a verified restore target, or null when it is not there (or unusable). */
  private async resolveRestoreFrom(job: StreamJob, storage: JobStorage): Promise<RestoreTarget | null> {
    const from = job.spec.restoreFrom!;
    const ref = refOf(job);
    const candidates = from.path
      ? [from.path]
      : (["checkpoint", "savepoint"] as const).map((kind) =>
          manifestKey({
            basePrefix: job.spec.checkpoint.storage.prefix,
            ...ref,
            kind,
            checkpointId: from.checkpointId!,
          }),
        );
    for (const key of candidates) {
      const manifest = await storage.snapshots.getManifest(key).catch(() => null);
      if (manifest === null) continue;
      // The TaskManagers refuse these too; refusing here says why instead of crash-looping pods.
      if (manifest.job.namespace !== ref.namespace || manifest.job.name !== ref.name) continue;
      if (manifest.maxParallelism !== job.spec.maxParallelism) continue;
      if ((await missingParts(storage.snapshots, manifest)).length > 0) continue;
      return { checkpointId: manifest.checkpointId, manifestKey: key };
    }
    return null;
  }

  private async apply(
    job: StreamJob,
    actions: Action[],
    observation: Observation,
    log: Logger,
  ): Promise<void> {
    const { gateway, coordinators } = this.deps;
    const ref = refOf(job);
    const key = jobKey(ref);
    for (const action of actions) {
      switch (action.type) {
        case "CreateTokenSecret":
          await gateway.createSecret({
            apiVersion: "v1",
            kind: "Secret",
            metadata: {
              name: action.name,
              namespace: ref.namespace,
              labels: { [LABELS.managedBy]: OPERATOR_NAME, [LABELS.job]: jobSelector(ref.name)[LABELS.job]! },
              ownerReferences: [ownerReference(job)],
            },
            type: "Opaque",
            stringData: { [TOKEN_SECRET_KEY]: randomBytes(32).toString("base64url") },
          });
          log.info({ secret: action.name }, "token Secret created");
          break;
        case "CreatePod":
          await gateway.applyPod(action.pod);
          log.info({ pod: action.pod.metadata?.name }, "TaskManager pod created");
          break;
        case "DeletePod":
          await gateway.deletePod(ref.namespace, action.name);
          log.info({ pod: action.name, reason: action.reason }, "TaskManager pod deleted");
          break;
        case "StopCoordinator":
          await coordinators.stop(key, action.reason);
          break;
        case "StartCoordinator": {
          const { storage, token } = observation;
          if (!storage || !token) throw new Error("cannot start the coordinator without storage and token");
          const pods = observation.observed.pods.filter((pod) => pod.epoch === action.epoch && !pod.deleting);
          await coordinators.start(
            {
              job,
              epoch: action.epoch,
              parallelism: action.parallelism,
              pods,
              token,
              store: storage.snapshots,
              bucket: storage.bucket,
            },
            async () => {
              const stored = await storage.snapshots.listCheckpoints(ref);
              const recorded = Math.max(
                job.status?.latestCheckpoint?.id ?? 0,
                job.status?.latestSavepoint?.id ?? 0,
              );
              const leftoverIds = stored
                .filter((c) => !c.objectKeys.includes(`${c.directory}${MANIFEST_NAME}`))
                .map((c) => c.checkpointId);
              return { recordedId: recorded, storedIds: stored.map((c) => c.checkpointId), leftoverIds };
            },
          );
          break;
        }
        case "SendPeers":
          await this.sendPeers({ epoch: action.epoch, peers: action.peers }, observation.token, log);
          break;
        case "TakeSnapshot":
          coordinators.takeSnapshot(key, action.kind, action.purpose);
          log.info({ kind: action.kind, purpose: action.purpose }, "snapshot requested");
          break;
        case "RecordEvent":
          await this.event(job, action, log);
          break;
      }
    }
  }

  /**
   * PUT /v1/peers to every TaskManager of the epoch. Not getting through is no error: the plan looks
   * again within PEERS_RESEND_MS while they are not all ready, and sends again (repeats are harmless).
   */
  private async sendPeers(request: PeersRequest, token: string | undefined, log: Logger): Promise<void> {
    if (!token) {
      log.debug({ epoch: request.epoch }, "peers not sent: the token Secret is not there yet");
      return;
    }
    const sent = await Promise.allSettled(
      request.peers.map(({ taskIndex, url }) =>
        this.deps
          .connect({ taskIndex, baseUrl: url, token, requestTimeoutMs: PEERS_RESEND_MS })
          .setPeers(request),
      ),
    );
    sent.forEach((result, i) => {
      if (result.status === "fulfilled") return;
      const { taskIndex } = request.peers[i]!;
      const err = result.reason as Error;
      // Not listening yet is how a TaskManager starts; one that answered and refused is worth a line.
      const refused = err instanceof TaskManagerCallError && err.status !== undefined;
      log[refused ? "info" : "debug"](
        { epoch: request.epoch, taskIndex, err: err.message },
        "peers not taken",
      );
    });
    const taken = sent.filter((result) => result.status === "fulfilled").length;
    log.debug({ epoch: request.epoch, taken, of: sent.length }, "peers sent");
  }

  private async writeStatus(job: StreamJob, decided: Plan, log: Logger): Promise<void> {
    const ref = refOf(job);
    const old = job.status ?? {};
    const checkpointFailure = this.deps.coordinators.checkpointFailureOf(jobKey(ref));
    const computed = nextStatus({
      job,
      plan: decided,
      now: this.deps.now(),
      ...(checkpointFailure && { checkpointFailure }),
    });
    const patch: Record<string, unknown> = { ...computed };
    for (const field of COORDINATOR_FIELDS) delete patch[field];
    const current: Record<string, unknown> = { ...old };
    for (const field of COORDINATOR_FIELDS) delete current[field];
    if (isDeepStrictEqual(patch, current)) return;

    if (decided.restarts > (old.restarts ?? 0)) this.deps.metrics.restarts.inc(ref);
    if (!(await this.deps.gateway.patchStatus(ref.namespace, ref.name, patch))) return;
    log.info(
      { phase: decided.phase, epoch: decided.epoch, reason: decided.reason, message: decided.message },
      "status updated",
    );
  }

  /** A spec the CRD let through but the operator cannot use: say so, once per generation. */
  private async refuseSpec(job: StreamJob, error: string, log: Logger): Promise<{ requeueAfterMs?: number }> {
    const refused = refusal(job, error, this.deps.now());
    // Waiting for a new generation, not retrying: the informer brings the fix.
    if (refused === null) return {};
    log.warn({ error }, "spec refused");
    await this.event(job, refused.event, log);
    const ref = refOf(job);
    await this.deps.gateway.patchStatus(ref.namespace, ref.name, { conditions: refused.conditions });
    return {};
  }

  /** Events are for people: one that cannot be recorded is logged, and the pass goes on. */
  private async event(job: StreamJob, event: RecordEvent, log: Logger): Promise<void> {
    const { eventType: type, reason, message, aggregate = false } = event;
    try {
      await this.deps.gateway.recordEvent({ job, type, reason, message }, { aggregate });
    } catch (err) {
      if (!isNotFound(err)) log.warn({ err, reason }, "recording an event failed");
    }
  }
}

function refOf(job: StreamJob): JobRef {
  return { namespace: job.metadata.namespace ?? "default", name: job.metadata.name! };
}
