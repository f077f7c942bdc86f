// Kafka partitions are spread round-robin over the tasks, evenly at every parallelism, through the
// key group the runtime assigns a partition by.
import { keyGroupRangeForTask } from "../../../src/api/key-groups.js";
import { kafkaPartitionId, kafkaPartitionKeyGroup } from "../../../src/connectors/kafka/source.js";
import { defineJob, keyGroupOfPartition } from "../../../src/taskmanager/job/job-definition.js";

function ownerOf(keyGroup: number, maxParallelism: number, parallelism: number): number {
  return Array.from({ length: parallelism }, (_, task) =>
    keyGroupRangeForTask(maxParallelism, parallelism, task),
  ).findIndex((range) => keyGroup >= range.start && keyGroup <= range.end);
}

test("partition p is read by task p mod parallelism, for any partition count, parallelism and maxParallelism", () => {
  for (const maxParallelism of [1, 7, 12, 128, 32768]) {
    for (let partitions = 1; partitions <= 24; partitions++) {
      for (let parallelism = 1; parallelism <= Math.min(maxParallelism, 24); parallelism++) {
        for (let p = 0; p < partitions; p++) {
          const keyGroup = kafkaPartitionKeyGroup(p, maxParallelism, parallelism);
          expect(ownerOf(keyGroup, maxParallelism, parallelism)).toBe(p % parallelism);
        }
      }
    }
  }
});

test("the runtime takes a partition's own key group unless the job decides", () => {
  const partition = {
    id: kafkaPartitionId("orders", 5),
    keyGroup: (maxParallelism: number, parallelism: number) =>
      kafkaPartitionKeyGroup(5, maxParallelism, parallelism),
  };
  const job = defineJob({ partitions: () => [], process: () => undefined });
  expect(partition.id).toBe("orders-5");
  // Task 5 mod 3 = 2 of 3 owns key groups 86..127 of 128.
  expect(keyGroupOfPartition(job, partition, 128, 3)).toBe(86);
  expect(keyGroupOfPartition({ ...job, partitionKeyGroup: () => 7 }, partition, 128, 3)).toBe(7);
});
