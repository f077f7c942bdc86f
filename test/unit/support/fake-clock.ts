import type { Clock } from "../../../src/coordinator/interfaces.js";

/** A clock that only moves when the test says so. */
export class FakeClock implements Clock {
  constructor(private current = Date.UTC(2025, 0, 1)) {}

  now(): number {
    return this.current;
  }

  advance(ms: number): void {
    this.current += ms;
  }
}
