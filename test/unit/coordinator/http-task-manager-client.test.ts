// The HTTP client against a real local HTTP server that holds requests (a TaskManager that stopped
// answering): cancelling the call ends it at once, and failures say whether the task answered.
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { PeersRequest } from "../../../src/api/protocol.js";
import { HttpTaskManagerClient } from "../../../src/coordinator/http-task-manager-client.js";
import { TaskManagerCallError } from "../../../src/coordinator/interfaces.js";
import { pendingCheckpoint } from "../support/checkpoints.js";
import { FakeClock } from "../support/fake-clock.js";

let server: Server;
let baseUrl: string;
const held: ServerResponse[] = [];
/** What PUT /v1/peers received: the epoch 1 list is taken, another list for it is refused. */
const peersCalls: { method?: string; authorization?: string; body: PeersRequest }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === "/v1/peers") {
      let text = "";
      req.on("data", (chunk: Buffer) => (text += chunk.toString()));
      req.on("end", () => {
        const body = JSON.parse(text) as PeersRequest;
        peersCalls.push({ method: req.method, authorization: req.headers.authorization, body });
        if (body.peers.length === 2) {
          res.writeHead(204).end();
          return;
        }
        res.writeHead(409, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: "epoch 1 already has other peers" }));
      });
      return;
    }
    if (req.url?.startsWith("/v1/checkpoints/trigger")) {
      res.writeHead(409, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: "checkpoint 7 is older than checkpoint 9 already taken" }));
      return;
    }
    held.push(res); // every other call hangs
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of held) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const client = () => new HttpTaskManagerClient({ taskIndex: 2, baseUrl, token: "t" });

test("a long poll that hangs ends as soon as its signal aborts, as no answer", async () => {
  const stopping = new AbortController();
  const started = performance.now();
  const polled = client().result(3, 1, 10_000, stopping.signal);
  setTimeout(() => stopping.abort(new Error("the coordinator stopped")), 50);
  const err = (await polled.catch((e: unknown) => e)) as TaskManagerCallError;
  expect(performance.now() - started).toBeLessThan(1_000);
  expect(err).toBeInstanceOf(TaskManagerCallError);
  expect(err.message).toBe(
    "task 2: GET /v1/checkpoints/3?epoch=1&waitMs=10000 cancelled: the coordinator stopped",
  );
  expect(err.status).toBeUndefined();
});

test("notify-complete to a TaskManager that does not answer ends when cancelled", async () => {
  const stopping = new AbortController();
  const notified = client().notifyComplete(
    { checkpointId: 3, epoch: 1, manifestKey: "checkpoints/default/orders/chk-3/_metadata" },
    stopping.signal,
  );
  stopping.abort(new Error("the coordinator stopped"));
  await expect(notified).rejects.toThrow("cancelled: the coordinator stopped");
});

test("an error answer carries its status and the TaskManager's error text", async () => {
  const trigger = client().trigger(pendingCheckpoint(new FakeClock()).triggerRequest(2));
  const err = (await trigger.catch((e: unknown) => e)) as TaskManagerCallError;
  expect(err.status).toBe(409);
  expect(err.message).toBe(
    "task 2: POST /v1/checkpoints/trigger answered 409: checkpoint 7 is older than checkpoint 9 already taken",
  );
});

test("peers go out as a PUT with the token, and a 204 resolves", async () => {
  const request: PeersRequest = {
    epoch: 1,
    peers: [
      { taskIndex: 0, url: "http://10.0.0.4:8080" },
      { taskIndex: 1, url: "http://[fd00::5]:8080" },
    ],
  };
  await client().setPeers(request);
  expect(peersCalls.at(-1)).toEqual({ method: "PUT", authorization: "Bearer t", body: request });
});

test("peers refused with 409 (another list for the epoch) reject with the status and the reason", async () => {
  const sent = client().setPeers({ epoch: 1, peers: [{ taskIndex: 0, url: "http://10.0.0.9:8080" }] });
  const err = (await sent.catch((e: unknown) => e)) as TaskManagerCallError;
  expect(err).toBeInstanceOf(TaskManagerCallError);
  expect(err.status).toBe(409);
  expect(err.message).toBe("task 2: PUT /v1/peers answered 409: epoch 1 already has other peers");
});
