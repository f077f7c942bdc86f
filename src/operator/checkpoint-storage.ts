// Where a StreamJob's checkpoints live: the bucket and prefix of its spec, signed in with the Secret it
// names. Behind an interface so the reconciler never sees an S3 client (its unit tests keep
// checkpoints in memory); the real resolver reuses one client per job while its Secret is unchanged.
import type { SnapshotStore } from "../coordinator/interfaces.js";
import type { StreamJob } from "../api/streamjob.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
  type StorageConfig,
} from "../storage/minio-object-store.js";
import { ObjectSnapshotStore } from "../storage/snapshot-store.js";
import type { KubeGateway } from "./kube-gateway.js";

export interface JobStorage {
  snapshots: SnapshotStore;
  bucket: string;
  /** For messages and the TaskManagers' configuration; holds no credentials. */
  endpoint: string;
  region: string;
  /** Creates the bucket unless it exists. */
  ensureBucket(): Promise<void>;
}

/** The storage Secret is missing or invalid: the job cannot run until someone fixes it. */
export class StorageSecretError extends Error {}

export interface StorageResolver {
  /** Rejects with StorageSecretError when the Secret is missing or invalid, with another error when it cannot be read. */
  resolve(job: StreamJob): Promise<JobStorage>;
  /** Drops what was kept for a deleted job (namespace/name). */
  forget(key: string): void;
}

/** Resolves storage from the Secret through the API server, one MinIO client per job and Secret version. */
export class SecretStorageResolver implements StorageResolver {
  private readonly stores = new Map<string, { fingerprint: string; storage: JobStorage }>();

  constructor(private readonly gateway: Pick<KubeGateway, "getSecret">) {}

  async resolve(job: StreamJob): Promise<JobStorage> {
    const namespace = job.metadata.namespace ?? "default";
    const key = `${namespace}/${job.metadata.name}`;
    const { secretName, bucket, prefix } = job.spec.checkpoint.storage;
    const secret = await this.gateway.getSecret(namespace, secretName);
    if (secret === null)
      throw new StorageSecretError(`Secret ${secretName} not found in namespace ${namespace}`);
    const fingerprint = `${secret.metadata?.uid}/${secret.metadata?.resourceVersion}/${bucket}/${prefix}`;
    const cached = this.stores.get(key);
    if (cached?.fingerprint === fingerprint) return cached.storage;
    const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, decodeBase64(v)]));
    let config: StorageConfig;
    try {
      config = storageConfigFromSecret(data, secretName);
    } catch (err) {
      throw new StorageSecretError((err as Error).message, { cause: err });
    }
    const objects = new MinioObjectStore({ ...config, bucket });
    const storage: JobStorage = {
      snapshots: new ObjectSnapshotStore(objects, prefix),
      bucket,
      endpoint: config.endpoint,
      region: config.region,
      ensureBucket: () => ensureBucket(objects),
    };
    this.stores.set(key, { fingerprint, storage });
    return storage;
  }

  forget(key: string): void {
    this.stores.delete(key);
  }
}

/** A Secret's data value as text (the API server returns Secret data base64-encoded). */
export function decodeBase64(value: string): string {
  return Buffer.from(value, "base64").toString("utf8");
}
