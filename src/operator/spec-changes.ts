// What a spec change means for a running job, as the Flink Kubernetes Operator classifies it: the
// last spec the operator acted on (status.lastReconciledSpec) against the current one.
//
//   ignore    checkpoint.interval/timeout/minPause/maxConcurrent/tolerableFailures/retained: the
//             coordinator is restarted with the new policy (same epoch, same pods), no redeploy;
//             restart.*: read by the planner on every failure; restoreFrom: only the initial state of
//             a new job (as Flink's initialSavepointPath), so changing it later does nothing.
//   savepoint savepointNonce set to a new value: take a savepoint, keep running.
//   scale     parallelism: checkpoint, then redeploy with the key groups redistributed.
//   upgrade   image, job, template, maxParallelism, checkpoint.storage: savepoint, then redeploy.
//   suspend / resume  suspend toggled: the strongest, since pods are built from the current spec anyway.
//   initial   nothing reconciled yet.
import { parseStreamJobSpec, type StreamJobSpec } from "../api/streamjob.js";

export const CHANGE_KINDS = [
  "ignore",
  "savepoint",
  "scale",
  "upgrade",
  "resume",
  "suspend",
  "initial",
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export interface SpecChange {
  kind: ChangeKind;
  /** Dotted paths of the fields that changed, e.g. "job.args", "template.env". */
  fields: string[];
  /** For humans: what changed and what the operator does about it. */
  reason: string;
}

const UPGRADE_FIELDS = ["image", "job", "template", "maxParallelism", "checkpoint.storage"];
const IGNORED_FIELDS = ["checkpoint", "restart", "restoreFrom"];

/** Every change between the two specs, strongest first; empty when nothing changed at all. */
export function classifySpecChanges(
  lastReconciledSpec: string | undefined,
  spec: StreamJobSpec,
): SpecChange[] {
  if (lastReconciledSpec === undefined) {
    return [{ kind: "initial", fields: [], reason: "first deployment of the job" }];
  }
  const last = parseLastSpec(lastReconciledSpec);
  if (last === null) {
    // Only a hand edit of the status gets here; a redeploy from a savepoint loses nothing.
    return [{ kind: "upgrade", fields: [], reason: "status.lastReconciledSpec does not parse; redeploying" }];
  }
  const changed = changedPaths(last, spec);
  const byKind = new Map<ChangeKind, string[]>();
  for (const path of changed) {
    const kind = kindOfField(path, last, spec);
    byKind.set(kind, [...(byKind.get(kind) ?? []), path]);
  }
  return [...byKind.entries()]
    .sort(([a], [b]) => CHANGE_KINDS.indexOf(b) - CHANGE_KINDS.indexOf(a))
    .map(([kind, fields]) => ({ kind, fields, reason: describe(kind, fields, spec) }));
}

/** The change the operator acts on: the strongest one, or an "ignore" with no fields. */
export function strongestSpecChange(lastReconciledSpec: string | undefined, spec: StreamJobSpec): SpecChange {
  return (
    classifySpecChanges(lastReconciledSpec, spec)[0] ?? {
      kind: "ignore",
      fields: [],
      reason: "spec unchanged",
    }
  );
}

/** What the operator stores in status.lastReconciledSpec once it has acted on `spec`. */
export function serialiseSpec(spec: StreamJobSpec): string {
  return JSON.stringify(spec);
}

// Parsed with the current schema, so a default added since the spec was stored is no difference.
function parseLastSpec(text: string): StreamJobSpec | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = parseStreamJobSpec(json);
  return parsed.ok ? parsed.spec : null;
}

function kindOfField(path: string, last: StreamJobSpec, spec: StreamJobSpec): ChangeKind {
  if (path === "suspend") return spec.suspend ? "suspend" : "resume";
  // Clearing the nonce asks for nothing.
  if (path === "savepointNonce")
    return spec.savepointNonce && spec.savepointNonce !== last.savepointNonce ? "savepoint" : "ignore";
  if (path === "parallelism") return "scale";
  if (UPGRADE_FIELDS.some((field) => isUnder(path, field))) return "upgrade";
  if (IGNORED_FIELDS.some((field) => isUnder(path, field))) return "ignore";
  // A field this table does not know yet: redeploying is the safe reading.
  return "upgrade";
}

function isUnder(path: string, field: string): boolean {
  return path === field || path.startsWith(`${field}.`);
}

/** Dotted paths where the two values differ; arrays compare whole (an env list is one field). */
function changedPaths(a: unknown, b: unknown, prefix = ""): string[] {
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => changedPaths(a[key], b[key], prefix === "" ? key : `${prefix}.${key}`));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const CONSEQUENCE: Record<ChangeKind, (spec: StreamJobSpec) => string> = {
  ignore: () => "applied without a redeploy",
  savepoint: () => "taking a savepoint",
  scale: (spec) => `checkpointing, then redeploying with parallelism ${spec.parallelism}`,
  upgrade: () => "taking a savepoint, then redeploying from it",
  suspend: () => "taking a savepoint, then removing the TaskManagers",
  resume: () => "redeploying from the latest savepoint or checkpoint",
  initial: () => "first deployment of the job",
};

function describe(kind: ChangeKind, fields: string[], spec: StreamJobSpec): string {
  return `${fields.join(", ")} changed: ${CONSEQUENCE[kind](spec)}`;
}
