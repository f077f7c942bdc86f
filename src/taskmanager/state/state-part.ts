// The state part: the object a task writes per checkpoint for the key groups of one stage. Format
// v2 is normative (docs/protocol.md, "State parts"); v1, written before it, is still read
// (state-part-decoder.ts). UTF-8 lines, each ending in "\n", uncompressed:
//
//   {"format":"streamjob-keyed-state","version":2,"stageId":"default","keyGroupRange":{"start":43,"end":85}}
//   {"keyGroup":44}
//   ["seq-7",1532]
//   ["seq-311",1529]
//   {"keyGroup":51}
//   ["seq-12",1530]
//   {"format":"streamjob-keyed-state","version":2,"stageId":"default","keyGroupRange":{"start":43,"end":85},"keyGroups":[[44,105,49,"<sha256>"],[51,154,34,"<sha256>"]]}
//
// A header; per non-empty key group, ascending, a block: its key group line and its entries as
// [key, value]; last, the index: the header's fields plus, per block, [keyGroup, byte offset, byte
// length, sha256 of those bytes]. The ack reports where the index line is and its sha256, so a
// reader that trusts the manifest can fetch the index and then only the blocks it needs, verifying
// each before using it.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { KeyGroupRange } from "../../api/key-groups.js";
import { DEFAULT_STAGE_ID } from "../../api/protocol.js";
import { unwritableValue } from "./i-json.js";
import type { KeyedStateSnapshot } from "./keyed-state.js";

export const STATE_PART_FORMAT = "streamjob-keyed-state";
export const STATE_PART_VERSION = 2;

/** Name of the part below the checkpoint's task prefix, e.g. `kg-43-85`, `join-kg-43-85`. */
export function statePartName(range: KeyGroupRange, stageId = DEFAULT_STAGE_ID): string {
  const name = `kg-${range.start}-${range.end}`;
  return stageId === DEFAULT_STAGE_ID ? name : `${stageId}-${name}`;
}

/** Where the index line is in the part, and the sha256 of its bytes: reported in the ack. */
export interface PartIndexLocation {
  offset: number;
  length: number;
  sha256: string;
}

/** One index row: a key group's block, [keyGroup, offset, length, sha256]. */
export type KeyGroupBlock = [keyGroup: number, offset: number, length: number, sha256: string];

// Blocks are cut into chunks of about this size so the upload sees few, large writes.
const CHUNK_CHARS = 64 * 1024;

/**
 * Streams a snapshot in format v2; it must not be released before the stream ends. A value that
 * cannot be written as the format requires fails the stream, naming the key and the place.
 */
export function encodeStatePart(snapshot: KeyedStateSnapshot, stageId = DEFAULT_STAGE_ID): StatePartStream {
  return new StatePartStream(snapshot, stageId);
}

export class StatePartStream extends Readable {
  private readonly chunks: Generator<Buffer>;
  private index: PartIndexLocation | undefined;

  constructor(snapshot: KeyedStateSnapshot, stageId: string) {
    super();
    this.chunks = this.encode(snapshot, stageId);
  }

  /** Where the index line was written; known once the stream has ended. */
  get indexLocation(): PartIndexLocation {
    if (this.index === undefined) throw new Error("the state part has not been written to its end");
    return this.index;
  }

  override _read(): void {
    try {
      const next = this.chunks.next();
      this.push(next.done === true ? null : next.value);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  private *encode(snapshot: KeyedStateSnapshot, stageId: string): Generator<Buffer> {
    const header = {
      format: STATE_PART_FORMAT,
      version: STATE_PART_VERSION,
      stageId,
      keyGroupRange: snapshot.keyGroupRange,
    };
    let offset = 0;
    const bytesOf = (text: string): Buffer => {
      const bytes = Buffer.from(text, "utf8");
      offset += bytes.length;
      return bytes;
    };
    yield bytesOf(`${JSON.stringify(header)}\n`);
    const blocks: KeyGroupBlock[] = [];
    for (const { keyGroup, entries } of snapshot.keyGroups) {
      const start = offset;
      const hash = createHash("sha256");
      let chunk = `{"keyGroup":${keyGroup}}\n`;
      for (const [key, value] of entries) {
        const problem = key.isWellFormed() ? unwritableValue(value) : "the key holds a lone surrogate";
        if (problem !== undefined) {
          throw new Error(
            `state of key ${JSON.stringify(key)} (key group ${keyGroup}) cannot be written: ${problem}`,
          );
        }
        chunk += `${JSON.stringify([key, value])}\n`;
        if (chunk.length >= CHUNK_CHARS) {
          const bytes = bytesOf(chunk);
          hash.update(bytes);
          yield bytes;
          chunk = "";
        }
      }
      if (chunk !== "") {
        const bytes = bytesOf(chunk);
        hash.update(bytes);
        yield bytes;
      }
      blocks.push([keyGroup, start, offset - start, hash.digest("hex")]);
    }
    const indexOffset = offset;
    const index = bytesOf(`${JSON.stringify({ ...header, keyGroups: blocks })}\n`);
    this.index = {
      offset: indexOffset,
      length: index.length,
      sha256: createHash("sha256").update(index).digest("hex"),
    };
    yield index;
  }
}
