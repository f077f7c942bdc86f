// The TaskManager's HTTP API against an in-memory store: a unit test of the server, on 127.0.0.1.
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { taskPartsPrefix } from "../../../src/api/object-layout.js";
import { CheckpointResult, TaskManagerStatus, type TaskManagerConfig } from "../../../src/api/protocol.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { stagedOutputKey, committedOutputKey } from "../../../src/taskmanager/sink/output-layout.js";
import { startTaskManager, type RunningTaskManager } from "../../../src/taskmanager/task-manager.js";
import {
  BUCKET,
  countingJob,
  filledStates,
  JOB,
  location,
  silentLog,
  taskConfig,
  writeCheckpoint,
} from "./support/fixtures.js";
import { waitUntil } from "../support/wait.js";

const TOKEN = "test-token-0123456789abcdef";
const jobDirectory = "checkpoints/default/orders/";

/** A MemoryObjectStore whose puts and gets wait while `hold` is set. */
class GatedStore extends MemoryObjectStore {
  hold: Promise<void> | undefined;
  override async put(key: string, body: Buffer | Readable) {
    await this.hold;
    return super.put(key, body);
  }
  override async get(key: string) {
    await this.hold;
    return super.get(key);
  }
}

const running: RunningTaskManager[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((taskManager) => taskManager.stop()));
});

async function start(
  store: MemoryObjectStore,
  config: TaskManagerConfig = taskConfig(),
  available = () => 1_000,
) {
  const taskManager = await startTaskManager({
    config,
    token: TOKEN,
    job: countingJob(4, available),
    storage: () => store,
    host: "127.0.0.1",
    port: 0,
    log: silentLog,
    batchSize: 50,
  });
  running.push(taskManager);
  return taskManager;
}

function call(
  taskManager: RunningTaskManager,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = TOKEN,
) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return fetch(`${taskManager.url}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
}

function trigger(checkpointId: number, overrides: Record<string, unknown> = {}) {
  return {
    checkpointId,
    epoch: 3,
    taskIndex: 0,
    kind: "checkpoint",
    job: JOB,
    storage: { bucket: BUCKET, keyPrefix: taskPartsPrefix(location(checkpointId), 0) },
    deadline: Date.now() + 60_000,
    ...overrides,
  };
}

async function result(taskManager: RunningTaskManager, checkpointId: number, waitMs = 10_000) {
  const response = await call(taskManager, "GET", `/v1/checkpoints/${checkpointId}?epoch=3&waitMs=${waitMs}`);
  expect(response.status).toBe(200);
  return CheckpointResult.parse(await response.json());
}

async function status(taskManager: RunningTaskManager) {
  return TaskManagerStatus.parse(await (await call(taskManager, "GET", "/v1/status")).json());
}

describe("authentication", () => {
  test.each([
    ["no token", null],
    ["a wrong token", "wrong-token"],
    ["a token with a different length", `${TOKEN}x`],
  ])("%s gets 401 before the body or path is looked at, and nothing changes", async (_what, token) => {
    const store = new MemoryObjectStore(BUCKET);
    const taskManager = await start(store);
    await taskManager.ready;
    for (const [method, path, body] of [
      ["POST", "/v1/checkpoints/trigger", trigger(1)],
      ["POST", "/v1/checkpoints/trigger", "{not json"],
      ["GET", "/v1/checkpoints/1?epoch=3", undefined],
      ["POST", "/v1/no-such-endpoint", undefined],
      ["GET", "/v1/status", undefined],
    ] as const) {
      const response = await call(taskManager, method, path, body, token);
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe("Bearer");
      expect(await response.json()).toEqual({ error: "missing or invalid bearer token" });
    }
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=3")).status).toBe(404);
    expect(await store.list("")).toEqual([]);
  });

  test("health and readiness need no token and say only ok", async () => {
    const taskManager = await start(new MemoryObjectStore(BUCKET));
    await taskManager.ready;
    for (const path of ["/healthz", "/readyz"]) {
      const response = await fetch(`${taskManager.url}${path}`);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe("ok");
    }
  });
});

describe("validation and fencing", () => {
  test("a malformed body gets 400 naming every field, and takes no checkpoint", async () => {
    const store = new MemoryObjectStore(BUCKET);
    const taskManager = await start(store);
    await taskManager.ready;
    const response = await call(
      taskManager,
      "POST",
      "/v1/checkpoints/trigger",
      trigger(1, { checkpointId: "1", deadline: -1 }),
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toBe(
      "checkpointId: expected number, received string; deadline: Too small: expected number to be >=0",
    );
    const invalidJson = await call(taskManager, "POST", "/v1/checkpoints/trigger", "{not json");
    expect(invalidJson.status).toBe(400);
    expect(await invalidJson.json()).toEqual({ error: "(body): not valid JSON" });
    const badQuery = await call(taskManager, "GET", "/v1/checkpoints/1?epoch=three");
    expect(badQuery.status).toBe(400);
    expect(await badQuery.json()).toEqual({ error: "epoch: expected an epoch" });
    const mismatch = await call(taskManager, "POST", "/v1/checkpoints/2/complete", {
      checkpointId: 1,
      epoch: 3,
      manifestKey: "m",
    });
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toEqual({ error: "checkpointId: does not match the path (2)" });
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=3")).status).toBe(404);
    expect(await store.list("")).toEqual([]);
  });

  test("another epoch, another task or an older checkpoint gets 409 and changes nothing", async () => {
    const taskManager = await start(new MemoryObjectStore(BUCKET));
    await taskManager.ready;
    const older = await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1, { epoch: 2 }));
    expect(older.status).toBe(409);
    expect(await older.json()).toEqual({ error: "epoch 2 is not this TaskManager's epoch 3" });
    const otherTask = await call(
      taskManager,
      "POST",
      "/v1/checkpoints/trigger",
      trigger(1, { taskIndex: 1 }),
    );
    expect(otherTask.status).toBe(409);
    expect(await otherTask.json()).toEqual({ error: "task 1 addressed, this is task 0" });
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=2")).status).toBe(409);
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=3")).status).toBe(404);

    expect((await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(7))).status).toBe(202);
    const outOfOrder = await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(6));
    expect(outOfOrder.status).toBe(409);
    expect(await outOfOrder.json()).toEqual({
      error: "checkpoint 6 is older than checkpoint 7 already taken",
    });
    expect((await call(taskManager, "GET", "/v1/checkpoints/6?epoch=3")).status).toBe(404);
  });

  test("a newer epoch is refused and tells the TaskManager it has been replaced", async () => {
    const taskManager = await start(new MemoryObjectStore(BUCKET));
    await taskManager.ready;
    const response = await call(taskManager, "POST", "/v1/checkpoints/1/abort", {
      checkpointId: 1,
      epoch: 4,
      reason: "x",
    });
    expect(response.status).toBe(409);
    await expect(taskManager.terminated).resolves.toEqual({ reason: "replaced", epoch: 4 });
  });
});

describe("checkpoints", () => {
  test("trigger answers 202 at once, the long poll returns the ack, whose parts are stored with their sha256", async () => {
    const store = new MemoryObjectStore(BUCKET);
    const taskManager = await start(store, taskConfig(), () => 200);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 800);
    const response = await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1));
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ checkpointId: 1, epoch: 3, taskIndex: 0 });

    const answer = await result(taskManager, 1);
    if (answer.state !== "acknowledged") throw new Error(`expected an ack, got ${JSON.stringify(answer)}`);
    expect(answer.ack.sourceOffsets).toEqual({ "p-0": 200, "p-1": 200, "p-2": 200, "p-3": 200 });
    expect(answer.ack.parts).toHaveLength(1);
    const part = answer.ack.parts[0]!;
    expect(part.key).toBe(`${taskPartsPrefix(location(1), 0)}kg-0-11`);
    expect(part.keyGroupRange).toEqual({ start: 0, end: 11 });
    const bytes = await store.get(part.key);
    expect(part.sizeBytes).toBe(bytes.length);
    expect(part.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect((await store.get(stagedOutputKey(jobDirectory, 0, 1))).toString().split("\n")).toHaveLength(801);
    // Polling twice gives the same answer.
    expect(await result(taskManager, 1)).toEqual(answer);
  });

  test("the sink writes where the configuration's output names, the parts where the trigger says", async () => {
    const checkpoints = new MemoryObjectStore(BUCKET);
    const output = new MemoryObjectStore("sink-output");
    const outputPrefix = "elsewhere/orders/";
    const taskManager = await startTaskManager({
      config: { ...taskConfig(), output: { bucket: output.bucket, keyPrefix: outputPrefix } },
      token: TOKEN,
      job: countingJob(4, () => 5),
      storage: (bucket) => (bucket === output.bucket ? output : checkpoints),
      host: "127.0.0.1",
      port: 0,
      log: silentLog,
    });
    running.push(taskManager);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 20);
    await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1));
    expect((await result(taskManager, 1)).state).toBe("acknowledged");
    expect(await checkpoints.list(`${jobDirectory}chk-1/`)).toEqual([
      `${taskPartsPrefix(location(1), 0)}kg-0-11`,
    ]);
    expect(await output.list("")).toEqual([stagedOutputKey(outputPrefix, 0, 1)]);
    const complete = { checkpointId: 1, epoch: 3, manifestKey: `${jobDirectory}chk-1/_metadata` };
    expect((await call(taskManager, "POST", "/v1/checkpoints/1/complete", complete)).status).toBe(204);
    expect(await output.list("")).toEqual([committedOutputKey(outputPrefix, 0, 1)]);
    expect(await checkpoints.list(`${jobDirectory}output/`)).toEqual([]);
  });

  test("a repeated trigger is accepted without a second snapshot", async () => {
    let available = 10;
    const taskManager = await start(new MemoryObjectStore(BUCKET), taskConfig(), () => available);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 40);
    expect((await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1))).status).toBe(202);
    available = 20;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 80);
    expect((await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1))).status).toBe(202);
    const answer = await result(taskManager, 1);
    expect(answer.state === "acknowledged" && answer.ack.sourceOffsets["p-0"]).toBe(10);
  });

  test("the long poll holds an unfinished answer for waitMs, then answers as soon as it is final", async () => {
    const store = new GatedStore(BUCKET);
    const taskManager = await start(store);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed > 0);
    let release: () => void = () => undefined;
    store.hold = new Promise((resolve) => (release = resolve));
    expect((await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1))).status).toBe(202);

    const started = Date.now();
    expect(await result(taskManager, 1, 300)).toEqual({
      state: "in_progress",
      checkpointId: 1,
      epoch: 3,
      taskIndex: 0,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect((await result(taskManager, 1, 0)).state).toBe("in_progress");

    const polling = result(taskManager, 1, 20_000);
    setTimeout(release, 200);
    const pollStarted = Date.now();
    expect((await polling).state).toBe("acknowledged");
    expect(Date.now() - pollStarted).toBeLessThan(5_000);
  });

  test("complete commits the sink output, is idempotent, and forgets the result", async () => {
    const store = new MemoryObjectStore(BUCKET);
    const taskManager = await start(store, taskConfig(), () => 5);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 20);
    expect((await status(taskManager)).highestTriggeredCheckpointId).toBeNull();
    await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1));
    expect((await result(taskManager, 1)).state).toBe("acknowledged");
    // Triggered, not yet complete: a resuming coordinator must start its ids above 1.
    expect(await status(taskManager)).toMatchObject({
      highestTriggeredCheckpointId: 1,
      lastCompletedCheckpointId: null,
    });
    const complete = { checkpointId: 1, epoch: 3, manifestKey: `${jobDirectory}chk-1/_metadata` };
    expect((await call(taskManager, "POST", "/v1/checkpoints/1/complete", complete)).status).toBe(204);
    expect((await call(taskManager, "POST", "/v1/checkpoints/1/complete", complete)).status).toBe(204);
    const committed = (await store.get(committedOutputKey(jobDirectory, 0, 1))).toString().trim().split("\n");
    expect(committed).toHaveLength(20);
    expect(new Set(committed).size).toBe(20);
    expect(await store.list(`${jobDirectory}output/staging/`)).toEqual([]);
    expect((await status(taskManager)).lastCompletedCheckpointId).toBe(1);
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=3")).status).toBe(404);
  });

  test("abort forgets the checkpoint, is idempotent, and its output goes with the next checkpoint", async () => {
    const store = new MemoryObjectStore(BUCKET);
    let available = 3;
    const taskManager = await start(store, taskConfig(), () => available);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 12);
    await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1));
    const abort = { checkpointId: 1, epoch: 3, reason: "checkpoint 1 expired" };
    expect((await call(taskManager, "POST", "/v1/checkpoints/1/abort", abort)).status).toBe(204);
    expect((await call(taskManager, "POST", "/v1/checkpoints/1/abort", abort)).status).toBe(204);
    expect(
      (await call(taskManager, "POST", "/v1/checkpoints/9/abort", { ...abort, checkpointId: 9 })).status,
    ).toBe(204);
    expect((await call(taskManager, "GET", "/v1/checkpoints/1?epoch=3")).status).toBe(404);

    available = 5;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed === 20);
    await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(2));
    expect((await result(taskManager, 2)).state).toBe("acknowledged");
    await call(taskManager, "POST", "/v1/checkpoints/2/complete", {
      checkpointId: 2,
      epoch: 3,
      manifestKey: "m",
    });
    const lines = [
      ...(await store.get(committedOutputKey(jobDirectory, 0, 1))).toString().trim().split("\n"),
      ...(await store.get(committedOutputKey(jobDirectory, 0, 2))).toString().trim().split("\n"),
    ];
    expect(lines.filter((line) => line.startsWith("p-0 "))).toEqual([
      "p-0 1",
      "p-0 2",
      "p-0 3",
      "p-0 4",
      "p-0 5",
    ]);
  });

  test("an upload past the deadline is declined with the reason", async () => {
    const store = new GatedStore(BUCKET);
    store.hold = new Promise(() => undefined);
    const taskManager = await start(store);
    await taskManager.ready;
    await waitUntil(async () => (await status(taskManager)).recordsProcessed > 0);
    await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(1, { deadline: Date.now() - 10_000 }));
    const answer = await result(taskManager, 1);
    expect(answer.state).toBe("declined");
    expect(answer.state === "declined" && answer.decline.reason).toMatch(/deadline .* has passed/);
  });
});

describe("start-up", () => {
  test("restores state and offsets before it is ready, and refuses triggers while restoring", async () => {
    const store = new GatedStore(BUCKET);
    const states = filledStates(0, 2, 12);
    states.forEach((state) => {
      for (let i = 0; i < 4; i++) if (state.owns(`p-${i}`)) state.put(`p-${i}`, 7);
    });
    const { manifestKey } = await writeCheckpoint(store, 5, states, {
      "p-0": 7,
      "p-1": 7,
      "p-2": 7,
      "p-3": 7,
    });
    let release: () => void = () => undefined;
    store.hold = new Promise((resolve) => (release = resolve));
    const taskManager = await start(
      store,
      taskConfig({ restoreFrom: { checkpointId: 5, bucket: BUCKET, manifestKey } }),
      () => 7,
    );
    expect((await fetch(`${taskManager.url}/readyz`)).status).toBe(503);
    const early = await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(6));
    expect(early.status).toBe(503);
    expect(await early.json()).toEqual({ error: "not ready: restoring from checkpoint 5" });
    release();
    await taskManager.ready;
    expect(await status(taskManager)).toMatchObject({
      ready: true,
      restoredFromCheckpointId: 5,
      lastCompletedCheckpointId: 5,
      highestTriggeredCheckpointId: 5,
      recordsProcessed: 0,
    });
    const stale = await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(5));
    expect(stale.status).toBe(409);
  });

  test("a corrupt part makes start-up fail naming the part, and the TaskManager never becomes ready", async () => {
    const store = new MemoryObjectStore(BUCKET);
    const { manifestKey, manifest } = await writeCheckpoint(store, 5, filledStates(50, 1, 12));
    const part = manifest.parts[0]!;
    await store.put(part.key, Buffer.concat([await store.get(part.key), Buffer.from("x")]));
    const taskManager = await start(
      store,
      taskConfig({ restoreFrom: { checkpointId: 5, bucket: BUCKET, manifestKey } }),
    );
    await expect(taskManager.ready).rejects.toThrow(`restore: part s3://streamjob/${part.key} size mismatch`);
    expect((await fetch(`${taskManager.url}/readyz`)).status).toBe(503);
    expect((await status(taskManager)).ready).toBe(false);
  });
});
