// Stops the test cluster (unless KEEP_CLUSTER=1) and checks that no process it started is left.
// e2e-global-teardown.mjs does the same for the end-to-end tests' cluster.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
// Plain JavaScript: jest loads global setup/teardown without its TypeScript transform and module mapping.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const testClusterDir = path.join(repoRoot, ".devcluster", "test");
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
export default async function globalTeardown() {
  await stopCluster(testClusterDir);
}

export async function stopCluster(testClusterDir) {
  if (process.env.KEEP_CLUSTER === "1") return;
  const state = JSON.parse(readFileSync(path.join(testClusterDir, "state.json"), "utf8"));
  const result = spawnSync(process.execPath, ["dist/devcluster/cli.js", "down"], {
    cwd: repoRoot,
    env: { ...process.env, DEVCLUSTER_DIR: testClusterDir },
    stdio: "inherit",
  });
  if (result.status !== 0) throw new Error(`cluster:down failed (exit ${result.status})`);
  const left = state.processes.filter((p) => alive(p.pid));
  if (left.length > 0) throw new Error(`cluster:down left processes running: ${JSON.stringify(left)}`);
  // The emulated node's pod processes run from <cluster>/pods; a real node's containerd, shims,
  // kubelet, kube-proxy and CoreDNS name <cluster>/real-node in their arguments.
  for (const folder of ["pods", "real-node"]) {
    const left = spawnSync("pgrep", ["-f", path.join(testClusterDir, folder)], {
      encoding: "utf8",
    }).stdout.trim();
    if (left) throw new Error(`cluster:down left processes of ${folder}/ running: ${left}`);
  }
  const octet = state.podNetwork?.split(".")[1];
  const namespaces = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  if (state.node === "real" && new RegExp(`^sjnode${octet}\\b`, "m").test(namespaces))
    throw new Error(`cluster:down left the node's network namespace sjnode${octet}`);
}
