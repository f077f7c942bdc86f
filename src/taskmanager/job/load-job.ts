// Finds the job code named by `program.name` (the StreamJob's `spec.job.name`): a built-in job, or a
// user's module (an absolute path or file: URL of a compiled ES module whose default export has the
// shape of a JobDefinition; docs/writing-a-job.md).
import path from "node:path";
import { pathToFileURL } from "node:url";
import { customerTotalsJob, ordersByCustomerJob } from "./builtin/kafka-orders.js";
import { kafkaSequenceJob } from "./builtin/kafka-sequence.js";
import { sequenceJob } from "./builtin/sequence.js";
import { wordcountJob } from "./builtin/wordcount.js";
import { keyedSequenceJob } from "./builtin/keyed-sequence.js";
import { checkStages, type DataflowDefinition } from "../../dataflow/definition.js";
import type { JobDefinition } from "./job-definition.js";

/** Job code: a single-stage job, or a dataflow of several stages (src/dataflow/). */
export type LoadedJob = JobDefinition<unknown> | DataflowDefinition<unknown>;

const BUILT_IN_JOBS: Record<string, LoadedJob> = {
  sequence: sequenceJob,
  wordcount: wordcountJob,
  "kafka-sequence": kafkaSequenceJob,
  "orders-by-customer": ordersByCustomerJob,
  "customer-totals": customerTotalsJob,
  "keyed-sequence": keyedSequenceJob as DataflowDefinition<unknown>,
};

export async function loadJob(programName: string): Promise<LoadedJob> {
  const builtIn = BUILT_IN_JOBS[programName];
  if (builtIn !== undefined) return builtIn;
  if (!programName.startsWith("file:") && !path.isAbsolute(programName)) {
    throw new Error(
      `job.name ${JSON.stringify(programName)}: not a built-in job (${Object.keys(BUILT_IN_JOBS).join(", ")}) nor an absolute module path`,
    );
  }
  const url = programName.startsWith("file:") ? programName : pathToFileURL(programName).href;
  const module: unknown = await import(url);
  const job = (module as { default?: unknown }).default;
  if (isDataflowShape(job)) {
    checkStages(job.stages);
    return job;
  }
  if (!isJobDefinition(job)) {
    throw new Error(
      `job.name ${programName}: the default export is not a job (needs partitions() and process(), or partitions(), source and stages)`,
    );
  }
  return job;
}

function isDataflowShape(value: unknown): value is DataflowDefinition<unknown> {
  const job = value as Partial<DataflowDefinition<unknown>> | null;
  return (
    typeof job === "object" &&
    job !== null &&
    typeof job.partitions === "function" &&
    typeof job.source?.process === "function" &&
    Array.isArray(job.stages)
  );
}

/** What recognises job code: the shape of its default export, not the name of a type it imports. */
function isJobDefinition(value: unknown): value is JobDefinition<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Partial<JobDefinition<unknown>>).partitions === "function" &&
    typeof (value as Partial<JobDefinition<unknown>>).process === "function"
  );
}
