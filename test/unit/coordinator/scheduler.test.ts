import {
  decideTrigger,
  type SchedulerPolicy,
  type SchedulerState,
  type TriggerDecision,
} from "../../../src/coordinator/scheduler.js";
import { FakeClock } from "../support/fake-clock.js";
import { randomInt, seededRandom } from "../../support/random.js";

const policy: SchedulerPolicy = { intervalMs: 10_000, timeoutMs: 60_000, minPauseMs: 0, maxConcurrent: 1 };
const NOW = 1_000_000;

describe("decideTrigger", () => {
  it.each<[string, Partial<SchedulerPolicy>, SchedulerState, TriggerDecision]>([
    [
      "triggers the first checkpoint at once, with the timeout as deadline",
      {},
      { lastTriggeredAt: null, lastEndedAt: null, pending: [] },
      { trigger: true, deadline: NOW + 60_000 },
    ],
    [
      "waits for the rest of the interval",
      {},
      { lastTriggeredAt: NOW - 4_000, lastEndedAt: NOW - 3_000, pending: [] },
      { trigger: false, reason: "interval", requeueAfterMs: 6_000 },
    ],
    [
      "triggers when the interval has elapsed exactly",
      {},
      { lastTriggeredAt: NOW - 10_000, lastEndedAt: NOW - 9_000, pending: [] },
      { trigger: true, deadline: NOW + 60_000 },
    ],
    [
      "waits for the minimum pause measured from the end of the last checkpoint",
      { minPauseMs: 5_000 },
      { lastTriggeredAt: NOW - 12_000, lastEndedAt: NOW - 1_000, pending: [] },
      { trigger: false, reason: "min-pause", requeueAfterMs: 4_000 },
    ],
    [
      "counts an aborted checkpoint's end for the minimum pause too (lastEndedAt)",
      { minPauseMs: 5_000 },
      { lastTriggeredAt: NOW - 70_000, lastEndedAt: NOW - 5_000, pending: [] },
      { trigger: true, deadline: NOW + 60_000 },
    ],
    [
      "reports the interval when it ends after the pause",
      { minPauseMs: 1_000 },
      { lastTriggeredAt: NOW - 2_000, lastEndedAt: NOW - 1_500, pending: [] },
      { trigger: false, reason: "interval", requeueAfterMs: 8_000 },
    ],
    [
      "waits for a slot at max concurrent, looking again at the earliest deadline",
      { maxConcurrent: 2 },
      {
        lastTriggeredAt: NOW - 30_000,
        lastEndedAt: null,
        pending: [
          { checkpointId: 4, deadline: NOW + 20_000 },
          { checkpointId: 5, deadline: NOW + 50_000 },
        ],
      },
      { trigger: false, reason: "max-concurrent", requeueAfterMs: 20_000 },
    ],
    [
      "triggers a second concurrent checkpoint below max concurrent",
      { maxConcurrent: 2 },
      {
        lastTriggeredAt: NOW - 10_000,
        lastEndedAt: null,
        pending: [{ checkpointId: 4, deadline: NOW + 50_000 }],
      },
      { trigger: true, deadline: NOW + 60_000 },
    ],
    [
      "caps the requeue delay at a pending deadline",
      { maxConcurrent: 2 },
      {
        lastTriggeredAt: NOW - 1_000,
        lastEndedAt: null,
        pending: [{ checkpointId: 4, deadline: NOW + 2_000 }],
      },
      { trigger: false, reason: "interval", requeueAfterMs: 2_000 },
    ],
    [
      "looks again at once when a deadline has already passed",
      {},
      {
        lastTriggeredAt: NOW - 70_000,
        lastEndedAt: null,
        pending: [{ checkpointId: 4, deadline: NOW - 10 }],
      },
      { trigger: false, reason: "max-concurrent", requeueAfterMs: 0 },
    ],
    [
      "never runs two at once with a minimum pause, whatever max concurrent says",
      { minPauseMs: 1, maxConcurrent: 5 },
      {
        lastTriggeredAt: NOW - 30_000,
        lastEndedAt: null,
        pending: [{ checkpointId: 4, deadline: NOW + 30_000 }],
      },
      { trigger: false, reason: "min-pause", requeueAfterMs: 30_000 },
    ],
  ])("%s", (_, overrides, state, decision) => {
    expect(decideTrigger({ ...policy, ...overrides }, state, NOW)).toEqual(decision);
  });

  it.each<[Partial<SchedulerPolicy>, string]>([
    [{ intervalMs: 0 }, "intervalMs must be positive"],
    [{ timeoutMs: -1 }, "timeoutMs must be positive"],
    [{ minPauseMs: -1 }, "minPauseMs must not be negative"],
    [{ maxConcurrent: 0 }, "maxConcurrent must be at least 1"],
  ])("rejects the policy %p", (overrides, message) => {
    const state = { lastTriggeredAt: null, lastEndedAt: null, pending: [] };
    expect(() => decideTrigger({ ...policy, ...overrides }, state, NOW)).toThrow(message);
  });

  // Drive the decision the way the coordinator will: sleep for requeueAfterMs (or until a running
  // checkpoint ends), trigger when told to, and check the knobs hold over a long random run.
  it.each<[SchedulerPolicy]>([
    [{ intervalMs: 1_000, timeoutMs: 3_000, minPauseMs: 0, maxConcurrent: 1 }],
    [{ intervalMs: 1_000, timeoutMs: 5_000, minPauseMs: 0, maxConcurrent: 3 }],
    [{ intervalMs: 1_000, timeoutMs: 3_000, minPauseMs: 700, maxConcurrent: 2 }],
  ])("keeps interval, min pause and max concurrent over a simulated run of %p", (runPolicy) => {
    const random = seededRandom(42);
    const clock = new FakeClock(0);
    const running: Array<{ checkpointId: number; deadline: number; endsAt: number }> = [];
    const triggers: number[] = [];
    const ends: number[] = [];
    const problems: string[] = [];
    let lastEndedAt: number | null = null;
    let nextId = 1;

    while (clock.now() < 600_000) {
      // Checkpoints take 100 ms to 4 s; those past their deadline expire at the deadline.
      for (const checkpoint of [...running].sort((a, b) => a.endsAt - b.endsAt)) {
        const endedAt = Math.min(checkpoint.endsAt, checkpoint.deadline);
        if (endedAt <= clock.now()) {
          running.splice(running.indexOf(checkpoint), 1);
          ends.push(endedAt);
          lastEndedAt = Math.max(lastEndedAt ?? 0, endedAt);
        }
      }
      const decision = decideTrigger(
        runPolicy,
        { lastTriggeredAt: triggers.at(-1) ?? null, lastEndedAt, pending: running },
        clock.now(),
      );
      if (decision.trigger) {
        const now = clock.now();
        const previous = triggers.at(-1);
        if (previous !== undefined && now - previous < runPolicy.intervalMs)
          problems.push(`interval at ${now}`);
        if (lastEndedAt !== null && now - lastEndedAt < runPolicy.minPauseMs)
          problems.push(`pause at ${now}`);
        if (running.length >= runPolicy.maxConcurrent) problems.push(`concurrency at ${now}`);
        if (runPolicy.minPauseMs > 0 && running.length > 0) problems.push(`overlap at ${now}`);
        if (decision.deadline !== now + runPolicy.timeoutMs) problems.push(`deadline at ${now}`);
        triggers.push(now);
        running.push({
          checkpointId: nextId++,
          deadline: decision.deadline,
          endsAt: now + randomInt(random, 100, 4_000),
        });
        continue;
      }
      const nextEnd = Math.min(
        ...running.map((checkpoint) => Math.min(checkpoint.endsAt, checkpoint.deadline)),
      );
      clock.advance(Math.max(1, Math.min(decision.requeueAfterMs, nextEnd - clock.now())));
    }

    expect(problems).toEqual([]);
    // The scheduler is not merely safe by never triggering: it keeps checkpointing.
    expect(triggers.length).toBeGreaterThan(600_000 / (runPolicy.intervalMs + runPolicy.minPauseMs + 4_000));
  });
});
