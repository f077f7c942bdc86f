import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { ObjectNotFoundError } from "../../../src/storage/object-store.js";

const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test("put of a Buffer reports its size and sha256, and get returns the same bytes", async () => {
  const store = new MemoryObjectStore();
  const body = Buffer.from("state of key group 3");
  await expect(store.put("a/b", body)).resolves.toEqual({ sizeBytes: body.length, sha256: sha256(body) });
  await expect(store.get("a/b")).resolves.toEqual(body);
  await expect(store.stat("a/b")).resolves.toEqual({ sizeBytes: body.length });
});

test("put of a stream stores the concatenated chunks, strings as UTF-8", async () => {
  const store = new MemoryObjectStore();
  const stored = await store.put("k", Readable.from([Buffer.from("ab"), "cé", Buffer.from("d")]));
  const expected = Buffer.from("abcéd");
  expect(stored).toEqual({ sizeBytes: expected.length, sha256: sha256(expected) });
  await expect(readAll(await store.getStream("k"))).resolves.toEqual(expected);
});

test("stored bytes are copies: mutating the caller's Buffer or a read result changes nothing", async () => {
  const store = new MemoryObjectStore();
  const body = Buffer.from("original");
  await store.put("k", body);
  body.write("XXXX");
  (await store.get("k")).write("YYYY");
  await expect(store.get("k")).resolves.toEqual(Buffer.from("original"));
});

test("a missing object: get and getStream reject with ObjectNotFoundError, stat gives null", async () => {
  const store = new MemoryObjectStore();
  await expect(store.get("nope")).rejects.toEqual(new ObjectNotFoundError("nope"));
  await expect(store.get("nope")).rejects.toBeInstanceOf(ObjectNotFoundError);
  await expect(store.getStream("nope")).rejects.toBeInstanceOf(ObjectNotFoundError);
  await expect(store.stat("nope")).resolves.toBeNull();
});

test("list returns every key under the prefix, recursively and sorted", async () => {
  const store = new MemoryObjectStore();
  for (const key of ["p/b/2", "p/a", "q/a", "p/b/1", "pp"]) await store.put(key, Buffer.from(key));
  await expect(store.list("p/")).resolves.toEqual(["p/a", "p/b/1", "p/b/2"]);
  await expect(store.list("p")).resolves.toEqual(["p/a", "p/b/1", "p/b/2", "pp"]);
  await expect(store.list("")).resolves.toEqual(["p/a", "p/b/1", "p/b/2", "pp", "q/a"]);
  await expect(store.list("r/")).resolves.toEqual([]);
});

test("delete removes the keys and ignores keys already gone", async () => {
  const store = new MemoryObjectStore();
  await store.put("a", Buffer.from("1"));
  await store.put("b", Buffer.from("2"));
  await store.delete(["a", "never-there", "a"]);
  await expect(store.list("")).resolves.toEqual(["b"]);
});

test("copy duplicates an object, again and again; a missing source is ObjectNotFoundError", async () => {
  const store = new MemoryObjectStore();
  await store.put("staged/1", Buffer.from("output"));
  await store.copy("staged/1", "committed/1");
  await store.copy("staged/1", "committed/1");
  await expect(store.get("committed/1")).resolves.toEqual(Buffer.from("output"));
  await expect(store.get("staged/1")).resolves.toEqual(Buffer.from("output"));
  await expect(store.copy("staged/2", "committed/2")).rejects.toEqual(new ObjectNotFoundError("staged/2"));
});

test("the bucket name defaults to 'memory' and can be chosen", () => {
  expect(new MemoryObjectStore().bucket).toBe("memory");
  expect(new MemoryObjectStore("checkpoints").bucket).toBe("checkpoints");
});
