// The shipped example StreamJobs, read from manifests/examples/ as a user would apply them.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import type { StreamJob } from "../../src/api/streamjob.js";
import { repoRoot } from "./local-cluster.js";

/** manifests/examples/sequence.yaml: the `sequence` job, whose committed output can be checked for gaps. */
export function sequenceExample(): StreamJob {
  return parseYaml(
    readFileSync(path.join(repoRoot, "manifests/examples/sequence.yaml"), "utf8"),
  ) as StreamJob;
}
