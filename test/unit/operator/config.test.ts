import { loadConfig } from "../../../src/operator/config.js";

describe("loadConfig", () => {
  it("defaults: every namespace, no leader election, loopback port 8080", () => {
    expect(loadConfig({}, [], "host")).toEqual({
      watchNamespaces: [],
      leaderElection: {
        enabled: false,
        namespace: "default",
        leaseName: "streamjob-operator",
        identity: `host-${process.pid}`,
      },
      http: { host: "127.0.0.1", port: 8080 },
      logLevel: "info",
      workers: 4,
      unreadyTimeoutMs: 60_000,
      syncPeriodMs: 300_000,
    });
  });

  it("reads the environment the chart sets", () => {
    const config = loadConfig(
      {
        STREAMJOB_WATCH_NAMESPACES: " team-a, team-b ,",
        STREAMJOB_LEADER_ELECT: "true",
        STREAMJOB_LEADER_ELECTION_ID: "sj-leader",
        STREAMJOB_HTTP_PORT: "9090",
        STREAMJOB_UNREADY_TIMEOUT: "2m",
        STREAMJOB_SYNC_PERIOD: "10m",
        POD_NAME: "op-0",
        POD_NAMESPACE: "streamjob-system",
      },
      [],
    );
    expect(config).toMatchObject({
      watchNamespaces: ["team-a", "team-b"],
      leaderElection: {
        enabled: true,
        namespace: "streamjob-system",
        leaseName: "sj-leader",
        identity: "op-0",
      },
      http: { port: 9090 },
      unreadyTimeoutMs: 120_000,
      syncPeriodMs: 600_000,
    });
  });

  it("a flag overrides the environment", () => {
    const config = loadConfig({ STREAMJOB_HTTP_PORT: "9090" }, ["--http-port=7070", "--watch-namespaces=x"]);
    expect(config.http.port).toBe(7070);
    expect(config.watchNamespaces).toEqual(["x"]);
  });

  it.each([
    [{ STREAMJOB_LEADER_ELECT: "yes" }, /STREAMJOB_LEADER_ELECT: .*"true" or "false"/],
    [{ STREAMJOB_HTTP_PORT: "70000" }, /STREAMJOB_HTTP_PORT/],
    [{ STREAMJOB_LOG_LEVEL: "loud" }, /STREAMJOB_LOG_LEVEL/],
    [{ STREAMJOB_UNREADY_TIMEOUT: "soon" }, /STREAMJOB_UNREADY_TIMEOUT/],
    [{ STREAMJOB_SYNC_PERIOD: "5s" }, /STREAMJOB_SYNC_PERIOD: must be at least 10s/],
  ])("refuses %p naming the setting", (env, message) => {
    expect(() => loadConfig(env, [])).toThrow(message);
  });

  it("refuses an unknown flag", () => {
    expect(() => loadConfig({}, ["--watch-namespace=x"])).toThrow(/watch-namespace/);
  });
});
