// The children a StreamJob should have for one epoch: a pure function of the resource, the epoch and
// where to restore from. The applier creates what is missing; nothing here talks to the API server.
import type { V1Container, V1EnvVar, V1OwnerReference, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { keyGroupRangeForTask } from "../api/key-groups.js";
import { jobDirectory } from "../api/object-layout.js";
import { PROTOCOL_VERSION, type TaskManagerConfig } from "../api/protocol.js";
import { API_VERSION, KIND, type StreamJob } from "../api/streamjob.js";
import { KAFKA_BOOTSTRAP_SERVERS_KEY } from "../connectors/kafka/connection.js";
import { ENV, TERMINATION_MESSAGE_PATH } from "../taskmanager/config/environment.js";
import {
  jobLabelValue,
  LABELS,
  OPERATOR_NAME,
  TASKMANAGER_APP,
  taskManagerPodName,
  TOKEN_SECRET_KEY,
  tokenSecretName,
} from "./names.js";

export const TASKMANAGER_PORT = 8080;

/** Where the coordinator and the TaskManager's peers reach it: its API's base URL. */
export function taskManagerUrl(podIP: string): string {
  return `http://${podIP.includes(":") ? `[${podIP}]` : podIP}:${TASKMANAGER_PORT}`;
}

/** The UID of the distroless "nonroot" user, which the TaskManager image runs as. */
export const TASKMANAGER_UID = 65532;
const TERMINATION_GRACE_PERIOD_SECONDS = 30;

/** A completed checkpoint or savepoint of the job, by id and manifest key in the job's bucket. */
export interface RestoreTarget {
  checkpointId: number;
  /** Key of the manifest (`_metadata`) in spec.checkpoint.storage.bucket. */
  manifestKey: string;
}

export interface DesiredInput {
  job: StreamJob;
  epoch: number;
  /** Absent on a fresh start. */
  restoreFrom?: RestoreTarget;
  /** From the storage Secret: the TaskManagers get the endpoint and region, not the Secret's data. */
  storage: { endpoint: string; region: string };
}

export interface DesiredChildren {
  /** The Secret the pods read STREAMJOB_TOKEN from; created by the applier with random data. */
  tokenSecret: { name: string; key: string };
  /** One pod per task index, in index order. */
  pods: V1Pod[];
}

export function desiredChildren(input: DesiredInput): DesiredChildren {
  const { job } = input;
  const tokenSecret = { name: tokenSecretName(jobName(job)), key: TOKEN_SECRET_KEY };
  const pods = Array.from({ length: job.spec.parallelism }, (_, taskIndex) =>
    taskManagerPod(input, taskIndex, tokenSecret.name),
  );
  return { tokenSecret, pods };
}

/** The start-up configuration of one task, as the TaskManager parses it from its environment. */
export function taskManagerConfig(input: DesiredInput, taskIndex: number): TaskManagerConfig {
  const { job, epoch, restoreFrom, storage } = input;
  const { spec } = job;
  return {
    protocolVersion: PROTOCOL_VERSION,
    job: { namespace: jobNamespace(job), name: jobName(job) },
    program: { name: spec.job.name, args: spec.job.args },
    epoch,
    parallelism: spec.parallelism,
    maxParallelism: spec.maxParallelism,
    taskIndex,
    keyGroupRange: keyGroupRangeForTask(spec.maxParallelism, spec.parallelism, taskIndex),
    port: TASKMANAGER_PORT,
    storage: { endpoint: storage.endpoint, region: storage.region },
    // The value a TaskManager without this field derives, so old and new TaskManagers of a job agree.
    output: {
      bucket: spec.checkpoint.storage.bucket,
      keyPrefix: jobDirectory(spec.checkpoint.storage.prefix, jobNamespace(job), jobName(job)),
    },
    ...(restoreFrom && {
      restoreFrom: {
        checkpointId: restoreFrom.checkpointId,
        bucket: spec.checkpoint.storage.bucket,
        manifestKey: restoreFrom.manifestKey,
      },
    }),
  };
}

/** Labels of one TaskManager pod; the job label is what the operator selects its pods by. */
export function taskManagerLabels(job: StreamJob, epoch: number, taskIndex: number): Record<string, string> {
  const name = jobLabelValue(jobName(job));
  return {
    [LABELS.name]: TASKMANAGER_APP,
    [LABELS.instance]: name,
    [LABELS.managedBy]: OPERATOR_NAME,
    [LABELS.job]: name,
    [LABELS.epoch]: String(epoch),
    [LABELS.taskIndex]: String(taskIndex),
  };
}

export function ownerReference(job: StreamJob): V1OwnerReference {
  const uid = job.metadata.uid;
  if (!uid)
    throw new Error(`StreamJob ${jobName(job)} has no metadata.uid; it must be read from the API server`);
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: jobName(job),
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

function taskManagerPod(input: DesiredInput, taskIndex: number, tokenSecret: string): V1Pod {
  const { job, epoch } = input;
  const template = job.spec.template;
  const container: V1Container = {
    name: "taskmanager",
    image: job.spec.image,
    ports: [{ name: "http", containerPort: TASKMANAGER_PORT, protocol: "TCP" }],
    env: [...operatorEnv(input, taskIndex, tokenSecret), ...(template?.env ?? []).map(toEnvVar)],
    // /healthz and /readyz are the TaskManager's only unauthenticated endpoints.
    readinessProbe: { httpGet: { path: "/readyz", port: TASKMANAGER_PORT }, periodSeconds: 1 },
    livenessProbe: {
      httpGet: { path: "/healthz", port: TASKMANAGER_PORT },
      periodSeconds: 5,
      failureThreshold: 3,
    },
    // Why a TaskManager stopped reaches containerStatuses[].state.terminated.message: the file it
    // writes, else the tail of its log when it failed (docs/protocol.md, "Start-up configuration").
    terminationMessagePath: TERMINATION_MESSAGE_PATH,
    terminationMessagePolicy: "FallbackToLogsOnError",
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
    },
    ...(template?.resources && {
      resources: {
        ...(template.resources.limits && { limits: quantities(template.resources.limits) }),
        ...(template.resources.requests && { requests: quantities(template.resources.requests) }),
      },
    }),
  };
  const spec: V1PodSpec = {
    // A TaskManager that stops is never restarted alone: the whole job restarts from a checkpoint.
    restartPolicy: "Never",
    terminationGracePeriodSeconds: TERMINATION_GRACE_PERIOD_SECONDS,
    // The TaskManager never calls the Kubernetes API.
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: TASKMANAGER_UID,
      runAsGroup: TASKMANAGER_UID,
      seccompProfile: { type: "RuntimeDefault" },
    },
    containers: [container],
    ...(template?.serviceAccountName && { serviceAccountName: template.serviceAccountName }),
    ...(template?.nodeSelector && { nodeSelector: template.nodeSelector }),
    ...(template?.tolerations && { tolerations: template.tolerations }),
  };
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: taskManagerPodName(jobName(job), epoch, taskIndex),
      namespace: jobNamespace(job),
      labels: taskManagerLabels(job, epoch, taskIndex),
      ownerReferences: [ownerReference(job)],
    },
    spec,
  };
}

function operatorEnv(input: DesiredInput, taskIndex: number, tokenSecret: string): V1EnvVar[] {
  const storageSecret = input.job.spec.checkpoint.storage.secretName;
  const { kafka } = input.job.spec;
  return [
    { name: ENV.config, value: JSON.stringify(taskManagerConfig(input, taskIndex)) },
    { name: ENV.token, valueFrom: { secretKeyRef: { name: tokenSecret, key: TOKEN_SECRET_KEY } } },
    { name: ENV.accessKey, valueFrom: { secretKeyRef: { name: storageSecret, key: "accessKey" } } },
    { name: ENV.secretKey, valueFrom: { secretKeyRef: { name: storageSecret, key: "secretKey" } } },
    { name: ENV.podIp, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    ...(kafka
      ? [
          {
            name: ENV.kafkaBootstrapServers,
            valueFrom: { secretKeyRef: { name: kafka.secretName, key: KAFKA_BOOTSTRAP_SERVERS_KEY } },
          },
          // Credentials stay in the Secret: the pod spec names keys, which may be absent.
          ...(
            [
              [ENV.kafkaUsername, "username"],
              [ENV.kafkaPassword, "password"],
              [ENV.kafkaSaslMechanism, "saslMechanism"],
              [ENV.kafkaTls, "tls"],
            ] as const
          ).map(([name, key]) => ({
            name,
            valueFrom: { secretKeyRef: { name: kafka.secretName, key, optional: true } },
          })),
        ]
      : []),
  ];
}

// The client types quantities as strings; the CRD also admits integers such as `cpu: 2`.
function quantities(list: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(list).map(([resource, amount]) => [resource, String(amount)]));
}

// The spec's valueFrom is an EnvVarSource passed through as written; the API server validates it.
function toEnvVar(env: { name: string; value?: string; valueFrom?: Record<string, unknown> }): V1EnvVar {
  return {
    name: env.name,
    ...(env.value !== undefined && { value: env.value }),
    ...(env.valueFrom !== undefined && { valueFrom: env.valueFrom as V1EnvVar["valueFrom"] }),
  };
}

export function jobName(job: StreamJob): string {
  const name = job.metadata.name;
  if (!name) throw new Error("StreamJob has no metadata.name");
  return name;
}

export function jobNamespace(job: StreamJob): string {
  return job.metadata.namespace ?? "default";
}
