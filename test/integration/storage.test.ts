// MinioObjectStore and ObjectSnapshotStore against the test cluster's real MinIO, configured from
// the real `streamjob-storage` Secret, each test file on a bucket of its own.
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { checkpointDirectory, manifestKey } from "../../src/api/object-layout.js";
import {
  ensureBucket,
  MIN_PART_SIZE_BYTES,
  MinioObjectStore,
  StorageAccessDeniedError,
} from "../../src/storage/minio-object-store.js";
import { ObjectNotFoundError } from "../../src/storage/object-store.js";
import { CorruptManifestError, ObjectSnapshotStore } from "../../src/storage/snapshot-store.js";
import { manifestFor } from "../unit/storage/fixtures.js";
import { incompleteUploads, removeBucket } from "../support/storage.js";
import { storageConfig, storeOnFreshBucket } from "./support/minio.js";

const MB = 1_000_000;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

let store: MinioObjectStore;

beforeAll(async () => {
  // The smallest part size S3 allows, so a 20 MB stream spans four parts.
  store = await storeOnFreshBucket("storage-test", { partSizeBytes: MIN_PART_SIZE_BYTES });
});

afterAll(async () => {
  if (store !== undefined) await removeBucket(store);
});

async function hashOf(stream: Readable): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), sizeBytes };
}

/** The ETag MinIO gives the object: `<md5>` for a plain PUT, `<md5>-<parts>` for a multipart upload. */
async function etag(key: string): Promise<string> {
  return (await store.client.statObject(store.bucket, key)).etag;
}

test("a Buffer is stored with its sha256 and size and read back byte for byte, in one PUT", async () => {
  const body = randomBytes(300_000);
  await expect(store.put("buffers/one", body)).resolves.toEqual({
    sizeBytes: body.length,
    sha256: sha256(body),
  });
  await expect(store.get("buffers/one")).resolves.toEqual(body);
  await expect(store.stat("buffers/one")).resolves.toEqual({ sizeBytes: body.length });
  await expect(hashOf(await store.getStream("buffers/one"))).resolves.toEqual({
    sizeBytes: body.length,
    sha256: sha256(body),
  });
  expect(await etag("buffers/one")).not.toContain("-");
});

test("a stream shorter than a part goes in one PUT; an empty one makes an empty object", async () => {
  const chunks = [randomBytes(1000), randomBytes(70_000), randomBytes(5)];
  const whole = Buffer.concat(chunks);
  await expect(store.put("streams/small", Readable.from(chunks))).resolves.toEqual({
    sizeBytes: whole.length,
    sha256: sha256(whole),
  });
  await expect(store.get("streams/small")).resolves.toEqual(whole);
  expect(await etag("streams/small")).not.toContain("-");

  await expect(store.put("streams/empty", Readable.from([]))).resolves.toEqual({
    sizeBytes: 0,
    sha256: sha256(Buffer.alloc(0)),
  });
  await expect(store.stat("streams/empty")).resolves.toEqual({ sizeBytes: 0 });
});

test("a 20 MB stream is uploaded in parts while it is still being produced, and round-trips intact", async () => {
  const key = "streams/twenty-mb";
  const totalBytes = 20 * MB;
  const chunkBytes = 64 * 1024;
  const produced = createHash("sha256");
  // At a few points of production: how much of the object MinIO already holds as uploaded parts.
  const samples: { producedBytes: number; uploadedBytes: number }[] = [];
  async function* generate(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < totalBytes; offset += chunkBytes) {
      if (offset % (4 * 1024 * 1024) === 0 || offset + chunkBytes >= totalBytes) {
        const uploads = await incompleteUploads(store, key);
        samples.push({ producedBytes: offset, uploadedBytes: uploads.reduce((sum, u) => sum + u.size, 0) });
      }
      const chunk = randomBytes(Math.min(chunkBytes, totalBytes - offset));
      produced.update(chunk);
      yield chunk;
    }
  }

  const stored = await store.put(key, Readable.from(generate()));

  expect(stored).toEqual({ sizeBytes: totalBytes, sha256: produced.digest("hex") });
  // Before the producer was asked for its last chunk, whole parts had already reached MinIO: the
  // store pulled the stream part by part instead of collecting it first.
  const last = samples.at(-1)!;
  expect(last.producedBytes).toBeGreaterThan(totalBytes - chunkBytes - 1);
  expect(last.uploadedBytes).toBeGreaterThanOrEqual(MIN_PART_SIZE_BYTES);
  // ...and never did the store run more than three parts (plus stream buffers) ahead of MinIO.
  for (const sample of samples) {
    expect(sample.producedBytes - sample.uploadedBytes).toBeLessThan(3 * MIN_PART_SIZE_BYTES + MB);
  }
  expect(await etag(key)).toMatch(/-4$/);
  await expect(store.stat(key)).resolves.toEqual({ sizeBytes: totalBytes });
  await expect(hashOf(await store.getStream(key))).resolves.toEqual(stored);
  await expect(incompleteUploads(store, key)).resolves.toEqual([]);
});

test.each([
  ["before the first part is complete", 1 * MB],
  ["in the middle of a multipart upload", 12 * MB],
])(
  "a source failing %s fails the put and leaves no object and no unfinished upload",
  async (_when, failAt) => {
    const key = `streams/failing-${failAt}`;
    async function* failing(): AsyncGenerator<Buffer> {
      for (let offset = 0; offset < failAt; offset += 256 * 1024) yield randomBytes(256 * 1024);
      throw new Error("the snapshot serializer crashed");
    }
    const put = store.put(key, Readable.from(failing()));
    await expect(put).rejects.toThrow(
      `write s3://${store.bucket}/${key} at ${store.endpoint} failed: the snapshot serializer crashed`,
    );
    await expect(store.stat(key)).resolves.toBeNull();
    await expect(incompleteUploads(store, key)).resolves.toEqual([]);
  },
);

test("a stream of exactly one part goes in one PUT; one byte more makes two parts", async () => {
  for (const [key, size, etagShape] of [
    ["streams/one-part", MIN_PART_SIZE_BYTES, /^[0-9a-f]{32}$/],
    ["streams/two-parts", MIN_PART_SIZE_BYTES + 1, /-2$/],
  ] as const) {
    const body = randomBytes(size);
    // Chunks that do not line up with the part boundary.
    const chunks = Array.from({ length: Math.ceil(size / 300_000) }, (_, i) =>
      body.subarray(i * 300_000, (i + 1) * 300_000),
    );
    await expect(store.put(key, Readable.from(chunks))).resolves.toEqual({
      sizeBytes: size,
      sha256: sha256(body),
    });
    expect(await etag(key)).toMatch(etagShape);
    // Buffer#equals: jest's toEqual takes minutes over megabytes.
    expect((await store.get(key)).equals(body)).toBe(true);
  }
});

test("one chunk of several parts is cut into parts without losing or repeating a byte", async () => {
  const body = randomBytes(3 * MIN_PART_SIZE_BYTES + 12_345);
  const stored = await store.put("streams/one-big-chunk", Readable.from([body]));
  expect(stored).toEqual({ sizeBytes: body.length, sha256: sha256(body) });
  expect(await etag("streams/one-big-chunk")).toMatch(/-4$/);
  await expect(hashOf(await store.getStream("streams/one-big-chunk"))).resolves.toEqual(stored);
});

test("a part refused by MinIO fails the put and leaves no object and no unfinished upload", async () => {
  const key = "streams/upload-gone";
  async function* generate(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < 30 * MB; offset += MB) {
      // Once a part is up, someone else aborts the upload: every later part is refused.
      if (offset === 16 * MB) {
        const [upload] = await incompleteUploads(store, key);
        await store.client.abortMultipartUpload(store.bucket, key, upload!.uploadId);
      }
      yield randomBytes(MB);
    }
  }
  await expect(store.put(key, Readable.from(generate()))).rejects.toThrow(
    `write s3://${store.bucket}/${key} at ${store.endpoint} failed: NoSuchUpload`,
  );
  await expect(store.stat(key)).resolves.toBeNull();
  await expect(incompleteUploads(store, key)).resolves.toEqual([]);
});

test("a missing object: stat is null; get, getStream and copy reject with ObjectNotFoundError", async () => {
  await expect(store.stat("missing/key")).resolves.toBeNull();
  await expect(store.get("missing/key")).rejects.toEqual(new ObjectNotFoundError("missing/key"));
  await expect(store.getStream("missing/key")).rejects.toBeInstanceOf(ObjectNotFoundError);
  await expect(store.copy("missing/key", "missing/copy")).rejects.toEqual(
    new ObjectNotFoundError("missing/key"),
  );
  await expect(store.stat("missing/copy")).resolves.toBeNull();
});

test("list is recursive and sorted across pages; delete removes in batches and ignores missing keys", async () => {
  // More than one listing page and one DeleteObjects request (1000 keys each).
  const keys = Array.from({ length: 1100 }, (_, i) => `many/${i % 7}/object-${i}`);
  for (let i = 0; i < keys.length; i += 25) {
    await Promise.all(keys.slice(i, i + 25).map((key) => store.put(key, Buffer.from(key))));
  }
  await store.put("many-other/object", Buffer.from("not under many/"));

  await expect(store.list("many/")).resolves.toEqual([...keys].sort());
  await expect(store.list("many/3/")).resolves.toEqual(
    keys.filter((key) => key.startsWith("many/3/")).sort(),
  );
  await expect(store.list("nothing-here/")).resolves.toEqual([]);

  await store.delete([...keys, "many/never-existed"]);
  await expect(store.list("many/")).resolves.toEqual([]);
  await expect(store.list("many-other/")).resolves.toEqual(["many-other/object"]);
  await store.delete(keys.slice(0, 3));
});

test("copy duplicates an object server-side, idempotently", async () => {
  const body = randomBytes(10_000);
  await store.put("sink/staged/chk-3", body);
  await store.copy("sink/staged/chk-3", "sink/committed/part-3");
  await store.copy("sink/staged/chk-3", "sink/committed/part-3");
  await expect(store.get("sink/committed/part-3")).resolves.toEqual(body);
  await expect(store.get("sink/staged/chk-3")).resolves.toEqual(body);
});

describe("ObjectSnapshotStore on MinIO", () => {
  const job = { namespace: "default", name: "orders" };
  let snapshots: ObjectSnapshotStore;
  beforeAll(() => {
    snapshots = new ObjectSnapshotStore(store, "checkpoints");
  });

  test("manifest round trip, listing, corrupt and missing manifests, ordered deletion", async () => {
    const manifest = manifestFor("checkpoints", job, "checkpoint", 4);
    for (const part of manifest.parts) await store.put(part.key, randomBytes(part.sizeBytes));
    const key = await snapshots.putManifest(manifest);
    expect(key).toBe("checkpoints/default/orders/chk-4/_metadata");
    await expect(snapshots.getManifest(key)).resolves.toEqual(manifest);
    await expect(snapshots.statObject(manifest.parts[0]!.key)).resolves.toEqual({ sizeBytes: 100 });

    const location = { basePrefix: "checkpoints", ...job, kind: "checkpoint" as const, checkpointId: 5 };
    await store.put(`${checkpointDirectory(location)}task-0/kg-0-3`, Buffer.from("in flight"));
    await store.put(manifestKey({ ...location, checkpointId: 6 }), Buffer.from("{ truncated"));
    const listed = await snapshots.listCheckpoints(job);
    expect(listed.map((dir) => [dir.checkpointId, dir.objectKeys.length]).sort()).toEqual([
      [4, 3],
      [5, 1],
      [6, 1],
    ]);

    await expect(snapshots.getManifest(manifestKey({ ...location, checkpointId: 6 }))).rejects.toBeInstanceOf(
      CorruptManifestError,
    );
    await expect(snapshots.getManifest(manifestKey({ ...location, checkpointId: 7 }))).resolves.toBeNull();

    const checkpoint4 = listed.find((dir) => dir.checkpointId === 4)!;
    await snapshots.deleteObjects([key, ...checkpoint4.objectKeys.filter((k) => k !== key)]);
    await expect(snapshots.getManifest(key)).resolves.toBeNull();
    expect((await snapshots.listCheckpoints(job)).map((dir) => dir.checkpointId).sort()).toEqual([5, 6]);
  });
});

describe("credentials and reachability", () => {
  test("a wrong secret key is refused with a StorageAccessDeniedError that does not repeat it", async () => {
    const config = await storageConfig();
    const secretKey = `wrong-${randomBytes(8).toString("hex")}`;
    const wrong = new MinioObjectStore({ ...config, secretKey, bucket: store.bucket });
    const put = wrong.put("denied/object", Buffer.from("x"));
    await expect(put).rejects.toBeInstanceOf(StorageAccessDeniedError);
    await expect(put).rejects.toThrow(
      `${config.endpoint} refused to write s3://${store.bucket}/denied/object: SignatureDoesNotMatch`,
    );
    await expect(put).rejects.toThrow("check accessKey and secretKey in the storage Secret");
    const message = await put.catch((err: Error) => err.message);
    expect(message).not.toContain(secretKey);
    expect(message).not.toContain(config.secretKey);
    // A HEAD has no error body: MinIO answers a bare 403, which must not read as "missing".
    await expect(wrong.stat("buffers/one")).rejects.toBeInstanceOf(StorageAccessDeniedError);
    await expect(wrong.list("")).rejects.toBeInstanceOf(StorageAccessDeniedError);
    await expect(ensureBucket(wrong)).rejects.toBeInstanceOf(StorageAccessDeniedError);
    await expect(store.stat("denied/object")).resolves.toBeNull();
  });

  test("an unknown access key is refused, naming the error MinIO gives", async () => {
    const wrong = new MinioObjectStore({
      ...(await storageConfig()),
      accessKey: "nobody",
      bucket: store.bucket,
    });
    await expect(wrong.get("buffers/one")).rejects.toThrow(
      /refused to read s3:\/\/.*\/buffers\/one: InvalidAccessKeyId/,
    );
  });

  test("an endpoint nobody listens on fails with the endpoint and the network error", async () => {
    const unreachable = new MinioObjectStore({
      ...(await storageConfig()),
      endpoint: "http://127.0.0.1:9",
      bucket: store.bucket,
    });
    await expect(unreachable.stat("buffers/one")).rejects.toThrow(
      `stat s3://${store.bucket}/buffers/one at http://127.0.0.1:9 failed: ECONNREFUSED`,
    );
  });
});
