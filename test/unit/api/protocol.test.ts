import type { z } from "zod";
import {
  AbortCheckpointRequest,
  CheckpointAck,
  CheckpointManifest,
  CheckpointPathParams,
  CheckpointResult,
  CheckpointResultQuery,
  formatZodError,
  NotifyCompleteRequest,
  ReceivedCheckpointResult,
  StoredCheckpointManifest,
  TaskManagerConfig,
  TaskManagerStatus,
  TriggerCheckpointRequest,
} from "../../../src/api/protocol.js";
import { sha256 } from "../support/checkpoints.js";

const trigger = {
  checkpointId: 7,
  epoch: 3,
  taskIndex: 1,
  kind: "checkpoint",
  job: { namespace: "default", name: "orders" },
  storage: { bucket: "streamjob", keyPrefix: "checkpoints/default/orders/chk-7/task-1/" },
  deadline: 1_767_225_660_000,
};

const ack = {
  checkpointId: 7,
  epoch: 3,
  taskIndex: 1,
  parts: [
    {
      key: "checkpoints/default/orders/chk-7/task-1/kg-64-127",
      sizeBytes: 1_048_576,
      sha256: sha256("part"),
      keyGroupRange: { start: 64, end: 127 },
    },
  ],
  sourceOffsets: { "orders-1": 52_011 },
  syncDurationMs: 3,
  asyncDurationMs: 182,
};

const config = {
  protocolVersion: "v1",
  job: { namespace: "default", name: "orders" },
  program: { name: "sequence", args: ["--keys", "1000"] },
  epoch: 3,
  parallelism: 3,
  maxParallelism: 128,
  taskIndex: 1,
  keyGroupRange: { start: 43, end: 85 },
  storage: { endpoint: "http://127.0.0.1:9000" },
};

const manifest = {
  manifestVersion: 1,
  checkpointId: 7,
  kind: "checkpoint",
  job: { namespace: "default", name: "orders" },
  epoch: 3,
  parallelism: 2,
  maxParallelism: 8,
  triggeredAt: 1000,
  completedAt: 1400,
  tasks: [
    { taskIndex: 0, keyGroupRange: { start: 0, end: 3 }, syncDurationMs: 1, asyncDurationMs: 5 },
    { taskIndex: 1, keyGroupRange: { start: 4, end: 7 }, syncDurationMs: 1, asyncDurationMs: 5 },
  ],
  parts: [
    {
      key: "a/task-0/kg-0-3",
      sizeBytes: 1,
      sha256: sha256("0"),
      keyGroupRange: { start: 0, end: 3 },
      taskIndex: 0,
    },
    {
      key: "a/task-1/kg-4-5",
      sizeBytes: 1,
      sha256: sha256("1"),
      keyGroupRange: { start: 4, end: 5 },
      taskIndex: 1,
    },
  ],
  sourceOffsets: { p0: 1, p1: 2 },
};

/** A deep copy of `base` with the value at `path` replaced (or removed, for undefined). */
function withField(base: object, path: Array<string | number>, value: unknown): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  let target = copy;
  for (const segment of path.slice(0, -1)) target = target[segment] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  if (value === undefined) delete target[last];
  else target[last] = value;
  return copy;
}

function errorOf(schema: z.ZodType, body: unknown): string {
  const result = schema.safeParse(body);
  if (result.success) throw new Error(`expected ${JSON.stringify(body)} to be rejected`);
  return formatZodError(result.error);
}

describe("protocol schemas", () => {
  it.each<[string, z.ZodType, unknown]>([
    ["trigger", TriggerCheckpointRequest, trigger],
    ["savepoint trigger", TriggerCheckpointRequest, { ...trigger, kind: "savepoint" }],
    ["ack result", CheckpointResult, { state: "acknowledged", ack }],
    ["ack without parts", CheckpointAck, { ...ack, parts: [], sourceOffsets: {} }],
    ["decline result", CheckpointResult, { state: "declined", decline: { ...trigger, reason: "disk full" } }],
    [
      "in-progress result",
      CheckpointResult,
      { state: "in_progress", checkpointId: 7, epoch: 3, taskIndex: 1 },
    ],
    ["complete", NotifyCompleteRequest, { checkpointId: 7, epoch: 0, manifestKey: "x/chk-7/_metadata" }],
    ["abort", AbortCheckpointRequest, { checkpointId: 7, epoch: 3, reason: "expired" }],
    [
      "status",
      TaskManagerStatus,
      {
        protocolVersion: "v1",
        job: { namespace: "default", name: "orders" },
        epoch: 3,
        taskIndex: 0,
        ready: false,
        lastCompletedCheckpointId: null,
        highestTriggeredCheckpointId: null,
        restoredFromCheckpointId: null,
        recordsProcessed: 0,
      },
    ],
    ["config", TaskManagerConfig, config],
    [
      "config with restoreFrom",
      TaskManagerConfig,
      { ...config, restoreFrom: { checkpointId: 4, bucket: "streamjob", manifestKey: "c/chk-4/_metadata" } },
    ],
    ["manifest", CheckpointManifest, manifest],
  ])("accept a valid %s", (_, schema, body) => {
    expect(schema.safeParse(body).success).toBe(true);
  });

  it.each<[string, z.ZodType, unknown, string]>([
    [
      "a string id",
      TriggerCheckpointRequest,
      withField(trigger, ["checkpointId"], "7"),
      "checkpointId: expected number, received string",
    ],
    [
      "a missing id",
      TriggerCheckpointRequest,
      withField(trigger, ["checkpointId"], undefined),
      "checkpointId: expected number, received undefined",
    ],
    [
      "id 0",
      TriggerCheckpointRequest,
      withField(trigger, ["checkpointId"], 0),
      "checkpointId: Too small: expected number to be >0",
    ],
    [
      "a fractional epoch",
      TriggerCheckpointRequest,
      withField(trigger, ["epoch"], 1.5),
      "epoch: expected int, received number",
    ],
    [
      "an unknown kind",
      TriggerCheckpointRequest,
      withField(trigger, ["kind"], "snapshot"),
      'kind: Invalid option: expected one of "checkpoint"|"savepoint"',
    ],
    [
      "a job name with a slash",
      TriggerCheckpointRequest,
      withField(trigger, ["job", "name"], "a/b"),
      "job.name: expected a Kubernetes name",
    ],
    [
      "a prefix without trailing slash",
      TriggerCheckpointRequest,
      withField(trigger, ["storage", "keyPrefix"], "chk-7"),
      "storage.keyPrefix: must end with /",
    ],
    [
      "an absolute prefix",
      TriggerCheckpointRequest,
      withField(trigger, ["storage", "keyPrefix"], "/chk-7/"),
      "storage.keyPrefix: must not start with /",
    ],
    [
      "a bad bucket",
      TriggerCheckpointRequest,
      withField(trigger, ["storage", "bucket"], "My_Bucket"),
      "storage.bucket: expected an S3 bucket name",
    ],
    ["a null body", TriggerCheckpointRequest, null, "(body): expected object, received null"],
    [
      "an uppercase sha256",
      CheckpointAck,
      withField(ack, ["parts", 0, "sha256"], sha256("x").toUpperCase()),
      "parts[0].sha256: expected 64 lowercase hex digits (sha256)",
    ],
    [
      "a reversed key group range",
      CheckpointAck,
      withField(ack, ["parts", 0, "keyGroupRange"], { start: 9, end: 3 }),
      "parts[0].keyGroupRange.end: must not be below start",
    ],
    [
      "a negative size",
      CheckpointAck,
      withField(ack, ["parts", 0, "sizeBytes"], -1),
      "parts[0].sizeBytes: Too small: expected number to be >=0",
    ],
    [
      "a fractional duration",
      CheckpointAck,
      withField(ack, ["syncDurationMs"], 0.10183200000028592),
      "syncDurationMs: expected int, received number",
    ],
    [
      "a manifest with a fractional duration",
      CheckpointManifest,
      withField(manifest, ["tasks", 0, "asyncDurationMs"], 5.5),
      "tasks[0].asyncDurationMs: expected int, received number",
    ],
    [
      // Not rounded to -0, which would pass as 0.
      "a received negative fractional duration",
      ReceivedCheckpointResult,
      { state: "acknowledged", ack: withField(ack, ["asyncDurationMs"], -0.5) },
      "ack.asyncDurationMs: expected int, received number",
    ],
    [
      "a negative offset",
      CheckpointAck,
      withField(ack, ["sourceOffsets", "orders-1"], -5),
      "sourceOffsets.orders-1: Too small: expected number to be >=0",
    ],
    ["an unknown result state", CheckpointResult, { state: "done" }, "state: Invalid discriminator value"],
    [
      "an empty decline reason",
      CheckpointResult,
      { state: "declined", decline: { ...trigger, reason: "" } },
      "decline.reason: Too small",
    ],
    [
      "a config of another version",
      TaskManagerConfig,
      withField(config, ["protocolVersion"], "v2"),
      'protocolVersion: expected "v1"',
    ],
    [
      "a config whose range is not the task's",
      TaskManagerConfig,
      withField(config, ["keyGroupRange"], { start: 42, end: 85 }),
      "keyGroupRange: expected {start: 43, end: 85} for task 1 of 3",
    ],
    [
      "a config with taskIndex = parallelism",
      TaskManagerConfig,
      withField(config, ["taskIndex"], 3),
      "taskIndex: must be below parallelism",
    ],
    [
      "a config with parallelism > maxParallelism",
      TaskManagerConfig,
      withField(config, ["parallelism"], 129),
      "parallelism: must not exceed maxParallelism",
    ],
    [
      "a config with a bad endpoint",
      TaskManagerConfig,
      withField(config, ["storage", "endpoint"], "minio:9000"),
      "storage.endpoint: Invalid URL",
    ],
    [
      "a manifest with overlapping parts",
      CheckpointManifest,
      withField(manifest, ["parts", 1, "keyGroupRange"], { start: 3, end: 5 }),
      "parts[1].keyGroupRange: not within the key groups of task 1; parts[1].keyGroupRange: overlaps parts[0]",
    ],
    [
      "a manifest part outside its task",
      CheckpointManifest,
      withField(manifest, ["parts", 1, "taskIndex"], 0),
      "parts[1].keyGroupRange: not within the key groups of task 0",
    ],
    [
      "a manifest missing a task",
      CheckpointManifest,
      withField(manifest, ["tasks"], manifest.tasks.slice(0, 1)),
      "tasks: expected one entry per task (2)",
    ],
    [
      "a manifest with a wrong task range",
      CheckpointManifest,
      withField(manifest, ["tasks", 1, "keyGroupRange"], { start: 4, end: 6 }),
      "tasks[1].keyGroupRange: expected {start: 4, end: 7}",
    ],
    [
      "a manifest completed before triggered",
      CheckpointManifest,
      withField(manifest, ["completedAt"], 999),
      "completedAt: must not be before triggeredAt",
    ],
    [
      "a manifest of an unknown version",
      CheckpointManifest,
      withField(manifest, ["manifestVersion"], 2),
      "manifestVersion: expected 1",
    ],
    ["a path id of 0", CheckpointPathParams, { id: "0" }, "id: expected a checkpoint id"],
    [
      "a query without epoch",
      CheckpointResultQuery,
      { waitMs: "100" },
      "epoch: expected string, received undefined",
    ],
    [
      "a query waiting too long",
      CheckpointResultQuery,
      { epoch: "3", waitMs: "30001" },
      "waitMs: Too big: expected number to be <=30000",
    ],
  ])("reject %s, naming the field", (_, schema, body, message) => {
    expect(errorOf(schema, body)).toContain(message);
  });

  it("names every offending field in one line", () => {
    const message = errorOf(TriggerCheckpointRequest, { ...trigger, checkpointId: "x", deadline: -1 });
    expect(message).toBe(
      "checkpointId: expected number, received string; deadline: Too small: expected number to be >=0",
    );
    expect(message).not.toContain("\n");
  });

  it("ignores unknown fields, so v1 can gain optional ones", () => {
    expect(TriggerCheckpointRequest.parse({ ...trigger, traceId: "abc" })).toEqual(trigger);
  });

  it("fills the documented defaults of the start-up configuration", () => {
    const { program, ...withoutArgs } = config;
    const parsed = TaskManagerConfig.parse({ ...withoutArgs, program: { name: program.name } });
    expect(parsed.port).toBe(8080);
    expect(parsed.storage.region).toBe("us-east-1");
    expect(parsed.program.args).toEqual([]);
    expect(parsed.restoreFrom).toBeUndefined();
  });

  it("rounds the fractional durations v1 peers sent before the integer rule, where they are read", () => {
    const older = { ...ack, syncDurationMs: 0.10183200000028592, asyncDurationMs: 182.5 };
    expect(ReceivedCheckpointResult.parse({ state: "acknowledged", ack: older })).toEqual({
      state: "acknowledged",
      ack: { ...ack, syncDurationMs: 0, asyncDurationMs: 183 },
    });
    const stored = withField(manifest, ["tasks", 1, "syncDurationMs"], 1.49);
    expect(StoredCheckpointManifest.parse(stored).tasks[1]?.syncDurationMs).toBe(1);
    // Every other time stays an integer, also when read.
    expect(StoredCheckpointManifest.safeParse(withField(manifest, ["completedAt"], 1400.5)).success).toBe(
      false,
    );
  });

  it("accepts an explicit sink output location in the start-up configuration", () => {
    const output = { bucket: "streamjob", keyPrefix: "checkpoints/default/orders/" };
    expect(TaskManagerConfig.parse({ ...config, output }).output).toEqual(output);
    expect(errorOf(TaskManagerConfig, { ...config, output: { ...output, keyPrefix: "orders" } })).toBe(
      "output.keyPrefix: must end with /",
    );
  });

  it("turns path and query strings into numbers", () => {
    expect(CheckpointPathParams.parse({ id: "42" })).toEqual({ id: 42 });
    expect(CheckpointResultQuery.parse({ epoch: "3" })).toEqual({ epoch: 3, waitMs: 0 });
    expect(CheckpointResultQuery.parse({ epoch: "3", waitMs: "10000" })).toEqual({
      epoch: 3,
      waitMs: 10_000,
    });
  });
});
