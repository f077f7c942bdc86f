// client-go's leaderelection with a coordination.k8s.io/v1 Lease, by hand. Only the leader runs
// reconcilers and checkpoint coordinators; every other replica waits in acquire().
//
// - Every write carries the resourceVersion that was read, so of two candidates racing for the same
//   lease exactly one write succeeds (the other gets 409 and looks again after retryPeriod).
// - As in client-go, expiry is judged by this process's own clock: a lease is expired when its
//   resourceVersion has not changed for leaseDurationSeconds since this candidate first saw it. The
//   holder's renewTime is informational, so clock skew between replicas cannot make two leaders.
// - The leader gives up after renewDeadline without a successful renew (less than leaseDuration, so
//   it stops before anyone else may take over) and `lost` resolves; the process should then exit.
// - MicroTime fields are written as V1MicroTime: the API server parses them with exactly six
//   fractional digits, and a plain Date serialises with three. Reads return them as strings.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import type { Logger } from "pino";

/** A write lost an optimistic-concurrency race (HTTP 409): someone else wrote the lease first. */
export class ConflictError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConflictError";
  }
}

/** The Lease calls the elector makes; `leaseApi(kc)` is the real one, unit tests use a fake. */
export interface LeaseApi {
  /** null when the lease does not exist. */
  read(namespace: string, name: string): Promise<V1Lease | null>;
  /** Throws ConflictError when the lease already exists. */
  create(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** Needs metadata.resourceVersion; throws ConflictError when the lease changed since. */
  replace(namespace: string, lease: V1Lease): Promise<V1Lease>;
}

const statusCode = (err: unknown) => (err as { code?: number }).code;

export function leaseApi(kc: KubeConfig): LeaseApi {
  const api = kc.makeApiClient(CoordinationV1Api);
  const conflictAs = (what: string) => (err: unknown) => {
    throw statusCode(err) === 409 ? new ConflictError(`${what}: conflict`, { cause: err }) : err;
  };
  return {
    read: (namespace, name) =>
      api.readNamespacedLease({ namespace, name }).catch((err: unknown) => {
        if (statusCode(err) === 404) return null;
        throw err;
      }),
    create: (namespace, lease) =>
      api
        .createNamespacedLease({ namespace, body: lease })
        .catch(conflictAs(`creating lease ${namespace}/${lease.metadata?.name}`)),
    replace: (namespace, lease) => {
      const name = lease.metadata?.name ?? "";
      return api
        .replaceNamespacedLease({ namespace, name, body: lease })
        .catch(conflictAs(`replacing lease ${namespace}/${name}`));
    },
  };
}

export interface LeaderElectionOptions {
  api: LeaseApi;
  namespace: string;
  name: string;
  /** Unique per replica, e.g. the pod name. */
  identity: string;
  /** How long others wait after the last renew before taking over. Default 15 s. */
  leaseDurationMs?: number;
  /** How long the leader keeps failing to renew before it gives up. Default 10 s. */
  renewDeadlineMs?: number;
  /** Between two attempts to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  log: Logger;
  now?: () => number;
}

type Attempt = { leading: true } | { leading: false; holder?: string };

export class LeaderElector {
  /** Resolves with the reason when leadership is lost; not when it is given up by release(). */
  readonly lost: Promise<string>;

  private readonly api: LeaseApi;
  private readonly namespace: string;
  private readonly name: string;
  private readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly now: () => number;

  private resolveLost!: (reason: string) => void;
  private leading = false;
  private lostReason: string | undefined;
  private readonly released = new AbortController();
  /** The lease as last read or written, and when (by our clock) its resourceVersion last changed. */
  private observed: V1Lease | null = null;
  private observedAt = 0;
  private attempt: Promise<Attempt> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(options: LeaderElectionOptions) {
    this.api = options.api;
    this.namespace = options.namespace;
    this.name = options.name;
    this.identity = options.identity;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.log = options.log.child({ lease: `${this.namespace}/${this.name}`, identity: this.identity });
    this.now = options.now ?? (() => Date.now());
    if (this.identity === "") throw new Error("leader election needs a non-empty identity");
    if (!(this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new Error("renewDeadline must be shorter than leaseDuration, or two replicas could both lead");
    }
    if (!(this.retryPeriodMs < this.renewDeadlineMs)) {
      throw new Error("retryPeriod must be shorter than renewDeadline, or the leader could never renew");
    }
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Resolves once this identity holds the lease, and keeps renewing it every retryPeriod. An elector
   * leads at most once: after `lost`, the process exits (or makes a new elector).
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    if (this.lostReason !== undefined) throw new Error(`leadership was lost: ${this.lostReason}`);
    const stop = signal ? AbortSignal.any([signal, this.released.signal]) : this.released.signal;
    for (;;) {
      stop.throwIfAborted();
      let attempt: Attempt | undefined;
      try {
        attempt = await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn({ err }, "could not read or write the lease; retrying");
      }
      if (attempt?.leading) {
        if (stop.aborted) {
          // Acquired while the caller gave up: hand the lease back instead of blocking others.
          if (!this.released.signal.aborted) await this.release();
          stop.throwIfAborted();
        }
        break;
      }
      await sleep(this.retryPeriodMs, stop);
    }
    this.leading = true;
    this.log.info("acquired leadership");
    this.armRenewDeadline();
    this.scheduleRenew();
  }

  /**
   * Stops renewing (or trying to acquire) and clears the holder, so a successor need not wait for
   * the lease to expire. A pending acquire() rejects.
   */
  async release(): Promise<void> {
    this.released.abort(new Error("leader election was released"));
    this.stopRenewing();
    const wasLeading = this.leading;
    this.leading = false;
    // A write in flight would otherwise land after the release and hold the lease again.
    await this.attempt?.catch(() => undefined);
    const lease = await this.api.read(this.namespace, this.name);
    if (lease?.spec?.holderIdentity !== this.identity) return;
    const now = new V1MicroTime(this.now());
    try {
      await this.api.replace(this.namespace, {
        ...lease,
        spec: {
          leaseTransitions: lease.spec.leaseTransitions,
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
        },
      });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      this.log.info("the lease changed while releasing it; it expires on its own");
      return;
    }
    this.log.info({ wasLeading }, "released the lease");
  }

  private scheduleRenew(): void {
    this.renewTimer = setTimeout(() => void this.renew(), this.retryPeriodMs);
  }

  private async renew(): Promise<void> {
    try {
      const attempt = await this.tryAcquireOrRenew();
      if (!this.leading) return;
      if (attempt.leading) this.armRenewDeadline();
      else if (attempt.holder !== undefined) return this.lose(`the lease is held by ${attempt.holder}`);
    } catch (err) {
      if (!this.leading) return;
      this.log.warn({ err }, "could not renew the lease; retrying until the renew deadline");
    }
    this.scheduleRenew();
  }

  /** Starts (again) the time the leader has to renew before it must stop leading. */
  private armRenewDeadline(): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(
      () => this.lose(`could not renew the lease within ${this.renewDeadlineMs}ms`),
      this.renewDeadlineMs,
    );
  }

  private lose(reason: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.lostReason = reason;
    this.stopRenewing();
    this.log.info({ reason }, "lost leadership");
    this.resolveLost(reason);
  }

  private stopRenewing(): void {
    clearTimeout(this.renewTimer);
    clearTimeout(this.deadlineTimer);
  }

  private tryAcquireOrRenew(): Promise<Attempt> {
    const attempt = this.readAndWrite();
    this.attempt = attempt;
    return attempt;
  }

  /**
   * One round of client-go's tryAcquireOrRenew: take the lease when it is absent, released, ours or
   * expired; report its holder when someone else holds it; conflicts mean someone wrote first.
   */
  private async readAndWrite(): Promise<Attempt> {
    const lease = await this.api.read(this.namespace, this.name);
    const now = this.now();
    if (lease === null) {
      return this.write(() =>
        this.api.create(this.namespace, {
          metadata: { name: this.name, namespace: this.namespace },
          spec: this.spec(now, { acquireTime: new V1MicroTime(now), leaseTransitions: 0 }),
        }),
      );
    }
    this.observe(lease, now);
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    if (holder !== "" && holder !== this.identity && now < this.observedAt + durationMs) {
      return { leading: false, holder };
    }
    const ours = holder === this.identity;
    return this.write(() =>
      this.api.replace(this.namespace, {
        ...lease,
        spec: this.spec(now, {
          acquireTime: ours ? spec.acquireTime : new V1MicroTime(now),
          leaseTransitions: ours ? spec.leaseTransitions : (spec.leaseTransitions ?? 0) + 1,
        }),
      }),
    );
  }

  private spec(now: number, taken: Pick<NonNullable<V1Lease["spec"]>, "acquireTime" | "leaseTransitions">) {
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      renewTime: new V1MicroTime(now),
      ...taken,
    };
  }

  private async write(send: () => Promise<V1Lease>): Promise<Attempt> {
    try {
      this.observe(await send(), this.now());
      return { leading: true };
    } catch (err) {
      if (err instanceof ConflictError) return { leading: false };
      throw err;
    }
  }

  private observe(lease: V1Lease, now: number): void {
    const before = this.observed;
    if (before?.metadata?.resourceVersion !== lease.metadata?.resourceVersion) this.observedAt = now;
    if (before?.spec?.holderIdentity !== lease.spec?.holderIdentity && lease.spec?.holderIdentity) {
      this.log.debug({ holder: lease.spec.holderIdentity }, "the lease has a new holder");
    }
    this.observed = lease;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
