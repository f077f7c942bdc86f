// Keyed state of one task, organised in key groups (see src/api/key-groups.ts). The task owns a
// contiguous KeyGroupRange; every key is routed to keyGroupForKey(key) and must fall inside it.
//
// Snapshots are copy-on-write per entry, in the spirit of Flink's CopyOnWriteStateMap: taking one
// copies nothing (O(number of key groups)); while it is held, the first write or delete of a key
// saves the value the key had when the snapshot began in that snapshot's side map, so a snapshot
// costs in proportion to the keys changed while it is being written, not to the state's size. A
// snapshot reads the live maps and prefers its saved values; keys added since it began are saved as
// absent. Deletes while a snapshot is held leave a tombstone in place, so that no key a snapshot has
// to read moves in its map's iteration order (JavaScript's Map iterators visit each entry present
// throughout once, and entries added later, which a snapshot skips): reading stays consistent while
// processing continues between its steps. Tombstones go once every snapshot older than them is
// released. Values are treated as immutable: job code replaces a value with put() and never mutates
// one it got from get().
import { isWithinRange, keyGroupForKey, type KeyGroupRange } from "../../api/key-groups.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** What job code sees: the state of the keys this task owns. */
export interface KeyedState {
  get(key: string): JsonValue | undefined;
  put(key: string, value: JsonValue): void;
  delete(key: string): void;
  /** True when `key` belongs to one of this task's key groups (put/get would accept it). */
  owns(key: string): boolean;
}

/** A frozen cut of the state: key group → its entries, ascending by key group, empty groups left out. */
export interface KeyedStateSnapshot {
  readonly keyGroupRange: KeyGroupRange;
  /** Each key group's entries as they were when the snapshot began, whatever changed since. */
  readonly keyGroups: ReadonlyArray<{ keyGroup: number; entries: Iterable<readonly [string, JsonValue]> }>;
  readonly entryCount: number;
  /** Stops saving values for this snapshot; reading it afterwards throws. Idempotent. */
  release(): void;
}

/** A key deleted while snapshots were held, kept in its map until those snapshots are released. */
class Tombstone {
  constructor(
    readonly slot: KeyGroupSlot,
    readonly key: string,
    /** The version of the newest snapshot taken before the delete. */
    readonly after: number,
  ) {}
}

/** Saved for a key that did not exist when the snapshot began. */
const ABSENT = Symbol("absent");

interface KeyGroupSlot {
  entries: Map<string, JsonValue | Tombstone>;
  tombstones: number;
}

class CopyOnWriteSnapshot implements KeyedStateSnapshot {
  /** Values, as of this snapshot's start, of the keys written or deleted since. */
  readonly saved = new Map<string, JsonValue | Tombstone | typeof ABSENT>();
  readonly keyGroups: KeyedStateSnapshot["keyGroups"];
  readonly entryCount: number;
  private released = false;

  constructor(
    readonly version: number,
    readonly keyGroupRange: KeyGroupRange,
    slots: readonly KeyGroupSlot[],
    private readonly onRelease: (snapshot: CopyOnWriteSnapshot) => void,
  ) {
    const keyGroups: Array<{ keyGroup: number; entries: Iterable<readonly [string, JsonValue]> }> = [];
    let entryCount = 0;
    slots.forEach((slot, i) => {
      const size = slot.entries.size - slot.tombstones;
      if (size === 0) return;
      keyGroups.push({
        keyGroup: keyGroupRange.start + i,
        entries: { [Symbol.iterator]: () => this.read(slot) },
      });
      entryCount += size;
    });
    this.keyGroups = keyGroups;
    this.entryCount = entryCount;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.saved.clear();
    this.onRelease(this);
  }

  private checkHeld(): void {
    if (this.released) throw new Error(`snapshot ${this.version} was read after its release`);
  }

  private *read(slot: KeyGroupSlot): Generator<readonly [string, JsonValue]> {
    this.checkHeld();
    for (const [key, live] of slot.entries) {
      this.checkHeld(); // processing may have gone on, and released it, since the last entry
      const saved = this.saved.get(key);
      const value = saved === undefined ? live : saved;
      if (value !== ABSENT && !(value instanceof Tombstone)) yield [key, value];
    }
  }
}

export class KeyGroupedStateBackend implements KeyedState {
  private readonly slots: KeyGroupSlot[];
  /** Snapshots not yet released, oldest first. */
  private held: CopyOnWriteSnapshot[] = [];
  private snapshotsTaken = 0;
  /** Tombstones in the order of their deletes, so `after` never decreases. */
  private tombstones: Tombstone[] = [];
  private lastKey: string | undefined;
  private lastKeyGroup = 0;

  constructor(
    readonly maxParallelism: number,
    readonly keyGroupRange: KeyGroupRange,
    /** Where a key lives: its hash by default; partition-scoped state places keys by partition. */
    private readonly keyGroupOf: (key: string) => number = (key) => keyGroupForKey(key, maxParallelism),
  ) {
    if (keyGroupRange.start > keyGroupRange.end || keyGroupRange.end >= maxParallelism) {
      throw new RangeError(
        `key group range ${keyGroupRange.start}-${keyGroupRange.end} is not within 0-${maxParallelism - 1}`,
      );
    }
    this.slots = Array.from({ length: keyGroupRange.end - keyGroupRange.start + 1 }, () => ({
      entries: new Map<string, JsonValue | Tombstone>(),
      tombstones: 0,
    }));
  }

  get(key: string): JsonValue | undefined {
    const value = this.slotFor(key).entries.get(key);
    return value instanceof Tombstone ? undefined : value;
  }

  put(key: string, value: JsonValue): void {
    this.write(this.slotFor(key), key, value);
  }

  delete(key: string): void {
    const slot = this.slotFor(key);
    const current = slot.entries.get(key);
    if (current === undefined || current instanceof Tombstone) return;
    if (this.held.length === 0) {
      slot.entries.delete(key);
      return;
    }
    this.saveForSnapshots(key, current);
    const tombstone = new Tombstone(slot, key, this.snapshotsTaken);
    slot.entries.set(key, tombstone);
    slot.tombstones++;
    this.tombstones.push(tombstone);
  }

  owns(key: string): boolean {
    const keyGroup = this.keyGroupOfCached(key);
    return keyGroup >= this.keyGroupRange.start && keyGroup <= this.keyGroupRange.end;
  }

  /** Number of keys held, over all key groups. */
  get size(): number {
    return this.slots.reduce((total, slot) => total + slot.entries.size - slot.tombstones, 0);
  }

  /**
   * The synchronous part of a snapshot: copies nothing. The caller must release it once its part is
   * written; until then every first write of a key saves the key's old value for it.
   */
  snapshot(): KeyedStateSnapshot {
    const snapshot = new CopyOnWriteSnapshot(
      ++this.snapshotsTaken,
      { ...this.keyGroupRange },
      this.slots,
      (released) => this.released(released),
    );
    this.held.push(snapshot);
    return snapshot;
  }

  /** Loads restored entries of one key group; the key group must be one of this task's. */
  restoreEntry(keyGroup: number, key: string, value: JsonValue): void {
    if (!isWithinRange({ start: keyGroup, end: keyGroup }, this.keyGroupRange)) {
      throw new RangeError(`key group ${keyGroup} is not owned by this task`);
    }
    const expected = this.keyGroupOf(key);
    if (expected !== keyGroup) {
      throw new RangeError(
        `key ${JSON.stringify(key)} is stored in key group ${keyGroup}, expected ${expected}`,
      );
    }
    this.write(this.slotAt(keyGroup), key, value);
  }

  /**
   * Tells the backend the group of the key read and written next, which the caller computed as
   * keyGroupForKey does (the exchange hashes every key it receives once, to check it).
   */
  rememberKeyGroup(key: string, keyGroup: number): void {
    this.lastKey = key;
    this.lastKeyGroup = keyGroup;
  }

  /**
   * The key group of `key`, remembering the last one: job code reads and writes the key of the
   * record at hand (owns, get, put), and the hash would otherwise be most of their cost.
   */
  private keyGroupOfCached(key: string): number {
    if (key !== this.lastKey) {
      this.lastKeyGroup = this.keyGroupOf(key);
      this.lastKey = key;
    }
    return this.lastKeyGroup;
  }

  private slotFor(key: string): KeyGroupSlot {
    const keyGroup = this.keyGroupOfCached(key);
    if (keyGroup < this.keyGroupRange.start || keyGroup > this.keyGroupRange.end) {
      throw new RangeError(
        `key ${JSON.stringify(key)} is in key group ${keyGroup}, outside this task's key groups ${this.keyGroupRange.start}-${this.keyGroupRange.end}`,
      );
    }
    return this.slotAt(keyGroup);
  }

  private slotAt(keyGroup: number): KeyGroupSlot {
    const slot = this.slots[keyGroup - this.keyGroupRange.start];
    if (slot === undefined) throw new RangeError(`key group ${keyGroup} is not owned by this task`);
    return slot;
  }

  private write(slot: KeyGroupSlot, key: string, value: JsonValue): void {
    if (this.held.length > 0 || slot.tombstones > 0) {
      const current = slot.entries.get(key);
      if (this.held.length > 0) this.saveForSnapshots(key, current);
      if (current instanceof Tombstone) slot.tombstones--;
    }
    slot.entries.set(key, value);
  }

  /** Before the first change of `key` since each held snapshot began: keep its value (`current`) for it. */
  private saveForSnapshots(key: string, current: JsonValue | Tombstone | undefined): void {
    for (const snapshot of this.held) {
      if (!snapshot.saved.has(key)) snapshot.saved.set(key, current ?? ABSENT);
    }
  }

  private released(snapshot: CopyOnWriteSnapshot): void {
    this.held = this.held.filter((held) => held !== snapshot);
    // A tombstone is needed only by the snapshots taken before its delete.
    const oldestHeld = this.held[0]?.version ?? Infinity;
    const stale = this.tombstones.findIndex((tombstone) => tombstone.after >= oldestHeld);
    const purged = stale === -1 ? this.tombstones : this.tombstones.slice(0, stale);
    this.tombstones = stale === -1 ? [] : this.tombstones.slice(stale);
    for (const tombstone of purged) {
      // The key may have been written again (and deleted again: a newer tombstone) since.
      if (tombstone.slot.entries.get(tombstone.key) !== tombstone) continue;
      tombstone.slot.entries.delete(tombstone.key);
      tombstone.slot.tombstones--;
    }
  }
}
