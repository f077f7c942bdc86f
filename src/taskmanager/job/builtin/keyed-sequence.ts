// The `keyed-sequence` job: exactly-once across the keyed exchange, checked as it runs
// (docs/builtin-jobs.md is its normative description). Arguments: `--partitions P` (1–1000, default
// 4), `--keys K` (1–100000, default 100) and `--rate R` (records per second per partition, as in
// `sequence`, default 10).
//
// Partition `kseq-<p>` is generated: the record at offset o is key `k<(o + p) mod K>` with number
// floor(o / K) + 1, so each (key, partition) pair counts 1, 2, 3, … in offset order. The source
// sends each record keyed by its key, so a key's records come from every partition, interleaved in
// no fixed order; stage `count` checks each (key, partition) sequence per key and sends the record on
// keyed by `<key>@<partition>` through a second exchange; stage `verify` checks that sequence again
// and emits `<key>@<partition> <n>`. A record lost or repeated in either exchange, or after a restore,
// fails the task; the committed output must hold, per `<key>@<partition>`, 1, 2, 3, … with no gap
// and no duplicate (verifySequenceOutput).
import { z } from "zod";
import { defineDataflow } from "../../../dataflow/definition.js";
import type { JsonValue, SourcePartition } from "../job-definition.js";
import { parseJobArgs } from "./job-args.js";
import { SequenceArgs } from "./sequence.js";

export const KeyedSequenceArgs = {
  partitions: z
    .string()
    .regex(/^[0-9]{1,4}$/, "expected a decimal integer")
    .transform(Number)
    .pipe(z.int().min(1).max(1000))
    .default(4),
  keys: SequenceArgs.keys,
  rate: SequenceArgs.rate,
};

/** What travels through the exchanges: the source partition's index and the record's number. */
type Numbered = [partition: number, n: number];

/** A source record: its key, and what the exchanges carry. */
type KeyedRecord = [key: string, numbered: Numbered];

export const keyedSequenceJob = defineDataflow<KeyedRecord>({
  partitions(context) {
    const args = parseJobArgs("keyed-sequence", context.args, KeyedSequenceArgs);
    return Array.from({ length: args.partitions }, (_, p) => generatedPartition(p, args.keys, args.rate));
  },
  source: {
    process([key, numbered], context) {
      context.send(key, numbered);
    },
  },
  stages: [
    {
      id: "count",
      process(value, context) {
        const [p, n] = value as Numbered;
        // Per key: the last number seen from each partition.
        const seen = (context.state.get(context.key) ?? {}) as Record<string, number>;
        expectNext("count", `${context.key} from kseq-${p}`, seen[p] ?? 0, n);
        context.state.put(context.key, { ...seen, [p]: n });
        context.send(`${context.key}@kseq-${p}`, n);
      },
    },
    {
      id: "verify",
      process(value, context) {
        const n = value as number;
        expectNext("verify", context.key, Number(context.state.get(context.key) ?? 0), n);
        context.state.put(context.key, n satisfies JsonValue);
        context.emit(`${context.key} ${n}`);
      },
    },
  ],
});

function expectNext(stage: string, what: string, previous: number, n: number): void {
  if (n !== previous + 1) {
    throw new Error(
      `keyed-sequence: stage ${stage}: ${what} got ${n} after ${previous}: exactly-once violated downstream of the exchange`,
    );
  }
}

/** Offsets become available at `ratePerSecond` from the first read on, as in `sequence`. */
function generatedPartition(p: number, keys: number, ratePerSecond: number): SourcePartition<KeyedRecord> {
  let origin: { atMs: number; offset: number } | undefined;
  return {
    id: `kseq-${p}`,
    read(offset, maxRecords) {
      const now = Date.now();
      origin ??= { atMs: now, offset };
      const available = origin.offset + Math.floor(((now - origin.atMs) * ratePerSecond) / 1000);
      const count = Math.max(0, Math.min(maxRecords, available - offset));
      return Promise.resolve(
        Array.from({ length: count }, (_, i): KeyedRecord => {
          const o = offset + i;
          return [`k${(o + p) % keys}`, [p, Math.floor(o / keys) + 1]];
        }),
      );
    },
  };
}
