// A job run without Kubernetes: real TaskManager processes (dist/taskmanager/main.js, or the
// TaskManager image under podman), each on its own loopback address, and the real checkpoint
// coordinator in this process, against the real MinIO. Integration tests and benchmarks of the checkpointing core use it; the operator does
// the same thing through pods.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { keyGroupRangeForTask } from "../../src/api/key-groups.js";
import { jobDirectory } from "../../src/api/object-layout.js";
import { PROTOCOL_VERSION, type CheckpointManifest, type TaskManagerConfig } from "../../src/api/protocol.js";
import {
  CheckpointCoordinator,
  type CompletedCheckpoint,
  type CoordinatorEvents,
} from "../../src/coordinator/checkpoint-coordinator.js";
import { CheckpointIdCounter } from "../../src/coordinator/checkpoint-id-counter.js";
import { latestCompletedCheckpoint } from "../../src/coordinator/completed-checkpoints.js";
import { HttpTaskManagerClient } from "../../src/coordinator/http-task-manager-client.js";
import { systemTimers, type TaskManagerClient } from "../../src/coordinator/interfaces.js";
import type { SchedulerPolicy } from "../../src/coordinator/scheduler.js";
import type { MinioObjectStore, StorageConfig } from "../../src/storage/minio-object-store.js";
import { ObjectSnapshotStore } from "../../src/storage/snapshot-store.js";
import { TASKMANAGER_PORT } from "../../src/operator/desired.js";
import { containerEnv } from "../../src/images/podman.js";
import { repoRoot } from "./local-cluster.js";

const entryPoint = path.join(repoRoot, "dist", "taskmanager", "main.js");
// 127.3.x.y: apart from the node agent's pod addresses (127.1.x.y); x is random per process so
// two test or benchmark processes do not hand out the same address.
const addressBlock = Math.floor(Math.random() * 250);
let nextAddress = 0;

function nextLoopbackAddress(): string {
  const n = nextAddress++;
  return `127.3.${(addressBlock + Math.floor(n / 250)) % 250}.${(n % 250) + 1}`;
}

export class TaskManagerProcess {
  readonly exited: Promise<number>;
  private exitCode: number | null = null;

  constructor(
    readonly taskIndex: number,
    readonly url: string,
    readonly process: ChildProcess,
    readonly log: string,
    /** Set when the TaskManager runs as a container: signals go to it, not to the podman client. */
    readonly container?: string,
  ) {
    this.exited = new Promise((resolve) =>
      process.once("exit", (code, signal) => resolve((this.exitCode = code ?? (signal ? 128 : 1)))),
    );
  }

  get running(): boolean {
    return this.exitCode === null;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number> {
    if (this.running) {
      if (this.container)
        spawnSync("podman", ["kill", `--signal=${signal}`, this.container], { env: containerEnv() });
      else this.process.kill(signal);
    }
    return this.exited;
  }

  output(): string {
    return readFileSync(this.log, "utf8");
  }
}

export interface LocalJobOptions {
  name?: string;
  program: { name: string; args: string[] };
  parallelism: number;
  maxParallelism: number;
  store: MinioObjectStore;
  storage: StorageConfig;
  basePrefix?: string;
  policy?: Partial<SchedulerPolicy>;
  retained?: number;
  tolerableFailures?: number;
  events?: Partial<CoordinatorEvents>;
  /** The folder each TaskManager's output goes to (a file per task and epoch). */
  logDir: string;
  /** Node options for each TaskManager process (a bench's `--cpu-prof`). */
  execArgv?: string[];
  /**
   * Runs each TaskManager from this image (podman, host network) with the restricted pod's
   * settings: uid 65532, read-only root, no capabilities, no privilege escalation, a tmpfs /tmp.
   */
  image?: string;
  /** Lets a test stand between the coordinator and a TaskManager. */
  wrapClient?: (client: TaskManagerClient, taskManager: TaskManagerProcess) => TaskManagerClient;
}

export interface Deployment {
  epoch: number;
  parallelism: number;
  program: { name: string; args: string[] };
  restoreFrom?: { checkpointId: number; manifestKey: string };
}

export class LocalJob {
  readonly job: { namespace: string; name: string };
  readonly token = randomBytes(24).toString("base64url");
  readonly snapshots: ObjectSnapshotStore;
  readonly completed: CompletedCheckpoint[] = [];
  readonly ids = CheckpointIdCounter.resume(null, []);
  taskManagers: TaskManagerProcess[] = [];
  coordinator?: CheckpointCoordinator;
  deployment?: Deployment;

  constructor(private readonly options: LocalJobOptions) {
    this.job = { namespace: "local", name: options.name ?? `job-${randomBytes(3).toString("hex")}` };
    this.snapshots = new ObjectSnapshotStore(options.store, this.basePrefix);
  }

  get basePrefix(): string {
    return this.options.basePrefix ?? "checkpoints";
  }

  /** Where the job's checkpoints and sink output live in the bucket. */
  get directory(): string {
    return jobDirectory(this.basePrefix, this.job.namespace, this.job.name);
  }

  /** Starts TaskManagers for the deployment (waiting until each is ready) and a coordinator. */
  async deploy(deployment: Deployment): Promise<void> {
    this.deployment = deployment;
    const spawned = Array.from({ length: deployment.parallelism }, (_, i) =>
      this.startTaskManager(deployment, i),
    );
    // As the operator does: the epoch's peers, for a dataflow's exchange, before anyone is ready.
    const peers = spawned.map((tm) => ({ taskIndex: tm.taskIndex, url: tm.url }));
    const starting = spawned.map(async (tm) => {
      const client = new HttpTaskManagerClient({
        taskIndex: tm.taskIndex,
        baseUrl: tm.url,
        token: this.token,
      });
      await waitUntilReady(tm, client, deployment.epoch, () =>
        client.setPeers({ epoch: deployment.epoch, peers }),
      );
      return tm;
    });
    const started = await Promise.allSettled(starting);
    const failed = started.find((s) => s.status === "rejected");
    this.taskManagers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    if (failed) {
      // The ones that did start must not outlive a failed deployment.
      await Promise.all(spawned.map((tm) => tm.kill()));
      this.taskManagers = [];
      throw failed.reason;
    }
    const policy: SchedulerPolicy = {
      intervalMs: 1000,
      timeoutMs: 10_000,
      minPauseMs: 0,
      maxConcurrent: 1,
      ...this.options.policy,
    };
    this.coordinator = new CheckpointCoordinator({
      job: this.job,
      epoch: deployment.epoch,
      parallelism: deployment.parallelism,
      maxParallelism: this.options.maxParallelism,
      storage: { bucket: this.options.store.bucket, basePrefix: this.basePrefix },
      policy,
      retained: this.options.retained ?? 3,
      tolerableFailures: this.options.tolerableFailures ?? 10,
      tasks: this.taskManagers.map((tm) => {
        const client = new HttpTaskManagerClient({
          taskIndex: tm.taskIndex,
          baseUrl: tm.url,
          token: this.token,
        });
        return this.options.wrapClient?.(client, tm) ?? client;
      }),
      store: this.snapshots,
      ids: this.ids,
      clock: { now: () => Date.now() },
      timers: systemTimers,
      log: pino({ level: "silent" }),
      latestCompletedId: deployment.restoreFrom?.checkpointId ?? null,
      events: {
        ...this.options.events,
        onCompleted: async (checkpoint) => {
          this.completed.push(checkpoint);
          await this.options.events?.onCompleted?.(checkpoint);
        },
      },
    });
  }

  /** Stops the coordinator and every TaskManager (SIGTERM), as a redeploy does. */
  async stop(): Promise<void> {
    await this.coordinator?.stop("the job is being redeployed");
    await Promise.all(this.taskManagers.map((tm) => tm.kill("SIGTERM")));
  }

  /** A new epoch from the given checkpoint, possibly with another parallelism or program. */
  async redeploy(change: Partial<Omit<Deployment, "epoch">>): Promise<void> {
    const previous = this.deployment!;
    await this.stop();
    await this.deploy({ ...previous, restoreFrom: undefined, ...change, epoch: previous.epoch + 1 });
  }

  /**
   * What a failure calls for: stop everything, and only then pick the newest completed checkpoint
   * (a checkpoint that was committing can still complete until the coordinator has stopped) and
   * redeploy from it.
   */
  async restartFromLatestCheckpoint(): Promise<number> {
    await this.stop();
    const { latest } = await latestCompletedCheckpoint(this.snapshots, this.job);
    if (latest === null) throw new Error("no completed checkpoint to restart from");
    await this.redeploy({
      restoreFrom: { checkpointId: latest.checkpointId, manifestKey: latest.manifestKey },
    });
    return latest.checkpointId;
  }

  /** Triggers a checkpoint now; resolves with it once completed, rejects when it was aborted. */
  async completedCheckpoint(): Promise<CompletedCheckpoint> {
    const outcome = await this.coordinator!.triggerCheckpoint();
    if (outcome.state !== "completed") throw new Error(`checkpoint aborted: ${outcome.reason}`);
    return outcome.checkpoint;
  }

  async manifest(checkpointId: number): Promise<CheckpointManifest> {
    const completed = this.completed.find((c) => c.checkpointId === checkpointId);
    const manifest = completed && (await this.snapshots.getManifest(completed.manifestKey));
    if (!manifest) throw new Error(`no manifest for checkpoint ${checkpointId}`);
    return manifest;
  }

  private startTaskManager(deployment: Deployment, taskIndex: number): TaskManagerProcess {
    const address = nextLoopbackAddress();
    const config: TaskManagerConfig = {
      protocolVersion: PROTOCOL_VERSION,
      job: this.job,
      program: deployment.program,
      epoch: deployment.epoch,
      parallelism: deployment.parallelism,
      maxParallelism: this.options.maxParallelism,
      taskIndex,
      keyGroupRange: keyGroupRangeForTask(this.options.maxParallelism, deployment.parallelism, taskIndex),
      port: TASKMANAGER_PORT,
      storage: { endpoint: this.options.storage.endpoint, region: this.options.storage.region },
      ...(deployment.restoreFrom
        ? { restoreFrom: { ...deployment.restoreFrom, bucket: this.options.store.bucket } }
        : {}),
    };
    const { logDir } = this.options;
    mkdirSync(logDir, { recursive: true });
    const log = path.join(logDir, `${this.job.name}-e${deployment.epoch}-t${taskIndex}.log`);
    const fd = openSync(log, "w");
    const env = {
      POD_IP: address,
      STREAMJOB_TASKMANAGER_CONFIG: JSON.stringify(config),
      STREAMJOB_TOKEN: this.token,
      STREAMJOB_S3_ACCESS_KEY: this.options.storage.accessKey,
      STREAMJOB_S3_SECRET_KEY: this.options.storage.secretKey,
    };
    const container = this.options.image && `${this.job.name}-e${deployment.epoch}-t${taskIndex}`;
    const child = container
      ? spawn(
          "podman",
          [
            "run",
            "--rm",
            `--name=${container}`,
            "--network=host",
            "--user=65532:65532",
            "--read-only",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            // Names only: podman takes the values from its own environment, so none is in its arguments.
            ...Object.keys(env).map((name) => `--env=${name}`),
            this.options.image!,
          ],
          { env: { ...containerEnv(), ...env }, stdio: ["ignore", fd, fd] },
        )
      : spawn(process.execPath, [...(this.options.execArgv ?? []), entryPoint], {
          env: { PATH: process.env.PATH, ...env },
          stdio: ["ignore", fd, fd],
        });
    closeSync(fd);
    return new TaskManagerProcess(
      taskIndex,
      `http://${address}:${TASKMANAGER_PORT}`,
      child,
      log,
      container || undefined,
    );
  }
}

/**
 * Ready means this very TaskManager answers: its authenticated status names our epoch and task.
 * `givePeers` is repeated until it succeeds, as the operator repeats it.
 */
async function waitUntilReady(
  tm: TaskManagerProcess,
  client: HttpTaskManagerClient,
  epoch: number,
  givePeers: () => Promise<void>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let peersGiven = false;
  while (Date.now() < deadline) {
    if (!tm.running)
      throw new Error(`TaskManager ${tm.taskIndex} exited during start-up:\n${tm.output().slice(-2000)}`);
    try {
      if (!peersGiven) peersGiven = await givePeers().then(() => true);
      const status = await client.status();
      if (status.ready && status.epoch === epoch && status.taskIndex === tm.taskIndex) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await tm.kill();
  throw new Error(
    `TaskManager ${tm.taskIndex} not ready after ${timeoutMs} ms:\n${tm.output().slice(-2000)}`,
  );
}
