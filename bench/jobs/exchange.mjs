// A dataflow for benchmarks (bench/dataflow.ts), written the way a user writes a job of several
// stages (docs/writing-a-job.md, "Jobs with several stages"): a generated source sends fixed-size
// records through one keyBy exchange to a keyed stage that only counts per key, so what the bench
// measures is the exchange.
//
// Arguments (all optional):
//   --partitions P   source partitions (default 8), spread evenly over the key groups so every
//                    TaskManager reads the same number when P is a multiple of the parallelism;
//   --keys K         distinct keys, k0000…, all of one length (default 1024, at most 10000);
//   --value-bytes V  each record's value: a string of V characters (default 100), so a record is
//                    `["k0042","xx…x"]`: V + 12 bytes of JSON, V + 13 in a buffer with its comma;
//   --rate R         records per second per partition; 0 (default) reads as fast as the source loop
//                    asks, so the source is throttled only by the exchange's credits;
//   --stage-us U     microseconds the keyed stage spins per record (default 0): a slow stage, to
//                    put the exchange under backpressure.

function parseArgs(args) {
  const options = { partitions: 8, keys: 1024, "value-bytes": 100, rate: 0, "stage-us": 0 };
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]?.replace(/^--/, "");
    if (!(name in options)) throw new Error(`exchange: unknown argument ${args[i]}`);
    const value = Number(args[i + 1]);
    if (!Number.isFinite(value) || value < 0) throw new Error(`exchange: --${name} must be a number ≥ 0`);
    options[name] = value;
  }
  if (options.keys < 1 || options.keys > 10_000) throw new Error("exchange: --keys must be in 1-10000");
  if (options.partitions < 1) throw new Error("exchange: --partitions must be at least 1");
  return options;
}

let keys = [];
let value = "";
let stageUs = 0;

/** Unbounded and replayable: offset o is record o; with a rate, offsets become available over time. */
function partition(index, count, rate) {
  let origin;
  return {
    id: `x-${index}-of-${count}`,
    read(offset, maxRecords) {
      let count = maxRecords;
      if (rate > 0) {
        const now = Date.now();
        origin ??= { atMs: now, offset };
        const available = origin.offset + Math.floor(((now - origin.atMs) * rate) / 1000);
        count = Math.max(0, Math.min(maxRecords, available - offset));
      }
      const records = new Array(count);
      for (let i = 0; i < count; i++) records[i] = offset + i;
      return Promise.resolve(records);
    },
  };
}

function spin(us) {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

export default {
  partitions(context) {
    const options = parseArgs(context.args);
    keys = Array.from({ length: options.keys }, (_, i) => `k${String(i).padStart(4, "0")}`);
    value = "x".repeat(options["value-bytes"]);
    stageUs = options["stage-us"];
    return Array.from({ length: options.partitions }, (_, i) =>
      partition(i, options.partitions, options.rate),
    );
  },
  // Partition x-i-of-P in key group ⌊i × maxParallelism / P⌋: each task reads P / parallelism of them.
  partitionKeyGroup(partitionId, maxParallelism) {
    const [, index, count] = /^x-(\d+)-of-(\d+)$/.exec(partitionId).map(Number);
    return Math.floor((index * maxParallelism) / count);
  },
  source: {
    process(offset, context) {
      context.send(keys[offset % keys.length], value);
    },
  },
  stages: [
    {
      id: "count",
      process(_value, context) {
        if (stageUs > 0) spin(stageUs);
        context.state.put(context.key, (context.state.get(context.key) ?? 0) + 1);
      },
    },
  ],
};
