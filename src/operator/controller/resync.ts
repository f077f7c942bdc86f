// controller-runtime's SyncPeriod: every so often, queue every StreamJob the watch cache knows. A
// watch can go quiet without an error (a proxy holding a dead connection open); the reconciler reads
// fresh from the API server, so a pass per job bounds how long a missed spec change goes unseen. The
// period is jittered (each one drawn anew from [0.9, 1.1) × period, as controller-runtime does), so
// replicas and restarts do not line up their passes.

export const RESYNC_JITTER = 0.1;

/** The timer functions the resync uses; tests pass fakes. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ResyncOptions {
  periodMs: number;
  /** The keys (namespace/name) to queue, read at each resync. */
  keys(): Iterable<string>;
  enqueue(key: string): void;
  /** Uniform in [0, 1): the jitter's source. */
  random?: () => number;
  timers?: Timers;
}

const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class Resync {
  private readonly random: () => number;
  private readonly timers: Timers;
  private timer: unknown;
  private running = false;

  constructor(private readonly options: ResyncOptions) {
    if (!(options.periodMs > 0)) throw new Error(`resync period must be positive, got ${options.periodMs}`);
    this.random = options.random ?? Math.random;
    this.timers = options.timers ?? realTimers;
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
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      for (const key of this.options.keys()) this.options.enqueue(key);
      this.schedule();
    }, this.nextDelayMs());
  }
}
