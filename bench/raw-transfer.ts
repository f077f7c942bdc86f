// The physical limit the checkpoint and restore benches compare against: the fastest way this
// machine moves the same bytes into (or out of) the same MinIO. Each way is measured in the same
// run, and the fastest is the limit; an independent client (minio-go, bench/raw-upload-go) checks
// that the Node ways are not leaving speed on the table.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { homedir } from "node:os";
import path from "node:path";
import * as Minio from "minio";
import type { MinioObjectStore, StorageConfig } from "../src/storage/minio-object-store.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { percentile } from "./measure.js";

const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};
const PART_BYTES = 8 * 1024 * 1024;
const URL_EXPIRY_SECONDS = 3600;

/** One plain HTTP request over a kept-alive connection; resolves when the response has been read. */
function request(
  method: "PUT" | "GET",
  url: string,
  body?: Buffer,
): Promise<{ etag: string; bytes: number }> {
  const target = new URL(url);
  const transport = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      target,
      {
        method,
        agent: agents[target.protocol as "http:" | "https:"],
        headers: body === undefined ? {} : { "content-length": body.length },
      },
      (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () =>
          res.statusCode === 200
            ? resolve({ etag: String(res.headers.etag ?? ""), bytes })
            : reject(new Error(`${method} ${target.pathname}: HTTP ${res.statusCode}`)),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export interface RawWay {
  name: string;
  /** Puts every buffer as an object of its own under `prefix`, all at once. */
  upload(prefix: string, buffers: Buffer[]): Promise<void>;
}

/** The ways of uploading measured against each other. */
export function uploadWays(store: MinioObjectStore, storage: StorageConfig): RawWay[] {
  const url = new URL(storage.endpoint);
  // As the store used to upload: the client's defaults (SHA-256 of the payload and an MD5 per request).
  const defaults = new Minio.Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: url.protocol === "https:",
    accessKey: storage.accessKey,
    secretKey: storage.secretKey,
    region: storage.region,
    partSize: PART_BYTES,
  });
  const presigned = (key: string, query: Record<string, string> = {}) =>
    store.client.presignedUrl("PUT", store.bucket, key, URL_EXPIRY_SECONDS, query);
  return [
    {
      name: "minio-js putObject, client defaults",
      upload: async (prefix, buffers) => {
        await Promise.all(
          buffers.map((b, i) => defaults.putObject(store.bucket, `${prefix}task-${i}`, b, b.length)),
        );
      },
    },
    {
      name: "MinioObjectStore.put (this repo's write path)",
      upload: async (prefix, buffers) => {
        await Promise.all(buffers.map((b, i) => store.put(`${prefix}task-${i}`, b)));
      },
    },
    {
      // Presigned URLs are UNSIGNED-PAYLOAD and need no signing per request: nothing but HTTP.
      name: "node:http PUT, presigned, kept alive",
      upload: async (prefix, buffers) => {
        const urls = await Promise.all(buffers.map((_, i) => presigned(`${prefix}task-${i}`)));
        await Promise.all(buffers.map((b, i) => request("PUT", urls[i]!, b)));
      },
    },
    {
      name: "node:http multipart, all 8 MiB parts at once",
      upload: async (prefix, buffers) => {
        await Promise.all(
          buffers.map(async (b, i) => {
            const key = `${prefix}task-${i}`;
            if (b.length <= PART_BYTES) return void (await request("PUT", await presigned(key), b));
            const uploadId = await store.client.initiateNewMultipartUpload(store.bucket, key, {});
            const parts = Array.from({ length: Math.ceil(b.length / PART_BYTES) }, (_, n) => n + 1);
            const etags = await Promise.all(
              parts.map(async (part) => {
                const partUrl = await presigned(key, { partNumber: String(part), uploadId });
                const slice = b.subarray((part - 1) * PART_BYTES, part * PART_BYTES);
                return { part, etag: (await request("PUT", partUrl, slice)).etag.replace(/"/g, "") };
              }),
            );
            await store.client.completeMultipartUpload(store.bucket, key, uploadId, etags);
          }),
        );
      },
    },
  ];
}

/** Median milliseconds of `rounds` rounds of `way` putting `buffers`. */
export async function timeUploads(way: RawWay, buffers: Buffer[], rounds: number): Promise<number> {
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    await way.upload(`raw/${round}/`, buffers);
    times.push(performance.now() - started);
  }
  return percentile(times, 50);
}

const goClient = path.join(homedir(), ".cache", "streamjob-operator", "raw-upload-go");

/**
 * The same uploads by minio-go (an independent client, one goroutine per object), or null when Go
 * is not installed. Built on first use into ~/.cache (modules from the Go module proxy).
 */
export function goUploadMs(store: MinioObjectStore, storage: StorageConfig, sizes: number[], rounds: number) {
  if (!existsSync(goClient)) {
    try {
      execFileSync("go", ["build", "-o", goClient, "."], { cwd: path.join(repoRoot, "bench/raw-upload-go") });
    } catch {
      return null;
    }
  }
  const output = execFileSync(goClient, ["-sizes", sizes.join(","), "-rounds", String(rounds)], {
    env: {
      PATH: process.env.PATH,
      S3_ENDPOINT: storage.endpoint,
      S3_ACCESS_KEY: storage.accessKey,
      S3_SECRET_KEY: storage.secretKey,
      S3_BUCKET: store.bucket,
    },
  });
  return (JSON.parse(output.toString()) as { p50_ms: number }).p50_ms;
}

/** Reads every key at once over kept-alive connections (presigned GETs); the bytes read. */
export async function download(store: MinioObjectStore, keys: string[]): Promise<number> {
  const urls = await Promise.all(
    keys.map((key) => store.client.presignedUrl("GET", store.bucket, key, URL_EXPIRY_SECONDS)),
  );
  const read = await Promise.all(urls.map((url) => request("GET", url)));
  return read.reduce((sum, r) => sum + r.bytes, 0);
}
