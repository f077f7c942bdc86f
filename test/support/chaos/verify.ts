// What `npm run chaos` checks. Throughout: the checkpoint status.latestCheckpoint names is intact
// (its manifest parses, names that checkpoint, and every part it lists has its recorded size and
// sha256) and checkpoint ids never go back. At the end: the committed output of the `sequence` job
// has no gap and no duplicate, and the job was healthy again soon after the last fault.
import { createHash } from "node:crypto";
import { formatZodError, StoredCheckpointManifest } from "../../../src/api/protocol.js";
import type { StreamJobStatus } from "../../../src/api/streamjob.js";
import { ObjectNotFoundError, type ObjectStore } from "../../../src/storage/object-store.js";
import type { SequenceOutputReport } from "../../../src/taskmanager/job/builtin/sequence.js";

export interface CheckpointPointer {
  id: number;
  /** Key of the manifest in the job's bucket. */
  path: string;
}

/**
 * What is wrong with the checkpoint `pointer` names; empty when it is intact. A missing object is a
 * problem; any other error of the store (unreachable, paused) rejects: it says nothing about the
 * checkpoint.
 */
export async function checkpointProblems(store: ObjectStore, pointer: CheckpointPointer): Promise<string[]> {
  const where = `checkpoint ${pointer.id} (${pointer.path})`;
  const bytes = await getOrNull(store, pointer.path);
  if (bytes === null) return [`${where}: the manifest is missing`];
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    return [`${where}: the manifest is not JSON`];
  }
  const parsed = StoredCheckpointManifest.safeParse(json);
  if (!parsed.success) return [`${where}: the manifest is invalid: ${formatZodError(parsed.error)}`];
  const manifest = parsed.data;
  const problems: string[] = [];
  if (manifest.checkpointId !== pointer.id)
    problems.push(`${where}: the manifest is checkpoint ${manifest.checkpointId}'s`);
  for (const part of manifest.parts) {
    const body = await getOrNull(store, part.key);
    if (body === null) {
      problems.push(`${where}: part ${part.key} is missing`);
      continue;
    }
    if (body.length !== part.sizeBytes)
      problems.push(
        `${where}: part ${part.key} has ${body.length} bytes, the manifest says ${part.sizeBytes}`,
      );
    const sha256 = createHash("sha256").update(body).digest("hex");
    if (sha256 !== part.sha256)
      problems.push(`${where}: part ${part.key} has sha256 ${sha256}, the manifest says ${part.sha256}`);
  }
  return problems;
}

async function getOrNull(store: ObjectStore, key: string): Promise<Buffer | null> {
  try {
    return await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
}

/** Checkpoint ids as status reports them, in the order read: a smaller id than one seen is a violation. */
export class CheckpointIdWatch {
  private highest = 0;

  /** The violation, if `id` goes back; undefined otherwise. */
  observe(id: number): string | undefined {
    if (id < this.highest)
      return `status.latestCheckpoint went back from checkpoint ${this.highest} to ${id}`;
    this.highest = id;
    return undefined;
  }

  get latest(): number {
    return this.highest;
  }
}

/** Running, with at least `checkpoints` checkpoints completed after checkpoint `after`. */
export function isHealthy(status: StreamJobStatus | undefined, after: number, checkpoints = 2): boolean {
  return status?.phase === "Running" && (status.latestCheckpoint?.id ?? 0) >= after + checkpoints;
}

export interface OutputCounts {
  gaps: number;
  duplicates: number;
  /** Problems that are neither (an unreadable line). */
  other: string[];
}

/** Sorts verifySequenceOutput's problems ("…: gap for …", "…: duplicate for …") by kind. */
export function countOutputProblems(report: SequenceOutputReport): OutputCounts {
  const counts: OutputCounts = { gaps: 0, duplicates: 0, other: [] };
  for (const problem of report.problems) {
    if (/: gap for /.test(problem)) counts.gaps++;
    else if (/: duplicate for /.test(problem)) counts.duplicates++;
    else counts.other.push(problem);
  }
  return counts;
}

export interface ChaosSummary {
  faults: number;
  violations: number;
  gaps: number;
  duplicates: number;
}

/** The run's last line (a contract: scripts and the test read it). */
export function summaryLine(summary: ChaosSummary): string {
  const { faults, violations, gaps, duplicates } = summary;
  return `chaos: ${faults} faults, ${violations} violations, ${gaps} gaps, ${duplicates} duplicates`;
}

export function passed(summary: ChaosSummary): boolean {
  return summary.violations === 0 && summary.gaps === 0 && summary.duplicates === 0;
}
