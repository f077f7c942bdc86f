import { z } from "zod";
import { formatZodError } from "../../../src/api/protocol.js";
import { parseStreamJobSpec, StreamJobSpec, StreamJobStatus } from "../../../src/api/streamjob.js";
import { crdSchema as readCrdSchema, minimalSpec as minimal } from "../support/doc-streamjobs.js";

type Schema = { [keyword: string]: unknown };

function child(schema: Schema, ...keys: string[]): Schema {
  let node: unknown = schema;
  for (const key of keys) node = (node as Schema)[key];
  if (typeof node !== "object" || node === null) throw new Error(`no ${keys.join(".")}`);
  return node as Schema;
}

const crdSchema = readCrdSchema();
const crdSpec = child(crdSchema, "properties", "spec");
const crdStatus = child(crdSchema, "properties", "status");

// ── the two schemas agree ──────────────────────────────────────────────────────────────────────

// What both schemas can say about a field, in one shape. Descriptions, CEL rules and list types are
// the CRD's alone; zod's refinements (their twins) are covered by the table below and, against the
// real API server, by test/integration/crd.test.ts.
const COMPARED = "type format default enum minimum maximum minLength maxLength maxItems pattern".split(" ");
const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

function shape(schema: Schema, from: "crd" | "zod"): Schema {
  if (schema["x-kubernetes-int-or-string"] === true || isZodIntOrString(schema)) {
    const stringBranch = (schema.anyOf as Schema[] | undefined)?.find((branch) => branch.type === "string");
    return pick({ type: "int-or-string", pattern: schema.pattern ?? stringBranch?.pattern });
  }
  const out = pick(Object.fromEntries(COMPARED.map((key) => [key, schema[key]])));
  if (from === "zod") normaliseZod(out);
  if (Array.isArray(schema.required) && schema.required.length > 0)
    out.required = [...schema.required].sort();
  if (schema.properties !== undefined) {
    const properties = schema.properties as Record<string, Schema>;
    out.properties = Object.fromEntries(
      Object.entries(properties).map(([name, property]) => [name, shape(property, from)]),
    );
  }
  if (schema.items !== undefined) out.items = shape(schema.items as Schema, from);
  const additional = schema.additionalProperties;
  if (schema["x-kubernetes-preserve-unknown-fields"] === true || isEmptySchema(additional)) {
    out.additionalProperties = "anything";
  } else if (typeof additional === "object" && additional !== null) {
    out.additionalProperties = shape(additional as Schema, from);
  }
  return out;
}

/** zod writes its implicit integer bounds as minimum/maximum; the CRD says int32 or int64 instead. */
function normaliseZod(out: Schema): void {
  if (out.type === "integer") {
    const min = out.minimum as number | undefined;
    const max = out.maximum as number | undefined;
    out.format =
      min !== undefined && min >= INT32_MIN && max !== undefined && max <= INT32_MAX ? "int32" : "int64";
    if (min === INT32_MIN || min === Number.MIN_SAFE_INTEGER) delete out.minimum;
    if (max === INT32_MAX || max === Number.MAX_SAFE_INTEGER) delete out.maximum;
  }
  // zod spells out RFC 3339 as a pattern; the API server checks the format itself.
  if (out.format === "date-time") delete out.pattern;
  // RegExp.source escapes "/"; the CRD's RE2 patterns need not.
  if (typeof out.pattern === "string") out.pattern = out.pattern.replaceAll("\\/", "/");
}

function isZodIntOrString(schema: Schema): boolean {
  const types = (schema.anyOf as Schema[] | undefined)?.map((branch) => branch.type).sort();
  return types?.length === 2 && types[0] === "integer" && types[1] === "string";
}

function isEmptySchema(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

function pick(schema: Schema): Schema {
  return Object.fromEntries(Object.entries(schema).filter(([, value]) => value !== undefined));
}

/** Every place the two shapes differ, named by field path. */
function differences(zod: Schema, crd: Schema, at = ""): string[] {
  const found: string[] = [];
  for (const key of new Set([...Object.keys(zod), ...Object.keys(crd)])) {
    const [left, right] = [zod[key], crd[key]];
    const nested = key === "properties" || key === "items" || key === "additionalProperties";
    if (nested && isObject(left) && isObject(right)) {
      if (key === "properties") {
        for (const name of new Set([...Object.keys(left), ...Object.keys(right)])) {
          const [l, r] = [left[name], right[name]];
          if (!isObject(l) || !isObject(r))
            found.push(`${at}.${name}: only in ${isObject(l) ? "zod" : "the CRD"}`);
          else found.push(...differences(l, r, `${at}.${name}`));
        }
      } else {
        found.push(...differences(left, right, `${at}${key === "items" ? "[]" : "{}"}`));
      }
    } else if (JSON.stringify(left) !== JSON.stringify(right)) {
      found.push(
        `${at || "(root)"}: ${key} ${JSON.stringify(left)} in zod, ${JSON.stringify(right)} in the CRD`,
      );
    }
  }
  return found;
}

function isObject(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const zodShape = (schema: z.ZodType) => shape(z.toJSONSchema(schema, { io: "input" }) as Schema, "zod");

describe("the zod schemas and crds/streamjob.yaml", () => {
  it.each([
    ["spec", StreamJobSpec, crdSpec],
    ["status", StreamJobStatus, crdStatus],
  ])(
    "agree on every %s field: type, format, bounds, pattern, default and required-ness",
    (_, schema, crd) => {
      expect(differences(zodShape(schema), shape(crd, "crd"))).toEqual([]);
    },
  );

  it("the comparison notices a changed default, a missing field and a field made optional", () => {
    const altered = structuredClone(crdSpec);
    const checkpoint = child(altered, "properties", "checkpoint");
    child(checkpoint, "properties", "interval").default = "5s";
    delete child(checkpoint, "properties", "storage", "properties").prefix;
    child(checkpoint, "properties", "storage").required = [];
    expect(differences(zodShape(StreamJobSpec), shape(altered, "crd"))).toEqual([
      '.checkpoint.interval: default "10s" in zod, "5s" in the CRD',
      '.checkpoint.storage: required ["bucket"] in zod, undefined in the CRD',
      ".checkpoint.storage.prefix: only in zod",
    ]);
  });

  it("every field of the CRD has a description, so kubectl explain teaches it", () => {
    const undescribed: string[] = [];
    const walk = (schema: Schema, at: string) => {
      if (typeof schema.description !== "string" || schema.description.trim() === "") undescribed.push(at);
      const properties = (schema.properties ?? {}) as Record<string, Schema>;
      for (const [name, property] of Object.entries(properties)) {
        // The API server forbids anything but type in metadata; explain shows ObjectMeta's own text.
        if (name !== "metadata" || at !== "") walk(property, `${at}.${name}`);
      }
      const items = schema.items as Schema | undefined;
      if (items?.type === "object") walk(items, `${at}[]`);
    };
    walk(crdSchema, "");
    expect(undescribed).toEqual([]);
  });
});

// ── parseStreamJobSpec ─────────────────────────────────────────────────────────────────────────

/** `minimal` with a change at `path`: a value, or undefined to remove the field. */
function withField(fieldPath: string, value: unknown): unknown {
  const spec = structuredClone(minimal) as Schema;
  const keys = fieldPath.split(".");
  const last = keys.pop() ?? "";
  let node = spec;
  for (const key of keys) {
    if (!isObject(node[key])) node[key] = {};
    node = node[key] as Schema;
  }
  if (value === undefined) delete node[last];
  else node[last] = value;
  return spec;
}

describe("parseStreamJobSpec", () => {
  it("fills in every default of a minimal spec, as the API server does", () => {
    expect(parseStreamJobSpec(minimal)).toEqual({
      ok: true,
      spec: {
        image: "example/streamjob-taskmanager",
        parallelism: 1,
        maxParallelism: 128,
        job: { name: "sequence", args: [] },
        checkpoint: {
          interval: "10s",
          timeout: "1m",
          minPause: "0s",
          maxConcurrent: 1,
          tolerableFailures: 3,
          retained: 3,
          storage: { secretName: "streamjob-storage", bucket: "streamjob", prefix: "checkpoints" },
        },
        restart: { maxRestarts: 10, backoff: { initial: "1s", max: "1m" } },
        suspend: false,
      },
    });
  });

  it("keeps a full spec as written, and a parsed spec parses to itself (lastReconciledSpec round-trips)", () => {
    const full = {
      image: "example/streamjob-taskmanager:1.2",
      parallelism: 4,
      maxParallelism: 256,
      job: { name: "wordcount", args: ["--window", "1m"] },
      checkpoint: {
        interval: "1h30m",
        timeout: "500ms",
        minPause: "2s",
        maxConcurrent: 2,
        tolerableFailures: 0,
        retained: 1,
        storage: { secretName: "minio.creds", bucket: "jobs.example", prefix: "" },
      },
      restart: { maxRestarts: 0, backoff: { initial: "2s", max: "2s" } },
      suspend: true,
      savepointNonce: "2026-01-01",
      restoreFrom: { path: "checkpoints/default/orders/savepoint-12/_metadata" },
      template: {
        resources: { limits: { cpu: "500m", memory: "1Gi" }, requests: { cpu: 1, "example.com/gpu": "1" } },
        env: [
          { name: "LOG_LEVEL", value: "debug" },
          { name: "MY_POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        ],
        nodeSelector: { "kubernetes.io/os": "linux" },
        tolerations: [{ key: "dedicated", operator: "Equal", value: "stream", effect: "NoSchedule" }],
        serviceAccountName: "streamjob-taskmanager",
      },
    };
    const parsed = parseStreamJobSpec(full);
    expect(parsed).toEqual({ ok: true, spec: full });
    expect(parseStreamJobSpec(JSON.parse(JSON.stringify(full)))).toEqual(parsed);
  });

  it.each([
    ["restoreFrom", { checkpointId: 7 }],
    ["restoreFrom", { path: "default/orders/chk-7/_metadata" }],
    ["checkpoint.minPause", "1m30s500ms"],
    ["parallelism", 128],
    ["template.resources.limits", { memory: "1.5Gi", cpu: "1e3" }],
  ])("accepts %s = %j", (fieldPath, value) => {
    expect(parseStreamJobSpec(withField(fieldPath, value)).ok).toBe(true);
  });

  it.each([
    ["parallelism", 200, "parallelism: must not exceed maxParallelism"],
    ["maxParallelism", 40_000, "maxParallelism: Too big"],
    ["parallelism", 0, "parallelism: Too small"],
    ["parallelism", 1.5, "parallelism: expected int"],
    ["image", undefined, "image: expected string"],
    ["image", "", "image: Too small"],
    ["job.name", "", "job.name: Too small"],
    ["suspend", "yes", "suspend: expected boolean"],
    ["checkpoint.interval", "10 seconds", 'checkpoint.interval: expected a duration such as "500ms"'],
    ["checkpoint.interval", "0s", "checkpoint.interval: must be longer than 0s"],
    ["checkpoint.timeout", "0ms", "checkpoint.timeout: must be longer than 0s"],
    ["checkpoint.interval", "3000000h", "checkpoint.interval: is too long"],
    ["checkpoint.minPause", "-1s", "checkpoint.minPause: expected a duration"],
    ["checkpoint.retained", 0, "checkpoint.retained: Too small"],
    ["checkpoint.maxConcurrent", 0, "checkpoint.maxConcurrent: Too small"],
    ["checkpoint.tolerableFailures", -1, "checkpoint.tolerableFailures: Too small"],
    ["checkpoint.storage.bucket", undefined, "checkpoint.storage.bucket: expected string"],
    ["checkpoint.storage.bucket", "My_Bucket", "checkpoint.storage.bucket: expected an S3 bucket name"],
    ["checkpoint.storage.prefix", "/checkpoints", "checkpoint.storage.prefix: expected key segments"],
    ["checkpoint.storage.secretName", "Storage", "checkpoint.storage.secretName: expected a Kubernetes name"],
    ["restart.maxRestarts", -1, "restart.maxRestarts: Too small"],
    [
      "restart.backoff",
      { initial: "1m", max: "1s" },
      "restart.backoff.max: must not be shorter than initial",
    ],
    ["restart.backoff", { initial: "0s" }, "restart.backoff.initial: must be longer than 0s"],
    [
      "restoreFrom",
      { checkpointId: 3, path: "a/_metadata" },
      "restoreFrom: set exactly one of checkpointId or path",
    ],
    ["restoreFrom", {}, "restoreFrom: set exactly one of checkpointId or path"],
    ["restoreFrom", { checkpointId: 0 }, "restoreFrom.checkpointId: Too small"],
    ["restoreFrom", { path: "chk-7" }, "restoreFrom.path: expected the key of a _metadata manifest"],
    ["template.env", [{ name: "A", value: "1" }, { name: "A" }], "template.env[1]: duplicate name"],
    [
      "template.env",
      [{ name: "A", value: "1", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }],
      "template.env[0]: set value or valueFrom, not both",
    ],
    [
      "template.env",
      [{ name: "STREAMJOB_TOKEN", value: "mine" }],
      "template.env[0].name: is reserved for the operator",
    ],
    [
      "template.env",
      [{ name: "POD_IP", value: "1.2.3.4" }],
      "template.env[0].name: is reserved for the operator",
    ],
    ["template.resources.limits", { cpu: "lots" }, "template.resources.limits.cpu: expected a quantity"],
    ["template.serviceAccountName", "Runner", "template.serviceAccountName: expected a Kubernetes name"],
  ])("refuses %s = %j, naming the field", (fieldPath, value, message) => {
    const result = parseStreamJobSpec(withField(fieldPath, value));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(message);
  });

  it("names every offending field at once", () => {
    const result = parseStreamJobSpec({ ...minimal, image: 7, suspend: "no" });
    expect(result).toEqual({
      ok: false,
      error: "image: expected string, received number; suspend: expected boolean, received string",
    });
  });

  it("refuses a spec that is not an object", () => {
    expect(parseStreamJobSpec(null)).toEqual({ ok: false, error: "(body): expected object, received null" });
  });
});

describe("StreamJobStatus", () => {
  const status = {
    phase: "Running",
    observedGeneration: 3,
    parallelism: 2,
    epoch: 4,
    latestCheckpoint: {
      id: 12,
      path: "checkpoints/default/orders/chk-12/_metadata",
      completedAt: "2026-01-01T00:00:10Z",
      durationMs: 180,
      sizeBytes: 1_048_576,
    },
    latestSavepoint: {
      id: 9,
      path: "checkpoints/default/orders/savepoint-9/_metadata",
      completedAt: "2026-01-01T00:00:05Z",
      durationMs: 200,
      sizeBytes: 1_000_000,
      nonce: "first",
    },
    lastRestore: {
      checkpointId: 9,
      path: "checkpoints/default/orders/savepoint-9/_metadata",
      at: "2026-01-01T00:00:06Z",
    },
    restarts: 1,
    checkpointCounts: { completed: 12, failed: 1 },
    conditions: [
      {
        type: "Ready",
        status: "True",
        observedGeneration: 3,
        lastTransitionTime: "2026-01-01T00:00:07Z",
        reason: "TasksReady",
        message: "2 of 2 TaskManagers ready",
      },
    ],
    lastReconciledSpec: JSON.stringify(minimal),
  };

  it("reads a status as the operator writes it", () => {
    expect(StreamJobStatus.parse(status)).toEqual(status);
  });

  it.each([
    [{ phase: "Exploded" }, "phase: Invalid option"],
    [{ conditions: [...status.conditions, ...status.conditions] }, "conditions[1]: duplicate type"],
    [
      { latestCheckpoint: { ...status.latestCheckpoint, completedAt: "yesterday" } },
      "latestCheckpoint.completedAt: Invalid ISO datetime",
    ],
  ])("refuses %j", (change, message) => {
    const result = StreamJobStatus.safeParse({ ...status, ...change });
    expect(result.success).toBe(false);
    if (!result.success) expect(formatZodError(result.error)).toContain(message);
  });
});
