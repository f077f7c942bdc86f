// `npm run bench:restore`: restore of 4 TaskManagers x 100 MB of state against the raw download of
// the same part objects from the same MinIO (all at once, over kept-alive connections; see
// raw-transfer.ts), and the TaskManagers' peak RSS. The restore time is each TaskManager's own: from
// its log line "TaskManager listening" to "restored" (reading the parts and rebuilding the state);
// the job's restore is the slowest TaskManager's. Prints a table, writes bench/results/restore.csv.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { clusterDir } from "../src/devcluster/cluster.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { LocalJob, type TaskManagerProcess } from "../test/support/local-job.js";
import { sleep, waitFor } from "../test/support/wait.js";
import { percentile } from "./measure.js";
import { benchStorage } from "./local-storage.js";
import { download } from "./raw-transfer.js";

const taskmanagers = Number(process.env.BENCH_TASKMANAGERS ?? 4);
const stateMbPerTaskManager = Number(process.env.BENCH_STATE_MB_PER_TM ?? 100);
const rounds = 3;
const downloadRounds = 5;

/** Milliseconds from "TaskManager listening" to "restored" in the TaskManager's own log. */
function restoreMs(tm: TaskManagerProcess): number {
  const times: Record<string, number> = {};
  for (const line of readFileSync(tm.log, "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { time: number; msg: string };
    times[entry.msg] ??= entry.time;
  }
  const listening = times["TaskManager listening"];
  const restored = times.restored;
  if (listening === undefined || restored === undefined)
    throw new Error(`TaskManager ${tm.taskIndex}: no "listening" and "restored" lines in ${tm.log}`);
  return restored - listening;
}

/** The most memory the process has held (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

async function main(): Promise<void> {
  const { storage, store } = await benchStorage();
  const program = {
    name: path.join(repoRoot, "bench/jobs/ballast.mjs"),
    args: ["--state-bytes", String(taskmanagers * stateMbPerTaskManager * 1_000_000), "--partitions", "64"],
  };
  const job = new LocalJob({
    program,
    parallelism: taskmanagers,
    maxParallelism: 128,
    store,
    storage,
    policy: { intervalMs: 1_000, timeoutMs: 120_000 },
    retained: 1,
    logDir: path.join(clusterDir(), "logs", "bench"),
  });
  const restores: number[] = [];
  const peaks: number[] = [];
  const downloads: number[] = [];
  let stateBytes: number;
  try {
    await job.deploy({ epoch: 1, parallelism: taskmanagers, program });
    await sleep(1_000); // every partition has written its key
    job.coordinator!.start();
    await waitFor("a checkpoint", () => job.completed.length > 0, 120_000);
    await job.coordinator!.stop();
    const manifest = await job.manifest(job.completed.at(-1)!.checkpointId);
    stateBytes = manifest.parts.reduce((sum, p) => sum + p.sizeBytes, 0);
    for (let round = 0; round < rounds; round++) {
      await job.redeploy({
        restoreFrom: { checkpointId: manifest.checkpointId, manifestKey: job.completed.at(-1)!.manifestKey },
      });
      restores.push(Math.max(...job.taskManagers.map(restoreMs)));
      peaks.push(Math.max(...job.taskManagers.map((tm) => peakRssMiB(tm.process.pid!))));
      await job.coordinator!.stop();
      for (let i = 0; i < downloadRounds; i++) {
        const started = performance.now();
        const bytes = await download(
          store,
          manifest.parts.map((p) => p.key),
        );
        if (bytes !== stateBytes) throw new Error(`downloaded ${bytes} bytes of ${stateBytes}`);
        downloads.push(performance.now() - started);
      }
    }
  } finally {
    await job.stop();
    await store.delete(await store.list(""));
    await store.client.removeBucket(store.bucket);
  }
  const restore = percentile(restores, 50);
  const raw = percentile(downloads, 50);
  const peak = Math.max(...peaks);
  const row = [
    taskmanagers,
    (stateBytes / 1e6).toFixed(0),
    restore.toFixed(0),
    raw.toFixed(0),
    (restore / raw).toFixed(2),
    peak.toFixed(0),
  ];
  const columns = ["taskmanagers", "state_mb", "restore_ms", "raw_download_ms", "ratio", "tm_peak_rss_mib"];
  console.log(columns.join("  "));
  console.log(row.map((v, i) => String(v).padStart(columns[i]!.length)).join("  "));
  console.log(
    `\nrestore: median of ${rounds} restores (slowest TaskManager each, ${restores.map((ms) => ms.toFixed(0)).join(", ")} ms); ` +
      `raw download: median of ${downloads.length} parallel GETs of the same part objects; ` +
      `peak RSS: the largest VmHWM of a TaskManager`,
  );
  const file = path.join(repoRoot, "bench/results/restore.csv");
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${columns.join(",")}\n${row.join(",")}\n`);
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
