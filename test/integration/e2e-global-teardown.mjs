// Stops the end-to-end tests' cluster, as global-teardown.mjs stops the integration tests' one.
import { e2eClusterDir } from "./e2e-global-setup.mjs";
import { stopCluster } from "./global-teardown.mjs";

export default async function globalTeardown() {
  await stopCluster(e2eClusterDir);
}
