// What the tests that run StreamJobs share: the CRD installed, a namespace jobs can run in,
// reading a StreamJob and its TaskManager pods, and checking an example's committed output.
import { randomBytes } from "node:crypto";
import type { V1Pod } from "@kubernetes/client-node";
import { jobDirectory } from "../../../src/api/object-layout.js";
import { GROUP, PLURAL, VERSION, type StreamJob } from "../../../src/api/streamjob.js";
import { MinioObjectStore } from "../../../src/storage/minio-object-store.js";
import {
  verifySequenceOutput,
  type SequenceOutputReport,
} from "../../../src/taskmanager/job/builtin/sequence.js";
import { jobPodSelector } from "../../support/pods.js";
import { createJobNamespace } from "../../support/storage.js";
import { applyCrd } from "../../support/streamjob.js";
import { clients, testCluster, waitFor } from "./cluster.js";
import { storageConfig, storageSecretData } from "./minio.js";

const { core, custom } = clients();

export const RESTRICTED = { "pod-security.kubernetes.io/enforce": "restricted" };

/** Applies crds/streamjob.yaml to the test cluster (test files run in any order; idempotent). */
export function installCrd(): Promise<void> {
  return applyCrd(testCluster);
}

/** A namespace enforcing the restricted Pod Security Standard, with the cluster's storage Secret. */
export async function jobNamespace(prefix: string): Promise<string> {
  const namespace = `${prefix}-${randomBytes(3).toString("hex")}`;
  await createJobNamespace(core, namespace, await storageSecretData());
  return namespace;
}

/** Creates the StreamJob in `namespace` (the body's own namespace is ignored). */
export async function createStreamJob(namespace: string, body: object): Promise<void> {
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    body,
  });
}

export async function getStreamJob(namespace: string, name: string): Promise<StreamJob> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    name,
  })) as StreamJob;
}

/** Resolves with the StreamJob once `predicate` holds for it. */
export function waitForStreamJob(
  namespace: string,
  name: string,
  what: string,
  predicate: (job: StreamJob) => boolean,
  timeoutMs = 60_000,
): Promise<StreamJob> {
  return waitFor(
    `${name}: ${what}`,
    async () => {
      const job = await getStreamJob(namespace, name);
      return predicate(job) ? job : undefined;
    },
    timeoutMs,
  );
}

/** Resolves once the job is Running with a checkpoint newer than `after`. */
export function runningWithNewCheckpoint(
  namespace: string,
  name: string,
  after: number,
  what: string,
  timeoutMs = 120_000,
): Promise<StreamJob> {
  return waitForStreamJob(
    namespace,
    name,
    what,
    (job) => job.status?.phase === "Running" && (job.status.latestCheckpoint?.id ?? 0) > after,
    timeoutMs,
  );
}

/**
 * The exactly-once check of an example job's committed output (`sequence`, `keyed-sequence`),
 * read where the examples put it: bucket `streamjob`, prefix `checkpoints`.
 */
export async function exampleSequenceOutput(namespace: string, name: string): Promise<SequenceOutputReport> {
  const store = new MinioObjectStore({ ...(await storageConfig()), bucket: "streamjob" });
  return verifySequenceOutput(store, jobDirectory("checkpoints", namespace, name));
}

/** The job's TaskManager pods that are not being deleted. */
export async function taskManagerPods(namespace: string, name: string): Promise<V1Pod[]> {
  const list = await core.listNamespacedPod({ namespace, labelSelector: jobPodSelector(name) });
  return list.items.filter((pod) => !pod.metadata?.deletionTimestamp);
}
