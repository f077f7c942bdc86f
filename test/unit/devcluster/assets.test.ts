import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  assetsCacheDir,
  componentVersion,
  components,
  kafkaAssetsPresent,
  kafkaLibsDir,
  kafkaStorageTemplateDir,
  kafkaVersion,
  resolveBinary,
} from "../../../src/devcluster/assets.js";

test("every component's version is read from its pinned go.mod", () => {
  const versions = Object.fromEntries(components.map((c) => [c.name, componentVersion(c)]));
  expect(versions.kube).toBe("v1.36.3");
  expect(versions.etcd).toMatch(/^v3\.6\.\d+$/);
  expect(versions.helm).toMatch(/^v3\./);
  expect(versions.minio).toMatch(/^v0\.0\.0-\d{14}-[0-9a-f]{12}$/);
});

test("Kafka's version is read from the pinned pom, and its jars and storage template live in the cache", () => {
  expect(kafkaVersion()).toBe("4.1.1");
  const env = { STREAMJOB_ASSETS_DIR: "/x" };
  expect(kafkaLibsDir(env)).toBe("/x/kafka-4.1.1/libs");
  expect(kafkaStorageTemplateDir(env)).toBe("/x/kafka-4.1.1/storage-template");
  expect(kafkaAssetsPresent({ STREAMJOB_ASSETS_DIR: mkdtempSync(path.join(tmpdir(), "assets-")) })).toBe(
    false,
  );
});

test("the cache lives outside the repository and honours STREAMJOB_ASSETS_DIR and XDG_CACHE_HOME", () => {
  expect(assetsCacheDir({ STREAMJOB_ASSETS_DIR: "/x" })).toBe("/x");
  expect(assetsCacheDir({ XDG_CACHE_HOME: "/c" })).toBe("/c/streamjob-operator/assets");
  expect(assetsCacheDir({ HOME: "/h" })).toMatch(/\.cache\/streamjob-operator\/assets$/);
});

describe("resolveBinary honours envtest's variables", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "envtest-"));
  writeFileSync(path.join(dir, "kube-apiserver"), "");
  writeFileSync(path.join(dir, "etcd-custom"), "");

  test("TEST_ASSET_* wins", () => {
    expect(
      resolveBinary("etcd", { TEST_ASSET_ETCD: path.join(dir, "etcd-custom"), KUBEBUILDER_ASSETS: dir }),
    ).toBe(path.join(dir, "etcd-custom"));
  });

  test("KUBEBUILDER_ASSETS is used for the binaries it has", () => {
    const env = { KUBEBUILDER_ASSETS: dir, STREAMJOB_ASSETS_DIR: "/cache" };
    expect(resolveBinary("kube-apiserver", env)).toBe(path.join(dir, "kube-apiserver"));
    expect(resolveBinary("kube-controller-manager", env)).toBe("/cache/kube-v1.36.3/kube-controller-manager");
  });

  test("a TEST_ASSET_* path that is not a file is an error naming the variable", () => {
    expect(() => resolveBinary("kubectl", { TEST_ASSET_KUBECTL: "/nonexistent/kubectl" })).toThrow(
      "TEST_ASSET_KUBECTL=/nonexistent/kubectl is not a file",
    );
  });
});
