// The exchange's connections (docs/protocol.md, "The exchange"): one TCP connection per ordered
// pair of TaskManagers of an epoch, opened by the sender with an HTTP upgrade on the receiver's API
// port and authenticated with the job's token. Data and barriers flow sender → receiver, credits
// back; every exchange of the job shares the connection as a channel of its own. A TaskManager sends
// to itself through an in-process link with the same frames. A connection that breaks cannot be
// mended (records in flight may be lost): the epoch is over and the operator redeploys from the
// latest checkpoint.
import http, { type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { bearerTokenCheck } from "../taskmanager/server/bearer-token.js";
import type { FrameLink } from "./channels.js";
import { ExchangeProtocolError, FrameDecoder, type Frame } from "./frames.js";

export const EXCHANGE_PATH = "/v1/exchange";
export const EXCHANGE_UPGRADE = "streamjob-exchange";
export const HEADERS = {
  epoch: "streamjob-epoch",
  fromTask: "streamjob-from-task",
  toTask: "streamjob-to-task",
} as const;

export interface Peer {
  taskIndex: number;
  /** The peer's API base URL, e.g. http://10.244.1.7:8080. */
  url: string;
}

export interface ExchangeOptions {
  epoch: number;
  taskIndex: number;
  parallelism: number;
  token: string;
  log: Logger;
  /** A data or barrier frame from task `from`. */
  onFrame(from: number, frame: Frame): void;
  /** A credit from task `to` for what this task sends it. */
  onCredit(to: number, channel: number, count: number): void;
  /** The exchange cannot go on (a connection broke or a peer broke the protocol). */
  onFailure(error: Error): void;
  /** A call with a newer epoch: this TaskManager has been replaced. */
  onNewerEpoch(epoch: number): void;
  /** How long to keep trying to reach a peer that is not listening yet. */
  connectTimeoutMs?: number;
}

export class Exchange {
  private readonly outgoing = new Map<number, Duplex>();
  private readonly incoming = new Map<number, Duplex>();
  private readonly tokenMatches: (authorization: string | undefined) => boolean;
  private stopped = false;
  private connectedAll: () => void = () => undefined;
  /** Resolves when a connection to and from every other TaskManager is up. */
  readonly connected: Promise<void>;

  constructor(private readonly options: ExchangeOptions) {
    this.tokenMatches = bearerTokenCheck(options.token);
    this.connected = new Promise((resolve) => (this.connectedAll = resolve));
    this.checkConnected();
  }

  /** Frames to task `to`: data and barriers (the in-process link for this task itself). */
  dataLink(to: number): FrameLink {
    if (to === this.options.taskIndex) return this.localLink((frame) => this.options.onFrame(to, frame));
    return { send: (frame) => this.socket(this.outgoing, to).write(frame) };
  }

  /** Frames back to task `from`: its credits. */
  creditLink(from: number): FrameLink {
    if (from === this.options.taskIndex) {
      return this.localLink((frame) => {
        if (frame.type === "credit") this.options.onCredit(from, frame.channel, frame.count);
      });
    }
    return { send: (frame) => this.socket(this.incoming, from).write(frame) };
  }

  /** Opens the connections to every other peer of the epoch, retrying while they start. */
  async connect(peers: readonly Peer[]): Promise<void> {
    const { taskIndex } = this.options;
    await Promise.all(
      peers.filter((peer) => peer.taskIndex !== taskIndex).map((peer) => this.connectTo(peer)),
    );
  }

  /** The HTTP server's `upgrade` handler: a peer opening its connection to this task. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, error: string) => refuseUpgrade(socket, status, error);
    const { epoch, taskIndex, parallelism } = this.options;
    // The token first, as on every /v1 endpoint: nothing else is told to a caller without it.
    if (!this.tokenMatches(req.headers.authorization)) return refuse(401, "missing or invalid bearer token");
    const url = new URL(req.url ?? "/", "http://taskmanager");
    if (url.pathname !== EXCHANGE_PATH) return refuse(404, "no such endpoint");
    if (req.headers.upgrade?.toLowerCase() !== EXCHANGE_UPGRADE) {
      return refuse(400, `upgrade: expected ${EXCHANGE_UPGRADE}`);
    }
    const peerEpoch = integerHeader(req, HEADERS.epoch);
    const from = integerHeader(req, HEADERS.fromTask);
    const to = integerHeader(req, HEADERS.toTask);
    if (peerEpoch === undefined || from === undefined || to === undefined) {
      return refuse(400, `headers ${Object.values(HEADERS).join(", ")} must be non-negative integers`);
    }
    if (peerEpoch !== epoch) {
      if (peerEpoch > epoch) this.options.onNewerEpoch(peerEpoch);
      return refuse(409, `epoch ${peerEpoch} is not this TaskManager's epoch ${epoch}`);
    }
    if (to !== taskIndex) return refuse(409, `task ${to} addressed, this is task ${taskIndex}`);
    if (from >= parallelism || from === taskIndex) {
      return refuse(409, `task ${from} is not another task of this epoch (parallelism ${parallelism})`);
    }
    if (this.stopped) return refuse(409, "the exchange of this epoch has ended");
    if (this.incoming.has(from)) return refuse(409, `task ${from} is already connected`);
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${EXCHANGE_UPGRADE}\r\nConnection: Upgrade\r\n\r\n`,
    );
    this.attach(socket, this.incoming, from, "from", head, (frame) => {
      if (frame.type === "credit") throw new ExchangeProtocolError("a sender may not send credits");
      this.options.onFrame(from, frame);
    });
  }

  /** Closes every connection; nothing it does afterwards counts as a failure. */
  stop(): void {
    this.stopped = true;
    for (const socket of [...this.outgoing.values(), ...this.incoming.values()]) socket.destroy();
  }

  private async connectTo(peer: Peer): Promise<void> {
    const deadline = Date.now() + (this.options.connectTimeoutMs ?? 60_000);
    for (;;) {
      if (this.stopped) return;
      try {
        const { socket, head } = await this.upgrade(peer);
        this.attach(socket, this.outgoing, peer.taskIndex, "to", head, (frame) => {
          if (frame.type !== "credit")
            throw new ExchangeProtocolError(`a receiver may only send credits, not ${frame.type}`);
          this.options.onCredit(peer.taskIndex, frame.channel, frame.count);
        });
        return;
      } catch (err) {
        if (err instanceof RefusedError || Date.now() > deadline) {
          throw new Error(
            `exchange: cannot connect to task ${peer.taskIndex} at ${peer.url}: ${(err as Error).message}`,
            { cause: err },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  private upgrade(peer: Peer): Promise<{ socket: Duplex; head: Buffer }> {
    return new Promise((resolve, reject) => {
      const request = http.request(new URL(EXCHANGE_PATH, peer.url), {
        method: "GET",
        agent: false,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          connection: "Upgrade",
          upgrade: EXCHANGE_UPGRADE,
          [HEADERS.epoch]: String(this.options.epoch),
          [HEADERS.fromTask]: String(this.options.taskIndex),
          [HEADERS.toTask]: String(peer.taskIndex),
        },
        timeout: 5_000,
      });
      request.on("upgrade", (_res, socket, head) => resolve({ socket, head }));
      request.on("response", (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => reject(new RefusedError(`HTTP ${res.statusCode}: ${body.slice(0, 500)}`)));
      });
      request.on("timeout", () => request.destroy(new Error("timed out")));
      request.on("error", reject);
      request.end();
    });
  }

  private attach(
    socket: Duplex,
    connections: Map<number, Duplex>,
    peer: number,
    direction: "to" | "from",
    head: Buffer,
    onFrame: (frame: Frame) => void,
  ): void {
    connections.set(peer, socket);
    const decoder = new FrameDecoder();
    const fail = (message: string) => {
      if (this.stopped) return;
      this.stopped = true;
      this.options.onFailure(new Error(`exchange: connection ${direction} task ${peer}: ${message}`));
    };
    const receive = (bytes: Buffer) => {
      try {
        for (const frame of decoder.push(bytes)) if (frame.type !== "ignored") onFrame(frame);
      } catch (err) {
        socket.destroy();
        fail(`protocol error: ${(err as Error).message}`);
      }
    };
    (socket as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
    socket.on("data", receive);
    socket.on("error", (err) => fail(err.message));
    socket.on("close", () => fail("closed"));
    if (head.length > 0) receive(head);
    this.options.log.debug({ peer, direction }, "exchange connection up");
    this.checkConnected();
  }

  private checkConnected(): void {
    const others = this.options.parallelism - 1;
    if (this.outgoing.size === others && this.incoming.size === others) this.connectedAll();
  }

  private socket(connections: Map<number, Duplex>, peer: number): Duplex {
    const socket = connections.get(peer);
    if (socket === undefined) throw new Error(`exchange: no connection with task ${peer} yet`);
    return socket;
  }

  private localLink(deliver: (frame: Frame) => void): FrameLink {
    const decoder = new FrameDecoder();
    return {
      send: (frame) => {
        for (const decoded of decoder.push(frame)) deliver(decoded);
      },
    };
  }
}

/** Answers an upgrade with an error (JSON body, as the HTTP API) and closes the connection. */
export function refuseUpgrade(socket: Duplex, status: number, error: string): void {
  const body = JSON.stringify({ error });
  const challenge = status === 401 ? "WWW-Authenticate: Bearer\r\n" : "";
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${challenge}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The peer answered and said no: retrying will not help. */
class RefusedError extends Error {}

function integerHeader(req: IncomingMessage, name: string): number | undefined {
  const value = req.headers[name];
  if (typeof value !== "string" || !/^[0-9]{1,9}$/.test(value)) return undefined;
  return Number(value);
}
