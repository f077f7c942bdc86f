// One TaskManager, composed: keyed state, sink, processing loop, checkpoint executor, HTTP server.
// It listens at once (so /healthz answers and /readyz says "not ready"), restores if told to, then
// starts processing and becomes ready. main.ts adds the environment, real storage and signals.
import type { AddressInfo } from "node:net";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import {
  DEFAULT_STAGE_ID,
  PARTITION_STATE_STAGE_ID,
  PROTOCOL_VERSION,
  type TaskManagerConfig,
  type TaskManagerStatus,
} from "../api/protocol.js";
import type { ObjectStore } from "../storage/object-store.js";
import { CheckpointExecutor } from "./checkpoints/checkpoint-executor.js";
import { DataflowRuntime } from "../dataflow/dataflow-runtime.js";
import { isDataflow, type DataflowDefinition } from "../dataflow/definition.js";
import { refuseUpgrade } from "../dataflow/exchange.js";
import { bearerTokenCheck } from "./server/bearer-token.js";
import type { JobDefinition } from "./job/job-definition.js";
import { restoreCheckpoint, RestoreError } from "./restore/restore.js";
import { TaskRuntime } from "./runtime/task-runtime.js";
import { createTaskManagerApp } from "./server/app.js";
import { jobDirectoryOfManifestKey } from "./sink/output-layout.js";
import type { SinkLocation } from "./sink/sink.js";
import { TwoPhaseCommitSink } from "./sink/two-phase-commit-sink.js";
import { KeyGroupedStateBackend } from "./state/keyed-state.js";
import { PartitionScopedState } from "./state/partition-state.js";

export interface TaskManagerOptions {
  config: TaskManagerConfig;
  token: string;
  job: JobDefinition<unknown> | DataflowDefinition<unknown>;
  /** Object storage of the job's endpoint, one store per bucket. */
  storage(bucket: string): ObjectStore;
  host: string;
  /** Overrides config.port (tests listen on 0). */
  port?: number;
  log: Logger;
  batchSize?: number;
}

/** Why a running TaskManager must end. */
export type Termination = { reason: "replaced"; epoch: number } | { reason: "failed"; error: Error };

export interface RunningTaskManager {
  url: string;
  /** Resolves when restored and processing; rejects (with a RestoreError) when it must not start. */
  ready: Promise<void>;
  /** Resolves when the TaskManager must end: a newer epoch called, or the job failed. */
  terminated: Promise<Termination>;
  status(): TaskManagerStatus;
  /** Stops processing and uploads, closes the server. */
  stop(): Promise<void>;
}

export async function startTaskManager(options: TaskManagerOptions): Promise<RunningTaskManager> {
  const { config, log } = options;
  const { job } = options;
  const keyedState = () => new KeyGroupedStateBackend(config.maxParallelism, config.keyGroupRange);
  // Every keyed stage's state by stage id, what a restore fills: a dataflow's keyed stages, or a
  // single-stage job's `default`.
  const keyedStates = new Map(
    isDataflow(job)
      ? job.stages.map((stage) => [stage.id, keyedState()])
      : [[DEFAULT_STAGE_ID, keyedState()]],
  );
  const partitionState = new PartitionScopedState(config.maxParallelism, config.keyGroupRange);
  const context = {
    args: config.program.args,
    job: config.job,
    taskIndex: config.taskIndex,
    parallelism: config.parallelism,
    maxParallelism: config.maxParallelism,
    keyGroupRange: config.keyGroupRange,
    storage: options.storage,
  };
  const sink = (await job.output?.(context)) ?? new TwoPhaseCommitSink(config.taskIndex);
  const batchSize = options.batchSize === undefined ? {} : { batchSize: options.batchSize };
  // A dataflow runs one instance of each stage, its source in a TaskRuntime of its own; a
  // single-stage job is that TaskRuntime alone, its keyed state the stage `default`.
  const dataflow = isDataflow(job)
    ? new DataflowRuntime({
        dataflow: job,
        context,
        epoch: config.epoch,
        token: options.token,
        partitionState,
        stageStates: keyedStates,
        sink,
        log,
        ...batchSize,
        onNewerEpoch: (epoch) => terminate({ reason: "replaced", epoch }),
      })
    : undefined;
  const runtime =
    dataflow?.source ??
    new TaskRuntime({
      job: job as JobDefinition<unknown>,
      context,
      state: keyedStates.get(DEFAULT_STAGE_ID)!,
      partitionState,
      sink,
      ...batchSize,
    });
  const stageStates = {
    [PARTITION_STATE_STAGE_ID]: partitionState.backend,
    ...Object.fromEntries(keyedStates),
  };
  // Explicit in the configuration since v1 gained `output`; older operators leave it to be derived.
  const configuredOutput: SinkLocation | undefined = config.output && {
    store: options.storage(config.output.bucket),
    jobDirectory: config.output.keyPrefix,
  };
  const checkpoints = new CheckpointExecutor({
    epoch: config.epoch,
    taskIndex: config.taskIndex,
    cut: (checkpointId, signal) => dataflow?.cut(checkpointId, signal) ?? runtime.cut(checkpointId),
    ...(dataflow && { onAborted: (checkpointId: number) => dataflow.aborted(checkpointId) }),
    onCompleted: (sourceOffsets) => runtime.checkpointed(sourceOffsets),
    sink,
    ...(configuredOutput && { sinkLocation: configuredOutput }),
    storage: options.storage,
    log,
  });

  let failure: Error | undefined;
  let stopping = false;
  let notReady: string | undefined =
    config.restoreFrom === undefined
      ? "starting"
      : `restoring from checkpoint ${config.restoreFrom.checkpointId}`;
  // A dataflow after its restore: waiting for its peers, then for its connections to them.
  let connecting = false;
  /** Why the task is not ready, derived: a halted exchange says why it waits to be replaced. */
  const notReadyReason = (): string | undefined => {
    if (!stopping && dataflow?.haltedReason !== undefined) {
      return `processing stopped: ${dataflow.haltedReason}; waiting to be replaced`;
    }
    if (!stopping && connecting) {
      return dataflow?.peersKnown ? CONNECTING : `waiting for the peers of epoch ${config.epoch}`;
    }
    return notReady;
  };
  let restoredFrom: number | null = null;
  let terminate: (termination: Termination) => void = () => undefined;
  const terminated = new Promise<Termination>((resolve) => (terminate = resolve));

  const status = (): TaskManagerStatus => {
    const sourceLag = runtime.sourceLag;
    return {
      protocolVersion: PROTOCOL_VERSION,
      job: config.job,
      epoch: config.epoch,
      taskIndex: config.taskIndex,
      ready: notReadyReason() === undefined,
      lastCompletedCheckpointId: checkpoints.lastCompletedCheckpointId,
      highestTriggeredCheckpointId: checkpoints.highestTriggeredCheckpointId,
      restoredFromCheckpointId: restoredFrom,
      recordsProcessed: runtime.recordsProcessed,
      ...(Object.keys(sourceLag).length > 0 && { sourceLag }),
      ...(dataflow && {
        dataflow: {
          peersKnown: dataflow.peersKnown,
          ...(dataflow.haltedReason !== undefined && { halted: dataflow.haltedReason }),
          stages: dataflow.stageStatus(),
        },
      }),
    };
  };

  const app = createTaskManagerApp({
    token: options.token,
    epoch: config.epoch,
    taskIndex: config.taskIndex,
    checkpoints,
    status,
    notReadyReason,
    alive: () => failure === undefined,
    onNewerEpoch: (epoch) => terminate({ reason: "replaced", epoch }),
    // Single-stage jobs exchange nothing: they take the peers and need none of them.
    setPeers: (peers) => dataflow?.setPeers(peers),
    log,
  });
  const server = await listen(app, options.host, options.port ?? config.port);
  const tokenMatches = bearerTokenCheck(options.token);
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (dataflow) dataflow.exchange.accept(req, socket, head);
    else if (!tokenMatches(req.headers.authorization))
      refuseUpgrade(socket, 401, "missing or invalid bearer token");
    else refuseUpgrade(socket, 404, "this job has no exchange: it is not a dataflow");
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
  log.info({ url, epoch: config.epoch, taskIndex: config.taskIndex }, "TaskManager listening");

  const ready = (async () => {
    let offsets: Record<string, number> = {};
    const restoreFrom = config.restoreFrom;
    // The job's partitions first: they place partition-scoped state, restored or not.
    await runtime.discover();
    if (restoreFrom !== undefined) {
      const store = options.storage(restoreFrom.bucket);
      const location = configuredOutput ?? sinkLocationOfManifest(store, restoreFrom.manifestKey);
      const restored = await restoreCheckpoint({ ...config, restoreFrom }, store, stageStates);
      const output = await sink.recover(location, restored.checkpointId, config.parallelism);
      offsets = restored.sourceOffsets;
      checkpoints.restored(restored.checkpointId, location);
      restoredFrom = restored.checkpointId;
      log.info(
        {
          checkpointId: restored.checkpointId,
          parts: restored.partsRead,
          keys: restored.keysRestored,
          output,
        },
        "restored",
      );
    }
    await runtime.open(offsets);
    if (dataflow) {
      connecting = true;
      await dataflow.connect();
      connecting = false;
    }
    if (stopping) return;
    (dataflow ?? runtime).start().catch((err: unknown) => {
      failure = err instanceof Error ? err : new Error(String(err));
      log.error({ err: failure }, "processing failed");
      terminate({ reason: "failed", error: failure });
    });
    notReady = undefined;
    log.info({ partitions: Object.keys(runtime.sourceOffsets).length }, "ready: processing");
  })();
  // The caller decides what a failed start means; do not also report it as unhandled here.
  ready.catch(() => undefined);

  return {
    url,
    ready,
    terminated,
    status,
    async stop() {
      stopping = true;
      notReady = "stopping";
      checkpoints.close();
      await (dataflow ?? runtime).stop();
      await sink.close().catch((err: unknown) => log.warn({ err }, "closing the sink failed"));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The sink's location a v1 configuration without `output` implies: the manifest's job directory. */
function sinkLocationOfManifest(store: ObjectStore, manifestKey: string): SinkLocation {
  const jobDirectory = jobDirectoryOfManifestKey(manifestKey);
  if (jobDirectory === undefined) {
    throw new RestoreError(`restoreFrom.manifestKey ${manifestKey} does not end in chk-<id>/_metadata`);
  }
  return { store, jobDirectory };
}

const CONNECTING = "connecting to the other TaskManagers of the epoch";

function listen(app: ReturnType<typeof createTaskManagerApp>, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
  });
}
