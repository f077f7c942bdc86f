// Wires watches to the work queue: every change to a StreamJob, or to a pod it owns, queues that
// StreamJob's key, and a periodic resync queues every StreamJob the watch knows; the reconciler does
// the rest. Informers only wake the queue: the reconciler reads fresh from the API server, so the
// watch caches are never trusted for decisions.
import {
  CustomObjectsApi,
  CoreV1Api,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
  type V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { GROUP, KIND, PLURAL, VERSION } from "../../api/streamjob.js";
import { LABELS, OPERATOR_NAME, TASKMANAGER_APP } from "../names.js";
import { Resync } from "./resync.js";
import { WorkQueue } from "./work-queue.js";

export interface ControllerOptions {
  kc: KubeConfig;
  /** Empty: every namespace. */
  namespaces: string[];
  workers: number;
  /** Every StreamJob is queued again about this often (jittered), events or not. */
  syncPeriodMs: number;
  reconcile(key: string): Promise<{ requeueAfterMs?: number }>;
  onProcessed?(durationMs: number, outcome: "success" | "requeue" | "error"): void;
  log: Logger;
}

const WATCH_RETRY_MS = 1000;

export class Controller {
  readonly queue: WorkQueue;
  private readonly informers: Informer<KubernetesObject>[] = [];
  private readonly jobCaches: ObjectCache<KubernetesObject>[] = [];
  private readonly resync: Resync;
  private synced = false;
  private stopped = false;

  constructor(private readonly options: ControllerOptions) {
    this.queue = new WorkQueue((key) => options.reconcile(key), {
      workers: options.workers,
      onProcessed: (key, durationMs, outcome, error) => {
        if (outcome === "error")
          options.log.warn({ key, err: error }, "reconcile failed; retrying with backoff");
        options.onProcessed?.(durationMs, outcome);
      },
    });
    this.resync = new Resync({
      periodMs: options.syncPeriodMs,
      keys: () =>
        new Set(
          this.jobCaches.flatMap((cache) =>
            cache.list().map((job) => keyOf(job.metadata?.namespace, job.metadata?.name)),
          ),
        ),
      enqueue: (key) => this.queue.add(key),
    });
  }

  /** True once every watch has listed its objects (and so queued every existing StreamJob). */
  get hasSynced(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    const { kc, namespaces } = this.options;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const core = kc.makeApiClient(CoreV1Api);
    const podSelector = `${LABELS.name}=${TASKMANAGER_APP},${LABELS.managedBy}=${OPERATOR_NAME}`;
    const scopes = namespaces.length === 0 ? [undefined] : namespaces;
    for (const namespace of scopes) {
      const jobsPath = namespace
        ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`
        : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
      const jobs = makeInformer<KubernetesObject>(kc, jobsPath, () =>
        namespace
          ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })
          : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }),
      );
      const pods = makeInformer<V1Pod>(
        kc,
        namespace ? `/api/v1/namespaces/${namespace}/pods` : "/api/v1/pods",
        () =>
          namespace
            ? core.listNamespacedPod({ namespace, labelSelector: podSelector })
            : core.listPodForAllNamespaces({ labelSelector: podSelector }),
        podSelector,
      );
      for (const verb of ["add", "update", "delete"] as const) {
        jobs.on(verb, (job) => this.queue.add(keyOf(job.metadata?.namespace, job.metadata?.name)));
        pods.on(verb, (pod) => {
          const owner = pod.metadata?.ownerReferences?.find((ref) => ref.kind === KIND && ref.controller);
          if (owner) this.queue.add(keyOf(pod.metadata?.namespace, owner.name));
        });
      }
      this.informers.push(jobs, pods as Informer<KubernetesObject>);
      this.jobCaches.push(jobs);
    }
    for (const informer of this.informers) {
      informer.on("error", (err) => {
        if (this.stopped) return;
        this.options.log.warn({ err }, "watch failed; restarting");
        setTimeout(() => void informer.start().catch(() => undefined), WATCH_RETRY_MS);
      });
    }
    this.queue.start();
    await Promise.all(this.informers.map((informer) => informer.start()));
    this.synced = true;
    this.resync.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resync.stop();
    await Promise.all(this.informers.map((informer) => informer.stop()));
    await this.queue.stop();
  }
}

function keyOf(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? "default"}/${name ?? ""}`;
}
