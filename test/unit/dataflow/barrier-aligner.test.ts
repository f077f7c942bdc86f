import { BarrierAligner } from "../../../src/dataflow/barrier-aligner.js";

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test("a stage snapshots only once the barrier came in on every channel; channels that delivered it are held", () => {
  const time = clock();
  const aligner = new BarrierAligner(3, time.now);
  expect(aligner.barrier(1, 5)).toEqual({ kind: "blocked" });
  expect(aligner.isBlocked(1)).toBe(true);
  expect(aligner.isBlocked(0)).toBe(false);
  time.advance(7);
  expect(aligner.barrier(0, 5)).toEqual({ kind: "blocked" });
  time.advance(5);
  expect(aligner.barrier(2, 5)).toEqual({ kind: "aligned", checkpointId: 5, alignmentMs: 12 });
  expect([0, 1, 2].some((channel) => aligner.isBlocked(channel))).toBe(false);
  expect(aligner.aligning).toBeUndefined();
  // A late copy of an aligned checkpoint's barrier changes nothing.
  expect(aligner.barrier(1, 5)).toEqual({ kind: "ignored" });
});

test("one input channel aligns at once", () => {
  expect(new BarrierAligner(1, () => 0).barrier(0, 1)).toEqual({
    kind: "aligned",
    checkpointId: 1,
    alignmentMs: 0,
  });
});

test("a newer barrier cancels an unfinished alignment; the older one's barriers are then ignored", () => {
  const aligner = new BarrierAligner(2, () => 0);
  aligner.barrier(0, 3);
  expect(aligner.barrier(1, 4)).toEqual({ kind: "blocked", cancelled: 3 });
  expect(aligner.isBlocked(0)).toBe(false);
  expect(aligner.isBlocked(1)).toBe(true);
  expect(aligner.barrier(0, 3)).toEqual({ kind: "ignored" });
  expect(aligner.barrier(0, 4)).toMatchObject({ kind: "aligned", checkpointId: 4 });
});

test("an abort releases the held channels, and barriers of the aborted checkpoint that come later are ignored", () => {
  const aligner = new BarrierAligner(3, () => 0);
  aligner.barrier(2, 8);
  aligner.abort(8);
  expect(aligner.isBlocked(2)).toBe(false);
  expect(aligner.barrier(0, 8)).toEqual({ kind: "ignored" });
  // An abort of a checkpoint never seen here still makes its barriers stale.
  aligner.abort(9);
  expect(aligner.barrier(1, 9)).toEqual({ kind: "ignored" });
  expect(aligner.barrier(1, 10)).toEqual({ kind: "blocked" });
  // An abort of an older checkpoint leaves a newer alignment alone.
  aligner.abort(7);
  expect(aligner.isBlocked(1)).toBe(true);
});
