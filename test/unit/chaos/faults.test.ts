import { describeFault, planFaults } from "../../support/chaos/faults.js";
import { seededRandom } from "../../support/random.js";

const kind = (fault: { target: string; action: string }[]) =>
  fault.map((hit) => `${hit.action} ${hit.target}`).join(" + ");

test("the first round hits every kind once and a pair, in a fixed order", () => {
  const faults = planFaults(8, seededRandom(1));
  expect(faults.map((fault) => (fault.length === 2 ? "pair" : kind(fault)))).toEqual([
    "sigkill taskmanager",
    "delete-pod operator",
    "pause minio",
    "pause taskmanager",
    "pause kube-apiserver",
    "pair",
    "delete-pod taskmanager",
    "sigkill operator",
  ]);
});

test.each([1, 6, 40, 200])(
  "%i faults: exactly that many, pairs on two targets, pauses in bounds",
  (count) => {
    const faults = planFaults(count, seededRandom(count), { minPauseMs: 2_000, maxPauseMs: 6_000 });
    expect(faults).toHaveLength(count);
    for (const fault of faults) {
      expect(fault.length === 1 || fault[0]!.target !== fault[1]!.target).toBe(true);
      for (const hit of fault) {
        if (hit.action === "pause") {
          expect(hit.pauseMs).toBeGreaterThanOrEqual(2_000);
          expect(hit.pauseMs).toBeLessThanOrEqual(6_000);
        } else expect(hit.pauseMs).toBeUndefined();
        // Only pods are deleted; only processes are paused or killed.
        if (hit.target === "minio" || hit.target === "kube-apiserver") expect(hit.action).toBe("pause");
      }
    }
  },
);

test("every round of eight holds every kind of hit", () => {
  const faults = planFaults(40, seededRandom(7));
  for (let round = 0; round < 5; round++) {
    const singles = faults.slice(round * 8, round * 8 + 8).filter((fault) => fault.length === 1);
    expect(new Set(singles.map(kind)).size).toBe(7);
  }
});

test("the same seed gives the same plan", () => {
  expect(planFaults(30, seededRandom(42))).toEqual(planFaults(30, seededRandom(42)));
});

test("describeFault", () => {
  expect(
    describeFault([
      { target: "minio", action: "pause", pauseMs: 3_200 },
      { target: "taskmanager", action: "sigkill" },
    ]),
  ).toBe("SIGSTOP minio for 3.2 s + SIGKILL taskmanager");
  expect(describeFault([{ target: "operator", action: "delete-pod" }])).toBe("delete operator pod");
});
