// The `wordcount` job: counts words in the text objects under an S3 prefix; an interop test job,
// normatively described in docs/builtin-jobs.md. Argument: `--input s3://<bucket>/<prefix>`.
//
// The corpus is the objects under the prefix in key order, read as one sequence of lines; objects
// are immutable and new ones must sort after the existing ones (e.g. timestamped names), so a line
// number always means the same line. State is keyed by word; a word's key group decides which task
// counts it. There is one partition per key group, `words-kg-<g>`, read by the task owning key group
// <g>: record <n> is the list of words of line <n> that fall into key group <g>. Every partition of
// a task walks the same lines, which the task loads once and keeps in memory. Each count emits the
// line `<word> <count>` (a changelog: the last line per word is its current count).
import { z } from "zod";
import { keyGroupForKey } from "../../../api/key-groups.js";
import type { ObjectStore } from "../../../storage/object-store.js";
import { defineJob, type SourcePartition } from "../job-definition.js";
import { parseJobArgs } from "./job-args.js";

export const WordcountArgs = {
  input: z
    .string()
    .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.*$/, 'expected "s3://<bucket>/<prefix>"'),
};

const PARTITION_PREFIX = "words-kg-";
// A task that has read every line looks for new objects at most this often.
const RELIST_INTERVAL_MS = 2_000;

export const wordcountJob = defineJob<readonly string[]>({
  partitions(context) {
    const { input } = parseJobArgs("wordcount", context.args, WordcountArgs);
    const [, bucket = "", prefix = ""] = /^s3:\/\/([^/]+)\/(.*)$/.exec(input) ?? [];
    const corpus = new Corpus(context.storage(bucket), prefix, context.maxParallelism);
    return Array.from({ length: context.maxParallelism }, (_, keyGroup) => wordsOfKeyGroup(corpus, keyGroup));
  },
  partitionKeyGroup(partitionId) {
    return Number(partitionId.slice(PARTITION_PREFIX.length));
  },
  process(words, context) {
    for (const word of words) {
      const count = Number(context.state.get(word) ?? 0) + 1;
      context.state.put(word, count);
      context.emit(`${word} ${count}`);
    }
  },
});

function wordsOfKeyGroup(corpus: Corpus, keyGroup: number): SourcePartition<readonly string[]> {
  return {
    id: `${PARTITION_PREFIX}${keyGroup}`,
    async read(offset, maxRecords) {
      const lines = await corpus.lines(offset + maxRecords);
      return lines
        .slice(offset, offset + maxRecords)
        .map((line) => line.filter((word) => word.keyGroup === keyGroup).map((word) => word.word));
    },
  };
}

/** Lowercased words: letters and digits, with inner apostrophes ("don't"). */
export function wordsOf(line: string): string[] {
  return line.toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*/gu) ?? [];
}

type CorpusLine = ReadonlyArray<{ word: string; keyGroup: number }>;

class Corpus {
  private readonly loaded: CorpusLine[] = [];
  private readonly loadedKeys = new Set<string>();
  private lastListedAt = Number.NEGATIVE_INFINITY;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly prefix: string,
    private readonly maxParallelism: number,
  ) {}

  /** At least `count` lines when the corpus has them, otherwise every line loaded so far. */
  async lines(count: number): Promise<readonly CorpusLine[]> {
    if (this.loaded.length < count && Date.now() - this.lastListedAt >= RELIST_INTERVAL_MS) {
      this.loading ??= this.loadNewObjects().finally(() => (this.loading = undefined));
      await this.loading;
    }
    return this.loaded;
  }

  private async loadNewObjects(): Promise<void> {
    this.lastListedAt = Date.now();
    const keys = (await this.store.list(this.prefix)).filter((key) => !this.loadedKeys.has(key));
    for (const key of keys) {
      const text = (await this.store.get(key)).toString("utf8");
      for (const line of text.split("\n")) {
        this.loaded.push(
          wordsOf(line).map((word) => ({ word, keyGroup: keyGroupForKey(word, this.maxParallelism) })),
        );
      }
      this.loadedKeys.add(key);
    }
  }
}
