// The local cluster against its real apiserver: the node agent runs pods as a kubelet would,
// the real controller manager, RBAC and PodSecurity admission do their part.
import type { V1Pod } from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { readState } from "../../src/devcluster/cluster.js";
import { claimOwner } from "../../src/devcluster/pod-networks.js";
import {
  clients,
  containerPid,
  createNamespace,
  kubectl,
  processAlive,
  repoRoot,
  testClusterDir,
  waitFor,
  waitForPod,
} from "./support/cluster.js";

const { core, apps, rbac } = clients();
const namespaces: string[] = [];

async function namespace(prefix: string, labels?: Record<string, string>): Promise<string> {
  const name = await createNamespace(core, prefix, labels);
  namespaces.push(name);
  return name;
}

afterAll(async () => {
  await Promise.all(namespaces.map((name) => core.deleteNamespace({ name }).catch(() => undefined)));
});

function shellPod(name: string, script: string, extra: Partial<V1Pod["spec"]> = {}): V1Pod {
  return {
    metadata: { name },
    spec: {
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 5,
      containers: [{ name: "main", image: "busybox", command: ["sh", "-c", script] }],
      ...extra,
    },
  };
}

const isRunning = (pod: V1Pod) =>
  pod.status?.phase === "Running" && !!pod.status.containerStatuses?.[0]?.state?.running;

test("a shell pod from an unmapped image runs with its own loopback IP and a kubelet-resolved environment", async () => {
  const ns = await namespace("env");
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: "creds" }, stringData: { password: "s3cret" } },
  });
  await core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: "settings" }, data: { mode: "fast", level: "3" } },
  });
  const pod = shellPod(
    "env",
    'echo "POD_IP=$POD_IP NAME=$POD_NAME NS=$POD_NS PASSWORD=$PASSWORD MODE=$MODE CFG_level=$CFG_level GREETING=$GREETING"; sleep 3600',
  );
  pod.spec!.containers[0]!.env = [
    { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "POD_NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
    { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "creds", key: "password" } } },
    { name: "MODE", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
    { name: "GREETING", value: "hello-$(POD_NAME)" },
  ];
  pod.spec!.containers[0]!.envFrom = [{ prefix: "CFG_", configMapRef: { name: "settings" } }];
  await core.createNamespacedPod({ namespace: ns, body: pod });

  const running = await waitForPod(
    core,
    ns,
    "env",
    "Running and Ready",
    (p) => isRunning(p) && !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
  const podIP = running.status!.podIP!;
  expect(podIP).toMatch(/^127\.\d+\.\d+\.\d+$/);
  expect(running.spec!.nodeName).toBe("devcluster-node");

  // kubectl logs goes through the apiserver to the node agent's kubelet endpoint.
  const logs = await waitFor("the pod's output", async () => {
    const out = await kubectl("logs", "-n", ns, "env");
    return out.includes("POD_IP=") ? out : undefined;
  });
  // kubectl describe shows what the kubelet would have recorded.
  const reasons = await waitFor("the pod's events", async () => {
    const out = await kubectl(
      "get",
      "events",
      "-n",
      ns,
      "--field-selector",
      "involvedObject.name=env",
      "-o",
      "jsonpath={.items[*].reason}",
    );
    return out.includes("Started") ? out.split(" ") : undefined;
  });
  expect(reasons).toEqual(expect.arrayContaining(["Scheduled", "Started"]));
  expect(logs.trim()).toBe(
    `POD_IP=${podIP} NAME=env NS=${ns} PASSWORD=s3cret MODE=fast CFG_level=3 GREETING=hello-env`,
  );
});

test("the cluster holds its own pod address block, and `cluster:up` on the running cluster keeps it", async () => {
  const before = readState(testClusterDir)!;
  const octet = Number(/^127\.(\d+)\.0\.0\/16$/.exec(before.podNetwork ?? "")?.[1]);
  expect(claimOwner(octet)).toBe(testClusterDir);
  const { stdout } = await promisify(execFile)(process.execPath, ["dist/devcluster/cli.js", "up"], {
    cwd: repoRoot,
    env: { ...process.env, DEVCLUSTER_DIR: testClusterDir },
  });
  expect(stdout).toContain(`local cluster already running at ${before.apiserverUrl}`);
  expect(stdout).toContain(`pod addresses from ${before.podNetwork}`);
  expect(readState(testClusterDir)!.podNetwork).toBe(before.podNetwork);
  expect(claimOwner(octet)).toBe(testClusterDir);

  const ns = await namespace("block");
  await core.createNamespacedPod({ namespace: ns, body: shellPod("ip", "sleep 3600") });
  const running = await waitForPod(core, ns, "ip", "Running", isRunning);
  expect(running.status!.podIP!.startsWith(`127.${octet}.`)).toBe(true);
});

test("a pod that refers to a missing Secret waits with CreateContainerConfigError, then starts once it exists", async () => {
  const ns = await namespace("missing");
  const pod = shellPod("waits", "echo started; sleep 3600");
  pod.spec!.containers[0]!.env = [
    { name: "TOKEN", valueFrom: { secretKeyRef: { name: "later", key: "token" } } },
  ];
  await core.createNamespacedPod({ namespace: ns, body: pod });
  const waiting = await waitForPod(
    core,
    ns,
    "waits",
    "CreateContainerConfigError",
    (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerConfigError",
  );
  expect(waiting.status!.containerStatuses![0]!.state!.waiting!.message).toContain(
    'secret "later" not found',
  );
  // Past the 5 s retry: the kubelet would try again, without a second event for the same problem.
  await new Promise((r) => setTimeout(r, 6000));
  const failed = await waitFor("a Failed event", async () => {
    const events = (await core.listNamespacedEvent({ namespace: ns })).items.filter(
      (e) => e.reason === "Failed",
    );
    return events.length > 0 ? events : undefined;
  });
  expect(failed).toHaveLength(1); // one event per distinct problem, not one per retry
  expect(failed[0]!.message).toBe('Error: secret "later" not found');
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: "later" }, stringData: { token: "t" } },
  });
  await waitForPod(core, ns, "waits", "Running", isRunning);
});

test("a killed process is restarted under restartPolicy Always and fails the pod under Never", async () => {
  const ns = await namespace("restart");
  await core.createNamespacedPod({ namespace: ns, body: shellPod("always", "sleep 3600") });
  await core.createNamespacedPod({
    namespace: ns,
    body: shellPod("never", "sleep 3600", { restartPolicy: "Never" }),
  });
  const always = await waitForPod(core, ns, "always", "Running", isRunning);
  const never = await waitForPod(core, ns, "never", "Running", isRunning);

  const alwaysPid = containerPid(always);
  process.kill(alwaysPid, "SIGKILL");
  process.kill(containerPid(never), "SIGKILL");

  const restarted = await waitForPod(
    core,
    ns,
    "always",
    "restarted",
    (p) => isRunning(p) && p.status!.containerStatuses![0]!.restartCount === 1,
  );
  expect(restarted.status!.containerStatuses![0]!.lastState!.terminated!.exitCode).toBe(137);
  expect(containerPid(restarted)).not.toBe(alwaysPid);

  const failed = await waitForPod(core, ns, "never", "Failed", (p) => p.status?.phase === "Failed");
  expect(failed.status!.containerStatuses![0]!.state!.terminated!.exitCode).toBe(137);
  expect(failed.status!.containerStatuses![0]!.restartCount).toBe(0);
});

test("deleting a pod stops its process (SIGTERM first) and removes the object", async () => {
  const ns = await namespace("delete");
  // Exits 0 on SIGTERM: proves the graceful signal arrives before any SIGKILL.
  await core.createNamespacedPod({
    namespace: ns,
    body: shellPod("victim", "trap 'echo got-sigterm; exit 0' TERM; while true; do sleep 0.2; done", {
      terminationGracePeriodSeconds: 30,
    }),
  });
  const pid = containerPid(await waitForPod(core, ns, "victim", "Running", isRunning));
  expect(processAlive(pid)).toBe(true);
  const started = Date.now();
  await core.deleteNamespacedPod({ name: "victim", namespace: ns });
  await waitFor("the pod object to disappear", async () => {
    try {
      await core.readNamespacedPod({ name: "victim", namespace: ns });
      return false;
    } catch (err) {
      return (err as { code?: number }).code === 404;
    }
  });
  expect(processAlive(pid)).toBe(false);
  expect(Date.now() - started).toBeLessThan(20_000); // it ended on SIGTERM, not after the 30s grace period
});

test("a Deployment gets its pods through the real kube-controller-manager", async () => {
  const ns = await namespace("deploy");
  const labels = { app: "web" };
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name: "web" },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            terminationGracePeriodSeconds: 2,
            containers: [{ name: "web", image: "busybox", command: ["sh", "-c", "sleep 3600"] }],
          },
        },
      },
    },
  });
  await waitFor(
    "2 ready replicas",
    async () =>
      (await apps.readNamespacedDeployment({ name: "web", namespace: ns })).status?.readyReplicas === 2,
  );
  const pods = (await core.listNamespacedPod({ namespace: ns, labelSelector: "app=web" })).items;
  expect(pods).toHaveLength(2);
  for (const pod of pods) expect(pod.metadata!.ownerReferences![0]!.kind).toBe("ReplicaSet");
  expect(new Set(pods.map((p) => p.status!.podIP)).size).toBe(2);

  await apps.patchNamespacedDeploymentScale({
    name: "web",
    namespace: ns,
    body: [{ op: "replace", path: "/spec/replicas", value: 0 }],
  });
  await waitFor(
    "the pods to be gone",
    async () => (await core.listNamespacedPod({ namespace: ns })).items.length === 0,
  );
  for (const pod of pods) expect(processAlive(containerPid(pod))).toBe(false);
});

test("a pod's ServiceAccount token lists pods only once a Role allows it", async () => {
  const ns = await namespace("rbac");
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "reader" } } });
  const listPods = (name: string): V1Pod => ({
    metadata: { name },
    spec: {
      serviceAccountName: "reader",
      restartPolicy: "Never",
      containers: [
        {
          name: "main",
          image: "node:20",
          command: ["node", path.join(repoRoot, "test/integration/fixtures/list-pods.mjs")],
        },
      ],
    },
  });
  const outputOf = async (name: string) => {
    await waitForPod(core, ns, name, "Succeeded", (p) => p.status?.phase === "Succeeded");
    return (await kubectl("logs", "-n", ns, name)).trim();
  };

  await core.createNamespacedPod({ namespace: ns, body: listPods("before") });
  expect(await outputOf("before")).toBe("list-pods: 403");

  await rbac.createNamespacedRole({
    namespace: ns,
    body: {
      metadata: { name: "pod-reader" },
      rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["list"] }],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name: "reader-reads-pods" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "pod-reader" },
      subjects: [{ kind: "ServiceAccount", name: "reader", namespace: ns }],
    },
  });
  await core.createNamespacedPod({ namespace: ns, body: listPods("after") });
  expect(await outputOf("after")).toMatch(/^list-pods: 200 \(\d+ pods\)$/);
});

test("a namespace enforcing the restricted Pod Security Standard refuses a privileged pod and runs a compliant one as its user", async () => {
  const ns = await namespace("restricted", { "pod-security.kubernetes.io/enforce": "restricted" });
  const privileged = shellPod("privileged", "sleep 3600");
  privileged.spec!.containers[0]!.securityContext = { privileged: true };
  await expect(core.createNamespacedPod({ namespace: ns, body: privileged })).rejects.toMatchObject({
    code: 403,
    body: expect.stringContaining('violates PodSecurity \\"restricted:latest\\"'),
  });

  const compliant = shellPod("compliant", "id -u; sleep 3600");
  compliant.spec!.securityContext = {
    runAsNonRoot: true,
    runAsUser: 1000,
    seccompProfile: { type: "RuntimeDefault" },
  };
  compliant.spec!.containers[0]!.securityContext = {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
  };
  await core.createNamespacedPod({ namespace: ns, body: compliant });
  await waitForPod(core, ns, "compliant", "Running", isRunning);
  expect(
    await waitFor("output", async () => (await kubectl("logs", "-n", ns, "compliant")).trim() || undefined),
  ).toBe("1000");
});

test("readiness follows the httpGet probe", async () => {
  const ns = await namespace("probe");
  // Serves 503 until /tmp/ready exists in the pod's directory, then 200.
  const server = [
    "const http = require('http'); const fs = require('fs');",
    "http.createServer((q, s) => { s.writeHead(fs.existsSync('ready') ? 200 : 503); s.end(); })",
    ".listen(8080, process.env.POD_IP);",
  ].join("");
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: "web" },
      spec: {
        containers: [
          {
            name: "web",
            image: "node:20",
            command: ["node", "-e", server],
            env: [{ name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }],
            ports: [{ name: "http", containerPort: 8080 }],
            readinessProbe: { httpGet: { path: "/", port: "http" }, periodSeconds: 1, failureThreshold: 1 },
          },
        ],
      },
    },
  });
  const ready = (p: V1Pod) =>
    p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  const running = await waitForPod(core, ns, "web", "Running", isRunning);
  await new Promise((r) => setTimeout(r, 2500));
  expect(ready(await core.readNamespacedPod({ name: "web", namespace: ns }))).toBe(false);
  expect(running.status!.containerStatuses![0]!.ready).toBe(false);

  const podsDir = path.join(testClusterDir, "pods");
  const podDir = readdirSync(podsDir).find((d) => d.startsWith(`${ns}_web_`))!;
  writeFileSync(path.join(podsDir, podDir, "ready"), "");
  await waitForPod(core, ns, "web", "Ready", ready, 10_000);
});

test("a container's termination message: the file it wrote, else with FallbackToLogsOnError its log's tail", async () => {
  const ns = await namespace("message");
  const never = { restartPolicy: "Never" as const };
  await core.createNamespacedPod({
    namespace: ns,
    body: shellPod(
      "file",
      "echo starting; echo 'cannot go on: no config' > /dev/termination-log; exit 3",
      never,
    ),
  });
  const fallback = shellPod("logs", "echo first; echo 'last words' >&2; exit 4", never);
  fallback.spec!.containers[0]!.terminationMessagePolicy = "FallbackToLogsOnError";
  await core.createNamespacedPod({ namespace: ns, body: fallback });
  const clean = shellPod("clean", "echo all good", never);
  clean.spec!.containers[0]!.terminationMessagePolicy = "FallbackToLogsOnError";
  await core.createNamespacedPod({ namespace: ns, body: clean });

  const terminated = async (name: string, phase: string) =>
    (await waitForPod(core, ns, name, phase, (p) => p.status?.phase === phase)).status!.containerStatuses![0]!
      .state!.terminated!;
  expect(await terminated("file", "Failed")).toMatchObject({
    exitCode: 3,
    reason: "Error",
    message: "cannot go on: no config\n",
  });
  expect(await terminated("logs", "Failed")).toMatchObject({ exitCode: 4, message: "first\nlast words\n" });
  // Only a failed container falls back to its log.
  expect((await terminated("clean", "Succeeded")).message).toBeUndefined();
});

test("a liveness-probe kill reads as killed (137, Error) after a Killing event, even when the process exits 0", async () => {
  const ns = await namespace("liveness");
  const hung = shellPod("hung", "trap 'exit 0' TERM; while true; do sleep 0.2; done", {
    restartPolicy: "Never",
  });
  hung.spec!.containers[0]!.livenessProbe = {
    exec: { command: ["false"] },
    periodSeconds: 1,
    failureThreshold: 2,
  };
  await core.createNamespacedPod({ namespace: ns, body: hung });
  const failed = await waitForPod(core, ns, "hung", "Failed", (p) => p.status?.phase === "Failed", 30_000);
  expect(failed.status!.containerStatuses![0]!.state!.terminated).toMatchObject({
    exitCode: 137,
    reason: "Error",
  });
  const events = await core.listNamespacedEvent({ namespace: ns, fieldSelector: "reason=Killing" });
  expect(events.items.map((event) => event.message)).toContain(
    "Container main failed liveness probe, will be restarted",
  );
});
