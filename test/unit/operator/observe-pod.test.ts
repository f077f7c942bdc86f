import type { V1ContainerState, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { observePod } from "../../../src/operator/observe-pod.js";

const created = "2025-01-01T12:00:00Z";

function v1Pod(status: V1Pod["status"], labels: Record<string, string> = {}, deleting = false): V1Pod {
  return {
    metadata: {
      name: "orders-tm-3-1",
      creationTimestamp: new Date(created),
      labels: { "streamjob.dev/epoch": "3", "streamjob.dev/task-index": "1", ...labels },
      ...(deleting && { deletionTimestamp: new Date(created) }),
    },
    status,
  };
}

function taskManagerContainer(state: V1ContainerState): V1ContainerStatus {
  return { name: "taskmanager", image: "x", imageID: "", ready: false, restartCount: 0, state };
}

describe("observePod", () => {
  it("a ready pod: epoch and index from labels, IP, ready since the condition's transition", () => {
    const observed = observePod(
      v1Pod({
        phase: "Running",
        podIP: "127.1.0.9",
        conditions: [{ type: "Ready", status: "True", lastTransitionTime: new Date("2025-01-01T12:00:05Z") }],
      }),
    );
    expect(observed).toEqual({
      name: "orders-tm-3-1",
      podIP: "127.1.0.9",
      epoch: 3,
      taskIndex: 1,
      phase: "Running",
      ready: true,
      readySince: Date.parse("2025-01-01T12:00:05Z"),
      createdAt: Date.parse(created),
      deleting: false,
    });
  });

  it.each([
    ["a label that is not a number", { "streamjob.dev/epoch": "three" }, undefined],
    ["a negative-looking label", { "streamjob.dev/epoch": "-1" }, undefined],
    ["a missing label", { "streamjob.dev/epoch": "" }, undefined],
  ])("%s gives no epoch", (_title, labels, epoch) => {
    expect(observePod(v1Pod({ phase: "Running" }, labels)).epoch).toBe(epoch);
  });

  it("a pod never ready counts from its creation; waiting reason and termination are kept", () => {
    const waiting = observePod(
      v1Pod({
        phase: "Pending",
        containerStatuses: [taskManagerContainer({ waiting: { reason: "ImagePullBackOff" } })],
      }),
    );
    expect(waiting).toMatchObject({
      ready: false,
      readySince: Date.parse(created),
      waitingReason: "ImagePullBackOff",
    });
    const failed = observePod(
      v1Pod(
        {
          phase: "Failed",
          containerStatuses: [taskManagerContainer({ terminated: { exitCode: 137, reason: "Error" } })],
        },
        {},
        true,
      ),
    );
    expect(failed).toMatchObject({
      phase: "Failed",
      deleting: true,
      terminated: { exitCode: 137, reason: "Error" },
    });
  });

  it("keeps the termination message on one line, its end when it is long", () => {
    const terminated = (message: string) =>
      observePod(
        v1Pod({
          phase: "Failed",
          containerStatuses: [
            taskManagerContainer({ terminated: { exitCode: 78, reason: "Error", message } }),
          ],
        }),
      ).terminated;
    expect(terminated("refusing to start:\n  bad program\n")).toEqual({
      exitCode: 78,
      reason: "Error",
      message: "refusing to start: bad program",
    });
    const long = terminated(`${"x".repeat(1000)} the end`)!.message!;
    expect(long).toHaveLength(512);
    expect(long.startsWith("…")).toBe(true);
    expect(long.endsWith("x the end")).toBe(true);
    expect(terminated(" \n ")).toEqual({ exitCode: 78, reason: "Error" });
  });

  it("timestamps held as strings (raw JSON) are read too; an unknown phase is Unknown", () => {
    const pod = v1Pod({ phase: "Weird" });
    (pod.metadata as { creationTimestamp: unknown }).creationTimestamp = created;
    expect(observePod(pod)).toMatchObject({ createdAt: Date.parse(created), phase: "Unknown" });
  });
});
