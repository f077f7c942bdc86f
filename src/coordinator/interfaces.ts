// The side effects the checkpoint coordinator depends on. The pure parts of this folder take plain
// values; the coordinator loop gets these injected from the composition root, so tests can drive it
// with fakes and integration tests with real TaskManagers and a real MinIO.

import type { CheckpointKind } from "../api/object-layout.js";
import type {
  AbortCheckpointRequest,
  CheckpointManifest,
  CheckpointResult,
  JobRef,
  NotifyCompleteRequest,
  PeersRequest,
  TaskManagerStatus,
  TriggerCheckpointRequest,
} from "../api/protocol.js";

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** Timers the coordinator waits with, injected beside its clock so tests can move both at once. */
export interface Timers {
  /** Runs `callback` once after `delayMs`; the returned function cancels it. */
  setTimeout(callback: () => void, delayMs: number): () => void;
}

export const systemTimers: Timers = {
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    return () => clearTimeout(timer);
  },
};

/**
 * A call to a TaskManager that did not get its success answer. `status` is the HTTP status of the
 * answer (a 200 with a body that breaks the protocol included); undefined when no answer came
 * (connection refused or reset, timeout, cancelled).
 */
export class TaskManagerCallError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * HTTP client for one TaskManager (one task index) of the current epoch. Every method rejects when
 * the call did not get its success status (202 for trigger, 204 for complete, abort and peers, 200
 * otherwise), with a TaskManagerCallError naming the HTTP status and the TaskManager's `error` text,
 * or the network failure. `signal` cancels the call at once (the coordinator stopping).
 */
export interface TaskManagerClient {
  readonly taskIndex: number;
  /** POST /v1/checkpoints/trigger; resolves once the task accepted (202). */
  trigger(request: TriggerCheckpointRequest, signal?: AbortSignal): Promise<void>;
  /**
   * GET /v1/checkpoints/{id}?epoch=…&waitMs=…: the task's answer, held back by the TaskManager for up
   * to `waitMs` while the checkpoint is still in progress (long poll).
   */
  result(
    checkpointId: number,
    epoch: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<CheckpointResult>;
  /** POST /v1/checkpoints/{id}/complete */
  notifyComplete(request: NotifyCompleteRequest, signal?: AbortSignal): Promise<void>;
  /** POST /v1/checkpoints/{id}/abort */
  abort(request: AbortCheckpointRequest, signal?: AbortSignal): Promise<void>;
  /** GET /v1/status */
  status(signal?: AbortSignal): Promise<TaskManagerStatus>;
  /** PUT /v1/peers: the epoch's TaskManagers, which a dataflow's tasks wait for before they are ready. */
  setPeers(request: PeersRequest, signal?: AbortSignal): Promise<void>;
}

/** One checkpoint or savepoint directory found in storage, whether or not it has a manifest. */
export interface StoredCheckpoint {
  checkpointId: number;
  kind: CheckpointKind;
  /** Key prefix of the directory, ending in "/". */
  directory: string;
  /** Every object key under `directory`, the manifest included when present. */
  objectKeys: string[];
}

/** A manifest object exists but is not a valid manifest for where it sits (getManifest rejects with it). */
export class CorruptManifestError extends Error {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`manifest ${key} is corrupt: ${reason}`);
  }
}

/** What `_triggered` holds: for people reading the bucket; only its existence is relied on. */
export interface TriggerRecord {
  job: JobRef;
  kind: CheckpointKind;
  checkpointId: number;
  epoch: number;
  triggeredAt: number;
}

/** Checkpoint objects in one bucket under one base prefix (see src/api/object-layout.ts). */
export interface SnapshotStore {
  /**
   * Writes `_triggered` into the checkpoint's directory: the id is taken, whatever happens next. Resolves
   * once it is stored; the coordinator triggers no task before.
   */
  recordTrigger(record: TriggerRecord): Promise<void>;
  /** Writes `_metadata` in one PUT (the commit point) and resolves with its key. */
  putManifest(manifest: CheckpointManifest): Promise<string>;
  /** The parsed manifest, or null when no object exists at `key`; rejects when it does not parse. */
  getManifest(key: string): Promise<CheckpointManifest | null>;
  /** Every checkpoint and savepoint directory of the job, in any order. */
  listCheckpoints(job: JobRef): Promise<StoredCheckpoint[]>;
  /**
   * Deletes the keys; a key already gone is not an error. A manifest key is deleted in a call of
   * its own, after every key listed before it and before any listed after it.
   */
  deleteObjects(keys: readonly string[]): Promise<void>;
  /** Size of the object at `key`, or null when it does not exist. */
  statObject(key: string): Promise<{ sizeBytes: number } | null>;
}
