// Every call the operator makes to the API server, behind one small interface so the reconciler reads
// as domain steps and its unit tests can keep objects in memory. Writes use one field manager; pods go through server-side apply, status through the
// status subresource with a JSON merge patch of only the fields the caller owns (the reconciler and
// the checkpoint coordinator write disjoint status fields, so neither can undo the other's write).
import {
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
  type V1Secret,
} from "@kubernetes/client-node";
import { z } from "zod";
import { GROUP, PLURAL, VERSION, type StreamJob, type StreamJobStatus } from "../api/streamjob.js";
import { OPERATOR_NAME } from "./names.js";

export const FIELD_MANAGER = OPERATOR_NAME;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** What a status patch answers with, as far as the callers need it. */
const PatchedObject = z.object({ metadata: z.object({ resourceVersion: z.string().min(1) }) });

export function isNotFound(err: unknown): boolean {
  return (err as { code?: number }).code === 404;
}
export function isConflict(err: unknown): boolean {
  return (err as { code?: number }).code === 409;
}

export interface EventInput {
  job: StreamJob;
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** The API server as the reconciler and the coordinators' status writes need it. */
export interface KubeGateway {
  /** The StreamJob as stored now (a quorum read, not a cache), or null when it is gone. */
  getStreamJob(namespace: string, name: string): Promise<unknown>;
  listPods(namespace: string, labelSelector: Record<string, string>): Promise<V1Pod[]>;
  getSecret(namespace: string, name: string): Promise<V1Secret | null>;
  /** Creates the Secret; one that already exists is left as it is (its data may be in use). */
  createSecret(secret: V1Secret): Promise<void>;
  /** Creates or updates the pod by server-side apply. */
  applyPod(pod: V1Pod): Promise<void>;
  /** Deletes the pod if it is still the one observed (uid precondition); gone already is fine. */
  deletePod(namespace: string, name: string, uid?: string): Promise<void>;
  /**
   * Merge-patches status fields; resolves with the StreamJob's new resourceVersion, or null when it
   * no longer exists. With `resourceVersion` the write is conditional: a 409 (isConflict) when the
   * StreamJob changed since.
   */
  patchStatus(
    namespace: string,
    name: string,
    status: Partial<StreamJobStatus>,
    resourceVersion?: string,
  ): Promise<string | null>;
  /** Records an Event on the StreamJob; with `aggregate`, repeats of a reason update one Event. */
  recordEvent(event: EventInput, options?: { aggregate?: boolean }): Promise<void>;
  /** Forgets the event series of a deleted job. */
  forgetEvents(uid: string): void;
}

/** The KubeGateway of a real API server, through @kubernetes/client-node. */
export class ClientNodeKubeGateway implements KubeGateway {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly objects: KubernetesObjectApi;
  /** The Event each aggregated (job uid, reason) series updates. */
  private readonly series = new Map<string, { name: string; count: number }>();

  constructor(
    kc: KubeConfig,
    private readonly identity: string,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
  }

  /** The StreamJob as stored now (a quorum read, not a cache), or null when it is gone. */
  async getStreamJob(namespace: string, name: string): Promise<unknown> {
    try {
      return await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL,
        name,
      });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async listPods(namespace: string, labelSelector: Record<string, string>): Promise<V1Pod[]> {
    const selector = Object.entries(labelSelector)
      .map(([key, value]) => `${key}=${value}`)
      .join(",");
    return (await this.core.listNamespacedPod({ namespace, labelSelector: selector })).items;
  }

  async getSecret(namespace: string, name: string): Promise<V1Secret | null> {
    try {
      return await this.core.readNamespacedSecret({ namespace, name });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Creates the Secret; one that already exists is left as it is (its data may be in use). */
  async createSecret(secret: V1Secret): Promise<void> {
    try {
      await this.core.createNamespacedSecret({ namespace: secret.metadata!.namespace!, body: secret });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  async applyPod(pod: V1Pod): Promise<void> {
    await this.objects.patch(pod, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
  }

  /** Deletes the pod if it is still the one observed (uid precondition); gone already is fine. */
  async deletePod(namespace: string, name: string, uid?: string): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({
        namespace,
        name,
        ...(uid && { body: { preconditions: { uid } } }),
      });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }

  /**
   * Merge-patches status fields; returns false when the StreamJob no longer exists. With
   * `resourceVersion` the write is conditional: it rejects with a 409 (isConflict) when the StreamJob
   * changed since that version was read.
   */
  async patchStatus(
    namespace: string,
    name: string,
    status: Partial<StreamJobStatus>,
    resourceVersion?: string,
  ): Promise<string | null> {
    try {
      const patched: unknown = await this.custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name,
          body: resourceVersion === undefined ? { status } : { metadata: { resourceVersion }, status },
          fieldManager: FIELD_MANAGER,
        },
        mergePatch,
      );
      return PatchedObject.parse(patched).metadata.resourceVersion;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * Records an Event on the StreamJob. With `aggregate`, repeats of the same reason update one Event
   * (count, last time, latest message) like client-go's correlator, so a checkpoint every few
   * seconds does not bury everything else in `kubectl describe`.
   */
  async recordEvent(
    { job, type, reason, message }: EventInput,
    options: { aggregate?: boolean } = {},
  ): Promise<void> {
    const now = new Date();
    const namespace = job.metadata.namespace ?? "default";
    // The API server refuses event messages over 1 KiB.
    const text = message.length > 1024 ? `${message.slice(0, 1021)}...` : message;
    const seriesKey = `${job.metadata.uid}/${reason}`;
    const series = options.aggregate ? this.series.get(seriesKey) : undefined;
    if (series) {
      try {
        await this.core.patchNamespacedEvent(
          {
            namespace,
            name: series.name,
            body: { count: series.count + 1, lastTimestamp: now, message: text, type },
          },
          mergePatch,
        );
        series.count += 1;
        return;
      } catch (err) {
        if (!isNotFound(err)) throw err; // expired (events live an hour): start a new one
      }
    }
    const created = await this.core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${job.metadata.name}.` },
        involvedObject: {
          apiVersion: job.apiVersion,
          kind: job.kind,
          name: job.metadata.name,
          namespace,
          uid: job.metadata.uid,
        },
        type,
        reason,
        message: text,
        source: { component: OPERATOR_NAME },
        reportingComponent: `streamjob.dev/${OPERATOR_NAME}`,
        reportingInstance: this.identity,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
    if (options.aggregate) this.series.set(seriesKey, { name: created.metadata!.name!, count: 1 });
  }

  /** Forgets the event series of a deleted job. */
  forgetEvents(uid: string): void {
    for (const key of this.series.keys()) if (key.startsWith(`${uid}/`)) this.series.delete(key);
  }
}
