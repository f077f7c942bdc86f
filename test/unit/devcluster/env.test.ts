import type { V1Container, V1Pod } from "@kubernetes/client-node";
import {
  ContainerConfigError,
  expandReferences,
  resolveEnv,
  type EnvSources,
} from "../../../src/devcluster/node-agent/env.js";

const pod: V1Pod = {
  metadata: { name: "tm-0", namespace: "jobs", uid: "u-1", labels: { app: "tm" } },
  spec: { nodeName: "node-a", serviceAccountName: "runner", containers: [] },
};

const sources: EnvSources = {
  secret: async (_ns, name) => (name === "creds" ? { user: "alice", password: "pw" } : undefined),
  configMap: async (_ns, name) => (name === "settings" ? { mode: "fast" } : undefined),
};

const container = (c: Partial<V1Container>): V1Container => ({ name: "main", ...c });

describe("resolveEnv", () => {
  test.each([
    ["a literal value", { name: "A", value: "1" }, { A: "1" }],
    [
      "the pod IP",
      { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      { IP: "127.1.0.7" },
    ],
    ["the pod name", { name: "N", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }, { N: "tm-0" }],
    [
      "the namespace",
      { name: "NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { NS: "jobs" },
    ],
    ["a label", { name: "L", valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }, { L: "tm" }],
    [
      "the node name",
      { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { NODE: "node-a" },
    ],
    [
      "a secret key",
      { name: "P", valueFrom: { secretKeyRef: { name: "creds", key: "password" } } },
      { P: "pw" },
    ],
    [
      "a config map key",
      { name: "M", valueFrom: { configMapKeyRef: { name: "settings", key: "mode" } } },
      { M: "fast" },
    ],
    [
      "an optional missing key",
      { name: "X", valueFrom: { secretKeyRef: { name: "none", key: "k", optional: true } } },
      {},
    ],
  ])("resolves %s", async (_what, variable, expected) => {
    expect(await resolveEnv(pod, container({ env: [variable] }), "127.1.0.7", sources)).toEqual(expected);
  });

  test("envFrom comes first with its prefix, and env overrides it", async () => {
    const env = await resolveEnv(
      pod,
      container({
        envFrom: [{ secretRef: { name: "creds" }, prefix: "DB_" }],
        env: [{ name: "DB_user", value: "bob" }],
      }),
      "127.1.0.7",
      sources,
    );
    expect(env).toEqual({ DB_user: "bob", DB_password: "pw" });
  });

  test("$(VAR) refers to earlier variables", async () => {
    const env = await resolveEnv(
      pod,
      container({
        env: [
          { name: "HOST", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
          { name: "URL", value: "http://$(HOST):8080/$(UNKNOWN)/$$(HOST)" },
        ],
      }),
      "127.1.0.9",
      sources,
    );
    expect(env.URL).toBe("http://127.1.0.9:8080/$(UNKNOWN)/$(HOST)");
  });

  test.each([
    [
      "a missing secret",
      { name: "P", valueFrom: { secretKeyRef: { name: "nope", key: "k" } } },
      'secret "nope" not found',
    ],
    [
      "a missing key",
      { name: "P", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
      "couldn't find key token in secret jobs/creds",
    ],
  ])("fails with a container config error on %s", async (_what, variable, message) => {
    const attempt = resolveEnv(pod, container({ env: [variable] }), "127.1.0.7", sources);
    await expect(attempt).rejects.toBeInstanceOf(ContainerConfigError);
    await expect(attempt).rejects.toThrow(message);
  });

  test("a missing envFrom source fails unless optional", async () => {
    await expect(
      resolveEnv(pod, container({ envFrom: [{ configMapRef: { name: "nope" } }] }), "", sources),
    ).rejects.toThrow('configmap "nope" not found');
    expect(
      await resolveEnv(
        pod,
        container({ envFrom: [{ configMapRef: { name: "nope", optional: true } }] }),
        "",
        sources,
      ),
    ).toEqual({});
  });
});

test("expandReferences leaves text without references alone", () => {
  expect(expandReferences("plain $HOME text", { HOME: "x" })).toBe("plain $HOME text");
});
