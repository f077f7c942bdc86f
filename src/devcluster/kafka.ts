// The local cluster's Kafka broker: one JVM in KRaft mode, broker and controller in one, run from
// the jars `npm run assets` put in the cache. Pods are host processes on 127.x.y.z addresses, so a
// listener on 127.0.0.1 reaches them all, as MinIO's does.
import { Admin } from "@platformatic/kafka";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** The Secret (in namespace `default`) whose key `bootstrapServers` names the broker. */
export const KAFKA_SECRET_NAME = "streamjob-kafka";

export interface KafkaPorts {
  broker: number;
  controller: number;
}

export interface KafkaFiles {
  config: string;
  log4jConfig: string;
}

/** Bounded heap: the broker of a throwaway cluster on a 2-core machine needs little. */
const jvmOptions = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"];

/** Writes the broker's configuration under `dir` (its data goes to `dir/data`). */
export function writeKafkaConfig(dir: string, ports: KafkaPorts): KafkaFiles {
  mkdirSync(path.join(dir, "data"), { recursive: true });
  const settings: Record<string, string | number | boolean> = {
    "process.roles": "broker,controller",
    "node.id": 1,
    "controller.quorum.voters": `1@127.0.0.1:${ports.controller}`,
    "controller.listener.names": "CONTROLLER",
    listeners: `PLAINTEXT://127.0.0.1:${ports.broker},CONTROLLER://127.0.0.1:${ports.controller}`,
    "advertised.listeners": `PLAINTEXT://127.0.0.1:${ports.broker}`,
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "log.dirs": path.join(dir, "data"),
    // One node: every internal topic has one replica. One partition each, so the first group or
    // transaction does not wait for 50 partitions to be created.
    "offsets.topic.replication.factor": 1,
    "offsets.topic.num.partitions": 1,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "transaction.state.log.num.partitions": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "group.initial.rebalance.delay.ms": 0,
    // As on most real clusters: a job naming a missing topic fails instead of creating it.
    "auto.create.topics.enable": false,
  };
  const config = path.join(dir, "server.properties");
  writeFileSync(
    config,
    Object.entries(settings)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(""),
  );
  // The jars carry no logging configuration (the binary distribution's config/ folder does):
  // without one log4j2 prints only errors.
  const log4jConfig = path.join(dir, "log4j2.properties");
  writeFileSync(
    log4jConfig,
    [
      "appender.out.type=Console",
      "appender.out.name=out",
      "appender.out.layout.type=PatternLayout",
      "appender.out.layout.pattern=[%d] %p %m (%c)%n",
      "rootLogger.level=INFO",
      "rootLogger.appenderRef.out.ref=out",
      "logger.state.name=state.change.logger",
      "logger.state.level=WARN",
      "",
    ].join("\n"),
  );
  return { config, log4jConfig };
}

/** The command line of a Kafka main class run from the cached jars. */
export function kafkaJavaArgs(
  libsDir: string,
  files: KafkaFiles,
  mainClass: string,
  args: string[],
): string[] {
  return [
    ...jvmOptions,
    `-Dlog4j2.configurationFile=${files.log4jConfig}`,
    "-cp",
    path.join(libsDir, "*"),
    mainClass,
    ...args,
  ];
}

/** A new cluster id: 16 random bytes, base64url without padding, as `kafka-storage random-uuid` prints. */
function clusterId(): string {
  return randomBytes(16).toString("base64url");
}

/** `kafka-storage format`: KRaft refuses to start on an unformatted data folder. */
export function formatKafkaStorage(libsDir: string, files: KafkaFiles, logFile: string): Promise<void> {
  const args = kafkaJavaArgs(libsDir, files, "kafka.tools.StorageTool", [
    "format",
    "--cluster-id",
    clusterId(),
    "--config",
    files.config,
  ]);
  return new Promise((resolve, reject) => {
    const child = spawn("java", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      writeFileSync(logFile, output, { flag: "a" });
      if (code === 0) resolve();
      else
        reject(new Error(`formatting Kafka's storage failed (exit ${code}): ${output.trim().slice(-2000)}`));
    });
  });
}

/** True once the broker answers a metadata request naming itself: registered and unfenced. */
export async function kafkaReady(bootstrapServers: string): Promise<boolean> {
  const admin = new Admin({
    clientId: "devcluster-readiness",
    bootstrapBrokers: [bootstrapServers],
    retries: 0,
    timeout: 2_000,
  });
  try {
    const metadata = await admin.metadata({ topics: [] });
    return metadata.brokers.size > 0;
  } finally {
    await admin.close();
  }
}
