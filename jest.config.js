// Three projects: `unit` (pure logic, fakes allowed, fast), `integration` (the real local cluster:
// etcd, kube-apiserver, kube-controller-manager, MinIO, Kafka and the emulated node agent, started
// once) and `e2e` (a cluster of its own whose node is a real kubelet with containerd and runc).
const tsJest = ["ts-jest", { useESM: true, tsconfig: "tsconfig.json" }];
const common = {
  extensionsToTreatAsEsm: [".ts"],
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.js$": "$1" },
  transform: { "^.+\\.ts$": tsJest },
  testEnvironment: "node",
  // Local clusters keep their state there, a real node's container filesystems (with package.json
  // files) included: not modules of this project.
  modulePathIgnorePatterns: ["<rootDir>/.devcluster/"],
};

const E2E_FILES = [
  "<rootDir>/test/integration/e2e.test.ts",
  "<rootDir>/test/integration/chaos.test.ts",
  "<rootDir>/test/integration/real-node.test.ts",
  "<rootDir>/test/integration/keyed-dataflow.test.ts",
];
// real-node.test.ts needs the real node, which DEVCLUSTER_NODE=emulated turns off.
const E2E =
  process.env.DEVCLUSTER_NODE === "emulated"
    ? E2E_FILES.filter((f) => !f.endsWith("real-node.test.ts"))
    : E2E_FILES;

export default {
  projects: [
    { ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    {
      ...common,
      displayName: "integration",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      testPathIgnorePatterns: ["/node_modules/", ...E2E_FILES],
      globalSetup: "<rootDir>/test/integration/global-setup.mjs",
      globalTeardown: "<rootDir>/test/integration/global-teardown.mjs",
      slowTestThreshold: 60,
    },
    // The end-to-end tests, on a cluster of their own with a real node (kubelet, containerd, runc)
    // wherever one can start (e2e-global-setup.mjs); test/integration/support/cluster.ts picks the
    // cluster folder from the STREAMJOB_TEST_CLUSTER global.
    {
      ...common,
      displayName: "e2e",
      testMatch: E2E,
      globalSetup: "<rootDir>/test/integration/e2e-global-setup.mjs",
      globalTeardown: "<rootDir>/test/integration/e2e-global-teardown.mjs",
      globals: { STREAMJOB_TEST_CLUSTER: "e2e" },
      slowTestThreshold: 60,
    },
  ],
  reporters: ["default", "<rootDir>/test/summary-reporter.cjs"],
  testTimeout: 120000,
  // Integration files share one local cluster, and the chaos test pauses its API server and MinIO:
  // one file at a time (what jest picks on 2 cores anyway; the unit tests take about a minute).
  maxWorkers: 1,
};
