import {
  encodeBarrier,
  encodeCredit,
  encodeData,
  ExchangeProtocolError,
  FrameDecoder,
  MAX_FRAME_BYTES,
} from "../../../src/dataflow/frames.js";

function frame(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1, 0);
  head.writeUInt8(type, 4);
  return Buffer.concat([head, body]);
}

test("frames survive any cut of the byte stream: data, barrier and credit in order", () => {
  const payload = Buffer.from(
    JSON.stringify([
      ["k1", { n: 1 }],
      ["k2", "é"],
    ]),
    "utf8",
  );
  const bytes = Buffer.concat([encodeData(3, payload), encodeBarrier(3, 42), encodeCredit(7, 4)]);
  for (const step of [1, 2, 5, 13, bytes.length]) {
    const decoder = new FrameDecoder();
    const frames = [];
    for (let at = 0; at < bytes.length; at += step)
      frames.push(...decoder.push(bytes.subarray(at, at + step)));
    expect(frames).toEqual([
      { type: "data", channel: 3, payload },
      { type: "barrier", channel: 3, checkpointId: 42 },
      { type: "credit", channel: 7, count: 4 },
    ]);
  }
});

test("control frames of the ignorable range are skipped; any other unknown type is a protocol error", () => {
  const decoder = new FrameDecoder();
  expect(decoder.push(frame(0x40, Buffer.from('{"watermark":1}')))).toEqual([
    { type: "ignored", code: 0x40 },
  ]);
  expect(decoder.push(frame(0x7f, Buffer.alloc(0)))).toEqual([{ type: "ignored", code: 0x7f }]);
  expect(() => new FrameDecoder().push(frame(0x80, Buffer.alloc(2)))).toThrow("unknown frame type 0x80");
  expect(() => new FrameDecoder().push(frame(0x04, Buffer.alloc(2)))).toThrow(ExchangeProtocolError);
});

test("a length over the limit, a bad barrier or a short credit is refused", () => {
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  expect(() => new FrameDecoder().push(huge)).toThrow(`frame length ${MAX_FRAME_BYTES + 1}`);
  const barrier = (body: string) => frame(0x02, Buffer.concat([Buffer.from([0, 1]), Buffer.from(body)]));
  expect(() => new FrameDecoder().push(barrier("{"))).toThrow("barrier: body is not JSON");
  expect(() => new FrameDecoder().push(barrier('{"checkpointId":0}'))).toThrow("not a positive integer");
  expect(() => new FrameDecoder().push(frame(0x03, Buffer.from([0, 1, 0])))).toThrow(
    "credit: body is not 6 bytes",
  );
});
