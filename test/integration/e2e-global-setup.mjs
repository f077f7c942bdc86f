// Starts the end-to-end tests' own local cluster with a real node (kubelet, containerd, runc:
// DEVCLUSTER_NODE=real), or with the emulated node when DEVCLUSTER_NODE=emulated asks for it (a
// machine without root or network namespaces; jest.config.js then leaves out real-node.test.ts).
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
// Plain JavaScript: jest loads global setup/teardown without its TypeScript transform and module mapping.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const e2eClusterDir = path.join(repoRoot, ".devcluster", "e2e");

export default async function globalSetup() {
  const node = process.env.DEVCLUSTER_NODE === "emulated" ? "emulated" : "real";
  const result = spawnSync(process.execPath, ["dist/devcluster/cli.js", "up"], {
    cwd: repoRoot,
    env: { ...process.env, DEVCLUSTER_DIR: e2eClusterDir, DEVCLUSTER_NODE: node },
    stdio: "inherit",
  });
  if (result.status !== 0) {
    throw new Error(
      `the e2e cluster did not start with the ${node} node (exit ${result.status})` +
        (node === "real" ? "; DEVCLUSTER_NODE=emulated runs the end-to-end tests on the emulated node" : ""),
    );
  }
}
