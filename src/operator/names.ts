// Names and labels of the objects the operator creates for a StreamJob. A job name may be up to 253
// characters, but a pod's hostname and every label value must fit in 63: long names are cut and get
// a short hash of the whole name, so two long jobs with a common prefix still get different names.
import { createHash } from "node:crypto";

export const MAX_LABEL_LENGTH = 63;
const MAX_OBJECT_NAME_LENGTH = 253;
const HASH_LENGTH = 8;

export const LABELS = {
  name: "app.kubernetes.io/name",
  instance: "app.kubernetes.io/instance",
  managedBy: "app.kubernetes.io/managed-by",
  job: "streamjob.dev/job",
  epoch: "streamjob.dev/epoch",
  taskIndex: "streamjob.dev/task-index",
} as const;

export const TASKMANAGER_APP = "streamjob-taskmanager";
export const OPERATOR_NAME = "streamjob-operator";

/** Key in the token Secret's data that holds the bearer token. */
export const TOKEN_SECRET_KEY = "token";

/** `base` + `suffix` if it fits in `max`, else `base` cut short + "-" + 8 hex of sha256(base) + `suffix`. */
export function boundedName(base: string, suffix: string, max: number): string {
  if (base.length + suffix.length <= max) return `${base}${suffix}`;
  const hash = createHash("sha256").update(base).digest("hex").slice(0, HASH_LENGTH);
  // A cut may end on "-" or "."; names must end in an alphanumeric character before the next "-".
  const kept = base.slice(0, max - suffix.length - HASH_LENGTH - 1).replace(/[-.]+$/, "");
  return `${kept}-${hash}${suffix}`;
}

/** The job's name as a label value (at most 63 characters). */
export function jobLabelValue(job: string): string {
  return boundedName(job, "", MAX_LABEL_LENGTH);
}

/**
 * `<job>-tm-<epoch>-<index>`, a DNS label (at most 63 characters, no dots) so it is also a valid
 * hostname. A job name with dots gets them replaced and a hash, so `a.b` and `a-b` stay apart.
 */
export function taskManagerPodName(job: string, epoch: number, taskIndex: number): string {
  const suffix = `-tm-${epoch}-${taskIndex}`;
  if (!job.includes(".")) return boundedName(job, suffix, MAX_LABEL_LENGTH);
  const hash = createHash("sha256").update(job).digest("hex").slice(0, HASH_LENGTH);
  return boundedName(`${job.replaceAll(".", "-")}-${hash}`, suffix, MAX_LABEL_LENGTH);
}

/** The Secret holding the job's random bearer token; the applier creates it, the pods read it. */
export function tokenSecretName(job: string): string {
  return boundedName(job, "-token", MAX_OBJECT_NAME_LENGTH);
}

/** Labels selecting every TaskManager pod of a job, whatever its epoch. */
export function jobSelector(job: string): Record<string, string> {
  return { [LABELS.name]: TASKMANAGER_APP, [LABELS.job]: jobLabelValue(job) };
}
