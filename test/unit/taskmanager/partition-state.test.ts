// Partition-scoped state: a partition's entries are its own, stored in its key group, and an entry
// restored into a key group its partition no longer has is refused, naming the partition.
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { PartitionScopedState } from "../../../src/taskmanager/state/partition-state.js";

test("the same key under two partitions is two entries, each in its partition's key group", () => {
  const state = new PartitionScopedState(8, { start: 0, end: 7 });
  state.place("orders-0", 1);
  state.place("orders-1", 6);
  const zero = state.view("orders-0");
  const one = state.view("orders-1");
  zero.put("customer-1", 10);
  one.put("customer-1", 20);
  expect(zero.get("customer-1")).toBe(10);
  expect(one.get("customer-1")).toBe(20);
  expect(zero.owns("anything")).toBe(true);
  one.delete("customer-1");
  expect(one.get("customer-1")).toBeUndefined();
  expect(zero.get("customer-1")).toBe(10);

  const snapshot = state.backend.snapshot();
  expect(snapshot.keyGroups.map(({ keyGroup, entries }) => [keyGroup, [...entries]])).toEqual([
    [1, [['["orders-0","customer-1"]', 10]]],
  ]);
  snapshot.release();
});

test("a restore places each partition's entries by the partition and refuses one that moved or is gone", () => {
  // Task 1 of 2 over 8 key groups owns 4..7; orders-1 lives in 6.
  const state = new PartitionScopedState(8, keyGroupRangeForTask(8, 2, 1));
  state.place("orders-1", 6);
  state.place("orders-0", 1);
  state.backend.restoreEntry(6, '["orders-1","customer-1"]', 20);
  expect(state.view("orders-1").get("customer-1")).toBe(20);
  // Stored in 5 by a checkpoint taken when the topic had another partition count.
  expect(() => state.backend.restoreEntry(5, '["orders-1","customer-2"]', 1)).toThrow(
    'key "[\\"orders-1\\",\\"customer-2\\"]" is stored in key group 5, expected 6',
  );
  expect(() => state.backend.restoreEntry(5, '["orders-9","customer-2"]', 1)).toThrow(
    "partition-scoped state of source partition orders-9, which the job does not have",
  );
});
