// The local cluster's Kafka broker: one JVM in KRaft mode, broker and controller in one, run from
// the jars `npm run assets` put in the cache. The emulated node's pods are host processes on
// 127.x.y.z addresses, so a listener on 127.0.0.1 reaches them all, as MinIO's does; a real node's
// pods reach the cluster's services on the machine's end of its link (real-node/network.ts).
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface KafkaPorts {
  broker: number;
  controller: number;
  /** A second client listener that wants SASL/PLAIN: jobs with credentials, refused ones too. */
  sasl: number;
}

/** The one user of the SASL listener. */
export interface KafkaSaslUser {
  username: string;
  password: string;
}

export interface KafkaFiles {
  config: string;
  log4jConfig: string;
  /** Where the broker keeps its logs and KRaft metadata: formatted before it first starts. */
  dataDir: string;
}

// A bounded heap: the broker of a throwaway cluster on a 2-core machine needs little. C1 only
// (TieredStopAtLevel=1): the JVM reaches its first metadata answer on about half the CPU time
// (measured: 3.7-4.0 s instead of 6.0-6.7 s), and a local broker's throughput is bounded by the
// 2 cores its clients share anyway.
const jvmOptions = [
  "-Xms64m",
  "-Xmx384m",
  "-XX:+UseSerialGC",
  "-XX:TieredStopAtLevel=1",
  "-Djava.awt.headless=true",
];

/** Writes the broker's configuration under `dir`; its data goes to `dir/data`. Clients connect to `host`. */
export function writeKafkaConfig(
  dir: string,
  ports: KafkaPorts,
  user: KafkaSaslUser,
  host = "127.0.0.1",
): KafkaFiles {
  mkdirSync(dir, { recursive: true });
  const dataDir = path.join(dir, "data");
  const settings: Record<string, string | number | boolean> = {
    "process.roles": "broker,controller",
    "node.id": 1,
    "controller.quorum.voters": `1@127.0.0.1:${ports.controller}`,
    "controller.listener.names": "CONTROLLER",
    listeners: `PLAINTEXT://${host}:${ports.broker},SASL_PLAINTEXT://${host}:${ports.sasl},CONTROLLER://127.0.0.1:${ports.controller}`,
    "advertised.listeners": `PLAINTEXT://${host}:${ports.broker},SASL_PLAINTEXT://${host}:${ports.sasl}`,
    "listener.security.protocol.map":
      "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "sasl.enabled.mechanisms": "PLAIN",
    // The broker's side of PLAIN: the users it accepts, `user_<name>="<password>"`.
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": `org.apache.kafka.common.security.plain.PlainLoginModule required user_${user.username}="${user.password}";`,
    "log.dirs": dataDir,
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
  return { config, log4jConfig, dataDir };
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

/**
 * Every local cluster's Kafka cluster id (16 bytes, base64url without padding, as `kafka-storage
 * random-uuid` prints them). The clusters are independent, so one id for all is harmless, and it
 * lets every cluster start from one data folder formatted once with the assets.
 */
const clusterId = Buffer.from("streamjob-devkfk").toString("base64url");

/** `kafka-storage format`: KRaft refuses to start on an unformatted data folder. */
export function formatKafkaStorage(libsDir: string, files: KafkaFiles): Promise<void> {
  const args = kafkaJavaArgs(libsDir, files, "kafka.tools.StorageTool", [
    "format",
    "--cluster-id",
    clusterId,
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
      if (code === 0) resolve();
      else
        reject(new Error(`formatting Kafka's storage failed (exit ${code}): ${output.trim().slice(-2000)}`));
    });
  });
}
