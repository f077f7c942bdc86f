// The StreamJob resource (streamjob.dev/v1alpha1): zod schemas for its spec and status, the same
// contract as crds/streamjob.yaml. The API server enforces the CRD at `kubectl apply`; the operator
// parses with these schemas, so a rule lives in both places (CEL in the CRD, a refinement here) and
// test/unit/api/streamjob.test.ts checks that the two schemas agree field by field.
//
// Objects use zod's default "strip" mode: the API server already refuses unknown fields, and an
// older operator must still read a spec written against a newer CRD that gained an optional field.

import type { V1ObjectMeta } from "@kubernetes/client-node";
import { z } from "zod";
import { parseDuration } from "./duration.js";
import { MAX_PARALLELISM_UPPER_BOUND } from "./key-groups.js";
import { formatZodError } from "./protocol.js";

export const GROUP = "streamjob.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}` as const;
export const KIND = "StreamJob";
export const PLURAL = "streamjobs";

// ── building blocks ────────────────────────────────────────────────────────────────────────────

/** Go-style duration with whole numbers, as parseDuration reads it; the CRD carries the same pattern. */
export const DURATION_PATTERN = /^([0-9]+(ms|s|m|h))+$/;
// The API server checks durations with CEL's duration(), which holds int64 nanoseconds.
const MAX_DURATION_MS = 9_223_372_036_854;

function duration(options: { positive: boolean }) {
  return z
    .string()
    .max(32)
    .regex(DURATION_PATTERN, {
      message: 'expected a duration such as "500ms", "10s", "2m" or "1h30m"',
      abort: true,
    })
    .superRefine((text, ctx) => {
      let ms: number;
      try {
        ms = parseDuration(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
        return;
      }
      if (ms > MAX_DURATION_MS) ctx.addIssue({ code: "custom", message: "is too long" });
      if (options.positive && ms === 0) ctx.addIssue({ code: "custom", message: "must be longer than 0s" });
    });
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const kubernetesName = z.string().max(253).regex(DNS_SUBDOMAIN, "expected a Kubernetes name");

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// Segments of S3's "safe" characters joined by single slashes; empty means the bucket's root.
const KEY_PREFIX = /^([A-Za-z0-9!_.*'()-]+(\/[A-Za-z0-9!_.*'()-]+)*)?$/;
const MANIFEST_KEY = /^([^/]+\/)+_metadata$/;
// resource.Quantity's serialisation, as kubebuilder emits it for corev1.ResourceList.
const QUANTITY =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

const Quantity = z.union([z.int(), z.string().regex(QUANTITY, "expected a quantity such as 500m or 1Gi")]);
const ResourceList = z.record(z.string(), Quantity);
const Timestamp = z.iso.datetime({ offset: true });

/** Keys of a list the CRD declares `x-kubernetes-list-type: map`: the API server refuses duplicates. */
function uniqueKeys<T>(key: (item: T) => string, what: string) {
  return (items: T[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(key(item))) ctx.addIssue({ code: "custom", path: [i], message: `duplicate ${what}` });
      seen.add(key(item));
    });
  };
}

// ── spec ───────────────────────────────────────────────────────────────────────────────────────

const Parallelism = z.int32().min(1).max(MAX_PARALLELISM_UPPER_BOUND);

/** Variables the operator sets on every TaskManager; a template may not override them. */
const RESERVED_ENV = /^(STREAMJOB_.*|POD_IP)$/;

export const EnvVar = z
  .object({
    name: z
      .string()
      .min(1)
      .refine((name) => !RESERVED_ENV.test(name), "is reserved for the operator (STREAMJOB_* and POD_IP)"),
    value: z.string().optional(),
    /** corev1.EnvVarSource, passed to the pod as written; the pod's own validation checks it. */
    valueFrom: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((env) => env.value === undefined || env.valueFrom === undefined, {
    message: "set value or valueFrom, not both",
  });
export type EnvVar = z.infer<typeof EnvVar>;

export const Toleration = z.object({
  key: z.string().optional(),
  operator: z.string().optional(),
  value: z.string().optional(),
  effect: z.string().optional(),
  tolerationSeconds: z.int().optional(),
});
export type Toleration = z.infer<typeof Toleration>;

/** Overrides for every TaskManager pod of the job. */
export const PodTemplate = z.object({
  resources: z.object({ limits: ResourceList.optional(), requests: ResourceList.optional() }).optional(),
  env: z
    .array(EnvVar)
    .max(256)
    .superRefine(uniqueKeys((env) => env.name, "name"))
    .optional(),
  nodeSelector: z.record(z.string(), z.string()).optional(),
  tolerations: z.array(Toleration).max(64).optional(),
  serviceAccountName: kubernetesName.optional(),
});
export type PodTemplate = z.infer<typeof PodTemplate>;

export const CheckpointStorage = z.object({
  secretName: kubernetesName.default("streamjob-storage"),
  bucket: z.string().regex(BUCKET, "expected an S3 bucket name"),
  prefix: z
    .string()
    .max(512)
    .regex(KEY_PREFIX, "expected key segments separated by single /")
    .default("checkpoints"),
});
export type CheckpointStorage = z.infer<typeof CheckpointStorage>;

/** The Kafka cluster a job's Kafka sources and sinks use. */
export const KafkaConnectionRef = z.object({
  secretName: kubernetesName.default("streamjob-kafka"),
});
export type KafkaConnectionRef = z.infer<typeof KafkaConnectionRef>;

export const CheckpointPolicy = z.object({
  interval: duration({ positive: true }).default("10s"),
  timeout: duration({ positive: true }).default("1m"),
  minPause: duration({ positive: false }).default("0s"),
  maxConcurrent: z.int32().min(1).default(1),
  tolerableFailures: z.int32().min(0).default(3),
  retained: z.int32().min(1).default(3),
  storage: CheckpointStorage,
});
export type CheckpointPolicy = z.infer<typeof CheckpointPolicy>;

export const RestartPolicy = z.object({
  maxRestarts: z.int32().min(0).default(10),
  backoff: z
    .object({
      initial: duration({ positive: true }).default("1s"),
      max: duration({ positive: true }).default("1m"),
    })
    .refine((backoff) => parseDuration(backoff.max) >= parseDuration(backoff.initial), {
      message: "must not be shorter than initial",
      path: ["max"],
    })
    .prefault({}),
});
export type RestartPolicy = z.infer<typeof RestartPolicy>;

/** The checkpoint or savepoint a new job starts from: one of this job's by id, or any by manifest key. */
export const RestoreFrom = z
  .object({
    checkpointId: z.int().min(1).optional(),
    path: z.string().max(1024).regex(MANIFEST_KEY, "expected the key of a _metadata manifest").optional(),
  })
  .refine((from) => (from.checkpointId === undefined) !== (from.path === undefined), {
    message: "set exactly one of checkpointId or path",
  });
export type RestoreFrom = z.infer<typeof RestoreFrom>;

export const StreamJobSpec = z
  .object({
    image: z.string().min(1),
    parallelism: Parallelism.default(1),
    maxParallelism: Parallelism.default(128),
    job: z.object({ name: z.string().min(1).max(253), args: z.array(z.string()).default([]) }),
    checkpoint: CheckpointPolicy,
    restart: RestartPolicy.prefault({}),
    suspend: z.boolean().default(false),
    savepointNonce: z.string().max(253).optional(),
    restoreFrom: RestoreFrom.optional(),
    kafka: KafkaConnectionRef.optional(),
    template: PodTemplate.optional(),
  })
  .refine((spec) => spec.parallelism <= spec.maxParallelism, {
    message: "must not exceed maxParallelism",
    path: ["parallelism"],
  });
export type StreamJobSpec = z.infer<typeof StreamJobSpec>;
/** A spec as a user may write it: fields with defaults are optional. */
export type StreamJobSpecInput = z.input<typeof StreamJobSpec>;

/** Parses a spec, filling in defaults; the error names every offending field by its path. */
export function parseStreamJobSpec(
  spec: unknown,
): { ok: true; spec: StreamJobSpec } | { ok: false; error: string } {
  const result = StreamJobSpec.safeParse(spec);
  return result.success
    ? { ok: true, spec: result.data }
    : { ok: false, error: formatZodError(result.error) };
}

// ── status ─────────────────────────────────────────────────────────────────────────────────────

export const PHASES = ["Pending", "Running", "Restarting", "Suspended", "Failed"] as const;
export const Phase = z.enum(PHASES);
export type Phase = z.infer<typeof Phase>;

export const CompletedCheckpoint = z.object({
  id: z.int().min(1),
  /** Key of the manifest (`_metadata`) in spec.checkpoint.storage.bucket. */
  path: z.string().min(1),
  completedAt: Timestamp,
  durationMs: z.int().min(0),
  sizeBytes: z.int().min(0),
});
export type CompletedCheckpoint = z.infer<typeof CompletedCheckpoint>;

/** metav1.Condition, with its validation. */
export const Condition = z.object({
  type: z
    .string()
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    ),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: Timestamp,
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof Condition>;

export const StreamJobStatus = z.object({
  phase: Phase.optional(),
  observedGeneration: z.int().min(0).optional(),
  parallelism: z.int32().min(0).optional(),
  epoch: z.int().min(0).optional(),
  latestCheckpoint: CompletedCheckpoint.extend({
    /** Records the checkpoint's cut was behind its sources' ends, summed; absent when unknown. */
    sourceLag: z.int().min(0).optional(),
    /** Dataflows: the longest a task held input back waiting for the checkpoint's barriers. */
    alignmentDurationMs: z.int().min(0).optional(),
    /** Dataflows: per stage, the highest share of time a TaskManager's stage waited for credit. */
    backpressure: z.record(z.string(), z.number().min(0).max(1)).optional(),
  }).optional(),
  latestSavepoint: CompletedCheckpoint.extend({ nonce: z.string().optional() }).optional(),
  lastRestore: z.object({ checkpointId: z.int().min(1), path: z.string().min(1), at: Timestamp }).optional(),
  restarts: z.int32().min(0).optional(),
  checkpointCounts: z.object({ completed: z.int().min(0), failed: z.int().min(0) }).optional(),
  conditions: z
    .array(Condition)
    .superRefine(uniqueKeys((condition) => condition.type, "type"))
    .optional(),
  /** JSON of the spec the operator last acted on, so a restarted operator can classify spec changes. */
  lastReconciledSpec: z.string().optional(),
});
export type StreamJobStatus = z.infer<typeof StreamJobStatus>;

/** The whole resource as read from the API server. */
export interface StreamJob {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: V1ObjectMeta;
  spec: StreamJobSpec;
  status?: StreamJobStatus;
}
