// Keeps the README's commands true: every npm script it runs exists, every file it links to or
// applies exists. (The commands that need a cluster are run by the demo and the end-to-end tests.)
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");
const scripts = Object.keys(
  (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> })
    .scripts,
);

describe("README", () => {
  it("runs only npm scripts that exist", () => {
    const used = [...readme.matchAll(/npm (?:run(?: -s)?|test)\s*([\w:-]*)/g)].map((m) => m[1] || "test");
    const named = [...readme.matchAll(/`(bench:\w+|cluster:\w+)`/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(5);
    expect([...used, ...named].filter((script) => !scripts.includes(script))).toEqual([]);
  });

  it("links to and applies only files that exist", () => {
    const links = [...readme.matchAll(/\]\((?!https?:|#)([^)]+)\)/g)].map((m) => m[1]!);
    const applied = [...readme.matchAll(/kubectl apply (?:--server-side )?-f ([^\s`),]+)/g)].map(
      (m) => m[1]!,
    );
    const charts = [...readme.matchAll(/helm install \S+ (\S+)/g)].map((m) => m[1]!);
    const all = [...links, ...applied, ...charts];
    expect(all.length).toBeGreaterThan(10);
    expect(all.filter((file) => !existsSync(path.join(root, file)))).toEqual([]);
  });

  it("states the two one-line commands, and .ci/run runs the test one", () => {
    expect(readme).toContain("npm ci && npm run demo");
    expect(readme).toContain("npm ci && npm test");
    expect(readFileSync(path.join(root, ".ci", "run"), "utf8")).toMatch(/^npm ci && npm test$/m);
  });
});
