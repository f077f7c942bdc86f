// Reading a job's committed output (the result of the exactly-once sink), for verification.
import type { ObjectStore } from "../../storage/object-store.js";
import { committedDirectory, parseCommittedOutputKeys, type OutputObject } from "./output-layout.js";

export interface CommittedOutputObject extends OutputObject {
  lines: string[];
}

/** Every committed output object of the job, in checkpoint order, with its lines. */
export async function* readCommittedOutput(
  store: ObjectStore,
  jobDirectory: string,
): AsyncGenerator<CommittedOutputObject> {
  const objects = parseCommittedOutputKeys(jobDirectory, await store.list(committedDirectory(jobDirectory)));
  for (const object of objects) {
    const text = (await store.get(object.key)).toString("utf8");
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    yield { ...object, lines };
  }
}
