import type { StreamJobSpecInput } from "../../../src/api/streamjob.js";
import {
  classifySpecChanges,
  serialiseSpec,
  strongestSpecChange,
  type ChangeKind,
} from "../../../src/operator/spec-changes.js";
import { streamJob } from "./fixtures.js";

const spec = (overrides: Partial<StreamJobSpecInput> = {}) => streamJob(overrides).spec;
const storage = { bucket: "streamjob" };

describe("strongestSpecChange", () => {
  const cases: Array<
    [string, Partial<StreamJobSpecInput>, Partial<StreamJobSpecInput>, ChangeKind, string[]]
  > = [
    ["nothing", {}, {}, "ignore", []],
    [
      "checkpoint interval",
      {},
      { checkpoint: { interval: "30s", storage } },
      "ignore",
      ["checkpoint.interval"],
    ],
    [
      "timeout and retained",
      {},
      { checkpoint: { timeout: "2m", retained: 5, storage } },
      "ignore",
      ["checkpoint.retained", "checkpoint.timeout"],
    ],
    ["restart policy", {}, { restart: { maxRestarts: 3 } }, "ignore", ["restart.maxRestarts"]],
    ["restoreFrom after the start", {}, { restoreFrom: { checkpointId: 4 } }, "ignore", ["restoreFrom"]],
    ["nonce cleared", { savepointNonce: "a" }, {}, "ignore", ["savepointNonce"]],
    ["nonce set", {}, { savepointNonce: "a" }, "savepoint", ["savepointNonce"]],
    ["nonce changed", { savepointNonce: "a" }, { savepointNonce: "b" }, "savepoint", ["savepointNonce"]],
    ["parallelism", {}, { parallelism: 3 }, "scale", ["parallelism"]],
    ["image", {}, { image: "streamjob-taskmanager:0.2.0" }, "upgrade", ["image"]],
    ["job args", {}, { job: { name: "sequence", args: [] } }, "upgrade", ["job.args"]],
    ["template env", {}, { template: { env: [{ name: "A", value: "1" }] } }, "upgrade", ["template"]],
    [
      "storage bucket",
      {},
      { checkpoint: { storage: { bucket: "other" } } },
      "upgrade",
      ["checkpoint.storage.bucket"],
    ],
    ["suspend", {}, { suspend: true }, "suspend", ["suspend"]],
    ["resume", { suspend: true }, { suspend: false }, "resume", ["suspend"]],
    ["suspend wins over an upgrade", {}, { suspend: true, image: "x:2" }, "suspend", ["suspend"]],
    ["upgrade wins over a scale", {}, { parallelism: 2, image: "x:2" }, "upgrade", ["image"]],
    ["scale wins over a savepoint", {}, { parallelism: 2, savepointNonce: "n" }, "scale", ["parallelism"]],
  ];

  it.each(cases)("%s", (_title, before, after, kind, fields) => {
    const change = strongestSpecChange(serialiseSpec(spec(before)), spec(after));
    expect(change.kind).toBe(kind);
    expect(change.fields).toEqual(fields);
    for (const field of fields) expect(change.reason).toContain(field);
  });

  it("is initial when nothing was reconciled yet", () => {
    expect(strongestSpecChange(undefined, spec()).kind).toBe("initial");
  });

  it("redeploys when the stored spec does not parse", () => {
    expect(strongestSpecChange("{not json", spec()).kind).toBe("upgrade");
    expect(strongestSpecChange(JSON.stringify({ image: "" }), spec()).kind).toBe("upgrade");
  });

  it("fills defaults into the stored spec, so a spec stored without them is no change", () => {
    const stored = JSON.stringify({ image: spec().image, job: spec().job, checkpoint: { storage } });
    expect(strongestSpecChange(stored, spec())).toEqual({
      kind: "ignore",
      fields: [],
      reason: "spec unchanged",
    });
  });
});

describe("classifySpecChanges", () => {
  it("lists every kind of change, strongest first, each naming its fields", () => {
    const changes = classifySpecChanges(
      serialiseSpec(spec()),
      spec({ parallelism: 2, image: "x:2", checkpoint: { interval: "1m", storage } }),
    );
    expect(changes.map((change) => [change.kind, change.fields])).toEqual([
      ["upgrade", ["image"]],
      ["scale", ["parallelism"]],
      ["ignore", ["checkpoint.interval"]],
    ]);
    expect(changes[1]?.reason).toBe(
      "parallelism changed: checkpointing, then redeploying with parallelism 2",
    );
  });
});
