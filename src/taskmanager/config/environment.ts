// The TaskManager's environment, validated at start (docs/protocol.md, "Start-up configuration").
// Secrets (token, storage keys) come in their own variables and are never logged.
import { z } from "zod";
import { formatZodError, TaskManagerConfig } from "../../api/protocol.js";

export const ENV = {
  config: "STREAMJOB_TASKMANAGER_CONFIG",
  token: "STREAMJOB_TOKEN",
  accessKey: "STREAMJOB_S3_ACCESS_KEY",
  secretKey: "STREAMJOB_S3_SECRET_KEY",
  /**
   * Address to listen on: the pod's IP from the downward API. Required: never a wildcard address, which
   * on a host-network cluster would take the port of every pod (docs/protocol.md, "Transport").
   */
  podIp: "POD_IP",
  /** The brokers of the StreamJob's `kafka` Secret (`bootstrapServers`); set only when it names one. */
  kafkaBootstrapServers: "STREAMJOB_KAFKA_BOOTSTRAP_SERVERS",
  /** The same Secret's optional `username`, `password`, `saslMechanism` and `tls`. */
  kafkaUsername: "STREAMJOB_KAFKA_USERNAME",
  kafkaPassword: "STREAMJOB_KAFKA_PASSWORD",
  kafkaSaslMechanism: "STREAMJOB_KAFKA_SASL_MECHANISM",
  kafkaTls: "STREAMJOB_KAFKA_TLS",
} as const;

/**
 * Exit code of a TaskManager that cannot start as configured (sysexits' EX_CONFIG): no restart can
 * fix it, so the operator does not retry until the spec changes (docs/protocol.md, "Start-up").
 */
export const EXIT_CONFIGURATION_ERROR = 78;

/** Where a TaskManager writes why it stopped: Kubernetes' default terminationMessagePath. */
export const TERMINATION_MESSAGE_PATH = "/dev/termination-log";

/** The environment, the start-up configuration, `program` or its arguments are unusable. */
export class ConfigurationError extends Error {}

/** How a TaskManager that failed exits, and its termination message. */
export function exitFor(err: unknown): { exitCode: number; message: string } {
  const reason = err instanceof Error ? err.message : String(err);
  return err instanceof ConfigurationError
    ? { exitCode: EXIT_CONFIGURATION_ERROR, message: `configuration error: ${reason}` }
    : { exitCode: 1, message: reason };
}

const TaskManagerEnvironment = z.object({
  [ENV.config]: z.string({ error: "missing" }).min(1, "empty"),
  [ENV.token]: z.string({ error: "missing" }).min(1, "empty"),
  [ENV.accessKey]: z.string({ error: "missing" }).min(1, "empty"),
  [ENV.secretKey]: z.string({ error: "missing" }).min(1, "empty"),
  [ENV.podIp]: z.union([z.ipv4(), z.ipv6()], { error: "missing or not an IP address" }),
});

export interface TaskManagerEnvironment {
  config: TaskManagerConfig;
  token: string;
  accessKey: string;
  secretKey: string;
  host: string;
}

/** Parses the environment; throws one line naming every bad variable or config field. */
export function readEnvironment(env: NodeJS.ProcessEnv): TaskManagerEnvironment {
  const parsed = TaskManagerEnvironment.safeParse(env);
  if (!parsed.success) throw new ConfigurationError(`invalid environment: ${formatZodError(parsed.error)}`);
  let json: unknown;
  try {
    json = JSON.parse(parsed.data[ENV.config]);
  } catch {
    throw new ConfigurationError(`invalid environment: ${ENV.config}: not JSON`);
  }
  const config = TaskManagerConfig.safeParse(json);
  if (!config.success) throw new ConfigurationError(`invalid ${ENV.config}: ${formatZodError(config.error)}`);
  return {
    config: config.data,
    token: parsed.data[ENV.token],
    accessKey: parsed.data[ENV.accessKey],
    secretKey: parsed.data[ENV.secretKey],
    host: parsed.data[ENV.podIp],
  };
}
