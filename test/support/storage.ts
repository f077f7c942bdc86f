// The local cluster's MinIO, reached the way the operator reaches it: through the storage Secret
// that the cluster's `up` writes into the default namespace.
import type { CoreV1Api, V1Secret } from "@kubernetes/client-node";
import type * as Minio from "minio";
import { decodeBase64 } from "../../src/operator/checkpoint-storage.js";
import { STORAGE_SECRET_NAME, type MinioObjectStore } from "../../src/storage/minio-object-store.js";
import { waitFor } from "./wait.js";

/** A Secret's data, base64-decoded. */
export function decodedSecretData(secret: V1Secret): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [key, decodeBase64(value)]),
  );
}

/** The decoded data of Secret default/streamjob-storage. */
export async function storageSecretData(core: CoreV1Api): Promise<Record<string, string>> {
  return decodedSecretData(
    await core.readNamespacedSecret({ name: STORAGE_SECRET_NAME, namespace: "default" }),
  );
}

/**
 * Creates namespace `name` enforcing the restricted Pod Security Standard (plus `labels`), waits for
 * its default ServiceAccount (made by the controller manager; pods need it), and puts the storage
 * Secret into it: where a StreamJob can run.
 */
export async function createJobNamespace(
  core: CoreV1Api,
  name: string,
  storageData: Record<string, string>,
  labels: Record<string, string> = {},
): Promise<void> {
  await core.createNamespace({
    body: { metadata: { name, labels: { ...labels, "pod-security.kubernetes.io/enforce": "restricted" } } },
  });
  await waitFor(`ServiceAccount ${name}/default`, () =>
    core.readNamespacedServiceAccount({ name: "default", namespace: name }),
  );
  await core.createNamespacedSecret({
    namespace: name,
    body: { metadata: { name: STORAGE_SECRET_NAME }, stringData: storageData },
  });
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
