// The physical limit the dataflow bench compares the exchange against: the same framed record bytes
// sent over a loopback TCP connection from one process to another on this machine, measured in the
// same run. Three ways, each a sender and a receiver process of their own:
//
// 1. "raw TCP": the sender writes prebuilt data frames, byte for byte what the exchange's
//    OutputChannel cuts for these records (32 KiB buffers), one write per frame as the exchange does;
//    the receiver only counts bytes. Nothing but the transfer: the physical limit.
// 2. "raw TCP + decode": the same sender; the receiver cuts the stream into frames with the
//    exchange's FrameDecoder and JSON.parses every data frame's payload, as a keyed stage must.
// 3. "raw TCP + encode + decode": the sender builds the frames as it goes with the exchange's own
//    OutputChannel (a JSON.stringify per buffer, the buffer, the frame), credits unlimited; the
//    receiver as in 2. What the exchange's own encoding and decoding cost, without the runtime.
//
// `tsx bench/raw-tcp.ts` alone prints the three; bench/dataflow.ts calls rawTcp().
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { BUFFER_BYTES, OutputChannel } from "../src/dataflow/channels.js";
import { FrameDecoder } from "../src/dataflow/frames.js";
import { repoRoot } from "../test/support/local-cluster.js";
import { cpuSeconds, percentile } from "./measure.js";

/** The records of bench/jobs/exchange.mjs: `keys` keys k0000…, a value of `valueBytes` characters. */
export interface RecordShape {
  keys: number;
  valueBytes: number;
}

/** Bytes a record takes in a data frame's payload: `["k0042","x…x"]` and its comma. */
export function recordBytes(shape: RecordShape): number {
  return shape.valueBytes + 13;
}

export const RAW_WAYS = ["raw TCP", "raw TCP + decode", "raw TCP + encode + decode"] as const;
export type RawWayName = (typeof RAW_WAYS)[number];

export interface RawTcpResult {
  way: RawWayName;
  /** Medians over the windows. */
  recordsPerSecond: number;
  /** Record payload bytes per second (recordBytes × records). */
  bytesPerSecond: number;
  senderCores: number;
  receiverCores: number;
  windows: number;
}

const thisFile = fileURLToPath(import.meta.url);

function keyNames(keys: number): string[] {
  return Array.from({ length: keys }, (_, i) => `k${String(i).padStart(4, "0")}`);
}

/** Measures one way: a receiver and a sender process, `windows` windows after a warm-up. */
export async function rawTcp(
  way: RawWayName,
  shape: RecordShape,
  { windows = 3, windowMs = 1_500, warmupMs = 700 } = {},
): Promise<RawTcpResult> {
  const receiveMode = way === "raw TCP" ? "count" : "decode";
  const sendMode = way === "raw TCP + encode + decode" ? "encode" : "prebuilt";
  const shapeArgs = [String(shape.keys), String(shape.valueBytes)];
  const receiver = child(["receive", receiveMode, String(warmupMs), String(windowMs), ...shapeArgs]);
  let sender: ChildProcess | undefined;
  try {
    const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
    const next = async (): Promise<Record<string, number>> => {
      const line = await lines.next();
      if (line.done) throw new Error(`raw-tcp receiver (${way}) ended early`);
      return JSON.parse(line.value) as Record<string, number>;
    };
    const { port } = await next();
    sender = child(["send", sendMode, String(port), ...shapeArgs]);
    const senderPid = sender.pid!;
    const results: { records: number; seconds: number; receiverCores: number; senderCores: number }[] = [];
    let senderCpu = cpuSeconds(senderPid);
    for (let i = 0; i < windows; i++) {
      const window = await next();
      const cpu = cpuSeconds(senderPid);
      results.push({
        records: window.records!,
        seconds: window.seconds!,
        receiverCores: window.cpuSeconds! / window.seconds!,
        senderCores: (cpu - senderCpu) / window.seconds!,
      });
      senderCpu = cpu;
    }
    const median = (values: number[]) => percentile(values, 50);
    const recordsPerSecond = median(results.map((r) => r.records / r.seconds));
    return {
      way,
      recordsPerSecond,
      bytesPerSecond: recordsPerSecond * recordBytes(shape),
      senderCores: median(results.map((r) => r.senderCores)),
      receiverCores: median(results.map((r) => r.receiverCores)),
      windows,
    };
  } finally {
    sender?.kill("SIGKILL");
    receiver.kill("SIGKILL");
  }
}

function child(args: string[]): ChildProcess {
  const proc = spawn(process.execPath, ["--import", "tsx", thisFile, "child", ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "inherit"],
  });
  proc.on("error", (err) => console.error(`raw-tcp child: ${err.message}`));
  return proc;
}

/**
 * Data frames exactly as the exchange's OutputChannel cuts them for these records (buffers of about
 * BUFFER_BYTES once its record count has adapted), unlimited credits; `into` gets each frame.
 */
function encoder(into: (frame: Buffer) => void): OutputChannel {
  const output = new OutputChannel(0, 1, { send: into });
  output.grant(Number.MAX_SAFE_INTEGER);
  return output;
}

async function send(mode: string, port: number, shape: RecordShape): Promise<void> {
  const keys = keyNames(shape.keys);
  const value = "x".repeat(shape.valueBytes);
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.on("error", () => process.exit(0)); // the receiver went away: the measurement is over
  const drained = () => new Promise<void>((resolve) => socket.once("drain", resolve));
  if (mode === "prebuilt") {
    // Enough frames that every key appears; then the same frames over and over.
    const frames: Buffer[] = [];
    const output = encoder((frame) => frames.push(frame));
    for (let i = 0; frames.length < 16 || i % keys.length !== 0; i++)
      output.add(keys[i % keys.length]!, value);
    for (let i = 0; ; i++) {
      if (!socket.write(frames[i % frames.length]!)) await drained();
    }
  }
  // "encode": records stringified and cut into frames as they are sent, 500 at a time (a source batch).
  let full = false;
  const output = encoder((frame) => {
    if (!socket.write(frame)) full = true;
  });
  for (let i = 0; ;) {
    for (let end = i + 500; i < end; i++) output.add(keys[i % keys.length]!, value);
    if (full) {
      await drained();
      full = false;
    }
  }
}

function receive(mode: string, warmupMs: number, windowMs: number, shape: RecordShape): void {
  const perFrame = Math.ceil(BUFFER_BYTES / recordBytes(shape)); // what OutputChannel puts in one buffer
  const frameBytes = 7 + 1 + perFrame * recordBytes(shape); // header, brackets, records, no last comma
  let bytes = 0;
  let records = 0;
  const decoder = new FrameDecoder();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (mode !== "decode") return;
      for (const frame of decoder.push(chunk)) {
        if (frame.type !== "data") continue;
        const parsed = JSON.parse(frame.payload.toString("utf8")) as Array<[string, unknown]>;
        for (const [key] of parsed) if (key.length > 0) records++;
      }
    });
    let last: { at: number; bytes: number; records: number; cpu: NodeJS.CpuUsage } | undefined;
    const snapshot = () => ({ at: performance.now(), bytes, records, cpu: process.cpuUsage() });
    setTimeout(() => {
      last = snapshot();
      setInterval(() => {
        const now = snapshot();
        const seconds = (now.at - last!.at) / 1000;
        const cpu = process.cpuUsage(last!.cpu);
        const counted =
          mode === "decode"
            ? now.records - last!.records
            : ((now.bytes - last!.bytes) / frameBytes) * perFrame;
        process.stdout.write(
          JSON.stringify({
            records: counted,
            bytes: now.bytes - last!.bytes,
            seconds,
            cpuSeconds: (cpu.user + cpu.system) / 1e6,
          }) + "\n",
        );
        last = now;
      }, windowMs);
    }, warmupMs);
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + "\n");
  });
}

async function runChild(args: string[]): Promise<void> {
  const [role, mode, ...rest] = args;
  if (role === "send") {
    const [port, keys, valueBytes] = rest.map(Number);
    await send(mode!, port!, { keys: keys!, valueBytes: valueBytes! });
  } else {
    const [warmupMs, windowMs, keys, valueBytes] = rest.map(Number);
    receive(mode!, warmupMs!, windowMs!, { keys: keys!, valueBytes: valueBytes! });
  }
}

const invokedAs = process.argv[1] === undefined ? undefined : path.resolve(process.argv[1]);
if (invokedAs === thisFile && process.argv[2] === "child") {
  runChild(process.argv.slice(3)).catch((err: Error) => {
    console.error(err);
    process.exit(1);
  });
} else if (invokedAs === thisFile) {
  const shape = { keys: 1024, valueBytes: Number(process.argv[2] ?? 100) };
  for (const way of RAW_WAYS) {
    const r = await rawTcp(way, shape);
    console.log(
      `${way.padEnd(28)} ${(r.recordsPerSecond / 1e6).toFixed(2).padStart(6)} M records/s ${(r.bytesPerSecond / 1e6).toFixed(0).padStart(6)} MB/s  sender ${r.senderCores.toFixed(2)} cores, receiver ${r.receiverCores.toFixed(2)}`,
    );
  }
}
