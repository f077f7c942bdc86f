// The test cluster's MinIO, reached the way the operator reaches it: through the storage Secret.
import { randomBytes } from "node:crypto";
import { storageSecretData as clusterStorageSecretData } from "../../support/storage.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
  type StorageConfig,
} from "../../../src/storage/minio-object-store.js";
import { clients } from "./cluster.js";

/** The decoded data of Secret default/streamjob-storage, written by the cluster's `up`. */
export function storageSecretData(): Promise<Record<string, string>> {
  return clusterStorageSecretData(clients().core);
}

export async function storageConfig(): Promise<StorageConfig> {
  return storageConfigFromSecret(await storageSecretData());
}

/** A store on a new bucket of its own (`<prefix>-<random>`), created before it is returned. */
export async function storeOnFreshBucket(
  prefix: string,
  options: { partSizeBytes?: number } = {},
): Promise<MinioObjectStore> {
  const store = new MinioObjectStore({
    ...(await storageConfig()),
    bucket: `${prefix}-${randomBytes(4).toString("hex")}`,
    ...options,
  });
  await ensureBucket(store);
  return store;
}
