// Pod address block claims with real files in a temporary directory, as clusters share them.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  claimOrder,
  claimOwner,
  claimPodNetwork,
  MARKER_FILE,
  preferredOctet,
  releasePodNetwork,
} from "../../../src/devcluster/pod-networks.js";

const root = mkdtempSync(path.join(os.tmpdir(), "pod-networks-"));
let claimsDir: string;
let caseDir: string;
let caseNumber = 0;

beforeEach(() => {
  caseDir = path.join(root, `case-${caseNumber++}`);
  claimsDir = path.join(caseDir, "claims");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function folder(name: string): string {
  const dir = path.join(caseDir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const claim = (clusterDir: string, preferred: number) =>
  claimPodNetwork({ claimsDir, clusterDir, preferred });

test("the default folder prefers 127.1, others a stable block from their path", () => {
  expect(preferredOctet("/repo/.devcluster", "/repo/.devcluster")).toBe(1);
  const test = preferredOctet("/repo/.devcluster/test", "/repo/.devcluster");
  expect(test).toBe(preferredOctet("/repo/.devcluster/test", "/repo/.devcluster"));
  expect(test).toBeGreaterThanOrEqual(10);
  expect(test).toBeLessThan(250);
});

test("blocks are tried from the preferred one, wrapping, never the reserved 0, 3 and 255", () => {
  const order = claimOrder(250);
  expect(order.slice(0, 6)).toEqual([250, 251, 252, 253, 254, 1]);
  expect(order).toHaveLength(253);
  for (const reserved of [0, 3, 255]) expect(order).not.toContain(reserved);
  expect(claimOrder(3)[0]).toBe(4);
});

test("a second cluster preferring a held block gets the next free one; each folder records its own", async () => {
  const a = folder("a");
  const b = folder("b");
  expect(await claim(a, 20)).toBe(20);
  expect(await claim(b, 20)).toBe(21);
  expect(JSON.parse(readFileSync(path.join(b, MARKER_FILE), "utf8"))).toEqual({ octet: 21 });
  expect(claimOwner(20, claimsDir)).toBe(a);
  expect(claimOwner(21, claimsDir)).toBe(b);
});

test("claiming again keeps the block the folder holds, whatever it prefers now", async () => {
  const a = folder("a");
  expect(await claim(a, 30)).toBe(30);
  expect(await claim(a, 90)).toBe(30);
  expect(claimOwner(90, claimsDir)).toBeUndefined();
});

test("a released block goes to the next claimant; releasing twice is harmless", async () => {
  const a = folder("a");
  const b = folder("b");
  await claim(a, 40);
  await releasePodNetwork({ claimsDir, clusterDir: a });
  await releasePodNetwork({ claimsDir, clusterDir: a });
  expect(claimOwner(40, claimsDir)).toBeUndefined();
  expect(await claim(b, 40)).toBe(40);
});

test("a stale claim is taken over: its folder deleted, or recording another block", async () => {
  const gone = folder("gone");
  const moved = folder("moved");
  const live = folder("live");
  expect(await claim(gone, 50)).toBe(50);
  rmSync(gone, { recursive: true });
  expect(await claim(moved, 51)).toBe(51);
  // The folder holds 51, yet a claim file for 52 still names it (written, then the folder moved on).
  writeFileSync(path.join(claimsDir, "127.52.json"), JSON.stringify({ clusterDir: moved }));
  expect(await claim(live, 53)).toBe(53);

  const newcomer = folder("newcomer");
  expect(await claim(newcomer, 50)).toBe(50);
  const other = folder("other");
  expect(await claim(other, 51)).toBe(52); // 51 is held, 52's claim is stale
  expect(claimOwner(52, claimsDir)).toBe(other);
  expect(claimOwner(51, claimsDir)).toBe(moved);
});

test("a claim whose cluster is known to be dead is taken over; its folder then gets another block", async () => {
  const crashed = folder("crashed");
  const next = folder("next");
  expect(await claim(crashed, 55)).toBe(55);
  const dead = new Set([crashed]);
  const clusterMayRun = (dir: string) => !dead.has(dir);
  expect(await claimPodNetwork({ claimsDir, clusterDir: next, preferred: 55, clusterMayRun })).toBe(55);
  expect(claimOwner(55, claimsDir)).toBe(next);
  dead.clear();
  expect(await claimPodNetwork({ claimsDir, clusterDir: crashed, preferred: 55, clusterMayRun })).toBe(56);
});

test("claimants racing for one block, a stale one among them, all end up with different blocks", async () => {
  const stale = folder("stale");
  await claim(stale, 60);
  rmSync(stale, { recursive: true });
  const dirs = Array.from({ length: 8 }, (_, i) => folder(`racer-${i}`));
  const octets = await Promise.all(dirs.map((dir) => claim(dir, 60)));
  expect(new Set(octets).size).toBe(dirs.length);
  expect([...octets].sort((x, y) => x - y)).toEqual([60, 61, 62, 63, 64, 65, 66, 67]);
  octets.forEach((octet, i) => expect(claimOwner(octet, claimsDir)).toBe(dirs[i]));
});

test("two processes claiming at once get different blocks", async () => {
  const run = promisify(execFile);
  const module = path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    "../../../src/devcluster/pod-networks.ts",
  );
  const claimIn = (dir: string) =>
    run(process.execPath, [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `const m = await import(${JSON.stringify(module)});
       console.log(await m.claimPodNetwork({ claimsDir: ${JSON.stringify(claimsDir)}, clusterDir: ${JSON.stringify(dir)}, preferred: 70 }));`,
    ]);
  const dirs = [folder("p1"), folder("p2"), folder("p3")];
  const outputs = await Promise.all(dirs.map(claimIn));
  const octets = outputs.map((output) => Number(output.stdout.trim()));
  expect([...octets].sort((x, y) => x - y)).toEqual([70, 71, 72]);
  octets.forEach((octet, i) => expect(claimOwner(octet, claimsDir)).toBe(dirs[i]));
}, 60_000);

test("with every block held by a live cluster, claiming fails and says how to free one", async () => {
  for (const octet of claimOrder(1)) {
    const dir = folder(`held-${octet}`);
    writeFileSync(path.join(dir, MARKER_FILE), JSON.stringify({ octet }));
    mkdirSync(claimsDir, { recursive: true });
    writeFileSync(path.join(claimsDir, `127.${octet}.json`), JSON.stringify({ clusterDir: dir }));
  }
  await expect(claim(folder("one-too-many"), 1)).rejects.toThrow("npm run cluster:down");
});
