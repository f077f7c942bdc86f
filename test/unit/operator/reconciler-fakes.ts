// Fakes of the reconciler's side effects: an API server keeping objects in memory, checkpoint
// storage in memory, job coordinators that only record what they were asked, and TaskManagers that
// only take peers. Each write and each storage read goes into one shared timeline, so a test can
// assert the order of side effects.
import { randomUUID } from "node:crypto";
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import type { JobRef } from "../../../src/api/protocol.js";
import type { StreamJob, StreamJobStatus } from "../../../src/api/streamjob.js";
import type { HttpTaskManagerClientOptions } from "../../../src/coordinator/http-task-manager-client.js";
import {
  TaskManagerCallError,
  type SnapshotStore,
  type TaskManagerClient,
} from "../../../src/coordinator/interfaces.js";
import {
  StorageSecretError,
  type JobStorage,
  type StorageResolver,
} from "../../../src/operator/checkpoint-storage.js";
import { jobKey, type StartInput } from "../../../src/operator/job-coordinators.js";
import type { EventInput, KubeGateway } from "../../../src/operator/kube-gateway.js";
import type { SnapshotObservation } from "../../../src/operator/planner.js";
import type { Coordinators } from "../../../src/operator/reconciler.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { ObjectSnapshotStore } from "../../../src/storage/snapshot-store.js";
import { STORAGE } from "./fixtures.js";

const keyOf = (namespace: string | undefined, name: string | undefined) =>
  `${namespace ?? "default"}/${name}`;

export class FakeGateway implements KubeGateway {
  readonly jobs = new Map<string, StreamJob>();
  readonly pods = new Map<string, V1Pod>();
  readonly secrets = new Map<string, V1Secret>();
  readonly events: Array<EventInput & { aggregate: boolean }> = [];
  readonly statusPatches: Array<Partial<StreamJobStatus>> = [];
  readonly forgottenEvents: string[] = [];

  constructor(
    private readonly now: () => number,
    private readonly timeline: string[],
  ) {}

  /** Every write: pod and Secret changes, status patches and events. */
  writes(): string[] {
    return this.timeline.filter((entry) => /^(apply|delete|create|patch|event) /.test(entry));
  }

  async getStreamJob(namespace: string, name: string): Promise<unknown> {
    const job = this.jobs.get(keyOf(namespace, name));
    return job ? structuredClone(job) : null;
  }

  async listPods(namespace: string, labelSelector: Record<string, string>): Promise<V1Pod[]> {
    return [...this.pods.values()]
      .filter(
        (pod) =>
          pod.metadata?.namespace === namespace &&
          Object.entries(labelSelector).every(([key, value]) => pod.metadata?.labels?.[key] === value),
      )
      .map((pod) => structuredClone(pod));
  }

  async getSecret(namespace: string, name: string): Promise<V1Secret | null> {
    const secret = this.secrets.get(keyOf(namespace, name));
    return secret ? structuredClone(secret) : null;
  }

  async createSecret(secret: V1Secret): Promise<void> {
    const key = keyOf(secret.metadata?.namespace, secret.metadata?.name);
    if (this.secrets.has(key)) return;
    const data = Object.fromEntries(
      Object.entries(secret.stringData ?? {}).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
    );
    this.timeline.push(`create secret ${secret.metadata?.name}`);
    this.secrets.set(key, { ...structuredClone(secret), data, stringData: undefined });
  }

  async applyPod(pod: V1Pod): Promise<void> {
    const key = keyOf(pod.metadata?.namespace, pod.metadata?.name);
    this.timeline.push(`apply pod ${pod.metadata?.name}`);
    const existing = this.pods.get(key);
    this.pods.set(key, {
      ...structuredClone(pod),
      metadata: {
        ...structuredClone(pod.metadata),
        uid: existing?.metadata?.uid ?? randomUUID(),
        creationTimestamp: existing?.metadata?.creationTimestamp ?? new Date(this.now()),
      },
      status: existing?.status ?? { phase: "Pending" },
    });
  }

  async deletePod(namespace: string, name: string): Promise<void> {
    this.timeline.push(`delete pod ${name}`);
    this.pods.delete(keyOf(namespace, name));
  }

  async patchStatus(
    namespace: string,
    name: string,
    status: Partial<StreamJobStatus>,
  ): Promise<string | null> {
    const job = this.jobs.get(keyOf(namespace, name));
    if (!job) return null;
    this.timeline.push(`patch status ${status.phase ?? ""}`.trim());
    this.statusPatches.push(structuredClone(status));
    job.status = { ...job.status, ...structuredClone(status) };
    return String(this.statusPatches.length);
  }

  async recordEvent(event: EventInput, options: { aggregate?: boolean } = {}): Promise<void> {
    this.timeline.push(`event ${event.reason}`);
    this.events.push({ ...event, aggregate: options.aggregate ?? false });
  }

  forgetEvents(uid: string): void {
    this.forgottenEvents.push(uid);
  }

  /** What the kubelet would do: the pod runs, has an IP and passes its readiness probe. */
  podReady(name: string, at: number): void {
    this.setPodStatus(name, {
      phase: "Running",
      podIP: "10.0.0.5",
      conditions: [{ type: "Ready", status: "True", lastTransitionTime: new Date(at) }],
    });
  }

  /** The pod runs and has an IP, but its readiness probe does not pass yet. */
  podStarted(name: string, podIP: string): void {
    this.setPodStatus(name, { phase: "Running", podIP });
  }

  podFailed(name: string, exitCode: number): void {
    this.setPodStatus(name, {
      phase: "Failed",
      containerStatuses: [
        {
          name: "taskmanager",
          image: "",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode, reason: "Error" } },
        },
      ],
    });
  }

  private setPodStatus(name: string, status: V1Pod["status"]): void {
    const pod = [...this.pods.values()].find((candidate) => candidate.metadata?.name === name);
    if (!pod) throw new Error(`no pod ${name}`);
    pod.status = status;
  }
}

/** Checkpoint storage in memory; `secretProblem` makes resolving fail as a bad Secret would. */
export class FakeStorageResolver implements StorageResolver {
  readonly objects = new MemoryObjectStore("streamjob");
  readonly snapshots: ObjectSnapshotStore;
  readonly forgotten: string[] = [];
  secretProblem: string | undefined;
  /** Fails resolving with this (not a Secret problem: the API server could not be asked). */
  outage: Error | undefined;

  constructor(
    private readonly timeline: string[],
    basePrefix = "checkpoints",
  ) {
    this.snapshots = new ObjectSnapshotStore(this.objects, basePrefix);
  }

  async resolve(job: StreamJob): Promise<JobStorage> {
    if (this.outage) throw this.outage;
    if (this.secretProblem) throw new StorageSecretError(this.secretProblem);
    const snapshots = this.snapshots;
    const timeline = this.timeline;
    const recording: SnapshotStore = {
      recordTrigger: (record) => snapshots.recordTrigger(record),
      putManifest: (manifest) => snapshots.putManifest(manifest),
      getManifest: (key) => snapshots.getManifest(key),
      listCheckpoints: (ref: JobRef) => {
        timeline.push("read checkpoints");
        return snapshots.listCheckpoints(ref);
      },
      deleteObjects: (keys) => snapshots.deleteObjects(keys),
      statObject: (key) => snapshots.statObject(key),
    };
    return {
      snapshots: recording,
      bucket: job.spec.checkpoint.storage.bucket,
      ...STORAGE,
      ensureBucket: async () => {},
    };
  }

  forget(key: string): void {
    this.forgotten.push(key);
  }
}

/** Job coordinators that record what they are asked; `whileStopping` runs inside stop(). */
export class FakeCoordinators implements Coordinators {
  readonly running = new Map<string, { epoch: number; parallelism: number }>();
  readonly snapshots = new Map<string, SnapshotObservation>();
  readonly forgotten: string[] = [];
  whileStopping: (() => Promise<void>) | undefined;

  constructor(private readonly timeline: string[]) {}

  async adopt(): Promise<void> {}

  isRunning(key: string): boolean {
    return this.running.has(key);
  }

  snapshotOf(key: string): SnapshotObservation | undefined {
    return this.snapshots.get(key);
  }

  restartRequestOf(): string | undefined {
    return undefined;
  }

  checkpointFailureOf(): string | undefined {
    return undefined;
  }

  async start(input: StartInput): Promise<void> {
    const key = jobKey({ namespace: input.job.metadata.namespace!, name: input.job.metadata.name! });
    const running = this.running.get(key);
    if (running?.epoch === input.epoch && running.parallelism === input.parallelism) return;
    this.timeline.push(`start coordinator ${input.epoch}`);
    this.running.set(key, { epoch: input.epoch, parallelism: input.parallelism });
  }

  async stop(key: string): Promise<boolean> {
    if (!this.running.has(key)) return false;
    this.timeline.push("stop coordinator: begins");
    await this.whileStopping?.();
    this.running.delete(key);
    this.timeline.push("stop coordinator: ended");
    return true;
  }

  /** Like JobCoordinators: without a running coordinator the snapshot fails at once. */
  takeSnapshot(key: string, kind: "checkpoint" | "savepoint", purpose: string): void {
    this.timeline.push(`take ${kind} ${purpose}`);
    this.snapshots.set(
      key,
      this.running.has(key)
        ? { purpose, state: "pending" }
        : { purpose, state: "failed", message: "no coordinator is running" },
    );
  }

  async forget(key: string): Promise<void> {
    this.forgotten.push(key);
    await this.stop(key);
  }
}

/**
 * The TaskManagers as the reconciler reaches them: they only take peers, each PUT going into the
 * timeline. One at an `unreachable` base URL is not listening yet.
 */
export class FakePeers {
  readonly unreachable = new Set<string>();
  /** The token and timeout of every client made, by base URL. */
  readonly clients = new Map<string, { token: string; requestTimeoutMs?: number }>();

  constructor(private readonly timeline: string[]) {}

  readonly connect = (options: HttpTaskManagerClientOptions): Pick<TaskManagerClient, "setPeers"> => {
    const { baseUrl, token, requestTimeoutMs } = options;
    this.clients.set(baseUrl, { token, requestTimeoutMs });
    return {
      setPeers: async (request) => {
        if (this.unreachable.has(baseUrl))
          throw new TaskManagerCallError(`task ${options.taskIndex} at ${baseUrl} is unreachable`);
        const peers = request.peers.map((peer) => `${peer.taskIndex}=${peer.url}`).join(" ");
        this.timeline.push(`peers ${request.epoch} to ${baseUrl}: ${peers}`);
      },
    };
  };
}
