// Pod address blocks (127.N.0.0/16) claimed machine-wide, so two local clusters never hand out the
// same pod address. Each block has at most one claim file in a directory every cluster on the
// machine shares; the cluster folder records the block it holds. A claim is held while its folder
// still records that block and its cluster may run: `cluster:down` releases it, and a claim whose
// folder was deleted (or records another block, or whose cluster died) is stale and taken over. Claims are read and written under a lock, an
// abstract Unix socket: the kernel frees it when its holder dies, so a crash never leaves it held,
// and it is scoped like the loopback addresses it protects (one network namespace).
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { writeFileAtomic } from "./files.js";

/** Shared by every cluster on the machine (and every user: sticky and world-writable, like /tmp). */
export const DEFAULT_CLAIMS_DIR = path.join(os.tmpdir(), "streamjob-devcluster-pod-networks");

/** The file in a cluster folder that names the block it holds. */
export const MARKER_FILE = "pod-network.json";

// 127.0 is the cluster's own components (127.0.0.1); 127.3 is where the integration tests run
// TaskManagers outside the cluster (test/support/local-job.ts).
const RESERVED = new Set([0, 3, 255]);
const CLAIMABLE = Array.from({ length: 256 }, (_, octet) => octet).filter((octet) => !RESERVED.has(octet));

const Claim = z.object({ clusterDir: z.string().min(1) });
const Marker = z.object({ octet: z.number().int().min(1).max(254) });

export interface PodNetworkClaims {
  /** The absolute cluster folder claiming or releasing. */
  clusterDir: string;
  claimsDir?: string;
}

export interface ClaimOptions extends PodNetworkClaims {
  /** The block to try first (preferredOctet). */
  preferred: number;
  /** False when the cluster of a folder that holds a block is known to be dead (it crashed). */
  clusterMayRun?: (clusterDir: string) => boolean;
}

export function podNetworkCidr(octet: number): string {
  return `127.${octet}.0.0/16`;
}

/** The octet a cluster claimed, from its recorded block (podNetworkCidr's inverse). */
export function podNetworkOctet(cidr: string): number {
  return Number(cidr.split(".")[1]);
}

/**
 * The block a folder tries first: 1 for the default cluster (so its addresses stay 127.1.x.y), a
 * stable one from the folder's path for any other, so a folder usually gets the same block back.
 */
export function preferredOctet(clusterDir: string, defaultDir: string): number {
  if (clusterDir === defaultDir) return 1;
  return 10 + (createHash("sha256").update(clusterDir).digest()[0]! % 240);
}

/** Every claimable block, starting at `preferred` and wrapping around. */
export function claimOrder(preferred: number): number[] {
  const start = CLAIMABLE.findIndex((octet) => octet >= preferred);
  const at = start === -1 ? 0 : start;
  return [...CLAIMABLE.slice(at), ...CLAIMABLE.slice(0, at)];
}

/**
 * Claims a block for the folder and records it there; a folder that already holds one keeps it.
 * Resolves to the block's second octet.
 */
export async function claimPodNetwork(options: ClaimOptions): Promise<number> {
  const claimsDir = options.claimsDir ?? DEFAULT_CLAIMS_DIR;
  const clusterDir = path.resolve(options.clusterDir);
  const mayRun = options.clusterMayRun ?? (() => true);
  const holds = (owner: string, octet: number) => readMarker(owner)?.octet === octet && mayRun(owner);
  return withClaimsLock(claimsDir, () => {
    const held = readMarker(clusterDir)?.octet;
    const order = [...(held === undefined ? [] : [held]), ...claimOrder(options.preferred)];
    for (const octet of order) {
      const owner = readClaim(claimsDir, octet);
      if (owner !== clusterDir && owner !== undefined && holds(owner, octet)) continue;
      if (owner !== clusterDir && !writeClaim(claimsDir, octet, clusterDir)) continue;
      // A block this folder held before and no longer records is freed at once.
      if (held !== undefined && held !== octet && readClaim(claimsDir, held) === clusterDir)
        rmSync(claimFile(claimsDir, held), { force: true });
      writeFileAtomic(path.join(clusterDir, MARKER_FILE), JSON.stringify({ octet }));
      return octet;
    }
    throw new Error(
      `every pod address block is held by another local cluster (claims in ${claimsDir}); stop one with \`npm run cluster:down\``,
    );
  });
}

/** Gives the folder's block back; nothing to do when it holds none. */
export async function releasePodNetwork(options: PodNetworkClaims): Promise<void> {
  const claimsDir = options.claimsDir ?? DEFAULT_CLAIMS_DIR;
  const clusterDir = path.resolve(options.clusterDir);
  const marker = path.join(clusterDir, MARKER_FILE);
  if (!existsSync(marker)) return;
  await withClaimsLock(claimsDir, () => {
    const held = readMarker(clusterDir)?.octet;
    if (held !== undefined && readClaim(claimsDir, held) === clusterDir)
      rmSync(claimFile(claimsDir, held), { force: true });
    rmSync(marker, { force: true });
  });
}

/** The folder holding a block, if any holds it (stale claims included). */
export function claimOwner(octet: number, claimsDir = DEFAULT_CLAIMS_DIR): string | undefined {
  return readClaim(claimsDir, octet);
}

function claimFile(claimsDir: string, octet: number): string {
  return path.join(claimsDir, `127.${octet}.json`);
}

function readClaim(claimsDir: string, octet: number): string | undefined {
  const parsed = Claim.safeParse(readJson(claimFile(claimsDir, octet)));
  return parsed.success ? parsed.data.clusterDir : undefined;
}

function readMarker(clusterDir: string): z.infer<typeof Marker> | undefined {
  const parsed = Marker.safeParse(readJson(path.join(clusterDir, MARKER_FILE)));
  return parsed.success ? parsed.data : undefined;
}

/** The file's JSON; undefined when it is missing, unreadable (another user's folder) or not JSON. */
function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

/** False when the block's stale claim belongs to another user, who alone may replace it. */
function writeClaim(claimsDir: string, octet: number, clusterDir: string): boolean {
  try {
    writeFileAtomic(claimFile(claimsDir, octet), JSON.stringify({ clusterDir }));
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EPERM" || code === "EACCES") return false;
    throw err;
  }
}

async function withClaimsLock<T>(claimsDir: string, critical: () => T, timeoutMs = 30_000): Promise<T> {
  if (!existsSync(claimsDir)) {
    mkdirSync(claimsDir, { recursive: true });
    // Another user's clusters claim here too; the sticky bit keeps each user's claims their own.
    chmodSync(claimsDir, 0o1777);
  }
  const name = `\0streamjob-devcluster-claims-${createHash("sha256").update(path.resolve(claimsDir)).digest("hex").slice(0, 32)}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lock = net.createServer();
    const acquired = await new Promise<boolean>((resolve, reject) => {
      lock.once("error", (err: NodeJS.ErrnoException) =>
        err.code === "EADDRINUSE" ? resolve(false) : reject(err),
      );
      lock.listen(name, () => resolve(true));
    });
    if (acquired) {
      try {
        return critical();
      } finally {
        await new Promise<void>((resolve) => lock.close(() => resolve()));
      }
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for the pod network claims lock of ${claimsDir}`);
    await sleep(10 + Math.random() * 40);
  }
}
