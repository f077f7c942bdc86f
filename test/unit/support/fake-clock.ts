import type { Clock, Timers } from "../../../src/coordinator/interfaces.js";

/** A clock that only moves when the test says so; its timers fire as it passes their time. */
export class FakeClock implements Clock, Timers {
  private readonly timers = new Set<{ at: number; callback: () => void }>();

  constructor(private current = Date.UTC(2025, 0, 1)) {}

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, delayMs: number): () => void {
    const timer = { at: this.current + Math.max(0, delayMs), callback };
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  /** Moves time on, firing each timer that comes due on the way, earliest first. */
  advance(ms: number): void {
    const until = this.current + ms;
    for (;;) {
      const due = [...this.timers].filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.timers.delete(due);
      this.current = Math.max(this.current, due.at);
      due.callback();
    }
    this.current = until;
  }
}
