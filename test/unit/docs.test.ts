// Keeps the StreamJobs the docs show true to the CRD: a user who copies one gets a job the API server
// accepts. (test/integration/crd.test.ts sends the same StreamJobs to the API server.)
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  crdSchema,
  documentedStreamJobs,
  repoRoot,
  streamJobProblems,
  streamJobsInMarkdown,
} from "./support/doc-streamjobs.js";

const schema = crdSchema();
const documented = documentedStreamJobs();

describe("StreamJobs in README.md, docs/*.md and manifests/examples", () => {
  it("are found where the docs show them", () => {
    const files = new Set(documented.map((job) => job.where.replace(/:\d+$/, "")));
    expect(files).toEqual(
      new Set([
        "README.md",
        "docs/builtin-jobs.md",
        "docs/streamjob-reference.md",
        "docs/writing-a-job.md",
        "manifests/examples/kafka-orders.yaml",
        "manifests/examples/kafka-sequence.yaml",
        "manifests/examples/keyed-sequence.yaml",
        "manifests/examples/sequence.yaml",
        "manifests/examples/wordcount.yaml",
      ]),
    );
    // The reference's full example and its `kubectl patch` spec changes.
    expect(
      documented.filter((job) => job.where.startsWith("docs/streamjob-reference.md")).length,
    ).toBeGreaterThan(4);
  });

  it.each(documented.map((job) => [job.where, job]))("%s is a StreamJob the CRD accepts", (_, job) => {
    expect(streamJobProblems(job.resource, schema)).toEqual([]);
  });
});

describe("the check", () => {
  const guide = readFileSync(path.join(repoRoot, "docs", "writing-a-job.md"), "utf8");

  it("refuses a snippet that names spec.program instead of spec.job", () => {
    const doctored = guide.replace(/^( +)job:\n( +name: \/jobs\/)/m, "$1program:\n$2");
    expect(doctored).not.toBe(guide);
    const [job, ...rest] = streamJobsInMarkdown(doctored, "doctored.md");
    expect(rest).toEqual([]);
    expect(streamJobProblems(job!.resource, schema)).toEqual(["spec.program: unknown field"]);
  });

  it("refuses a whole StreamJob without spec.job, a bad value, a wrong kind and a bad patch", () => {
    const markdown = [
      "```yaml",
      "apiVersion: streamjob.dev/v1alpha1",
      "kind: StreamJob",
      "metadata: { name: a }",
      "spec: { image: x, parallelism: 0, checkpoint: { storage: { bucket: streamjob } } }",
      "```",
      "",
      "    ```yaml",
      "    spec: { checkpoint: { interval: 10 seconds } }",
      "    ```",
      "",
      `kubectl patch sj a --type merge -p '{"spec":{"restart":{"maxRestart":3}}}'`,
    ].join("\n");
    expect(
      streamJobsInMarkdown(markdown, "doctored.md").map((job) => [
        job.where,
        streamJobProblems(job.resource, schema),
      ]),
    ).toEqual([
      [
        "doctored.md:1",
        [
          "spec.parallelism: Too small: expected number to be >=1",
          "spec.job: expected object, received undefined",
        ],
      ],
      ["doctored.md:8", [expect.stringMatching(/^spec\.checkpoint\.interval: expected a duration/)]],
      ["doctored.md:12", ["spec.restart.maxRestart: unknown field"]],
    ]);
    expect(streamJobProblems({ apiVersion: "v1", kind: "Job", spec: {} }, schema)).toEqual(
      expect.arrayContaining(["apiVersion: expected streamjob.dev/v1alpha1", "kind: expected StreamJob"]),
    );
  });
});
