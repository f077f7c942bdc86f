// `npm run bench:dataflow`: the keyed dataflow's exchange (src/dataflow/) on real TaskManager
// processes (LocalJob) against the local cluster's MinIO, running bench/jobs/exchange.mjs: a
// rate-unlimited generated source sends fixed-size records through one keyBy exchange to a stage that
// only counts per key.
//
// 1. Exchange throughput with 2 and 4 TaskManagers (records/s of the keyed stage, and MB/s of record
//    payload), against the physical limit measured in the same run: the same framed bytes between
//    two processes over loopback TCP (raw-tcp.ts), also with the receiver's decoding and the
//    sender's encoding added.
// 2. Checkpoints every 1 s: duration p50/p99, trigger → every task's cut taken (TaskManager logs) and
//    barrier alignment p50/p99 (the coordinator's CompletedCheckpoint, i.e. the acks) with the keyed
//    stage, without backpressure (the source limited to 30% of what part 1 measured), with the
//    natural backpressure of the unlimited source, and with a deliberately slow stage (a spin of
//    BENCH_STAGE_US, default 100 µs, per record), plus the source's backpressure ratio as the acks
//    and /v1/status report it and how full the stage's input channels were.
// 3. The throughput lost while checkpointing every 1 s, as bench:checkpoint measures it: windows
//    without and with checkpoints alternate, medians compared (also per core the TaskManagers used).
//
// Writes bench/results/dataflow.csv. BENCH_TASKMANAGERS=2 and BENCH_PARTS (raw, exchange, drop,
// checkpoint; default raw,drop,checkpoint) restrict the run (no CSV then); BENCH_CPU_PROF_DIR=<dir>
// makes every TaskManager write a V8 CPU profile there, which this bench then splits into the
// exchange's shares (`tsx bench/dataflow.ts --profile <dir>` does only that).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { HttpTaskManagerClient } from "../src/coordinator/http-task-manager-client.js";
import type { TaskManagerStatus } from "../src/api/protocol.js";
import type { MinioObjectStore, StorageConfig } from "../src/storage/minio-object-store.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { LocalJob } from "../test/support/local-job.js";
import { sleep } from "../test/support/wait.js";
import { benchProcesses, benchStorage } from "./local-storage.js";
import { INPUT_CREDITS } from "../src/dataflow/channels.js";
import { cpuSeconds, machineBusySeconds, percentile } from "./measure.js";
import { RAW_WAYS, rawTcp, recordBytes, type RawTcpResult } from "./raw-tcp.js";
import { profileShares, type Frame, type ShareRule } from "./cpu-profiles.js";

const shape = { keys: 1024, valueBytes: Number(process.env.BENCH_VALUE_BYTES ?? 100) };
const PARTITIONS = 8;
const MAX_PARALLELISM = 128;
const STAGE = "count";
const taskManagerCounts = (process.env.BENCH_TASKMANAGERS ?? "2,4").split(",").map(Number);
// raw: part 1's limit; exchange: part 1's windows without checkpoints only; drop: those alternating
// with windows with checkpoints (parts 1 and 3); checkpoint: part 2.
const parts = new Set((process.env.BENCH_PARTS ?? "raw,drop,checkpoint").split(","));
const alternate = parts.has("drop");
const restricted = process.env.BENCH_TASKMANAGERS !== undefined || process.env.BENCH_PARTS !== undefined;
const cpuProfDir = process.env.BENCH_CPU_PROF_DIR;
const windowMs = Number(process.env.BENCH_WINDOW_MS ?? 3_000);
const rounds = 4;
const intervalMs = 1_000;
/** How long each checkpoint scenario of part 2 checkpoints. */
const checkpointingMs = Number(process.env.BENCH_CHECKPOINTING_MS ?? 12_000);
/** The slow stage's spin per record, microseconds. */
const slowStageUs = Number(process.env.BENCH_STAGE_US ?? 100);
/** Part 2 without backpressure: the source limited to this share of the exchange's throughput. */
const unthrottledShare = 0.3;
const DEFAULT_RATE = 20_000; // records/s per partition, when part 1 did not run
const FILL_SAMPLE_MS = 500;

const median = (values: number[]) => percentile(values, 50);
const p99 = (values: number[]) => percentile(values, 99);

function program(args: Record<string, number>): { name: string; args: string[] } {
  const all = { partitions: PARTITIONS, keys: shape.keys, "value-bytes": shape.valueBytes, ...args };
  return {
    name: path.join(repoRoot, "bench/jobs/exchange.mjs"),
    args: Object.entries(all).flatMap(([name, value]) => [`--${name}`, String(value)]),
  };
}

async function deploy(
  store: MinioObjectStore,
  storage: StorageConfig,
  taskmanagers: number,
  args: Record<string, number>,
): Promise<LocalJob> {
  const prog = program(args);
  const job = new LocalJob({
    program: prog,
    parallelism: taskmanagers,
    maxParallelism: MAX_PARALLELISM,
    store,
    storage,
    policy: { intervalMs, timeoutMs: 30_000 },
    retained: 2,
    ...benchProcesses(cpuProfDir),
  });
  await job.deploy({ epoch: 1, parallelism: taskmanagers, program: prog });
  return job;
}

async function statuses(job: LocalJob): Promise<TaskManagerStatus[]> {
  const all = await Promise.all(
    job.taskManagers.map((tm) =>
      new HttpTaskManagerClient({ taskIndex: tm.taskIndex, baseUrl: tm.url, token: job.token }).status(),
    ),
  );
  const halted = all.find((s) => s.dataflow?.halted !== undefined);
  if (halted) throw new Error(`task ${halted.taskIndex}: exchange halted: ${halted.dataflow!.halted}`);
  return all;
}

/** Per stage, summed over the tasks: records processed; and each task's backpressure per stage. */
async function stageFigures(job: LocalJob) {
  const all = await statuses(job);
  const records = (stageId: string) =>
    all.reduce(
      (sum, s) =>
        sum + (s.dataflow?.stages.find((stage) => stage.stageId === stageId)?.recordsProcessed ?? 0),
      0,
    );
  const backpressure = (stageId: string) =>
    all.map((s) => s.dataflow?.stages.find((stage) => stage.stageId === stageId)?.backpressure ?? 0);
  // Each task's stage has one input channel per task, each given INPUT_CREDITS credits.
  const inputFill = (stageId: string) =>
    all.map(
      (s) =>
        (s.dataflow?.stages.find((stage) => stage.stageId === stageId)?.queuedBuffers ?? 0) /
        (INPUT_CREDITS * all.length),
    );
  return { records, backpressure, inputFill };
}

interface Window {
  recordsPerSecond: number;
  /** Cores the TaskManagers used, and the whole machine. */
  taskManagerCores: number;
  machineCores: number;
  /** Records per second per core the TaskManagers used: what CPU taken by other processes does not move. */
  perCore: number;
  /** How full the keyed stage's input channels were: queued buffers / credits, mean of samples and tasks. */
  inputFill: number;
}

function cpuOf(job: LocalJob): number {
  return job.taskManagers.reduce((sum, tm) => {
    try {
      return sum + cpuSeconds(tm.process.pid!);
    } catch {
      return sum;
    }
  }, 0);
}

/** The keyed stage's records per second over `ms`, and the cores used meanwhile. */
async function window(job: LocalJob, ms: number): Promise<Window> {
  const before = {
    records: (await stageFigures(job)).records(STAGE),
    tm: cpuOf(job),
    machine: machineBusySeconds(),
  };
  const started = performance.now();
  const fills: number[] = [];
  for (let next = started + FILL_SAMPLE_MS; next < started + ms; next += FILL_SAMPLE_MS) {
    await sleep(next - performance.now());
    fills.push(...(await stageFigures(job)).inputFill(STAGE));
  }
  await sleep(started + ms - performance.now());
  const after = (await stageFigures(job)).records(STAGE);
  const seconds = (performance.now() - started) / 1000;
  const recordsPerSecond = (after - before.records) / seconds;
  const taskManagerCores = (cpuOf(job) - before.tm) / seconds;
  return {
    recordsPerSecond,
    taskManagerCores,
    machineCores: (machineBusySeconds() - before.machine) / seconds,
    perCore: recordsPerSecond / taskManagerCores,
    inputFill: mean(fills),
  };
}

interface CheckpointFigures {
  checkpoints: number;
  p50: number;
  p99: number;
  alignmentP50: number | undefined;
  alignmentP99: number | undefined;
  /** Trigger → the last task's cut taken (triggerToCut), p50. */
  toCutP50: number | undefined;
  /** The source's backpressure: median over the checkpoints of the highest a task acked. */
  backpressureAcks: number | undefined;
  /** The source's backpressure as /v1/status reported it at the end, mean over the tasks. */
  backpressureStatus: number;
  /** The keyed stage's input channels' fill while checkpointing (Window.inputFill). */
  inputFill: number;
}

/**
 * Per checkpoint: from the trigger to the last task's "checkpoint cut taken" (its TaskManager's log:
 * every keyed stage aligned), the time the barriers took to get through the channels and align.
 */
function triggerToCut(job: LocalJob): number[] {
  const cutAt = new Map<number, number>();
  for (const tm of job.taskManagers) {
    for (const line of tm.output().split("\n")) {
      if (!line.includes('"checkpoint cut taken"')) continue;
      const { checkpointId, time } = JSON.parse(line) as { checkpointId: number; time: number };
      cutAt.set(checkpointId, Math.max(cutAt.get(checkpointId) ?? 0, time));
    }
  }
  return job.completed.flatMap((c) => {
    const at = cutAt.get(c.checkpointId);
    return at === undefined ? [] : [at - c.triggeredAt];
  });
}

function checkpointFigures(job: LocalJob, backpressureStatus: number, inputFill: number): CheckpointFigures {
  const completed = job.completed;
  const toCut = triggerToCut(job);
  const alignments = completed.flatMap((c) => c.alignmentDurationMs ?? []);
  const backpressures = completed.flatMap((c) => c.backpressure?.source ?? []);
  return {
    checkpoints: completed.length,
    p50: median(completed.map((c) => c.durationMs)),
    p99: p99(completed.map((c) => c.durationMs)),
    alignmentP50: alignments.length > 0 ? median(alignments) : undefined,
    alignmentP99: alignments.length > 0 ? p99(alignments) : undefined,
    toCutP50: toCut.length > 0 ? median(toCut) : undefined,
    backpressureAcks: backpressures.length > 0 ? median(backpressures) : undefined,
    backpressureStatus,
    inputFill,
  };
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

interface ExchangeResult {
  taskmanagers: number;
  idle: Window;
  during: Window;
  checkpoints: CheckpointFigures;
}

/** Parts 1 and 3: windows without checkpoints (the exchange's throughput) and with, alternating. */
async function exchange(
  store: MinioObjectStore,
  storage: StorageConfig,
  taskmanagers: number,
): Promise<ExchangeResult> {
  const job = await deploy(store, storage, taskmanagers, {});
  try {
    await sleep(1_500); // warm-up: connections up, the JIT done
    const windows: Record<"idle" | "during", Window[]> = { idle: [], during: [] };
    let backpressure: number[] = [];
    for (let round = 0; round < rounds; round++) {
      windows.idle.push(await window(job, windowMs));
      if (!alternate) continue;
      job.coordinator!.start();
      windows.during.push(await window(job, windowMs));
      backpressure = (await stageFigures(job)).backpressure("source");
      await job.coordinator!.stop();
    }
    const summary = (list: Window[]): Window => ({
      recordsPerSecond: median(list.map((w) => w.recordsPerSecond)),
      taskManagerCores: median(list.map((w) => w.taskManagerCores)),
      machineCores: median(list.map((w) => w.machineCores)),
      perCore: median(list.map((w) => w.perCore)),
      inputFill: median(list.map((w) => w.inputFill)),
    });
    return {
      taskmanagers,
      idle: summary(windows.idle),
      during: summary(windows.during),
      checkpoints: checkpointFigures(job, mean(backpressure), summary(windows.during).inputFill),
    };
  } finally {
    await job.stop();
  }
}

interface CheckpointScenario {
  scenario: string;
  taskmanagers: number;
  recordsPerSecond: number;
  figures: CheckpointFigures;
}

/** Part 2: checkpoints every second for a while, on a fresh deployment. */
async function checkpointing(
  store: MinioObjectStore,
  storage: StorageConfig,
  taskmanagers: number,
  scenario: string,
  args: Record<string, number>,
): Promise<CheckpointScenario> {
  const job = await deploy(store, storage, taskmanagers, args);
  try {
    await sleep(1_000);
    job.coordinator!.start();
    const measured = await window(job, checkpointingMs);
    const backpressure = (await stageFigures(job)).backpressure("source");
    await job.coordinator!.stop();
    return {
      scenario,
      taskmanagers,
      recordsPerSecond: measured.recordsPerSecond,
      figures: checkpointFigures(job, mean(backpressure), measured.inputFill),
    };
  } finally {
    await job.stop();
  }
}

const fmt = (value: number | undefined, digits = 0) => (value === undefined ? "-" : value.toFixed(digits));
const row = (cells: (string | number)[], widths: number[]) =>
  cells
    .map((cell, i) => (i === 0 ? String(cell).padEnd(widths[0]!) : String(cell).padStart(widths[i]!)))
    .join("  ");

async function main(): Promise<void> {
  if (process.argv[2] === "--profile") {
    printProfileShares(process.argv[3] ?? cpuProfDir ?? "");
    return;
  }
  const startedLoad = loadavg()[0]!;
  const started = new Date();
  const bytesPerRecord = recordBytes(shape);
  console.log(
    `bench:dataflow on ${cpus().length} cores, load average ${startedLoad.toFixed(1)} at the start (${started.toISOString()}); ` +
      `records of ${shape.keys} keys with a ${shape.valueBytes}-byte value: ${bytesPerRecord} B of payload each`,
  );
  const { storage, store } = await benchStorage();
  const raw: RawTcpResult[] = [];
  const exchanges: ExchangeResult[] = [];
  const scenarios: CheckpointScenario[] = [];
  try {
    if (parts.has("raw")) {
      for (const way of RAW_WAYS) raw.push(await rawTcp(way, shape, { windows: 5, windowMs: 1_000 }));
    }
    if (parts.has("exchange") || alternate) {
      for (const taskmanagers of taskManagerCounts)
        exchanges.push(await exchange(store, storage, taskmanagers));
    }
    if (parts.has("checkpoint")) {
      for (const taskmanagers of taskManagerCounts) {
        const measured = exchanges.find((e) => e.taskmanagers === taskmanagers)?.idle.recordsPerSecond;
        const rate =
          measured === undefined
            ? DEFAULT_RATE
            : Math.max(100, Math.floor((measured * unthrottledShare) / PARTITIONS));
        scenarios.push(
          await checkpointing(
            store,
            storage,
            taskmanagers,
            `source limited to ${rate * PARTITIONS} records/s`,
            {
              rate,
            },
          ),
        );
        scenarios.push(
          await checkpointing(store, storage, taskmanagers, `slow stage (${slowStageUs} µs per record)`, {
            "stage-us": slowStageUs,
          }),
        );
      }
    }
    // The limit again at the end: the machine's load wanders over a run.
    if (parts.has("raw")) raw.push(await rawTcp("raw TCP", shape, { windows: 5, windowMs: 1_000 }));
  } finally {
    await store.delete(await store.list(""));
    await store.client.removeBucket(store.bucket);
  }

  // The limit is the faster of the two raw TCP runs (as bench:checkpoint takes the fastest way).
  const rawTcpRuns = raw.filter((r) => r.way === "raw TCP");
  const rawLimit = rawTcpRuns.length > 0 ? Math.max(...rawTcpRuns.map((r) => r.recordsPerSecond)) : undefined;
  const rawLimitRun = rawTcpRuns.find((r) => r.recordsPerSecond === rawLimit);
  const rawPerCore =
    rawLimitRun && rawLimitRun.recordsPerSecond / (rawLimitRun.senderCores + rawLimitRun.receiverCores);
  const rawDecode = raw.find((r) => r.way === "raw TCP + decode")?.recordsPerSecond;
  const csv: string[][] = [];
  const csvRow = (cells: Record<string, string | number | undefined>) =>
    csv.push(CSV_COLUMNS.map((column) => (cells[column] === undefined ? "" : String(cells[column]))));

  console.log(
    `\n1. Exchange throughput. MB/s is record payload: records/s × ${bytesPerRecord} B (computed from the record size; ` +
      `the TaskManagers count records, not bytes). A TaskManager's records to itself take an in-process link, so ` +
      `about (n-1)/n of the exchange's records cross TCP. "cores" is CPU the processes used (raw: sender + receiver); ` +
      `"per core" is records/s per core used, against raw TCP's.`,
  );
  const w1 = [34, 9, 10, 6, 8, 14, 24, 10, 8];
  console.log(
    row(
      ["way", "processes", "records/s", "MB/s", "of raw", "of raw+decode", "cores", "per core", "of raw"],
      w1,
    ),
  );
  const line = (
    name: string,
    processes: number,
    recordsPerSecond: number,
    cores: number,
    coresText: string,
  ) => {
    const pct = (of: number | undefined, digits = 1) =>
      of === undefined ? "-" : `${((recordsPerSecond / of) * 100).toFixed(digits)}%`;
    console.log(
      row(
        [
          name,
          processes,
          fmt(recordsPerSecond),
          fmt((recordsPerSecond * bytesPerRecord) / 1e6),
          pct(rawLimit),
          pct(rawDecode, 0),
          coresText,
          fmt(recordsPerSecond / cores),
          rawPerCore === undefined ? "-" : `${((recordsPerSecond / cores / rawPerCore) * 100).toFixed(1)}%`,
        ],
        w1,
      ),
    );
  };
  for (const [i, r] of raw.entries()) {
    const name = i === raw.length - 1 && raw.length > RAW_WAYS.length ? "raw TCP (again, at the end)" : r.way;
    const cores = r.senderCores + r.receiverCores;
    line(name, 2, r.recordsPerSecond, cores, `${r.senderCores.toFixed(2)} + ${r.receiverCores.toFixed(2)}`);
    csvRow({
      scenario: name,
      taskmanagers: 2,
      records_per_s: r.recordsPerSecond.toFixed(0),
      mb_per_s: (r.bytesPerSecond / 1e6).toFixed(1),
      ratio_to_raw_tcp: rawLimit && (r.recordsPerSecond / rawLimit).toFixed(3),
      cores: cores.toFixed(2),
    });
  }
  for (const e of exchanges) {
    const { recordsPerSecond, taskManagerCores, machineCores } = e.idle;
    line(
      `exchange, ${e.taskmanagers} TaskManagers`,
      e.taskmanagers,
      recordsPerSecond,
      taskManagerCores,
      `${taskManagerCores.toFixed(2)} (machine ${machineCores.toFixed(2)})`,
    );
  }
  if (rawLimit !== undefined && exchanges.length > 0) {
    const best = Math.max(...exchanges.map((e) => e.idle.recordsPerSecond));
    console.log(
      `raw TCP limit: the faster run, ${fmt(rawLimit)} records/s (${fmt((rawLimit * bytesPerRecord) / 1e6)} MB/s). ` +
        `Goal: the exchange ≥ 50% of it: ${((best / rawLimit) * 100).toFixed(1)}% at best: ${best / rawLimit >= 0.5 ? "MET" : "MISSED"}`,
    );
  }

  console.log(
    `\n2. Checkpoints every ${intervalMs} ms with the keyed stage: duration trigger → manifest committed, and barrier ` +
      `alignment (the longest of any task, from the acks); to_cut: trigger → the last task's cut taken (TaskManager ` +
      `logs): the barriers' way through the queued buffers plus the alignment; the source's backpressure (share of time it waited for ` +
      `credit) as the acks (median over checkpoints of the highest task) and /v1/status (mean over tasks, at the end) ` +
      `report it; input_fill: how full the keyed stage's input channels were (queued buffers / credits, status every ` +
      `${FILL_SAMPLE_MS} ms), which a stage that cannot keep up fills whatever the source's clock says.`,
  );
  const w2 = [46, 3, 11, 6, 6, 10, 9, 9, 7, 9, 10, 9];
  console.log(
    row(
      [
        "scenario",
        "TMs",
        "checkpoints",
        "p50_ms",
        "p99_ms",
        "to_cut_p50",
        "align_p50",
        "align_p99",
        "bp_acks",
        "bp_status",
        "input_fill",
        "records/s",
      ],
      w2,
    ),
  );
  const scenarioRows: CheckpointScenario[] = [
    ...scenarios.filter((s) => s.scenario.startsWith("source limited")),
    ...exchanges
      .filter(() => alternate)
      .map((e) => ({
        scenario: "unlimited source (part 3's checkpoint windows)",
        taskmanagers: e.taskmanagers,
        recordsPerSecond: e.during.recordsPerSecond,
        figures: e.checkpoints,
      })),
    ...scenarios.filter((s) => s.scenario.startsWith("slow stage")),
  ];
  for (const s of scenarioRows) {
    const f = s.figures;
    console.log(
      row(
        [
          s.scenario,
          s.taskmanagers,
          f.checkpoints,
          fmt(f.p50),
          fmt(f.p99),
          fmt(f.toCutP50),
          fmt(f.alignmentP50),
          fmt(f.alignmentP99),
          fmt(f.backpressureAcks, 2),
          f.backpressureStatus.toFixed(2),
          f.inputFill.toFixed(2),
          fmt(s.recordsPerSecond),
        ],
        w2,
      ),
    );
    if (!s.scenario.startsWith("unlimited")) {
      csvRow({
        scenario: s.scenario,
        taskmanagers: s.taskmanagers,
        records_per_s: s.recordsPerSecond.toFixed(0),
        mb_per_s: ((s.recordsPerSecond * bytesPerRecord) / 1e6).toFixed(1),
        ...checkpointCells(f),
      });
    }
  }
  if (scenarioRows.length > 0) {
    console.log("(with about 12 checkpoints per row, p99 is the slowest one)");
  }

  console.log(
    `\n3. Throughput lost while checkpointing every ${intervalMs} ms: median of ${rounds} windows of ${windowMs / 1000} s ` +
      `without checkpoints against ${rounds} with, alternating. Per core: records/s per core the TaskManagers used ` +
      `(in each window, then medians): other processes taking CPU from the TaskManagers do not move it, their own ` +
      `checkpoint work does.`,
  );
  const w3 = [3, 15, 15, 8, 13, 13, 16, 16, 17];
  console.log(
    row(
      [
        "TMs",
        "records/s(idle)",
        "records/s(ckpt)",
        "drop_pct",
        "tm_cores_idle",
        "tm_cores_ckpt",
        "per_core(idle)",
        "per_core(ckpt)",
        "drop_per_core_pct",
      ],
      w3,
    ),
  );
  for (const e of exchanges.filter(() => alternate)) {
    const drop = Math.max(0, (1 - e.during.recordsPerSecond / e.idle.recordsPerSecond) * 100);
    const dropPerCore = Math.max(0, (1 - e.during.perCore / e.idle.perCore) * 100);
    console.log(
      row(
        [
          e.taskmanagers,
          fmt(e.idle.recordsPerSecond),
          fmt(e.during.recordsPerSecond),
          drop.toFixed(1),
          e.idle.taskManagerCores.toFixed(2),
          e.during.taskManagerCores.toFixed(2),
          fmt(e.idle.perCore),
          fmt(e.during.perCore),
          dropPerCore.toFixed(1),
        ],
        w3,
      ),
    );
    csvRow({
      scenario: "exchange, unlimited source",
      taskmanagers: e.taskmanagers,
      records_per_s: e.idle.recordsPerSecond.toFixed(0),
      mb_per_s: ((e.idle.recordsPerSecond * bytesPerRecord) / 1e6).toFixed(1),
      ratio_to_raw_tcp: rawLimit && (e.idle.recordsPerSecond / rawLimit).toFixed(3),
      cores: e.idle.taskManagerCores.toFixed(2),
      ...checkpointCells(e.checkpoints),
      records_per_s_ckpt: e.during.recordsPerSecond.toFixed(0),
      drop_pct: drop.toFixed(1),
      drop_per_core_pct: dropPerCore.toFixed(1),
    });
  }

  console.log(
    `\nload average ${startedLoad.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end; ` +
      `${((Date.now() - started.getTime()) / 1000).toFixed(0)} s in all`,
  );
  if (!restricted) {
    const file = path.join(repoRoot, "bench/results/dataflow.csv");
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, [CSV_COLUMNS.join(","), ...csv.map((r) => r.map(quote).join(","))].join("\n") + "\n");
    console.log("wrote bench/results/dataflow.csv");
  }
  if (cpuProfDir !== undefined) printProfileShares(cpuProfDir);
}

const CSV_COLUMNS = [
  "scenario",
  "taskmanagers",
  "records_per_s",
  "mb_per_s",
  "ratio_to_raw_tcp",
  "cores",
  "checkpoints",
  "ckpt_p50_ms",
  "ckpt_p99_ms",
  "trigger_to_cut_p50_ms",
  "alignment_p50_ms",
  "alignment_p99_ms",
  "source_backpressure_acks",
  "source_backpressure_status",
  "input_fill",
  "records_per_s_ckpt",
  "drop_pct",
  "drop_per_core_pct",
];

function checkpointCells(f: CheckpointFigures): Record<string, string | number | undefined> {
  return {
    checkpoints: f.checkpoints,
    ckpt_p50_ms: fmt(f.p50),
    ckpt_p99_ms: fmt(f.p99),
    trigger_to_cut_p50_ms: f.toCutP50,
    alignment_p50_ms: f.alignmentP50,
    alignment_p99_ms: f.alignmentP99,
    source_backpressure_acks: f.backpressureAcks?.toFixed(3),
    source_backpressure_status: f.backpressureStatus.toFixed(3),
    input_fill: f.inputFill.toFixed(3),
  };
}

function quote(cell: string): string {
  return /[",]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell;
}

// --- Where a TaskManager's main thread goes, from V8 CPU profiles (as bench/profile-summary.ts does
// for checkpoints, with the exchange's shares). Each sample goes to the first rule its stack matches.

const inFile = (name: string) => (f: Frame) => f.url.endsWith(name);
const named =
  (file: string, ...names: string[]) =>
  (f: Frame) =>
    f.url.endsWith(file) && names.includes(f.functionName);
const isStartup = (f: Frame) =>
  f.url.startsWith("node:internal/modules") || f.functionName === "compileSourceTextModule";
/** A keyed stage's drain (it runs from setImmediate) vs the source loop (TaskRuntime.run). */
const inStage = named("/dataflow/dataflow-runtime.js", "drain");
const inSource = named("/runtime/task-runtime.js", "run");

/**
 * The shares, tried in order; a stack is leaf first. JSON.stringify and JSON.parse are builtins V8
 * does not show as frames: they are the self time of OutputChannel.flush (one call per buffer) and of
 * KeyedStageInstance.process/decode.
 */
const profileRules: ShareRule[] = [
  ["idle", (leaf) => leaf.functionName === "(idle)"],
  ["garbage collection", (leaf) => leaf.functionName === "(garbage collector)"],
  ["(program): native, unattributed", (leaf) => leaf.functionName === "(program)"],
  ["start-up: loading and compiling modules", (_, s) => s.some(isStartup)],
  [
    "status and checkpoint HTTP, checkpoints",
    (_, s) =>
      s.some(
        (f) =>
          /\/(server|checkpoints|state-part|storage)\//.test(f.url) ||
          /\/node_modules\/(express|minio|router|body-parser)\//.test(f.url),
      ),
  ],
  [
    "send: key group of the key (route: murmur3)",
    (_, s) =>
      s.some(named("/dataflow/dataflow-runtime.js", "route")) &&
      s.some(named("/api/key-groups.js", "keyGroupForKey")),
  ],
  [
    "send: JSON.stringify per buffer (OutputChannel.flush)",
    (leaf) => named("/dataflow/channels.js", "flush", "splitIntoFrames")(leaf),
  ],
  [
    "send: Buffer.from, frame, socket write (flush, pump)",
    (_, s) => s.some(named("/dataflow/channels.js", "flush", "enqueue", "pump", "barrier")),
  ],
  [
    "send: records into the buffer (OutputChannel.add)",
    (_, s) => s.some(named("/dataflow/channels.js", "add")),
  ],
  [
    "receive: key group per record, checked (decode: murmur3)",
    (_, s) =>
      s.some(named("/dataflow/dataflow-runtime.js", "decode")) &&
      s.some(named("/api/key-groups.js", "keyGroupForKey")),
  ],
  [
    "stage: key group again for state get/put (cache miss)",
    (_, s) => s.some(inStage) && s.some(named("/api/key-groups.js", "keyGroupForKey")),
  ],
  [
    "stage: the job's code, state get/put (the rest)",
    (_, s) => s.some(inStage) && s.some(inFile("/bench/jobs/exchange.mjs")),
  ],
  [
    "receive: JSON.parse, toString, record loop (process)",
    (_, s) => s.some(inStage) && s.some(named("/dataflow/dataflow-runtime.js", "process")),
  ],
  [
    "receive: socket reads, frame decoding, credits back",
    (_, s) =>
      s.some(inFile("/dataflow/frames.js")) ||
      s.some(named("/dataflow/channels.js", "take", "receiveData")) ||
      s.some(inFile("/dataflow/exchange.js")),
  ],
  ["source: generating records, the source loop", (_, s) => s.some(inSource)],
  [
    "scheduling, alignment, rest of the dataflow runtime",
    (_, s) => s.some((f) => f.url.includes("/dataflow/")),
  ],
  [
    "other socket and stream I/O",
    (_, s) => s.some((f) => /^node:(net$|internal\/stream_base_commons|internal\/streams)/.test(f.url)),
  ],
  ["the rest", () => true],
];

function printProfileShares(dir: string): void {
  const { files, micros: total } = profileShares(dir, profileRules);
  const all = [...total.values()].reduce((a, b) => a + b, 0);
  const excluded = ["idle", "start-up: loading and compiling modules"];
  const processing = all - excluded.reduce((sum, name) => sum + total.get(name)!, 0);
  console.log(
    `\nTaskManager main threads, ${files} profiles in ${dir}: ${(all / 1e6).toFixed(1)} s, ` +
      `${(processing / 1e6).toFixed(1)} s processing (neither idle nor start-up); shares of processing add up to 100%`,
  );
  console.log(`${"share".padEnd(56)} ${"s".padStart(7)} ${"%".padStart(6)}`);
  for (const [share, us] of total) {
    const pct = excluded.includes(share) ? "" : ((us / processing) * 100).toFixed(1);
    console.log(`${share.padEnd(56)} ${(us / 1e6).toFixed(2).padStart(7)} ${pct.padStart(6)}`);
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
