// The `sequence` job, the exactly-once check and an interop test job: docs/builtin-jobs.md is its
// normative description. Arguments: `--keys K` (1–100000, default 100) and `--rate R` (records per
// second per key, a decimal number > 0 and ≤ 1000000, default 10).
//
// Partition `seq-<i>` (i < K) is generated: the record at offset o has the value o + 1. The job keys
// its state by the partition id, a counter holding the last value seen, and requires every value to
// be exactly counter + 1: a record processed twice or skipped after a restore fails the task. Each
// record is emitted as the line `seq-<i> <value>`, so the committed output must hold, per key, the
// values 1, 2, 3, … with no gap and no duplicate: verifySequenceOutput checks that.
import type { ObjectStore } from "../../../storage/object-store.js";
import { readCommittedOutput } from "../../sink/committed-output.js";
import { defineJob, type SourcePartition } from "../job-definition.js";
import { z } from "zod";
import { parseJobArgs } from "./job-args.js";

// Plain decimal spellings only, so every implementation reads the same arguments the same way.
export const SequenceArgs = {
  keys: z
    .string()
    .regex(/^[0-9]{1,6}$/, "expected a decimal integer")
    .transform(Number)
    .pipe(z.int().min(1).max(100_000))
    .default(100),
  rate: z
    .string()
    .regex(/^[0-9]{1,7}(\.[0-9]{1,9})?$/, "expected a decimal number")
    .transform(Number)
    .pipe(z.number().positive().max(1_000_000))
    .default(10),
};

export const sequenceJob = defineJob<number>({
  partitions(context) {
    const args = parseJobArgs("sequence", context.args, SequenceArgs);
    return Array.from({ length: args.keys }, (_, i) => generatedPartition(`seq-${i}`, args.rate));
  },
  process(value, context) {
    const previous = context.state.get(context.partitionId) ?? 0;
    if (value !== Number(previous) + 1) {
      throw new Error(
        `sequence: ${context.partitionId} got ${value} after ${String(previous)} at offset ${context.offset}: exactly-once violated`,
      );
    }
    context.state.put(context.partitionId, value);
    context.emit(`${context.partitionId} ${value}`);
  },
});

/** Records become available at `ratePerSecond` from the first read on, as a clock-driven generator. */
function generatedPartition(id: string, ratePerSecond: number): SourcePartition<number> {
  let origin: { atMs: number; offset: number } | undefined;
  return {
    id,
    read(offset, maxRecords) {
      const now = Date.now();
      origin ??= { atMs: now, offset };
      const available = origin.offset + Math.floor(((now - origin.atMs) * ratePerSecond) / 1000);
      const count = Math.max(0, Math.min(maxRecords, available - offset));
      return Promise.resolve(Array.from({ length: count }, (_, i) => offset + i + 1));
    },
  };
}

export interface SequenceOutputReport {
  /** Last value committed per key. */
  lastValues: Map<string, number>;
  records: number;
  /** One line per violation (gap, duplicate, unreadable line); empty when the output is exact. */
  problems: string[];
}

/**
 * The exactly-once check, line by line: every key's values must be 1, 2, 3, … in the order the
 * lines are added (`<key> <n>`, the output of `sequence` and `kafka-sequence`).
 */
export class SequenceCheck {
  readonly report: SequenceOutputReport = { lastValues: new Map(), records: 0, problems: [] };

  /** `where` names the line's place (an object, a partition and offset) in a problem. */
  add(where: string, line: string): void {
    const { report } = this;
    const match = /^(\S+) (\d+)$/.exec(line);
    if (match === null || match[1] === undefined) {
      report.problems.push(`${where}: unreadable line ${JSON.stringify(line)}`);
      return;
    }
    const key = match[1];
    const value = Number(match[2]);
    const expected = (report.lastValues.get(key) ?? 0) + 1;
    if (value !== expected) {
      const kind = value < expected ? "duplicate" : "gap";
      report.problems.push(`${where}: ${kind} for ${key}: ${value} where ${expected} was expected`);
    }
    report.lastValues.set(key, Math.max(value, report.lastValues.get(key) ?? 0));
    report.records++;
  }
}

/** Reads the committed output of a `sequence` job and checks every key's values are 1, 2, 3, … */
export async function verifySequenceOutput(
  store: ObjectStore,
  jobDirectory: string,
): Promise<SequenceOutputReport> {
  const check = new SequenceCheck();
  for await (const object of readCommittedOutput(store, jobDirectory)) {
    for (const line of object.lines) check.add(object.key, line);
  }
  return check.report;
}
