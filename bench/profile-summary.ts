// `tsx bench/profile-summary.ts <dir>`: where a TaskManager's main thread spent its time, from the
// V8 CPU profiles (`--cpu-prof`) that `BENCH_CPU_PROF_DIR=<dir> npm run bench:checkpoint` leaves.
// Each sample goes to exactly one share (bench/cpu-profiles.ts), so the shares add up to 100% of the
// profiled time. The store pulls the encoder's chunks, so encoding is matched before upload.
import { profileShares, type Frame, type ShareRule } from "./cpu-profiles.js";

const isHash = (f: Frame) => f.url === "node:internal/crypto/hash";
const isS3Client = (f: Frame) => f.url.includes("/node_modules/minio/");
const isStore = (f: Frame) => f.url.endsWith("/storage/minio-object-store.js");
const isNetwork = (f: Frame) =>
  /^node:(_http_|net$|internal\/stream_base_commons|internal\/http)/.test(f.url);

/** The shares, in the order the rules are tried; a stack is leaf first. */
const rules: ShareRule[] = [
  ["idle", (leaf) => leaf.functionName === "(idle)"],
  ["garbage collection", (leaf) => leaf.functionName === "(garbage collector)"],
  ["hashing in the S3 client (MD5, payload SHA-256)", (_, s) => s.some(isHash) && s.some(isS3Client)],
  ["hashing: the part's sha256", (_, s) => s.some(isHash)],
  ["encoding the state part", (_, s) => s.some((f) => f.url.endsWith("/state/state-part.js"))],
  ["upload: S3 client, request signing, HTTP", (_, s) => s.some(isS3Client) || s.some(isStore)],
  ["other network I/O (socket writes, status server)", (_, s) => s.some(isNetwork)],
  ["unattributed native ((program))", (leaf) => leaf.functionName === "(program)"],
  ["processing records and the rest", () => true],
];

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: tsx bench/profile-summary.ts <dir with .cpuprofile files>");
const { files, micros: total } = profileShares(dir, rules);
const all = [...total.values()].reduce((a, b) => a + b, 0);
const busy = all - (total.get("idle") ?? 0);
console.log(`${files} profiles, ${(all / 1e6).toFixed(1)} s in all, ${(busy / 1e6).toFixed(1)} s busy`);
console.log(`${"share".padEnd(52)} ${"s".padStart(7)} ${"% all".padStart(7)} ${"% busy".padStart(7)}`);
for (const [share, us] of total) {
  const busyShare = share === "idle" ? "" : ((us / busy) * 100).toFixed(1);
  console.log(
    `${share.padEnd(52)} ${(us / 1e6).toFixed(2).padStart(7)} ${((us / all) * 100).toFixed(1).padStart(7)} ${busyShare.padStart(7)}`,
  );
}
