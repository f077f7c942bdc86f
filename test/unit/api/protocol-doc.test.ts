import { readFileSync } from "node:fs";
import { z } from "zod";
import * as protocol from "../../../src/api/protocol.js";

// Every JSON example in docs/protocol.md is preceded by `<!-- schema: Name -->`; each must parse with
// that schema, so the document cannot drift from the code a TaskManager implementer is told to match.
const doc = readFileSync(new URL("../../../docs/protocol.md", import.meta.url), "utf8");
const examples = [...doc.matchAll(/<!-- schema: (\w+) -->\s*```json\n([\s\S]*?)\n```/g)].map((match, i) => ({
  name: `${i + 1}: ${match[1] ?? ""}`,
  schemaName: match[1] ?? "",
  json: match[2] ?? "",
}));

describe("docs/protocol.md", () => {
  it("has an annotated example for every message", () => {
    expect(new Set(examples.map((example) => example.schemaName))).toEqual(
      new Set([
        "ErrorResponse",
        "TriggerCheckpointRequest",
        "TriggerCheckpointAccepted",
        "CheckpointResult",
        "NotifyCompleteRequest",
        "AbortCheckpointRequest",
        "TaskManagerStatus",
        "CheckpointManifest",
        "TaskManagerConfig",
      ]),
    );
    // No example was left without its annotation.
    expect(doc.match(/```json/g)?.length).toBe(examples.length);
  });

  it.each(examples)("example $name matches its schema", ({ schemaName, json }) => {
    const schema: unknown = (protocol as Record<string, unknown>)[schemaName];
    expect(schema).toBeInstanceOf(z.ZodType);
    const result = (schema as z.ZodType).safeParse(JSON.parse(json));
    expect(result.success ? "ok" : protocol.formatZodError(result.error)).toBe("ok");
  });
});
