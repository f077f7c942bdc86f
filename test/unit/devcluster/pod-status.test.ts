import {
  podPhase,
  restartBackoffMs,
  shouldRestart,
  tailLines,
  terminationMessage,
} from "../../../src/devcluster/node-agent/pod-status.js";

const running = { state: { running: { startedAt: new Date() } }, restartCount: 0 };
const exited = (exitCode: number) => ({ state: { terminated: { exitCode } }, restartCount: 0 });
const waiting = { state: { waiting: { reason: "ContainerCreating" } }, restartCount: 0 };
const backingOff = { state: { waiting: { reason: "CrashLoopBackOff" } }, restartCount: 2 };

test.each([
  ["Always", 0, true],
  ["Always", 1, true],
  ["OnFailure", 0, false],
  ["OnFailure", 137, true],
  ["Never", 1, false],
] as const)("restartPolicy %s, exit %i: restart = %s", (policy, code, expected) => {
  expect(shouldRestart(policy, code)).toBe(expected);
});

test.each([
  ["nothing started yet", "Always", [waiting], "Pending"],
  ["one of two started", "Always", [running, waiting], "Pending"],
  ["all running", "Never", [running, running], "Running"],
  ["crash looping", "Always", [backingOff], "Running"],
  ["one exited, one running", "Never", [exited(1), running], "Running"],
  ["all exited 0 under Never", "Never", [exited(0), exited(0)], "Succeeded"],
  ["one exited non-zero under Never", "Never", [exited(0), exited(2)], "Failed"],
  ["exited 0 under OnFailure", "OnFailure", [exited(0)], "Succeeded"],
  ["exited non-zero under OnFailure restarts", "OnFailure", [exited(1)], "Running"],
] as const)("%s -> %s", (_what, policy, statuses, phase) => {
  expect(podPhase(policy, [...statuses])).toBe(phase);
});

test("a failed init container under Never fails the pod", () => {
  expect(podPhase("Never", [waiting], true)).toBe("Failed");
});

test("restart back-off doubles from 1s and is capped at 30s", () => {
  expect([1, 2, 3, 4, 5, 6, 10].map(restartBackoffMs)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

describe("terminationMessage, as the kubelet computes it", () => {
  const log = (text: string) => () => Buffer.from(text);
  const noLog = () => {
    throw new Error("the log must not be read");
  };

  test("the message file wins, under either policy and whatever the exit code", () => {
    const file = Buffer.from("refusing to start: bad program");
    for (const policy of ["File", "FallbackToLogsOnError"] as const)
      for (const exitCode of [0, 78])
        expect(terminationMessage({ policy, exitCode, file, log: noLog })).toBe(
          "refusing to start: bad program",
        );
  });

  test("a message file is cut to its last 4096 bytes", () => {
    const file = Buffer.from(`${"x".repeat(5000)}the end`);
    const message = terminationMessage({ policy: "File", exitCode: 1, file, log: noLog })!;
    expect(message).toHaveLength(4096);
    expect(message.endsWith("the end")).toBe(true);
  });

  test("FallbackToLogsOnError takes the log's tail only when the container failed and wrote nothing", () => {
    const fallback = "FallbackToLogsOnError" as const;
    expect(
      terminationMessage({ policy: fallback, exitCode: 1, file: Buffer.alloc(0), log: log("a\nboom\n") }),
    ).toBe("a\nboom\n");
    expect(terminationMessage({ policy: fallback, exitCode: 1, file: undefined, log: log("boom") })).toBe(
      "boom",
    );
    expect(
      terminationMessage({ policy: fallback, exitCode: 0, file: undefined, log: noLog }),
    ).toBeUndefined();
    expect(terminationMessage({ policy: "File", exitCode: 1, file: undefined, log: noLog })).toBeUndefined();
    expect(
      terminationMessage({ policy: fallback, exitCode: 1, file: undefined, log: log("") }),
    ).toBeUndefined();
  });

  test("the log's tail is its last 80 lines, at most their last 2048 bytes", () => {
    const lines = Array.from({ length: 100 }, (_, i) => `line ${i}`).join("\n") + "\n";
    const message = terminationMessage({
      policy: "FallbackToLogsOnError",
      exitCode: 2,
      file: undefined,
      log: log(lines),
    })!;
    expect(message.split("\n")[0]).toBe("line 20");
    expect(message.endsWith("line 99\n")).toBe(true);
    const long = Array.from({ length: 10 }, (_, i) => `${i}${"y".repeat(499)}`).join("\n");
    const capped = terminationMessage({
      policy: "FallbackToLogsOnError",
      exitCode: 2,
      file: undefined,
      log: log(long),
    })!;
    expect(Buffer.byteLength(capped)).toBe(2048);
    expect(capped.endsWith(`9${"y".repeat(499)}`)).toBe(true);
  });

  test("tailLines counts a final newline as the end of the last line", () => {
    expect(tailLines(Buffer.from("a\nb\nc\n"), 2).toString()).toBe("b\nc\n");
    expect(tailLines(Buffer.from("a\nb\nc"), 2).toString()).toBe("b\nc");
    expect(tailLines(Buffer.from("a\nb"), 5).toString()).toBe("a\nb");
    expect(tailLines(Buffer.alloc(0), 80).toString()).toBe("");
  });
});
