// The coordinator ⇄ TaskManager protocol, version v1: one zod schema per message, used by both
// sides, plus the checkpoint manifest and the TaskManager start-up configuration.
// docs/protocol.md is the prose version of this file; keep them in step.
//
// Objects are parsed with zod's default "strip" mode: unknown fields are ignored, so v1 can gain
// optional fields without breaking older peers. Anything incompatible goes to /v2.

import { z } from "zod";
import {
  isWithinRange,
  keyGroupRangeForTask,
  MAX_PARALLELISM_UPPER_BOUND,
  rangesOverlap,
  type KeyGroupRange,
} from "./key-groups.js";

export const PROTOCOL_VERSION = "v1";

/** Longest a TaskManager holds GET /v1/checkpoints/{id} open before answering "in_progress". */
export const MAX_RESULT_WAIT_MS = 30_000;

// ── building blocks ────────────────────────────────────────────────────────────────────────────

const CheckpointId = z.int().positive();
/** The job's current attempt: incremented by the operator on every (re)deploy of the TaskManagers. */
const Epoch = z.int().nonnegative();
const TaskIndex = z.int().nonnegative();
/** Milliseconds since the Unix epoch (UTC). */
const EpochMillis = z.int().nonnegative();
const CheckpointKind = z.enum(["checkpoint", "savepoint"]);

// Kubernetes names (DNS-1123 subdomain); they become object key segments, so no "/" or spaces.
const kubernetesName = z
  .string()
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, "expected a Kubernetes name");

export const JobRef = z.object({ namespace: kubernetesName, name: kubernetesName });
export type JobRef = z.infer<typeof JobRef>;

const KeyGroupRangeSchema = z
  .object({ start: z.int().nonnegative(), end: z.int().nonnegative() })
  .refine((range) => range.start <= range.end, { message: "must not be below start", path: ["end"] });

const Bucket = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "expected an S3 bucket name");
// S3 limits keys to 1024 bytes; a leading "/" would create an empty first path segment.
const ObjectKey = z
  .string()
  .min(1)
  .max(1024)
  .refine((key) => !key.startsWith("/"), "must not start with /");
/** A "directory" of keys: every key under it starts with it. */
const KeyPrefix = ObjectKey.refine((prefix) => prefix.endsWith("/"), "must end with /");
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits (sha256)");
/** A duration in whole milliseconds: every time on the wire is an integer (docs/protocol.md, "Terms"). */
const DurationMs = z.int().nonnegative();
const Reason = z.string().min(1).max(4096);

/** Source partition id → next offset to read after restoring this checkpoint. */
const SourceOffsets = z.record(z.string().min(1), z.int().nonnegative());

// ── coordinator → TaskManager ──────────────────────────────────────────────────────────────────

/** POST /v1/checkpoints/trigger */
export const TriggerCheckpointRequest = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  taskIndex: TaskIndex,
  kind: CheckpointKind,
  job: JobRef,
  storage: z.object({
    bucket: Bucket,
    /** Every part this task writes for this checkpoint must have a key starting with this prefix. */
    keyPrefix: KeyPrefix,
  }),
  /** After this instant the coordinator treats the checkpoint as expired; the task may give up. */
  deadline: EpochMillis,
});
export type TriggerCheckpointRequest = z.infer<typeof TriggerCheckpointRequest>;

/** 202 response to a trigger: the task has taken (or is taking) its snapshot. */
export const TriggerCheckpointAccepted = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  taskIndex: TaskIndex,
});
export type TriggerCheckpointAccepted = z.infer<typeof TriggerCheckpointAccepted>;

/** Path parameters of /v1/checkpoints/{id}/…; `id` must equal the body's checkpointId where there is one. */
export const CheckpointPathParams = z.object({
  id: z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, "expected a checkpoint id")
    .transform(Number)
    .pipe(CheckpointId),
});
export type CheckpointPathParams = z.infer<typeof CheckpointPathParams>;

/** Query of GET /v1/checkpoints/{id}: the caller's epoch and how long to hold an unfinished answer. */
export const CheckpointResultQuery = z.object({
  epoch: z
    .string()
    .regex(/^[0-9]{1,15}$/, "expected an epoch")
    .transform(Number),
  waitMs: z
    .string()
    .regex(/^[0-9]{1,5}$/, "expected milliseconds")
    .transform(Number)
    .pipe(z.int().max(MAX_RESULT_WAIT_MS))
    .default(0),
});
export type CheckpointResultQuery = z.infer<typeof CheckpointResultQuery>;

/** POST /v1/checkpoints/{id}/complete: the manifest is committed; two-phase-commit sinks commit. */
export const NotifyCompleteRequest = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  manifestKey: ObjectKey,
});
export type NotifyCompleteRequest = z.infer<typeof NotifyCompleteRequest>;

/** POST /v1/checkpoints/{id}/abort: the checkpoint will never complete; stop uploading. */
export const AbortCheckpointRequest = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  reason: Reason,
});
export type AbortCheckpointRequest = z.infer<typeof AbortCheckpointRequest>;

// ── TaskManager → coordinator (bodies of GET /v1/checkpoints/{id}) ─────────────────────────────

/** Names a keyed stage of the job; a part without one belongs to the stage `default`. */
export const StageId = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "expected a stage id (lowercase letters, digits, -)");

/** Where a v2 part's index line is (docs/protocol.md, "State parts"): the last bytes of the part. */
const PartIndexLocation = z.object({
  offset: z.int().positive(),
  length: z.int().positive(),
  sha256: Sha256Hex,
});

const CheckpointPartFields = z.object({
  key: ObjectKey,
  sizeBytes: z.int().nonnegative(),
  sha256: Sha256Hex,
  keyGroupRange: KeyGroupRangeSchema,
  /** Optional within v1: absent means `default`, as in parts written before stages existed. */
  stageId: StageId.optional(),
  /** Optional within v1: absent in v1 parts, which are read whole. */
  index: PartIndexLocation.optional(),
});

function indexEndsThePart(part: z.infer<typeof CheckpointPartFields>, ctx: z.RefinementCtx): void {
  if (part.index !== undefined && part.index.offset + part.index.length !== part.sizeBytes) {
    ctx.addIssue({
      code: "custom",
      path: ["index"],
      message: `must end the part: offset + length must equal sizeBytes (${part.sizeBytes})`,
    });
  }
}

/** One object a task wrote for a checkpoint: the state of one stage's key groups in `keyGroupRange`. */
export const CheckpointPart = CheckpointPartFields.superRefine(indexEndsThePart);
export type CheckpointPart = z.infer<typeof CheckpointPart>;

/** The stage of jobs with one keyed stage (every job today); parts without a stageId belong to it. */
export const DEFAULT_STAGE_ID = "default";

/** The stage of partition-scoped state: keys `[partitionId, key]`, in the partition's key group. */
export const PARTITION_STATE_STAGE_ID = "source-partition";

/** The stage a part belongs to. */
export function stageOfPart(part: { stageId?: string | undefined }): string {
  return part.stageId ?? DEFAULT_STAGE_ID;
}

export const CheckpointAck = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  taskIndex: TaskIndex,
  parts: z.array(CheckpointPart),
  sourceOffsets: SourceOffsets,
  /**
   * Optional: per source partition whose end the task knows (Kafka's last stable offset), how far
   * the cut's offset is behind it. Reported, never used to restore.
   */
  sourceLag: SourceOffsets.optional(),
  /** Time processing was stopped to take the consistent cut. */
  syncDurationMs: DurationMs,
  /** Time spent uploading after processing resumed. */
  asyncDurationMs: DurationMs,
  /**
   * Optional, dataflows only: the longest time one of the task's stages held input channels back
   * waiting for the barrier on the others (docs/protocol.md, "Barriers").
   */
  alignmentDurationMs: DurationMs.optional(),
  /**
   * Optional, dataflows only: per stage (`source` and each keyed stage's id), the share of the time
   * since the task's previous cut it waited for credit to send downstream: 0 none, 1 all the time.
   */
  backpressure: z.record(z.string().min(1).max(63), z.number().min(0).max(1)).optional(),
});
export type CheckpointAck = z.infer<typeof CheckpointAck>;

export const CheckpointDecline = z.object({
  checkpointId: CheckpointId,
  epoch: Epoch,
  taskIndex: TaskIndex,
  reason: Reason,
});
export type CheckpointDecline = z.infer<typeof CheckpointDecline>;

/** A task's answer for one checkpoint: still working, acknowledged, or declined. */
export const CheckpointResult = z.discriminatedUnion("state", [
  z.object({
    state: z.literal("in_progress"),
    checkpointId: CheckpointId,
    epoch: Epoch,
    taskIndex: TaskIndex,
  }),
  z.object({ state: z.literal("acknowledged"), ack: CheckpointAck }),
  z.object({ state: z.literal("declined"), decline: CheckpointDecline }),
]);
export type CheckpointResult = z.infer<typeof CheckpointResult>;

/**
 * How the coordinator reads a task's answer: as CheckpointResult, but the fractional durations sent
 * by TaskManagers that predate the integer rule are rounded (fractionalDurationsRounded) instead of
 * failing every checkpoint: a job's TaskManager image is its own and outlives operator upgrades.
 */
export const ReceivedCheckpointResult = z.preprocess(
  (result) =>
    isRecord(result) && result.state === "acknowledged"
      ? { ...result, ack: fractionalDurationsRounded(result.ack) }
      : result,
  CheckpointResult,
);

/**
 * PUT /v1/peers: the TaskManagers of the epoch, so a dataflow's tasks can open the exchange
 * (docs/protocol.md, "The exchange"). One entry per task index 0…parallelism-1.
 */
export const PeersRequest = z.object({
  epoch: Epoch,
  peers: z
    .array(z.object({ taskIndex: TaskIndex, url: z.url({ protocol: /^http$/ }) }))
    .min(1)
    .max(MAX_PARALLELISM_UPPER_BOUND),
});
export type PeersRequest = z.infer<typeof PeersRequest>;

/** Per stage of a dataflow, in `/v1/status`. */
const DataflowStageStatus = z.object({
  stageId: z.string(),
  recordsProcessed: z.int().nonnegative(),
  /** Share of the time since the task's latest cut the stage waited for credit. */
  backpressure: z.number().min(0).max(1),
  /** Buffers waiting in the stage's input channels. */
  queuedBuffers: z.int().nonnegative(),
  lastAlignmentMs: DurationMs.optional(),
});

/** GET /v1/status */
export const TaskManagerStatus = z.object({
  protocolVersion: z.literal(PROTOCOL_VERSION),
  job: JobRef,
  epoch: Epoch,
  taskIndex: TaskIndex,
  /** Restore finished and the processing loop runs: the task can take checkpoints. */
  ready: z.boolean(),
  lastCompletedCheckpointId: CheckpointId.nullable(),
  /**
   * The newest checkpoint this task was triggered for (or restored from), null if none: a coordinator
   * that resumes after a crash starts its ids above it, so an id a task has already seen is never reused.
   */
  highestTriggeredCheckpointId: CheckpointId.nullable(),
  restoredFromCheckpointId: CheckpointId.nullable(),
  recordsProcessed: z.int().nonnegative(),
  /** Optional: the task's lag per source partition now, as in an ack's `sourceLag`. */
  sourceLag: SourceOffsets.optional(),
  /** Dataflows only: whether the peers are known, why processing halted if it did, each stage. */
  dataflow: z
    .object({
      peersKnown: z.boolean(),
      halted: z.string().optional(),
      stages: z.array(DataflowStageStatus),
    })
    .optional(),
});
export type TaskManagerStatus = z.infer<typeof TaskManagerStatus>;

/** Body of every 4xx/5xx response. */
export const ErrorResponse = z.object({ error: z.string() });
export type ErrorResponse = z.infer<typeof ErrorResponse>;

// ── start-up configuration and manifest ────────────────────────────────────────────────────────

const MaxParallelism = z.int().min(1).max(MAX_PARALLELISM_UPPER_BOUND);

/** What a TaskManager process is told at start (JSON in STREAMJOB_TASKMANAGER_CONFIG). */
export const TaskManagerConfig = z
  .object({
    protocolVersion: z.literal(PROTOCOL_VERSION),
    job: JobRef,
    /** Which job code to run ("sequence", "wordcount", or a module) and its arguments. */
    program: z.object({ name: z.string().min(1), args: z.array(z.string()).default([]) }),
    epoch: Epoch,
    parallelism: z.int().positive(),
    maxParallelism: MaxParallelism,
    taskIndex: TaskIndex,
    /** Must equal keyGroupRangeForTask(maxParallelism, parallelism, taskIndex); stated so it is visible. */
    keyGroupRange: KeyGroupRangeSchema,
    port: z.int().min(1).max(65535).default(8080),
    storage: z.object({
      endpoint: z.url({ protocol: /^https?$/ }),
      region: z.string().min(1).default("us-east-1"),
    }),
    /** Absent on a fresh start; otherwise the completed checkpoint or savepoint to restore from. */
    restoreFrom: z.object({ checkpointId: CheckpointId, bucket: Bucket, manifestKey: ObjectKey }).optional(),
    /**
     * Where the two-phase-commit sink keeps the job's output: objects under `<keyPrefix>output/`
     * (docs/protocol.md, "Sink output"). Optional within v1: when absent, the bucket and job directory
     * of the triggers' `storage.keyPrefix` and of `restoreFrom.manifestKey` are used, as before.
     */
    output: z.object({ bucket: Bucket, keyPrefix: KeyPrefix }).optional(),
  })
  .superRefine((config, ctx) => {
    if (config.parallelism > config.maxParallelism) {
      ctx.addIssue({ code: "custom", path: ["parallelism"], message: "must not exceed maxParallelism" });
      return;
    }
    if (config.taskIndex >= config.parallelism) {
      ctx.addIssue({ code: "custom", path: ["taskIndex"], message: "must be below parallelism" });
      return;
    }
    const owned = keyGroupRangeForTask(config.maxParallelism, config.parallelism, config.taskIndex);
    if (owned.start !== config.keyGroupRange.start || owned.end !== config.keyGroupRange.end) {
      ctx.addIssue({
        code: "custom",
        path: ["keyGroupRange"],
        message: `expected {start: ${owned.start}, end: ${owned.end}} for task ${config.taskIndex} of ${config.parallelism}`,
      });
    }
  });
export type TaskManagerConfig = z.infer<typeof TaskManagerConfig>;

export const MANIFEST_VERSION = 1;

/** `_metadata`: written once, in one PUT, after every task acknowledged. Its existence is the commit. */
export const CheckpointManifest = z
  .object({
    manifestVersion: z.literal(MANIFEST_VERSION),
    checkpointId: CheckpointId,
    kind: CheckpointKind,
    job: JobRef,
    epoch: Epoch,
    parallelism: z.int().positive(),
    maxParallelism: MaxParallelism,
    triggeredAt: EpochMillis,
    /** When the last task acknowledged (the manifest is written right after). */
    completedAt: EpochMillis,
    tasks: z.array(
      z.object({
        taskIndex: TaskIndex,
        keyGroupRange: KeyGroupRangeSchema,
        syncDurationMs: DurationMs,
        asyncDurationMs: DurationMs,
      }),
    ),
    parts: z.array(CheckpointPartFields.extend({ taskIndex: TaskIndex }).superRefine(indexEndsThePart)),
    /** Union of every task's offsets: each source partition is read by exactly one task. */
    sourceOffsets: SourceOffsets,
  })
  .superRefine((manifest, ctx) => {
    if (manifest.parallelism > manifest.maxParallelism) {
      ctx.addIssue({ code: "custom", path: ["parallelism"], message: "must not exceed maxParallelism" });
      return;
    }
    if (manifest.completedAt < manifest.triggeredAt) {
      ctx.addIssue({ code: "custom", path: ["completedAt"], message: "must not be before triggeredAt" });
    }
    const taskRanges = new Map<number, KeyGroupRange>();
    manifest.tasks.forEach((task, i) => {
      if (task.taskIndex >= manifest.parallelism || taskRanges.has(task.taskIndex)) {
        ctx.addIssue({
          code: "custom",
          path: ["tasks", i, "taskIndex"],
          message: "must be a distinct task index below parallelism",
        });
        return;
      }
      const owned = keyGroupRangeForTask(manifest.maxParallelism, manifest.parallelism, task.taskIndex);
      if (owned.start !== task.keyGroupRange.start || owned.end !== task.keyGroupRange.end) {
        ctx.addIssue({
          code: "custom",
          path: ["tasks", i, "keyGroupRange"],
          message: `expected {start: ${owned.start}, end: ${owned.end}}`,
        });
      }
      taskRanges.set(task.taskIndex, owned);
    });
    if (taskRanges.size !== manifest.parallelism) {
      ctx.addIssue({
        code: "custom",
        path: ["tasks"],
        message: `expected one entry per task (${manifest.parallelism})`,
      });
    }
    manifest.parts.forEach((part, i) => {
      const owned = taskRanges.get(part.taskIndex);
      if (owned === undefined || !isWithinRange(part.keyGroupRange, owned)) {
        ctx.addIssue({
          code: "custom",
          path: ["parts", i, "keyGroupRange"],
          message: `not within the key groups of task ${part.taskIndex}`,
        });
      }
      const overlapping = manifest.parts.findIndex(
        (other, j) =>
          j < i &&
          stageOfPart(other) === stageOfPart(part) &&
          rangesOverlap(other.keyGroupRange, part.keyGroupRange),
      );
      if (overlapping !== -1) {
        ctx.addIssue({
          code: "custom",
          path: ["parts", i, "keyGroupRange"],
          message: `overlaps parts[${overlapping}]: each key group of a stage is stored in at most one part`,
        });
      }
    });
  });
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

/**
 * How a stored manifest is read (restore, retention): as CheckpointManifest, but the fractional task
 * durations that v1 manifests written before the integer rule hold are rounded. They are only
 * informational, and a checkpoint must not become unrestorable over them.
 */
export const StoredCheckpointManifest = z.preprocess(
  (manifest) =>
    isRecord(manifest) && Array.isArray(manifest.tasks)
      ? { ...manifest, tasks: manifest.tasks.map(fractionalDurationsRounded) }
      : manifest,
  CheckpointManifest,
);

/**
 * An ack or manifest task entry with a non-negative fractional `syncDurationMs`/`asyncDurationMs`
 * rounded to the nearest millisecond, as v1 peers must accept them; anything else is left for the
 * schema to judge.
 */
function fractionalDurationsRounded(entry: unknown): unknown {
  if (!isRecord(entry)) return entry;
  const rounded = { ...entry };
  for (const field of ["syncDurationMs", "asyncDurationMs"]) {
    const value = entry[field];
    if (typeof value === "number" && value >= 0 && Number.isFinite(value)) rounded[field] = Math.round(value);
  }
  return rounded;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ── errors ─────────────────────────────────────────────────────────────────────────────────────

/**
 * One line naming each offending field, for 400 responses and start-up errors, e.g.
 * `checkpointId: expected number, received string; parts[0].sha256: expected 64 lowercase hex digits (sha256)`.
 */
export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${formatPath(issue.path)}: ${issue.message.replace(/^Invalid input: /, "")}`)
    .join("; ");
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(body)";
  return path
    .map((segment, i) =>
      typeof segment === "number" ? `[${segment}]` : `${i === 0 ? "" : "."}${String(segment)}`,
    )
    .join("");
}
