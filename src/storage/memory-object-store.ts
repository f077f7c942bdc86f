// An ObjectStore held in a Map, for unit tests of code that reads and writes checkpoint objects.
// Same contract as MinioObjectStore: sha256 and size of what was stored, ObjectNotFoundError for a
// missing object, sorted listings, idempotent deletes and copies. Bytes are copied in and out, so a
// caller mutating its Buffer cannot change what is stored.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { ObjectNotFoundError, type ObjectStore, type StoredObject } from "./object-store.js";

export class MemoryObjectStore implements ObjectStore {
  private readonly objects = new Map<string, Buffer>();

  constructor(readonly bucket = "memory") {}

  async put(key: string, body: Buffer | Readable): Promise<StoredObject> {
    const bytes = Buffer.isBuffer(body) ? Buffer.from(body) : await readAll(body);
    this.objects.set(key, bytes);
    return { sizeBytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
  }

  async get(key: string): Promise<Buffer> {
    return Buffer.from(this.read(key));
  }

  async getStream(key: string): Promise<Readable> {
    return Readable.from([Buffer.from(this.read(key))], { objectMode: false });
  }

  async getRange(key: string, offset: number, length: number): Promise<Readable> {
    const bytes = Buffer.from(this.read(key).subarray(offset, offset + length));
    return Readable.from([bytes], { objectMode: false });
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    const bytes = this.objects.get(key);
    return bytes === undefined ? null : { sizeBytes: bytes.length };
  }

  async list(prefix: string): Promise<string[]> {
    return [...this.objects.keys()].filter((key) => key.startsWith(prefix)).sort();
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.objects.delete(key);
  }

  async copy(fromKey: string, toKey: string): Promise<void> {
    this.objects.set(toKey, Buffer.from(this.read(fromKey)));
  }

  private read(key: string): Buffer {
    const bytes = this.objects.get(key);
    if (bytes === undefined) throw new ObjectNotFoundError(key);
    return bytes;
  }
}

async function readAll(source: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source as AsyncIterable<Buffer | string>) {
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(chunks);
}
