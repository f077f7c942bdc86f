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
// PASS/MISS, writes bench/results/operator.csv. Each part is a module of bench/operator/: setup.ts
// (cluster, job, watch), recovery.ts, spec-change.ts, idle.ts, results.ts.
//
//   npm run bench:operator -- --runs 10 --spec-runs 20 --scale-runs 2 --idle-jobs 50 --idle-seconds 60
import { randomBytes } from "node:crypto";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { GROUP, PLURAL, VERSION } from "../src/api/streamjob.js";
import { MinioObjectStore, storageConfigFromSecret } from "../src/storage/minio-object-store.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { chartPath } from "../test/support/operator-release.js";
import { createJobNamespace, removeBucket, storageSecretData } from "../test/support/storage.js";
import { rssMiB } from "./measure.js";
import { benchIdle, operatorPod } from "./operator/idle.js";
import { benchRecovery } from "./operator/recovery.js";
import { errors, printTables, writeCsv } from "./operator/results.js";
import {
  CHECKPOINT_INTERVAL,
  cluster,
  JOB,
  Observer,
  RESTART,
  sequenceJob,
  settle,
  TM_POLL_MS,
  waitFor,
  type Context,
  type Settings,
} from "./operator/setup.js";
import { benchSavepointNonce, benchScale } from "./operator/spec-change.js";

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
const settings: Settings = {
  runs: count("runs", flags.runs),
  specRuns: count("spec-runs", flags["spec-runs"]),
  scaleRuns: count("scale-runs", flags["scale-runs"]),
  idleJobs: count("idle-jobs", flags["idle-jobs"]),
  idleSeconds: count("idle-seconds", flags["idle-seconds"]),
};
const KEEP_CLUSTER = process.env.KEEP_CLUSTER === "1";

async function main(): Promise<void> {
  console.log(`operator bench on the local cluster in ${path.relative(repoRoot, cluster.dir)}`);
  cluster.cli("up");
  const { kc, core, custom } = cluster.clients();

  // Namespaces a killed earlier run left behind.
  const leftovers = await core.listNamespace({ labelSelector: "streamjob.dev/bench=operator" });
  for (const ns of leftovers.items)
    await core.deleteNamespace({ name: ns.metadata!.name! }).catch(() => undefined);

  const namespace = `bench-op-${randomBytes(3).toString("hex")}`;
  const bucket = namespace;
  const storageData = await storageSecretData(core);
  const store = new MinioObjectStore({ ...storageConfigFromSecret(storageData), bucket });
  const ctx: Context = {
    settings,
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
      await cluster
        .helm("uninstall", ctx.release, "--namespace", namespace, "--wait", "--timeout", "60s")
        .catch((err: Error) => console.warn(`cleanup: ${err.message}`));
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    // No bucket when the job never started.
    await removeBucket(store).catch(() => undefined);
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
        `KEEP_CLUSTER=1: the cluster keeps running (DEVCLUSTER_DIR=${cluster.dir} npm run cluster:down)`,
      );
    } else cluster.cli("down");
  };
  process.once("SIGINT", () => {
    console.error("interrupted; cleaning up");
    void cleanup().finally(() => process.exit(130));
  });

  try {
    await createJobNamespace(core, namespace, storageData, { "streamjob.dev/bench": "operator" });
    await cluster.kubectl("apply", "--server-side", "-f", path.join(repoRoot, "crds", "streamjob.yaml"));
    let t = performance.now();
    await cluster.helm(
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
        `With ${settings.runs} runs, p95 and p99 are the maximum. Spec change: "first action" = the operator's status ` +
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
