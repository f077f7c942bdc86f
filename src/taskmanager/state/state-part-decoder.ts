// The reference reader of state parts (docs/protocol.md, "State parts"): format v2, and v1 as
// TaskManagers wrote it before v2. It refuses whatever the format forbids, naming the object and the
// byte offset. Two ways in:
// - StatePartLineDecoder reads a whole part line by line (the caller verifies the part's sha256
//   before it uses any entry): v1 parts, and v2 parts whose ack did not report an index;
// - verifiedIndex + decodeBlock read the index and single key groups' blocks (ranged reads), each
//   checked against a digest that leads back to the manifest before it is decoded.
import { createHash, type Hash } from "node:crypto";
import { z } from "zod";
import { keyGroupForKey, type KeyGroupRange } from "../../api/key-groups.js";
import { formatZodError, Sha256Hex, StageId } from "../../api/protocol.js";
import { duplicateMemberName, forbiddenValue } from "./i-json.js";
import type { JsonValue } from "./keyed-state.js";
import { STATE_PART_FORMAT, type KeyGroupBlock, type PartIndexLocation } from "./state-part.js";

export interface StateEntry {
  keyGroup: number;
  key: string;
  value: JsonValue;
}

/** What the manifest says about a part, and what the reader wants from it. */
export interface PartExpectation {
  /** Names the part in errors, e.g. `s3://bucket/key`. */
  objectName: string;
  keyGroupRange: KeyGroupRange;
  stageId: string;
  /** The key groups to return entries of; the others are checked and skipped. */
  wanted: KeyGroupRange;
  /** When given, every key must lie in the key group it is stored under. */
  maxParallelism?: number;
}

const KeyGroup = z.int().nonnegative();
const KeyGroupRangeFields = z.object({ start: KeyGroup, end: KeyGroup });

const HeaderV1 = z.object({
  format: z.literal(STATE_PART_FORMAT),
  version: z.literal(1),
  keyGroupRange: KeyGroupRangeFields,
});
const HeaderV2 = z.object({
  format: z.literal(STATE_PART_FORMAT),
  version: z.literal(2),
  stageId: StageId,
  keyGroupRange: KeyGroupRangeFields,
});
const Header = z.discriminatedUnion("version", [HeaderV1, HeaderV2]);
const IndexV2 = HeaderV2.extend({
  keyGroups: z.array(z.tuple([KeyGroup, z.int().positive(), z.int().positive(), Sha256Hex])),
});
type IndexV2 = z.infer<typeof IndexV2>;
const BlockLine = z.object({ keyGroup: KeyGroup });
const EntryV1 = z.object({ g: KeyGroup, k: z.string(), v: z.json() });

class PartFormatError extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function fail(expect: PartExpectation, offset: number, message: string): never {
  throw new PartFormatError(`${expect.objectName} at byte ${offset}: ${message}`);
}

/** Parses one line; in v2 also refuses duplicate member names and values outside I-JSON. */
function parseLine(line: Buffer, offset: number, expect: PartExpectation, version: 1 | 2): unknown {
  let text: string;
  try {
    text = version === 2 ? utf8.decode(line) : line.toString("utf8");
  } catch {
    fail(expect, offset, "not UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    fail(expect, offset, "not JSON");
  }
  if (version === 2) {
    const duplicate = duplicateMemberName(text);
    if (duplicate !== undefined)
      fail(expect, offset, `member name ${JSON.stringify(duplicate)} occurs twice`);
    const problem = forbiddenValue(json);
    if (problem !== undefined) fail(expect, offset, problem);
  }
  return json;
}

function parsed<T extends z.ZodType>(
  schema: T,
  json: unknown,
  offset: number,
  expect: PartExpectation,
  what: string,
): z.infer<T> {
  const result = schema.safeParse(json);
  if (!result.success) fail(expect, offset, `invalid ${what}: ${formatZodError(result.error)}`);
  return result.data;
}

function checkRangeAndStage(
  found: { keyGroupRange: KeyGroupRange; stageId?: string },
  offset: number,
  expect: PartExpectation,
  what: string,
): void {
  const { start, end } = found.keyGroupRange;
  if (start !== expect.keyGroupRange.start || end !== expect.keyGroupRange.end) {
    fail(
      expect,
      offset,
      `${what} states key groups ${start}-${end}, the manifest ${expect.keyGroupRange.start}-${expect.keyGroupRange.end}`,
    );
  }
  if (found.stageId !== undefined && found.stageId !== expect.stageId) {
    fail(
      expect,
      offset,
      `${what} states stage ${JSON.stringify(found.stageId)}, the manifest ${JSON.stringify(expect.stageId)}`,
    );
  }
}

function entryOf(json: unknown, keyGroup: number, offset: number, expect: PartExpectation): StateEntry {
  if (!Array.isArray(json) || json.length !== 2 || typeof json[0] !== "string") {
    fail(expect, offset, "expected an entry [key, value]");
  }
  const key = json[0] as string;
  if (expect.maxParallelism !== undefined && keyGroupForKey(key, expect.maxParallelism) !== keyGroup) {
    fail(expect, offset, `key ${JSON.stringify(key)} does not belong to key group ${keyGroup}`);
  }
  return { keyGroup, key, value: json[1] as JsonValue };
}

function isWanted(keyGroup: number, expect: PartExpectation): boolean {
  return keyGroup >= expect.wanted.start && keyGroup <= expect.wanted.end;
}

interface OpenBlock {
  keyGroup: number;
  offset: number;
  hash: Hash;
}

/**
 * Decodes a whole part, v1 or v2, one line at a time (without its "\n"), returning the wanted
 * entries; `end` checks that the part was complete.
 */
export class StatePartLineDecoder {
  private version: 1 | 2 | undefined;
  private offset = 0;
  private previousKeyGroup = -1;
  private block: OpenBlock | undefined;
  private readonly blocks: KeyGroupBlock[] = [];
  private indexRead = false;

  constructor(private readonly expect: PartExpectation) {}

  line(line: Buffer): StateEntry | undefined {
    const at = this.offset;
    this.offset += line.length + 1;
    if (this.version === undefined) {
      const header = parsed(
        Header,
        parseLine(line, at, this.expect, 1),
        at,
        this.expect,
        `${STATE_PART_FORMAT} header`,
      );
      checkRangeAndStage(header, at, this.expect, "the header");
      if (header.version === 2 && header.stageId === undefined) fail(this.expect, at, "no stageId");
      this.version = header.version;
      return undefined;
    }
    return this.version === 1 ? this.lineV1(line, at) : this.lineV2(line, at);
  }

  /** Throws unless the part ended where the format says it ends. */
  end(): void {
    if (this.version === undefined) fail(this.expect, 0, `empty, expected a ${STATE_PART_FORMAT} header`);
    if (this.version === 2 && !this.indexRead) fail(this.expect, this.offset, "ends without its index line");
  }

  private lineV1(line: Buffer, at: number): StateEntry | undefined {
    const entry = parsed(EntryV1, parseLine(line, at, this.expect, 1), at, this.expect, "entry");
    this.checkKeyGroup(entry.g, at, false);
    return isWanted(entry.g, this.expect) ? entryOf([entry.k, entry.v], entry.g, at, this.expect) : undefined;
  }

  private lineV2(line: Buffer, at: number): StateEntry | undefined {
    if (this.indexRead) fail(this.expect, at, "a line after the index line");
    const json = parseLine(line, at, this.expect, 2);
    if (Array.isArray(json)) {
      if (this.block === undefined) fail(this.expect, at, "an entry before the first key group line");
      this.hashLine(line);
      return isWanted(this.block.keyGroup, this.expect)
        ? entryOf(json, this.block.keyGroup, at, this.expect)
        : undefined;
    }
    this.closeBlock(at);
    if (typeof json === "object" && json !== null && "keyGroups" in json) {
      const index = parsed(IndexV2, json, at, this.expect, "index");
      checkRangeAndStage(index, at, this.expect, "the index");
      if (JSON.stringify(index.keyGroups) !== JSON.stringify(this.blocks)) {
        fail(
          this.expect,
          at,
          `the index does not describe the part's blocks: it lists ${JSON.stringify(index.keyGroups)}, the part holds ${JSON.stringify(this.blocks)}`,
        );
      }
      this.indexRead = true;
      return undefined;
    }
    const { keyGroup } = parsed(BlockLine, json, at, this.expect, "key group line");
    this.checkKeyGroup(keyGroup, at, true);
    this.block = { keyGroup, offset: at, hash: createHash("sha256") };
    this.hashLine(line);
    return undefined;
  }

  private hashLine(line: Buffer): void {
    this.block!.hash.update(line).update("\n");
  }

  private closeBlock(at: number): void {
    if (this.block === undefined) return;
    const { keyGroup, offset, hash } = this.block;
    this.blocks.push([keyGroup, offset, at - offset, hash.digest("hex")]);
    this.block = undefined;
  }

  private checkKeyGroup(keyGroup: number, at: number, strictlyAscending: boolean): void {
    const { start, end } = this.expect.keyGroupRange;
    if (keyGroup < start || keyGroup > end)
      fail(this.expect, at, `key group ${keyGroup} outside the part's range ${start}-${end}`);
    if (keyGroup < this.previousKeyGroup || (strictlyAscending && keyGroup === this.previousKeyGroup)) {
      fail(
        this.expect,
        at,
        `key group ${keyGroup} after key group ${this.previousKeyGroup}: key groups must ascend`,
      );
    }
    this.previousKeyGroup = keyGroup;
  }
}

/** Splits bytes into lines without their "\n"; the last line must end in one. */
export function* linesOf(bytes: Buffer, expect: PartExpectation, firstOffset = 0): Generator<Buffer> {
  let start = 0;
  while (start < bytes.length) {
    const newline = bytes.indexOf(0x0a, start);
    if (newline === -1) fail(expect, firstOffset + start, 'the last line does not end in "\\n"');
    yield bytes.subarray(start, newline);
    start = newline + 1;
  }
}

/** The entries of a whole part in memory (tests and tools; restore streams). */
export function decodeStatePart(bytes: Buffer, expect: PartExpectation): StateEntry[] {
  const decoder = new StatePartLineDecoder(expect);
  const entries: StateEntry[] = [];
  for (const line of linesOf(bytes, expect)) {
    const entry = decoder.line(line);
    if (entry !== undefined) entries.push(entry);
  }
  decoder.end();
  return entries;
}

function sha256Of(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The part's index, from the bytes at `location` (from the manifest), once their length and sha256
 * match it; the blocks must be contiguous, ascending and end where the index begins.
 */
export function verifiedIndex(bytes: Buffer, location: PartIndexLocation, expect: PartExpectation): IndexV2 {
  const at = location.offset;
  if (bytes.length !== location.length)
    fail(expect, at, `index range has ${bytes.length} bytes, the manifest says ${location.length}`);
  const sha256 = sha256Of(bytes);
  if (sha256 !== location.sha256)
    fail(expect, at, `index sha256 mismatch: expected ${location.sha256}, got ${sha256}`);
  const lines = [...linesOf(bytes, expect, at)];
  if (lines.length !== 1) fail(expect, at, "the index range is not one line");
  const index = parsed(IndexV2, parseLine(lines[0]!, at, expect, 2), at, expect, "index");
  checkRangeAndStage(index, at, expect, "the index");
  index.keyGroups.forEach(([keyGroup, offset, length], i) => {
    const { start, end } = expect.keyGroupRange;
    if (keyGroup < start || keyGroup > end)
      fail(expect, at, `index lists key group ${keyGroup}, outside the part's range ${start}-${end}`);
    const next = index.keyGroups[i + 1];
    if (next !== undefined && next[0] <= keyGroup)
      fail(expect, at, `index lists key group ${next[0]} after ${keyGroup}: key groups must ascend`);
    if (offset + length !== (next?.[1] ?? location.offset)) {
      fail(
        expect,
        at,
        `index: the block of key group ${keyGroup} (${offset}+${length}) does not end where the next begins`,
      );
    }
  });
  return index;
}

/** The entries of one key group's block, once its bytes match the index row's length and sha256. */
export function decodeBlock(
  bytes: Buffer,
  [keyGroup, offset, length, sha256]: KeyGroupBlock,
  expect: PartExpectation,
): StateEntry[] {
  if (bytes.length !== length)
    fail(
      expect,
      offset,
      `block of key group ${keyGroup} has ${bytes.length} bytes, the index says ${length}`,
    );
  const actual = sha256Of(bytes);
  if (actual !== sha256)
    fail(expect, offset, `block of key group ${keyGroup} sha256 mismatch: expected ${sha256}, got ${actual}`);
  const entries: StateEntry[] = [];
  let at = offset;
  for (const line of linesOf(bytes, expect, offset)) {
    const json = parseLine(line, at, expect, 2);
    if (at === offset) {
      const found = parsed(BlockLine, json, at, expect, "key group line").keyGroup;
      if (found !== keyGroup) fail(expect, at, `block states key group ${found}, the index ${keyGroup}`);
    } else {
      entries.push(entryOf(json, keyGroup, at, expect));
    }
    at += line.length + 1;
  }
  return entries;
}
