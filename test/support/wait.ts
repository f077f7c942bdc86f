// Waiting for a condition of the cluster, shared by the integration tests, the benchmarks, the demo
// and the chaos run.

import { sleep } from "../../src/devcluster/processes.js";

export { sleep };

/**
 * Polls `check` every `intervalMs` until it returns a value other than undefined or false, and
 * resolves with it; a thrown error counts as "not yet". After `timeoutMs` it fails with `what` and
 * the last error.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    }
    await sleep(intervalMs);
  }
}
