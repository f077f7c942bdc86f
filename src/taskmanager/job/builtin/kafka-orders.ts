// The two jobs of manifests/examples/kafka-orders.yaml, chained through a topic, exactly once end to
// end (docs/kafka.md, "A two-job pipeline"):
//
// - `orders-by-customer` reads orders keyed by region (a region's orders in one partition) and
//   writes each one, unchanged, keyed by its customer: the re-keying step, stateless.
// - `customer-totals` reads that topic, where all of a customer's orders are in one partition, and
//   keeps each customer's running total in partition-scoped state, without any exchange. It writes
//   `{"customer","region","seq","total"}` keyed by the customer.
//
// An order is JSON `{"orderId","region","customer","amount","seq"}`, `amount` in cents and `seq`
// counting the customer's orders in that region from 1. Orders of one customer from different
// regions reach `customer-totals` in no fixed order, so it checks `seq` per (customer, region) and
// fails the task on a gap or a duplicate: a repeated or lost order anywhere in the chain fails it.
import { z } from "zod";
import type { KafkaSourceRecord } from "../../../connectors/kafka/source.js";
import { defineJob, type JsonValue, type RecordContext } from "../job-definition.js";
import { kafkaJobIo } from "./kafka-job.js";

export const Order = z.object({
  orderId: z.string().min(1),
  region: z.string().min(1),
  customer: z.string().min(1),
  amount: z.int().min(0),
  seq: z.int().min(1),
});
export type Order = z.infer<typeof Order>;

export const CustomerTotal = z.object({
  customer: z.string(),
  region: z.string(),
  seq: z.int(),
  total: z.int(),
});
export type CustomerTotal = z.infer<typeof CustomerTotal>;

function parseOrder(job: string, record: KafkaSourceRecord, context: RecordContext): Order {
  const text = record.value?.toString("utf8") ?? "";
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const order = Order.safeParse(json);
  if (!order.success) {
    throw new Error(
      `${job}: ${context.partitionId} offset ${context.offset}: ${JSON.stringify(text.slice(0, 200))} is not an order {"orderId","region","customer","amount","seq"}`,
    );
  }
  return order.data;
}

export const ordersByCustomerJob = defineJob<KafkaSourceRecord>({
  ...kafkaJobIo("orders-by-customer"),
  process(record, context) {
    const order = parseOrder("orders-by-customer", record, context);
    context.emit(JSON.stringify(order), order.customer);
  },
});

/** A customer's partition-scoped state: the running total and the last seq per region. */
interface CustomerState {
  total: number;
  seqs: Record<string, number>;
}

export const customerTotalsJob = defineJob<KafkaSourceRecord>({
  ...kafkaJobIo("customer-totals"),
  process(record, context) {
    const order = parseOrder("customer-totals", record, context);
    const state = (context.partitionState.get(order.customer) as CustomerState | undefined) ?? {
      total: 0,
      seqs: {},
    };
    const previous = state.seqs[order.region] ?? 0;
    if (order.seq !== previous + 1) {
      throw new Error(
        `customer-totals: ${order.customer} in ${order.region} got order seq ${order.seq} after ${previous} at ${context.partitionId} offset ${context.offset}: exactly-once violated`,
      );
    }
    const next: CustomerState = {
      total: state.total + order.amount,
      seqs: { ...state.seqs, [order.region]: order.seq },
    };
    context.partitionState.put(order.customer, next as unknown as JsonValue);
    const total: CustomerTotal = {
      customer: order.customer,
      region: order.region,
      seq: order.seq,
      total: next.total,
    };
    context.emit(JSON.stringify(total), order.customer);
  },
});

export interface OrderTotalsReport {
  orders: number;
  customers: number;
  /** Empty when every order went through both jobs exactly once and every total is right. */
  problems: string[];
}

/**
 * Checks `customer-totals` output against the orders: per (customer, region) every seq once, in
 * order, and each customer's last total the sum of its orders. Both lists are in offset order per
 * partition; all of a customer's totals are in one partition (keyed by the customer).
 */
export function verifyOrderTotals(
  orders: readonly { value: string }[],
  totals: readonly { value: string; where: string }[],
): OrderTotalsReport {
  const problems: string[] = [];
  const expectedTotal = new Map<string, number>();
  const expectedSeq = new Map<string, number>();
  for (const { value } of orders) {
    const order = Order.parse(JSON.parse(value));
    expectedTotal.set(order.customer, (expectedTotal.get(order.customer) ?? 0) + order.amount);
    const key = `${order.customer} in ${order.region}`;
    expectedSeq.set(key, Math.max(expectedSeq.get(key) ?? 0, order.seq));
  }
  const seen = new Map<string, number>();
  const lastTotal = new Map<string, number>();
  for (const { value, where } of totals) {
    const parsed = CustomerTotal.safeParse(JSON.parse(value));
    if (!parsed.success) {
      problems.push(`${where}: ${value} is not a customer total`);
      continue;
    }
    const { customer, region, seq, total } = parsed.data;
    const key = `${customer} in ${region}`;
    const expected = (seen.get(key) ?? 0) + 1;
    if (seq !== expected) {
      problems.push(
        `${where}: ${seq < expected ? "duplicate" : "gap"} for ${key}: seq ${seq} where ${expected} was expected`,
      );
    }
    seen.set(key, Math.max(seq, seen.get(key) ?? 0));
    lastTotal.set(customer, total);
  }
  for (const [key, last] of expectedSeq) {
    if ((seen.get(key) ?? 0) !== last)
      problems.push(`${key}: ${seen.get(key) ?? 0} of ${last} orders in the totals`);
  }
  for (const [customer, total] of expectedTotal) {
    if (lastTotal.get(customer) !== total) {
      problems.push(`${customer}: last total ${lastTotal.get(customer)}, the orders sum to ${total}`);
    }
  }
  return { orders: orders.length, customers: expectedTotal.size, problems };
}
