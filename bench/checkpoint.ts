// `npm run bench:checkpoint`: checkpoint latency (trigger -> manifest committed) for 1, 4 and 16
// TaskManagers holding 1 MB and 10 MB of state in all, against the physical limit measured in the
// same run (a raw upload of the same bytes to the same MinIO, in the same parallel shape), and the
// processing throughput lost while checkpoints run. Prints a table, writes
// bench/results/checkpoint.csv. Runs against the local cluster's MinIO (started if needed).
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { clusterDir, readState } from "../src/devcluster/cluster.js";
import { HttpTaskManagerClient } from "../src/coordinator/http-task-manager-client.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
  type StorageConfig,
} from "../src/storage/minio-object-store.js";
import { LocalCluster, repoRoot } from "../test/support/local-cluster.js";
import { LocalJob } from "../test/support/local-job.js";
import { storageSecretData } from "../test/support/storage.js";
import { sleep } from "../test/support/wait.js";
import { cpuSeconds, percentile } from "./measure.js";

const configs = [1, 4, 16].flatMap((taskmanagers) => [1, 10].map((stateMb) => ({ taskmanagers, stateMb })));
// Throughput on this machine wanders by tens of percent over a minute, so windows without and with
// checkpoints alternate and their medians are compared.
const windowMs = Number(process.env.BENCH_WINDOW_MS ?? 3_000);
const rounds = 4;
const intervalMs = 1_000;
const rawUploadRounds = 10;

async function storage() {
  const cluster = new LocalCluster(clusterDir());
  cluster.cli("up");
  return storageConfigFromSecret(await storageSecretData(cluster.clients().core));
}

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
}

/** Cores used by the TaskManagers and by MinIO while `work` runs. */
async function coresUsed<T>(
  job: LocalJob,
  work: () => Promise<T>,
): Promise<{ result: T; taskManagers: number; minio: number }> {
  const pids = job.taskManagers.map((tm) => tm.process.pid);
  const total = () => pids.map(cpuSecondsOf).reduce((sum, seconds) => sum + seconds, 0);
  const tmBefore = total();
  const minioBefore = cpuSecondsOf(minioPid());
  const started = performance.now();
  const result = await work();
  const seconds = (performance.now() - started) / 1000;
  return {
    result,
    taskManagers: (total() - tmBefore) / seconds,
    minio: (cpuSecondsOf(minioPid()) - minioBefore) / seconds,
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

interface Measurement {
  latencies: number[];
  raw: number[];
  idle: number;
  during: number;
  /** Cores used by the TaskManagers and MinIO while idle and while checkpointing. */
  cores: { idle: { taskManagers: number; minio: number }; during: { taskManagers: number; minio: number } };
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
    logDir: path.join(clusterDir(), "logs", "bench"),
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
    });
    const idle = summary(windows.idle);
    const during = summary(windows.during);
    const last = job.completed.at(-1);
    if (!last) throw new Error(`no checkpoint completed for ${taskmanagers} x ${stateMb} MB`);
    const manifest = await job.manifest(last.checkpointId);

    // The physical limit: the same bytes, one object per task, uploaded in parallel, under the same load.
    const buffers = manifest.tasks.map((t) =>
      randomBytes(
        manifest.parts.filter((p) => p.taskIndex === t.taskIndex).reduce((s, p) => s + p.sizeBytes, 0),
      ),
    );
    const raw: number[] = [];
    for (let round = 0; round < rawUploadRounds; round++) {
      const started = performance.now();
      await Promise.all(buffers.map((buffer, i) => store.put(`raw/${round}/task-${i}`, buffer)));
      raw.push(performance.now() - started);
    }
    return {
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
  const config = await storage();
  const store = new MinioObjectStore({ ...config, bucket: `bench-${randomBytes(3).toString("hex")}` });
  await ensureBucket(store);
  const rows: string[][] = [];
  console.log(
    "taskmanagers  state_mb  checkpoints  p50_ms  p99_ms  raw_upload_ms  ratio  records/s(idle)  records/s(ckpt)  drop_pct  tm_cores(idle/ckpt)  minio_cores(ckpt)",
  );
  try {
    for (const { taskmanagers, stateMb } of configs) {
      const { latencies, raw, idle, during, cores } = await measure(store, config, taskmanagers, stateMb);
      const p50 = percentile(latencies, 50);
      const p99 = percentile(latencies, 99);
      const rawP50 = percentile(raw, 50);
      const drop = Math.max(0, (1 - during / idle) * 100);
      rows.push(
        [taskmanagers, stateMb, p50.toFixed(0), p99.toFixed(0), rawP50.toFixed(0), drop.toFixed(1)].map(
          String,
        ),
      );
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
          `${cores.idle.taskManagers.toFixed(2)}/${cores.during.taskManagers.toFixed(2)}`.padStart(19),
          cores.during.minio.toFixed(2).padStart(17),
        ].join("  "),
      );
    }
  } finally {
    await store.delete(await store.list(""));
    await store.client.removeBucket(store.bucket);
  }
  const file = path.join(repoRoot, "bench/results/checkpoint.csv");
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(
    file,
    [
      "taskmanagers,state_mb,p50_ms,p99_ms,raw_upload_ms,throughput_drop_pct",
      ...rows.map((r) => r.join(",")),
    ].join("\n") + "\n",
  );
  console.log(
    `\nwrote ${path.relative(repoRoot, file)}; state_mb is the whole job's state; ` +
      `throughput: median of ${rounds} windows of ${windowMs / 1000} s without and with checkpoints every ${intervalMs} ms; ` +
      `ratio = p50 / raw upload of the same bytes`,
  );
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
