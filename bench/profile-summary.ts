// `tsx bench/profile-summary.ts <dir>`: where a TaskManager's main thread spent its time, from the
// V8 CPU profiles (`--cpu-prof`) that `BENCH_CPU_PROF_DIR=<dir> npm run bench:checkpoint` leaves.
// Each sample goes to exactly one share (the first rule its stack matches), so the shares add up to
// 100% of the profiled time. The store pulls the encoder's chunks, so encoding is matched before upload.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

type Frame = ProfileNode["callFrame"];

const isHash = (f: Frame) => f.url === "node:internal/crypto/hash";
const isS3Client = (f: Frame) => f.url.includes("/node_modules/minio/");
const isStore = (f: Frame) => f.url.endsWith("/storage/minio-object-store.js");
const isNetwork = (f: Frame) =>
  /^node:(_http_|net$|internal\/stream_base_commons|internal\/http)/.test(f.url);

/** The shares, in the order the rules are tried; a stack is leaf first. */
const rules: [string, (leaf: Frame, stack: Frame[]) => boolean][] = [
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

function summarize(profile: Profile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const shareOf = new Map<number, string>();
  const micros = new Map<string, number>(rules.map(([name]) => [name, 0]));
  profile.samples.forEach((id, i) => {
    let share = shareOf.get(id);
    if (share === undefined) {
      const stack: Frame[] = [];
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        stack.push(byId.get(at)!.callFrame);
      }
      share = rules.find(([, matches]) => matches(stack[0]!, stack))![0];
      shareOf.set(id, share);
    }
    micros.set(share, micros.get(share)! + (profile.timeDeltas[i] ?? 0));
  });
  return micros;
}

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: tsx bench/profile-summary.ts <dir with .cpuprofile files>");
const total = new Map<string, number>();
const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
for (const file of files) {
  const profile = JSON.parse(readFileSync(path.join(dir, file), "utf8")) as Profile;
  for (const [share, us] of summarize(profile)) total.set(share, (total.get(share) ?? 0) + us);
}
const all = [...total.values()].reduce((a, b) => a + b, 0);
const busy = all - (total.get("idle") ?? 0);
console.log(
  `${files.length} profiles, ${(all / 1e6).toFixed(1)} s in all, ${(busy / 1e6).toFixed(1)} s busy`,
);
console.log(`${"share".padEnd(52)} ${"s".padStart(7)} ${"% all".padStart(7)} ${"% busy".padStart(7)}`);
for (const [share, us] of total) {
  const busyShare = share === "idle" ? "" : ((us / busy) * 100).toFixed(1);
  console.log(
    `${share.padEnd(52)} ${(us / 1e6).toFixed(2).padStart(7)} ${((us / all) * 100).toFixed(1).padStart(7)} ${busyShare.padStart(7)}`,
  );
}
