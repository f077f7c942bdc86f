// `npm run bench:checkpoint`: checkpoint latency (trigger -> manifest committed) for 1, 4 and 16
// TaskManagers holding 1 MB and 10 MB of state in all (and 1 x 100 MB), against the physical limit
// measured in the same run (the fastest of several ways to upload the same bytes to the same MinIO,
// in the same parallel shape, see raw-transfer.ts), the processing throughput lost while checkpoints
// run, and where the CPU went. Prints tables, writes bench/results/checkpoint.csv (a fixed contract),
// checkpoint-cpu.csv and raw-upload.csv. Runs against the local cluster's MinIO (started if needed).
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import path from "node:path";
import { readState } from "../src/devcluster/cluster.js";
import { HttpTaskManagerClient } from "../src/coordinator/http-task-manager-client.js";
import { MinioObjectStore, type StorageConfig } from "../src/storage/minio-object-store.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { LocalJob } from "../test/support/local-job.js";
import { sleep } from "../test/support/wait.js";
import { cpuSeconds, machineBusySeconds, percentile } from "./measure.js";
import { benchProcesses, benchStorage } from "./local-storage.js";
import { goUploadMs, timeUploads, uploadWays } from "./raw-transfer.js";

const allConfigs = [
  ...[1, 4, 16].flatMap((taskmanagers) => [1, 10].map((stateMb) => ({ taskmanagers, stateMb }))),
  { taskmanagers: 1, stateMb: 100 },
];
// BENCH_CONFIGS=1x10,4x10 runs only those (taskmanagers x state_mb); the CSV then holds only them.
const only = process.env.BENCH_CONFIGS?.split(",");
const configs = allConfigs.filter(
  (c) => only === undefined || only.includes(`${c.taskmanagers}x${c.stateMb}`),
);
// BENCH_CPU_PROF_DIR=<dir>: each TaskManager writes a V8 CPU profile there when it stops.
const cpuProfDir = process.env.BENCH_CPU_PROF_DIR;
// Throughput on this machine wanders by tens of percent over a minute, so windows without and with
// checkpoints alternate and their medians are compared.
const windowMs = Number(process.env.BENCH_WINDOW_MS ?? 3_000);
const rounds = 4;
const intervalMs = 1_000;
const rawUploadRounds = (stateMb: number) => (stateMb >= 100 ? 5 : 10);

/** CPU seconds a process has used (0 once it is gone): where the checkpoint's cost lands. */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

function minioPid(): number | undefined {
  return readState()?.processes.find((p) => p.name === "minio")?.pid;
}

interface Window {
  result: number;
  taskManagers: number;
  minio: number;
  machine: number;
}

/** Cores used by the TaskManagers and by MinIO while `work` runs. */
async function coresUsed<T>(
  job: LocalJob,
  work: () => Promise<T>,
): Promise<{ result: T; taskManagers: number; minio: number; machine: number }> {
  const pids = job.taskManagers.map((tm) => tm.process.pid);
  const total = () => pids.map(cpuSecondsOf).reduce((sum, seconds) => sum + seconds, 0);
  const tmBefore = total();
  const minioBefore = cpuSecondsOf(minioPid());
  const machineBefore = machineBusySeconds();
  const started = performance.now();
  const result = await work();
  const seconds = (performance.now() - started) / 1000;
  return {
    result,
    taskManagers: (total() - tmBefore) / seconds,
    minio: (cpuSecondsOf(minioPid()) - minioBefore) / seconds,
    machine: (machineBusySeconds() - machineBefore) / seconds,
  };
}

/** Records processed by all tasks so far, from their /v1/status. */
async function recordsProcessed(job: LocalJob): Promise<number> {
  const statuses = await Promise.all(
    job.taskManagers.map((tm) =>
      new HttpTaskManagerClient({ taskIndex: tm.taskIndex, baseUrl: tm.url, token: job.token }).status(),
    ),
  );
  return statuses.reduce((sum, s) => sum + s.recordsProcessed, 0);
}

async function throughput(job: LocalJob, windowMs: number): Promise<number> {
  const start = await recordsProcessed(job);
  const startedAt = Date.now();
  await sleep(windowMs);
  return ((await recordsProcessed(job)) - start) / ((Date.now() - startedAt) / 1000);
}

interface Cores {
  taskManagers: number;
  minio: number;
  machine: number;
}

interface Measurement {
  /** Of the retained checkpoints: the slowest task's synchronous snapshot and its encode + upload. */
  taskSyncMs: number;
  taskAsyncMs: number;
  latencies: number[];
  /** Median ms of each way of uploading the same bytes (raw-transfer.ts); null: not measured. */
  raw: Record<string, number | null>;
  idle: number;
  during: number;
  /** Cores used by the TaskManagers and MinIO while idle and while checkpointing. */
  cores: { idle: Cores; during: Cores };
}

async function measure(
  store: MinioObjectStore,
  storage: StorageConfig,
  taskmanagers: number,
  stateMb: number,
): Promise<Measurement> {
  const program = {
    name: path.join(repoRoot, "bench/jobs/ballast.mjs"),
    args: [
      "--state-bytes",
      String(stateMb * 1_000_000),
      "--partitions",
      String(Math.max(64, taskmanagers * 8)),
    ],
  };
  const job = new LocalJob({
    program,
    parallelism: taskmanagers,
    maxParallelism: 128,
    store,
    storage,
    policy: { intervalMs, timeoutMs: 30_000 },
    retained: 2,
    ...benchProcesses(cpuProfDir),
  });
  try {
    await job.deploy({ epoch: 1, parallelism: taskmanagers, program });
    await sleep(1_000); // every partition has written its key

    const windows: Record<"idle" | "during", Window[]> = { idle: [], during: [] };
    for (let round = 0; round < rounds; round++) {
      windows.idle.push(await coresUsed(job, () => throughput(job, windowMs)));
      job.coordinator!.start();
      windows.during.push(await coresUsed(job, () => throughput(job, windowMs)));
      await job.coordinator!.stop();
    }
    const median = (values: number[]) => percentile(values, 50);
    const summary = (list: Window[]) => ({
      records: median(list.map((w) => w.result)),
      taskManagers: median(list.map((w) => w.taskManagers)),
      minio: median(list.map((w) => w.minio)),
      machine: median(list.map((w) => w.machine)),
    });
    const idle = summary(windows.idle);
    const during = summary(windows.during);
    const last = job.completed.at(-1);
    if (!last) throw new Error(`no checkpoint completed for ${taskmanagers} x ${stateMb} MB`);
    const manifest = await job.manifest(last.checkpointId);
    // Retention keeps the last two manifests: their slowest task's snapshot (sync) and encode + upload (async).
    const retained = await Promise.all(job.completed.slice(-2).map((c) => job.manifest(c.checkpointId)));
    const taskMs = (field: "syncDurationMs" | "asyncDurationMs") =>
      percentile(
        retained.map((m) => Math.max(...m.tasks.map((t) => t[field]))),
        50,
      );

    // The physical limit: the same bytes, one object per task, uploaded in parallel, under the same load.
    const sizes = manifest.tasks.map((t) =>
      manifest.parts.filter((p) => p.taskIndex === t.taskIndex).reduce((s, p) => s + p.sizeBytes, 0),
    );
    const buffers = sizes.map((size) => randomBytes(size));
    const raw: Record<string, number | null> = {};
    for (const way of uploadWays(store, storage)) {
      raw[way.name] = await timeUploads(way, buffers, rawUploadRounds(stateMb));
    }
    raw["minio-go PutObject (independent client)"] = goUploadMs(
      store,
      storage,
      sizes,
      rawUploadRounds(stateMb),
    );
    return {
      taskSyncMs: taskMs("syncDurationMs"),
      taskAsyncMs: taskMs("asyncDurationMs"),
      latencies: job.completed.map((c) => c.durationMs),
      raw,
      idle: idle.records,
      during: during.records,
      cores: { idle, during },
    };
  } finally {
    await job.stop();
  }
}

async function main(): Promise<void> {
  const { storage: config, store } = await benchStorage();
  const rows: string[][] = [];
  const cpuRows: string[][] = [];
  const rawRows: string[][] = [];
  console.log(
    "taskmanagers  state_mb  checkpoints  p50_ms  p99_ms  raw_upload_ms  ratio  records/s(idle)  records/s(ckpt)  drop_pct  task_sync_ms  task_async_ms",
  );
  try {
    for (const { taskmanagers, stateMb } of configs) {
      const { latencies, raw, idle, during, cores, taskSyncMs, taskAsyncMs } = await measure(
        store,
        config,
        taskmanagers,
        stateMb,
      );
      const p50 = percentile(latencies, 50);
      const p99 = percentile(latencies, 99);
      const rawP50 = Math.min(...Object.values(raw).filter((ms) => ms !== null));
      const drop = Math.max(0, (1 - during / idle) * 100);
      rows.push(
        [taskmanagers, stateMb, p50.toFixed(0), p99.toFixed(0), rawP50.toFixed(0), drop.toFixed(1)].map(
          String,
        ),
      );
      for (const [way, ms] of Object.entries(raw)) {
        rawRows.push([String(taskmanagers), String(stateMb), `"${way}"`, ms === null ? "" : ms.toFixed(0)]);
      }
      cpuRows.push([taskmanagers, stateMb, ...cpuShares(idle, during, cores)].map(String));
      console.log(
        [
          String(taskmanagers).padStart(12),
          String(stateMb).padStart(8),
          String(latencies.length).padStart(11),
          p50.toFixed(0).padStart(6),
          p99.toFixed(0).padStart(6),
          rawP50.toFixed(0).padStart(13),
          (p50 / rawP50).toFixed(2).padStart(6),
          idle.toFixed(0).padStart(16),
          during.toFixed(0).padStart(15),
          drop.toFixed(1).padStart(9),
          taskSyncMs.toFixed(1).padStart(12),
          taskAsyncMs.toFixed(0).padStart(13),
        ].join("  "),
      );
    }
  } finally {
    await store.delete(await store.list(""));
    await store.client.removeBucket(store.bucket);
  }
  console.log(`\nraw upload of the same bytes, median ms by way (the fastest is raw_upload_ms):`);
  for (const row of rawRows) console.log(`  ${row[0]} x ${row[1]} MB  ${row[3]!.padStart(6)}  ${row[2]}`);
  console.log(`\nCPU (cores, medians over the windows) on ${cpus().length} cores:`);
  console.log(`  ${CPU_COLUMNS.join("  ")}`);
  for (const row of cpuRows)
    console.log(`  ${row.map((v, i) => v.padStart(CPU_COLUMNS[i]!.length)).join("  ")}`);
  // A run of some configurations (BENCH_CONFIGS) must not replace the whole run's figures.
  if (only === undefined) {
    writeCsv("checkpoint-cpu.csv", CPU_COLUMNS, cpuRows);
    writeCsv("raw-upload.csv", ["taskmanagers", "state_mb", "way", "p50_ms"], rawRows);
    writeCsv(
      "checkpoint.csv",
      ["taskmanagers", "state_mb", "p50_ms", "p99_ms", "raw_upload_ms", "throughput_drop_pct"],
      rows,
    );
  }
  console.log(
    `\nwrote bench/results/checkpoint.csv, checkpoint-cpu.csv, raw-upload.csv; state_mb is the whole job's state; ` +
      `throughput: median of ${rounds} windows of ${windowMs / 1000} s without and with checkpoints every ${intervalMs} ms; ` +
      `ratio = p50 / raw upload of the same bytes`,
  );
}

const CPU_COLUMNS = [
  "taskmanagers",
  "state_mb",
  "tm_cores_idle",
  "tm_cores_ckpt",
  "minio_cores_ckpt",
  "machine_busy_idle",
  "machine_busy_ckpt",
  "tm_checkpoint_cores",
  "drop_from_missing_cpu_pct",
  "drop_from_tm_checkpoint_work_pct",
];

/**
 * Where the processing lost in checkpoint windows went. At the idle windows' records per TaskManager
 * core, the checkpoint windows' records needed `during / perCore` cores; the rest of what the
 * TaskManagers used went to checkpoint work. The cores processing lost split exactly into the CPU
 * the TaskManagers did not get (tm_cores_idle - tm_cores_ckpt: taken by MinIO and everything else on
 * the machine) and their own checkpoint work. The two percentages are shares of the drop.
 */
function cpuShares(idle: number, during: number, cores: Measurement["cores"]): string[] {
  const perCore = idle / cores.idle.taskManagers;
  const processingCores = during / perCore;
  const lost = cores.idle.taskManagers - processingCores;
  const missing = cores.idle.taskManagers - cores.during.taskManagers;
  const checkpointWork = cores.during.taskManagers - processingCores;
  const share = (part: number) => (lost > 0 ? ((part / lost) * 100).toFixed(0) : "-");
  return [
    cores.idle.taskManagers.toFixed(2),
    cores.during.taskManagers.toFixed(2),
    cores.during.minio.toFixed(2),
    cores.idle.machine.toFixed(2),
    cores.during.machine.toFixed(2),
    checkpointWork.toFixed(2),
    share(missing),
    share(checkpointWork),
  ];
}

function writeCsv(name: string, columns: string[], rows: string[][]): void {
  const file = path.join(repoRoot, "bench/results", name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, [columns.join(","), ...rows.map((r) => r.join(","))].join("\n") + "\n");
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
