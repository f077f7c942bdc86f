import { notControlPlaneProcess, notPodProcess, readProcessFacts } from "../../support/chaos/identify.js";

const CLUSTER = "/repo/.devcluster/chaos";
const taskManager = {
  pid: 4242,
  cmdline: ["node", "/repo/dist/taskmanager/main.js"],
  environ: { HOME: `${CLUSTER}/pods/ns_seq-tm-1-0_ab12cd34`, HOSTNAME: "seq-tm-1-0", PATH: "/usr/bin" },
};

const TASKMANAGER = { entryPoint: "taskmanager/main.js", imageEntry: "taskmanager.mjs" };
// On a real node: the image's entry module, HOME wherever the image puts it, the pid a runc init.
const inContainer = {
  pid: 5151,
  cmdline: ["/nodejs/bin/node", "taskmanager.mjs"],
  environ: { HOME: "/home/nonroot", HOSTNAME: "seq-tm-1-0" },
};

describe("notPodProcess", () => {
  test("the pod's own TaskManager process", () => {
    expect(notPodProcess(taskManager, CLUSTER, "seq-tm-1-0", TASKMANAGER)).toBeUndefined();
  });

  test("the pod's own TaskManager container on the cluster's real node", () => {
    expect(notPodProcess(inContainer, CLUSTER, "seq-tm-1-0", TASKMANAGER, [5151])).toBeUndefined();
  });

  test.each([
    ["a container that is not one of this cluster's", [4242], /neither a container/],
    ["another pod's container", [5151], /HOSTNAME seq-tm-1-0 is not seq-tm-9-9/],
  ])("refuses %s", (_, initPids, reason) => {
    const podName = initPids.includes(5151) ? "seq-tm-9-9" : "seq-tm-1-0";
    expect(notPodProcess(inContainer, CLUSTER, podName, TASKMANAGER, initPids)).toMatch(reason);
  });

  test.each([
    ["a process that is gone", undefined, /gone/],
    [
      "another cluster's pod",
      { ...taskManager, environ: { ...taskManager.environ, HOME: "/repo/.devcluster/test/pods/x" } },
      /nor HOME in a pod folder/,
    ],
    [
      "a folder beside the cluster's",
      { ...taskManager, environ: { ...taskManager.environ, HOME: `${CLUSTER}-other/pods/x` } },
      /nor HOME in a pod folder/,
    ],
    ["no HOME at all (a pid reused by some other process)", { ...taskManager, environ: {} }, /\(none\)/],
    [
      "another pod of the same cluster",
      { ...taskManager, environ: { ...taskManager.environ, HOSTNAME: "seq-tm-1-1" } },
      /is not seq-tm-1-0/,
    ],
    [
      "another program in the pod",
      { ...taskManager, cmdline: ["sh", "-c", "sleep 1"] },
      /does not run taskmanager\/main.js$/,
    ],
  ])("refuses %s", (_, facts, reason) => {
    expect(notPodProcess(facts, CLUSTER, "seq-tm-1-0", TASKMANAGER)).toMatch(reason);
  });
});

describe("notControlPlaneProcess", () => {
  const minio = {
    pid: 99,
    cmdline: ["/cache/assets/minio", "server", `${CLUSTER}/minio`, "--address=127.0.0.1:9000"],
    environ: {},
  };
  const apiserver = {
    pid: 100,
    cmdline: [
      "/cache/kube-apiserver",
      "--etcd-servers=http://127.0.0.1:2379",
      `--client-ca-file=${CLUSTER}/pki/ca.crt`,
    ],
    environ: {},
  };

  test("the cluster's own MinIO and kube-apiserver", () => {
    expect(notControlPlaneProcess(minio, CLUSTER, "minio")).toBeUndefined();
    expect(notControlPlaneProcess(apiserver, CLUSTER, "kube-apiserver")).toBeUndefined();
  });

  test("another binary under the recorded pid", () => {
    expect(notControlPlaneProcess(minio, CLUSTER, "kube-apiserver")).toMatch(/is not kube-apiserver/);
  });

  test("the same binary of another cluster", () => {
    expect(notControlPlaneProcess(minio, "/repo/.devcluster/test", "minio")).toMatch(
      /no argument of minio names/,
    );
  });
});

test("readProcessFacts reads this process, and nothing for a pid that does not exist", () => {
  const facts = readProcessFacts(process.pid);
  expect(facts?.cmdline[0]).toMatch(/node/);
  expect(facts?.environ.PATH).toBe(process.env.PATH);
  expect(readProcessFacts(2 ** 22 + 1)).toBeUndefined();
});
