// The local cluster's MinIO, reached the way the operator reaches it: through the storage Secret
// that the cluster's `up` writes into the default namespace.
import type { CoreV1Api, V1Secret } from "@kubernetes/client-node";
import { STORAGE_SECRET_NAME } from "../../src/storage/minio-object-store.js";

/** A Secret's data, base64-decoded. */
export function decodedSecretData(secret: V1Secret): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([key, value]) => [
      key,
      Buffer.from(value, "base64").toString("utf8"),
    ]),
  );
}

/** The decoded data of Secret default/streamjob-storage. */
export async function storageSecretData(core: CoreV1Api): Promise<Record<string, string>> {
  return decodedSecretData(
    await core.readNamespacedSecret({ name: STORAGE_SECRET_NAME, namespace: "default" }),
  );
}
