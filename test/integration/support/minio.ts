// The test cluster's MinIO, reached the way the operator reaches it: through the storage Secret.
import { randomBytes } from "node:crypto";
import type * as Minio from "minio";
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

/** Multipart uploads begun and not completed under `prefix`, with the bytes of their uploaded parts. */
export async function incompleteUploads(
  store: MinioObjectStore,
  prefix: string,
): Promise<Minio.IncompleteUploadedBucketItem[]> {
  const uploads: Minio.IncompleteUploadedBucketItem[] = [];
  const stream = store.client.listIncompleteUploads(store.bucket, prefix, true);
  for await (const upload of stream as AsyncIterable<Minio.IncompleteUploadedBucketItem>)
    uploads.push(upload);
  return uploads;
}

/** Deletes every object, unfinished upload and finally the bucket itself. */
export async function removeBucket(store: MinioObjectStore): Promise<void> {
  await store.delete(await store.list(""));
  for (const upload of await incompleteUploads(store, "")) {
    await store.client.removeIncompleteUpload(store.bucket, upload.key);
  }
  await store.client.removeBucket(store.bucket);
}
