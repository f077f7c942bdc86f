// Where a job's Kafka is: the `streamjob-kafka` Secret, as `cluster:up` and manifests/kafka.yaml
// write it. Parsed once, with errors that name the Secret and the key, before any client connects.
import { z } from "zod";

/** The default name of the Secret (in the job's namespace) holding `bootstrapServers`. */
export const KAFKA_SECRET_NAME = "streamjob-kafka";

/** The Secret's key holding the brokers, host:port comma-separated. */
export const KAFKA_BOOTSTRAP_SERVERS_KEY = "bootstrapServers";

// host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
const hostPort = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

const KafkaSecretData = z.object({
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
});

/** The brokers a client bootstraps from; built by `kafkaConnectionFromSecret`. */
export type KafkaConnection = z.infer<typeof KafkaSecretData>;

/**
 * Parses the data of the `streamjob-kafka` Secret (values already base64-decoded): `bootstrapServers`
 * is a comma-separated list of host:port.
 */
export function kafkaConnectionFromSecret(
  data: Record<string, string>,
  secretName: string = KAFKA_SECRET_NAME,
): KafkaConnection {
  const parsed = KafkaSecretData.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => issue.message);
    throw new Error(`Secret ${secretName} is invalid: ${problems.join("; ")}`);
  }
  return parsed.data;
}
