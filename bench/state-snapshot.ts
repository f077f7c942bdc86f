// `npm run bench:state`: what snapshots of the keyed state cost the processing thread, without
// MinIO or a cluster. For 10 MB and 100 MB of state (in the part format's bytes) held by one task
// owning all 128 key groups, it runs writes spread over every key group in batches (yielding to the
// event loop between batches, as TaskRuntime does) and compares writes per CPU second (the load of
// other processes moves wall-clock rates by tens of percent, CPU time hardly) in windows without
// snapshots against windows with a snapshot every second, of two kinds: "held", where each snapshot
// is kept for 500 ms and released unread (the cost of keeping a snapshot consistent while writes go
// on, alone), and "encoded", where each is encoded in the part format into a sink that drops the
// bytes (no hashing, no upload: those are not the state backend's cost). Then
// it profiles one more window with snapshots (the V8 CPU profiler through node:inspector, as
// `node --cpu-prof` would, limited to that window) and prints where the thread's time went, by
// category and by function; both add up to 100%.
//
// Each state size runs in a child process of its own, so one size's heap does not tax the other.
// `--windows N` (default 3 per kind) and `--window-ms MS` (default 2000) shorten or lengthen it.
import { spawnSync } from "node:child_process";
import { Session } from "node:inspector/promises";
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { KeyGroupedStateBackend, type JsonValue } from "../src/taskmanager/state/keyed-state.js";
import { encodeStatePart } from "../src/taskmanager/state/state-part.js";
import { percentile } from "./measure.js";

const MAX_PARALLELISM = 128;
const BATCH = 500;
const SNAPSHOT_INTERVAL_MS = 1_000;
// Every value is {count, pad} with the same pad string object, like bench/jobs/ballast.mjs, but
// spread over many keys: a part line is about 100 bytes, so 10 MB is about 100 000 keys.
const PAD = "p".repeat(48);
const LINE_BYTES = JSON.stringify({ g: 100, k: "key-0000000", v: { count: 1_000_000, pad: PAD } }).length + 1;

const { values: args } = parseArgs({
  options: {
    child: { type: "string" },
    windows: { type: "string", default: "3" },
    "window-ms": { type: "string", default: "2000" },
  },
});
const windows = Number(args.windows);
const windowMs = Number(args["window-ms"]);

const HOLD_MS = 500;

type SnapshotKind = "held" | "encoded";

interface SnapshotStats {
  kind: SnapshotKind;
  taken: number;
  /** Ticks that found the previous snapshot still running. */
  skipped: number;
  syncMs: number[];
  encodeMs: number[];
}

class Workload {
  readonly state = new KeyGroupedStateBackend(MAX_PARALLELISM, { start: 0, end: MAX_PARALLELISM - 1 });
  private readonly keys: string[];
  private next = 0;
  private count = 0;

  constructor(stateMb: number) {
    const keyCount = Math.round((stateMb * 1e6) / LINE_BYTES);
    this.keys = Array.from({ length: keyCount }, (_, i) => `key-${String(i).padStart(7, "0")}`);
    for (const key of this.keys) this.state.put(key, this.value());
  }

  get keyCount(): number {
    return this.keys.length;
  }

  private value(): JsonValue {
    return { count: ++this.count, pad: PAD };
  }

  /**
   * Writes in batches for `ms`, a snapshot every second when `snapshots`; returns writes per
   * second of the process's CPU time, which other processes on a shared machine barely move.
   */
  async run(ms: number, snapshots: SnapshotStats | undefined): Promise<number> {
    // Snapshots still being encoded when the window ends are stopped, not waited for.
    const windowEnd = new AbortController();
    const inFlight: Array<Promise<void>> = [];
    let running: Promise<void> | undefined;
    // As the coordinator does with its default maxConcurrent of 1: no snapshot while one is running.
    const tick = () => {
      if (running !== undefined) {
        snapshots!.skipped++;
        return;
      }
      const snapshot = this.snapshot(snapshots!, windowEnd.signal).finally(() => (running = undefined));
      running = snapshot;
      inFlight.push(snapshot);
    };
    const timer = snapshots && setInterval(tick, SNAPSHOT_INTERVAL_MS);
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    let writes = 0;
    // A stride coprime with the key count visits every key, hopping between key groups.
    const stride = 7919;
    while (performance.now() - started < ms) {
      for (let i = 0; i < BATCH; i++) {
        this.state.put(this.keys[this.next]!, this.value());
        this.next = (this.next + stride) % this.keys.length;
      }
      writes += BATCH;
      await yieldToEventLoop();
    }
    const cpu = process.cpuUsage(cpuBefore);
    clearInterval(timer);
    windowEnd.abort();
    await Promise.all(inFlight);
    return (writes / (cpu.user + cpu.system)) * 1e6;
  }

  private async snapshot(stats: SnapshotStats, windowEnd: AbortSignal): Promise<void> {
    const started = performance.now();
    const snapshot = this.state.snapshot();
    stats.syncMs.push(performance.now() - started);
    stats.taken++;
    try {
      if (stats.kind === "held") {
        await sleep(HOLD_MS);
        return;
      }
      await pipeline(
        encodeStatePart(snapshot),
        new Writable({ write: (_chunk, _encoding, done) => setImmediate(done) }),
        { signal: windowEnd },
      );
      stats.encodeMs.push(performance.now() - started);
    } catch (err) {
      if (!windowEnd.aborted) throw err;
    } finally {
      snapshot.release();
    }
  }
}

const CpuProfile = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
      children: z.array(z.number()).optional(),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});
type CpuProfile = z.infer<typeof CpuProfile>;

// The innermost frame of the stack in one of these files names the category of a sample.
const categories: Array<[RegExp, string]> = [
  [/state\/keyed-state\.ts$/, "state backend (put, snapshot, copy-on-write)"],
  [/state\/state-part\.ts$/, "part encoding (JSON.stringify, chunks)"],
  [/api\/key-groups\.ts$/, "key group of a key (murmur hash)"],
  [/bench\/state-snapshot\.ts$/, "benchmark loop (the job's writes)"],
  [/^node:/, "Node.js internals (streams, timers)"],
];

/** Self time by category and by function, in percent of the profiled time. */
function summarize(profile: CpuProfile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const categoryOf = (id: number): string => {
    const own = byId.get(id)!.callFrame.functionName;
    if (own === "(garbage collector)") return "garbage collection";
    if (own === "(idle)") return "idle";
    if (own === "(program)") return "V8 and native, not attributed to JS";
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const url = byId.get(at)!.callFrame.url;
      const match = categories.find(([pattern]) => pattern.test(url));
      if (match) return match[1];
    }
    return "other";
  };
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  // The profiler's own start (Session.post's dispatch, over 100 ms with a large heap) is not the
  // workload's time: samples under node:inspector are left out of the total.
  const inProfiler = (id: number): boolean => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      if (byId.get(at)!.callFrame.url === "node:inspector") return true;
    }
    return false;
  };
  profile.samples.forEach((id, i) => {
    if (inProfiler(id)) return;
    const micros = profile.timeDeltas[i] ?? 0;
    total += micros;
    const category = categoryOf(id);
    byCategory.set(category, (byCategory.get(category) ?? 0) + micros);
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    // tsx's transpiled modules report line 0: our functions are named by file alone.
    const ours = /\/(src|bench)\//.test(url);
    const where =
      url === "" ? "" : ours ? ` ${url.replace(/^.*\/(src|bench)\//, "$1/")}` : ` ${url}:${lineNumber + 1}`;
    const name = `${functionName || "(anonymous)"}${where}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  });
  const percent = (entries: Map<string, number>) =>
    [...entries].sort((a, b) => b[1] - a[1]).map(([name, micros]) => [name, (micros / total) * 100] as const);
  return { totalMs: total / 1000, categories: percent(byCategory), functions: percent(byFunction) };
}

function printShares(title: string, shares: ReadonlyArray<readonly [string, number]>, top: number) {
  console.log(`  ${title}`);
  const shown = shares.slice(0, top);
  const rest = shares.slice(top).reduce((sum, [, pct]) => sum + pct, 0);
  for (const [name, pct] of shown) console.log(`    ${pct.toFixed(1).padStart(5)}%  ${name}`);
  if (rest > 0) console.log(`    ${rest.toFixed(1).padStart(5)}%  (${shares.length - top} more)`);
}

async function child(stateMb: number): Promise<void> {
  const filled = performance.now();
  const workload = new Workload(stateMb);
  console.log(
    `${stateMb} MB of state: ${workload.keyCount} keys in ${MAX_PARALLELISM} key groups, filled in ${Math.round(performance.now() - filled)} ms`,
  );
  await workload.run(1_000, undefined); // warm-up
  const without: number[] = [];
  const rates = { held: [] as number[], encoded: [] as number[] };
  const stats = {
    held: { kind: "held", taken: 0, skipped: 0, syncMs: [], encodeMs: [] } as SnapshotStats,
    encoded: { kind: "encoded", taken: 0, skipped: 0, syncMs: [], encodeMs: [] } as SnapshotStats,
  };
  for (let round = 0; round < windows; round++) {
    without.push(await workload.run(windowMs, undefined));
    rates.held.push(await workload.run(windowMs, stats.held));
    rates.encoded.push(await workload.run(windowMs, stats.encoded));
  }
  const base = percentile(without, 50);
  const k = (rate: number) => `${Math.round(rate / 1000)}k`;
  console.log(
    `  writes per CPU second without snapshots ${k(base)} (medians of ${windows} windows of ${windowMs} ms each)`,
  );
  for (const kind of ["held", "encoded"] as const) {
    const rate = percentile(rates[kind], 50);
    const { taken, skipped, syncMs, encodeMs } = stats[kind];
    const encoded =
      kind === "encoded"
        ? encodeMs.length === 0
          ? ", none encoded before its window ended"
          : `, snapshot to encoded p50 ${Math.round(percentile(encodeMs, 50))} ms (${encodeMs.length} finished)`
        : "";
    console.log(
      `  with a snapshot every second, ${kind.padEnd(7)} ${k(rate)}: drop ${(((base - rate) / base) * 100).toFixed(1)}%; ` +
        `${taken} snapshots (${skipped} ticks skipped), synchronous part p50 ${percentile(syncMs, 50).toFixed(2)} ms${encoded}`,
    );
  }

  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  await workload.run(windowMs, { kind: "encoded", taken: 0, skipped: 0, syncMs: [], encodeMs: [] });
  const { profile } = await session.post("Profiler.stop");
  session.disconnect();
  const summary = summarize(CpuProfile.parse(profile));
  console.log(
    `  CPU profile of one more ${windowMs} ms window with encoded snapshots (${Math.round(summary.totalMs)} ms sampled):`,
  );
  printShares(
    "by category (innermost frame of ours on the stack)",
    summary.categories,
    summary.categories.length,
  );
  printShares("by function (self time)", summary.functions, 10);
}

if (args.child !== undefined) {
  await child(Number(args.child));
} else {
  for (const stateMb of [10, 100]) {
    const result = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        "--child",
        String(stateMb),
        ...process.argv.slice(2),
      ],
      { stdio: "inherit" },
    );
    if (result.status !== 0) throw new Error(`the ${stateMb} MB run failed (exit ${result.status})`);
  }
}
