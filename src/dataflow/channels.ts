// The two ends of one channel of an exchange, with Flink-style credit-based flow control: the
// receiver announces how many data frames (buffers) it can take, the sender sends a buffer only
// against a credit, and the receiver returns a credit when it has processed a buffer. The
// connection's socket is therefore always read to its end: a channel held back during alignment
// stops getting credits, never the channels that share its connection.
//
// Memory bound per channel: the receiver holds at most INPUT_CREDITS buffers; the sender queues at
// most OUTPUT_BACKLOG buffers before its producer waits (plus what one batch of the producer adds);
// a buffer is cut once it holds as many records as made about BUFFER_BYTES in the channel's previous
// buffer, and a buffer over the frame limit is cut into frames of about BUFFER_BYTES. With P TaskManagers and S exchanges a TaskManager holds at most about
// S × P × (INPUT_CREDITS + OUTPUT_BACKLOG + 1) buffers: 2 exchanges × 4 TaskManagers × 7 × 32 KiB ≈ 1.8 MiB.
import type { JsonValue } from "../taskmanager/job/job-definition.js";
import { DATA_FRAME_OVERHEAD, encodeBarrier, encodeCredit, encodeData, MAX_FRAME_BYTES } from "./frames.js";

export const BUFFER_BYTES = 32 * 1024;
export const INPUT_CREDITS = 4;
export const OUTPUT_BACKLOG = 2;

// Records in a channel's first buffer, before their size is known, and in any buffer.
const FIRST_BUFFER_RECORDS = 64;
const MAX_RECORDS_PER_BUFFER = 8192;

/**
 * Records whose buffer came out over the frame limit, cut into frames of about BUFFER_BYTES each; a
 * record too large for a frame of its own is refused, naming its key.
 */
function splitIntoFrames(records: ReadonlyArray<[string, JsonValue]>): Buffer[] {
  const frames: Buffer[] = [];
  let texts: string[] = [];
  let bytes = 2;
  const cut = () => {
    if (texts.length > 0) frames.push(Buffer.from(`[${texts.join(",")}]`, "utf8"));
    texts = [];
    bytes = 2;
  };
  for (const record of records) {
    const text = JSON.stringify(record);
    const size = Buffer.byteLength(text, "utf8") + 1;
    if (size + 2 + DATA_FRAME_OVERHEAD > MAX_FRAME_BYTES) {
      throw new RangeError(
        `a record of key ${JSON.stringify(record[0])} is too large to send (over ${MAX_FRAME_BYTES} bytes as JSON)`,
      );
    }
    if (bytes + size > BUFFER_BYTES) cut();
    texts.push(text);
    bytes += size;
  }
  cut();
  return frames;
}

/** Where a channel's frames go: a socket, or the receiving end in this process. */
export interface FrameLink {
  send(frame: Buffer): void;
}

type Queued = { data: Buffer } | { barrier: number };

/** The sending end: cuts records into buffers and sends them as credits allow. */
export class OutputChannel {
  private credits = 0;
  private readonly queue: Queued[] = [];
  private queuedData = 0;
  private records: Array<[string, JsonValue]> = [];
  private recordsPerBuffer = FIRST_BUFFER_RECORDS;
  /** Called when a credit arrives and the backlog went below OUTPUT_BACKLOG. */
  onWritable: () => void = () => undefined;

  constructor(
    readonly channel: number,
    readonly target: number,
    private readonly link: FrameLink,
  ) {}

  /** Buffers waiting for a credit: the producer waits while it is OUTPUT_BACKLOG or more. */
  get backlog(): number {
    return this.queuedData;
  }

  add(key: string, value: JsonValue): void {
    this.records.push([key, value]);
    if (this.records.length >= this.recordsPerBuffer) this.flush();
  }

  /**
   * Cuts the records added so far into a buffer, however few. The buffer is encoded in one
   * JSON.stringify (a call per record cost a quarter of an exchange's CPU), and the next buffer's
   * record count adapts so that buffers hold about BUFFER_BYTES.
   */
  flush(): void {
    if (this.records.length === 0) return;
    const records = this.records;
    this.records = [];
    const payload = Buffer.from(JSON.stringify(records), "utf8");
    this.recordsPerBuffer = Math.max(
      1,
      Math.min(MAX_RECORDS_PER_BUFFER, Math.floor((BUFFER_BYTES * records.length) / payload.length)),
    );
    if (payload.length + DATA_FRAME_OVERHEAD <= MAX_FRAME_BYTES) this.enqueue(payload);
    else for (const part of splitIntoFrames(records)) this.enqueue(part);
  }

  private enqueue(payload: Buffer): void {
    this.queue.push({ data: payload });
    this.queuedData++;
    this.pump();
  }

  /** The barrier follows every record added before it. */
  barrier(checkpointId: number): void {
    this.flush();
    this.queue.push({ barrier: checkpointId });
    this.pump();
  }

  grant(count: number): void {
    this.credits += count;
    const before = this.queuedData;
    this.pump();
    if (before >= OUTPUT_BACKLOG && this.queuedData < OUTPUT_BACKLOG) this.onWritable();
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if ("data" in head) {
        if (this.credits === 0) return;
        this.credits--;
        this.queuedData--;
        this.link.send(encodeData(this.channel, head.data));
      } else {
        this.link.send(encodeBarrier(this.channel, head.barrier));
      }
      this.queue.shift();
    }
  }
}

/** The receiving end: buffers and barriers in arrival order, and the credits owed to the sender. */
export class InputChannel {
  private readonly queue: Queued[] = [];
  private outstanding = 0;
  private granted = false;

  constructor(
    readonly channel: number,
    readonly source: number,
    private readonly creditLink: FrameLink,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /** Gives the sender its first credits: once the stage can process. */
  open(): void {
    if (this.granted) return;
    this.granted = true;
    this.outstanding = INPUT_CREDITS;
    this.creditLink.send(encodeCredit(this.channel, INPUT_CREDITS));
  }

  /** A data frame arrived; false when the sender had no credit for it (a protocol error). */
  receiveData(payload: Buffer): boolean {
    if (this.outstanding === 0) return false;
    this.outstanding--;
    this.queue.push({ data: payload });
    return true;
  }

  receiveBarrier(checkpointId: number): void {
    this.queue.push({ barrier: checkpointId });
  }

  peek(): Queued | undefined {
    return this.queue[0];
  }

  /** Removes the head; a processed buffer earns the sender a new credit. */
  take(): void {
    const head = this.queue.shift();
    if (head !== undefined && "data" in head) {
      this.outstanding++;
      this.creditLink.send(encodeCredit(this.channel, 1));
    }
  }
}
