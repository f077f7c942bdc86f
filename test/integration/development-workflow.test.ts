// The README's "Development" workflow, as a contributor follows it: the operator runs out of cluster
// (`npm run operator`, nothing but KUBECONFIG set) against the local cluster, and the shipped
// `sequence` example reaches completed checkpoints without a restart. It broke once because the
// operator's HTTP server took port 8080 on every pod address of the local cluster.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { kubeconfigPath, kubectl, repoRoot } from "./support/cluster.js";
import { installCrd, jobNamespace, waitForStreamJob } from "./support/streamjobs.js";

const packageJson = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
};

let ns: string;
let operator: ChildProcess | undefined;
let output = "";

beforeAll(async () => {
  await installCrd();
  ns = await jobNamespace("dev-workflow");
}, 120_000);

afterAll(async () => {
  if (!operator || operator.exitCode !== null) return;
  const exited = new Promise((resolve) => operator?.once("exit", resolve));
  operator.kill("SIGTERM");
  await exited;
});

test("`npm run operator` runs the sequence example to completed checkpoints", async () => {
  // The test starts what the script starts after its build (the suite has built already, and a
  // second build here would rewrite dist/ under other tests' processes).
  expect(packageJson.scripts.operator).toBe("npm run -s build && node dist/operator/main.js");
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    KUBECONFIG: kubeconfigPath,
  };
  // Only this test's namespace: the other test files' operators own theirs.
  operator = spawn(process.execPath, ["dist/operator/main.js", `--watch-namespaces=${ns}`], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  operator.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  operator.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));

  await kubectl("apply", "-n", ns, "-f", path.join(repoRoot, "manifests", "examples", "sequence.yaml"));
  const job = await waitForStreamJob(
    ns,
    "sequence",
    "two completed checkpoints",
    (j) => (j.status?.latestCheckpoint?.id ?? 0) >= 2,
    90_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\noperator output:\n${output.slice(-4000)}`);
  });
  expect(job.status).toMatchObject({ phase: "Running", epoch: 1, restarts: 0 });
  expect(output).toContain('"http":"127.0.0.1:8080"');
  expect(output).not.toMatch(/triggering task \d+ failed/);
}, 150_000);
