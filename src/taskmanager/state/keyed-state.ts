// Keyed state of one task, organised in key groups (see src/api/key-groups.ts). The task owns a
// contiguous KeyGroupRange; every key is routed to keyGroupForKey(key) and must fall inside it.
//
// Snapshots are copy-on-write per key group: taking one only marks every key group as shared
// (O(number of key groups), no copying), and the first write to a shared key group after that
// copies that group's map. The snapshot keeps the old maps, which are never written again, so it
// can be serialized and uploaded while processing goes on. Values are treated as immutable: job
// code replaces a value with put() and never mutates one it got from get().
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
  readonly keyGroups: ReadonlyArray<{ keyGroup: number; entries: ReadonlyMap<string, JsonValue> }>;
  readonly entryCount: number;
}

interface KeyGroupSlot {
  entries: Map<string, JsonValue>;
  /** A snapshot references `entries`: copy before the next write. */
  shared: boolean;
}

export class KeyGroupedStateBackend implements KeyedState {
  private readonly slots: KeyGroupSlot[];

  constructor(
    readonly maxParallelism: number,
    readonly keyGroupRange: KeyGroupRange,
  ) {
    if (keyGroupRange.start > keyGroupRange.end || keyGroupRange.end >= maxParallelism) {
      throw new RangeError(
        `key group range ${keyGroupRange.start}-${keyGroupRange.end} is not within 0-${maxParallelism - 1}`,
      );
    }
    this.slots = Array.from({ length: keyGroupRange.end - keyGroupRange.start + 1 }, () => ({
      entries: new Map<string, JsonValue>(),
      shared: false,
    }));
  }

  get(key: string): JsonValue | undefined {
    return this.slotFor(key).entries.get(key);
  }

  put(key: string, value: JsonValue): void {
    this.writableEntries(this.slotFor(key)).set(key, value);
  }

  delete(key: string): void {
    const slot = this.slotFor(key);
    if (slot.entries.has(key)) this.writableEntries(slot).delete(key);
  }

  owns(key: string): boolean {
    const keyGroup = keyGroupForKey(key, this.maxParallelism);
    return keyGroup >= this.keyGroupRange.start && keyGroup <= this.keyGroupRange.end;
  }

  /** Number of keys held, over all key groups. */
  get size(): number {
    return this.slots.reduce((total, slot) => total + slot.entries.size, 0);
  }

  /** The synchronous part of a snapshot: marks every key group shared and keeps its current map. */
  snapshot(): KeyedStateSnapshot {
    const keyGroups: Array<{ keyGroup: number; entries: ReadonlyMap<string, JsonValue> }> = [];
    let entryCount = 0;
    this.slots.forEach((slot, i) => {
      if (slot.entries.size === 0) return;
      slot.shared = true;
      keyGroups.push({ keyGroup: this.keyGroupRange.start + i, entries: slot.entries });
      entryCount += slot.entries.size;
    });
    return { keyGroupRange: { ...this.keyGroupRange }, keyGroups, entryCount };
  }

  /** Loads restored entries of one key group; the key group must be one of this task's. */
  restoreEntry(keyGroup: number, key: string, value: JsonValue): void {
    if (!isWithinRange({ start: keyGroup, end: keyGroup }, this.keyGroupRange)) {
      throw new RangeError(`key group ${keyGroup} is not owned by this task`);
    }
    const expected = keyGroupForKey(key, this.maxParallelism);
    if (expected !== keyGroup) {
      throw new RangeError(
        `key ${JSON.stringify(key)} is stored in key group ${keyGroup}, expected ${expected}`,
      );
    }
    this.writableEntries(this.slotAt(keyGroup)).set(key, value);
  }

  private slotFor(key: string): KeyGroupSlot {
    const keyGroup = keyGroupForKey(key, this.maxParallelism);
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

  private writableEntries(slot: KeyGroupSlot): Map<string, JsonValue> {
    if (slot.shared) {
      slot.entries = new Map(slot.entries);
      slot.shared = false;
    }
    return slot.entries;
  }
}
