// Where a job's Kafka is and how to log in: the `streamjob-kafka` Secret, as `cluster:up` and
// manifests/kafka.yaml write it (`bootstrapServers`; for a broker that wants them, `username`,
// `password`, `saslMechanism` and `tls`). Parsed once, with errors that name the Secret and the
// key (never a value of `password`), before any client connects.
import { z } from "zod";

/** The default name of the Secret (in the job's namespace) holding `bootstrapServers`. */
export const KAFKA_SECRET_NAME = "streamjob-kafka";

/** The Secret's key holding the brokers, host:port comma-separated. */
export const KAFKA_BOOTSTRAP_SERVERS_KEY = "bootstrapServers";

/** The Secret's optional keys for brokers that authenticate clients or speak TLS. */
export const KAFKA_CREDENTIAL_KEYS = ["username", "password", "saslMechanism", "tls"] as const;

export const SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] as const;

// host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
const hostPort = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

const KafkaSecretData = z
  .object({
    bootstrapServers: z
      .string({
        error: (issue) => (issue.input === undefined ? `missing key "bootstrapServers"` : undefined),
      })
      .transform((value) =>
        value
          .split(",")
          .map((server) => server.trim())
          .filter((server) => server !== ""),
      )
      .refine((servers) => servers.length > 0, { error: `key "bootstrapServers" is empty` })
      .superRefine((servers, ctx) => {
        for (const server of servers) {
          const port = Number(hostPort.exec(server)?.[1]);
          if (!(port >= 1 && port <= 65535))
            ctx.addIssue({
              code: "custom",
              message: `key "bootstrapServers": "${server}" is not host:port (like kafka.default.svc:9092)`,
            });
        }
      }),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    saslMechanism: z
      .enum(SASL_MECHANISMS, { error: `key "saslMechanism": expected one of ${SASL_MECHANISMS.join(", ")}` })
      .optional(),
    tls: z.enum(["true", "false"], { error: `key "tls": expected "true" or "false"` }).optional(),
  })
  .superRefine((data, ctx) => {
    if ((data.username === undefined) !== (data.password === undefined)) {
      ctx.addIssue({ code: "custom", message: `keys "username" and "password" go together` });
    }
    if (data.saslMechanism !== undefined && data.username === undefined) {
      ctx.addIssue({ code: "custom", message: `key "saslMechanism" needs "username" and "password"` });
    }
  })
  .transform(({ bootstrapServers, username, password, saslMechanism, tls }) => ({
    bootstrapServers,
    ...(username !== undefined &&
      password !== undefined && { sasl: { mechanism: saslMechanism ?? "PLAIN", username, password } }),
    ...(tls === "true" && { tls: true }),
  }));

/** The brokers a client bootstraps from and how it logs in; built by `kafkaConnectionFromSecret`. */
export type KafkaConnection = z.output<typeof KafkaSecretData>;

/** Where clients connect and how they log in, as sources and sinks take it. */
export interface KafkaClientConnection {
  bootstrapServers: readonly string[];
  sasl?: KafkaConnection["sasl"];
  tls?: boolean;
}

/** The options every client of the library takes for `connection`. */
export function kafkaClientOptions(connection: KafkaClientConnection) {
  return {
    bootstrapBrokers: [...connection.bootstrapServers],
    ...(connection.sasl && { sasl: { ...connection.sasl } }),
    ...(connection.tls && { tls: {} }),
  };
}

/**
 * Parses the data of the `streamjob-kafka` Secret (values already base64-decoded): `bootstrapServers`
 * is a comma-separated list of host:port; `username` with `password` log in by SASL
 * (`saslMechanism`, default PLAIN); `tls: "true"` connects with TLS.
 */
export function kafkaConnectionFromSecret(
  data: Record<string, string | undefined>,
  secretName: string = KAFKA_SECRET_NAME,
): KafkaConnection {
  const parsed = KafkaSecretData.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => issue.message);
    throw new Error(`Secret ${secretName} is invalid: ${problems.join("; ")}`);
  }
  return parsed.data;
}

/** The broker's words for a failed request, which the client nests in `errors` and `cause`. */
export function describeKafkaError(err: unknown): string {
  const leaves = new Set<string>();
  const visit = (error: unknown, depth: number) => {
    const { errors, cause, message } = error as Error & { errors?: unknown[] };
    const inner = [...(errors ?? []), ...(cause === undefined ? [] : [cause])];
    if (inner.length === 0 || depth > 5) {
      if (message) leaves.add(message);
    } else {
      for (const next of inner) visit(next, depth + 1);
    }
  };
  visit(err, 0);
  const message = (err as Error).message;
  const causes = [...leaves].filter((leaf) => leaf !== message);
  return causes.length === 0 ? message : `${message}: ${causes.join("; ")}`;
}
