// Finds the job code named by `program.name`: a built-in job, or a user's module (an absolute path
// or file: URL of a compiled ES module whose default export is a StreamJob; docs/writing-a-job.md).
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { StreamJob } from "../job/stream-job.js";
import { sequenceJob } from "./sequence.js";
import { wordcountJob } from "./wordcount.js";

const BUILT_IN_JOBS: Record<string, StreamJob<unknown>> = { sequence: sequenceJob, wordcount: wordcountJob };

export async function loadJob(programName: string): Promise<StreamJob<unknown>> {
  const builtIn = BUILT_IN_JOBS[programName];
  if (builtIn !== undefined) return builtIn;
  if (!programName.startsWith("file:") && !path.isAbsolute(programName)) {
    throw new Error(
      `program ${JSON.stringify(programName)}: not a built-in job (${Object.keys(BUILT_IN_JOBS).join(", ")}) nor an absolute module path`,
    );
  }
  const url = programName.startsWith("file:") ? programName : pathToFileURL(programName).href;
  const module: unknown = await import(url);
  const job = (module as { default?: unknown }).default;
  if (!isStreamJob(job)) {
    throw new Error(
      `program ${programName}: the default export is not a job (needs partitions() and process())`,
    );
  }
  return job;
}

function isStreamJob(value: unknown): value is StreamJob<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Partial<StreamJob<unknown>>).partitions === "function" &&
    typeof (value as Partial<StreamJob<unknown>>).process === "function"
  );
}
