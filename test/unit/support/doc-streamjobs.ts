// The StreamJobs users copy from the docs: every fenced yaml block of README.md and docs/*.md that is
// a StreamJob or a piece of one's spec, every `kubectl patch sj … --type merge` spec patch, and the
// example manifests. Each becomes a whole StreamJob (a piece is merged onto a minimal spec, as the
// API server merges a patch onto the stored job), so it can be checked against the CRD: by
// test/unit/docs.test.ts with the CRD's fields and the zod twin, by test/integration/crd.test.ts with
// a server-side dry run.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import {
  API_VERSION,
  KIND,
  parseStreamJobSpec,
  type StreamJobSpecInput,
} from "../../../src/api/streamjob.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The least a spec must say; everything else has a default. */
export const minimalSpec: StreamJobSpecInput = {
  image: "example/streamjob-taskmanager",
  job: { name: "sequence" },
  checkpoint: { storage: { bucket: "streamjob" } },
};

export interface DocStreamJob {
  /** `file:line` of the snippet. */
  where: string;
  resource: { apiVersion?: unknown; kind?: unknown; metadata?: unknown; spec?: unknown };
}

/** Markdown files whose StreamJob snippets must stay true: README.md and docs/*.md, relative to the root. */
export function documentationFiles(): string[] {
  const docs = readdirSync(path.join(repoRoot, "docs")).filter((name) => name.endsWith(".md"));
  return ["README.md", ...docs.sort().map((name) => path.join("docs", name))];
}

/** The StreamJob snippets of one markdown text, `file` naming it in `where`. */
export function streamJobsInMarkdown(markdown: string, file: string): DocStreamJob[] {
  const found: DocStreamJob[] = [];
  const lineOf = (index: number) => `${file}:${markdown.slice(0, index).split("\n").length}`;
  for (const block of markdown.matchAll(/^( *)```yaml\n([\s\S]*?)^\1```$/gm)) {
    const indent = block[1] ?? "";
    const yaml = (block[2] ?? "").replace(new RegExp(`^${indent}`, "gm"), "");
    for (const document of parseAllDocuments(yaml)) {
      if (document.errors.length > 0)
        throw new Error(`${lineOf(block.index)}: ${document.errors[0]?.message}`);
      const object: unknown = document.toJS();
      if (!isRecord(object)) continue;
      if (object.kind === KIND) found.push({ where: lineOf(block.index), resource: object });
      else if (object.kind === undefined && "spec" in object)
        found.push({ where: lineOf(block.index), resource: patchedMinimalJob({ spec: object.spec }) });
    }
  }
  for (const command of markdown.matchAll(
    /kubectl patch (?:sj|streamjobs?) \S+ --type merge -p '([^']+)'/g,
  )) {
    found.push({ where: lineOf(command.index), resource: patchedMinimalJob(JSON.parse(command[1] ?? "")) });
  }
  return found;
}

/** The StreamJobs of README.md, docs/*.md and manifests/examples/. */
export function documentedStreamJobs(): DocStreamJob[] {
  const inDocs = documentationFiles().flatMap((file) =>
    streamJobsInMarkdown(readFileSync(path.join(repoRoot, file), "utf8"), file),
  );
  const examples = readdirSync(path.join(repoRoot, "manifests", "examples"))
    .filter((name) => name.endsWith(".yaml"))
    .map((name) => path.join("manifests", "examples", name))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(path.join(repoRoot, file), "utf8"))
        .map((document) => document.toJS() as unknown)
        .filter((object) => isRecord(object) && object.kind === KIND)
        .map((resource) => ({ where: file, resource: resource as DocStreamJob["resource"] })),
    );
  return [...inDocs, ...examples];
}

type Schema = { [keyword: string]: unknown };

/** The CRD's openAPIV3Schema (crds/streamjob.yaml has one version). */
export function crdSchema(): Schema {
  const crd = parse(readFileSync(path.join(repoRoot, "crds", "streamjob.yaml"), "utf8")) as {
    spec: { versions: Array<{ schema: { openAPIV3Schema: Schema } }> };
  };
  const version = crd.spec.versions[0];
  if (version === undefined) throw new Error("the CRD has no version");
  return version.schema.openAPIV3Schema;
}

/**
 * What the API server would refuse in a StreamJob: the wrong apiVersion or kind, fields the CRD does
 * not have (kubectl's strict field validation), and every value the zod twin of the CRD rejects.
 */
export function streamJobProblems(resource: DocStreamJob["resource"], schema: Schema): string[] {
  const problems: string[] = [];
  if (resource.apiVersion !== API_VERSION) problems.push(`apiVersion: expected ${API_VERSION}`);
  if (resource.kind !== KIND) problems.push(`kind: expected ${KIND}`);
  problems.push(...unknownFields(resource, schema, ""));
  const parsed = parseStreamJobSpec(resource.spec);
  if (!parsed.ok) problems.push(...parsed.error.split("; ").map((issue) => `spec.${issue}`));
  return problems;
}

function unknownFields(value: unknown, schema: Schema, at: string): string[] {
  if (schema["x-kubernetes-preserve-unknown-fields"] === true) return [];
  // The API server validates metadata itself; the CRD may only say it is an object.
  if (at === "metadata") return [];
  if (Array.isArray(value) && isRecord(schema.items))
    return value.flatMap((item, i) => unknownFields(item, schema.items as Schema, `${at}[${i}]`));
  if (!isRecord(value)) return [];
  const properties = isRecord(schema.properties) ? schema.properties : {};
  const additional = isRecord(schema.additionalProperties) ? schema.additionalProperties : undefined;
  return Object.entries(value).flatMap(([name, field]) => {
    const where = at === "" ? name : `${at}.${name}`;
    const fieldSchema = properties[name] ?? additional;
    return isRecord(fieldSchema) ? unknownFields(field, fieldSchema, where) : [`${where}: unknown field`];
  });
}

/** A StreamJob with minimalSpec, changed by an RFC 7386 merge patch (what `kubectl patch --type merge` sends). */
function patchedMinimalJob(patch: unknown): DocStreamJob["resource"] {
  const job = { apiVersion: API_VERSION, kind: KIND, metadata: { name: "from-the-docs" }, spec: minimalSpec };
  return mergePatch(job, patch) as DocStreamJob["resource"];
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return patch;
  const merged: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = mergePatch(merged[key], value);
  }
  return merged;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
