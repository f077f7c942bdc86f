// What every part of the operator bench shares: its settings, its cluster (.devcluster/bench), the
// job it runs, and an Observer that timestamps every watch event on arrival.
import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type V1Pod,
} from "@kubernetes/client-node";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../../src/api/streamjob.js";
import { LocalCluster, repoRoot } from "../../test/support/local-cluster.js";
import { epochOf, isDeleting, isReady, jobOf, taskIndexOf } from "../../test/support/pods.js";
import { exampleJob } from "../../test/support/streamjob.js";
import { sleep, waitFor as waitUntil } from "../../test/support/wait.js";

export interface Settings {
  /** Recovery runs (--runs). */
  runs: number;
  specRuns: number;
  scaleRuns: number;
  idleJobs: number;
  idleSeconds: number;
}

export const cluster = new LocalCluster(path.join(repoRoot, ".devcluster", "bench"));
export const JOB = "sequence";
export const FLINK_HEARTBEAT_TIMEOUT_S = 50;
/** The bench job's restart policy: runs are spaced so that its backoff never delays a restart. */
export const RESTART = { maxRestarts: 1000, backoff: { initial: "1s", max: "4s" } };
const BACKOFF_MAX_MS = 4_000;
export const CHECKPOINT_INTERVAL = "2s";
/** 64 keys at 10 records/s: each TaskManager owns some keys and counts up every few ms. */
const JOB_ARGS = ["--keys", "64", "--rate", "10"];
export const TM_POLL_MS = 50;
/** Targets of issue 4. */
export const TARGETS = {
  recoveryP50S: 3,
  recoveryP99S: 10,
  specChangeP99Ms: 1_000,
  rssMiB: 150,
  cpuPercent: 2,
};

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const createdMs = (obj: KubernetesObject) => new Date(obj.metadata?.creationTimestamp ?? 0).getTime();

/** Waiting, checked every 20 ms: the bench times what it waits for. */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  intervalMs = 20,
): Promise<T> {
  return waitUntil(what, check, timeoutMs, intervalMs);
}

// ── what the cluster tells us, timestamped on arrival ──────────────────────────────────────────

export interface Logged {
  t: number;
  kind: "pod" | "job";
  verb: "add" | "update" | "delete";
  obj: KubernetesObject;
}

/** Watches the bench namespace's pods and StreamJobs; keeps every event with its arrival time. */
export class Observer {
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
        (pod) => jobOf(pod) === JOB && !isDeleting(pod) && (epoch === undefined || epochOf(pod) === epoch),
      )
      .sort((a, b) => taskIndexOf(a) - taskIndexOf(b));
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

export interface Context {
  settings: Settings;
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
export function sequenceJob(
  name: string,
  bucket: string,
  overrides: Partial<StreamJob["spec"]> = {},
): StreamJob {
  const example = exampleJob("sequence");
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

export async function patchJob(
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
export async function settle(ctx: Context, afterCheckpoint: number): Promise<void> {
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
