// The operator's configuration: environment variables (what the Helm chart sets), each overridable
// by a command-line flag of the same name in kebab case (`--watch-namespaces=a,b`). Validated with
// zod so a typo stops the process at start with a message naming the setting.
import { parseArgs } from "node:util";
import { z } from "zod";
import { parseDuration } from "../api/duration.js";
import { formatZodError } from "../api/protocol.js";

const bool = z
  .enum(["true", "false"], { error: 'expected "true" or "false"' })
  .transform((v) => v === "true");
const port = z.coerce.number().int().min(1).max(65535);
/** The operator's HTTP port (health, metrics, TaskManager callbacks) unless STREAMJOB_HTTP_PORT says otherwise. */
export const OPERATOR_HTTP_PORT = 8080;
const durationMs = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
});

const Settings = z.object({
  /** Comma-separated namespaces to watch; empty: every namespace. */
  STREAMJOB_WATCH_NAMESPACES: z
    .string()
    .default("")
    .transform((list) =>
      list
        .split(",")
        .map((ns) => ns.trim())
        .filter((ns) => ns !== ""),
    ),
  STREAMJOB_LEADER_ELECT: bool.default(false),
  STREAMJOB_LEADER_ELECTION_NAMESPACE: z.string().min(1).optional(),
  STREAMJOB_LEADER_ELECTION_ID: z.string().min(1).default("streamjob-operator"),
  STREAMJOB_HTTP_PORT: port.default(OPERATOR_HTTP_PORT),
  /**
   * Loopback by default: out of a cluster (`npm run operator`) a wildcard address would also take
   * port 8080 on every pod address of the local cluster, where TaskManagers listen. In a pod the
   * chart sets the pod IP.
   */
  STREAMJOB_HTTP_HOST: z.string().min(1).default("127.0.0.1"),
  STREAMJOB_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  STREAMJOB_WORKERS: z.coerce.number().int().min(1).max(64).default(4),
  /** A TaskManager not Ready for this long counts as failed and restarts the job. */
  STREAMJOB_UNREADY_TIMEOUT: durationMs.default(60_000),
  /**
   * controller-runtime's SyncPeriod: every StreamJob is reconciled again about this often (jittered
   * ±10%), so a watch that went quiet without an error delays a spec change by this much at most.
   */
  STREAMJOB_SYNC_PERIOD: durationMs
    .pipe(z.number().min(10_000, { error: "must be at least 10s" }))
    .default(300_000),
  POD_NAME: z.string().min(1).optional(),
  POD_NAMESPACE: z.string().min(1).optional(),
});

export interface OperatorConfig {
  watchNamespaces: string[];
  leaderElection: { enabled: boolean; namespace: string; leaseName: string; identity: string };
  http: { host: string; port: number };
  logLevel: string;
  workers: number;
  unreadyTimeoutMs: number;
  syncPeriodMs: number;
}

/** Reads the configuration; throws with every bad setting named. */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  argv: string[] = process.argv.slice(2),
  hostname = "streamjob-operator",
): OperatorConfig {
  const keys = Object.keys(Settings.shape);
  const flagName = (key: string) =>
    key
      .replace(/^STREAMJOB_/, "")
      .toLowerCase()
      .replaceAll("_", "-");
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(keys.map((key) => [flagName(key), { type: "string" as const }])),
    strict: true,
  });
  const merged: Record<string, string | undefined> = {};
  for (const key of keys) merged[key] = (values[flagName(key)] as string | undefined) ?? env[key];
  const parsed = Settings.safeParse(merged);
  if (!parsed.success) throw new Error(`invalid configuration: ${formatZodError(parsed.error)}`);
  const s = parsed.data;
  return {
    watchNamespaces: s.STREAMJOB_WATCH_NAMESPACES,
    leaderElection: {
      enabled: s.STREAMJOB_LEADER_ELECT,
      namespace: s.STREAMJOB_LEADER_ELECTION_NAMESPACE ?? s.POD_NAMESPACE ?? "default",
      leaseName: s.STREAMJOB_LEADER_ELECTION_ID,
      identity: s.POD_NAME ?? `${hostname}-${process.pid}`,
    },
    http: { host: s.STREAMJOB_HTTP_HOST, port: s.STREAMJOB_HTTP_PORT },
    logLevel: s.STREAMJOB_LOG_LEVEL,
    workers: s.STREAMJOB_WORKERS,
    unreadyTimeoutMs: s.STREAMJOB_UNREADY_TIMEOUT,
    syncPeriodMs: s.STREAMJOB_SYNC_PERIOD,
  };
}
