// The local cluster's MinIO, as both checkpoint benches use it: the cluster started if needed, its
// storage Secret read, and a fresh bucket for this run.
import { randomBytes } from "node:crypto";
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
