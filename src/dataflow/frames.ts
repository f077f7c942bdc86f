// The exchange's wire format (docs/protocol.md, "The exchange"): after the HTTP upgrade, a stream of
// frames in both directions, each `u32 length` (of what follows, big-endian) `u8 type` then the
// type's body. Data and barriers flow from sender to receiver, credits back. Every body starts with
// the u16 channel (the index of the keyed stage the exchange feeds), so one connection carries every
// exchange between two TaskManagers.
export const FrameType = {
  /** u16 channel, then a JSON array of [key, value] records; spends one credit. */
  data: 0x01,
  /** u16 channel, then JSON {"checkpointId": n}. Needs no credit and never overtakes data. */
  barrier: 0x02,
  /** u16 channel, u32 count: the receiver can take `count` more data frames on that channel. */
  credit: 0x03,
} as const;

/**
 * Types in this range are control frames a receiver that does not know them MUST ignore: how
 * watermarks and other time signals are added without breaking older peers (docs/protocol.md).
 */
export const IGNORABLE_CONTROL_TYPES = { first: 0x40, last: 0x7f } as const;

/** The largest frame accepted (its length field): buffers are cut well below it (BUFFER_BYTES). */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** What a data frame's length counts besides its payload: the type and the channel. */
export const DATA_FRAME_OVERHEAD = 3;

export type Frame =
  | { type: "data"; channel: number; payload: Buffer }
  | { type: "barrier"; channel: number; checkpointId: number }
  | { type: "credit"; channel: number; count: number }
  | { type: "ignored"; code: number };

export class ExchangeProtocolError extends Error {}

export function encodeData(channel: number, payload: Buffer): Buffer {
  const header = Buffer.allocUnsafe(7);
  header.writeUInt32BE(payload.length + 3, 0);
  header.writeUInt8(FrameType.data, 4);
  header.writeUInt16BE(channel, 5);
  return Buffer.concat([header, payload]);
}

export function encodeBarrier(channel: number, checkpointId: number): Buffer {
  const body = Buffer.from(JSON.stringify({ checkpointId }), "utf8");
  const frame = Buffer.allocUnsafe(7 + body.length);
  frame.writeUInt32BE(body.length + 3, 0);
  frame.writeUInt8(FrameType.barrier, 4);
  frame.writeUInt16BE(channel, 5);
  body.copy(frame, 7);
  return frame;
}

export function encodeCredit(channel: number, count: number): Buffer {
  const frame = Buffer.allocUnsafe(11);
  frame.writeUInt32BE(7, 0);
  frame.writeUInt8(FrameType.credit, 4);
  frame.writeUInt16BE(channel, 5);
  frame.writeUInt32BE(count, 7);
  return frame;
}

/** Cuts a byte stream into frames; throws ExchangeProtocolError on anything the protocol forbids. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds bytes and returns the frames they complete. */
  push(bytes: Buffer): Frame[] {
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length < 1 || length > MAX_FRAME_BYTES) {
        throw new ExchangeProtocolError(`frame length ${length} is not within 1-${MAX_FRAME_BYTES}`);
      }
      if (this.buffered < 4 + length) break;
      const frame = this.take(4 + length).subarray(4);
      frames.push(decodeFrame(frame));
    }
    return frames;
  }

  private peek(count: number): Buffer {
    if (this.chunks[0]!.length < count) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(count: number): Buffer {
    const first = this.peek(count);
    const taken = first.subarray(0, count);
    if (first.length === count) this.chunks.shift();
    else this.chunks[0] = first.subarray(count);
    this.buffered -= count;
    return taken;
  }
}

function decodeFrame(frame: Buffer): Frame {
  const code = frame.readUInt8(0);
  if (code >= IGNORABLE_CONTROL_TYPES.first && code <= IGNORABLE_CONTROL_TYPES.last) {
    return { type: "ignored", code };
  }
  if (frame.length < 3) throw new ExchangeProtocolError(`frame type ${code}: no channel`);
  const channel = frame.readUInt16BE(1);
  switch (code) {
    case FrameType.data:
      return { type: "data", channel, payload: frame.subarray(3) };
    case FrameType.barrier: {
      let body: unknown;
      try {
        body = JSON.parse(frame.subarray(3).toString("utf8"));
      } catch {
        throw new ExchangeProtocolError("barrier: body is not JSON");
      }
      const checkpointId = (body as { checkpointId?: unknown } | null)?.checkpointId;
      if (!Number.isSafeInteger(checkpointId) || (checkpointId as number) < 1) {
        throw new ExchangeProtocolError("barrier: checkpointId is not a positive integer");
      }
      return { type: "barrier", channel, checkpointId: checkpointId as number };
    }
    case FrameType.credit:
      if (frame.length !== 7) throw new ExchangeProtocolError("credit: body is not 6 bytes");
      return { type: "credit", channel, count: frame.readUInt32BE(3) };
    default:
      throw new ExchangeProtocolError(`unknown frame type 0x${code.toString(16).padStart(2, "0")}`);
  }
}
