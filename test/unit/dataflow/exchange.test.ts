// The exchange over real loopback sockets between two Exchange instances in this process: the
// handshake's refusals, and credit-based channels that share one connection without blocking each other.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { BUFFER_BYTES, INPUT_CREDITS, InputChannel, OutputChannel } from "../../../src/dataflow/channels.js";
import { EXCHANGE_PATH, Exchange, HEADERS, type Peer } from "../../../src/dataflow/exchange.js";
import { encodeBarrier, encodeCredit, type Frame } from "../../../src/dataflow/frames.js";
import { waitFor } from "../../support/wait.js";

const TOKEN = "the-job-token";
const log = pino({ level: "silent" });

interface Side {
  exchange: Exchange;
  server: http.Server;
  peer: Peer;
  frames: Array<{ from: number; frame: Frame }>;
  credits: Array<{ to: number; channel: number; count: number }>;
  failures: string[];
  newerEpochs: number[];
}

const sides: Side[] = [];

async function side(
  taskIndex: number,
  options: {
    epoch?: number;
    onFrame?: (from: number, frame: Frame) => void;
    onCredit?: (to: number, channel: number, count: number) => void;
  } = {},
): Promise<Side> {
  const frames: Side["frames"] = [];
  const credits: Side["credits"] = [];
  const failures: string[] = [];
  const newerEpochs: number[] = [];
  const exchange = new Exchange({
    epoch: options.epoch ?? 3,
    taskIndex,
    parallelism: 2,
    token: TOKEN,
    log,
    onFrame: options.onFrame ?? ((from, frame) => frames.push({ from, frame })),
    onCredit: options.onCredit ?? ((to, channel, count) => credits.push({ to, channel, count })),
    onFailure: (error) => failures.push(error.message),
    onNewerEpoch: (epoch) => newerEpochs.push(epoch),
    connectTimeoutMs: 2_000,
  });
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on("upgrade", (req, socket, head) => exchange.accept(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const created = {
    exchange,
    server,
    peer: { taskIndex, url: `http://127.0.0.1:${port}` },
    frames,
    credits,
    failures,
    newerEpochs,
  };
  sides.push(created);
  return created;
}

afterEach(async () => {
  for (const { exchange, server } of sides.splice(0)) {
    exchange.stop();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A raw upgrade request; resolves with the status code and body of the answer. */
function upgrade(
  url: string,
  headers: Record<string, string>,
  path = EXCHANGE_PATH,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(new URL(path, url), {
      headers: { connection: "Upgrade", upgrade: "streamjob-exchange", ...headers },
      agent: false,
    });
    request.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: "" });
    });
    request.on("response", (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    request.on("error", reject);
    request.end();
  });
}

test("the upgrade is refused without the token, from another epoch, to another task or from a task not of the epoch", async () => {
  const receiver = await side(1);
  const good = {
    authorization: `Bearer ${TOKEN}`,
    [HEADERS.epoch]: "3",
    [HEADERS.fromTask]: "0",
    [HEADERS.toTask]: "1",
  };
  const cases: Array<[Record<string, string>, number, string]> = [
    [{ ...good, authorization: "Bearer wrong" }, 401, "missing or invalid bearer token"],
    [{ ...good, [HEADERS.epoch]: "2" }, 409, "epoch 2 is not this TaskManager's epoch 3"],
    [{ ...good, [HEADERS.epoch]: "x" }, 400, "must be non-negative integers"],
    [{ ...good, [HEADERS.toTask]: "0" }, 409, "task 0 addressed, this is task 1"],
    [{ ...good, [HEADERS.fromTask]: "2" }, 409, "task 2 is not another task of this epoch"],
    [{ ...good, [HEADERS.fromTask]: "1" }, 409, "task 1 is not another task of this epoch"],
  ];
  for (const [headers, status, error] of cases) {
    const answer = await upgrade(receiver.peer.url, headers);
    expect([answer.status, answer.body]).toEqual([status, expect.stringContaining(error)]);
  }
  // The token comes first: without it, not even whether the path exists is told.
  expect(
    (await upgrade(receiver.peer.url, { ...good, authorization: "Bearer wrong" }, "/v1/other")).status,
  ).toBe(401);
  expect((await upgrade(receiver.peer.url, good, "/v1/other")).status).toBe(404);
  // A newer epoch calling means this TaskManager was replaced.
  expect((await upgrade(receiver.peer.url, { ...good, [HEADERS.epoch]: "4" })).status).toBe(409);
  expect(receiver.newerEpochs).toEqual([4]);
  // None of them got a connection: the right one is accepted once, a second one refused.
  expect((await upgrade(receiver.peer.url, good)).status).toBe(101);
  expect(await upgrade(receiver.peer.url, good)).toEqual({
    status: 409,
    body: expect.stringContaining("already connected"),
  });
});

test("two TaskManagers connect both ways: data and barriers go one way, credits come back", async () => {
  const a = await side(0);
  const b = await side(1);
  await Promise.all([a.exchange.connect([a.peer, b.peer]), b.exchange.connect([a.peer, b.peer])]);
  await Promise.all([a.exchange.connected, b.exchange.connected]);

  const output = new OutputChannel(1, 1, a.exchange.dataLink(1));
  output.grant(1);
  output.add("k", { v: 1 });
  output.barrier(6);
  b.exchange.creditLink(0).send(encodeCredit(1, 2));
  await waitFor("the frames", () => b.frames.length === 2 && a.credits.length === 1, 5_000);
  expect(b.frames.map(({ from, frame }) => [from, frame.type])).toEqual([
    [0, "data"],
    [0, "barrier"],
  ]);
  expect(a.credits).toEqual([{ to: 1, channel: 1, count: 2 }]);

  // A TaskManager sends to itself in-process, with the same frames.
  a.exchange.dataLink(0).send(encodeBarrier(0, 1));
  expect(a.frames).toEqual([{ from: 0, frame: { type: "barrier", channel: 0, checkpointId: 1 } }]);
});

test("a channel held back does not block another channel on the same connection", async () => {
  // Task 0 sends on channels 0 and 1 to task 1; task 1 takes from channel 1 only, as a stage aligning
  // a checkpoint holds a channel that delivered its barrier.
  let inputs: InputChannel[] = [];
  let outputs: OutputChannel[] = [];
  const b = await side(1, {
    onFrame: (_from, frame) => {
      if (frame.type === "data") expect(inputs[frame.channel]!.receiveData(frame.payload)).toBe(true);
    },
  });
  const a = await side(0, { onCredit: (_to, channel, count) => outputs[channel]!.grant(count) });
  await Promise.all([a.exchange.connect([a.peer, b.peer]), b.exchange.connect([a.peer, b.peer])]);
  await Promise.all([a.exchange.connected, b.exchange.connected]);
  inputs = [0, 1].map((channel) => new InputChannel(channel, 0, b.exchange.creditLink(0)));
  outputs = [0, 1].map((channel) => new OutputChannel(channel, 1, a.exchange.dataLink(1)));
  for (const input of inputs) input.open();

  const buffers = 3 * INPUT_CREDITS;
  const value = "v".repeat(BUFFER_BYTES);
  for (let i = 0; i < buffers; i++) {
    for (const output of outputs) {
      output.add(`k${i}`, value);
      output.flush();
    }
  }
  let takenOn1 = 0;
  await waitFor(
    "channel 1 to deliver every buffer",
    () => {
      while (inputs[1]!.peek() !== undefined) {
        inputs[1]!.take();
        takenOn1++;
      }
      return takenOn1 === buffers;
    },
    5_000,
  );
  // Channel 0 got exactly its credits' worth; the rest waits at the sender, not in the socket.
  expect(inputs[0]!.queued).toBe(INPUT_CREDITS);
  expect(outputs[0]!.backlog).toBe(buffers - INPUT_CREDITS);
  // Released, it delivers the rest.
  let takenOn0 = 0;
  await waitFor(
    "channel 0 to deliver the rest",
    () => {
      while (inputs[0]!.peek() !== undefined) {
        inputs[0]!.take();
        takenOn0++;
      }
      return takenOn0 === buffers;
    },
    5_000,
  );
  expect(a.failures).toEqual([]);
});

test("a connection that breaks ends the exchange on both sides, naming the peer; a stop does not count", async () => {
  const a = await side(0);
  const b = await side(1);
  await Promise.all([a.exchange.connect([a.peer, b.peer]), b.exchange.connect([a.peer, b.peer])]);
  b.server.closeAllConnections();
  b.exchange.stop();
  await waitFor("task 0 to notice", () => a.failures.length > 0, 5_000);
  expect(a.failures[0]).toMatch(/^exchange: connection (to|from) task 1: /);
  expect(b.failures).toEqual([]);
});

test("a peer that never answers is given up on after the connect timeout, naming it", async () => {
  const a = await side(0);
  const unreachable = { taskIndex: 1, url: "http://127.0.0.1:9" };
  await expect(a.exchange.connect([a.peer, unreachable])).rejects.toThrow(
    "exchange: cannot connect to task 1 at http://127.0.0.1:9",
  );
});
