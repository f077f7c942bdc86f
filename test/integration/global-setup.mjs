// Starts the local cluster once for the whole integration suite (a no-op if it already runs),
// in its own directory so a developer's `npm run cluster:up` cluster is left alone.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
// Plain JavaScript: jest loads global setup/teardown without its TypeScript transform and module mapping.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const testClusterDir = path.join(repoRoot, ".devcluster", "test");
export default async function globalSetup() {
  const result = spawnSync(process.execPath, ["dist/devcluster/cli.js", "up"], {
    cwd: repoRoot,
    env: { ...process.env, DEVCLUSTER_DIR: testClusterDir },
    stdio: "inherit",
  });
  if (result.status !== 0) throw new Error(`the local cluster did not start (exit ${result.status})`);
}
