// End to end, as a user meets the project: `helm install` the chart, the operator pod running under
// its own ServiceAccount in a namespace enforcing Pod Security "restricted", `kubectl apply` of both
// shipped examples (sequence, and wordcount over text uploaded to MinIO), `kubectl get sj` showing
// checkpoints advance, `kubectl explain`, a `helm upgrade` that leaves running jobs alone, and a
// `helm uninstall` that removes every object of the release while the checkpoints stay in storage.
//
// The test cluster is shared with other test files that install their own operators, each watching
// only its namespaces; this one does too (watchNamespaces), and checks the chart's default,
// cluster-wide RBAC by rendering it and asking the API server what the ServiceAccount may do.
// The tests run in order and share the release and the jobs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { jobDirectory } from "../../src/api/object-layout.js";
import type { StreamJob } from "../../src/api/streamjob.js";
import { ensureBucket, MinioObjectStore } from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { wordsOf } from "../../src/taskmanager/job/builtin/wordcount.js";
import { readCommittedOutput } from "../../src/taskmanager/sink/committed-output.js";
import { clients, createNamespace, kubectl, repoRoot, waitFor } from "./support/cluster.js";
import { storageConfig } from "./support/minio.js";
import { chartPath, helm, installOperator, type InstalledOperator } from "./support/operator.js";
import {
  getStreamJob,
  jobNamespace,
  RESTRICTED,
  taskManagerPods as podsOf,
  waitForStreamJob,
} from "./support/streamjobs.js";

const { core, apps } = clients();
const examples = path.join(repoRoot, "manifests", "examples");
// Both examples read and write this bucket (spec.checkpoint.storage.bucket, wordcount's --input).
const BUCKET = "streamjob";
const INPUT_PREFIX = "input/";
const scratch = mkdtempSync(path.join(tmpdir(), "e2e-test-"));

let operatorNs: string;
let ns: string;
let operator: InstalledOperator;
let store: MinioObjectStore;

const job = (name: string) => getStreamJob(ns, name);
const waitForStatus = (name: string, what: string, predicate: (job: StreamJob) => boolean) =>
  waitForStreamJob(ns, name, what, predicate);
const taskManagerPods = (name: string) => podsOf(ns, name);

/** The CHECKPOINT column of `kubectl get sj`, per job name (undefined while there is none). */
async function checkpointColumn(): Promise<Map<string, number | undefined>> {
  const [header = "", ...rows] = (await kubectl("get", "sj", "-n", ns)).trimEnd().split("\n");
  const columns = header.split(/\s{2,}/);
  expect(columns).toEqual([
    "NAME",
    "PHASE",
    "PARALLELISM",
    "CHECKPOINT",
    "CHECKPOINT AGE",
    "LAG",
    "RESTARTS",
    "AGE",
  ]);
  const at = header.indexOf("CHECKPOINT");
  return new Map(
    rows.map((row) => {
      const cell = row.slice(at).split(/\s+/)[0] ?? "";
      return [row.split(/\s+/)[0]!, /^\d+$/.test(cell) ? Number(cell) : undefined];
    }),
  );
}

/** `kubectl auth can-i ... --as=<the operator's ServiceAccount>`: true for "yes". */
async function operatorCan(...args: string[]): Promise<boolean> {
  const as = `--as=system:serviceaccount:${operatorNs}:${operator.release}-streamjob-operator`;
  try {
    return (await kubectl("auth", "can-i", ...args, as)).trim() === "yes";
  } catch (err) {
    // "no" exits 1; anything else is a real failure.
    const stdout = (err as { stdout?: string }).stdout ?? "";
    if (stdout.trim() === "no") return false;
    throw err;
  }
}

/** Every word's count in the wordcount job's committed output: the last `<word> <count>` line wins. */
async function committedWordCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for await (const object of readCommittedOutput(store, jobDirectory("checkpoints", ns, "wordcount"))) {
    for (const line of object.lines) {
      const [word = "", count] = line.split(" ");
      counts.set(word, Number(count));
    }
  }
  return counts;
}

/** The counts the wordcount job must reach: every word of every object under the input prefix. */
async function expectedWordCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const key of (await store.list(INPUT_PREFIX)).sort()) {
    for (const word of wordsOf((await store.get(key)).toString("utf8"))) {
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}

beforeAll(async () => {
  operatorNs = await createNamespace(core, "e2e-system", RESTRICTED);
  ns = await jobNamespace("e2e");
  store = new MinioObjectStore({ ...(await storageConfig()), bucket: BUCKET });
  await ensureBucket(store);
  // The wordcount example's input: a text with known counts, under a key that sorts before any later one.
  await store.put(
    `${INPUT_PREFIX}0001-e2e.txt`,
    Buffer.from(readFileSync(path.join(repoRoot, "docs", "writing-a-job.md"))),
  );
}, 60_000);

afterAll(async () => {
  await operator?.uninstall().catch(() => undefined);
  for (const name of [ns, operatorNs]) {
    if (name) await core.deleteNamespace({ name }).catch(() => undefined);
  }
  rmSync(scratch, { recursive: true, force: true });
});

test("helm install: the operator runs under its own ServiceAccount in a restricted namespace", async () => {
  // logLevel=info here (the helper sets debug), so the upgrade below has something to change.
  operator = await installOperator(operatorNs, [ns], ["--set", "logLevel=info"]);
  expect(await helm("status", operator.release, "-n", operatorNs)).toMatch(/STATUS: deployed/);
  const { name } = await operator.pod();
  const pod = await core.readNamespacedPod({ name, namespace: operatorNs });
  expect(pod.status?.phase).toBe("Running");
  expect(pod.spec?.serviceAccountName).toBe(`${operator.release}-streamjob-operator`);
  expect(pod.spec?.securityContext?.runAsNonRoot).toBe(true);
  const namespace = await core.readNamespace({ name: operatorNs });
  expect(namespace.metadata?.labels?.["pod-security.kubernetes.io/enforce"]).toBe("restricted");
}, 120_000);

test("RBAC: the installed ServiceAccount may run StreamJobs in the watched namespace only", async () => {
  expect(await operatorCan("list", "streamjobs.streamjob.dev", "-n", ns)).toBe(true);
  expect(await operatorCan("patch", "streamjobs.streamjob.dev", "--subresource=status", "-n", ns)).toBe(true);
  expect(await operatorCan("list", "pods", "-n", ns)).toBe(true);
  expect(await operatorCan("create", "pods", "-n", ns)).toBe(true);
  expect(await operatorCan("delete", "secrets", "-n", ns)).toBe(false);
  expect(await operatorCan("list", "secrets", "-n", ns)).toBe(false);
  expect(await operatorCan("delete", "streamjobs.streamjob.dev", "-n", ns)).toBe(false);
  expect(await operatorCan("list", "nodes")).toBe(false);
  expect(await operatorCan("list", "streamjobs.streamjob.dev", "-n", "default")).toBe(false);
  expect(await operatorCan("list", "pods", "--all-namespaces")).toBe(false);
});

test("RBAC: the chart's default, cluster-wide rules, rendered and bound to the same ServiceAccount", async () => {
  // The same release rendered with default values (no watchNamespaces): a ClusterRole and binding.
  const rendered = await helm(
    "template",
    operator.release,
    chartPath,
    "--namespace",
    operatorNs,
    "--show-only",
    "templates/rbac.yaml",
  );
  // Only the cluster-wide objects: the rendering also holds the release's leader-election Role and
  // RoleBinding under their installed names, and deleting those below would take the running
  // operator's lease away.
  const clusterWide = parseAllDocuments(rendered)
    .map((doc) => doc.toJS() as { kind?: string } | null)
    .filter((object) => object?.kind === "ClusterRole" || object?.kind === "ClusterRoleBinding");
  expect(clusterWide.map((object) => object!.kind).sort()).toEqual(["ClusterRole", "ClusterRoleBinding"]);
  const file = path.join(scratch, "cluster-rbac.yaml");
  writeFileSync(file, clusterWide.map((object) => stringify(object)).join("---\n"));
  await kubectl("apply", "-f", file);
  try {
    await waitFor("the ClusterRole to apply", () => operatorCan("list", "pods", "--all-namespaces"));
    expect(await operatorCan("list", "streamjobs.streamjob.dev", "--all-namespaces")).toBe(true);
    expect(await operatorCan("watch", "streamjobs.streamjob.dev", "-n", "default")).toBe(true);
    expect(
      await operatorCan("patch", "streamjobs.streamjob.dev", "--subresource=status", "-n", "default"),
    ).toBe(true);
    expect(await operatorCan("create", "pods", "-n", "default")).toBe(true);
    expect(await operatorCan("get", "secrets", "-n", "default")).toBe(true);
    // No more than that, anywhere.
    expect(await operatorCan("delete", "secrets", "-n", "default")).toBe(false);
    expect(await operatorCan("list", "secrets", "--all-namespaces")).toBe(false);
    expect(await operatorCan("list", "nodes")).toBe(false);
    expect(await operatorCan("create", "deployments.apps", "-n", "default")).toBe(false);
    expect(await operatorCan("delete", "streamjobs.streamjob.dev", "-n", "default")).toBe(false);
    expect(await operatorCan("create", "clusterroles.rbac.authorization.k8s.io")).toBe(false);
  } finally {
    await kubectl("delete", "-f", file, "--wait=true");
  }
}, 60_000);

test("kubectl apply of both examples: they run, and kubectl get sj shows the checkpoints advance", async () => {
  await kubectl("apply", "-n", ns, "-f", path.join(examples, "sequence.yaml"));
  await kubectl("apply", "-n", ns, "-f", path.join(examples, "wordcount.yaml"));
  for (const name of ["sequence", "wordcount"]) {
    const running = await waitForStatus(name, "Running with a checkpoint", (j) =>
      Boolean(j.status?.phase === "Running" && j.status.latestCheckpoint),
    );
    expect(running.status?.parallelism).toBe(2);
    expect((await taskManagerPods(name)).length).toBe(2);
  }
  const first = await checkpointColumn();
  expect(first.get("sequence")).toBeGreaterThan(0);
  expect(first.get("wordcount")).toBeGreaterThan(0);
  const later = await waitFor(
    "the Checkpoint column of both jobs to advance",
    async () => {
      const now = await checkpointColumn();
      const advanced = ["sequence", "wordcount"].every(
        (name) => (now.get(name) ?? 0) > (first.get(name) ?? Number.POSITIVE_INFINITY),
      );
      return advanced ? now : undefined;
    },
    30_000,
  );
  expect(later.get("sequence")).toBeGreaterThan(first.get("sequence")!);
}, 150_000);

test("wordcount counts the words uploaded to MinIO", async () => {
  const expected = await expectedWordCounts();
  expect(expected.get("the")).toBeGreaterThan(10);
  const counts = await waitFor(
    "the committed word counts to reach the input's",
    async () => {
      const committed = await committedWordCounts();
      const caughtUp = [...expected].every(([word, count]) => committed.get(word) === count);
      return caughtUp ? committed : undefined;
    },
    60_000,
  );
  expect(counts.size).toBe(expected.size);
}, 90_000);

test("kubectl explain describes spec.checkpoint", async () => {
  const explained = await kubectl("explain", "streamjob.spec.checkpoint");
  expect(explained).toMatch(/KIND:\s+StreamJob/);
  expect(explained).toMatch(/DESCRIPTION:\s*\n\s+\S/);
  for (const field of ["interval", "timeout", "minPause", "maxConcurrent", "tolerableFailures", "retained"]) {
    expect(explained).toMatch(new RegExp(`^\\s+${field}\\s+<`, "m"));
  }
  expect(explained).toMatch(/^\s+storage\s+<Object> -required-/m);
  const storage = await kubectl("explain", "streamjob.spec.checkpoint.storage");
  for (const field of ["bucket", "prefix", "secretName"])
    expect(storage).toMatch(new RegExp(`^\\s+${field}\\s+<`, "m"));
});

test("helm upgrade with a changed value keeps running jobs: same epoch and pods, checkpoints continue", async () => {
  const before = new Map<string, StreamJob>();
  const podsBefore = new Map<string, string[]>();
  for (const name of ["sequence", "wordcount"]) {
    before.set(name, await job(name));
    podsBefore.set(name, (await taskManagerPods(name)).map((pod) => pod.metadata!.uid!).sort());
  }
  const { name: oldPod } = await operator.pod();
  await helm(
    "upgrade",
    operator.release,
    chartPath,
    "--namespace",
    operatorNs,
    "--reuse-values",
    "--set",
    "logLevel=debug",
    "--wait",
    "--timeout",
    "90s",
  );
  const deployment = await apps.readNamespacedDeployment({
    name: `${operator.release}-streamjob-operator`,
    namespace: operatorNs,
  });
  const env = deployment.spec?.template.spec?.containers[0]?.env ?? [];
  expect(env.find((e) => e.name === "STREAMJOB_LOG_LEVEL")?.value).toBe("debug");
  const newPod = await waitFor("the upgraded operator pod", async () => {
    const pod = await operator.pod();
    return pod.name !== oldPod ? pod : undefined;
  });

  for (const name of ["sequence", "wordcount"]) {
    const old = before.get(name)!.status!;
    const after = await waitForStatus(
      name,
      "two checkpoints by the upgraded operator",
      (j) => (j.status?.latestCheckpoint?.id ?? 0) >= old.latestCheckpoint!.id + 2,
    );
    expect(after.status!.epoch).toBe(old.epoch);
    expect(after.status!.restarts).toBe(old.restarts);
    expect(after.status!.phase).toBe("Running");
    expect(after.status!.checkpointCounts!.completed).toBeGreaterThan(old.checkpointCounts!.completed);
    expect((await taskManagerPods(name)).map((pod) => pod.metadata!.uid!).sort()).toEqual(
      podsBefore.get(name),
    );
  }
  // The new operator logs at debug level (pino's 20).
  const logs = await kubectl("logs", "-n", operatorNs, newPod.name);
  expect(logs).toMatch(/"level":20/);
  // The sequence job replayed nothing and skipped nothing across the operator's restart.
  const report = await verifySequenceOutput(store, jobDirectory("checkpoints", ns, "sequence"));
  expect(report.problems).toEqual([]);
  expect(report.records).toBeGreaterThan(0);
}, 150_000);

test("helm uninstall leaves no operator object behind; the checkpoints stay in storage", async () => {
  const latest = new Map<string, string>();
  for (const name of ["sequence", "wordcount"])
    latest.set(name, (await job(name)).status!.latestCheckpoint!.path);
  await operator.uninstall();

  const selector = `app.kubernetes.io/instance=${operator.release}`;
  for (const namespace of [operatorNs, ns]) {
    await waitFor(
      `no object of ${operator.release} left in ${namespace}`,
      async () =>
        (
          await kubectl(
            "get",
            "deployments,replicasets,pods,serviceaccounts,services,roles,rolebindings,leases",
            "-n",
            namespace,
            "-l",
            selector,
            "-o",
            "name",
          )
        ).trim() === "",
      60_000,
    );
  }
  expect(
    (await kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name")).trim(),
  ).toBe("");
  expect((await helm("list", "-n", operatorNs, "-q")).trim()).toBe("");
  // The CRD and the StreamJobs stay (Helm never deletes a CRD) and so do the checkpoints.
  expect((await kubectl("get", "sj", "-n", ns, "-o", "name")).trim().split("\n").sort()).toEqual([
    "streamjob.streamjob.dev/sequence",
    "streamjob.streamjob.dev/wordcount",
  ]);
  for (const [name, manifest] of latest) {
    expect(manifest).toMatch(new RegExp(`^checkpoints/${ns}/${name}/chk-\\d+/_metadata$`));
    expect(await store.stat(manifest)).not.toBeNull();
  }
  // Deleting the jobs without an operator: their pods go with them (owner references), checkpoints stay.
  await kubectl("delete", "sj", "--all", "-n", ns, "--wait=true");
  await waitFor("the TaskManager pods to go", async () => {
    const pods = await core.listNamespacedPod({ namespace: ns });
    return pods.items.length === 0;
  });
  for (const manifest of latest.values()) expect(await store.stat(manifest)).not.toBeNull();
}, 120_000);
