// The local cluster as the benches use it: its MinIO (the cluster started if needed, its storage
// Secret read, a fresh bucket for this run), and where the benches' TaskManagers log and profile.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { clusterDir } from "../src/devcluster/cluster.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
  type StorageConfig,
} from "../src/storage/minio-object-store.js";
import { LocalCluster } from "../test/support/local-cluster.js";
import { storageSecretData } from "../test/support/storage.js";

export async function benchStorage(): Promise<{ storage: StorageConfig; store: MinioObjectStore }> {
  const cluster = new LocalCluster(clusterDir());
  cluster.cli("up");
  const storage = storageConfigFromSecret(await storageSecretData(cluster.clients().core));
  const store = new MinioObjectStore({ ...storage, bucket: `bench-${randomBytes(3).toString("hex")}` });
  await ensureBucket(store);
  return { storage, store };
}

/**
 * Where a bench's TaskManagers log (the cluster's logs/bench/), and with `cpuProfDir` the Node
 * options that make each one leave a V8 CPU profile there when it stops.
 */
export function benchProcesses(cpuProfDir?: string): { logDir: string; execArgv?: string[] } {
  return {
    logDir: path.join(clusterDir(), "logs", "bench"),
    ...(cpuProfDir !== undefined && {
      execArgv: ["--cpu-prof", `--cpu-prof-dir=${path.resolve(cpuProfDir)}`],
    }),
  };
}
