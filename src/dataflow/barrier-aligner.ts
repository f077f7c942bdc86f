// Aligned barriers for one stage instance with several input channels (Carbone et al. 2015; Flink's
// SingleCheckpointBarrierHandler): the first barrier of a checkpoint starts the alignment and blocks
// its channel; every channel that delivers the barrier is blocked (held back, not dropped) until the
// last one has; then the stage snapshots and the channels are released. A newer barrier cancels an
// alignment that has not finished (that checkpoint can no longer complete here); barriers of a
// checkpoint already aligned, cancelled or aborted are ignored.
export type BarrierOutcome =
  | { kind: "ignored"; cancelled?: undefined }
  | { kind: "blocked"; cancelled?: number }
  | { kind: "aligned"; checkpointId: number; alignmentMs: number; cancelled?: number };

export class BarrierAligner {
  private current: number | undefined;
  private startedAt = 0;
  private readonly blocked = new Set<number>();
  /** Every checkpoint up to this one is finished here (aligned, cancelled or aborted). */
  private finishedThrough = 0;

  constructor(
    readonly channels: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The checkpoint being aligned, if any. */
  get aligning(): number | undefined {
    return this.current;
  }

  isBlocked(channel: number): boolean {
    return this.blocked.has(channel);
  }

  /** A barrier arrived at the head of `channel`. */
  barrier(channel: number, checkpointId: number): BarrierOutcome {
    if (checkpointId <= this.finishedThrough) return { kind: "ignored" };
    let cancelled: number | undefined;
    if (this.current !== undefined && checkpointId > this.current) {
      cancelled = this.current;
      this.finish(this.current);
    }
    if (this.current === undefined) {
      this.current = checkpointId;
      this.startedAt = this.now();
    }
    if (checkpointId < this.current) return { kind: "ignored" };
    this.blocked.add(channel);
    if (this.blocked.size < this.channels) return { kind: "blocked", ...(cancelled && { cancelled }) };
    const alignmentMs = Math.round(this.now() - this.startedAt);
    this.finish(checkpointId);
    return { kind: "aligned", checkpointId, alignmentMs, ...(cancelled && { cancelled }) };
  }

  /** The checkpoint was aborted: an alignment of it or an older one releases its channels. */
  abort(checkpointId: number): void {
    if (this.current !== undefined && this.current <= checkpointId) this.finish(this.current);
    this.finishedThrough = Math.max(this.finishedThrough, checkpointId);
  }

  private finish(checkpointId: number): void {
    this.blocked.clear();
    this.current = undefined;
    this.finishedThrough = Math.max(this.finishedThrough, checkpointId);
  }
}
