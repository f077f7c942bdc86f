// docs/builtin-jobs.md is the normative description of the interop test jobs; its examples and
// argument tables are checked here against what src/taskmanager/job/builtin/ does for the same input.
import { readFileSync } from "node:fs";
import { keyGroupForKey, keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { parseJobArgs } from "../../../src/taskmanager/job/builtin/job-args.js";
import {
  SequenceArgs,
  sequenceJob,
  verifySequenceOutput,
} from "../../../src/taskmanager/job/builtin/sequence.js";
import { WordcountArgs, wordcountJob } from "../../../src/taskmanager/job/builtin/wordcount.js";
import {
  keyGroupOfPartition,
  type JobContext,
  type JobDefinition,
  type SourceBatch,
} from "../../../src/taskmanager/job/job-definition.js";
import { TwoPhaseCommitSink } from "../../../src/taskmanager/sink/two-phase-commit-sink.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";
import { KeyGroupedStateBackend } from "../../../src/taskmanager/state/keyed-state.js";
import { JOB } from "./support/fixtures.js";

const doc = readFileSync(new URL("../../../docs/builtin-jobs.md", import.meta.url), "utf8");

/** The lines of the ```text block after `<!-- check: name -->`. */
function checked(name: string): string[] {
  const match = new RegExp(`<!-- check: ${name} -->\\s*\`\`\`text\\n([\\s\\S]*?)\\n\`\`\``).exec(doc);
  if (match?.[1] === undefined) throw new Error(`docs/builtin-jobs.md has no block "${name}"`);
  return match[1].split("\n");
}

/** The cells of the argument table row for `--name`. */
function argumentRow(name: string): string[] {
  const row = doc.split("\n").find((line) => line.startsWith(`| \`--${name}\``));
  if (row === undefined) throw new Error(`docs/builtin-jobs.md has no row for --${name}`);
  return row
    .split("|")
    .slice(1, -1)
    .map((cell) => cell.trim());
}

function context(args: string[], maxParallelism: number, store = new MemoryObjectStore()): JobContext {
  return {
    args,
    job: JOB,
    taskIndex: 0,
    parallelism: 1,
    maxParallelism,
    keyGroupRange: { start: 0, end: maxParallelism - 1 },
    storage: () => store,
  };
}

/** Processes `records` of each partition in order, as one task owning every key group. */
function processAll(
  job: JobDefinition<unknown>,
  maxParallelism: number,
  records: Array<{ partitionId: string; values: unknown[] }>,
) {
  const state = new KeyGroupedStateBackend(maxParallelism, { start: 0, end: maxParallelism - 1 });
  const partitionState = new PartitionScopedState(maxParallelism, { start: 0, end: maxParallelism - 1 });
  const lines: string[] = [];
  for (const { partitionId, values } of records) {
    values.forEach((value, offset) =>
      job.process(value, {
        partitionId,
        offset,
        state,
        partitionState: partitionState.view(partitionId),
        emit: (line) => lines.push(line),
      }),
    );
  }
  return { state, lines };
}

describe("docs/builtin-jobs.md: sequence", () => {
  it("states the arguments' defaults and limits the job applies", () => {
    const [, keys, keysDefault] = argumentRow("keys");
    const [, rate, rateDefault] = argumentRow("rate");
    expect(parseJobArgs("sequence", [], SequenceArgs)).toEqual({
      keys: Number(keysDefault?.replaceAll("`", "")),
      rate: Number(rateDefault?.replaceAll("`", "")),
    });
    const [, min, max] = /`(\d+)`–`(\d+)`/.exec(keys ?? "") ?? [];
    const accepts = (name: string, value: string) => {
      try {
        parseJobArgs("sequence", [`--${name}`, value], SequenceArgs);
        return true;
      } catch {
        return false;
      }
    };
    expect([min, max].map((value) => accepts("keys", value ?? ""))).toEqual([true, true]);
    expect([Number(min) - 1, Number(max) + 1, "1e3", " 5"].map((v) => accepts("keys", String(v)))).toEqual([
      false,
      false,
      false,
      false,
    ]);
    const [, rateMax] = /`≤ (\d+)`/.exec(rate ?? "") ?? [];
    expect(["0.0001", rateMax ?? ""].map((value) => accepts("rate", value))).toEqual([true, true]);
    expect(["0", `${rateMax ?? ""}.5`, "1e3", "-1"].map((value) => accepts("rate", value))).toEqual([
      false,
      false,
      false,
      false,
    ]);
    // A name given twice takes its last value.
    expect(parseJobArgs("sequence", ["--keys", "2", "--keys", "3"], SequenceArgs).keys).toBe(3);
  });

  it("lists the partitions, their key groups and reading tasks the job has", async () => {
    const rows = checked("sequence-partitions").map((line) => line.split(" "));
    const partitions = await sequenceJob.partitions(context(["--keys", String(rows.length)], 128));
    expect(partitions.map((partition) => partition.id)).toEqual(rows.map(([id]) => id));
    for (const [id = "", keyGroup, task] of rows) {
      expect(keyGroupOfPartition(sequenceJob as JobDefinition<unknown>, { id }, 128)).toBe(Number(keyGroup));
      const owner = [0, 1].find((taskIndex) => {
        const range = keyGroupRangeForTask(128, 2, taskIndex);
        return Number(keyGroup) >= range.start && Number(keyGroup) <= range.end;
      });
      expect(owner).toBe(Number(task));
    }
  });

  it("emits the documented lines for the first three records of seq-0 and seq-1", async () => {
    const partitions = await sequenceJob.partitions(context(["--keys", "3", "--rate", "1000000"], 128));
    const records = [];
    for (const partition of partitions.slice(0, 2)) {
      await partition.read(0, 3); // the rate counts from the first read
      await new Promise((resolve) => setTimeout(resolve, 20));
      records.push({ partitionId: partition.id, values: [...contiguous(await partition.read(0, 3))] });
    }
    expect(records.map((record) => record.values)).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ]);
    const { state, lines } = processAll(sequenceJob as JobDefinition<unknown>, 128, records);
    expect(lines).toEqual(checked("sequence-output"));
    expect([state.get("seq-0"), state.get("seq-1")]).toEqual([3, 3]);
    expect(doc).toContain(
      `\`seq-0 = 3\` (key group ${keyGroupForKey("seq-0", 128)}) and \`seq-1 = 3\` (key group ${keyGroupForKey("seq-1", 128)})`,
    );
  });
});

describe("docs/builtin-jobs.md: wordcount", () => {
  async function documentedCorpus() {
    const store = new MemoryObjectStore("corpus");
    const objects = [...doc.matchAll(/`(books\/[a-z]+\.txt)` =\s+`([^`]*)`/g)];
    expect(objects.map(([, key]) => key)).toEqual(["books/a.txt", "books/b.txt"]);
    for (const [, key = "", text = ""] of objects) {
      await store.put(key, Buffer.from(text.replaceAll("\\n", "\n")));
    }
    return store;
  }

  it("requires --input, an s3:// URL", () => {
    expect(() => parseJobArgs("wordcount", [], WordcountArgs)).toThrow("input");
    expect(argumentRow("input")[2]).toBe("required");
    expect(() => parseJobArgs("wordcount", ["--input", "/books/"], WordcountArgs)).toThrow(
      'expected "s3://<bucket>/<prefix>"',
    );
  });

  it("has the documented records in each key group's partition", async () => {
    const documented = checked("wordcount-records");
    const partitions = await wordcountJob.partitions(
      context(["--input", "s3://corpus/books/"], 4, await documentedCorpus()),
    );
    const actual: string[] = [];
    for (const partition of partitions) {
      const records = contiguous(await partition.read(0, 100));
      records.forEach((words, offset) => actual.push(`${partition.id} ${offset} ${JSON.stringify(words)}`));
      const keyGroup = wordcountJob.partitionKeyGroup?.(partition.id, 4);
      expect(partition.id).toBe(`words-kg-${keyGroup}`);
      for (const word of records.flat()) expect(keyGroupForKey(word, 4)).toBe(keyGroup);
    }
    expect(actual).toEqual(documented);
  });

  it("emits the documented lines, which pass the same exactly-once check as sequence", async () => {
    const records = checked("wordcount-records").map((line) => {
      const [partitionId = "", , list = "[]"] = line.split(" ");
      return { partitionId, values: [JSON.parse(list) as string[]] };
    });
    const { state, lines } = processAll(wordcountJob as JobDefinition<unknown>, 4, records);
    expect(lines).toEqual(checked("wordcount-output"));
    expect(state.get("the")).toBe(3);

    const store = new MemoryObjectStore("streamjob");
    const sink = new TwoPhaseCommitSink(0);
    lines.forEach((line) => sink.emit(line));
    sink.seal(1);
    await sink.commitThrough(1, { store, jobDirectory: "checkpoints/default/orders/" });
    const report = await verifySequenceOutput(store, "checkpoints/default/orders/");
    expect(report).toMatchObject({ problems: [], records: lines.length });
    expect(report.lastValues.get("the")).toBe(3);
  });
});

/** The built-in jobs' partitions have contiguous offsets: their reads are plain arrays. */
function contiguous<T>(read: readonly T[] | SourceBatch<T>): readonly T[] {
  if (!Array.isArray(read)) throw new Error("expected a plain array of records");
  return read as readonly T[];
}
