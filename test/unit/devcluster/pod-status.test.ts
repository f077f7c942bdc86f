import { podPhase, restartBackoffMs, shouldRestart } from "../../../src/devcluster/node-agent/pod-status.js";

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
