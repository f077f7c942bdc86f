// Entry point of the streamjob-operator image (`node dist/operator/main.js`) and of `npm run
// operator`: the composition root. Out of a cluster it uses $KUBECONFIG (or ~/.kube/config); in a
// pod, its ServiceAccount. Exits 0 after SIGTERM/SIGINT, 1 on bad configuration or lost leadership
// (the Deployment restarts it and it stands in line again, like controller-runtime's managers).
import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { SecretStorageResolver } from "./checkpoint-storage.js";
import { loadConfig } from "./config.js";
import {
  HttpTaskManagerClient,
  type HttpTaskManagerClientOptions,
} from "../coordinator/http-task-manager-client.js";
import { systemTimers } from "../coordinator/interfaces.js";
import { Controller } from "./controller/controller.js";
import { leaseApi, LeaderElector } from "./controller/leader-election.js";
import { startOperatorServer } from "./http/server.js";
import { JobCoordinators } from "./job-coordinators.js";
import { ClientNodeKubeGateway } from "./kube-gateway.js";
import { OperatorMetrics } from "./metrics.js";
import { Reconciler } from "./reconciler.js";

async function main(): Promise<void> {
  const config = loadConfig(process.env, process.argv.slice(2), hostname());
  const log = pino({ level: config.logLevel, base: { component: "streamjob-operator" } });
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const now = () => Date.now();
  const metrics = new OperatorMetrics();
  const gateway = new ClientNodeKubeGateway(kc, config.leaderElection.identity);

  let controller: Controller | undefined = undefined;
  const enqueue = (key: string) => controller?.queue.add(key);
  const connect = (options: HttpTaskManagerClientOptions) => new HttpTaskManagerClient(options);
  const coordinators = new JobCoordinators({
    gateway,
    connect,
    enqueue,
    metrics,
    log,
    now,
    timers: systemTimers,
  });
  const reconciler = new Reconciler({
    gateway,
    storage: new SecretStorageResolver(gateway),
    coordinators,
    connect,
    metrics,
    log,
    now,
    planner: { unreadyTimeoutMs: config.unreadyTimeoutMs },
  });
  controller = new Controller({
    kc,
    namespaces: config.watchNamespaces,
    workers: config.workers,
    syncPeriodMs: config.syncPeriodMs,
    reconcile: (key) => reconciler.reconcile(key),
    onProcessed: (durationMs, outcome) => {
      metrics.reconcileDuration.observe({ result: outcome }, durationMs / 1000);
      metrics.workQueueDepth.set(controller?.queue.depth ?? 0);
    },
    log,
  });

  let leading = false;
  const server = await startOperatorServer({
    ...config.http,
    registry: metrics.registry,
    // A standby replica is ready: it serves /metrics and takes over when the leader goes.
    notReadyReason: () => (leading && !controller.hasSynced ? "watches are not synced yet" : undefined),
  });
  log.info(
    {
      http: `${config.http.host}:${config.http.port}`,
      namespaces: config.watchNamespaces.length ? config.watchNamespaces : "all",
    },
    "streamjob-operator starting",
  );

  const elector = config.leaderElection.enabled
    ? new LeaderElector({
        api: leaseApi(kc),
        namespace: config.leaderElection.namespace,
        name: config.leaderElection.leaseName,
        identity: config.leaderElection.identity,
        log,
      })
    : undefined;

  let stopping = false;
  const shutdown = async (signal: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping: pending checkpoints are aborted, running jobs keep running");
    await controller.stop();
    await coordinators.stopAll("the operator is stopping");
    await elector?.release().catch((err: Error) => log.warn({ err }, "releasing the leader Lease failed"));
    server.close();
    process.exit(code);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM", 0));
  process.once("SIGINT", () => void shutdown("SIGINT", 0));

  if (elector) {
    // shutdown() releases the elector, which ends a wait for the Lease; exiting is up to shutdown().
    const acquired = await elector.acquire().then(
      () => true,
      () => false,
    );
    if (!acquired || stopping) return;
    void elector.lost.then((reason) => {
      log.error({ reason }, "leadership lost; exiting so that only the new leader coordinates");
      // Stop coordinating at once: the new leader may already be triggering checkpoints.
      void coordinators.stopAll("leadership lost").finally(() => process.exit(1));
    });
  }
  leading = true;
  metrics.isLeader.set(1);
  await controller.start();
  log.info("watches synced; reconciling");
}

main().catch((err: unknown) => {
  pino({ name: "streamjob-operator" }).fatal({ err }, `cannot run: ${(err as Error).message}`);
  process.exit(1);
});
