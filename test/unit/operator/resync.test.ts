// The periodic resync under injected timers and randomness: every period is jittered within
// [0.9, 1.1) × period, each firing queues every key known at that moment, and stop() ends it.
import { describe, expect, it } from "@jest/globals";
import type { Timers } from "../../../src/coordinator/interfaces.js";
import { Resync } from "../../../src/operator/controller/resync.js";

const PERIOD = 300_000;

/** Timers that only run when the test fires them; records every delay asked for. */
function manualTimers() {
  const pending = new Map<number, { callback: () => void; ms: number }>();
  const delays: number[] = [];
  let next = 0;
  const timers: Timers = {
    setTimeout: (callback, ms) => {
      const handle = ++next;
      pending.set(handle, { callback, ms });
      delays.push(ms);
      return () => pending.delete(handle);
    },
  };
  const fire = () => {
    expect(pending.size).toBe(1);
    const [handle, timer] = [...pending][0]!;
    pending.delete(handle);
    timer.callback();
  };
  return { timers, delays, pending, fire };
}

describe("Resync", () => {
  it("queues every known key once per period, each period jittered within ±10%", () => {
    const { timers, delays, fire } = manualTimers();
    const keys = new Set(["default/a", "team/b"]);
    const enqueued: string[][] = [];
    let batch: string[] = [];
    // The extremes of the random source, and values between.
    const draws = [0, 0.999999, 0.5, 0.25];
    const resync = new Resync({
      periodMs: PERIOD,
      keys: () => keys,
      enqueue: (key) => batch.push(key),
      random: () => draws.shift() ?? 0.5,
      timers,
    });
    resync.start();
    expect(batch).toEqual([]); // nothing at start: the watch's initial list queued everything
    for (let round = 0; round < 3; round++) {
      fire();
      enqueued.push(batch);
      batch = [];
      if (round === 0) keys.add("default/c"); // a job the watch learned about in between
    }
    expect(enqueued).toEqual([
      ["default/a", "team/b"],
      ["default/a", "team/b", "default/c"],
      ["default/a", "team/b", "default/c"],
    ]);
    expect(delays[0]).toBe(0.9 * PERIOD);
    expect(delays[1]).toBeLessThan(1.1 * PERIOD);
    expect(delays[1]).toBeGreaterThan(1.09 * PERIOD);
    expect(delays.slice(2, 4)).toEqual([PERIOD, 0.95 * PERIOD]);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0.9 * PERIOD);
      expect(delay).toBeLessThan(1.1 * PERIOD);
    }
  });

  it("with Math.random, a thousand periods stay within the bounds and are not all equal", () => {
    const resync = new Resync({ periodMs: PERIOD, keys: () => [], enqueue: () => {} });
    const delays = Array.from({ length: 1000 }, () => resync.nextDelayMs());
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0.9 * PERIOD);
    expect(Math.max(...delays)).toBeLessThan(1.1 * PERIOD);
    expect(new Set(delays).size).toBeGreaterThan(1);
  });

  it("stop() cancels the pending period and nothing is queued after", () => {
    const { timers, pending } = manualTimers();
    const enqueued: string[] = [];
    const resync = new Resync({
      periodMs: PERIOD,
      keys: () => ["default/a"],
      enqueue: (key) => enqueued.push(key),
      timers,
    });
    resync.start();
    resync.start(); // idempotent: still one timer
    expect(pending.size).toBe(1);
    resync.stop();
    expect(pending.size).toBe(0);
    expect(enqueued).toEqual([]);
  });

  it("refuses a period that is not positive", () => {
    expect(() => new Resync({ periodMs: 0, keys: () => [], enqueue: () => {} })).toThrow(/positive/);
  });
});
