// The operator as users run it, in the test cluster: installed with the Helm chart (see
// test/support/operator-release.ts), logging at debug level for the tests that read its log.
import { chartPath, installOperatorRelease, type OperatorRelease } from "../../support/operator-release.js";
import { testCluster } from "./cluster.js";

export { chartPath };
export type InstalledOperator = OperatorRelease;

export function helm(...args: string[]): Promise<string> {
  return testCluster.helm(...args);
}

/** `helm install` of the chart into `namespace`; resolves when the operator pod is Ready. */
export function installOperator(
  namespace: string,
  watchNamespaces: string[],
  extraArgs: string[] = [],
): Promise<InstalledOperator> {
  return installOperatorRelease(testCluster, namespace, watchNamespaces, [
    "--set",
    "logLevel=debug",
    ...extraArgs,
  ]);
}
