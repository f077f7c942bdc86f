// The rate-limited work queue under fake timers: merging, one pass per key at a time, backoff,
// delayed adds, stop, and that an idle queue holds no timers.
import { afterEach, beforeEach, describe, expect, it, jest } from "@jest/globals";
import {
  WorkQueue,
  type ProcessOutcome,
  type ProcessResult,
  type WorkQueueOptions,
} from "../../../src/operator/controller/work-queue.js";

beforeEach(() => {
  jest.useFakeTimers({ now: 0 });
});
afterEach(() => {
  jest.useRealTimers();
});

/** Lets every settled promise run its callbacks, firing timers that are due (none move time). */
const settle = () => jest.advanceTimersByTimeAsync(0);

interface Gate {
  promise: Promise<void>;
  open: () => void;
}
function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

interface Pass {
  key: string;
  at: number;
}

/** A queue whose process function records every pass and answers with `behave`. */
function recordingQueue(
  behave: (key: string, pass: number) => Promise<ProcessResult | void> | ProcessResult | void = () => {},
  options: Partial<WorkQueueOptions> = {},
) {
  const passes: Pass[] = [];
  const outcomes: Array<{ key: string; outcome: ProcessOutcome; error?: unknown }> = [];
  const queue = new WorkQueue(
    async (key) => {
      passes.push({ key, at: Date.now() });
      return behave(key, passes.filter((p) => p.key === key).length);
    },
    {
      workers: 1,
      onProcessed: (key, _ms, outcome, error) => outcomes.push({ key, outcome, error }),
      ...options,
    },
  );
  return { queue, passes, outcomes, keys: () => passes.map((p) => p.key) };
}

describe("WorkQueue", () => {
  it("merges duplicate keys and keeps the order keys were first added", async () => {
    const { queue, keys } = recordingQueue();
    for (const key of ["ns/a", "ns/b", "ns/a", "ns/c", "ns/b"]) queue.add(key);
    expect(queue.depth).toBe(3);

    queue.start();
    await settle();

    expect(keys()).toEqual(["ns/a", "ns/b", "ns/c"]);
    expect(queue.depth).toBe(0);
    await queue.stop();
  });

  it("processes different keys in parallel up to the number of workers", async () => {
    const release = gate();
    let running = 0;
    let most = 0;
    const { queue, keys } = recordingQueue(
      async () => {
        most = Math.max(most, ++running);
        await release.promise;
        running--;
      },
      { workers: 2 },
    );
    queue.start();
    for (const key of ["a", "b", "c", "d", "e"]) queue.add(key);
    await settle();

    expect(keys()).toEqual(["a", "b"]);
    expect(queue.depth).toBe(3);
    release.open();
    await settle();
    expect(keys()).toEqual(["a", "b", "c", "d", "e"]);
    expect(most).toBe(2);
    await queue.stop();
  });

  it("never processes a key twice at once, and runs it once more when added during its pass", async () => {
    const gates = [gate(), gate()];
    const running = new Set<string>();
    let overlapped = false;
    const { queue, keys } = recordingQueue(
      async (key, pass) => {
        if (running.has(key)) overlapped = true;
        running.add(key);
        await gates[pass - 1]?.promise;
        running.delete(key);
      },
      { workers: 4 },
    );
    queue.start();
    queue.add("a");
    await settle();
    expect(keys()).toEqual(["a"]);

    // Three events while the first pass runs: merged into one more pass, after this one ends.
    queue.add("a");
    queue.add("a");
    queue.add("a");
    await settle();
    expect(keys()).toEqual(["a"]);
    expect(queue.depth).toBe(0);

    gates[0]?.open();
    await settle();
    expect(keys()).toEqual(["a", "a"]);
    gates[1]?.open();
    await settle();
    expect(keys()).toEqual(["a", "a"]);
    expect(overlapped).toBe(false);
    await queue.stop();
  });

  it.each([
    { base: 5, max: 60_000, delays: [5, 10, 20, 40, 80] },
    { base: 100, max: 1_000, delays: [100, 200, 400, 800, 1_000, 1_000] },
    { base: 1_000, max: 1_000, delays: [1_000, 1_000] },
  ])("backs off $base ms doubling up to $max ms per failure", async ({ base, max, delays }) => {
    const { queue, passes, outcomes } = recordingQueue(
      (_key, pass) => {
        throw new Error(`failure ${pass}`);
      },
      { baseDelayMs: base, maxDelayMs: max },
    );
    queue.start();
    queue.add("a");
    await jest.advanceTimersByTimeAsync(delays.reduce((sum, d) => sum + d, 0));

    const gaps = passes.slice(1).map((p, i) => p.at - (passes[i]?.at ?? 0));
    expect(gaps).toEqual(delays);
    expect(outcomes.map((o) => o.outcome)).toEqual([...delays, 0].map(() => "error"));
    expect(outcomes[0]?.error).toEqual(new Error("failure 1"));
    await queue.stop();
  });

  it("keeps a separate failure count per key", async () => {
    const { queue, passes } = recordingQueue(
      (key) => {
        if (key === "flaky") throw new Error("still failing");
      },
      { baseDelayMs: 10 },
    );
    queue.start();
    queue.add("flaky");
    await jest.advanceTimersByTimeAsync(10 + 20);
    queue.add("fine");
    await settle();
    await jest.advanceTimersByTimeAsync(40);

    expect(passes).toEqual([
      { key: "flaky", at: 0 },
      { key: "flaky", at: 10 },
      { key: "flaky", at: 30 },
      { key: "fine", at: 30 },
      { key: "flaky", at: 70 },
    ]);
    await queue.stop();
  });

  it("forgets the failures of a key once a pass succeeds", async () => {
    const fails = [true, true, true, false, true];
    const { queue, passes } = recordingQueue(
      (_key, pass) => {
        if (fails[pass - 1]) throw new Error("transient");
      },
      { baseDelayMs: 10 },
    );
    queue.start();
    queue.add("a");
    await jest.advanceTimersByTimeAsync(10 + 20 + 40);
    expect(passes.map((p) => p.at)).toEqual([0, 10, 30, 70]);

    queue.add("a");
    await jest.advanceTimersByTimeAsync(10);
    // The failure after the success waits the base delay again, not 80 ms.
    expect(passes.map((p) => p.at)).toEqual([0, 10, 30, 70, 70, 80]);
    await queue.stop();
  });

  it("adds the key again after requeueAfterMs, and reports the pass as a requeue", async () => {
    const { queue, passes, outcomes } = recordingQueue((_key, pass) =>
      pass === 1 ? { requeueAfterMs: 30_000 } : undefined,
    );
    queue.start();
    queue.add("a");
    await jest.advanceTimersByTimeAsync(29_999);
    expect(passes).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(1);

    expect(passes.map((p) => p.at)).toEqual([0, 30_000]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["requeue", "success"]);
    await queue.stop();
  });

  it.each([
    { delays: [1_000, 300], runsAt: 300 },
    { delays: [300, 1_000], runsAt: 300 },
    { delays: [500, 500, 2_000, 800], runsAt: 500 },
  ])("keeps one timer per key, the earliest of $delays", async ({ delays, runsAt }) => {
    const { queue, passes } = recordingQueue();
    queue.start();
    for (const delay of delays) queue.addAfter("a", delay);
    expect(jest.getTimerCount()).toBe(1);

    await jest.advanceTimersByTimeAsync(Math.max(...delays) + 1);
    expect(passes).toEqual([{ key: "a", at: runsAt }]);
    await queue.stop();
  });

  it("runs a delayed key at once when it is added before its timer fires", async () => {
    const { queue, passes } = recordingQueue();
    queue.start();
    queue.addAfter("a", 1_000);
    queue.add("a");
    await jest.advanceTimersByTimeAsync(5_000);

    expect(passes).toEqual([{ key: "a", at: 0 }]);
    await queue.stop();
  });

  it("holds delayed keys outside the depth until their timer fires", async () => {
    const { queue } = recordingQueue();
    queue.addAfter("a", 100);
    queue.add("b");
    expect(queue.depth).toBe(1);
    await jest.advanceTimersByTimeAsync(100);
    expect(queue.depth).toBe(2);
    await queue.stop();
  });

  it("holds no timers while idle, before and after work", async () => {
    const { queue, passes } = recordingQueue((_key, pass) => {
      if (pass === 1) throw new Error("once");
    });
    queue.start();
    expect(jest.getTimerCount()).toBe(0);

    queue.add("a");
    queue.add("b");
    await jest.advanceTimersByTimeAsync(5);

    expect(passes.map((p) => p.key)).toEqual(["a", "b", "a", "b"]);
    expect(jest.getTimerCount()).toBe(0);
    await queue.stop();
  });

  it("stop() waits for the passes in flight, starts no new ones and clears the timers", async () => {
    const release = gate();
    const { queue, keys, outcomes } = recordingQueue(async (key) => {
      if (key === "slow") await release.promise;
      throw new Error("fails, so a retry would be scheduled");
    });
    queue.start();
    queue.add("slow");
    queue.add("queued");
    queue.addAfter("delayed", 1_000);
    await settle();

    let stopped = false;
    const stopping = queue.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false);
    expect(jest.getTimerCount()).toBe(0);

    release.open();
    await stopping;
    queue.add("after-stop");
    await jest.advanceTimersByTimeAsync(60_000);

    expect(keys()).toEqual(["slow"]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["error"]);
    expect(jest.getTimerCount()).toBe(0);
    expect(queue.depth).toBe(0);
  });

  it("refuses a worker count that could never process anything", () => {
    expect(() => new WorkQueue(async () => {}, { workers: 0 })).toThrow("workers must be a positive integer");
  });
});
