// The docs of dataflows, checked against the code they describe: the multi-stage example of
// docs/writing-a-job.md is the fixture that test/integration/dataflow-example.test.ts runs, and the
// `keyed-sequence` section of docs/builtin-jobs.md (its argument table and `check` blocks) is what
// src/taskmanager/job/builtin/keyed-sequence.ts does.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { keyGroupForKey, taskIndexForKeyGroup } from "../../../src/api/key-groups.js";
import { checkStages, isDataflow, type KeyedStageContext } from "../../../src/dataflow/definition.js";
import { parseJobArgs } from "../../../src/taskmanager/job/builtin/job-args.js";
import { KeyedSequenceArgs, keyedSequenceJob } from "../../../src/taskmanager/job/builtin/keyed-sequence.js";
import {
  keyGroupOfPartition,
  type JobContext,
  type JobDefinition,
  type JsonValue,
  type SourceBatch,
} from "../../../src/taskmanager/job/job-definition.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import customerTotals from "../../integration/fixtures/customer-totals-dataflow.js";
import { JOB } from "../taskmanager/support/fixtures.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const docs = path.join(here, "..", "..", "..", "docs");

describe("docs/writing-a-job.md: the multi-stage example", () => {
  const guide = readFileSync(path.join(docs, "writing-a-job.md"), "utf8");
  const fixturePath = path.join(here, "..", "..", "integration", "fixtures", "customer-totals-dataflow.ts");

  it("is the fixture the integration test runs, verbatim", () => {
    const fixture = readFileSync(fixturePath, "utf8");
    expect(guide).toContain(`## A complete multi-stage example`);
    expect(guide).toContain(`\`\`\`ts\n${fixture}\`\`\``);
  });

  it("imports types only, and is a dataflow with the stages the text names", () => {
    const fixture = readFileSync(fixturePath, "utf8");
    const imports = fixture.split("\n").filter((line) => /^import\b/.test(line));
    expect(imports.length).toBeGreaterThan(0);
    for (const line of imports) expect(line).toMatch(/^import type /);

    expect(isDataflow(customerTotals)).toBe(true);
    expect(() => checkStages(customerTotals.stages)).not.toThrow();
    expect(customerTotals.stages.map((stage) => stage.id)).toEqual(["customer-totals", "region-revenue"]);
    for (const stage of customerTotals.stages) expect(guide).toContain(`stage \`${stage.id}\``);
  });
});

describe("docs/builtin-jobs.md: keyed-sequence", () => {
  const doc = readFileSync(path.join(docs, "builtin-jobs.md"), "utf8");
  const section = /^## `keyed-sequence`\n([\s\S]*?)^## /m.exec(doc)?.[1] ?? "";
  /** The section with every run of whitespace as one space: sentences may wrap anywhere. */
  const prose = section.replace(/\s+/g, " ");

  /** The lines of the ```text block after `<!-- check: name -->`. */
  function checked(name: string): string[] {
    const match = new RegExp(`<!-- check: ${name} -->\\s*\`\`\`text\\n([\\s\\S]*?)\\n\`\`\``).exec(section);
    if (match?.[1] === undefined) throw new Error(`the keyed-sequence section has no block "${name}"`);
    return match[1].split("\n");
  }

  /** The cells of the section's argument table row for `--name`. */
  function argumentRow(name: string): string[] {
    const row = section.split("\n").find((line) => line.startsWith(`| \`--${name}\``));
    if (row === undefined) throw new Error(`the keyed-sequence section has no row for --${name}`);
    return row
      .split("|")
      .slice(1, -1)
      .map((cell) => cell.trim());
  }

  const accepts = (name: string, value: string) => {
    try {
      parseJobArgs("keyed-sequence", [`--${name}`, value], KeyedSequenceArgs);
      return true;
    } catch {
      return false;
    }
  };

  function context(args: string[]): JobContext {
    const store = new MemoryObjectStore();
    return {
      args,
      job: JOB,
      taskIndex: 0,
      parallelism: 1,
      maxParallelism: 128,
      keyGroupRange: { start: 0, end: 127 },
      storage: () => store,
    };
  }

  it("is there, with the three check blocks", () => {
    expect(section).not.toBe("");
    for (const name of ["partitions", "records", "output"])
      expect(checked(`keyed-sequence-${name}`)).not.toEqual([]);
  });

  it("states the arguments' defaults and limits the job applies", () => {
    const defaults = Object.fromEntries(
      ["partitions", "keys", "rate"].map((name) => [name, Number(argumentRow(name)[2]?.replaceAll("`", ""))]),
    );
    expect(parseJobArgs("keyed-sequence", [], KeyedSequenceArgs)).toEqual(defaults);
    for (const name of ["partitions", "keys"]) {
      const [, min = "", max = ""] = /`(\d+)`–`(\d+)`/.exec(argumentRow(name)[1] ?? "") ?? [];
      expect([min, max].map((value) => accepts(name, value))).toEqual([true, true]);
      expect([Number(min) - 1, Number(max) + 1].map((value) => accepts(name, String(value)))).toEqual([
        false,
        false,
      ]);
    }
    const [, rateMax = ""] = /`≤ (\d+)`/.exec(argumentRow("rate")[1] ?? "") ?? [];
    expect(["0.0001", rateMax, "0", `${rateMax}.5`].map((value) => accepts("rate", value))).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });

  it("lists the partitions, their key groups and reading tasks the job has", async () => {
    const rows = checked("keyed-sequence-partitions").map((line) => line.split(" "));
    const partitions = await keyedSequenceJob.partitions(
      context(["--partitions", String(rows.length), "--keys", "3"]),
    );
    expect(partitions.map((partition) => partition.id)).toEqual(rows.map(([id]) => id));
    for (const [id = "", keyGroup, task] of rows) {
      const asJob = keyedSequenceJob as unknown as JobDefinition<unknown>;
      expect(keyGroupOfPartition(asJob, { id }, 128)).toBe(Number(keyGroup));
      expect(taskIndexForKeyGroup(128, 2, Number(keyGroup))).toBe(Number(task));
    }
  });

  it("has the documented records, and processing them through count and verify emits the documented lines", async () => {
    const partitions = await keyedSequenceJob.partitions(
      context(["--partitions", "2", "--keys", "3", "--rate", "1000000"]),
    );
    const partitionState = new PartitionScopedState(128, { start: 0, end: 127 });
    const records: string[] = [];
    const sent: Array<[string, JsonValue]> = [];
    for (const partition of partitions) {
      await partition.read(0, 4); // the rate counts from the first read
      await new Promise((resolve) => setTimeout(resolve, 20));
      contiguous(await partition.read(0, 4)).forEach((record, offset) =>
        keyedSequenceJob.source.process(record, {
          partitionId: partition.id,
          offset,
          partitionState: partitionState.view(partition.id),
          send(key, value) {
            records.push(`${partition.id} ${offset} ${key} ${JSON.stringify(value)}`);
            sent.push([key, value]);
          },
        }),
      );
    }
    expect(records).toEqual(checked("keyed-sequence-records"));

    const [count, verify] = keyedSequenceJob.stages;
    const countState = new KeyGroupedStateBackend(128, { start: 0, end: 127 });
    const verifyState = new KeyGroupedStateBackend(128, { start: 0, end: 127 });
    const lines: string[] = [];
    const stageContext = (
      key: string,
      state: KeyGroupedStateBackend,
      send: KeyedStageContext["send"],
      emit: KeyedStageContext["emit"],
    ): KeyedStageContext => ({ key, state, send, emit });
    const noEmit = () => {
      throw new Error("count emitted");
    };
    const noSend = () => {
      throw new Error("verify sent");
    };
    const toVerify = (key: string, value: JsonValue) =>
      verify!.process(
        value,
        stageContext(key, verifyState, noSend, (line) => lines.push(line)),
      );
    for (const [key, value] of sent) count!.process(value, stageContext(key, countState, toVerify, noEmit));
    expect(lines).toEqual(checked("keyed-sequence-output"));

    for (const key of ["k0", "k1", "k2"]) {
      expect(prose).toContain(`\`${key} = ${JSON.stringify(countState.get(key))}\``);
    }
    expect([verifyState.get("k0@kseq-0"), verifyState.get("k1@kseq-1")]).toEqual([2, 2]);
    for (const key of ["k1@kseq-0", "k2@kseq-0", "k0@kseq-1", "k2@kseq-1"])
      expect(verifyState.get(key)).toBe(1);
    expect(prose).toContain(
      "`verify` holds `k0@kseq-0 = 2`, `k1@kseq-1 = 2` and `1` for the other four keys",
    );

    // The documented failures: a repeat in each stage, with the documented messages.
    const message = (stage: string) => {
      const template = new RegExp(`\`(keyed-sequence: stage ${stage}: [^\`]*)\``).exec(prose)?.[1];
      if (template === undefined) throw new Error(`no message for stage ${stage}`);
      const pattern = template
        .split(/(<[^>]+>)/)
        .map((part) => (part.startsWith("<") ? "\\S+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
        .join("");
      return new RegExp(`^${pattern}$`);
    };
    expect(() => count!.process([0, 2], stageContext("k0", countState, toVerify, noEmit))).toThrow(
      message("count"),
    );
    expect(() => count!.process([0, 2], stageContext("k0", countState, toVerify, noEmit))).toThrow(
      "keyed-sequence: stage count: k0 from kseq-0 got 2 after 2: exactly-once violated downstream of the exchange",
    );
    expect(() =>
      verify!.process(
        1,
        stageContext("k2@kseq-1", verifyState, noSend, (line) => lines.push(line)),
      ),
    ).toThrow(message("verify"));
  });

  it("names the key groups and tasks a record of kseq-1 crosses", () => {
    const owner = (key: string) => taskIndexForKeyGroup(128, 2, keyGroupForKey(key, 128));
    expect([owner("kseq-1"), owner("k1"), owner("k1@kseq-1")]).toEqual([1, 0, 1]);
    expect(prose).toContain(
      `counted on task 0 (\`k1\`, key group ${keyGroupForKey("k1", 128)}) and verified on task 1 (\`k1@kseq-1\`, key group ${keyGroupForKey("k1@kseq-1", 128)})`,
    );
  });
});

/** The built-in jobs' partitions have contiguous offsets: their reads are plain arrays. */
function contiguous<T>(read: readonly T[] | SourceBatch<T>): readonly T[] {
  if (!Array.isArray(read)) throw new Error("expected a plain array of records");
  return read as readonly T[];
}
