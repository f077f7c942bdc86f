import type { CheckpointKind } from "../../../src/api/object-layout.js";
import { CHECKPOINT_ABORT_CAUSES, type CheckpointAbortCause } from "../../../src/coordinator/abort-cause.js";
import { CheckpointFailureManager } from "../../../src/coordinator/failure-manager.js";

type Event = ["failed", number, CheckpointKind?, CheckpointAbortCause?] | ["completed", number];

function replay(tolerableFailures: number, events: Event[]): Array<[number, boolean]> {
  const manager = new CheckpointFailureManager(tolerableFailures);
  return events.map((event) => {
    const decision =
      event[0] === "failed"
        ? manager.onCheckpointFailed(event[1], event[2] ?? "checkpoint", event[3] ?? "declined")
        : manager.onCheckpointCompleted(event[1]);
    return [decision.consecutiveFailures, decision.restartJob];
  });
}

describe("CheckpointFailureManager", () => {
  it.each<[string, number, Event[], Array<[number, boolean]>]>([
    [
      "restarts once failures exceed the tolerance",
      2,
      [
        ["failed", 1],
        ["failed", 2],
        ["failed", 3],
      ],
      [
        [1, false],
        [2, false],
        [3, true],
      ],
    ],
    ["restarts on the first failure when nothing is tolerated", 0, [["failed", 1]], [[1, true]]],
    [
      "resets on success",
      1,
      [
        ["failed", 1],
        ["completed", 2],
        ["failed", 3],
        ["failed", 4],
      ],
      [
        [1, false],
        [0, false],
        [1, false],
        [2, true],
      ],
    ],
    [
      "counts a checkpoint reported twice once",
      1,
      [
        ["failed", 5],
        ["failed", 5],
      ],
      [
        [1, false],
        [1, false],
      ],
    ],
    [
      "ignores a failure of a checkpoint older than the last completed one",
      0,
      [
        ["completed", 8],
        ["failed", 7],
      ],
      [
        [0, false],
        [0, false],
      ],
    ],
    [
      "keeps failures newer than a completion that arrives late",
      1,
      [
        ["failed", 9],
        ["failed", 10],
        ["completed", 8],
      ],
      [
        [1, false],
        [2, true],
        [2, true],
      ],
    ],
    [
      "does not count failed savepoints",
      0,
      [
        ["failed", 3, "savepoint"],
        ["failed", 4, "savepoint"],
      ],
      [
        [0, false],
        [0, false],
      ],
    ],
    [
      "does not count checkpoints cut short by a stopping coordinator",
      0,
      [
        ["failed", 3, "checkpoint", "coordinator-stopped"],
        ["failed", 4, "checkpoint", "coordinator-stopped"],
        ["failed", 5, "checkpoint", "expired"],
      ],
      [
        [0, false],
        [0, false],
        [1, true],
      ],
    ],
  ])("%s", (_, tolerable, events, decisions) => {
    expect(replay(tolerable, events)).toEqual(decisions);
  });

  it.each(CHECKPOINT_ABORT_CAUSES.filter((cause) => cause !== "coordinator-stopped"))(
    "counts an abort with cause %s as a failure",
    (cause) => {
      expect(replay(0, [["failed", 1, "checkpoint", cause]])).toEqual([[1, true]]);
    },
  );

  it.each([-1, 1.5, Number.NaN])("rejects tolerableFailures %p", (tolerable) => {
    expect(() => new CheckpointFailureManager(tolerable)).toThrow(
      "tolerableFailures must be a non-negative integer",
    );
  });
});
