// Test assets: the real Kubernetes control plane, etcd, MinIO and helm, built from Go modules
// pinned in hack/assets/<component>/go.mod (go.sum committed: the checksum database is not
// reachable from every machine, so the committed hashes are what every build verifies against),
// and Apache Kafka's jars from Maven Central, pinned in hack/assets/kafka/pom.xml.
//
// Binaries land in a cache outside the repository so fresh clones and CI reuse them:
//   $STREAMJOB_ASSETS_DIR or $XDG_CACHE_HOME/streamjob-operator/assets or ~/.cache/streamjob-operator/assets
//     kube-v1.36.3/{kube-apiserver,kube-controller-manager,kubectl,kubelet,kube-proxy}
//     etcd-v3.6.16/etcd ...
//     containerd-v2.4.2/{containerd,containerd-shim-runc-v2,ctr}, cni-v1.10.0/{bridge,host-local,...}
//     coredns-v1.15.0/coredns
//     kafka-4.1.1/libs/*.jar, kafka-4.1.1/storage-template/ (an empty, formatted data folder)
// Like envtest, TEST_ASSET_<BINARY> and KUBEBUILDER_ASSETS point at binaries a user already has.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatKafkaStorage, writeKafkaConfig } from "./kafka.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** What every local cluster runs: built by `npm run assets` and `cluster:up`. */
export const coreBinaries = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kubectl",
  "minio",
  "helm",
] as const;

/**
 * A real node (src/devcluster/real-node): kubelet on containerd, pods on the CNI bridge. Built
 * only when asked for (`ensureRealNodeAssets`): a cluster with the emulated node does not need them.
 */
export const realNodeBinaries = [
  "kubelet",
  "kube-proxy",
  "kube-scheduler",
  "containerd",
  "containerd-shim-runc-v2",
  "ctr",
  "bridge",
  "host-local",
  "loopback",
  "portmap",
  "coredns",
] as const;

/** A core binary: what `ensureAssets` returns and a cluster links into its bin/ folder. */
export type BinaryName = (typeof coreBinaries)[number];
export type RealNodeBinaryName = (typeof realNodeBinaries)[number];
export type AssetBinaryName = BinaryName | RealNodeBinaryName;

interface Component {
  /** Folder under hack/assets holding the pinned go.mod/go.sum. */
  name: string;
  /** Module whose version names the cache folder. */
  module: string;
  /** Main packages built in one `go build`, and the binary each produces. */
  packages: Record<string, AssetBinaryName>;
  ldflags?: (version: string) => string[];
  /** Build tags (`go build -tags`). */
  tags?: string[];
  /** Environment for `go build`, e.g. CGO_ENABLED=0 for static binaries. */
  env?: Record<string, string>;
}

// kube-apiserver reports its version through these variables; `hack/lib/version.sh` in
// kubernetes sets the same ones so `/version` says v1.36.3 instead of v0.0.0-master.
function kubeVersionFlags(version: string): string[] {
  const [major, minor] = version.replace(/^v/, "").split(".");
  return ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"].flatMap((pkg) => [
    `-X ${pkg}.gitVersion=${version}`,
    `-X ${pkg}.gitMajor=${major}`,
    `-X ${pkg}.gitMinor=${minor}`,
    `-X ${pkg}.gitTreeState=clean`,
    `-X ${pkg}.buildDate=2026-01-01T00:00:00Z`,
  ]);
}

export const components: Component[] = [
  {
    name: "kube",
    module: "k8s.io/kubernetes",
    packages: {
      "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
      "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
      "k8s.io/kubernetes/cmd/kubectl": "kubectl",
      "k8s.io/kubernetes/cmd/kubelet": "kubelet",
      "k8s.io/kubernetes/cmd/kube-proxy": "kube-proxy",
      "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
    },
    ldflags: kubeVersionFlags,
  },
  { name: "etcd", module: "go.etcd.io/etcd/server/v3", packages: { "go.etcd.io/etcd/server/v3": "etcd" } },
  { name: "minio", module: "github.com/minio/minio", packages: { "github.com/minio/minio": "minio" } },
  { name: "helm", module: "helm.sh/helm/v3", packages: { "helm.sh/helm/v3/cmd/helm": "helm" } },
  {
    // Static binaries (no cgo): the snapshotters that need C libraries (btrfs) or extra kernel
    // machinery (devmapper, zfs) are left out; overlayfs and native are what the real node uses.
    name: "containerd",
    module: "github.com/containerd/containerd/v2",
    packages: {
      "github.com/containerd/containerd/v2/cmd/containerd": "containerd",
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2": "containerd-shim-runc-v2",
      "github.com/containerd/containerd/v2/cmd/ctr": "ctr",
    },
    ldflags: (version) => [
      `-X github.com/containerd/containerd/v2/version.Version=${version}`,
      "-X github.com/containerd/containerd/v2/version.Revision=streamjob-operator",
    ],
    tags: ["no_btrfs", "no_devmapper", "no_zfs", "urfave_cli_no_docs"],
    env: { CGO_ENABLED: "0" },
  },
  {
    name: "cni",
    module: "github.com/containernetworking/plugins",
    packages: {
      "github.com/containernetworking/plugins/plugins/main/bridge": "bridge",
      "github.com/containernetworking/plugins/plugins/ipam/host-local": "host-local",
      "github.com/containernetworking/plugins/plugins/main/loopback": "loopback",
      "github.com/containernetworking/plugins/plugins/meta/portmap": "portmap",
    },
    ldflags: (version) => [
      `-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${version}`,
    ],
    env: { CGO_ENABLED: "0" },
  },
  {
    // Cluster DNS for the real node, run as a host process (src/devcluster/real-node/dns.ts): the
    // default plugin set of the upstream main package (kubernetes, forward, cache, ...).
    name: "coredns",
    module: "github.com/coredns/coredns",
    packages: { "github.com/coredns/coredns": "coredns" },
    ldflags: (version) => [`-X github.com/coredns/coredns/coremain.GitCommit=${version}`],
    env: { CGO_ENABLED: "0" },
  },
];

const envtestVariable: Partial<Record<AssetBinaryName, string>> = {
  etcd: "TEST_ASSET_ETCD",
  "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
  kubectl: "TEST_ASSET_KUBECTL",
  "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
  minio: "TEST_ASSET_MINIO",
  helm: "TEST_ASSET_HELM",
};

export function assetsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STREAMJOB_ASSETS_DIR) return env.STREAMJOB_ASSETS_DIR;
  const cacheHome = env.XDG_CACHE_HOME || path.join(homedir(), ".cache");
  return path.join(cacheHome, "streamjob-operator", "assets");
}

function goModPath(component: Component): string {
  return path.join(repoRoot, "hack", "assets", component.name, "go.mod");
}

/** The pinned version of a component, read from its go.mod (the single source of truth). */
export function componentVersion(component: Component): string {
  const goMod = readFileSync(goModPath(component), "utf8");
  const escaped = component.module.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const match = goMod.match(new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m"));
  if (!match?.[1]) throw new Error(`${goModPath(component)} does not require ${component.module}`);
  return match[1];
}

export function componentDir(component: Component, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(assetsCacheDir(env), `${component.name}-${componentVersion(component)}`);
}

function isExecutableFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Where a binary comes from: an explicit TEST_ASSET_* path, KUBEBUILDER_ASSETS, or the cache. */
export function resolveBinary(binary: AssetBinaryName, env: NodeJS.ProcessEnv = process.env): string {
  const variable = envtestVariable[binary];
  const explicit = variable ? env[variable] : undefined;
  if (explicit) {
    if (!isExecutableFile(explicit)) throw new Error(`${variable}=${explicit} is not a file`);
    return explicit;
  }
  if (env.KUBEBUILDER_ASSETS) {
    const candidate = path.join(env.KUBEBUILDER_ASSETS, binary);
    if (isExecutableFile(candidate)) return candidate;
  }
  const component = components.find((c) => Object.values(c.packages).includes(binary));
  if (!component) throw new Error(`unknown binary ${binary}`);
  return path.join(componentDir(component, env), binary);
}

export function resolveAllBinaries(env: NodeJS.ProcessEnv = process.env): Record<BinaryName, string> {
  return resolveBinaries(coreBinaries, env, "`npm run assets`");
}

function resolveBinaries<N extends AssetBinaryName>(
  names: readonly N[],
  env: NodeJS.ProcessEnv,
  remedy: string,
): Record<N, string> {
  const resolved = Object.fromEntries(names.map((n) => [n, resolveBinary(n, env)])) as Record<N, string>;
  const missing = names.filter((n) => !isExecutableFile(resolved[n]));
  if (missing.length > 0) {
    throw new Error(`missing test assets: ${missing.join(", ")}. Run ${remedy} to build them.`);
  }
  return resolved;
}

/**
 * Components with at least one of `binaries` (by default the core ones) not yet available from
 * the environment or the cache.
 */
export function componentsToBuild(
  env: NodeJS.ProcessEnv = process.env,
  binaries: readonly AssetBinaryName[] = coreBinaries,
): Component[] {
  return components.filter((c) =>
    Object.values(c.packages).some(
      (binary) => binaries.includes(binary) && !isExecutableFile(resolveBinary(binary, env)),
    ),
  );
}

function requireGo(minimum: string): string {
  const result = spawnSync("go", ["version"], {
    encoding: "utf8",
    env: { ...process.env, GOTOOLCHAIN: "local" },
  });
  const help =
    `Building the local cluster's binaries needs Go >= ${minimum} (https://go.dev/dl/) and access to the Go ` +
    "module proxy. Alternatively point KUBEBUILDER_ASSETS (or TEST_ASSET_ETCD, TEST_ASSET_KUBE_APISERVER, " +
    "TEST_ASSET_KUBECTL, TEST_ASSET_KUBE_CONTROLLER_MANAGER, TEST_ASSET_MINIO, TEST_ASSET_HELM) at existing binaries.";
  if (result.error || result.status !== 0) throw new Error(`go was not found on PATH. ${help}`);
  const version = result.stdout.match(/go(\d+)\.(\d+)/);
  const [wantMajor, wantMinor] = minimum.split(".").map(Number);
  if (!version || Number(version[1]) < wantMajor! || Number(version[2]) < wantMinor!) {
    throw new Error(`${result.stdout.trim()} is too old. ${help}`);
  }
  return result.stdout.trim();
}

function formatElapsed(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function goEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // GOTOOLCHAIN=local: never download another toolchain. GOSUMDB=off with -mod=readonly: hashes
  // come from the committed go.sum; a module missing from it fails the build instead of asking
  // a checksum database that may be unreachable.
  return {
    ...process.env,
    GOTOOLCHAIN: "local",
    GOSUMDB: "off",
    GOFLAGS: "-mod=readonly -buildvcs=false",
    ...extra,
  };
}

function run(
  command: string,
  args: string[],
  cwd: string,
  onLine?: (line: string) => void,
  extraEnv?: Record<string, string>,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: goEnv(extraEnv), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderrTail = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    let partial = "";
    child.stderr.on("data", (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        stderrTail = (stderrTail + line + "\n").slice(-4000);
        onLine?.(line);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(" ")} failed (exit ${code}):\n${stderrTail}${partial}`));
    });
  });
}

async function buildComponent(component: Component, log: (line: string) => void): Promise<void> {
  const version = componentVersion(component);
  const finalDir = componentDir(component);
  const stagingDir = `${finalDir}.partial-${process.pid}`;
  const moduleDir = path.dirname(goModPath(component));
  const packages = Object.keys(component.packages);
  const started = Date.now();
  const label = `${component.name} ${version}`;

  log(`${label}: downloading modules`);
  const tags = component.tags?.length ? ["-tags", component.tags.join(",")] : [];
  await run("go", ["mod", "download"], moduleDir);
  const deps = (await run("go", ["list", "-deps", ...tags, ...packages], moduleDir, undefined, component.env))
    .split("\n")
    .filter(Boolean).length;

  rmSync(stagingDir, { recursive: true, force: true });
  mkdirSync(stagingDir, { recursive: true });
  const ldflags = ["-s", "-w", ...(component.ldflags?.(version) ?? [])].join(" ");
  let compiled = 0;
  let lastReport = 0;
  try {
    // -v names each package as it is compiled (cached ones are not): that is the progress.
    // One package: name the binary (go would call go.etcd.io/etcd/server/v3 "server"); several: a folder.
    const binaries = Object.values(component.packages);
    const output = binaries.length === 1 ? path.join(stagingDir, binaries[0]!) : stagingDir + "/";
    await run(
      "go",
      ["build", "-v", "-trimpath", ...tags, "-ldflags", ldflags, "-o", output, ...packages],
      moduleDir,
      () => {
        compiled++;
        if (Date.now() - lastReport > 10_000) {
          lastReport = Date.now();
          const pct = Math.min(99, Math.round((compiled / deps) * 100));
          log(
            `${label}: compiled ${compiled}/${deps} packages (${pct}%), ${formatElapsed(Date.now() - started)}`,
          );
        }
      },
      component.env,
    );
    for (const binary of binaries) {
      if (!isExecutableFile(path.join(stagingDir, binary))) throw new Error(`go build produced no ${binary}`);
    }
    // A complete folder appears atomically; a failed build leaves only the staging folder, removed below.
    rmSync(finalDir, { recursive: true, force: true });
    renameSync(stagingDir, finalDir);
  } finally {
    rmSync(stagingDir, { recursive: true, force: true });
  }
  log(`${label}: built in ${formatElapsed(Date.now() - started)} -> ${finalDir}`);
}

/** Builds every component whose binaries are missing, and fetches Kafka's jars. A second run is a no-op. */
export async function ensureAssets(
  log: (line: string) => void = console.log,
): Promise<Record<BinaryName, string>> {
  await ensureKafka(log);
  await buildMissing(coreBinaries, log);
  return resolveAllBinaries();
}

/** Builds kubelet, kube-proxy, containerd, the CNI plugins and CoreDNS if missing (not Kafka: a node does not need it). */
export async function ensureRealNodeAssets(
  log: (line: string) => void = console.log,
): Promise<Record<RealNodeBinaryName, string>> {
  await buildMissing(realNodeBinaries, log);
  return resolveBinaries(realNodeBinaries, process.env, "`ensureRealNodeAssets()`");
}

async function buildMissing(
  binaries: readonly AssetBinaryName[],
  log: (line: string) => void,
): Promise<void> {
  const todo = componentsToBuild(process.env, binaries);
  if (todo.length === 0) {
    log(`test assets present in ${assetsCacheDir()}`);
    return;
  }
  const goVersion = requireGo("1.26");
  log(`building ${todo.map((c) => `${c.name} ${componentVersion(c)}`).join(", ")} with ${goVersion}`);
  log("the first build takes tens of minutes on 2 cores; later runs reuse the cache");
  mkdirSync(assetsCacheDir(), { recursive: true });
  for (const component of todo) await buildComponent(component, log);
}

// Kafka: not built, only fetched. `mvn dependency:copy-dependencies` resolves the broker's jars and
// their dependencies as the pom pins them (-C: a checksum mismatch fails the download).

const kafkaPom = path.join(repoRoot, "hack", "assets", "kafka", "pom.xml");

/** The pinned Kafka version, read from the pom (the single source of truth). */
export function kafkaVersion(): string {
  const match = readFileSync(kafkaPom, "utf8").match(/<kafka\.version>([^<]+)<\/kafka\.version>/);
  if (!match?.[1]) throw new Error(`${kafkaPom} has no <kafka.version>`);
  return match[1];
}

function kafkaDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(assetsCacheDir(env), `kafka-${kafkaVersion()}`);
}

/** The folder of jars the broker runs from: `java -cp '<dir>/*' kafka.Kafka`. */
export function kafkaLibsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(kafkaDir(env), "libs");
}

/**
 * A data folder `kafka-storage format` prepared once: each cluster starts its broker on a copy,
 * which saves a JVM start (3 to 5 s of CPU) on every `cluster:up`.
 */
export function kafkaStorageTemplateDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(kafkaDir(env), "storage-template");
}

/** True when the cache holds Kafka's jars and storage template, so `ensureKafka` has nothing to do. */
export function kafkaAssetsPresent(env: NodeJS.ProcessEnv = process.env): boolean {
  return kafkaPresent(kafkaDir(env));
}

function kafkaPresent(dir: string): boolean {
  return (
    isExecutableFile(path.join(dir, "libs", `kafka_2.13-${kafkaVersion()}.jar`)) &&
    isExecutableFile(path.join(dir, "storage-template", "meta.properties"))
  );
}

function requireMavenAndJava(): void {
  const help =
    "Fetching the local cluster's Kafka broker needs Maven (mvn) and Java >= 17 on PATH, and access to Maven Central.";
  const java = spawnSync("java", ["-version"], { encoding: "utf8" });
  const javaMajor = Number((java.stderr ?? "").match(/version "(\d+)/)?.[1]);
  if (java.error || java.status !== 0) throw new Error(`java was not found on PATH. ${help}`);
  if (!(javaMajor >= 17)) throw new Error(`${java.stderr.split("\n")[0]} is too old. ${help}`);
  const mvn = spawnSync("mvn", ["--version"], { encoding: "utf8" });
  if (mvn.error || mvn.status !== 0) throw new Error(`mvn was not found on PATH. ${help}`);
}

/**
 * Copies Kafka's jars into the cache and formats the storage template, unless both are there; the
 * folder appears complete or not at all.
 */
export async function ensureKafka(log: (line: string) => void = console.log): Promise<void> {
  const versionDir = kafkaDir();
  if (kafkaPresent(versionDir)) return;
  requireMavenAndJava();
  const label = `kafka ${kafkaVersion()}`;
  const stagingDir = `${versionDir}.partial-${process.pid}`;
  const started = Date.now();
  log(`${label}: fetching the broker's jars from Maven Central`);
  rmSync(stagingDir, { recursive: true, force: true });
  mkdirSync(assetsCacheDir(), { recursive: true });
  let fetched = 0;
  let lastReport = 0;
  try {
    // Maven prints progress on stdout: one "Downloaded from" line per file fetched (none when its
    // own repository already has them).
    await runMaven(
      [
        "-B",
        "-C",
        "-f",
        kafkaPom,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        `-DoutputDirectory=${path.join(stagingDir, "libs")}`,
      ],
      (line) => {
        if (!line.includes("Downloaded from")) return;
        fetched++;
        if (Date.now() - lastReport > 5_000) {
          lastReport = Date.now();
          log(`${label}: fetched ${fetched} files, ${formatElapsed(Date.now() - started)}`);
        }
      },
    );
    log(`${label}: formatting the storage template`);
    // Ports and paths of this configuration are not recorded in the formatted folder.
    const files = writeKafkaConfig(
      path.join(stagingDir, "format"),
      { broker: 9092, controller: 9093, sasl: 9094 },
      { username: "format", password: "format" },
    );
    await formatKafkaStorage(path.join(stagingDir, "libs"), files);
    renameSync(files.dataDir, path.join(stagingDir, "storage-template"));
    rmSync(path.join(stagingDir, "format"), { recursive: true });
    if (!kafkaPresent(stagingDir))
      throw new Error(`${stagingDir} lacks libs/kafka_2.13-${kafkaVersion()}.jar or storage-template/`);
    rmSync(versionDir, { recursive: true, force: true });
    renameSync(stagingDir, versionDir);
  } finally {
    rmSync(stagingDir, { recursive: true, force: true });
  }
  log(`${label}: fetched in ${formatElapsed(Date.now() - started)} -> ${versionDir}`);
}

function runMaven(args: string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("mvn", args, { cwd: path.dirname(kafkaPom), stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    let partial = "";
    const collect = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        tail = (tail + line + "\n").slice(-4000);
        onLine(line);
      }
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`mvn ${args.join(" ")} failed (exit ${code}):\n${tail}${partial}`)),
    );
  });
}
