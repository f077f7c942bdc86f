// Checkpoint ids only grow, also across operator restarts and epochs (after Flink's
// CheckpointIDCounter). Reusing an id would let a new checkpoint's parts mix with the leftovers of an
// aborted one in the same chk-<id>/ directory, or make an older manifest look newer than it is.
// Savepoints draw from the same counter.

export class CheckpointIdCounter {
  private constructor(private nextId: number) {}

  /**
   * Resumes after the highest id known anywhere: the one recorded in status and every id that has a
   * directory in storage (completed, aborted or half-written alike).
   */
  static resume(statusLatestId: number | null, storedIds: Iterable<number>): CheckpointIdCounter {
    let highest = statusLatestId ?? 0;
    for (const id of storedIds) highest = Math.max(highest, id);
    if (!Number.isSafeInteger(highest) || highest < 0) {
      throw new RangeError(`checkpoint ids must be non-negative integers, found ${highest}`);
    }
    return new CheckpointIdCounter(highest + 1);
  }

  /** Takes the next id; never returns the same id twice. */
  next(): number {
    const id = this.nextId;
    this.nextId += 1;
    return id;
  }
}
