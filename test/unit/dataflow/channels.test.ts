import {
  BUFFER_BYTES,
  INPUT_CREDITS,
  InputChannel,
  OUTPUT_BACKLOG,
  OutputChannel,
} from "../../../src/dataflow/channels.js";
import { FrameDecoder, type Frame } from "../../../src/dataflow/frames.js";

/** A link that decodes what is sent through it. */
function recordingLink() {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  return { frames, send: (bytes: Buffer) => frames.push(...decoder.push(bytes)) };
}

const bigValue = "x".repeat(BUFFER_BYTES);

test("a sender sends a buffer only against a credit; the barrier needs none but never overtakes data", () => {
  const link = recordingLink();
  const output = new OutputChannel(2, 1, link);
  output.add("a", 1);
  output.barrier(9);
  expect(link.frames).toEqual([]); // the buffer before the barrier waits for credit, and so does the barrier
  expect(output.backlog).toBe(1);
  output.grant(1);
  expect(link.frames.map((frame) => frame.type)).toEqual(["data", "barrier"]);
  const data = link.frames[0] as Extract<Frame, { type: "data" }>;
  expect(JSON.parse(data.payload.toString("utf8"))).toEqual([["a", 1]]);
  expect(link.frames[1]).toEqual({ type: "barrier", channel: 2, checkpointId: 9 });
  // With nothing queued, a barrier leaves at once.
  output.barrier(10);
  expect(link.frames.at(-1)).toEqual({ type: "barrier", channel: 2, checkpointId: 10 });
});

test("buffers adapt to about BUFFER_BYTES; the producer is told when the backlog drains", () => {
  const link = recordingLink();
  const output = new OutputChannel(0, 0, link);
  let wakes = 0;
  output.onWritable = () => wakes++;
  // Small records gather in one buffer until flushed.
  for (let i = 0; i < 10; i++) output.add(`k${i}`, i);
  expect(output.backlog).toBe(0);
  output.flush();
  expect(output.backlog).toBe(1);
  // After a buffer of a record of BUFFER_BYTES, each such record is a buffer of its own.
  output.add("big", bigValue);
  output.flush();
  output.add("big2", bigValue);
  output.add("big3", bigValue);
  expect(output.backlog).toBe(OUTPUT_BACKLOG + 2);
  output.grant(2);
  expect(wakes).toBe(0); // still at OUTPUT_BACKLOG
  output.grant(1);
  expect(wakes).toBe(1);
  expect(link.frames.filter((frame) => frame.type === "data")).toHaveLength(3);
});

test("a receiver grants INPUT_CREDITS, returns one per buffer taken, and refuses a buffer sent without credit", () => {
  const credits = recordingLink();
  const input = new InputChannel(1, 3, credits);
  expect(input.receiveData(Buffer.from("[]"))).toBe(false); // not opened: no credit yet
  input.open();
  input.open();
  expect(credits.frames).toEqual([{ type: "credit", channel: 1, count: INPUT_CREDITS }]);
  for (let i = 0; i < INPUT_CREDITS; i++) expect(input.receiveData(Buffer.from(`[${i}]`))).toBe(true);
  expect(input.receiveData(Buffer.from("[]"))).toBe(false);
  input.receiveBarrier(4);
  expect(input.queued).toBe(INPUT_CREDITS + 1);
  input.take();
  expect(credits.frames.at(-1)).toEqual({ type: "credit", channel: 1, count: 1 });
  expect(input.receiveData(Buffer.from("[]"))).toBe(true);
  // Taking a barrier earns no credit.
  for (let i = 0; i < INPUT_CREDITS - 1; i++) input.take();
  const before = credits.frames.length;
  expect(input.peek()).toEqual({ barrier: 4 });
  input.take();
  expect(credits.frames.length).toBe(before);
});

test("a buffer over the frame limit is cut into frames; a record larger than a frame in UTF-8 is refused, naming its key", () => {
  const link = recordingLink();
  const output = new OutputChannel(0, 0, link);
  output.grant(10);
  const large = "y".repeat(1_500_000);
  for (const key of ["a", "b", "c"]) output.add(key, large);
  output.add("small", 1);
  output.flush(); // 4.5 MB of JSON: over the 4 MiB limit
  const payloads = link.frames.map((frame) =>
    JSON.parse((frame as Extract<Frame, { type: "data" }>).payload.toString("utf8")),
  ) as Array<Array<[string, unknown]>>;
  expect(payloads.map((records) => records.map(([key]) => key))).toEqual([["a"], ["b"], ["c"], ["small"]]);
  // 1.5 million characters, 4.5 MB in UTF-8: over the frame limit although its length is not.
  // (After those buffers each record is a buffer of its own, so add() flushes it.)
  expect(() => output.add("huge", "€".repeat(1_500_000))).toThrow(
    'a record of key "huge" is too large to send',
  );
});
