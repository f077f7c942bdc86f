// The object storage both sides of a checkpoint use: TaskManagers write parts and read them back
// on restore, the coordinator writes and reads manifests and deletes what retention allows.
// MinioObjectStore (this folder) is the real one; unit tests of pure logic may use an in-memory one.
import type { Readable } from "node:stream";

export interface StoredObject {
  sizeBytes: number;
  /** Lowercase hex sha256 of the bytes as stored. */
  sha256: string;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object ${key} does not exist`);
  }
}

export interface ObjectStore {
  readonly bucket: string;
  /**
   * Writes `body` at `key` in one atomic PUT as seen by readers (multipart for large bodies),
   * computing size and sha256 while streaming, without holding a stream's bytes in memory.
   */
  put(key: string, body: Buffer | Readable): Promise<StoredObject>;
  /** The whole object; rejects with ObjectNotFoundError when it does not exist. */
  get(key: string): Promise<Buffer>;
  /** The object as a stream; rejects with ObjectNotFoundError when it does not exist. */
  getStream(key: string): Promise<Readable>;
  /**
   * `length` bytes of the object from byte `offset` as a stream (an HTTP ranged GET); fewer when the
   * object is shorter. Rejects with ObjectNotFoundError when it does not exist.
   */
  getRange(key: string, offset: number, length: number): Promise<Readable>;
  /** Size of the object, or null when it does not exist. */
  stat(key: string): Promise<{ sizeBytes: number } | null>;
  /** Every key starting with `prefix`, recursively, sorted. */
  list(prefix: string): Promise<string[]>;
  /**
   * Deletes the keys; a key already gone is not an error. Keys may go several to a request (S3
   * DeleteObjects), in no particular order within it, so order is only guaranteed between calls: a
   * key that must be gone before others (a manifest before its parts) is deleted in a call of its own.
   */
  delete(keys: readonly string[]): Promise<void>;
  /** Server-side copy (used to commit staged sink output); idempotent. */
  copy(fromKey: string, toKey: string): Promise<void>;
}
