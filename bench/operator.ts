// `npm run bench:operator`: the operator's own latencies and idle cost against issue 4's targets, on
// a local cluster of its own (.devcluster/bench, started here and stopped at the end unless
// KEEP_CLUSTER=1), with the operator installed by its Helm chart as users install it:
//
//   1. recovery: one TaskManager SIGKILLed (pid from the pod's containerID) or its pod deleted,
//      alternately, until processing resumed in the new epoch; beside Flink's default heartbeat
//      timeout, the time a lost TaskManager can go unnoticed there
//   2. spec change → the operator's first observable action: savepointNonce (a savepoint) and
//      parallelism (checkpoint, then redeploy)
//   3. many suspended StreamJobs ("idle": they never run pods): the operator's RSS and CPU from
//      /proc, and the API requests made while nothing changes, from kube-apiserver's /metrics
//
// Every time is taken in this process with performance.now(): watch events (pods and StreamJobs)
// are timestamped on arrival, TaskManagers are polled over HTTP. Prints tables with targets and
// PASS/MISS, writes bench/results/operator.csv.
//
//   npm run bench:operator -- --runs 10 --spec-runs 20 --scale-runs 2 --idle-jobs 50 --idle-seconds 60
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubernetesObject,
  type V1Pod,
} from "@kubernetes/client-node";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs, promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import { TaskManagerStatus } from "../src/api/protocol.js";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../src/api/streamjob.js";
import { repoRoot } from "../src/devcluster/assets.js";
import { waitFor as waitUntil } from "../test/integration/support/cluster.js";
import {
  MinioObjectStore,
  STORAGE_SECRET_NAME,
  storageConfigFromSecret,
} from "../src/storage/minio-object-store.js";

// ── settings ───────────────────────────────────────────────────────────────────────────────────

const { values: flags } = parseArgs({
  options: {
    runs: { type: "string", default: "10" },
    "spec-runs": { type: "string", default: "20" },
    "scale-runs": { type: "string", default: "2" },
    "idle-jobs": { type: "string", default: "50" },
    "idle-seconds": { type: "string", default: "60" },
  },
  strict: true,
});
function count(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`--${name}: expected a whole number, got ${text}`);
  return value;
}
const RUNS = count("runs", flags.runs);
const SPEC_RUNS = count("spec-runs", flags["spec-runs"]);
const SCALE_RUNS = count("scale-runs", flags["scale-runs"]);
const IDLE_JOBS = count("idle-jobs", flags["idle-jobs"]);
const IDLE_SECONDS = count("idle-seconds", flags["idle-seconds"]);
const KEEP_CLUSTER = process.env.KEEP_CLUSTER === "1";

const clusterDir = path.join(repoRoot, ".devcluster", "bench");
const kubeconfigPath = path.join(clusterDir, "kubeconfig");
const chartPath = path.join(repoRoot, "charts", "streamjob-operator");
const JOB = "sequence";
const TASKMANAGER_PORT = 8080;
const FLINK_HEARTBEAT_TIMEOUT_S = 50;
/** The bench job's restart policy: runs are spaced so that its backoff never delays a restart. */
const RESTART = { maxRestarts: 1000, backoff: { initial: "1s", max: "4s" } };
const BACKOFF_MAX_MS = 4_000;
const CHECKPOINT_INTERVAL = "2s";
/** 64 keys at 10 records/s: each TaskManager owns some keys and counts up every few ms. */
const JOB_ARGS = ["--keys", "64", "--rate", "10"];
const TM_POLL_MS = 50;
/** Targets of issue 4. */
const TARGETS = {
  recoveryP50S: 3,
  recoveryP99S: 10,
  specChangeP99Ms: 1_000,
  rssMiB: 150,
  cpuPercent: 2,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const execFileAsync = promisify(execFile);
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

// ── the cluster and its tools ──────────────────────────────────────────────────────────────────

const toolEnv = {
  ...process.env,
  KUBECONFIG: kubeconfigPath,
  DEVCLUSTER_DIR: clusterDir,
  HELM_CACHE_HOME: path.join(clusterDir, "helm", "cache"),
  HELM_CONFIG_HOME: path.join(clusterDir, "helm", "config"),
  HELM_DATA_HOME: path.join(clusterDir, "helm", "data"),
};

function cli(command: "up" | "down"): void {
  const result = spawnSync(process.execPath, [path.join(repoRoot, "dist/devcluster/cli.js"), command], {
    stdio: "inherit",
    env: toolEnv,
  });
  if (result.status !== 0) throw new Error(`\`cli.js ${command}\` for ${clusterDir} failed`);
}

async function tool(name: "kubectl" | "helm", args: string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(path.join(clusterDir, "bin", name), args, {
      env: toolEnv,
      maxBuffer: 64 * 1024 * 1024,
      timeout: timeoutMs,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${name} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

/** Waiting, checked every 20 ms: the bench times what it waits for. */
function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  intervalMs = 20,
): Promise<T> {
  return waitUntil(what, check, timeoutMs, intervalMs);
}

// ── pods ───────────────────────────────────────────────────────────────────────────────────────

const label = (obj: KubernetesObject, key: string) => obj.metadata?.labels?.[key];
const jobOf = (pod: V1Pod) => label(pod, "streamjob.dev/job");
const epochOf = (pod: V1Pod) => Number(label(pod, "streamjob.dev/epoch") ?? NaN);
const taskOf = (pod: V1Pod) => Number(label(pod, "streamjob.dev/task-index") ?? NaN);
const deleting = (pod: V1Pod) => pod.metadata?.deletionTimestamp !== undefined;
const isReady = (pod: V1Pod) =>
  pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
const createdMs = (obj: KubernetesObject) => new Date(obj.metadata?.creationTimestamp ?? 0).getTime();

/** The pid of the pod's first container (the node agent reports `local://<pid>`). */
function containerPid(pod: V1Pod): number {
  const id = pod.status?.containerStatuses?.[0]?.containerID ?? "";
  const pid = Number(id.replace("local://", ""));
  if (!Number.isInteger(pid) || pid <= 0)
    throw new Error(`no running process for ${pod.metadata?.name}: ${id}`);
  return pid;
}

/** Records processed by one TaskManager so far, with its epoch; undefined while it does not answer. */
async function taskManagerStatus(ip: string, token: string): Promise<TaskManagerStatus | undefined> {
  try {
    const res = await fetch(`http://${ip}:${TASKMANAGER_PORT}/v1/status`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(1_000),
    });
    if (!res.ok) return undefined;
    return TaskManagerStatus.parse(await res.json());
  } catch {
    return undefined;
  }
}

// ── what the cluster tells us, timestamped on arrival ──────────────────────────────────────────

interface Logged {
  t: number;
  kind: "pod" | "job";
  verb: "add" | "update" | "delete";
  obj: KubernetesObject;
}

/** Watches the bench namespace's pods and StreamJobs; keeps every event with its arrival time. */
class Observer {
  readonly log: Logged[] = [];
  readonly pods = new Map<string, V1Pod>();
  readonly jobs = new Map<string, StreamJob>();
  /** When every pod of an epoch of JOB was first Ready at the same time (JOB's spec.parallelism of them). */
  readonly epochReadyAt = new Map<number, number>();
  /** When the first pod of an epoch of JOB was seen. */
  readonly epochSeenAt = new Map<number, number>();
  private readonly informers: Informer<KubernetesObject>[] = [];
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly namespace: string,
  ) {}

  async start(): Promise<void> {
    const { kc, namespace } = this;
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const pods = makeInformer<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, () =>
      core.listNamespacedPod({ namespace }),
    );
    const jobs = makeInformer<KubernetesObject>(
      kc,
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`,
      () => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL }),
    );
    for (const verb of ["add", "update", "delete"] as const) {
      pods.on(verb, (pod) => this.record("pod", verb, pod));
      jobs.on(verb, (job) => this.record("job", verb, job));
    }
    this.informers.push(pods as Informer<KubernetesObject>, jobs);
    for (const informer of this.informers) {
      informer.on("error", () => {
        if (!this.stopped) setTimeout(() => void informer.start().catch(() => undefined), 500);
      });
    }
    await Promise.all(this.informers.map((informer) => informer.start()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.informers.map((informer) => informer.stop().catch(() => undefined)));
  }

  job(name = JOB): StreamJob {
    const job = this.jobs.get(name);
    if (!job) throw new Error(`StreamJob ${name} is not in the watch cache`);
    return job;
  }

  /** Live pods of JOB (not being deleted), optionally of one epoch, by task index. */
  jobPods(epoch?: number): V1Pod[] {
    return [...this.pods.values()]
      .filter(
        (pod) => jobOf(pod) === JOB && !deleting(pod) && (epoch === undefined || epochOf(pod) === epoch),
      )
      .sort((a, b) => taskOf(a) - taskOf(b));
  }

  /** The first event logged at index `from` or later that matches, waiting up to `timeoutMs`. */
  first(what: string, from: number, match: (event: Logged) => boolean, timeoutMs: number): Promise<Logged> {
    let next = from;
    return waitFor(
      what,
      () => {
        for (; next < this.log.length; next++) if (match(this.log[next]!)) return this.log[next];
        return undefined;
      },
      timeoutMs,
    );
  }

  private record(kind: Logged["kind"], verb: Logged["verb"], obj: KubernetesObject): void {
    const t = performance.now();
    this.log.push({ t, kind, verb, obj });
    const name = obj.metadata?.name ?? "";
    const map = (kind === "pod" ? this.pods : this.jobs) as Map<string, KubernetesObject>;
    if (verb === "delete") map.delete(name);
    else map.set(name, obj);
    if (kind !== "pod" || jobOf(obj) !== JOB) return;
    const epoch = epochOf(obj);
    if (!this.epochSeenAt.has(epoch)) this.epochSeenAt.set(epoch, t);
    const parallelism = this.jobs.get(JOB)?.spec.parallelism;
    const pods = this.jobPods(epoch);
    if (parallelism && !this.epochReadyAt.has(epoch) && pods.length >= parallelism && pods.every(isReady))
      this.epochReadyAt.set(epoch, t);
  }
}

// ── results ────────────────────────────────────────────────────────────────────────────────────

interface Row {
  section: string;
  metric: string;
  unit: string;
  values?: number[];
  value?: number;
  target: string;
  pass?: boolean;
  note?: string;
}
const rows: Row[] = [];
const errors: string[] = [];

function distribution(values: number[]) {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : NaN,
  };
}

const verdict = (pass: boolean | undefined) => (pass === undefined ? "" : pass ? "PASS" : "MISS");
const fmt = (value: number, unit: string) =>
  Number.isNaN(value)
    ? "-"
    : ["ms", "requests", "passes", "jobs"].includes(unit)
      ? value.toFixed(0)
      : value.toFixed(2);

function printTables(): void {
  const dist = rows.filter((row) => row.values);
  const single = rows.filter((row) => !row.values);
  const width = Math.max(...rows.map((row) => `${row.metric} (${row.unit})`.length), 20);
  console.log("");
  console.log(
    `${"metric".padEnd(width)}  ${"n".padStart(3)}  ${"p50".padStart(7)}  ${"p95".padStart(7)}  ${"p99".padStart(7)}  ${"max".padStart(7)}  ${"target".padEnd(14)}  result`,
  );
  for (const row of dist) {
    const d = distribution(row.values!);
    console.log(
      [
        `${row.metric} (${row.unit})`.padEnd(width),
        String(d.n).padStart(3),
        fmt(d.p50, row.unit).padStart(7),
        fmt(d.p95, row.unit).padStart(7),
        fmt(d.p99, row.unit).padStart(7),
        fmt(d.max, row.unit).padStart(7),
        row.target.padEnd(14),
        verdict(row.pass),
      ].join("  "),
    );
  }
  if (single.length === 0) return;
  console.log("");
  console.log(`${"metric".padEnd(width)}  ${"value".padStart(9)}  ${"target".padEnd(14)}  result  note`);
  for (const row of single) {
    console.log(
      [
        `${row.metric} (${row.unit})`.padEnd(width),
        fmt(row.value ?? NaN, row.unit).padStart(9),
        row.target.padEnd(14),
        verdict(row.pass).padEnd(6),
        row.note ?? "",
      ].join("  "),
    );
  }
}

function writeCsv(): string {
  const file = path.join(repoRoot, "bench/results/operator.csv");
  mkdirSync(path.dirname(file), { recursive: true });
  const quote = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
  const lines = rows.map((row) => {
    const d = row.values ? distribution(row.values) : undefined;
    const num = (value: number | undefined) =>
      value === undefined || Number.isNaN(value) ? "" : String(Math.round(value * 1000) / 1000);
    return [
      row.section,
      row.metric.trim(),
      row.unit,
      d ? String(d.n) : "",
      num(d?.p50),
      num(d?.p95),
      num(d?.p99),
      num(d?.max),
      num(row.value),
      row.target,
      verdict(row.pass),
      row.note ?? "",
    ]
      .map(quote)
      .join(",");
  });
  writeFileSync(
    file,
    ["section,metric,unit,n,p50,p95,p99,max,value,target,result,note", ...lines].join("\n") + "\n",
  );
  return file;
}

// ── the bench ──────────────────────────────────────────────────────────────────────────────────

interface Context {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  namespace: string;
  bucket: string;
  obs: Observer;
  release: string;
  token?: string;
  /** The operator's RSS right after it started, before any StreamJob. */
  startRssMiB?: number;
}

/** The shipped example with the bench's interval, restart policy, rate and bucket. */
function sequenceJob(name: string, bucket: string, overrides: Partial<StreamJob["spec"]> = {}): StreamJob {
  const example = parseYaml(
    readFileSync(path.join(repoRoot, "manifests/examples/sequence.yaml"), "utf8"),
  ) as StreamJob;
  return {
    ...example,
    metadata: { name },
    spec: {
      ...example.spec,
      parallelism: 2,
      job: { ...example.spec.job, args: JOB_ARGS },
      checkpoint: {
        ...example.spec.checkpoint,
        interval: CHECKPOINT_INTERVAL,
        storage: { ...example.spec.checkpoint.storage, bucket },
      },
      restart: RESTART as StreamJob["spec"]["restart"],
      ...overrides,
    },
  };
}

async function patchJob(
  ctx: Context,
  spec: Record<string, unknown>,
): Promise<{ tResponse: number; generation: number }> {
  const res = (await ctx.custom.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace: ctx.namespace,
      plural: PLURAL,
      name: JOB,
      body: { spec },
    },
    mergePatch,
  )) as StreamJob;
  return { tResponse: performance.now(), generation: res.metadata.generation ?? 0 };
}

/** Waits until JOB runs `epoch` with a checkpoint newer than `afterCheckpoint`, and the epoch is older than the backoff. */
async function settle(ctx: Context, afterCheckpoint: number): Promise<void> {
  const job = await waitFor(
    `StreamJob ${JOB} Running with a checkpoint after ${afterCheckpoint}`,
    () => {
      const job = ctx.obs.jobs.get(JOB);
      const status = job?.status;
      if (!job || status?.phase !== "Running" || (status.latestCheckpoint?.id ?? 0) <= afterCheckpoint)
        return undefined;
      const pods = ctx.obs.jobPods(status.epoch);
      return pods.length === status.parallelism && pods.every(isReady) ? job : undefined;
    },
    60_000,
  );
  // The operator delays a restart until `backoff` after the epoch's pods were created: wait that out,
  // so that every run measures the recovery path and not the backoff policy.
  const created = Math.max(...ctx.obs.jobPods(job.status!.epoch).map(createdMs));
  await sleep(Math.max(0, created + BACKOFF_MAX_MS + 1_000 - Date.now()));
}

interface RecoveryRun {
  mode: "SIGKILL" | "delete pod";
  victim: string;
  /** Milliseconds after the kill (NaN when not seen). */
  reported: number;
  noticed: number;
  spawned: number;
  listening: number;
  restored: number;
  ready: number;
  processing: number;
  epochs: number;
  /** A TaskManager of a new epoch could not listen: its pod IP was taken by another local cluster's pod. */
  ipCollision: boolean;
}

/** Wall-clock milliseconds at which the machine booted, to place /proc starttimes (10 ms ticks). */
const bootWallMs = Date.now() - Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * 1000;
/** performance.now() of a wall-clock time. */
const perfOf = (wallMs: number) => wallMs - performance.timeOrigin;

/** When the process was started (forked by the node agent), as performance.now() time. */
function processStart(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return perfOf(bootWallMs + (Number(fields[19]) / 100) * 1000); // starttime is field 22
}

/** A TaskManager's own log (written by the node agent): when it listened and was restored, and EADDRINUSE. */
function taskManagerLog(
  namespace: string,
  pod: string,
): { listening?: number; restored?: number; addrInUse: boolean } {
  let text: string;
  try {
    text = readFileSync(path.join(clusterDir, "logs", `${namespace}_${pod}_taskmanager.log`), "utf8");
  } catch {
    return { addrInUse: false };
  }
  const result: { listening?: number; restored?: number; addrInUse: boolean } = {
    addrInUse: text.includes("EADDRINUSE"),
  };
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { time: number; msg: string };
    if (entry.msg === "TaskManager listening") result.listening ??= perfOf(entry.time);
    if (entry.msg.startsWith("ready")) result.restored ??= perfOf(entry.time);
  }
  return result;
}

async function recoveryRun(ctx: Context, run: number): Promise<RecoveryRun> {
  const { obs, core, namespace } = ctx;
  const before = obs.job().status!;
  const oldEpoch = before.epoch!;
  const pods = obs.jobPods(oldEpoch);
  const victim = pods[Math.floor(run / 2) % pods.length]!;
  const victimName = victim.metadata!.name!;
  const mode: RecoveryRun["mode"] = run % 2 === 0 ? "SIGKILL" : "delete pod";
  const from = obs.log.length;
  let t0: number;
  if (mode === "SIGKILL") {
    const pid = containerPid(victim);
    t0 = performance.now();
    process.kill(pid, "SIGKILL");
  } else {
    t0 = performance.now();
    await core.deleteNamespacedPod({ namespace, name: victimName });
  }

  // TaskManagers of a newer epoch are polled until each has processed records: the counter starts
  // at 0 in every TaskManager process, so > 0 means processing after the restore. The job and epoch
  // in the answer must be this job's (an address may answer for another cluster's pod).
  const processedAt = new Map<string, number>();
  const resumed = await waitFor(
    `run ${run + 1} (${mode} ${victimName}): processing resumed in an epoch after ${oldEpoch}`,
    async () => {
      const candidates = obs
        .jobPods()
        .filter(
          (pod) => epochOf(pod) > oldEpoch && pod.status?.podIP && !processedAt.has(pod.metadata!.name!),
        );
      await Promise.all(
        candidates.map(async (pod) => {
          const status = await taskManagerStatus(pod.status!.podIP!, ctx.token!);
          if (
            status &&
            status.job.namespace === namespace &&
            status.epoch === epochOf(pod) &&
            status.taskIndex === taskOf(pod) &&
            status.recordsProcessed > 0
          )
            processedAt.set(pod.metadata!.name!, performance.now());
        }),
      );
      for (const [epoch, readyAt] of obs.epochReadyAt) {
        if (epoch <= oldEpoch) continue;
        const epochPods = obs.jobPods(epoch);
        if (epochPods.length === 0 || !epochPods.every((pod) => processedAt.has(pod.metadata!.name!)))
          continue;
        const processing = Math.max(
          readyAt,
          ...epochPods.map((pod) => processedAt.get(pod.metadata!.name!)!),
        );
        return { epoch, readyAt, processing, pods: epochPods };
      }
      return undefined;
    },
    60_000,
    TM_POLL_MS,
  );

  const events = obs.log.slice(from);
  const reported = events.find(
    (e) =>
      e.kind === "pod" &&
      e.obj.metadata?.name === victimName &&
      ((e.obj as V1Pod).status?.phase === "Failed" || deleting(e.obj as V1Pod) || e.verb === "delete"),
  );
  const noticed = events.find(
    (e) =>
      (e.kind === "job" &&
        e.obj.metadata?.name === JOB &&
        (((e.obj as StreamJob).status?.epoch ?? 0) > oldEpoch ||
          (e.obj as StreamJob).status?.phase === "Restarting")) ||
      (e.kind === "pod" && jobOf(e.obj) === JOB && epochOf(e.obj) > oldEpoch),
  );
  const logs = resumed.pods.map((pod) => taskManagerLog(namespace, pod.metadata!.name!));
  const latest = (values: (number | undefined)[]) =>
    values.some((v) => v === undefined) ? NaN : Math.max(...(values as number[]));
  let spawned = NaN;
  try {
    spawned = Math.max(...resumed.pods.map((pod) => processStart(containerPid(pod))));
  } catch {
    // a TaskManager already gone: no start time
  }
  // Every pod of every new epoch, including ones replaced again before they ran.
  const newPods = new Set(
    events
      .filter((e) => e.kind === "pod" && jobOf(e.obj) === JOB && epochOf(e.obj) > oldEpoch)
      .map((e) => e.obj.metadata!.name!),
  );
  const result: RecoveryRun = {
    mode,
    victim: victimName,
    reported: (reported?.t ?? NaN) - t0,
    noticed: (noticed?.t ?? NaN) - t0,
    spawned: spawned - t0,
    listening: latest(logs.map((l) => l.listening)) - t0,
    restored: latest(logs.map((l) => l.restored)) - t0,
    ready: resumed.readyAt - t0,
    processing: resumed.processing - t0,
    epochs: resumed.epoch - oldEpoch,
    ipCollision: [...newPods].some((pod) => taskManagerLog(namespace, pod).addrInUse),
  };
  await settle(ctx, obs.job().status?.latestCheckpoint?.id ?? 0);
  return result;
}

async function benchRecovery(ctx: Context): Promise<void> {
  console.log(`\n── 1. recovery: ${RUNS} runs, SIGKILL of a TaskManager and pod deletion alternately ──`);
  const runs: RecoveryRun[] = [];
  const sec = (ms: number) => (ms / 1000).toFixed(2);
  for (let run = 0; run < RUNS; run++) {
    const r = await recoveryRun(ctx, run);
    runs.push(r);
    console.log(
      `run ${String(run + 1).padStart(2)}  ${r.mode.padEnd(10)}  ${r.victim.padEnd(18)}  ` +
        `reported ${sec(r.reported)}  noticed ${sec(r.noticed)}  spawned ${sec(r.spawned)}  ` +
        `listening ${sec(r.listening)}  restored ${sec(r.restored)}  pods Ready ${sec(r.ready)}  ` +
        `processing ${sec(r.processing)} s` +
        (r.epochs > 1 ? `  (${r.epochs} new epochs: restarted again)` : "") +
        (r.ipCollision ? "  [pod IP collision with another local cluster: EADDRINUSE]" : ""),
    );
  }
  const s = (list: RecoveryRun[], pick: (r: RecoveryRun) => number) =>
    list
      .map(pick)
      .filter((ms) => !Number.isNaN(ms))
      .map((ms) => ms / 1000);
  const total = s(runs, (r) => r.processing);
  const clean = runs.filter((r) => !r.ipCollision);
  const cleanTotal = s(clean, (r) => r.processing);
  const collided = runs.length - clean.length;
  const breakdown = (metric: string, pick: (r: RecoveryRun) => number, note?: string): Row => ({
    section: "recovery",
    metric,
    unit: "s",
    values: s(runs, pick),
    target: "",
    ...(note && { note }),
  });
  rows.push(
    {
      section: "recovery",
      metric: "kill → processing resumed, p50",
      unit: "s",
      values: total,
      target: `p50 ≤ ${TARGETS.recoveryP50S} s`,
      pass: percentile(total, 50) <= TARGETS.recoveryP50S,
    },
    {
      section: "recovery",
      metric: "kill → processing resumed, p99",
      unit: "s",
      values: total,
      target: `p99 ≤ ${TARGETS.recoveryP99S} s`,
      pass: percentile(total, 99) <= TARGETS.recoveryP99S,
    },
  );
  if (collided > 0)
    rows.push({
      section: "recovery",
      metric: `  without the ${collided} run(s) hit by a pod IP collision`,
      unit: "s",
      values: cleanTotal,
      target: `p50 ≤ ${TARGETS.recoveryP50S}, p99 ≤ ${TARGETS.recoveryP99S}`,
      pass:
        cleanTotal.length > 0 &&
        percentile(cleanTotal, 50) <= TARGETS.recoveryP50S &&
        percentile(cleanTotal, 99) <= TARGETS.recoveryP99S,
    });
  rows.push(
    {
      section: "recovery",
      metric: "  SIGKILL runs",
      unit: "s",
      values: s(
        runs.filter((r) => r.mode === "SIGKILL"),
        (r) => r.processing,
      ),
      target: "",
    },
    {
      section: "recovery",
      metric: "  pod deletion runs",
      unit: "s",
      values: s(
        runs.filter((r) => r.mode === "delete pod"),
        (r) => r.processing,
      ),
      target: "",
    },
    breakdown("  kill → node agent reported the pod", (r) => r.reported),
    breakdown("  kill → operator noticed", (r) => r.noticed),
    breakdown("  kill → new TaskManager processes spawned", (r) => r.spawned),
    breakdown("  kill → TaskManagers listening", (r) => r.listening),
    breakdown("  kill → TaskManagers restored, processing", (r) => r.restored),
    breakdown("  kill → new epoch's pods all Ready", (r) => r.ready),
    {
      section: "recovery",
      metric: "Flink default heartbeat.timeout (reference)",
      unit: "s",
      value: FLINK_HEARTBEAT_TIMEOUT_S,
      target: "",
      note: "how long Flink may take just to declare a silent TaskManager lost",
    },
  );
}

async function benchSavepointNonce(ctx: Context): Promise<void> {
  console.log(`\n── 2a. spec change: savepointNonce, ${SPEC_RUNS} runs ──`);
  const { obs } = ctx;
  const firstAction: number[] = [];
  const completed: number[] = [];
  for (let run = 0; run < SPEC_RUNS; run++) {
    const nonce = `bench-${run + 1}-${randomBytes(3).toString("hex")}`;
    const from = obs.log.length;
    const { tResponse, generation } = await patchJob(ctx, { savepointNonce: nonce });
    const isJob = (e: Logged) => e.kind === "job" && e.obj.metadata?.name === JOB;
    const ack = await obs.first(
      `run ${run + 1}: a status write for generation ${generation}`,
      from,
      (e) => isJob(e) && ((e.obj as StreamJob).status?.observedGeneration ?? 0) >= generation,
      30_000,
    );
    const done = await obs.first(
      `run ${run + 1}: savepoint with nonce ${nonce} in status`,
      from,
      (e) => isJob(e) && (e.obj as StreamJob).status?.latestSavepoint?.nonce === nonce,
      30_000,
    );
    // Reconciled (lastReconciledSpec carries the nonce) before the next change.
    await waitFor(
      `run ${run + 1}: savepointNonce ${nonce} reconciled`,
      () => {
        const text = obs.jobs.get(JOB)?.status?.lastReconciledSpec;
        return (
          text !== undefined && (JSON.parse(text) as { savepointNonce?: string }).savepointNonce === nonce
        );
      },
      30_000,
    );
    firstAction.push(Math.max(0, ack.t - tResponse));
    completed.push(done.t - tResponse);
    console.log(
      `run ${String(run + 1).padStart(2)}  status written ${(ack.t - tResponse).toFixed(0)} ms  ` +
        `savepoint ${obs.job().status?.latestSavepoint?.id} completed ${(done.t - tResponse).toFixed(0)} ms`,
    );
    await sleep(200 + Math.random() * 300); // not in step with the checkpoint interval
  }
  rows.push(
    {
      section: "spec change",
      metric: "savepointNonce patch → first action (status write)",
      unit: "ms",
      values: firstAction,
      target: `p99 < ${TARGETS.specChangeP99Ms} ms`,
      pass: percentile(firstAction, 99) < TARGETS.specChangeP99Ms,
    },
    {
      section: "spec change",
      metric: "  savepointNonce patch → savepoint completed",
      unit: "ms",
      values: completed,
      target: "",
    },
  );
}

async function benchScale(ctx: Context): Promise<void> {
  if (SCALE_RUNS === 0) return;
  console.log(`\n── 2b. spec change: parallelism, ${SCALE_RUNS} runs ──`);
  const { obs } = ctx;
  const firstAction: number[] = [];
  const firstPod: number[] = [];
  const running: number[] = [];
  for (let run = 0; run < SCALE_RUNS; run++) {
    const before = obs.job().status!;
    const oldEpoch = before.epoch!;
    const to = before.parallelism === 2 ? 3 : 2;
    const from = obs.log.length;
    const { tResponse, generation } = await patchJob(ctx, { parallelism: to });
    const isJob = (e: Logged) => e.kind === "job" && e.obj.metadata?.name === JOB;
    const ack = await obs.first(
      `scale run ${run + 1}: a status write for generation ${generation}`,
      from,
      (e) => isJob(e) && ((e.obj as StreamJob).status?.observedGeneration ?? 0) >= generation,
      30_000,
    );
    const pod = await obs.first(
      `scale run ${run + 1}: a TaskManager pod deleted or created`,
      from,
      (e) =>
        e.kind === "pod" &&
        jobOf(e.obj) === JOB &&
        (epochOf(e.obj) > oldEpoch || e.verb === "delete" || deleting(e.obj as V1Pod)),
      60_000,
    );
    const up = await obs.first(
      `scale run ${run + 1}: ${to} TaskManagers Running`,
      from,
      (e) => {
        const status = isJob(e) ? (e.obj as StreamJob).status : undefined;
        return status?.phase === "Running" && (status.epoch ?? 0) > oldEpoch && status.parallelism === to;
      },
      90_000,
    );
    firstAction.push(Math.max(0, ack.t - tResponse));
    firstPod.push(pod.t - tResponse);
    running.push(up.t - tResponse);
    console.log(
      `run ${run + 1}  parallelism ${before.parallelism} → ${to}  status written ${(ack.t - tResponse).toFixed(0)} ms  ` +
        `first pod ${pod.verb === "add" ? "created" : "deleted"} ${(pod.t - tResponse).toFixed(0)} ms  ` +
        `Running ${(up.t - tResponse).toFixed(0)} ms`,
    );
    await settle(ctx, obs.job().status?.latestCheckpoint?.id ?? 0);
  }
  rows.push(
    {
      section: "spec change",
      metric: "parallelism patch → first action (status write)",
      unit: "ms",
      values: firstAction,
      target: `p99 < ${TARGETS.specChangeP99Ms} ms`,
      pass: percentile(firstAction, 99) < TARGETS.specChangeP99Ms,
    },
    {
      section: "spec change",
      metric: "  parallelism patch → first pod deleted/created",
      unit: "ms",
      values: firstPod,
      target: "",
      note: "after a checkpoint",
    },
    {
      section: "spec change",
      metric: "  parallelism patch → Running at new parallelism",
      unit: "ms",
      values: running,
      target: "",
    },
  );
}

/** Non-WATCH requests kube-apiserver counted for streamjobs, pods and secrets, by verb and resource. */
async function apiserverRequests(): Promise<Map<string, number>> {
  const text = await tool("kubectl", ["get", "--raw", "/metrics"]);
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!["streamjobs", "pods", "secrets"].includes(labels.resource ?? "") || labels.verb === "WATCH")
      continue;
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(match[2]));
  }
  return counts;
}

/** The sum of a metric's series in the operator's /metrics. */
async function operatorMetric(ip: string, name: string): Promise<number> {
  const text = await (
    await fetch(`http://${ip}:8080/metrics`, { signal: AbortSignal.timeout(5_000) })
  ).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}
const operatorReconciles = (ip: string) => operatorMetric(ip, "streamjob_reconcile_duration_seconds_count");

function cpuSeconds(pid: number): number {
  // Fields after the parenthesised command name: utime is field 14, stime 15.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // CLK_TCK is 100 on Linux
}

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

async function operatorPod(ctx: Context): Promise<{ ip: string; pid: number }> {
  const pods = await ctx.core.listNamespacedPod({
    namespace: ctx.namespace,
    labelSelector: `app.kubernetes.io/instance=${ctx.release},app.kubernetes.io/name=streamjob-operator`,
  });
  const pod = pods.items.find((p) => isReady(p) && !deleting(p));
  if (!pod?.status?.podIP) throw new Error("no Ready operator pod");
  const pid = containerPid(pod);
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  if (!cmdline.includes("operator/main.js")) throw new Error(`pid ${pid} is not the operator: ${cmdline}`);
  return { ip: pod.status.podIP, pid };
}

async function benchIdle(ctx: Context): Promise<void> {
  console.log(`\n── 3. idle: ${IDLE_JOBS} StreamJobs with suspend: true, ${IDLE_SECONDS} s window ──`);
  const { obs, custom, namespace } = ctx;
  // The running job goes first: "idle" means no job runs pods.
  if (obs.jobs.has(JOB)) {
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name: JOB,
    });
    await waitFor(
      `the pods of ${JOB} gone`,
      () => [...obs.pods.values()].every((p) => jobOf(p) !== JOB),
      90_000,
      200,
    );
  }
  const operator = await operatorPod(ctx);
  const reconcilesAtCreate = await operatorReconciles(operator.ip);
  const names = Array.from({ length: IDLE_JOBS }, (_, i) => `idle-${String(i).padStart(3, "0")}`);
  const created = performance.now();
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(
      names.slice(i, i + 10).map((name) =>
        custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          body: sequenceJob(name, ctx.bucket, { suspend: true }),
        }),
      ),
    );
  }
  // Watched, not polled: the bench itself makes no requests while the operator settles.
  await waitFor(
    `all ${IDLE_JOBS} StreamJobs in phase Suspended`,
    () => names.every((name) => obs.jobs.get(name)?.status?.phase === "Suspended"),
    180_000,
    100,
  );
  const allSuspendedS = (performance.now() - created) / 1000;
  const reconcilesToSuspend = (await operatorReconciles(operator.ip)) - reconcilesAtCreate;
  console.log(
    `${IDLE_JOBS} StreamJobs Suspended ${allSuspendedS.toFixed(1)} s after the first create; ` +
      `${reconcilesToSuspend} reconcile passes; they never run pods. Quiet 5 s, then the window.`,
  );
  await sleep(5_000);

  const requestsBefore = await apiserverRequests();
  const reconcilesBefore = await operatorReconciles(operator.ip);
  const cpuBefore = cpuSeconds(operator.pid);
  const started = performance.now();
  const rss: number[] = [rssMiB(operator.pid)];
  while (performance.now() - started < IDLE_SECONDS * 1000) {
    await sleep(1_000);
    rss.push(rssMiB(operator.pid));
  }
  const windowS = (performance.now() - started) / 1000;
  const cpuPercent = ((cpuSeconds(operator.pid) - cpuBefore) / windowS) * 100;
  const requestsAfter = await apiserverRequests();
  const reconciles = (await operatorReconciles(operator.ip)) - reconcilesBefore;
  const delta = [...requestsAfter]
    .map(([key, value]) => [key, value - (requestsBefore.get(key) ?? 0)] as const)
    .filter(([, value]) => value > 0);
  const requests = delta.reduce((sum, [, value]) => sum + value, 0);
  const suspended = names.filter((name) => obs.jobs.get(name)?.status?.phase === "Suspended").length;
  const maxRss = Math.max(...rss);
  const heapMiB = (await operatorMetric(operator.ip, "nodejs_heap_size_used_bytes")) / 1024 / 1024;
  const externalMiB = (await operatorMetric(operator.ip, "nodejs_external_memory_bytes")) / 1024 / 1024;
  rows.push(
    {
      section: "idle",
      metric: `StreamJobs Suspended (idle: suspend: true, no pods)`,
      unit: "jobs",
      value: suspended,
      target: String(IDLE_JOBS),
      pass: suspended === IDLE_JOBS,
      note: `all Suspended ${allSuspendedS.toFixed(1)} s after the first create, ${reconcilesToSuspend} reconcile passes`,
    },
    {
      section: "idle",
      metric: "operator RSS, max over the window",
      unit: "MiB",
      value: maxRss,
      target: `≤ ${TARGETS.rssMiB} MiB`,
      pass: maxRss <= TARGETS.rssMiB,
      note:
        `VmRSS every 1 s: first ${rss[0]!.toFixed(1)}, last ${rss.at(-1)!.toFixed(1)}; ` +
        `V8 heap used ${heapMiB.toFixed(1)}, external ${externalMiB.toFixed(1)}; ` +
        `${ctx.startRssMiB?.toFixed(1) ?? "?"} right after start with no StreamJob`,
    },
    {
      section: "idle",
      metric: "operator CPU over the window",
      unit: "% of a core",
      value: cpuPercent,
      target: `≤ ${TARGETS.cpuPercent} %`,
      pass: cpuPercent <= TARGETS.cpuPercent,
      note: `utime+stime over ${windowS.toFixed(0)} s`,
    },
    {
      section: "idle",
      metric: "apiserver non-WATCH requests (streamjobs, pods, secrets)",
      unit: "requests",
      value: requests,
      target: "0 (no polling)",
      pass: requests === 0,
      note:
        (delta.length ? delta.map(([key, value]) => `${key}: ${value}`).join("; ") : "none") +
        `; from every client of the cluster (${[...requestsBefore.values()].reduce((a, b) => a + b, 0)} ` +
        "such requests counted before the window)",
    },
    {
      section: "idle",
      metric: "operator reconcile passes (streamjob_reconcile_duration_seconds_count)",
      unit: "passes",
      value: reconciles,
      target: "0",
      pass: reconciles === 0,
    },
  );
}

async function main(): Promise<void> {
  console.log(`operator bench on the local cluster in ${path.relative(repoRoot, clusterDir)}`);
  cli("up");
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);

  // Namespaces a killed earlier run left behind.
  const leftovers = await core.listNamespace({ labelSelector: "streamjob.dev/bench=operator" });
  for (const ns of leftovers.items)
    await core.deleteNamespace({ name: ns.metadata!.name! }).catch(() => undefined);

  const namespace = `bench-op-${randomBytes(3).toString("hex")}`;
  const bucket = namespace;
  const storageData = Object.fromEntries(
    Object.entries(
      (await core.readNamespacedSecret({ name: STORAGE_SECRET_NAME, namespace: "default" })).data ?? {},
    ).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
  );
  const store = new MinioObjectStore({ ...storageConfigFromSecret(storageData), bucket });
  const ctx: Context = {
    kc,
    core,
    custom,
    namespace,
    bucket,
    obs: new Observer(kc, namespace),
    release: `op-${randomBytes(3).toString("hex")}`,
  };
  let installed = false;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await ctx.obs.stop();
    // StreamJobs first, while the operator still runs; then the operator; then the namespace.
    await custom
      .deleteCollectionNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })
      .catch(() => undefined);
    if (installed)
      await tool("helm", [
        "uninstall",
        ctx.release,
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "60s",
      ]).catch((err: Error) => console.warn(`cleanup: ${err.message}`));
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    try {
      await store.delete(await store.list(""));
      await store.client.removeBucket(bucket);
    } catch {
      // no bucket: the job never started
    }
    if (KEEP_CLUSTER) {
      await waitFor(
        `namespace ${namespace} deleted`,
        async () => {
          await core.readNamespace({ name: namespace });
          return false;
        },
        90_000,
        500,
      ).catch((err: Error) => {
        if (!/404|not found/i.test(err.message)) console.warn(`cleanup: ${err.message}`);
      });
      console.log(
        `KEEP_CLUSTER=1: the cluster keeps running (DEVCLUSTER_DIR=${clusterDir} npm run cluster:down)`,
      );
    } else cli("down");
  };
  process.once("SIGINT", () => {
    console.error("interrupted; cleaning up");
    void cleanup().finally(() => process.exit(130));
  });

  try {
    await core.createNamespace({
      body: {
        metadata: {
          name: namespace,
          labels: { "streamjob.dev/bench": "operator", "pod-security.kubernetes.io/enforce": "restricted" },
        },
      },
    });
    await waitFor(
      `ServiceAccount ${namespace}/default`,
      async () => !!(await core.readNamespacedServiceAccount({ name: "default", namespace })),
      60_000,
      200,
    );
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: STORAGE_SECRET_NAME }, stringData: storageData },
    });
    await tool("kubectl", ["apply", "--server-side", "-f", path.join(repoRoot, "crds", "streamjob.yaml")]);
    let t = performance.now();
    await tool(
      "helm",
      [
        "install",
        ctx.release,
        chartPath,
        "--namespace",
        namespace,
        "--set",
        `watchNamespaces={${namespace}}`,
        "--wait",
        "--timeout",
        "120s",
      ],
      180_000,
    );
    installed = true;
    ctx.startRssMiB = rssMiB((await operatorPod(ctx)).pid);
    console.log(
      `operator installed with helm (release ${ctx.release}) in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    await ctx.obs.start();

    t = performance.now();
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      body: sequenceJob(JOB, bucket),
    });
    const token = await waitFor(
      `Secret ${JOB}-token`,
      async () => {
        const secret = await core.readNamespacedSecret({ name: `${JOB}-token`, namespace });
        return secret.data?.token && Buffer.from(secret.data.token, "base64").toString("utf8");
      },
      60_000,
      200,
    );
    ctx.token = token;
    await settle(ctx, 0);
    console.log(
      `StreamJob ${JOB} (parallelism 2, checkpoint every ${CHECKPOINT_INTERVAL}, restart backoff ` +
        `${RESTART.backoff.initial}..${RESTART.backoff.max}) running with a checkpoint after ` +
        `${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    const phases: [string, () => Promise<void>][] = [
      ["recovery", () => benchRecovery(ctx)],
      ["spec change (savepointNonce)", () => benchSavepointNonce(ctx)],
      ["spec change (parallelism)", () => benchScale(ctx)],
      ["idle", () => benchIdle(ctx)],
    ];
    for (const [name, phase] of phases) {
      try {
        await phase();
      } catch (err) {
        const message = `${name}: ${(err as Error).message}`;
        errors.push(message);
        console.error(`\nFAILED ${message}`);
      }
    }
  } finally {
    printTables();
    const file = writeCsv();
    console.log(
      `\nwrote ${path.relative(repoRoot, file)}. Recovery: "processing resumed" = every TaskManager of the new ` +
        `epoch Ready (pod condition, from a watch) and reporting recordsProcessed > 0 for that epoch ` +
        `(GET /v1/status every ${TM_POLL_MS} ms; the counter starts at 0 in each new TaskManager). "noticed" = the ` +
        `operator's first visible reaction (a new-epoch pod, or status phase Restarting / a new epoch). ` +
        `With ${RUNS} runs, p95 and p99 are the maximum. Spec change: "first action" = the operator's status ` +
        `write for the new generation, made in the pass that asked for the savepoint (or checkpoint).`,
    );
    if (errors.length) console.error(`\n${errors.length} phase(s) failed:\n  ${errors.join("\n  ")}`);
    await cleanup();
  }
  if (errors.length) process.exit(1);
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
