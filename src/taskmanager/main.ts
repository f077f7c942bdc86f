// Entry point of the streamjob-taskmanager image: `node dist/taskmanager/main.js`.
// Exits 0 after SIGTERM/SIGINT or when replaced by a newer epoch, 1 when it must not start (invalid
// environment, failed restore) or the job failed.
import { pino } from "pino";
import { MinioObjectStore } from "../storage/minio-object-store.js";
import type { ObjectStore } from "../storage/object-store.js";
import { readEnvironment } from "./config/environment.js";
import { loadJob } from "./job/load-job.js";
import { startTaskManager, type RunningTaskManager } from "./task-manager.js";

const log = pino({ name: "taskmanager" });

async function main(): Promise<number> {
  const env = readEnvironment(process.env);
  const { config } = env;
  const taskLog = log.child({
    job: `${config.job.namespace}/${config.job.name}`,
    epoch: config.epoch,
    taskIndex: config.taskIndex,
  });
  const job = await loadJob(config.program.name);
  const stores = new Map<string, ObjectStore>();
  const storage = (bucket: string): ObjectStore => {
    let store = stores.get(bucket);
    if (store === undefined) {
      store = new MinioObjectStore({
        endpoint: config.storage.endpoint,
        region: config.storage.region,
        accessKey: env.accessKey,
        secretKey: env.secretKey,
        bucket,
      });
      stores.set(bucket, store);
    }
    return store;
  };

  const taskManager: RunningTaskManager = await startTaskManager({
    config,
    token: env.token,
    job,
    storage,
    host: env.host,
    log: taskLog,
  });
  const signalled = new Promise<string>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => resolve(signal));
  });
  let ended: Awaited<typeof signalled | typeof taskManager.terminated>;
  try {
    ended = await Promise.race([
      taskManager.ready.then(() => new Promise<never>(() => undefined)),
      taskManager.terminated,
      signalled,
    ]);
  } finally {
    await taskManager.stop();
  }
  if (typeof ended === "string") {
    taskLog.info({ signal: ended }, "stopped");
    return 0;
  }
  if (ended.reason === "replaced") {
    taskLog.info({ newerEpoch: ended.epoch }, "replaced by a newer epoch: stopped");
    return 0;
  }
  taskLog.error({ err: ended.error }, "the job failed");
  return 1;
}

// process.exit: storage clients keep sockets alive that would otherwise hold the process open.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log.error({ err }, `refusing to start: ${(err as Error).message}`);
    process.exit(1);
  },
);
