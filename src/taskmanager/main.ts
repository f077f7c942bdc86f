// Entry point of the streamjob-taskmanager image: `node dist/taskmanager/main.js`.
// Exits 0 after SIGTERM/SIGINT or when replaced by a newer epoch; 78 when it cannot start as
// configured (environment, start-up configuration, unknown program, bad job arguments); 1 when the
// start failed otherwise (e.g. a restore) or the job failed. Why it failed goes to the termination
// message file as well as the log, so `kubectl describe` and the operator can say it.
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { pino } from "pino";
import { MinioObjectStore } from "../storage/minio-object-store.js";
import type { ObjectStore } from "../storage/object-store.js";
import {
  ConfigurationError,
  exitFor,
  readEnvironment,
  TERMINATION_MESSAGE_PATH,
} from "./config/environment.js";
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
  // Whatever keeps the program from loading (unknown name, missing module) no restart can fix.
  const job = await loadJob(config.program.name).catch((err: Error) => {
    throw new ConfigurationError(err.message, { cause: err });
  });
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
  // The message ends the log too: with no message file, the log's tail is the termination message.
  writeTerminationMessage(`the job failed: ${ended.error.message}`);
  taskLog.error({ err: ended.error }, "the job failed");
  return 1;
}

/**
 * The kubelet creates the file before the container starts; outside a pod there is none, and none
 * is created (the log says it all there).
 */
function writeTerminationMessage(message: string): void {
  try {
    const fd = openSync(TERMINATION_MESSAGE_PATH, "r+");
    try {
      ftruncateSync(fd);
      writeSync(fd, message);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    log.warn({ err }, `could not write the termination message to ${TERMINATION_MESSAGE_PATH}`);
  }
}

// process.exit: storage clients keep sockets alive that would otherwise hold the process open.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const { exitCode, message } = exitFor(err);
    writeTerminationMessage(`refusing to start: ${message}`);
    log.error({ err }, `refusing to start: ${message}`);
    process.exit(exitCode);
  },
);
