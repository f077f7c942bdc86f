// Jobs run without Kubernetes (test/support/local-job.ts) against the test cluster's MinIO, for a
// test file: a fresh bucket of its own, every job started by a test stopped after it, the bucket
// removed at the end. Call once at the top level of the file.
import path from "node:path";
import type { MinioObjectStore, StorageConfig } from "../../../src/storage/minio-object-store.js";
import { LocalJob, type LocalJobOptions } from "../../support/local-job.js";
import { removeBucket } from "../../support/storage.js";
import { testClusterDir } from "./cluster.js";
import { storageConfig, storeOnFreshBucket } from "./minio.js";

export interface LocalJobs {
  /** The file's bucket; set once beforeAll ran. */
  readonly store: MinioObjectStore;
  /** A job on the file's bucket, logging under the cluster's logs/local-jobs/. */
  job(options: Omit<LocalJobOptions, "store" | "storage" | "logDir">): LocalJob;
}

export function localJobs(bucketPrefix: string): LocalJobs {
  let store: MinioObjectStore | undefined;
  let storage: StorageConfig | undefined;
  const started: LocalJob[] = [];
  beforeAll(async () => {
    storage = await storageConfig();
    store = await storeOnFreshBucket(bucketPrefix);
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((job) => job.stop()));
  });
  afterAll(async () => {
    if (store) await removeBucket(store);
  });
  return {
    get store() {
      if (!store) throw new Error("localJobs: the bucket is made in beforeAll");
      return store;
    },
    job(options) {
      if (!store || !storage) throw new Error("localJobs: the bucket is made in beforeAll");
      const job = new LocalJob({
        store,
        storage,
        logDir: path.join(testClusterDir, "logs", "local-jobs"),
        ...options,
      });
      started.push(job);
      return job;
    },
  };
}
