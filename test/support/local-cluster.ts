// A local cluster (src/devcluster) seen from outside: its folder, kubeconfig, API clients and the
// kubectl and helm it ships, each pointed at this cluster and no other.
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { execFile, spawnSync } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "../../src/devcluster/assets.js";

const execFileAsync = promisify(execFile);

export { repoRoot };

export class LocalCluster {
  readonly kubeconfigPath: string;
  /** The environment of every tool run against this cluster (helm keeps its state in the folder). */
  readonly toolEnv: NodeJS.ProcessEnv;

  constructor(readonly dir: string) {
    this.kubeconfigPath = path.join(dir, "kubeconfig");
    this.toolEnv = {
      ...process.env,
      KUBECONFIG: this.kubeconfigPath,
      DEVCLUSTER_DIR: dir,
      HELM_CACHE_HOME: path.join(dir, "helm", "cache"),
      HELM_CONFIG_HOME: path.join(dir, "helm", "config"),
      HELM_DATA_HOME: path.join(dir, "helm", "data"),
    };
  }

  /** `node dist/devcluster/cli.js up|down` for this folder (needs `npm run build`). */
  cli(command: "up" | "down"): void {
    const result = spawnSync(process.execPath, [path.join(repoRoot, "dist/devcluster/cli.js"), command], {
      stdio: "inherit",
      env: this.toolEnv,
    });
    if (result.status !== 0) throw new Error(`\`cli.js ${command}\` for ${this.dir} failed`);
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  clients() {
    const kc = this.kubeConfig();
    return {
      kc,
      core: kc.makeApiClient(CoreV1Api),
      apps: kc.makeApiClient(AppsV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
      rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    };
  }

  /** Runs the cluster's own kubectl or helm; fails with its stderr, keeping its stdout on the error. */
  async tool(name: "kubectl" | "helm", args: string[], timeoutMs = 120_000): Promise<string> {
    try {
      const { stdout } = await execFileAsync(path.join(this.dir, "bin", name), args, {
        env: this.toolEnv,
        maxBuffer: 64 * 1024 * 1024,
        timeout: timeoutMs,
      });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string; stdout?: string };
      // Some answers are exit codes: `kubectl auth can-i` prints "no" and exits 1.
      throw Object.assign(
        new Error(`${name} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`, { cause: err }),
        { stdout: e.stdout ?? "" },
      );
    }
  }

  kubectl(...args: string[]): Promise<string> {
    return this.tool("kubectl", args);
  }

  helm(...args: string[]): Promise<string> {
    return this.tool("helm", args, 180_000);
  }
}
