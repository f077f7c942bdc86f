// Two projects: `unit` (pure logic, fakes allowed, fast) and `integration` (the real local
// cluster: etcd, kube-apiserver, kube-controller-manager, MinIO and the node agent, started once).
const tsJest = ["ts-jest", { useESM: true, tsconfig: "tsconfig.json" }];
const common = {
  extensionsToTreatAsEsm: [".ts"],
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.js$": "$1" },
  transform: { "^.+\\.ts$": tsJest },
  testEnvironment: "node",
};

export default {
  projects: [
    { ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    {
      ...common,
      displayName: "integration",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      globalSetup: "<rootDir>/test/integration/global-setup.mjs",
      globalTeardown: "<rootDir>/test/integration/global-teardown.mjs",
      slowTestThreshold: 60,
    },
  ],
  reporters: ["default", "<rootDir>/test/summary-reporter.cjs"],
  testTimeout: 120000,
  // Integration files share one local cluster, and the chaos test pauses its API server and MinIO:
  // one file at a time (what jest picks on 2 cores anyway; the unit tests take about a minute).
  maxWorkers: 1,
};
