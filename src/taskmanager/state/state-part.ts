// The format of a state part: the object a task writes per checkpoint for its key groups.
//
// UTF-8 newline-delimited JSON, uncompressed (the bytes are hashed and uploaded as they stream):
//
//   {"format":"streamjob-keyed-state","version":1,"keyGroupRange":{"start":43,"end":85}}
//   {"g":44,"k":"seq-7","v":1532}
//   {"g":44,"k":"seq-311","v":1529}
//   {"g":51,"k":"seq-12","v":1530}
//
// The first line is a header naming the inclusive key group range the part covers; every other line
// is one entry: key group `g`, key `k`, JSON value `v`, grouped by ascending key group. A reader can
// therefore take single key groups out of a part (restore with another parallelism keeps only its
// own) without knowing anything else about the writer.
import { Readable } from "node:stream";
import { z } from "zod";
import { formatZodError } from "../../api/protocol.js";
import type { KeyGroupRange } from "../../api/key-groups.js";
import type { JsonValue, KeyedStateSnapshot } from "./keyed-state.js";

export const STATE_PART_FORMAT = "streamjob-keyed-state";
export const STATE_PART_VERSION = 1;

/** Name of the part below the checkpoint's task prefix, e.g. `kg-43-85`. */
export function statePartName(range: KeyGroupRange): string {
  return `kg-${range.start}-${range.end}`;
}

const JsonValueSchema: z.ZodType<JsonValue> = z.json();

const Header = z.object({
  format: z.literal(STATE_PART_FORMAT),
  version: z.literal(STATE_PART_VERSION),
  keyGroupRange: z.object({ start: z.int().nonnegative(), end: z.int().nonnegative() }),
});

const Entry = z.object({ g: z.int().nonnegative(), k: z.string(), v: JsonValueSchema });

// Lines are joined into chunks of about this size so the upload sees few, large writes.
const CHUNK_CHARS = 64 * 1024;

/** Streams the snapshot in the part format; it must not be released before the stream ends. */
export function encodeStatePart(snapshot: KeyedStateSnapshot): Readable {
  return Readable.from(statePartChunks(snapshot), { objectMode: false });
}

function* statePartChunks(snapshot: KeyedStateSnapshot): Generator<Buffer> {
  let chunk = `${JSON.stringify({ format: STATE_PART_FORMAT, version: STATE_PART_VERSION, keyGroupRange: snapshot.keyGroupRange })}\n`;
  for (const { keyGroup, entries } of snapshot.keyGroups) {
    for (const [key, value] of entries) {
      chunk += `${JSON.stringify({ g: keyGroup, k: key, v: value })}\n`;
      if (chunk.length >= CHUNK_CHARS) {
        yield Buffer.from(chunk, "utf8");
        chunk = "";
      }
    }
  }
  if (chunk !== "") yield Buffer.from(chunk, "utf8");
}

export interface StateEntry {
  keyGroup: number;
  key: string;
  value: JsonValue;
}

/**
 * The entries of `bytes` whose key group lies in `wanted`. Throws, naming `objectName` and the line,
 * when the part is not in this format or an entry lies outside the range its header states.
 */
export function* decodeStatePart(
  bytes: Buffer,
  wanted: KeyGroupRange,
  objectName: string,
): Generator<StateEntry> {
  const lines = bytes.toString("utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  const [headerLine, ...entryLines] = lines;
  if (headerLine === undefined)
    throw new Error(`${objectName}: empty, expected a ${STATE_PART_FORMAT} header`);
  const covered = parseLine(headerLine, Header, objectName, 1).keyGroupRange;
  for (const [i, line] of entryLines.entries()) {
    const lineNumber = i + 2;
    const entry = parseLine(line, Entry, objectName, lineNumber);
    if (entry.g < covered.start || entry.g > covered.end) {
      throw new Error(
        `${objectName} line ${lineNumber}: key group ${entry.g} outside the part's range ${covered.start}-${covered.end}`,
      );
    }
    if (entry.g >= wanted.start && entry.g <= wanted.end) {
      yield { keyGroup: entry.g, key: entry.k, value: entry.v };
    }
  }
}

function parseLine<T extends z.ZodType>(
  line: string,
  schema: T,
  objectName: string,
  lineNumber: number,
): z.infer<T> {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new Error(`${objectName} line ${lineNumber}: not JSON`);
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new Error(`${objectName} line ${lineNumber}: ${formatZodError(result.error)}`);
  return result.data;
}
