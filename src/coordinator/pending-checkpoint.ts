// One in-flight checkpoint, as a state machine (after Flink's PendingCheckpoint):
//
//   pending ──all tasks acked──► committing ──manifest PUT succeeded──► completed
//      │                              │
//      └─decline / expiry / abort─────┴─► aborted   (from committing only once the manifest is known
//                                                    not to exist: its existence is the commit)
//
// Messages that do not belong here (another checkpoint, another epoch, an unknown task) are rejected
// without changing anything; duplicate and late messages are harmless.

import { isWithinRange, keyGroupRangeForTask, rangesOverlap, type KeyGroupRange } from "../api/key-groups.js";
import {
  manifestKey,
  taskPartsPrefix,
  type CheckpointKind,
  type CheckpointLocation,
} from "../api/object-layout.js";
import {
  MANIFEST_VERSION,
  type CheckpointAck,
  type CheckpointDecline,
  type CheckpointManifest,
  type JobRef,
  type TriggerCheckpointRequest,
  stageOfPart,
} from "../api/protocol.js";
import type { CheckpointAbortCause } from "./abort-cause.js";
import type { Clock } from "./interfaces.js";

/** Why a checkpoint was aborted: its kind (a failure or not) and a one-line reason. */
export interface CheckpointAbort {
  cause: CheckpointAbortCause;
  reason: string;
}

export type PendingCheckpointState = "pending" | "committing" | "completed" | "aborted";

export interface PendingCheckpointInit {
  checkpointId: number;
  kind: CheckpointKind;
  job: JobRef;
  epoch: number;
  parallelism: number;
  maxParallelism: number;
  storage: { bucket: string; basePrefix: string };
  /** Epoch ms after which the checkpoint expires. */
  deadline: number;
}

export type AckOutcome =
  /** Recorded; the checkpoint may now be fully acknowledged. */
  | { kind: "accepted" }
  /** This task had already acknowledged; nothing changed. */
  | { kind: "duplicate" }
  /** The checkpoint already ended (or just expired); nothing changed. */
  | { kind: "late"; reason: string }
  /** Not addressed to this checkpoint of this epoch from one of its tasks; nothing changed. */
  | { kind: "rejected"; reason: string }
  /** From an expected task but breaking the protocol; the checkpoint is aborted. */
  | { kind: "invalid"; reason: string };

export type DeclineOutcome = Extract<AckOutcome, { kind: "accepted" | "late" | "rejected" }>;

export class PendingCheckpoint {
  readonly checkpointId: number;
  readonly kind: CheckpointKind;
  readonly epoch: number;
  readonly triggeredAt: number;
  readonly deadline: number;
  private readonly location: CheckpointLocation;
  private readonly acks = new Map<number, CheckpointAck>();
  private currentState: PendingCheckpointState = "pending";
  private abortedWith: CheckpointAbort | null = null;
  private fullyAckedAt: number | null = null;

  constructor(
    private readonly init: PendingCheckpointInit,
    private readonly clock: Clock,
  ) {
    // Fails fast on an impossible parallelism instead of at the first ack.
    keyGroupRangeForTask(init.maxParallelism, init.parallelism, 0);
    this.checkpointId = init.checkpointId;
    this.kind = init.kind;
    this.epoch = init.epoch;
    this.deadline = init.deadline;
    this.triggeredAt = clock.now();
    this.location = {
      basePrefix: init.storage.basePrefix,
      namespace: init.job.namespace,
      name: init.job.name,
      kind: init.kind,
      checkpointId: init.checkpointId,
    };
  }

  get state(): PendingCheckpointState {
    return this.currentState;
  }

  /** What kind of abort it was and why, naming the task(s) responsible; null unless aborted. */
  get abortDetails(): CheckpointAbort | null {
    return this.abortedWith;
  }

  get abortReason(): string | null {
    return this.abortedWith?.reason ?? null;
  }

  get abortCause(): CheckpointAbortCause | null {
    return this.abortedWith?.cause ?? null;
  }

  get isFullyAcked(): boolean {
    return this.acks.size === this.init.parallelism;
  }

  /** Task indexes that have not acknowledged yet, ascending. */
  get missingTasks(): number[] {
    return this.taskIndexes().filter((taskIndex) => !this.acks.has(taskIndex));
  }

  get manifestKey(): string {
    return manifestKey(this.location);
  }

  /** The trigger message for one task: where it must write its parts and by when. */
  triggerRequest(taskIndex: number): TriggerCheckpointRequest {
    return {
      checkpointId: this.checkpointId,
      epoch: this.epoch,
      taskIndex,
      kind: this.init.kind,
      job: this.init.job,
      storage: { bucket: this.init.storage.bucket, keyPrefix: taskPartsPrefix(this.location, taskIndex) },
      deadline: this.deadline,
    };
  }

  acknowledge(ack: CheckpointAck): AckOutcome {
    const misaddressed = this.misaddressed(ack);
    if (misaddressed !== null) return { kind: "rejected", reason: misaddressed };
    if (this.acks.has(ack.taskIndex)) return { kind: "duplicate" };
    this.expireIfDue();
    if (this.currentState !== "pending") {
      return { kind: "late", reason: `checkpoint ${this.checkpointId} is already ${this.describeEnd()}` };
    }
    const problem = this.invalidAck(ack);
    if (problem !== null) {
      const reason = `task ${ack.taskIndex} sent an invalid ack for checkpoint ${this.checkpointId}: ${problem}`;
      this.abortWith("invalid-ack", reason);
      return { kind: "invalid", reason };
    }
    this.acks.set(ack.taskIndex, ack);
    if (this.isFullyAcked) {
      this.currentState = "committing";
      this.fullyAckedAt = this.clock.now();
    }
    return { kind: "accepted" };
  }

  decline(decline: CheckpointDecline): DeclineOutcome {
    const misaddressed = this.misaddressed(decline);
    if (misaddressed !== null) return { kind: "rejected", reason: misaddressed };
    this.expireIfDue();
    if (this.currentState !== "pending") {
      return { kind: "late", reason: `checkpoint ${this.checkpointId} is already ${this.describeEnd()}` };
    }
    this.abortWith(
      "declined",
      `task ${decline.taskIndex} declined checkpoint ${this.checkpointId}: ${decline.reason}`,
    );
    return { kind: "accepted" };
  }

  /** Aborts the checkpoint if the deadline has passed while tasks were still missing. */
  expireIfDue(): boolean {
    if (this.currentState !== "pending" || this.clock.now() < this.deadline) return false;
    this.abortWith(
      "expired",
      `checkpoint ${this.checkpointId} expired at its deadline (${new Date(this.deadline).toISOString()}): ` +
        `task(s) ${this.missingTasks.join(", ")} did not acknowledge in time`,
    );
    return true;
  }

  /**
   * Coordinator-side abort (a task unreachable, the coordinator stopping, the manifest PUT known to
   * have failed). Returns false when the checkpoint already completed or aborted: the first cause stays.
   */
  abort(cause: CheckpointAbortCause, reason: string): boolean {
    if (this.currentState === "completed" || this.currentState === "aborted") return false;
    this.abortWith(cause, reason);
    return true;
  }

  /** The manifest to PUT; only once every task acknowledged. */
  manifest(): CheckpointManifest {
    if (this.fullyAckedAt === null || this.currentState === "aborted") {
      throw new Error(`checkpoint ${this.checkpointId} is ${this.currentState}, not fully acknowledged`);
    }
    const acks = this.taskIndexes().map((taskIndex) => this.ackOf(taskIndex));
    return {
      manifestVersion: MANIFEST_VERSION,
      checkpointId: this.checkpointId,
      kind: this.init.kind,
      job: this.init.job,
      epoch: this.epoch,
      parallelism: this.init.parallelism,
      maxParallelism: this.init.maxParallelism,
      triggeredAt: this.triggeredAt,
      completedAt: this.fullyAckedAt,
      tasks: acks.map((ack) => ({
        taskIndex: ack.taskIndex,
        keyGroupRange: this.ownedRange(ack.taskIndex),
        syncDurationMs: ack.syncDurationMs,
        asyncDurationMs: ack.asyncDurationMs,
      })),
      parts: acks.flatMap((ack) =>
        [...ack.parts]
          .sort((a, b) => a.keyGroupRange.start - b.keyGroupRange.start)
          .map((part) => ({ ...part, taskIndex: ack.taskIndex })),
      ),
      sourceOffsets: Object.fromEntries(acks.flatMap((ack) => Object.entries(ack.sourceOffsets))),
    };
  }

  /** Every task's reported lag per source partition at the cut; undefined when no task reported one. */
  sourceLag(): Record<string, number> | undefined {
    const reported = [...this.acks.values()].flatMap((ack) => Object.entries(ack.sourceLag ?? {}));
    return reported.length === 0 ? undefined : Object.fromEntries(reported);
  }

  /** The longest alignment any task reported; undefined when none did (not a dataflow). */
  alignmentDurationMs(): number | undefined {
    const reported = [...this.acks.values()].flatMap((ack) => ack.alignmentDurationMs ?? []);
    return reported.length === 0 ? undefined : Math.max(...reported);
  }

  /** Per stage, the highest backpressure any task reported; undefined when none did. */
  backpressure(): Record<string, number> | undefined {
    const byTask = this.backpressureByTask();
    if (byTask === undefined) return undefined;
    const highest: Record<string, number> = {};
    for (const [stage, ratio] of Object.values(byTask).flatMap((stages) => Object.entries(stages)))
      highest[stage] = Math.max(highest[stage] ?? 0, ratio);
    return highest;
  }

  /** Each task's reported backpressure per stage, by task index; undefined when no task reported one. */
  backpressureByTask(): Record<number, Record<string, number>> | undefined {
    const reported = [...this.acks.values()].flatMap((ack) =>
      ack.backpressure ? [[ack.taskIndex, ack.backpressure] as const] : [],
    );
    return reported.length === 0 ? undefined : Object.fromEntries(reported);
  }

  /** Records that the manifest PUT succeeded: the checkpoint is durable. */
  markCompleted(): void {
    if (this.currentState !== "committing") {
      throw new Error(`checkpoint ${this.checkpointId} is ${this.currentState}, cannot complete`);
    }
    this.currentState = "completed";
  }

  private taskIndexes(): number[] {
    return Array.from({ length: this.init.parallelism }, (_, taskIndex) => taskIndex);
  }

  private ownedRange(taskIndex: number): KeyGroupRange {
    return keyGroupRangeForTask(this.init.maxParallelism, this.init.parallelism, taskIndex);
  }

  private ackOf(taskIndex: number): CheckpointAck {
    const ack = this.acks.get(taskIndex);
    if (ack === undefined) throw new Error(`task ${taskIndex} has not acknowledged`);
    return ack;
  }

  private misaddressed(message: { checkpointId: number; epoch: number; taskIndex: number }): string | null {
    if (message.checkpointId !== this.checkpointId) {
      return `message for checkpoint ${message.checkpointId} delivered to checkpoint ${this.checkpointId}`;
    }
    if (message.epoch !== this.epoch) {
      const age = message.epoch < this.epoch ? "stale" : "unexpected";
      return `${age} epoch ${message.epoch} from task ${message.taskIndex}: checkpoint ${this.checkpointId} belongs to epoch ${this.epoch}`;
    }
    if (message.taskIndex < 0 || message.taskIndex >= this.init.parallelism) {
      return `unknown task ${message.taskIndex}: checkpoint ${this.checkpointId} expects tasks 0..${this.init.parallelism - 1}`;
    }
    return null;
  }

  private invalidAck(ack: CheckpointAck): string | null {
    const prefix = taskPartsPrefix(this.location, ack.taskIndex);
    const owned = this.ownedRange(ack.taskIndex);
    const keys = new Set<string>();
    for (const [i, part] of ack.parts.entries()) {
      if (!part.key.startsWith(prefix)) return `part ${part.key} is outside ${prefix}`;
      if (keys.has(part.key)) return `part ${part.key} is listed twice`;
      keys.add(part.key);
      if (!isWithinRange(part.keyGroupRange, owned)) {
        return `part ${part.key} holds key groups ${part.keyGroupRange.start}-${part.keyGroupRange.end}, outside the task's ${owned.start}-${owned.end}`;
      }
      const overlapping = ack.parts
        .slice(0, i)
        .find(
          (other) =>
            stageOfPart(other) === stageOfPart(part) &&
            rangesOverlap(other.keyGroupRange, part.keyGroupRange),
        );
      if (overlapping !== undefined)
        return `parts ${overlapping.key} and ${part.key} hold the same key groups`;
    }
    for (const partition of Object.keys(ack.sourceOffsets)) {
      for (const other of this.acks.values()) {
        if (Object.hasOwn(other.sourceOffsets, partition)) {
          return `source partition ${partition} is also reported by task ${other.taskIndex}`;
        }
      }
    }
    return null;
  }

  private abortWith(cause: CheckpointAbortCause, reason: string): void {
    this.currentState = "aborted";
    this.abortedWith = { cause, reason };
  }

  private describeEnd(): string {
    return this.currentState === "aborted"
      ? `aborted (${this.abortedWith?.reason ?? ""})`
      : this.currentState;
  }
}
