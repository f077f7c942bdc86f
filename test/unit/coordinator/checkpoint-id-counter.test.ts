import { CheckpointIdCounter } from "../../../src/coordinator/checkpoint-id-counter.js";
import { randomInt, seededRandom } from "../../support/random.js";

describe("CheckpointIdCounter", () => {
  it.each<[number | null, number[], number]>([
    [null, [], 1],
    [5, [], 6],
    [null, [3, 9, 4], 10],
    // Storage ahead of status: the manifest was written but the status patch was lost.
    [5, [4, 5, 6], 7],
    // Status ahead of storage: directories were cleaned up by retention.
    [12, [10, 11], 13],
  ])("resumes after status %p and stored ids %p with %p", (status, stored, first) => {
    expect(CheckpointIdCounter.resume(status, stored).next()).toBe(first);
  });

  it("hands out strictly increasing ids", () => {
    const counter = CheckpointIdCounter.resume(null, [41]);
    expect([counter.next(), counter.next(), counter.next()]).toEqual([42, 43, 44]);
  });

  it.each<[number | null, number[]]>([
    [-1, []],
    [null, [Number.NaN]],
    [null, [1.5]],
  ])("refuses status %p with stored ids %p", (status, stored) => {
    expect(() => CheckpointIdCounter.resume(status, stored)).toThrow(
      "checkpoint ids must be non-negative integers",
    );
  });

  it("never reuses an id across many operator restarts, whatever survived of status and storage", () => {
    const random = seededRandom(7);
    const issued: number[] = [];
    const stored = new Set<number>();
    let status: number | null = null;
    for (let restart = 0; restart < 50; restart++) {
      const counter = CheckpointIdCounter.resume(status, stored);
      for (let i = randomInt(random, 0, 5); i > 0; i--) {
        const id = counter.next();
        issued.push(id);
        stored.add(id); // every trigger leaves a directory, even when it aborts
        if (random() < 0.5) status = id; // completed and recorded
      }
      // Retention removes old directories, but never the newest one.
      const newest = Math.max(0, ...stored);
      for (const id of stored) if (id < newest && random() < 0.7) stored.delete(id);
    }
    expect(issued.length).toBeGreaterThan(50);
    expect(issued).toEqual([...issued].sort((a, b) => a - b));
    expect(new Set(issued).size).toBe(issued.length);
  });
});
