// controller-runtime's rate-limited work queue, by hand (client-node has none). Keys are
// namespace/name; a reconcile pass is level-based, so many events for one key merge into one pass.
//
// - A key is never processed by two workers at once: an add() while it is processed marks it dirty,
//   and it runs once more after the current pass.
// - Failures back off per key (base * 2^(failures-1), capped); a success forgets the failures.
// - Delayed adds hold one timer per key, the earliest wins; an add() makes the key run now.
// - An idle queue holds no timers and no pending callbacks, so the operator sleeps while nothing happens.

export interface ProcessResult {
  requeueAfterMs?: number;
}

export type ProcessOutcome = "success" | "requeue" | "error";

export interface WorkQueueOptions {
  /** Keys processed in parallel; one key is never processed twice at once. */
  workers: number;
  /** First retry after a failure. Default 5 ms. */
  baseDelayMs?: number;
  /** Cap of the per-key exponential backoff. Default 60 s. */
  maxDelayMs?: number;
  onProcessed?: (key: string, durationMs: number, outcome: ProcessOutcome, error?: unknown) => void;
}

export class WorkQueue {
  private readonly workers: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly onProcessed: WorkQueueOptions["onProcessed"];

  private state: "new" | "running" | "stopped" = "new";
  /** Keys waiting for a worker, in the order they were added; `waiting` mirrors it for lookups. */
  private readonly queue: string[] = [];
  private readonly waiting = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys added while being processed. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly passes = new Set<Promise<void>>();

  constructor(
    private readonly process: (key: string) => Promise<ProcessResult | void>,
    options: WorkQueueOptions,
  ) {
    if (!Number.isInteger(options.workers) || options.workers < 1) {
      throw new Error(`workers must be a positive integer, got ${options.workers}`);
    }
    this.workers = options.workers;
    this.baseDelayMs = options.baseDelayMs ?? 5;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.onProcessed = options.onProcessed;
  }

  /** Keys waiting for a worker (delayed keys are not counted until their timer fires). */
  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.state === "stopped") return;
    this.cancelTimer(key);
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waiting.has(key)) return;
    this.waiting.add(key);
    this.queue.push(key);
    this.dispatch();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.state === "stopped") return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing !== undefined && existing.at <= at) return;
    this.cancelTimer(key);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    this.timers.set(key, { at, timer });
  }

  start(): void {
    if (this.state !== "new") return;
    this.state = "running";
    this.dispatch();
  }

  /** No new passes start and timers are cleared; resolves when the passes in flight have ended. */
  async stop(): Promise<void> {
    this.state = "stopped";
    for (const key of [...this.timers.keys()]) this.cancelTimer(key);
    this.queue.length = 0;
    this.waiting.clear();
    this.dirty.clear();
    await Promise.all(this.passes);
  }

  private dispatch(): void {
    while (this.state === "running" && this.processing.size < this.workers) {
      const key = this.queue.shift();
      if (key === undefined) return;
      this.waiting.delete(key);
      this.processing.add(key);
      const pass = this.runPass(key);
      this.passes.add(pass);
      void pass.finally(() => this.passes.delete(pass));
    }
  }

  private async runPass(key: string): Promise<void> {
    const started = performance.now();
    let outcome: ProcessOutcome;
    let error: unknown;
    let retryAfterMs: number | undefined;
    try {
      const result = await this.process(key);
      this.failures.delete(key);
      retryAfterMs = result?.requeueAfterMs;
      outcome = retryAfterMs === undefined ? "success" : "requeue";
    } catch (err) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      retryAfterMs = Math.min(this.baseDelayMs * 2 ** (failures - 1), this.maxDelayMs);
      outcome = "error";
      error = err;
    }
    this.processing.delete(key);
    // An add() during the pass means the pass may have read stale state: run again now.
    if (this.dirty.delete(key)) this.add(key);
    else if (retryAfterMs !== undefined) this.addAfter(key, retryAfterMs);
    this.dispatch();
    this.onProcessed?.(key, performance.now() - started, outcome, error);
  }

  private cancelTimer(key: string): void {
    const existing = this.timers.get(key);
    if (existing === undefined) return;
    clearTimeout(existing.timer);
    this.timers.delete(key);
  }
}
