// controller-runtime's SyncPeriod: every so often, queue every StreamJob the watch cache knows. A
// watch can go quiet without an error (a proxy holding a dead connection open); the reconciler reads
// fresh from the API server, so a pass per job bounds how long a missed spec change goes unseen. The
// period is jittered (each one drawn anew from [0.9, 1.1) × period, as controller-runtime does), so
// replicas and restarts do not line up their passes.

import { systemTimers, type Timers } from "../../coordinator/interfaces.js";

const RESYNC_JITTER = 0.1;

export interface ResyncOptions {
  periodMs: number;
  /** The keys (namespace/name) to queue, read at each resync. */
  keys(): Iterable<string>;
  enqueue(key: string): void;
  /** Uniform in [0, 1): the jitter's source. */
  random?: () => number;
  timers?: Timers;
}

export class Resync {
  private readonly random: () => number;
  private readonly timers: Timers;
  private cancel: (() => void) | undefined;
  private running = false;

  constructor(private readonly options: ResyncOptions) {
    if (!(options.periodMs > 0)) throw new Error(`resync period must be positive, got ${options.periodMs}`);
    this.random = options.random ?? Math.random;
    this.timers = options.timers ?? systemTimers;
  }

  /** The next period: within [1 - jitter, 1 + jitter) × periodMs. */
  nextDelayMs(): number {
    return this.options.periodMs * (1 - RESYNC_JITTER + 2 * RESYNC_JITTER * this.random());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    this.cancel?.();
    this.cancel = undefined;
  }

  private schedule(): void {
    this.cancel = this.timers.setTimeout(() => {
      this.cancel = undefined;
      if (!this.running) return;
      for (const key of this.options.keys()) this.options.enqueue(key);
      this.schedule();
    }, this.nextDelayMs());
  }
}
