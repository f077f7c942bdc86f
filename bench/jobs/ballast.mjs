// A job for benchmarks, written the way a user writes their own job (docs/writing-a-job.md): it
// holds a chosen amount of keyed state and processes as fast as the TaskManager lets it, so the
// benchmark can measure checkpoint latency for that state size and the throughput lost to it.
//
// Arguments: --state-bytes N (the whole job's state; default 1 MiB) --partitions P (default 64).
// Each partition's key holds {count, ballast}: the count changes with every record, the ballast
// (the same string object for every key, so processing never copies it) gives the state its size.

function parseArgs(args) {
  const options = { "state-bytes": 1 << 20, partitions: 64 };
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]?.replace(/^--/, "");
    if (!(name in options)) throw new Error(`ballast: unknown argument ${args[i]}`);
    const value = Number(args[i + 1]);
    if (!Number.isInteger(value) || value <= 0)
      throw new Error(`ballast: --${name} must be a positive integer`);
    options[name] = value;
  }
  return options;
}

let ballast = "";

export default {
  partitions(context) {
    const options = parseArgs(context.args);
    ballast = "x".repeat(Math.ceil(options["state-bytes"] / options.partitions));
    return Array.from({ length: options.partitions }, (_, i) => ({
      id: `ballast-${i}`,
      // Unbounded and replayable: the record at offset o is o + 1.
      read: (offset, maxRecords) =>
        Promise.resolve(Array.from({ length: maxRecords }, (_, j) => offset + j + 1)),
    }));
  },
  process(value, context) {
    context.state.put(context.partitionId, { count: value, ballast });
  },
};
