// Real TaskManager processes (`node dist/taskmanager/main.js`) against the test cluster's real MinIO,
// driven through the HTTP protocol from the test, playing the coordinator's part.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import path from "node:path";
import { keyGroupRangeForTask } from "../../src/api/key-groups.js";
import { manifestKey, taskPartsPrefix } from "../../src/api/object-layout.js";
import {
  CheckpointManifest,
  CheckpointResult,
  TaskManagerStatus,
  type CheckpointAck,
  type TaskManagerConfig,
} from "../../src/api/protocol.js";
import {
  ensureBucket,
  MinioObjectStore,
  storageConfigFromSecret,
  type StorageConfig,
} from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { clients, repoRoot, waitFor } from "./support/cluster.js";

const BUCKET = "streamjob";
const TOKEN = randomBytes(24).toString("hex");
const JOB = { namespace: "default", name: `tm-${randomBytes(3).toString("hex")}` };
const MAX_PARALLELISM = 16;
const location = (checkpointId: number) => ({
  basePrefix: "checkpoints",
  namespace: JOB.namespace,
  name: JOB.name,
  kind: "checkpoint" as const,
  checkpointId,
});
const jobDirectory = `checkpoints/${JOB.namespace}/${JOB.name}/`;

let storage: StorageConfig;
let store: MinioObjectStore;
const started: TaskManagerProcess[] = [];

beforeAll(async () => {
  const secret = await clients().core.readNamespacedSecret({
    name: "streamjob-storage",
    namespace: "default",
  });
  storage = storageConfigFromSecret(
    Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, "base64").toString()]),
    ),
  );
  store = new MinioObjectStore({ ...storage, bucket: BUCKET });
  await ensureBucket(store);
});

afterAll(async () => {
  for (const taskManager of started)
    if (taskManager.exitCode === undefined) taskManager.child.kill("SIGKILL");
  await store.delete(await store.list(jobDirectory));
});

interface TaskManagerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exitCode: number | null | undefined;
  exited: Promise<number | null>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function startTaskManager(
  parallelism: number,
  taskIndex: number,
  epoch: number,
  restoreFrom?: TaskManagerConfig["restoreFrom"],
): Promise<TaskManagerProcess> {
  const port = await freePort();
  const config: TaskManagerConfig = {
    protocolVersion: "v1",
    job: JOB,
    program: { name: "sequence", args: ["--keys", "24", "--rate", "200"] },
    epoch,
    parallelism,
    maxParallelism: MAX_PARALLELISM,
    taskIndex,
    keyGroupRange: keyGroupRangeForTask(MAX_PARALLELISM, parallelism, taskIndex),
    port,
    storage: { endpoint: storage.endpoint, region: storage.region },
    ...(restoreFrom === undefined ? {} : { restoreFrom }),
  };
  const child = spawn(process.execPath, [path.join(repoRoot, "dist", "taskmanager", "main.js")], {
    env: {
      PATH: process.env.PATH,
      STREAMJOB_TASKMANAGER_CONFIG: JSON.stringify(config),
      STREAMJOB_TOKEN: TOKEN,
      STREAMJOB_S3_ACCESS_KEY: storage.accessKey,
      STREAMJOB_S3_SECRET_KEY: storage.secretKey,
      POD_IP: "127.0.0.1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const taskManager: TaskManagerProcess = {
    child,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exitCode: undefined,
    exited: new Promise((resolve) =>
      child.once("exit", (code) => {
        taskManager.exitCode = code;
        resolve(code);
      }),
    ),
  };
  started.push(taskManager);
  return taskManager;
}

async function ready(taskManager: TaskManagerProcess): Promise<void> {
  await waitFor(
    `TaskManager at ${taskManager.url} ready`,
    async () => {
      if (taskManager.exitCode !== undefined) {
        throw new Error(`exited ${taskManager.exitCode}: ${taskManager.output()}`);
      }
      return (await fetch(`${taskManager.url}/readyz`)).status === 200;
    },
    60_000,
  );
}

function call(
  taskManager: TaskManagerProcess,
  method: string,
  urlPath: string,
  body?: unknown,
  token = TOKEN,
) {
  return fetch(`${taskManager.url}${urlPath}`, {
    method,
    headers: {
      "content-type": "application/json",
      ...(token === "" ? {} : { authorization: `Bearer ${token}` }),
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
}

async function status(taskManager: TaskManagerProcess): Promise<TaskManagerStatus> {
  return TaskManagerStatus.parse(await (await call(taskManager, "GET", "/v1/status")).json());
}

function trigger(checkpointId: number, epoch: number, taskIndex: number) {
  return {
    checkpointId,
    epoch,
    taskIndex,
    kind: "checkpoint",
    job: JOB,
    storage: { bucket: BUCKET, keyPrefix: taskPartsPrefix(location(checkpointId), taskIndex) },
    deadline: Date.now() + 60_000,
  };
}

/** The coordinator's part: trigger every task, collect acks, write the manifest, notify complete. */
async function checkpoint(taskManagers: TaskManagerProcess[], checkpointId: number, epoch: number) {
  const triggeredAt = Date.now();
  for (const [taskIndex, taskManager] of taskManagers.entries()) {
    const response = await call(
      taskManager,
      "POST",
      "/v1/checkpoints/trigger",
      trigger(checkpointId, epoch, taskIndex),
    );
    expect(response.status).toBe(202);
  }
  const acks: CheckpointAck[] = [];
  for (const taskManager of taskManagers) {
    const response = await call(
      taskManager,
      "GET",
      `/v1/checkpoints/${checkpointId}?epoch=${epoch}&waitMs=20000`,
    );
    expect(response.status).toBe(200);
    const result = CheckpointResult.parse(await response.json());
    if (result.state !== "acknowledged") throw new Error(`expected an ack, got ${JSON.stringify(result)}`);
    acks.push(result.ack);
  }
  const manifest = CheckpointManifest.parse({
    manifestVersion: 1,
    checkpointId,
    kind: "checkpoint",
    job: JOB,
    epoch,
    parallelism: taskManagers.length,
    maxParallelism: MAX_PARALLELISM,
    triggeredAt,
    completedAt: Date.now(),
    tasks: acks.map((ack) => ({
      taskIndex: ack.taskIndex,
      keyGroupRange: keyGroupRangeForTask(MAX_PARALLELISM, taskManagers.length, ack.taskIndex),
      syncDurationMs: ack.syncDurationMs,
      asyncDurationMs: ack.asyncDurationMs,
    })),
    parts: acks.flatMap((ack) => ack.parts.map((part) => ({ ...part, taskIndex: ack.taskIndex }))),
    sourceOffsets: Object.assign({}, ...acks.map((ack) => ack.sourceOffsets)) as Record<string, number>,
  });
  const key = manifestKey(location(checkpointId));
  await store.put(key, Buffer.from(JSON.stringify(manifest)));
  for (const taskManager of taskManagers) {
    const response = await call(taskManager, "POST", `/v1/checkpoints/${checkpointId}/complete`, {
      checkpointId,
      epoch,
      manifestKey: key,
    });
    expect(response.status).toBe(204);
  }
  return { manifest, manifestKey: key, acks };
}

async function stop(taskManager: TaskManagerProcess): Promise<void> {
  taskManager.child.kill("SIGTERM");
  expect(await taskManager.exited).toBe(0);
}

test("tasks checkpoint to MinIO, restore 2 → 3 with exactly-once output, and refuse a corrupted part", async () => {
  const epoch1 = [await startTaskManager(2, 0, 1), await startTaskManager(2, 1, 1)];
  await Promise.all(epoch1.map(ready));

  // 401 without a token and 400 for a malformed body change nothing.
  const unauthenticated = await call(epoch1[0]!, "POST", "/v1/checkpoints/trigger", trigger(1, 1, 0), "");
  expect(unauthenticated.status).toBe(401);
  const malformed = await call(epoch1[0]!, "POST", "/v1/checkpoints/trigger", {
    ...trigger(1, 1, 0),
    epoch: "1",
  });
  expect(malformed.status).toBe(400);
  expect(await malformed.json()).toEqual({ error: "epoch: expected number, received string" });
  expect((await call(epoch1[0]!, "GET", "/v1/checkpoints/1?epoch=1")).status).toBe(404);
  expect(await store.list(jobDirectory)).toEqual([]);

  await waitFor("records processed", async () => (await status(epoch1[0]!)).recordsProcessed > 200);
  const first = await checkpoint(epoch1, 1, 1);
  // Every acked part exists in MinIO with the acked size and sha256.
  expect(first.manifest.parts.length).toBe(2);
  for (const part of first.manifest.parts) {
    const bytes = await store.get(part.key);
    expect(bytes.length).toBe(part.sizeBytes);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(part.sha256);
  }
  expect(Object.keys(first.manifest.sourceOffsets)).toHaveLength(24);
  const second = await checkpoint(epoch1, 2, 1);
  expect((await status(epoch1[1]!)).lastCompletedCheckpointId).toBe(2);
  // Checkpoint 3 is staged, never completed: a restore from 2 must discard its output.
  for (const [taskIndex, taskManager] of epoch1.entries()) {
    expect(
      (await call(taskManager, "POST", "/v1/checkpoints/trigger", trigger(3, 1, taskIndex))).status,
    ).toBe(202);
    const answer = await call(taskManager, "GET", `/v1/checkpoints/3?epoch=1&waitMs=20000`);
    expect(CheckpointResult.parse(await answer.json()).state).toBe("acknowledged");
  }
  await Promise.all(epoch1.map(stop));

  // Epoch 2: three tasks restore checkpoint 2, taken by two.
  const restoreFrom = { checkpointId: 2, bucket: BUCKET, manifestKey: second.manifestKey };
  const epoch2 = [0, 1, 2].map((taskIndex) => startTaskManager(3, taskIndex, 2, restoreFrom));
  const tasks2 = await Promise.all(epoch2);
  await Promise.all(tasks2.map(ready));
  for (const taskManager of tasks2) {
    expect(await status(taskManager)).toMatchObject({
      ready: true,
      restoredFromCheckpointId: 2,
      lastCompletedCheckpointId: 2,
    });
  }
  await waitFor(
    "records processed after restore",
    async () => (await status(tasks2[0]!)).recordsProcessed > 100,
  );
  const fourth = await checkpoint(tasks2, 4, 2);
  const restoredOffsets = second.manifest.sourceOffsets;
  for (const [partition, offset] of Object.entries(fourth.manifest.sourceOffsets)) {
    expect(offset).toBeGreaterThanOrEqual(restoredOffsets[partition] ?? 0);
  }
  await Promise.all(tasks2.map(stop));

  const report = await verifySequenceOutput(store, jobDirectory);
  expect(report.problems).toEqual([]);
  expect(report.lastValues.size).toBe(24);
  for (const [key, value] of report.lastValues) expect(value).toBe(fourth.manifest.sourceOffsets[key]);

  // A part changed in MinIO (its index line, which every ranged restore reads first): a TaskManager
  // restoring that checkpoint refuses to start, naming it.
  const part = fourth.manifest.parts[1]!;
  const bytes = await store.get(part.key);
  bytes[bytes.length - 2] = bytes[bytes.length - 2] === 0x30 ? 0x31 : 0x30;
  await store.put(part.key, bytes);
  const refused = await startTaskManager(1, 0, 3, {
    checkpointId: 4,
    bucket: BUCKET,
    manifestKey: fourth.manifestKey,
  });
  expect(await refused.exited).toBe(1);
  expect(refused.output()).toContain(
    `restore: unreadable part s3://${BUCKET}/${part.key} at byte ${part.index!.offset}: index sha256 mismatch: expected ${part.index!.sha256}`,
  );
  // Nothing was committed by the refused start.
  expect((await verifySequenceOutput(store, jobDirectory)).records).toBe(report.records);
});
