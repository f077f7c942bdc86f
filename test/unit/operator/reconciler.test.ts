// The reconciler's side effects against fakes of what it depends on (reconciler-fakes.ts): which
// objects it writes, in which order, and when it writes nothing. The real API server and MinIO are
// exercised by test/integration/operator.test.ts.
import { describe, expect, it } from "@jest/globals";
import type { V1Pod } from "@kubernetes/client-node";
import { pino } from "pino";
import type { StreamJobSpecInput } from "../../../src/api/streamjob.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import { Reconciler } from "../../../src/operator/reconciler.js";
import { FakeClock } from "../support/fake-clock.js";
import { manifestFor } from "../storage/fixtures.js";
import { streamJob } from "./fixtures.js";
import { FakeCoordinators, FakeGateway, FakePeers, FakeStorageResolver } from "./reconciler-fakes.js";

const KEY = "default/orders";
const JOB = { namespace: "default", name: "orders" };

function setup(spec: Partial<StreamJobSpecInput> = {}) {
  const clock = new FakeClock(Date.parse("2025-01-01T12:00:00Z"));
  const timeline: string[] = [];
  const gateway = new FakeGateway(() => clock.now(), timeline);
  const storage = new FakeStorageResolver(timeline);
  const coordinators = new FakeCoordinators(timeline);
  const peers = new FakePeers(timeline);
  const metrics = new OperatorMetrics();
  const reconciler = new Reconciler({
    gateway,
    storage,
    coordinators,
    connect: peers.connect,
    metrics,
    log: pino({ level: "silent" }),
    now: () => clock.now(),
    planner: { unreadyTimeoutMs: 60_000 },
  });
  gateway.jobs.set(KEY, streamJob(spec));
  const pass = () => reconciler.reconcile(KEY);
  /** Deploys epoch 1 and lets its pod become ready: the job is Running with its coordinator. */
  const runJob = async () => {
    await pass();
    clock.advance(2_000);
    gateway.podReady("orders-tm-1-0", clock.now());
    await pass();
    expect(gateway.jobs.get(KEY)?.status?.phase).toBe("Running");
    timeline.length = 0;
  };
  return { clock, timeline, gateway, storage, coordinators, peers, metrics, pass, runJob };
}

/** Stores a complete checkpoint (manifest and every part) as the coordinator would commit it. */
async function commitCheckpoint(storage: FakeStorageResolver, checkpointId: number): Promise<void> {
  const manifest = manifestFor("checkpoints", JOB, "checkpoint", checkpointId);
  for (const part of manifest.parts) await storage.objects.put(part.key, Buffer.alloc(part.sizeBytes));
  await storage.snapshots.putManifest(manifest);
}

function restoreOf(pod: V1Pod | undefined): { checkpointId: number } | undefined {
  const config = pod?.spec?.containers[0]?.env?.find((env) => env.name === "STREAMJOB_TASKMANAGER_CONFIG");
  return (JSON.parse(config?.value ?? "{}") as { restoreFrom?: { checkpointId: number } }).restoreFrom;
}

describe("Reconciler", () => {
  it("deploys a new job, then writes nothing while nothing changes", async () => {
    const { gateway, timeline, coordinators, clock, pass } = setup();
    expect(await pass()).toEqual({ requeueAfterMs: 60_000 });
    expect(timeline).toEqual([
      "read checkpoints",
      "create secret orders-token",
      "apply pod orders-tm-1-0",
      "event Deploying",
      "patch status Pending",
    ]);

    clock.advance(2_000);
    gateway.podReady("orders-tm-1-0", clock.now());
    timeline.length = 0;
    expect(await pass()).toEqual({});
    expect(gateway.writes()).toEqual(["event Running", "patch status Running"]);
    expect(coordinators.running.get(KEY)).toEqual({ epoch: 1, parallelism: 1 });

    // Passes that find everything as it should be (a resync, a pod event that changed nothing).
    timeline.length = 0;
    const patches = gateway.statusPatches.length;
    clock.advance(300_000);
    for (let i = 0; i < 3; i++) expect(await pass()).toEqual({});
    expect(gateway.writes()).toEqual([]);
    expect(gateway.statusPatches).toHaveLength(patches);
  });

  it("tells the starting TaskManagers their peers on every pass until all are ready; one not listening is no error", async () => {
    const { gateway, timeline, peers, coordinators, clock, pass } = setup({ parallelism: 2 });
    const sent = () => timeline.filter((entry) => entry.startsWith("peers "));
    await pass();
    clock.advance(1_000);
    gateway.podStarted("orders-tm-1-0", "10.0.0.5");
    timeline.length = 0;
    // While one has no IP there is no list to send: only the readiness deadline is looked at.
    expect(await pass()).toEqual({ requeueAfterMs: 59_000 });
    expect(sent()).toEqual([]);

    gateway.podStarted("orders-tm-1-1", "fd00::6");
    peers.unreachable.add("http://[fd00::6]:8080");
    timeline.length = 0;
    expect(await pass()).toEqual({ requeueAfterMs: 1_000 });
    expect(sent()).toEqual([
      "peers 1 to http://10.0.0.5:8080: 0=http://10.0.0.5:8080 1=http://[fd00::6]:8080",
    ]);
    const token = Buffer.from(gateway.secrets.get("default/orders-token")!.data!.token!, "base64").toString();
    expect(peers.clients.get("http://[fd00::6]:8080")).toEqual({ token, requestTimeoutMs: 1_000 });

    // The next pass sends again, to both: the one that took it takes the same list again.
    peers.unreachable.clear();
    timeline.length = 0;
    expect(await pass()).toEqual({ requeueAfterMs: 1_000 });
    expect(sent()).toEqual([
      "peers 1 to http://10.0.0.5:8080: 0=http://10.0.0.5:8080 1=http://[fd00::6]:8080",
      "peers 1 to http://[fd00::6]:8080: 0=http://10.0.0.5:8080 1=http://[fd00::6]:8080",
    ]);

    gateway.podReady("orders-tm-1-0", clock.now());
    gateway.podReady("orders-tm-1-1", clock.now());
    timeline.length = 0;
    expect(await pass()).toEqual({});
    expect(sent()).toEqual([]);
    expect(coordinators.running.get(KEY)).toEqual({ epoch: 1, parallelism: 2 });
  });

  it("stops the coordinator before choosing the restore target, and restores from what committed while it stopped", async () => {
    const { gateway, storage, coordinators, timeline, clock, pass, runJob } = setup();
    await commitCheckpoint(storage, 3);
    await runJob();
    // A checkpoint that was committing when the failure was seen completes while the coordinator stops.
    coordinators.whileStopping = () => commitCheckpoint(storage, 4);
    clock.advance(10_000);
    gateway.podFailed("orders-tm-1-0", 1);

    await pass();
    const stopEnded = timeline.indexOf("stop coordinator: ended");
    expect(timeline.slice(0, stopEnded + 1)).toEqual(["stop coordinator: begins", "stop coordinator: ended"]);
    expect(timeline.slice(stopEnded + 1)).toEqual([
      "read checkpoints",
      "delete pod orders-tm-1-0",
      "event Restarting",
      "apply pod orders-tm-2-0",
      "patch status Restarting",
    ]);
    expect(restoreOf(gateway.pods.get("default/orders-tm-2-0"))).toMatchObject({ checkpointId: 4 });
    expect(gateway.jobs.get(KEY)?.status).toMatchObject({
      epoch: 2,
      restarts: 1,
      lastRestore: { checkpointId: 4 },
    });
  });

  it("an upgrade seen right after an operator restart starts the coordinator before asking it for the savepoint", async () => {
    const { gateway, coordinators, timeline, pass, runJob } = setup();
    await runJob();
    coordinators.running.clear(); // a new operator process: no coordinator runs yet
    gateway.jobs.get(KEY)!.spec.image = "ghcr.io/streamjob/streamjob-taskmanager:0.2.0";

    expect(await pass()).toEqual({});
    expect(timeline.filter((entry) => !entry.startsWith("read "))).toEqual([
      "start coordinator 1",
      "take savepoint upgrade:1",
      "patch status Running",
    ]);
    expect(gateway.jobs.get(KEY)?.status?.conditions).toContainEqual(
      expect.objectContaining({ type: "Progressing", status: "True", reason: "SpecChanging" }),
    );
  });

  it("refuses an invalid spec with one event and one status write per generation", async () => {
    const { gateway, pass } = setup();
    const job = gateway.jobs.get(KEY)!;
    (job.spec as unknown as Record<string, unknown>).parallelism = "two";

    for (let i = 0; i < 3; i++) expect(await pass()).toEqual({});
    expect(gateway.writes()).toEqual(["event SpecInvalid", "patch status"]);
    expect(gateway.events[0]).toMatchObject({ type: "Warning", reason: "SpecInvalid" });
    expect(gateway.events[0]?.message).toMatch(/parallelism/);
    expect(job.status?.conditions).toEqual([
      expect.objectContaining({
        type: "Degraded",
        status: "True",
        reason: "SpecInvalid",
        observedGeneration: 1,
      }),
    ]);

    job.metadata.generation = 2; // still invalid
    await pass();
    await pass();
    expect(gateway.writes()).toEqual([
      "event SpecInvalid",
      "patch status",
      "event SpecInvalid",
      "patch status",
    ]);
    expect(gateway.pods.size).toBe(0);
  });

  it.each(["gone", "being deleted"])(
    "a StreamJob %s: its coordinator and storage client are forgotten, nothing is written",
    async (state) => {
      const { gateway, storage, coordinators, pass, runJob } = setup();
      await runJob();
      const job = gateway.jobs.get(KEY)!;
      if (state === "gone") gateway.jobs.delete(KEY);
      else job.metadata.deletionTimestamp = new Date();
      const patches = gateway.statusPatches.length;

      expect(await pass()).toEqual({});
      expect(coordinators.forgotten).toEqual([KEY]);
      expect(coordinators.running.size).toBe(0);
      expect(storage.forgotten).toEqual([KEY]);
      expect(gateway.forgottenEvents).toEqual(state === "gone" ? [] : [job.metadata.uid]);
      expect(gateway.writes()).toEqual([]);
      expect(gateway.statusPatches).toHaveLength(patches);
    },
  );

  it("a bad storage Secret: Degraded with one event, retried later, nothing deleted", async () => {
    const { gateway, storage, pass, runJob, clock, metrics } = setup();
    await runJob();
    storage.secretProblem = 'Secret streamjob-storage is invalid: missing key "secretKey"';
    gateway.podFailed("orders-tm-1-0", 1);

    expect(await pass()).toEqual({ requeueAfterMs: 1_000 });
    clock.advance(5_000);
    expect(await pass()).toEqual({ requeueAfterMs: 5_000 });
    // Degraded keeps the phase: the job's pods were not touched.
    expect(gateway.writes()).toEqual(["event StorageSecretInvalid", "patch status Running"]);
    expect(gateway.events.at(-1)?.message).toBe(storage.secretProblem);
    expect(gateway.pods.has("default/orders-tm-1-0")).toBe(true);
    expect((await metrics.restarts.get()).values).toEqual([]);
  });

  it("a storage Secret that cannot be read (API server outage) fails the pass to be retried, no Degraded", async () => {
    const { gateway, storage, pass, runJob } = setup();
    await runJob();
    storage.outage = new Error("connect ECONNREFUSED 10.96.0.1:443");
    await expect(pass()).rejects.toThrow(/ECONNREFUSED/);
    expect(gateway.writes()).toEqual([]);
  });

  it("a corrupt newest checkpoint is passed over with an aggregated event; the one before is restored", async () => {
    const { gateway, storage, clock, pass, runJob, metrics } = setup();
    await commitCheckpoint(storage, 5);
    await commitCheckpoint(storage, 6);
    const [lostPart] = manifestFor("checkpoints", JOB, "checkpoint", 6).parts;
    await storage.objects.delete([lostPart!.key]);
    await runJob();
    clock.advance(10_000);
    gateway.podFailed("orders-tm-1-0", 1);

    await pass();
    // Once per pass that read storage (deploy, start, restart): one Event whose count grows.
    const skipped = gateway.events.filter((event) => event.reason === "CheckpointSkipped");
    expect(skipped).toHaveLength(3);
    for (const event of skipped) {
      expect(event).toMatchObject({ type: "Warning", aggregate: true });
      expect(event.message).toMatch(/^checkpoint 6 is not restorable: part \S+ is missing$/);
    }
    expect(restoreOf(gateway.pods.get("default/orders-tm-2-0"))).toMatchObject({ checkpointId: 5 });
    expect((await metrics.restarts.get()).values).toEqual([
      expect.objectContaining({ value: 1, labels: { namespace: "default", name: "orders" } }),
    ]);
  });
});
