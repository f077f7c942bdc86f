// crds/streamjob.yaml in the real API server: defaults filled in, invalid StreamJobs refused at
// `kubectl apply` naming the field (and by parseStreamJobSpec too), the docs' StreamJobs accepted,
// kubectl explain, printer columns and the scale subresource.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { API_VERSION, KIND, parseStreamJobSpec } from "../../src/api/streamjob.js";
import { documentedStreamJobs, minimalSpec as minimal } from "../unit/support/doc-streamjobs.js";
import { clients, createNamespace, kubectl } from "./support/cluster.js";
import { installCrd } from "./support/streamjobs.js";

const { core } = clients();
const manifests = mkdtempSync(path.join(tmpdir(), "crd-test-"));
let ns: string;

beforeAll(async () => {
  await installCrd();
  ns = await createNamespace(core, "crd");
});

afterAll(async () => {
  rmSync(manifests, { recursive: true, force: true });
  if (ns !== undefined) await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

/** Runs `kubectl apply -f` (with `flags`) on a StreamJob written to a file, as a user would. */
async function apply(
  name: string,
  spec: unknown,
  extra: Record<string, unknown> = {},
  ...flags: string[]
): Promise<string> {
  const file = path.join(manifests, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({ apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec, ...extra }),
  );
  return kubectl("apply", ...flags, "-n", ns, "-f", file);
}

async function get(name: string): Promise<{ spec: unknown; status?: unknown }> {
  return JSON.parse(await kubectl("get", "sj", name, "-n", ns, "-o", "json")) as {
    spec: unknown;
    status?: unknown;
  };
}

/** The error kubectl prints (execFile's error carries its stderr). */
async function refusal(command: Promise<string>): Promise<string> {
  return command.then(
    (stdout) => {
      throw new Error(`expected kubectl to fail, it printed: ${stdout}`);
    },
    (err: Error) => err.message,
  );
}

test("a valid StreamJob is accepted and the API server fills in the same defaults as parseStreamJobSpec", async () => {
  await apply("minimal", minimal);
  const stored = await get("minimal");
  const parsed = parseStreamJobSpec(minimal);
  expect(parsed.ok).toBe(true);
  expect(stored.spec).toEqual(parsed.ok ? parsed.spec : undefined);
});

test("a status sent with the spec is ignored: only the status subresource writes it", async () => {
  await apply("with-status", minimal, { status: { phase: "Running", restarts: 7 } });
  expect((await get("with-status")).status).toBeUndefined();
});

describe("an invalid StreamJob is refused at kubectl apply, naming the field, and by parseStreamJobSpec", () => {
  const storage = { bucket: "streamjob" };
  it.each([
    [
      "parallelism > maxParallelism",
      { parallelism: 200 },
      "spec.parallelism: Invalid value: must not exceed maxParallelism",
      "parallelism:",
    ],
    ["parallelism 0", { parallelism: 0 }, "spec.parallelism: Invalid value: 0", "parallelism:"],
    [
      "a duration in words",
      { checkpoint: { interval: "10 seconds", storage } },
      'spec.checkpoint.interval: Invalid value: "10 seconds": spec.checkpoint.interval in body should match',
      "checkpoint.interval:",
    ],
    [
      "a zero interval",
      { checkpoint: { interval: "0s", storage } },
      'spec.checkpoint.interval: Invalid value: "0s": must be longer than 0s',
      "checkpoint.interval: must be longer than 0s",
    ],
    [
      "retained 0",
      { checkpoint: { retained: 0, storage } },
      "spec.checkpoint.retained: Invalid value: 0",
      "checkpoint.retained:",
    ],
    [
      "no bucket",
      { checkpoint: { storage: {} } },
      "spec.checkpoint.storage.bucket: Required value",
      "checkpoint.storage.bucket:",
    ],
    [
      "a backoff whose max is below initial",
      { restart: { backoff: { initial: "1m", max: "1s" } } },
      "spec.restart.backoff.max: Invalid value: must not be shorter than initial",
      "restart.backoff.max: must not be shorter than initial",
    ],
    [
      "restoreFrom naming both a checkpoint id and a path",
      { restoreFrom: { checkpointId: 3, path: "default/orders/chk-3/_metadata" } },
      "spec.restoreFrom: Invalid value: set exactly one of checkpointId or path",
      "restoreFrom: set exactly one of checkpointId or path",
    ],
    [
      "an env var with value and valueFrom",
      {
        template: {
          env: [{ name: "A", value: "1", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }],
        },
      },
      "spec.template.env[0]: Invalid value: set value or valueFrom, not both",
      "template.env[0]: set value or valueFrom, not both",
    ],
    [
      "an env var the operator sets",
      { template: { env: [{ name: "STREAMJOB_TOKEN", value: "guess" }] } },
      'spec.template.env[0].name: Invalid value: "STREAMJOB_TOKEN": is reserved for the operator',
      "template.env[0].name: is reserved for the operator",
    ],
  ])("%s", async (_, change, serverMessage, zodMessage) => {
    const spec = { ...minimal, ...change };
    const message = await refusal(apply("invalid", spec));
    expect(message).toContain('The StreamJob "invalid" is invalid');
    expect(message).toContain(serverMessage);
    const parsed = parseStreamJobSpec(spec);
    expect(parsed.ok ? "accepted" : parsed.error).toContain(zodMessage);
  });

  it("an unknown field", async () => {
    expect(await refusal(apply("invalid", { ...minimal, colour: "red" }))).toContain(
      'unknown field "spec.colour"',
    );
  });
});

test("every StreamJob in README.md, docs/ and the examples passes a server-side dry run", async () => {
  const documented = documentedStreamJobs();
  expect(documented.length).toBeGreaterThan(5);
  const refused: string[] = [];
  for (const [i, { where, resource }] of documented.entries()) {
    const { apiVersion, kind, spec } = resource;
    await apply(`docs-${i}`, spec, { apiVersion, kind }, "--dry-run=server").catch((err: Error) =>
      refused.push(`${where}: ${err.message}`),
    );
  }
  expect(refused).toEqual([]);

  // What a user following the guide's old `spec.program` got: strict decoding refuses the unknown
  // field before the schema would miss spec.job.
  const guide = documented.find(({ where }) => where.startsWith("docs/writing-a-job.md"));
  const { job, ...rest } = guide?.resource.spec as { job: unknown };
  const message = await refusal(apply("docs-program", { ...rest, program: job }, {}, "--dry-run=server"));
  expect(message).toContain('unknown field "spec.program"');
});

test("maxParallelism cannot change once set: checkpoints hold that many key groups", async () => {
  await apply("immutable", minimal);
  const message = await refusal(
    kubectl("patch", "sj", "immutable", "-n", ns, "--type=merge", "-p", '{"spec":{"maxParallelism":64}}'),
  );
  expect(message).toContain("spec.maxParallelism: Invalid value: 64: is immutable");
});

test("checkpoint.storage cannot change: the job restores from checkpoints written there", async () => {
  await apply("storage-fixed", minimal);
  const message = await refusal(
    kubectl(
      "patch",
      "sj",
      "storage-fixed",
      "-n",
      ns,
      "--type=merge",
      "-p",
      '{"spec":{"checkpoint":{"storage":{"bucket":"elsewhere"}}}}',
    ),
  );
  expect(message).toContain("spec.checkpoint.storage: Invalid value");
  expect(message).toContain("is immutable");
});

test("the status subresource refuses a phase that does not exist", async () => {
  await apply("phase", minimal);
  const message = await refusal(
    kubectl(
      "patch",
      "sj",
      "phase",
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      '{"status":{"phase":"Exploded"}}',
    ),
  );
  expect(message).toContain('status.phase: Unsupported value: "Exploded"');
});

test("kubectl get sj shows phase, parallelism, latest checkpoint, its age and restarts", async () => {
  await apply("columns", { ...minimal, parallelism: 2 });
  const status = {
    phase: "Running",
    parallelism: 2,
    restarts: 1,
    latestCheckpoint: {
      id: 12,
      path: "checkpoints/default/columns/chk-12/_metadata",
      completedAt: new Date(Date.now() - 90_000).toISOString().replace(/\.\d+Z$/, "Z"),
      durationMs: 180,
      sizeBytes: 1024,
      sourceLag: 340,
    },
  };
  await kubectl(
    "patch",
    "sj",
    "columns",
    "-n",
    ns,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status }),
  );
  const [header, row] = (await kubectl("get", "sj", "columns", "-n", ns)).trim().split("\n");
  expect(header?.split(/\s{2,}/)).toEqual([
    "NAME",
    "PHASE",
    "PARALLELISM",
    "CHECKPOINT",
    "CHECKPOINT AGE",
    "LAG",
    "RESTARTS",
    "AGE",
  ]);
  expect(row?.split(/\s+/)).toEqual([
    "columns",
    "Running",
    "2",
    "12",
    expect.stringMatching(/^(89|9\d)s$/),
    "340",
    "1",
    expect.any(String),
  ]);
});

test("kubectl scale sets spec.parallelism through the scale subresource, within maxParallelism", async () => {
  await apply("scaled", minimal);
  await kubectl("scale", "sj/scaled", "-n", ns, "--replicas=3");
  expect(await kubectl("get", "sj", "scaled", "-n", ns, "-o", "jsonpath={.spec.parallelism}")).toBe("3");
  const message = await refusal(kubectl("scale", "sj/scaled", "-n", ns, "--replicas=129"));
  expect(message).toContain("spec.parallelism: Invalid value: must not exceed maxParallelism");
});

test("kubectl explain streamjob.spec.checkpoint teaches every checkpoint setting", async () => {
  const explained = await kubectl("explain", "streamjob.spec.checkpoint");
  expect(explained).toContain("When checkpoints are taken");
  for (const field of [
    "interval",
    "timeout",
    "minPause",
    "maxConcurrent",
    "tolerableFailures",
    "retained",
    "storage",
  ]) {
    expect(explained).toMatch(new RegExp(`^  ${field}\\t<\\w+>( -required-)?\\n    \\S`, "m"));
  }
  const restoreFrom = (await kubectl("explain", "sj.spec.restoreFrom")).replace(/\s+/g, " ");
  expect(restoreFrom).toContain("Set exactly one of checkpointId or path");
});
