// Stops the test cluster (unless KEEP_CLUSTER=1) and checks that no process it started is left.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// jest loads global setup/teardown outside its module mapping, so no project imports here.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const testClusterDir = path.join(repoRoot, ".devcluster", "test");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export default async function globalTeardown(): Promise<void> {
  if (process.env.KEEP_CLUSTER === "1") return;
  const state = JSON.parse(readFileSync(path.join(testClusterDir, "state.json"), "utf8")) as {
    processes: { name: string; pid: number }[];
  };
  const result = spawnSync(process.execPath, ["dist/devcluster/cli.js", "down"], {
    cwd: repoRoot,
    env: { ...process.env, DEVCLUSTER_DIR: testClusterDir },
    stdio: "inherit",
  });
  if (result.status !== 0) throw new Error(`cluster:down failed (exit ${result.status})`);
  const left = state.processes.filter((p) => alive(p.pid));
  if (left.length > 0) throw new Error(`cluster:down left processes running: ${JSON.stringify(left)}`);
  const pods = spawnSync("pgrep", ["-f", path.join(testClusterDir, "pods")], {
    encoding: "utf8",
  }).stdout.trim();
  if (pods) throw new Error(`cluster:down left pod processes running: ${pods}`);
}
