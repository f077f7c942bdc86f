// `npm run demo`: the README's first command. Builds the project, starts the local cluster (building
// its binaries first if they are missing), installs the operator with its Helm chart, runs the
// `sequence` example and shows its checkpoints live, then kills a TaskManager and shows the job
// restored from the latest checkpoint with its counters continuing from there, and checks that the
// committed output holds every record exactly once.
//
// Re-runnable: a running cluster is reused, the chart upgraded in place, and a `sequence` job left by
// an earlier run is deleted and applied again (its checkpoints stay in the bucket). Ctrl-C stops the
// demo and leaves the cluster running. Plain console output, no dependencies beyond package.json.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type CoreV1Event,
  type V1Pod,
} from "@kubernetes/client-node";
import { keyGroupForKey, keyGroupRangeForTask } from "../src/api/key-groups.js";
import { jobDirectory, MANIFEST_NAME } from "../src/api/object-layout.js";
import { CheckpointManifest, type TaskManagerStatus } from "../src/api/protocol.js";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../src/api/streamjob.js";
import {
  assetsCacheDir,
  componentsToBuild,
  componentVersion,
  kafkaAssetsPresent,
  kafkaVersion,
  repoRoot,
} from "../src/devcluster/assets.js";
import { clusterDir as devclusterDir, nodeMode } from "../src/devcluster/cluster.js";
import {
  ensureBucket,
  MinioObjectStore,
  STORAGE_SECRET_NAME,
  storageConfigFromSecret,
} from "../src/storage/minio-object-store.js";
import { committedDirectory, parseCommittedOutputKeys } from "../src/taskmanager/sink/output-layout.js";
import { containerPidOf, epochOf, isReady, jobPodSelector, taskIndexOf } from "../test/support/pods.js";
import { decodedSecretData } from "../test/support/storage.js";
import { readTaskManagerStatus } from "../test/support/taskmanager.js";
import { waitFor } from "../test/support/wait.js";

const clusterDir = devclusterDir();
const kubeconfig = path.join(clusterDir, "kubeconfig");
const bin = path.join(clusterDir, "bin");

const RELEASE = "streamjob-operator";
const OPERATOR_NAMESPACE = "streamjob-system";
const JOB = "sequence";
const NAMESPACE = "default";
const EXAMPLE = "manifests/examples/sequence.yaml";
const CHART = "charts/streamjob-operator";
/** Checkpoints to watch complete before the failure, and again after the restore. */
const CHECKPOINTS_BEFORE_FAILURE = 3;
const CHECKPOINTS_AFTER_RESTORE = 2;
const STEPS = 6;

// ── output ─────────────────────────────────────────────────────────────────────────────────────

let step = 0;
function heading(title: string): void {
  step += 1;
  console.log(`\n[${step}/${STEPS}] ${title}`);
}
function say(line = ""): void {
  console.log(line === "" ? "" : `      ${line}`);
}
function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}
function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** The `export` line to paste: relative to $PWD when the user ran the demo from the repository. */
function exportLine(): string {
  const cwd = process.env.INIT_CWD ?? process.cwd();
  const shown =
    path.resolve(cwd) === repoRoot && clusterDir.startsWith(repoRoot + path.sep)
      ? `$PWD/${path.relative(repoRoot, clusterDir)}`
      : clusterDir;
  return `export KUBECONFIG=${shown}/kubeconfig PATH=${shown}/bin:$PATH`;
}

function stopCommand(): string {
  return process.env.DEVCLUSTER_DIR
    ? `DEVCLUSTER_DIR=${process.env.DEVCLUSTER_DIR} npm run cluster:down`
    : "npm run cluster:down";
}

class DemoError extends Error {
  constructor(
    message: string,
    readonly hints: string[] = [],
  ) {
    super(message);
  }
}

// ── processes ──────────────────────────────────────────────────────────────────────────────────

interface RunOptions {
  /** Print the output as it comes, indented (for long steps that report progress). */
  stream?: boolean;
  /** Return instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

interface RunResult {
  code: number;
  output: string;
}

async function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { ...process.env, KUBECONFIG: kubeconfig },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let partial = "";
  const collect = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    output += text;
    if (!options.stream) return;
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) say(line);
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const code = await new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
  });
  if (options.stream && partial !== "") say(partial);
  if (code !== 0 && !options.allowFailure) {
    throw new DemoError(
      `\`${[path.basename(command), ...args].join(" ")}\` failed (exit ${code}):\n${output}`,
    );
  }
  return { code, output };
}

const kubectl = (args: string[], options?: RunOptions) => run(path.join(bin, "kubectl"), args, options);
const helm = (args: string[], options?: RunOptions) => run(path.join(bin, "helm"), args, options);

// ── the cluster's API and storage ──────────────────────────────────────────────────────────────

let core: CoreV1Api;
let custom: CustomObjectsApi;
/** Set once the cluster is up: from then on, an interrupted or failed demo leaves it running. */
let clusterUp = false;

function connect(): void {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  clusterUp = true;
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: number }).code === 404;
}

async function readJob(): Promise<StreamJob | undefined> {
  try {
    return (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NAMESPACE,
      plural: PLURAL,
      name: JOB,
    })) as StreamJob;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function taskManagerPods(): Promise<V1Pod[]> {
  const list = await core.listNamespacedPod({
    namespace: NAMESPACE,
    labelSelector: jobPodSelector(JOB),
  });
  return list.items;
}

async function secretData(name: string): Promise<Record<string, string> | undefined> {
  try {
    return decodedSecretData(await core.readNamespacedSecret({ name, namespace: NAMESPACE }));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  hints: string[] = [],
): Promise<T> {
  try {
    return await waitFor(what, check, timeoutMs, 500);
  } catch {
    throw new DemoError(`timed out after ${seconds(timeoutMs)} ${what}`, hints);
  }
}

// ── steps 1-4: build, binaries, cluster, operator ──────────────────────────────────────────────

// DEVCLUSTER_NODE=real: the cluster's node is a kubelet on containerd and runc, running the images.
const node = nodeMode();

async function build(): Promise<void> {
  heading("Build: npm run build (TypeScript to dist/, which the emulated node's pods run)");
  let started = Date.now();
  await run("npm", ["run", "-s", "build"]);
  say(`done in ${seconds(Date.now() - started)}`);
  if (node !== "real") return;
  heading("Images: npm run images (the real node runs them; the first build takes a few minutes)");
  started = Date.now();
  await run("npm", ["run", "-s", "images"], { stream: true });
  say(`done in ${seconds(Date.now() - started)}`);
}

async function assets(): Promise<void> {
  heading(
    "The local cluster's binaries: etcd, kube-apiserver, kube-controller-manager, kubectl, MinIO, helm, Kafka",
  );
  const missing = componentsToBuild().map((c) => `${c.name} ${componentVersion(c)}`);
  if (!kafkaAssetsPresent()) missing.push(`kafka ${kafkaVersion()} (jars from Maven Central)`);
  if (missing.length === 0) {
    say(`present in ${assetsCacheDir()}`);
    return;
  }
  say(`missing: ${missing.join(", ")}`);
  say(
    "building (Go) or fetching (Kafka) them once with npm run assets; the Go build takes 15 minutes on 2 cores,",
  );
  say(`later runs reuse ${assetsCacheDir()}`);
  const started = Date.now();
  await run("npm", ["run", "-s", "assets"], { stream: true });
  say(`done in ${seconds(Date.now() - started)}`);
}

async function cluster(): Promise<void> {
  heading("Local cluster: node dist/devcluster/cli.js up");
  const { output } = await run(process.execPath, ["dist/devcluster/cli.js", "up"]);
  // The first line says whether it started or was running; the rest is the usage printed at the end.
  const first = output.split("\n").find((line) => /^local cluster /.test(line));
  say(first ?? output.trim());
  const nodeLine = output.split("\n").find((line) => /^node: /.test(line));
  if (nodeLine) say(nodeLine);
  if (node === "emulated")
    say("(DEVCLUSTER_NODE=real runs the pods as real containers: kubelet, containerd, runc)");
  say(`state and logs in ${path.relative(repoRoot, clusterDir) || clusterDir}/`);
  connect();
}

/** Newest modification time of the compiled operator code the operator pod runs. */
function newestBuildOutput(dir = path.join(repoRoot, "dist")): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "devcluster") newest = Math.max(newest, newestBuildOutput(full));
    } else if (entry.name.endsWith(".js")) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

async function operatorPod(): Promise<V1Pod | undefined> {
  const list = await core.listNamespacedPod({
    namespace: OPERATOR_NAMESPACE,
    labelSelector: `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=operator`,
  });
  return list.items.find(
    (pod) =>
      !pod.metadata?.deletionTimestamp &&
      pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

async function installOperator(): Promise<void> {
  heading(`Operator: helm upgrade --install ${RELEASE} ${CHART} -n ${OPERATOR_NAMESPACE}`);
  // The namespace exists and enforces Pod Security "restricted" before the operator pod is admitted.
  const ns = await kubectl(["get", "namespace", OPERATOR_NAMESPACE], { allowFailure: true });
  if (ns.code !== 0) await kubectl(["create", "namespace", OPERATOR_NAMESPACE]);
  await kubectl([
    "label",
    "--overwrite",
    "namespace",
    OPERATOR_NAMESPACE,
    "pod-security.kubernetes.io/enforce=restricted",
  ]);
  // Helm installs the CRD on the first install only; keep it current on later runs (see charts/README.md).
  const crd = await kubectl(["get", "crd", `${PLURAL}.${GROUP}`], { allowFailure: true });
  if (crd.code === 0) {
    await kubectl([
      "apply",
      "--server-side",
      "--force-conflicts",
      "-f",
      path.join(CHART, "crds", "streamjob.yaml"),
    ]);
  }
  const started = Date.now();
  const { output } = await helm([
    "upgrade",
    "--install",
    RELEASE,
    CHART,
    "--namespace",
    OPERATOR_NAMESPACE,
    "--create-namespace",
    "--wait",
    "--timeout",
    "2m",
  ]);
  const revision = /REVISION: (\d+)/.exec(output)?.[1];
  say(
    `release ${RELEASE} ${revision === "1" ? "installed" : `upgraded (revision ${revision ?? "?"})`} in ${seconds(Date.now() - started)}`,
  );

  // The operator pod runs dist/: restart it when the build changed since it started (a re-run after edits).
  let pod = await operatorPod();
  const startedAt = pod?.status?.startTime ? new Date(pod.status.startTime).getTime() : Date.now();
  if (pod && node === "emulated" && newestBuildOutput() > startedAt) {
    say("the operator's code changed since its pod started: kubectl rollout restart");
    await kubectl(["rollout", "restart", "-n", OPERATOR_NAMESPACE, `deployment/${RELEASE}`]);
    await kubectl(["rollout", "status", "-n", OPERATOR_NAMESPACE, `deployment/${RELEASE}`, "--timeout=90s"]);
    pod = undefined;
  }
  pod ??= await waitUntil("for a ready operator pod", operatorPod, 90_000, [
    `kubectl -n ${OPERATOR_NAMESPACE} describe pods`,
  ]);
  say(
    `pod ${pod.metadata!.name} Running as ServiceAccount ${pod.spec?.serviceAccountName}, in a namespace that enforces Pod Security "restricted"`,
  );
}

// ── step 5: the job, watched ───────────────────────────────────────────────────────────────────

let store: MinioObjectStore;
let jobDir: string;
let token: string | undefined;
const restoredRecords = new Map<string, Map<number, number>>();

interface TaskView {
  taskIndex: number;
  pod: string;
  /** "running" once its /v1/status says ready; "no answer" when a running pod does not respond. */
  state: "running" | "starting" | "no pod" | "exited" | "no answer";
  /** Records the job has processed in this task's key groups since the job started. */
  records?: number;
  /** Of which restored from a checkpoint (0 on a fresh start). */
  restored?: number;
  restoredFrom?: number | null;
}

interface View {
  job: StreamJob;
  tasks: TaskView[];
}

/**
 * Records of the `sequence` job held by checkpoint `checkpointId` for task `taskIndex`: its source
 * offsets of the partitions in the task's key groups. Each partition `seq-<i>` is keyed by its own id
 * and its offset counts the records read from it, i.e. the key's counter.
 */
async function recordsInCheckpoint(
  manifestKey: string,
  parallelism: number,
  taskIndex: number,
): Promise<number> {
  let byTask = restoredRecords.get(manifestKey);
  if (!byTask) {
    byTask = new Map();
    const manifest = CheckpointManifest.parse(JSON.parse((await store.get(manifestKey)).toString("utf8")));
    for (let task = 0; task < parallelism; task++) {
      const owned = keyGroupRangeForTask(manifest.maxParallelism, parallelism, task);
      let sum = 0;
      for (const [partition, offset] of Object.entries(manifest.sourceOffsets)) {
        const keyGroup = keyGroupForKey(partition, manifest.maxParallelism);
        if (keyGroup >= owned.start && keyGroup <= owned.end) sum += offset;
      }
      byTask.set(task, sum);
    }
    restoredRecords.set(manifestKey, byTask);
  }
  return byTask.get(taskIndex) ?? 0;
}

async function taskManagerStatus(ip: string): Promise<TaskManagerStatus | undefined> {
  token ??= (await secretData(`${JOB}-token`))?.token;
  if (!token) return undefined;
  const status = await readTaskManagerStatus(ip, token);
  if (!status) token = undefined; // refused: a job applied again has a new token
  return status;
}

async function observe(): Promise<View | undefined> {
  const job = await readJob();
  if (!job) return undefined;
  const epoch = job.status?.epoch ?? 0;
  const parallelism = job.status?.parallelism ?? job.spec.parallelism;
  const pods = (await taskManagerPods()).filter((pod) => epochOf(pod) === epoch);
  const tasks = await Promise.all(
    Array.from({ length: parallelism }, async (_, taskIndex): Promise<TaskView> => {
      const pod = pods.find((p) => taskIndexOf(p) === taskIndex);
      const view: TaskView = { taskIndex, pod: pod?.metadata?.name ?? "", state: "no pod" };
      if (!pod || pod.metadata?.deletionTimestamp) return view;
      const container = pod.status?.containerStatuses?.[0]?.state;
      view.state = container?.terminated ? "exited" : "starting";
      if (!container?.running || !pod.status?.podIP) return view;
      const status = await taskManagerStatus(pod.status.podIP).catch(() => null);
      // A pod that was ready and stops answering has lost its process; one not yet ready is starting.
      const ready = isReady(pod);
      if (status === null && ready) view.state = "no answer";
      if (!status?.ready) return view;
      view.state = "running";
      view.restoredFrom = status.restoredFromCheckpointId;
      view.restored = 0;
      if (status.restoredFromCheckpointId !== null) {
        const restore = job.status?.lastRestore;
        const manifestKey =
          restore?.checkpointId === status.restoredFromCheckpointId
            ? restore.path
            : `${jobDir}chk-${status.restoredFromCheckpointId}/${MANIFEST_NAME}`;
        view.restored = await recordsInCheckpoint(manifestKey, parallelism, taskIndex);
      }
      view.records = view.restored + status.recordsProcessed;
      return view;
    }),
  );
  return { job, tasks };
}

let appliedAt = Date.now();

function line(view: View | undefined): string {
  const elapsed = `${Math.floor((Date.now() - appliedAt) / 1000)}s`.padStart(5);
  if (!view) return `${elapsed}  (no StreamJob ${JOB})`;
  const status = view.job.status ?? {};
  const chk = status.latestCheckpoint;
  const checkpoint = chk
    ? `chk ${String(chk.id).padEnd(3)} ${`${Math.max(0, Math.round((Date.now() - Date.parse(chk.completedAt)) / 1000))}s ago`.padStart(7)} ${bytes(chk.sizeBytes).padStart(8)} ${`${chk.durationMs} ms`.padStart(7)}`
    : "no checkpoint yet".padEnd(31);
  const tasks = view.tasks
    .map((task) => {
      if (task.state !== "running") return `tm-${task.taskIndex} ${task.state}`;
      const restored = task.restoredFrom
        ? ` (${count(task.restored ?? 0)} from chk ${task.restoredFrom})`
        : "";
      return `tm-${task.taskIndex} ${count(task.records ?? 0)}${restored}`;
    })
    .join("  ");
  return `${elapsed}  ${(status.phase ?? "Pending").padEnd(10)} epoch ${status.epoch ?? "-"}  ${checkpoint}  restarts ${status.restarts ?? 0}  records ${tasks}`;
}

function legend(): void {
  say("one line a second: time since apply, phase, epoch, latest completed checkpoint (id, age, size,");
  say("duration), restarts, and records per TaskManager (GET /v1/status on each pod)");
}

/** Prints a line a second until `done` holds for the current view. */
async function watch(
  what: string,
  done: (view: View) => boolean,
  timeoutMs: number,
  onView: (view: View | undefined) => void = () => undefined,
): Promise<View> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tick = Date.now();
    const view = await observe().catch(() => undefined);
    console.log(line(view));
    onView(view);
    if (view && done(view)) return view;
    const failed = view?.job.status?.conditions?.find((c) => c.type === "Degraded" && c.status === "True");
    if (view?.job.status?.phase === "Failed" || failed) {
      throw new DemoError(
        `the job is ${view?.job.status?.phase === "Failed" ? "Failed" : "Degraded"}: ${failed?.message ?? ""}`,
        [`kubectl describe sj ${JOB}`],
      );
    }
    if (Date.now() > deadline) throw new DemoError(`timed out after ${seconds(timeoutMs)} ${what}`);
    await sleep(Math.max(0, 1_000 - (Date.now() - tick)));
  }
}

async function runJob(): Promise<number> {
  heading(`A StreamJob: kubectl apply -n ${NAMESPACE} -f ${EXAMPLE}`);
  const storage = await secretData(STORAGE_SECRET_NAME);
  if (!storage) {
    throw new DemoError(
      `the Secret ${NAMESPACE}/${STORAGE_SECRET_NAME} with the MinIO credentials is missing`,
      [`${stopCommand()} && npm run demo   # a fresh cluster creates it`],
    );
  }
  store = new MinioObjectStore({ ...storageConfigFromSecret(storage), bucket: "streamjob" });
  jobDir = jobDirectory("checkpoints", NAMESPACE, JOB);

  if (await readJob()) {
    say(`deleting the ${JOB} job of an earlier run; its checkpoints stay in the bucket, and the new`);
    say("job's checkpoint ids go on after them (a job's checkpoint ids only ever grow)");
    await kubectl(["delete", "sj", JOB, "-n", NAMESPACE, "--wait=true", "--timeout=60s"]);
    await waitUntil(
      "for the old TaskManager pods to go",
      async () => ((await taskManagerPods()).length === 0 ? true : undefined),
      60_000,
    );
  }
  // Output committed by earlier runs of a job of the same name is not this run's.
  const earlier = await store.list(committedDirectory(jobDir)).catch(() => [] as string[]);
  const baseline = Math.max(0, ...parseCommittedOutputKeys(jobDir, earlier).map((o) => o.checkpointId));

  await kubectl(["apply", "-n", NAMESPACE, "-f", EXAMPLE]);
  appliedAt = Date.now();
  token = undefined;
  say(`the "sequence" job: 8 keys counting 1, 2, 3, ... at 5 records/s each, split over 2 TaskManager`);
  say(`pods; a checkpoint of both every 5s to s3://streamjob/${jobDir}`);
  legend();
  console.log("");
  await watch(
    `for ${CHECKPOINTS_BEFORE_FAILURE} checkpoints`,
    (view) =>
      (view.job.status?.checkpointCounts?.completed ?? 0) >= CHECKPOINTS_BEFORE_FAILURE &&
      view.tasks.every((t) => t.state === "running"),
    90_000,
  );
  return baseline;
}

// ── step 6: a failure and the restore ──────────────────────────────────────────────────────────

async function restartingEvent(uid: string, after: number): Promise<CoreV1Event | undefined> {
  const events = await core.listNamespacedEvent({
    namespace: NAMESPACE,
    fieldSelector: `involvedObject.name=${JOB},reason=Restarting`,
  });
  const time = (e: CoreV1Event) =>
    new Date(e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp ?? 0).getTime();
  return events.items
    .filter((e) => e.involvedObject.uid === uid && time(e) >= after - 1_000)
    .sort((a, b) => time(b) - time(a))[0];
}

async function failAndRestore(): Promise<void> {
  heading("A failure: SIGKILL a TaskManager process, as if its machine died");
  const before = await observe();
  const victimTask = before!.tasks.at(-1)!;
  const victim = (await taskManagerPods()).find((p) => p.metadata?.name === victimTask.pod);
  const pid = victim && containerPidOf(victim);
  if (!pid) throw new DemoError(`no process found for pod ${victimTask.pod}`);
  const epoch = before!.job.status!.epoch!;
  const latest = before!.job.status!.latestCheckpoint!;
  const killedAt = Date.now();
  process.kill(pid, "SIGKILL");
  say(
    `killed ${victimTask.pod} (pid ${pid}) at ${count(victimTask.records ?? 0)} records; the latest completed checkpoint is ${latest.id}`,
  );
  say("the operator sees the pod fail and redeploys the whole job from the latest checkpoint:");
  console.log("");

  // Each task's last count in the old epoch, before its process died or was stopped.
  const recordsBefore = new Map<number, number>();
  const remember = (view: View | undefined) => {
    if (view?.job.status?.epoch !== epoch) return;
    for (const task of view.tasks)
      if (task.records !== undefined) recordsBefore.set(task.taskIndex, task.records);
  };
  remember(before);
  const restored = await watch(
    "for the job to run again from a checkpoint",
    (view) =>
      (view.job.status?.epoch ?? 0) > epoch &&
      view.job.status?.phase === "Running" &&
      view.job.status.lastRestore !== undefined &&
      view.tasks.every((t) => t.state === "running"),
    90_000,
    remember,
  );
  const status = restored.job.status!;
  const restoreId = status.lastRestore!.checkpointId;
  const event = await restartingEvent(restored.job.metadata.uid ?? "", killedAt).catch(() => undefined);
  console.log("");
  if (event) say(`event Restarting: ${event.message}`);
  say(
    `epoch ${status.epoch} running ${seconds(Date.now() - killedAt)} after the kill, restored from checkpoint ${restoreId}` +
      (restoreId >= latest.id ? " (the latest completed one)" : ""),
  );
  for (const task of restored.tasks) {
    const seen = recordsBefore.get(task.taskIndex);
    say(
      `tm-${task.taskIndex}: ${count(seen ?? 0)} records before the failure; checkpoint ${restoreId} holds ${count(task.restored ?? 0)}; ` +
        `the new tm-${task.taskIndex} goes on from ${count(task.restored ?? 0)}, not from 0`,
    );
  }
  say(
    "records after the checkpoint are read again from the source: state and committed output count them once",
  );
  console.log("");
  const restoredCompleted = status.checkpointCounts?.completed ?? 0;
  await watch(
    `for ${CHECKPOINTS_AFTER_RESTORE} checkpoints after the restore`,
    (view) =>
      (view.job.status?.checkpointCounts?.completed ?? 0) >= restoredCompleted + CHECKPOINTS_AFTER_RESTORE &&
      view.job.status?.epoch === status.epoch,
    60_000,
  );
}

/** Every key's committed values of this run must be 1, 2, 3, ... with no gap and no duplicate. */
async function checkOutput(baseline: number): Promise<void> {
  const keys = await store.list(committedDirectory(jobDir));
  const objects = parseCommittedOutputKeys(jobDir, keys).filter((o) => o.checkpointId > baseline);
  const last = new Map<string, number>();
  const problems: string[] = [];
  let records = 0;
  for (const object of objects) {
    for (const text of (await store.get(object.key)).toString("utf8").split("\n")) {
      if (text === "") continue;
      const [key = "", value] = text.split(" ");
      const expected = (last.get(key) ?? 0) + 1;
      if (Number(value) !== expected) {
        problems.push(
          `chk ${object.checkpointId} task ${object.taskIndex}: ${key} ${value}, expected ${expected}`,
        );
      }
      last.set(key, Math.max(Number(value), last.get(key) ?? 0));
      records++;
    }
  }
  console.log("");
  if (problems.length > 0) {
    throw new DemoError(
      `the committed output has ${problems.length} gaps or duplicates:\n  ${problems.slice(0, 10).join("\n  ")}`,
    );
  }
  say(
    `committed output (s3://streamjob/${committedDirectory(jobDir)}): ${count(records)} records in ${objects.length} objects;`,
  );
  say(`each of the ${last.size} keys counts 1, 2, 3, ... with no gap and no duplicate, across the restore`);
}

function nextSteps(): void {
  const commands: Array<[string, string]> = [
    ["kubectl get sj", "phase, parallelism, latest checkpoint and its age, restarts"],
    [`kubectl describe sj ${JOB}`, "status, conditions and events: the checkpoints, the restart"],
    [`kubectl logs -n ${OPERATOR_NAMESPACE} deploy/${RELEASE}`, "the operator's logs (JSON)"],
    [`kubectl scale sj/${JOB} --replicas=3`, "rescale: redeploys from a checkpoint on 3 TaskManagers"],
    [`kubectl delete pod -l ${jobPodSelector(JOB)}`, "another failure, another restore"],
    ["kubectl apply -f manifests/examples/wordcount.yaml", "counts the words under s3://streamjob/input/"],
  ];
  const width = Math.max(...commands.map(([command]) => command.length)) + 2;
  console.log("\nDone. The cluster, the operator and the job keep running. What to try next:\n");
  console.log(`  ${exportLine()}`);
  for (const [command, what] of commands) console.log(`  ${command.padEnd(width)}# ${what}`);
  console.log("");
  console.log("  The demo put README.md under s3://streamjob/input/ for the wordcount job to count;");
  console.log("  docs/demo.md shows how to add text and read the counts.");
  console.log("");
  console.log(`  ${stopCommand().padEnd(width - 1)} # stops the cluster; npm run demo starts it again`);
}

/** Gives the wordcount example some text to count: README.md, unless an earlier run put it there. */
async function wordcountInput(): Promise<void> {
  try {
    await ensureBucket(store);
    const key = "input/0001-README.md";
    if ((await store.stat(key)) === null) {
      const { readFile } = await import("node:fs/promises");
      await store.put(key, await readFile(path.join(repoRoot, "README.md")));
    }
  } catch {
    // Only a convenience for a later step; the demo itself does not need it.
  }
}

async function main(): Promise<void> {
  console.log("streamjob-operator demo: a StreamJob checkpoints its state to MinIO, loses a TaskManager,");
  console.log("and is restored from its latest checkpoint. Ctrl-C stops the demo and leaves the cluster up.");
  const started = Date.now();
  await build();
  await assets();
  await cluster();
  await installOperator();
  const baseline = await runJob();
  await failAndRestore();
  await checkOutput(baseline);
  await wordcountInput();
  console.log(`\nThe demo took ${seconds(Date.now() - started)}.`);
  nextSteps();
}

process.on("SIGINT", () => {
  console.log("\n\nStopped.");
  if (clusterUp) {
    console.log("The local cluster keeps running (and the operator and the job, if they were started):");
    console.log(`  ${exportLine()}`);
    console.log("  kubectl get sj,pods -A");
    console.log(`Stop it with: ${stopCommand()}. npm run demo runs the demo again.`);
  } else if (step >= 3) {
    console.log(
      `The local cluster may be half started: npm run demo again, or stop it with ${stopCommand()}.`,
    );
  }
  process.exit(130);
});

main().catch((err: unknown) => {
  console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  const hints = err instanceof DemoError ? err.hints : [];
  if (clusterUp) {
    console.error("\nThe local cluster keeps running. Look around with:");
    console.error(`  ${exportLine()}`);
    for (const hint of hints) console.error(`  ${hint}`);
    console.error(`  kubectl get sj,pods -A`);
    console.error(`  kubectl logs -n ${OPERATOR_NAMESPACE} deploy/${RELEASE}`);
    console.error(`Stop it with: ${stopCommand()}`);
  } else {
    for (const hint of hints) console.error(`  ${hint}`);
  }
  process.exit(1);
});
