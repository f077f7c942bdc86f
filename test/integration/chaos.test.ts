// Short `npm run chaos` runs, of the `sequence` job and of the `keyed-sequence` dataflow, on the
// end-to-end tests' cluster, whose node is real (the pods are containers under containerd and
// runc): TaskManager kills, deletions and pauses, operator kills and deletions, MinIO and
// kube-apiserver paused, two at once; the run's own checks (intact checkpoints, ids never going
// back, healthy again in time, exact committed output) must all hold.
// The verifier itself is shown able to fail in test/unit/chaos/verify.test.ts. It pauses the
// cluster's MinIO and kube-apiserver for seconds: it relies on jest running the files one at a
// time (one worker on this 2-core machine).
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot, testClusterDir } from "./support/cluster.js";

const execFileAsync = promisify(execFile);

async function chaos(faults: number, seed: number, job: string): Promise<string[]> {
  const run = execFileAsync(
    path.join(repoRoot, "node_modules", ".bin", "tsx"),
    ["scripts/chaos.ts", "--faults", String(faults), "--seed", String(seed), "--job", job],
    { cwd: repoRoot, env: { ...process.env, DEVCLUSTER_DIR: testClusterDir }, maxBuffer: 16 * 1024 * 1024 },
  );
  const { stdout } = await run.catch((err: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`chaos failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  });
  return stdout.trim().split("\n");
}

test("sequence, 6 faults: no violation, no gap, no duplicate", async () => {
  const lines = await chaos(6, 9, "sequence");
  expect(lines.filter((line) => line.startsWith("fault "))).toHaveLength(6);
  expect(lines).toContainEqual(expect.stringMatching(/^healthy again .* after the last fault/));
  expect(lines.at(-1)).toBe("chaos: 6 faults, 0 violations, 0 gaps, 0 duplicates");
}, 360_000);

test("keyed-sequence (records crossing TaskManagers, aligned checkpoints), 4 faults: no violation, no gap, no duplicate", async () => {
  const lines = await chaos(4, 11, "keyed-sequence");
  expect(lines.filter((line) => line.startsWith("fault "))).toHaveLength(4);
  expect(lines).toContainEqual(expect.stringMatching(/^committed output: \d+ records over 32 keys/));
  expect(lines.at(-1)).toBe("chaos: 4 faults, 0 violations, 0 gaps, 0 duplicates");
}, 360_000);
