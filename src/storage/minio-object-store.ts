// The real ObjectStore: MinIO or any S3-compatible service through the `minio` client. Part bodies
// stream through a hash into a multipart upload, so at most a few parts of a stream are ever in
// memory; credentials come from the `streamjob-storage` Secret and never appear in an error message.
//
// Writes run on the caller's thread (a TaskManager's record-processing thread), so they do as little
// as S3 allows: the payload is signed as UNSIGNED-PAYLOAD and sent without a Content-MD5, which leaves
// the one sha256 the checkpoint protocol needs as the only hash of the bytes; the parts of a stream
// go up two at a time over kept-alive connections.
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import * as Minio from "minio";
import { z } from "zod";
import { ObjectNotFoundError, type ObjectStore, type StoredObject } from "./object-store.js";

/** The default name of the Secret (in the job's namespace) holding `endpoint`, `accessKey`, `secretKey`, `region`. */
export const STORAGE_SECRET_NAME = "streamjob-storage";

/** S3's lower bound for every part of a multipart upload but the last. */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;

const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;

/** Parts of one multipart upload in flight at a time: with the one being filled, three in memory. */
const PARALLEL_PARTS = 2;

/** DeleteObjects takes at most this many keys per request. */
const DELETE_BATCH_SIZE = 1000;

const requiredString = (key: string) =>
  z.string({ error: (issue) => (issue.input === undefined ? `missing key "${key}"` : undefined) }).min(1, {
    error: `key "${key}" is empty`,
  });

const StorageSecretData = z.object({
  endpoint: requiredString("endpoint").pipe(
    z
      .url({ protocol: /^https?$/, error: `key "endpoint" must be an http:// or https:// URL` })
      .refine((value) => {
        if (!URL.canParse(value)) return true; // reported by the check above
        const url = new URL(value);
        // Credentials belong in accessKey/secretKey; a path or query would be silently ignored.
        return url.username === "" && url.password === "" && url.pathname === "/" && url.search === "";
      }, `key "endpoint" must be scheme://host[:port] only, like http://127.0.0.1:9000`),
  ),
  accessKey: requiredString("accessKey"),
  secretKey: requiredString("secretKey"),
  region: z.string().min(1, { error: `key "region" is empty` }).default("us-east-1"),
});

/** Where the checkpoint storage is and how to sign in; built by `storageConfigFromSecret`. */
export type StorageConfig = z.infer<typeof StorageSecretData>;

/**
 * Parses the data of the `streamjob-storage` Secret (values already base64-decoded), rejecting with
 * an error that names each missing or bad key and never repeats a value.
 */
export function storageConfigFromSecret(
  data: Record<string, string>,
  secretName: string = STORAGE_SECRET_NAME,
): StorageConfig {
  const parsed = StorageSecretData.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) =>
      issue.message.startsWith("missing key") || issue.message.startsWith("key ")
        ? issue.message
        : `key "${String(issue.path[0])}": ${issue.message}`,
    );
    throw new Error(`Secret ${secretName} is invalid: ${problems.join("; ")}`);
  }
  return parsed.data;
}

export interface MinioObjectStoreOptions extends StorageConfig {
  bucket: string;
  /**
   * Size of each part of a multipart upload, at least 5 MiB (default 8 MiB). A stream up to this
   * size goes in one plain PUT; a longer one holds at most about three parts in memory at a time.
   */
  partSizeBytes?: number;
}

/** The storage refused the credentials (or their policy denies the call): not worth retrying. */
export class StorageAccessDeniedError extends Error {}

export class MinioObjectStore implements ObjectStore {
  readonly bucket: string;
  /** The endpoint URL, for messages (it holds no credentials). */
  readonly endpoint: string;
  readonly region: string;
  readonly partSizeBytes: number;
  /** The underlying client, for administration such as creating the bucket (see `ensureBucket`). */
  readonly client: Minio.Client;

  constructor(options: MinioObjectStoreOptions) {
    const url = new URL(options.endpoint);
    this.bucket = options.bucket;
    this.endpoint = url.origin;
    this.region = options.region;
    this.partSizeBytes = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    if (!Number.isInteger(this.partSizeBytes) || this.partSizeBytes < MIN_PART_SIZE_BYTES) {
      throw new RangeError(`partSizeBytes must be an integer of at least ${MIN_PART_SIZE_BYTES}`);
    }
    const useSSL = url.protocol === "https:";
    const agentOptions = { keepAlive: true, maxSockets: 16 };
    this.client = new Minio.Client({
      endPoint: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: url.port === "" ? (useSSL ? 443 : 80) : Number(url.port),
      useSSL,
      accessKey: options.accessKey,
      secretKey: options.secretKey,
      // A known region spares a GetBucketLocation round trip before the first call on the bucket.
      region: options.region,
      // Setting it also makes a stream of unknown length upload in parts of this size instead of
      // parts sized for the 5 TiB maximum object, which would buffer the whole stream.
      partSize: this.partSizeBytes,
      transportAgent: useSSL ? new https.Agent(agentOptions) : new http.Agent(agentOptions),
    });
    // Over plain HTTP the client would hash every payload into its signature; the stored object's
    // sha256 (computed here anyway) is what checkpoints verify.
    this.client.enableSHA256 = false;
  }

  async put(key: string, body: Buffer | Readable): Promise<StoredObject> {
    if (!Buffer.isBuffer(body)) return this.call("write", key, () => this.putStream(key, body));
    await this.call("write", key, () => this.putBody(key, body));
    return { sizeBytes: body.length, sha256: createHash("sha256").update(body).digest("hex") };
  }

  async get(key: string): Promise<Buffer> {
    return this.call("read", key, async () => {
      const chunks: Buffer[] = [];
      const stream = await this.client.getObject(this.bucket, key);
      for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
      return Buffer.concat(chunks);
    });
  }

  async getStream(key: string): Promise<Readable> {
    return this.call("read", key, () => this.client.getObject(this.bucket, key));
  }

  async getRange(key: string, offset: number, length: number): Promise<Readable> {
    return this.call("read", key, () => this.client.getPartialObject(this.bucket, key, offset, length));
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    try {
      const stat = await this.call("stat", key, () => this.client.statObject(this.bucket, key));
      return { sizeBytes: stat.size };
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    return this.call("list", `${prefix}*`, async () => {
      const keys: string[] = [];
      const items = this.client.listObjectsV2(this.bucket, prefix, true) as AsyncIterable<Minio.BucketItem>;
      for await (const item of items) {
        // Only directory-style entries (with a delimiter) come without a name.
        if (item.name !== undefined) keys.push(item.name);
      }
      return keys.sort();
    });
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let start = 0; start < keys.length; start += DELETE_BATCH_SIZE) {
      const batch = keys.slice(start, start + DELETE_BATCH_SIZE);
      const label = batch.length === 1 ? (batch[0] ?? "") : `${batch[0] ?? ""} and ${batch.length - 1} more`;
      // One request per batch, batches one after another: the caller's order holds between batches.
      const failures = await this.call("delete", label, () => this.client.removeObjects(this.bucket, batch));
      const problems = failures.map(describeDeleteFailure).filter((problem) => problem !== null);
      if (problems.length > 0) {
        throw new Error(`delete ${this.location(label)} at ${this.endpoint} failed: ${problems.join("; ")}`);
      }
    }
  }

  async copy(fromKey: string, toKey: string): Promise<void> {
    await this.call("copy", fromKey, () =>
      this.client.copyObject(
        new Minio.CopySourceOptions({ Bucket: this.bucket, Object: fromKey }),
        new Minio.CopyDestinationOptions({ Bucket: this.bucket, Object: toKey }),
      ),
    );
  }

  private async putStream(key: string, source: Readable): Promise<StoredObject> {
    const digest = { hash: createHash("sha256"), sizeBytes: 0 };
    const parts = partsOf(hashedChunks(source, digest), this.partSizeBytes);
    // A stream that fits in one part goes in one PUT, as a multipart upload costs two more round
    // trips (initiate, complete).
    const first = await parts.next();
    const second = first.done === true ? first : await parts.next();
    if (second.done === true) {
      await this.putBody(key, first.value ?? Buffer.alloc(0));
    } else {
      await this.uploadInParts(key, [first.value!, second.value], parts);
    }
    return { sizeBytes: digest.sizeBytes, sha256: digest.hash.digest("hex") };
  }

  /**
   * Multipart upload of `read` then `rest`, PARALLEL_PARTS at a time. When the source or a part
   * fails, the upload is aborted so that no unfinished upload lingers.
   */
  private async uploadInParts(key: string, read: Buffer[], rest: AsyncGenerator<Buffer>): Promise<void> {
    const uploadId = await this.client.initiateNewMultipartUpload(this.bucket, key, {});
    const uploaded: { part: number; etag: string }[] = [];
    const inFlight = new Set<Promise<void>>();
    try {
      let part = 0;
      for await (const body of replay(read, rest)) {
        // Waiting here (and not reading on) is what bounds the memory a stream takes.
        while (inFlight.size >= PARALLEL_PARTS) await Promise.race(inFlight);
        const number = ++part;
        const query = `partNumber=${number}&uploadId=${encodeURIComponent(uploadId)}`;
        const upload: Promise<void> = this.putBody(key, body, query).then((etag) => {
          uploaded.push({ part: number, etag });
          inFlight.delete(upload);
        });
        // A failed part stays in flight: the next race or the final wait reports it.
        upload.catch(() => undefined);
        inFlight.add(upload);
      }
      await Promise.all(inFlight);
      uploaded.sort((a, b) => a.part - b.part);
      await this.client.completeMultipartUpload(this.bucket, key, uploadId, uploaded);
    } catch (err) {
      await Promise.allSettled(inFlight);
      // Best effort: the upload already failed and that is what the caller must hear about.
      await this.client.abortMultipartUpload(this.bucket, key, uploadId).catch(() => undefined);
      throw err;
    }
  }

  /** One PUT of `body` (an object, or the part of a multipart upload `query` names); its ETag. */
  private async putBody(key: string, body: Buffer, query?: string): Promise<string> {
    const response = await this.client.makeRequestStreamAsync(
      {
        method: "PUT",
        bucketName: this.bucket,
        objectName: key,
        headers: { "content-length": String(body.length) },
        ...(query === undefined ? {} : { query }),
      },
      body,
      "",
      [200],
      this.region,
    );
    response.resume();
    await finished(response);
    return String(response.headers.etag ?? "").replace(/^"|"$/g, "");
  }

  /** Runs one client call, turning its errors into ObjectNotFoundError or an error with context. */
  private async call<T>(action: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const code = errorCode(err);
      // HEAD responses have no body, so a missing object is a bare 404 there.
      if (code === "NoSuchKey" || (code === "NotFound" && action === "stat"))
        throw new ObjectNotFoundError(key);
      throw storageError(this.endpoint, `${action} ${this.location(key)}`, err);
    }
  }

  private location(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }
}

/** Creates the store's bucket unless it exists (the devcluster and a fresh S3 account start without). */
export async function ensureBucket(store: MinioObjectStore): Promise<void> {
  try {
    if (await store.client.bucketExists(store.bucket)) return;
    await store.client.makeBucket(store.bucket, store.region);
  } catch (err) {
    // Another process may have created it between the two calls.
    if (errorCode(err) === "BucketAlreadyOwnedByYou") return;
    throw storageError(store.endpoint, `create bucket ${store.bucket}`, err);
  }
}

/** An error saying what failed where, a StorageAccessDeniedError when the credentials are at fault. */
function storageError(endpoint: string, what: string, err: unknown): Error {
  const code = errorCode(err);
  const reason = errorMessage(err);
  if (code !== undefined && CREDENTIAL_ERRORS.has(code)) {
    return new StorageAccessDeniedError(
      `${endpoint} refused to ${what}: ${code}: ${reason} ` +
        `(check accessKey and secretKey in the storage Secret, and their policy)`,
      { cause: err },
    );
  }
  const codePrefix = code === undefined ? "" : `${code}: `;
  return new Error(`${what} at ${endpoint} failed: ${codePrefix}${reason}`, { cause: err });
}

// AccessDenied is what a HEAD request gets for bad credentials: it has no body to say more.
const CREDENTIAL_ERRORS = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "InvalidToken",
  "ExpiredToken",
]);

// Duck-typed rather than `instanceof Error`: Node's network errors may come from another realm
// (a VM context, as under jest), where instanceof fails.
/** The S3 error code of a client error, or the Node system code (ECONNREFUSED, …). */
function errorCode(err: unknown): string | undefined {
  const code = typeof err === "object" && err !== null && "code" in err ? err.code : undefined;
  return typeof code === "string" && code !== "" ? code : undefined;
}

function errorMessage(err: unknown): string {
  const message = typeof err === "object" && err !== null && "message" in err ? err.message : undefined;
  return typeof message === "string" ? message : String(err);
}

/** One entry of a DeleteObjects error list, or null for a key that was already gone. */
function describeDeleteFailure(entry: unknown): string | null {
  const parsed = z
    .object({ Key: z.string().optional(), Code: z.string().optional(), Message: z.string().optional() })
    .safeParse(entry);
  if (!parsed.success) return JSON.stringify(entry);
  const { Key, Code, Message } = parsed.data;
  if (Code === "NoSuchKey") return null;
  return `${Key ?? "?"}: ${Code ?? "error"}${Message === undefined ? "" : ` (${Message})`}`;
}

/**
 * The source's chunks as Buffers (strings, from a stream with an encoding set, as UTF-8), each
 * added to the digest on its way through.
 */
async function* hashedChunks(
  source: Readable,
  digest: { hash: ReturnType<typeof createHash>; sizeBytes: number },
): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of source as AsyncIterable<unknown>) {
    const buffer = asBuffer(chunk);
    digest.hash.update(buffer);
    digest.sizeBytes += buffer.length;
    yield buffer;
  }
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError("put: the stream must yield bytes or strings");
}

/** The buffers already read, then the rest, each released as soon as it is handed on. */
async function* replay(read: Buffer[], rest: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  for (let buffer = read.shift(); buffer !== undefined; buffer = read.shift()) yield buffer;
  yield* rest;
}

/**
 * The chunks regrouped into parts of exactly `partSize` bytes but the last (which holds 1 to
 * `partSize` bytes; none for an empty stream). A part is cut only once a byte beyond it has arrived.
 */
async function* partsOf(chunks: AsyncIterable<Buffer>, partSize: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes > partSize) {
      const joined = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      yield joined.subarray(0, partSize);
      pending = [joined.subarray(partSize)];
      pendingBytes -= partSize;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}
