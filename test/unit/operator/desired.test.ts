import type { V1Container, V1EnvVar, V1Pod } from "@kubernetes/client-node";
import { TaskManagerConfig } from "../../../src/api/protocol.js";
import { desiredChildren, type DesiredInput } from "../../../src/operator/desired.js";
import { MAX_LABEL_LENGTH, taskManagerPodName, tokenSecretName } from "../../../src/operator/names.js";
import { STORAGE, streamJob } from "./fixtures.js";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function container(pod: V1Pod): V1Container {
  const only = pod.spec?.containers[0];
  if (!only || pod.spec?.containers.length !== 1) throw new Error("expected exactly one container");
  return only;
}

function env(pod: V1Pod, name: string): V1EnvVar | undefined {
  return container(pod).env?.find((variable) => variable.name === name);
}

function config(pod: V1Pod): TaskManagerConfig {
  const value = env(pod, "STREAMJOB_TASKMANAGER_CONFIG")?.value;
  if (value === undefined) throw new Error("no STREAMJOB_TASKMANAGER_CONFIG");
  // The TaskManager parses it with this schema at start; the operator must never write one it refuses.
  return TaskManagerConfig.parse(JSON.parse(value));
}

describe("desiredChildren", () => {
  const cases: Array<{
    title: string;
    input: DesiredInput;
    names: string[];
    ranges: Array<[number, number]>;
    restoreFrom?: TaskManagerConfig["restoreFrom"];
  }> = [
    {
      title: "one task, fresh start",
      input: { job: streamJob(), epoch: 1, storage: STORAGE },
      names: ["orders-tm-1-0"],
      ranges: [[0, 127]],
    },
    {
      title: "three tasks restoring from checkpoint 7",
      input: {
        job: streamJob({ parallelism: 3 }),
        epoch: 4,
        restoreFrom: { checkpointId: 7, manifestKey: "checkpoints/default/orders/chk-7/_metadata" },
        storage: STORAGE,
      },
      names: ["orders-tm-4-0", "orders-tm-4-1", "orders-tm-4-2"],
      ranges: [
        [0, 42],
        [43, 85],
        [86, 127],
      ],
      restoreFrom: {
        checkpointId: 7,
        bucket: "streamjob",
        manifestKey: "checkpoints/default/orders/chk-7/_metadata",
      },
    },
  ];

  it.each(cases)(
    "$title: one pod per task with its configuration",
    ({ input, names, ranges, restoreFrom }) => {
      const { pods, tokenSecret } = desiredChildren(input);
      expect(pods.map((pod) => pod.metadata?.name)).toEqual(names);
      expect(tokenSecret).toEqual({ name: "orders-token", key: "token" });
      pods.forEach((pod, taskIndex) => {
        const parsed = config(pod);
        expect(parsed).toEqual({
          protocolVersion: "v1",
          job: { namespace: "default", name: "orders" },
          program: { name: "sequence", args: ["--keys", "100"] },
          epoch: input.epoch,
          parallelism: names.length,
          maxParallelism: 128,
          taskIndex,
          keyGroupRange: { start: ranges[taskIndex]?.[0], end: ranges[taskIndex]?.[1] },
          port: 8080,
          storage: STORAGE,
          // The sink's output beside the checkpoints: what a TaskManager without the field derives.
          output: { bucket: "streamjob", keyPrefix: "checkpoints/default/orders/" },
          ...(restoreFrom && { restoreFrom }),
        });
        expect(pod.metadata?.labels).toEqual({
          "app.kubernetes.io/name": "streamjob-taskmanager",
          "app.kubernetes.io/instance": "orders",
          "app.kubernetes.io/managed-by": "streamjob-operator",
          "streamjob.dev/job": "orders",
          "streamjob.dev/epoch": String(input.epoch),
          "streamjob.dev/task-index": String(taskIndex),
        });
        expect(pod.metadata?.ownerReferences).toEqual([
          {
            apiVersion: "streamjob.dev/v1alpha1",
            kind: "StreamJob",
            name: "orders",
            uid: "0b6f3c39-5f1c-4a57-9e51-2a0f3b0c1d2e",
            controller: true,
            blockOwnerDeletion: true,
          },
        ]);
        expect(pod.spec?.restartPolicy).toBe("Never");
        expect(container(pod).image).toBe("ghcr.io/streamjob/streamjob-taskmanager:0.1.0");
      });
    },
  );

  it("takes secrets from Secrets and the pod IP from the downward API, never as values", () => {
    const [pod] = desiredChildren({
      job: streamJob({ checkpoint: { storage: { bucket: "streamjob", secretName: "minio-creds" } } }),
      epoch: 1,
      storage: STORAGE,
    }).pods;
    if (!pod) throw new Error("no pod");
    expect(container(pod).env?.map((variable) => variable.name)).toEqual([
      "STREAMJOB_TASKMANAGER_CONFIG",
      "STREAMJOB_TOKEN",
      "STREAMJOB_S3_ACCESS_KEY",
      "STREAMJOB_S3_SECRET_KEY",
      "POD_IP",
    ]);
    expect(env(pod, "STREAMJOB_TOKEN")?.valueFrom).toEqual({
      secretKeyRef: { name: "orders-token", key: "token" },
    });
    expect(env(pod, "STREAMJOB_S3_ACCESS_KEY")?.valueFrom).toEqual({
      secretKeyRef: { name: "minio-creds", key: "accessKey" },
    });
    expect(env(pod, "STREAMJOB_S3_SECRET_KEY")?.valueFrom).toEqual({
      secretKeyRef: { name: "minio-creds", key: "secretKey" },
    });
    expect(env(pod, "POD_IP")?.valueFrom).toEqual({ fieldRef: { fieldPath: "status.podIP" } });
  });

  it("gives the brokers of the job's Kafka Secret from that Secret, and nothing Kafka without one", () => {
    const brokers = (kafka?: { secretName: string }) => {
      const [pod] = desiredChildren({
        job: streamJob(kafka ? { kafka } : {}),
        epoch: 1,
        storage: STORAGE,
      }).pods;
      return env(pod!, "STREAMJOB_KAFKA_BOOTSTRAP_SERVERS");
    };
    expect(brokers({ secretName: "orders-kafka" })).toEqual({
      name: "STREAMJOB_KAFKA_BOOTSTRAP_SERVERS",
      valueFrom: { secretKeyRef: { name: "orders-kafka", key: "bootstrapServers" } },
    });
    expect(brokers()).toBeUndefined();
    expect(streamJob({ kafka: {} }).spec.kafka).toEqual({ secretName: "streamjob-kafka" });
  });

  it("applies the template: env after the operator's, resources, node selector, tolerations, service account", () => {
    const [pod] = desiredChildren({
      job: streamJob({
        template: {
          env: [
            { name: "LOG_LEVEL", value: "debug" },
            { name: "REGION", valueFrom: { configMapKeyRef: { name: "site", key: "region" } } },
          ],
          resources: { limits: { cpu: 2, memory: "1Gi" }, requests: { cpu: "100m" } },
          nodeSelector: { "kubernetes.io/os": "linux" },
          tolerations: [{ key: "dedicated", operator: "Equal", value: "stream", effect: "NoSchedule" }],
          serviceAccountName: "orders-tm",
        },
      }),
      epoch: 1,
      storage: STORAGE,
    }).pods;
    if (!pod) throw new Error("no pod");
    expect(container(pod).env?.slice(5)).toEqual([
      { name: "LOG_LEVEL", value: "debug" },
      { name: "REGION", valueFrom: { configMapKeyRef: { name: "site", key: "region" } } },
    ]);
    expect(container(pod).resources).toEqual({
      limits: { cpu: "2", memory: "1Gi" },
      requests: { cpu: "100m" },
    });
    expect(pod.spec?.nodeSelector).toEqual({ "kubernetes.io/os": "linux" });
    expect(pod.spec?.tolerations).toEqual([
      { key: "dedicated", operator: "Equal", value: "stream", effect: "NoSchedule" },
    ]);
    expect(pod.spec?.serviceAccountName).toBe("orders-tm");
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
  });

  it("leaves template fields out when the spec has no template", () => {
    const [pod] = desiredChildren({ job: streamJob(), epoch: 1, storage: STORAGE }).pods;
    expect(pod?.spec).not.toHaveProperty("serviceAccountName");
    expect(pod?.spec).not.toHaveProperty("nodeSelector");
    expect(pod?.spec).not.toHaveProperty("tolerations");
    expect(pod && container(pod)).not.toHaveProperty("resources");
  });

  // The fields the "restricted" Pod Security Standard checks (pod-security.kubernetes.io/enforce=restricted).
  it("passes the restricted Pod Security Standard", () => {
    const [pod] = desiredChildren({ job: streamJob(), epoch: 1, storage: STORAGE }).pods;
    if (!pod?.spec) throw new Error("no pod");
    const podContext = pod.spec.securityContext;
    const containerContext = container(pod).securityContext;
    expect(podContext?.runAsNonRoot).toBe(true);
    expect(podContext?.runAsUser).toBe(65532);
    expect(podContext?.seccompProfile?.type).toBe("RuntimeDefault");
    expect(containerContext?.allowPrivilegeEscalation).toBe(false);
    expect(containerContext?.capabilities?.drop).toEqual(["ALL"]);
    expect(containerContext?.capabilities?.add ?? []).toEqual([]);
    expect(containerContext?.privileged ?? false).toBe(false);
    expect(containerContext?.readOnlyRootFilesystem).toBe(true);
    expect(containerContext?.runAsUser ?? podContext?.runAsUser).not.toBe(0);
    expect(pod.spec.hostNetwork ?? false).toBe(false);
    expect(pod.spec.hostPID ?? false).toBe(false);
    expect(pod.spec.hostIPC ?? false).toBe(false);
    expect(pod.spec.volumes ?? []).toEqual([]);
    expect(container(pod).ports?.every((port) => port.hostPort === undefined)).toBe(true);
  });

  it("probes /readyz every second and /healthz for liveness on the TaskManager port", () => {
    const [pod] = desiredChildren({ job: streamJob(), epoch: 1, storage: STORAGE }).pods;
    if (!pod) throw new Error("no pod");
    expect(container(pod).readinessProbe).toMatchObject({
      httpGet: { path: "/readyz", port: 8080 },
      periodSeconds: 1,
    });
    expect(container(pod).livenessProbe?.httpGet).toEqual({ path: "/healthz", port: 8080 });
    expect(pod.spec?.terminationGracePeriodSeconds).toBe(30);
  });

  it("says why a TaskManager stopped the Kubernetes way: its message file, else its log's tail", () => {
    const [pod] = desiredChildren({ job: streamJob(), epoch: 1, storage: STORAGE }).pods;
    if (!pod) throw new Error("no pod");
    expect(container(pod)).toMatchObject({
      terminationMessagePath: "/dev/termination-log",
      terminationMessagePolicy: "FallbackToLogsOnError",
    });
  });

  it("refuses a StreamJob without a uid: an owner reference needs one", () => {
    const job = streamJob();
    delete job.metadata.uid;
    expect(() => desiredChildren({ job, epoch: 1, storage: STORAGE })).toThrow(/metadata.uid/);
  });
});

describe("names", () => {
  const long = `${"a".repeat(60)}-orders`;
  const longTwin = `${"a".repeat(60)}-events`;

  it.each([
    ["orders", 1, 0, "orders-tm-1-0"],
    ["orders", 12, 31, "orders-tm-12-31"],
  ])("%s epoch %d task %d is %s", (job, epoch, index, expected) => {
    expect(taskManagerPodName(job, epoch, index)).toBe(expected);
  });

  it.each([long, `${"b".repeat(253)}`, `${"c".repeat(20)}.${"d".repeat(50)}`, "orders.eu"])(
    "a long job name %# gives a DNS label of at most 63 characters",
    (job) => {
      const name = taskManagerPodName(job, 123456, 999);
      expect(name.length).toBeLessThanOrEqual(MAX_LABEL_LENGTH);
      expect(name).toMatch(DNS_LABEL);
      expect(name.endsWith("-tm-123456-999")).toBe(true);
    },
  );

  it("keeps names apart that differ only in a dot", () => {
    expect(taskManagerPodName("orders.eu", 1, 0)).not.toBe(taskManagerPodName("orders-eu", 1, 0));
  });

  it("keeps long names with a common prefix apart", () => {
    expect(taskManagerPodName(long, 1, 0)).not.toBe(taskManagerPodName(longTwin, 1, 0));
    const [pod] = desiredChildren({ job: streamJob({}, { name: long }), epoch: 1, storage: STORAGE }).pods;
    const [twin] = desiredChildren({
      job: streamJob({}, { name: longTwin }),
      epoch: 1,
      storage: STORAGE,
    }).pods;
    const jobLabel = pod?.metadata?.labels?.["streamjob.dev/job"] ?? "";
    expect(jobLabel.length).toBeLessThanOrEqual(MAX_LABEL_LENGTH);
    expect(jobLabel).not.toBe(twin?.metadata?.labels?.["streamjob.dev/job"]);
    // The configuration carries the real name: it is the job's identity in storage.
    expect(config(pod ?? {}).job.name).toBe(long);
  });

  it("names the token Secret after the job, within the 253 characters of an object name", () => {
    expect(tokenSecretName("orders")).toBe("orders-token");
    expect(tokenSecretName("x".repeat(253)).length).toBeLessThanOrEqual(253);
  });
});
