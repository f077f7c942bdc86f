// The shipped example StreamJobs, read from manifests/examples/ as a user would apply them.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import type { StreamJob } from "../../src/api/streamjob.js";
import { repoRoot, type LocalCluster } from "./local-cluster.js";
import { waitFor } from "./wait.js";

/** manifests/examples/sequence.yaml: the `sequence` job, whose committed output can be checked for gaps. */
/** manifests/examples/<name>.yaml, parsed. */
export function exampleJob(name = "sequence"): StreamJob {
  return parseYaml(
    readFileSync(path.join(repoRoot, "manifests", "examples", `${name}.yaml`), "utf8"),
  ) as StreamJob;
}

/**
 * Applies crds/streamjob.yaml to the cluster and waits until kubectl can use it. Idempotent; the CRD
 * stays installed (deleting it would delete every StreamJob).
 */
export async function applyCrd(cluster: LocalCluster): Promise<void> {
  await cluster.kubectl(
    "apply",
    "--server-side",
    "--force-conflicts",
    "-f",
    path.join(repoRoot, "crds", "streamjob.yaml"),
  );
  await cluster.kubectl(
    "wait",
    "--for=condition=Established",
    "crd/streamjobs.streamjob.dev",
    "--timeout=60s",
  );
  // kubectl finds the new resource only once discovery lists it.
  await waitFor("streamjobs in discovery", () => cluster.kubectl("get", "sj", "-A"));
}
