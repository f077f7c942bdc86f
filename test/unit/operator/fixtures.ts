// StreamJobs for the operator's unit tests, built through the real spec schema so defaults apply.
import {
  API_VERSION,
  KIND,
  parseStreamJobSpec,
  type StreamJob,
  type StreamJobSpecInput,
} from "../../../src/api/streamjob.js";

export const BASE_SPEC: StreamJobSpecInput = {
  image: "ghcr.io/streamjob/streamjob-taskmanager:0.1.0",
  job: { name: "sequence", args: ["--keys", "100"] },
  checkpoint: { storage: { bucket: "streamjob" } },
};

export function streamJob(
  overrides: Partial<StreamJobSpecInput> = {},
  meta: { name?: string; generation?: number } = {},
): StreamJob {
  const parsed = parseStreamJobSpec({ ...BASE_SPEC, ...overrides });
  if (!parsed.ok) throw new Error(`bad test spec: ${parsed.error}`);
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: meta.name ?? "orders",
      namespace: "default",
      uid: "0b6f3c39-5f1c-4a57-9e51-2a0f3b0c1d2e",
      generation: meta.generation ?? 1,
    },
    spec: parsed.spec,
  };
}

export const STORAGE = { endpoint: "http://10.96.0.20:9000", region: "us-east-1" };
