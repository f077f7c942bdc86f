// Kafka partitions are spread evenly over the tasks through the key group the runtime assigns a
// partition by; that key group depends on the partition count only, so partition-scoped state
// kept in it moves with the partition to its reader at any parallelism.
import { keyGroupRangeForTask, taskIndexForKeyGroup } from "../../../src/api/key-groups.js";
import { kafkaPartitionId, kafkaPartitionKeyGroup } from "../../../src/connectors/kafka/source.js";
import { defineJob, keyGroupOfPartition } from "../../../src/taskmanager/job/job-definition.js";

test("up to 16 partitions at maxParallelism 128: every task reads ⌊N/P⌋ or ⌈N/P⌉ of them, a contiguous run", () => {
  for (let partitions = 1; partitions <= 16; partitions++) {
    for (let parallelism = 1; parallelism <= partitions; parallelism++) {
      const readers = Array.from({ length: partitions }, (_, p) =>
        taskIndexForKeyGroup(128, parallelism, kafkaPartitionKeyGroup(p, partitions, 128)),
      );
      const counts = Array.from({ length: parallelism }, (_, t) => readers.filter((r) => r === t).length);
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      expect(readers).toEqual([...readers].sort((a, b) => a - b));
    }
  }
});

test("a partition's key group is within the key groups, also when there are more partitions than key groups", () => {
  for (const maxParallelism of [1, 7, 128, 32768]) {
    for (const partitions of [1, 6, 12, 200]) {
      for (let p = 0; p < partitions; p++) {
        const keyGroup = kafkaPartitionKeyGroup(p, partitions, maxParallelism);
        expect(keyGroup).toBeGreaterThanOrEqual(0);
        expect(keyGroup).toBeLessThan(maxParallelism);
      }
    }
  }
});

test("the runtime takes a partition's own key group unless the job decides", () => {
  const partition = {
    id: kafkaPartitionId("orders", 5),
    keyGroup: (maxParallelism: number) => kafkaPartitionKeyGroup(5, 6, maxParallelism),
  };
  const job = defineJob({ partitions: () => [], process: () => undefined });
  expect(partition.id).toBe("orders-5");
  // The middle of the sixth sixth of 128 key groups: 117, owned by the last task at 2, 3 or 6 tasks.
  expect(keyGroupOfPartition(job, partition, 128)).toBe(117);
  for (const parallelism of [2, 3, 6]) {
    expect(keyGroupRangeForTask(128, parallelism, parallelism - 1).start).toBeLessThanOrEqual(117);
  }
  expect(keyGroupOfPartition({ ...job, partitionKeyGroup: () => 7 }, partition, 128)).toBe(7);
});
