// The images as images (built by `npm run images`, which `npm test` runs first): each one started
// with podman the way the chart and the operator start it: uid 65532, read-only root filesystem,
// every capability dropped, no privilege escalation, a tmpfs /tmp.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { IMAGES } from "../../src/images/build.js";
import { containerEnv } from "../../src/images/podman.js";
import { freePort } from "../../src/devcluster/processes.js";
import type { MinioObjectStore, StorageConfig } from "../../src/storage/minio-object-store.js";
import { verifySequenceOutput } from "../../src/taskmanager/job/builtin/sequence.js";
import { LocalJob } from "../support/local-job.js";
import { removeBucket } from "../support/storage.js";
import { waitFor } from "../support/wait.js";
import { clients, createNamespace, kubeconfigPath, testClusterDir } from "./support/cluster.js";
import { storageConfig, storeOnFreshBucket } from "./support/minio.js";

const RESTRICTED = [
  "--user=65532:65532",
  "--read-only",
  "--tmpfs=/tmp",
  "--cap-drop=ALL",
  "--security-opt=no-new-privileges",
];

function podman(...args: string[]): string {
  const result = spawnSync("podman", args, { env: containerEnv(), encoding: "utf8" });
  if (result.status !== 0) throw new Error(`podman ${args.join(" ")}: ${result.stderr}`);
  return result.stdout.trim();
}

/** The uid, capabilities and no_new_privs of a container's main process, as the host kernel sees them. */
function processCredentials(container: string) {
  const pid = podman("inspect", "--format", "{{.State.Pid}}", container);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, "m"))?.[1];
  return {
    uid: field("Uid")?.split(/\s+/)[0],
    capEff: field("CapEff"),
    noNewPrivs: field("NoNewPrivs"),
    seccomp: field("Seccomp"),
  };
}

describe("the operator image", () => {
  const container = `operator-image-${randomBytes(3).toString("hex")}`;
  afterAll(() => spawnSync("podman", ["rm", "--force", container], { env: containerEnv() }));

  test("serves /healthz, /readyz and /metrics against the test cluster, restricted", async () => {
    const namespace = await createNamespace(clients().core, "image-operator");
    const port = await freePort();
    // The operator runs as uid 65532: a copy of the (root-only) kubeconfig it can read.
    const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), "operator-image-")), "kubeconfig");
    copyFileSync(kubeconfigPath, kubeconfig);
    chmodSync(kubeconfig, 0o644);
    podman(
      "run",
      "--detach",
      `--name=${container}`,
      "--network=host", // the test cluster's API server listens on loopback
      ...RESTRICTED,
      `--volume=${kubeconfig}:/etc/streamjob/kubeconfig:ro`,
      "--env=KUBECONFIG=/etc/streamjob/kubeconfig",
      `--env=STREAMJOB_WATCH_NAMESPACES=${namespace}`,
      `--env=STREAMJOB_HTTP_PORT=${port}`,
      IMAGES.operator,
    );
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      "the operator container ready",
      async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200,
      60_000,
    );
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^streamjob_\w+/m);
    expect(metrics).toMatch(/^nodejs_version_info\{version="v24\./m);

    const credentials = processCredentials(container);
    expect(credentials).toMatchObject({ uid: "65532", capEff: "0000000000000000", noNewPrivs: "1" });
    expect(podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container)).toBe("true");
    expect(podman("logs", container)).toContain("watches synced");
  });
});

describe("the TaskManager image", () => {
  let store: MinioObjectStore;
  let storage: StorageConfig;
  let job: LocalJob | undefined;

  beforeAll(async () => {
    storage = await storageConfig();
    store = await storeOnFreshBucket("images");
  });
  afterAll(async () => {
    await job?.stop();
    await removeBucket(store);
  });

  test("runs the sequence job: checkpoints, a SIGKILLed container restored, output with no gap and no duplicate", async () => {
    const args = ["--keys", "20", "--rate", "200"];
    job = new LocalJob({
      program: { name: "sequence", args },
      parallelism: 2,
      maxParallelism: 128,
      store,
      storage,
      image: IMAGES.taskmanager,
      logDir: path.join(testClusterDir, "logs", "local-jobs"),
      policy: { intervalMs: 300, timeoutMs: 10_000 },
    });
    await job.deploy({ epoch: 1, parallelism: 2, program: { name: "sequence", args } });
    expect(processCredentials(job.taskManagers[0]!.container!)).toMatchObject({
      uid: "65532",
      noNewPrivs: "1",
    });
    job.coordinator!.start();
    await waitFor("two checkpoints", () => job!.completed.length >= 2, 60_000);

    expect(await job.taskManagers[1]!.kill("SIGKILL")).toBe(137);
    const restoredFrom = await job.restartFromLatestCheckpoint();
    job.coordinator!.start();
    const after = job.completed.length;
    await waitFor("a checkpoint after the restore", () => job!.completed.length > after + 1, 60_000);
    await job.coordinator!.stop();
    const outcome = await job.coordinator!.triggerCheckpoint();
    expect(outcome.state).toBe("completed");

    expect(restoredFrom).toBeGreaterThanOrEqual(2);
    const report = await verifySequenceOutput(store, job.directory);
    expect(report.problems).toEqual([]);
    expect(report.lastValues.size).toBe(20);
    expect(report.records).toBeGreaterThan(20 * 3);
  });
});
