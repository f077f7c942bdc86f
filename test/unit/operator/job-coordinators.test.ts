// The operator's side of the coordinator with fakes: which aborts count as failures (status counts,
// metric, events), prompt stops, and status writes conditional on what they read, merged again when
// another writer came first (a stale operator process beside its replacement).
import { pino } from "pino";
import type { StreamJob } from "../../../src/api/streamjob.js";
import { jobKey, JobCoordinators, type CheckpointStatus } from "../../../src/operator/job-coordinators.js";
import type { EventInput } from "../../../src/operator/kube-gateway.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { ObservedPod } from "../../../src/operator/planner.js";
import { MemoryObjectStore } from "../../../src/storage/memory-object-store.js";
import { ObjectSnapshotStore } from "../../../src/storage/snapshot-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { FakeTaskManager } from "../support/fake-task-managers.js";
import { waitUntil } from "../support/wait.js";
import { streamJob } from "./fixtures.js";

/** The StreamJob as the API server keeps it: a resourceVersion that moves with every write. */
class FakeApiServer {
  resourceVersion = 1;
  uid: string;
  status: CheckpointStatus;
  readonly writes: CheckpointStatus[] = [];
  reads = 0;
  /** Runs before a write is checked: another writer coming in between. */
  interloper?: () => void;

  constructor(job: StreamJob, status: CheckpointStatus = {}) {
    this.uid = job.metadata.uid!;
    this.status = status;
  }

  write(status: CheckpointStatus): void {
    this.status = { ...this.status, ...status };
    this.resourceVersion += 1;
  }

  get(): unknown {
    this.reads += 1;
    return structuredClone({
      metadata: { uid: this.uid, resourceVersion: String(this.resourceVersion) },
      status: this.status,
    });
  }

  patch(status: CheckpointStatus, resourceVersion: string): string {
    const interloper = this.interloper;
    this.interloper = undefined;
    interloper?.();
    if (resourceVersion !== String(this.resourceVersion)) {
      throw Object.assign(new Error("the object has been modified"), { code: 409 });
    }
    this.write(status);
    this.writes.push(status);
    return String(this.resourceVersion);
  }
}

function setup(status: CheckpointStatus = {}, recordedId = 0) {
  const job = streamJob({ parallelism: 2 });
  const api = new FakeApiServer(job, status);
  const clock = new FakeClock();
  const objects = new MemoryObjectStore("streamjob");
  const journal: string[] = [];
  const tasks = [0, 1].map((i) => new FakeTaskManager(i, 2, job.spec.maxParallelism, objects, journal));
  const events: EventInput[] = [];
  const metrics = new OperatorMetrics();
  const coordinators = new JobCoordinators({
    gateway: {
      getStreamJob: async () => api.get(),
      patchStatus: async (_namespace, _name, patch, resourceVersion) => {
        const written = api.patch(patch, resourceVersion ?? "");
        journal.push(`status ${JSON.stringify(patch)}`);
        return written;
      },
      recordEvent: async (event) => void events.push(event),
    },
    connect: ({ taskIndex }) => tasks[taskIndex]!,
    enqueue: () => {},
    metrics,
    log: pino({ level: "silent" }),
    now: () => clock.now(),
    timers: clock,
  });
  const pods: ObservedPod[] = [0, 1].map((taskIndex) => ({
    name: `orders-1-${taskIndex}`,
    podIP: `127.9.0.${taskIndex + 1}`,
    epoch: 1,
    taskIndex,
    phase: "Running",
    ready: true,
    readySince: 0,
    createdAt: 0,
    deleting: false,
  }));
  const start = () =>
    coordinators.start(
      {
        job,
        epoch: 1,
        parallelism: 2,
        pods,
        token: "t",
        store: new ObjectSnapshotStore(objects, job.spec.checkpoint.storage.prefix),
        bucket: "streamjob",
      },
      async () => ({ recordedId, storedIds: [], leftoverIds: [] }),
    );
  const key = jobKey({ namespace: "default", name: job.metadata.name! });
  const failedMetric = async () =>
    (await metrics.checkpointsFailed.get()).values.map(({ labels, value }) => ({ ...labels, value }));
  return { job, api, clock, tasks, journal, events, coordinators, start, key, failedMetric, metrics };
}

test("a checkpoint cut short by a stop is no failure: no count, no metric, no event, and the stop is prompt", async () => {
  const { api, clock, tasks, events, coordinators, start, key, failedMetric } = setup({
    checkpointCounts: { completed: 4, failed: 2 },
  });
  tasks[1]!.behaviour = "hang-until-cancelled";
  await start();
  clock.advance(0); // the first periodic checkpoint is due at once
  await waitUntil(() => tasks[1]!.calls.includes("result 1"));

  const started = performance.now();
  expect(await coordinators.stop(key, "the StreamJob is being upgraded")).toBe(true);
  expect(performance.now() - started).toBeLessThan(1_000);
  expect(api.writes).toEqual([]);
  expect(api.status.checkpointCounts).toEqual({ completed: 4, failed: 2 });
  expect(await failedMetric()).toEqual([]);
  expect(events).toEqual([]);
  expect(coordinators.checkpointFailureOf(key)).toBeUndefined();
});

test("a failed checkpoint is counted on top of the stored counts, with its cause in the metric and a Warning", async () => {
  const { api, clock, tasks, events, coordinators, start, key, failedMetric } = setup({
    checkpointCounts: { completed: 4, failed: 2 },
  });
  tasks[0]!.behaviour = "decline";
  await start();
  clock.advance(0);
  await waitUntil(() => api.writes.length === 1 && events.length === 1);
  expect(api.status.checkpointCounts).toEqual({ completed: 4, failed: 3 });
  expect(await failedMetric()).toEqual([
    { namespace: "default", name: "orders", kind: "checkpoint", cause: "declined", value: 1 },
  ]);
  expect(events[0]).toMatchObject({ type: "Warning", reason: "CheckpointFailed" });
  expect(coordinators.checkpointFailureOf(key)).toContain("declined checkpoint 1");
  await coordinators.stop(key, "test over");
});

test("a status write refused because another writer came first is merged again: nothing goes back, notify waits", async () => {
  const stale = {
    id: 5,
    path: "chk-5/_metadata",
    completedAt: "2025-01-01T00:00:00.000Z",
    durationMs: 9,
    sizeBytes: 1,
  };
  const { api, clock, journal, coordinators, start, key } = setup(
    { latestCheckpoint: stale, checkpointCounts: { completed: 10, failed: 35 } },
    5,
  );
  await start();
  // Between our read and our write, the newer operator records a failure and checkpoint 9.
  api.interloper = () =>
    api.write({
      latestCheckpoint: { ...stale, id: 9, path: "chk-9/_metadata" },
      checkpointCounts: { completed: 11, failed: 36 },
    });
  clock.advance(0);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 6")));

  expect(api.status.checkpointCounts).toEqual({ completed: 12, failed: 36 });
  expect(api.status.latestCheckpoint?.id).toBe(9);
  const recorded = journal.findIndex((line) => line.startsWith("status"));
  const notified = journal.filter((line) => line.endsWith("complete 6")).map((line) => journal.indexOf(line));
  expect(recorded).toBeGreaterThanOrEqual(0);
  for (const at of notified) expect(at).toBeGreaterThan(recorded);
  await coordinators.stop(key, "test over");
});

test("a newer checkpoint replaces the stored record", async () => {
  const { api, clock, journal, coordinators, start, key } = setup({
    checkpointCounts: { completed: 1, failed: 0 },
  });
  await start();
  clock.advance(0);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 1")));
  expect(api.status).toMatchObject({
    latestCheckpoint: { id: 1 },
    checkpointCounts: { completed: 2, failed: 0 },
  });
  await coordinators.stop(key, "test over");
});

test("the lag the tasks report at a checkpoint's cut goes to the status (summed) and the metrics (per partition)", async () => {
  const { api, clock, tasks, journal, coordinators, start, key, metrics } = setup();
  const lagSeries = async () =>
    Object.fromEntries(
      (await metrics.sourceLag.get()).values.map(({ labels, value }) => [labels.partition, value]),
    );
  tasks[0]!.lag = 7;
  tasks[1]!.lag = 5;
  await start();
  clock.advance(0);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 1")));
  expect(api.status.latestCheckpoint?.sourceLag).toBe(12);
  expect(await lagSeries()).toEqual({ "partition-0": 7, "partition-1": 5 });

  // A checkpoint whose tasks know no end records none, and the series go.
  tasks[0]!.lag = undefined;
  tasks[1]!.lag = undefined;
  clock.advance(10_000);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 2")));
  expect(api.status.latestCheckpoint).toMatchObject({ id: 2 });
  expect(api.status.latestCheckpoint?.sourceLag).toBeUndefined();
  expect(await lagSeries()).toEqual({});
  await coordinators.stop(key, "test over");
});

test("a dataflow's figures go to the status (over all TaskManagers) and the metrics (per TaskManager and stage), and go with the job", async () => {
  const { api, clock, tasks, journal, coordinators, start, key, metrics } = setup();
  const backpressureSeries = async () =>
    (await metrics.backpressure.get()).values.map(({ labels, value }) => [labels.task, labels.stage, value]);
  const alignments = async () =>
    (await metrics.alignmentDuration.get()).values
      .filter(({ metricName }) => metricName?.endsWith("_count") || metricName?.endsWith("_sum"))
      .map(({ metricName, labels, value }) => [metricName, labels.name, value]);
  tasks[0]!.dataflow = { alignmentDurationMs: 12, backpressure: { source: 0.2, count: 0.12345 } };
  tasks[1]!.dataflow = { alignmentDurationMs: 30, backpressure: { source: 0.4, count: 0.1 } };
  await start();
  clock.advance(0);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 1")));
  expect(api.status.latestCheckpoint).toMatchObject({
    alignmentDurationMs: 30,
    backpressure: { source: 0.4, count: 0.123 },
  });
  expect(await backpressureSeries()).toEqual([
    ["0", "source", 0.2],
    ["0", "count", 0.12345],
    ["1", "source", 0.4],
    ["1", "count", 0.1],
  ]);
  expect(await alignments()).toEqual([
    ["streamjob_checkpoint_alignment_duration_seconds_sum", "orders", 0.03],
    ["streamjob_checkpoint_alignment_duration_seconds_count", "orders", 1],
  ]);

  // Only what the latest checkpoint reported stays; one without alignment observes none.
  tasks[0]!.dataflow = undefined;
  tasks[1]!.dataflow = { backpressure: { source: 0.5 } };
  clock.advance(10_000);
  await waitUntil(() => journal.some((line) => line.endsWith("complete 2")));
  expect(api.status.latestCheckpoint).toMatchObject({ id: 2, backpressure: { source: 0.5 } });
  expect(api.status.latestCheckpoint?.alignmentDurationMs).toBeUndefined();
  expect(await backpressureSeries()).toEqual([["1", "source", 0.5]]);
  expect(await alignments()).toEqual([
    ["streamjob_checkpoint_alignment_duration_seconds_sum", "orders", 0.03],
    ["streamjob_checkpoint_alignment_duration_seconds_count", "orders", 1],
  ]);

  await coordinators.forget(key);
  expect(await backpressureSeries()).toEqual([]);
  expect(await alignments()).toEqual([]);
});

test("checkpoint status writes read the StreamJob only when someone else wrote since", async () => {
  const { api, clock, journal, coordinators, start, key } = setup({
    checkpointCounts: { completed: 1, failed: 0 },
  });
  const completed = (id: number) => waitUntil(() => journal.some((line) => line.endsWith(`complete ${id}`)));
  await start();
  clock.advance(0);
  await completed(1);
  expect(api.reads).toBe(1);
  clock.advance(10_000);
  await completed(2);
  expect(api.reads).toBe(1); // conditional on the resourceVersion its own write got back
  api.write({ checkpointCounts: { completed: 3, failed: 4 } }); // e.g. a newer operator process
  clock.advance(10_000);
  await completed(3);
  expect(api.reads).toBe(2);
  expect(api.status).toMatchObject({
    latestCheckpoint: { id: 3 },
    checkpointCounts: { completed: 4, failed: 4 },
  });
  await coordinators.stop(key, "test over");
});

test("a StreamJob deleted and created again under the name is not written to; notify-complete is withheld", async () => {
  const { api, clock, tasks, coordinators, start, key } = setup();
  await start();
  api.uid = "another-uid";
  clock.advance(0);
  await waitUntil(() => tasks.every((task) => task.calls.includes("result 1")));
  await coordinators.stop(key, "test over");
  expect(api.writes).toEqual([]);
  for (const task of tasks) expect(task.calls).not.toContain("complete 1");
});
