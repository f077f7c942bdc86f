// `npm run chaos -- --faults N [--seed S] [--job sequence|keyed-sequence]`: a bounded fault-injection
// run on a local cluster (.devcluster/chaos, or DEVCLUSTER_DIR; started if needed and stopped again
// if this run started it, unless KEEP_CLUSTER=1). The operator is installed by the Helm chart into a
// fresh namespace and runs the `sequence` example, or `keyed-sequence` (records crossing
// TaskManagers through two keyBy exchanges, aligned checkpoints); then N faults (test/support/chaos/faults.ts) hit TaskManagers, the
// operator, MinIO and kube-apiserver, one or two at once. Throughout, status.latestCheckpoint must
// name an intact checkpoint and ids must never go back; at the end the job must be healthy again
// within HEALTHY_WITHIN_MS of the last fault and its committed output must have no gap and no
// duplicate (test/support/chaos/verify.ts). The last line is the summary (a contract):
//
//   chaos: F faults, V violations, G gaps, D duplicates
//
// and the exit code is 1 unless V, G and D are all 0.
import { randomBytes, randomInt as cryptoRandomInt } from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";
import { jobDirectory } from "../src/api/object-layout.js";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../src/api/streamjob.js";
import { clusterDir as devclusterDir, readState } from "../src/devcluster/cluster.js";
import { isAlive } from "../src/devcluster/processes.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
} from "../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../src/taskmanager/job/builtin/sequence.js";
import { describeFault, planFaults } from "../test/support/chaos/faults.js";
import { inject, resumeAll, type ChaosTarget } from "../test/support/chaos/inject.js";
import {
  checkpointProblems,
  CheckpointIdWatch,
  countOutputProblems,
  isHealthy,
  passed,
  summaryLine,
  type ChaosSummary,
} from "../test/support/chaos/verify.js";
import { LocalCluster, repoRoot } from "../test/support/local-cluster.js";
import { installOperatorRelease, type OperatorRelease } from "../test/support/operator-release.js";
import { seededRandom } from "../test/support/random.js";
import { createJobNamespace, removeBucket, storageSecretData } from "../test/support/storage.js";
import { applyCrd, exampleJob } from "../test/support/streamjob.js";
import { sleep, waitFor } from "../test/support/wait.js";

const { values: flags } = parseArgs({
  options: {
    faults: { type: "string", default: "20" },
    seed: { type: "string" },
    job: { type: "string", default: "sequence" },
  },
  strict: true,
});
const FAULTS = Number(flags.faults);
if (!Number.isInteger(FAULTS) || FAULTS < 1 || FAULTS > 1_000)
  throw new Error(`--faults: expected a whole number from 1 to 1000, got ${flags.faults}`);
const SEED = flags.seed === undefined ? cryptoRandomInt(2 ** 31) : Number(flags.seed);

/** The stated bound: Running with two new checkpoints this soon after the last fault. */
const HEALTHY_WITHIN_MS = 60_000;
/** After a fault, the next waits until the job checkpointed again, or this long. */
const SETTLE_MS = 20_000;
/** The whole run's bound: it stops injecting after this. */
const RUN_BOUND_MS = FAULTS * 45_000 + 180_000;
// Each job's arguments: enough records to see counters move, few enough for a loaded machine.
const JOB_ARGS: Record<string, string[]> = {
  sequence: ["--keys", "16", "--rate", "20"],
  "keyed-sequence": ["--partitions", "4", "--keys", "8", "--rate", "20"],
};
const JOB = flags.job;
if (!Object.hasOwn(JOB_ARGS, JOB))
  throw new Error(`--job: expected one of ${Object.keys(JOB_ARGS).join(", ")}, got ${JOB}`);

const clusterDir = process.env.DEVCLUSTER_DIR ? devclusterDir() : path.join(repoRoot, ".devcluster", "chaos");
const cluster = new LocalCluster(clusterDir);
const violations: string[] = [];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function violation(message: string): void {
  violations.push(message);
  console.log(`VIOLATION ${message}`);
}

function clusterRunning(): boolean {
  const state = readState(clusterDir);
  return state !== undefined && state.processes.every((p) => isAlive(p.pid));
}

async function main(): Promise<number> {
  const started = Date.now();
  const startedCluster = !clusterRunning();
  console.log(
    `chaos run: ${FAULTS} faults on ${JOB}, seed ${SEED}, cluster ${path.relative(repoRoot, clusterDir)}`,
  );
  cluster.cli("up");
  const { core, custom } = cluster.clients();
  const namespace = `chaos-${randomBytes(3).toString("hex")}`;
  const bucket = namespace;
  const storageData = await storageSecretData(core);
  const store = new MinioObjectStore({ ...storageConfigFromSecret(storageData), bucket });
  let operator: OperatorRelease | undefined;
  let watching = true;

  const readJob = async () =>
    (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name: JOB,
    })) as StreamJob;

  let cleaned = false;
  const cleanup = async () => {
    resumeAll();
    if (cleaned) return;
    cleaned = true;
    watching = false;
    // The StreamJob first, while the operator still runs to see it go; then the operator.
    await custom
      .deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name: JOB })
      .catch(() => undefined);
    await waitFor(
      `${JOB} deleted`,
      () =>
        readJob().then(
          () => false,
          () => true,
        ),
      30_000,
    ).catch(() => console.error(`cleanup: ${JOB} still there after 30 s`));
    await operator?.uninstall().catch((err: Error) => console.error(`cleanup: ${err.message}`));
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    // No bucket when the run failed before creating it.
    await removeBucket(store).catch(() => undefined);
    if (startedCluster && process.env.KEEP_CLUSTER !== "1") {
      try {
        cluster.cli("down");
      } catch (err) {
        console.error(`cleanup: cluster:down failed: ${(err as Error).message}`);
      }
    }
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.once(signal, () => {
      resumeAll();
      console.error(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });

  const summary: ChaosSummary = { faults: 0, violations: 0, gaps: 0, duplicates: 0 };
  try {
    await applyCrd(cluster);
    await createJobNamespace(core, namespace, storageData);
    await ensureBucket(store);
    operator = await installOperatorRelease(cluster, namespace, [namespace]);
    const example = exampleJob(JOB);
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      body: {
        ...example,
        metadata: { name: JOB },
        spec: {
          ...example.spec,
          job: { ...example.spec.job, args: JOB_ARGS[JOB]! },
          checkpoint: {
            ...example.spec.checkpoint,
            interval: "1s",
            storage: { ...example.spec.checkpoint.storage, bucket },
          },
          // Faults come faster than any real failure rate: never give up, never wait long.
          restart: { maxRestarts: 100_000, backoff: { initial: "500ms", max: "2s" } },
        },
      },
    });
    await waitFor(
      `${JOB} Running with a checkpoint`,
      async () => isHealthy((await readJob()).status, 0, 1),
      120_000,
    );
    console.log(`operator ${operator.release} and StreamJob ${namespace}/${JOB} running`);

    // Throughout: the checkpoint status names is intact, and ids never go back.
    const ids = new CheckpointIdWatch();
    let status: StreamJob["status"];
    const checked = new Map<number, number>();
    const watcher = (async () => {
      while (watching) {
        try {
          status = (await readJob()).status;
          const pointer = status?.latestCheckpoint;
          if (pointer) {
            const back = ids.observe(pointer.id);
            if (back) violation(back);
            // Each new checkpoint at once, the current one again every 5 s (it must stay intact).
            if (Date.now() - (checked.get(pointer.id) ?? 0) > 5_000) {
              const problems = await checkpointProblems(store, pointer);
              checked.set(pointer.id, Date.now());
              // A checkpoint status has moved past may be retired meanwhile: only one still named counts.
              if (problems.length > 0 && (await readJob()).status?.latestCheckpoint?.id === pointer.id)
                problems.forEach(violation);
            }
          }
        } catch {
          // The API server or MinIO paused or restarting: nothing to judge now.
        }
        await sleep(500);
      }
    })();

    await waitFor("the watch's first checkpoint", () => ids.latest > 0, 30_000);
    const random = seededRandom(SEED);
    const target: ChaosTarget = {
      clusterDir,
      core,
      namespace,
      job: JOB,
      operatorRelease: operator.release,
      random,
    };
    const plan = planFaults(FAULTS, random);
    let lastFaultEnded = Date.now();
    let afterLastFault = ids.latest;
    for (const [i, fault] of plan.entries()) {
      if (Date.now() - started > RUN_BOUND_MS) {
        violation(`the run's bound of ${seconds(RUN_BOUND_MS)} was reached after ${i} faults`);
        break;
      }
      const mark = ids.latest;
      const faultStarted = Date.now();
      const hits = await Promise.allSettled(fault.map((hit) => inject(target, hit)));
      summary.faults++;
      lastFaultEnded = Date.now();
      const hit = hits.map((h) => (h.status === "fulfilled" ? h.value : "-")).join(", ");
      console.log(
        `fault ${i + 1}/${FAULTS}: ${describeFault(fault)}: ${hit} (at checkpoint ${mark}, ${seconds(lastFaultEnded - faultStarted)})`,
      );
      for (const h of hits)
        if (h.status === "rejected") violation(`fault ${i + 1}: ${(h.reason as Error).message}`);
      // Fresh, not the watch's last read: healthy means checkpoints after the fault ended.
      afterLastFault = await readJob().then(
        (job) => Math.max(ids.latest, job.status?.latestCheckpoint?.id ?? 0),
        () => ids.latest,
      );
      if (i === plan.length - 1) break;
      const after = afterLastFault;
      await waitFor("a checkpoint after the fault", () => isHealthy(status, after, 1), SETTLE_MS, 250).catch(
        () => undefined,
      );
      await sleep(500 + random() * 2_500);
    }

    // Healthy again: Running, with checkpoints advancing, within the stated time of the last fault.
    const mark = afterLastFault;
    try {
      const left = HEALTHY_WITHIN_MS - (Date.now() - lastFaultEnded);
      await waitFor("healthy", () => isHealthy(status, mark), left, 250);
      console.log(
        `healthy again ${seconds(Date.now() - lastFaultEnded)} after the last fault ` +
          `(Running, checkpoint ${status?.latestCheckpoint?.id} after ${mark}; bound ${seconds(HEALTHY_WITHIN_MS)})`,
      );
    } catch {
      violation(
        `not healthy within ${seconds(HEALTHY_WITHIN_MS)} of the last fault: phase ${status?.phase}, ` +
          `checkpoint ${status?.latestCheckpoint?.id} (needed ${mark + 2})`,
      );
    }
    watching = false;
    await watcher;

    // Read while the job runs, as a consumer would: a task commits each checkpoint's output in one
    // object, in checkpoint order, so one still being committed ends a key's values early; it
    // cannot open a gap.
    const report = await verifySequenceOutput(
      store,
      jobDirectory(example.spec.checkpoint.storage.prefix ?? "", namespace, JOB),
    );
    const counts = countOutputProblems(report);
    for (const problem of report.problems.slice(0, 20)) console.log(`output: ${problem}`);
    counts.other.forEach(violation);
    if (report.records === 0) violation("the committed output is empty");
    console.log(
      `committed output: ${report.records} records over ${report.lastValues.size} keys, ` +
        `${checked.size} checkpoints checked intact, up to checkpoint ${ids.latest}, in ${seconds(Date.now() - started)}`,
    );
    summary.gaps = counts.gaps;
    summary.duplicates = counts.duplicates;
  } catch (err) {
    violation(`the run failed: ${(err as Error).message}`);
  } finally {
    await cleanup();
  }
  summary.violations = violations.length;
  console.log(summaryLine(summary));
  return passed(summary) ? 0 : 1;
}

process.on("exit", resumeAll);
main().then(
  (code) => process.exit(code),
  (err: Error) => {
    resumeAll();
    console.error(err);
    process.exit(1);
  },
);
