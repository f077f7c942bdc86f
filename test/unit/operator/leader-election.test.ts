// Leader election against an in-memory Lease store that enforces resourceVersion conflicts as the
// API server does, under fake timers: who leads, takeover after expiry, release, the renew deadline,
// and that racing or partitioned candidates never lead at the same time.
import { afterEach, beforeEach, describe, expect, it, jest } from "@jest/globals";
import type { V1Lease } from "@kubernetes/client-node";
import { pino } from "pino";
import {
  ConflictError,
  LeaderElector,
  type LeaderElectionOptions,
  type LeaseApi,
} from "../../../src/operator/controller/leader-election.js";
import { randomInt, seededRandom } from "../../support/random.js";

const NAMESPACE = "streamjob-system";
const NAME = "streamjob-operator";
const log = pino({ level: "silent" });

/** Leases as the API server keeps them: JSON on the wire, a new resourceVersion per write, 409 on a stale one. */
class FakeLeases implements LeaseApi {
  private readonly leases = new Map<string, V1Lease>();
  private version = 0;
  conflicts = 0;

  async read(namespace: string, name: string): Promise<V1Lease | null> {
    const lease = this.leases.get(`${namespace}/${name}`);
    return lease === undefined ? null : wire(lease);
  }

  async create(namespace: string, lease: V1Lease): Promise<V1Lease> {
    if (this.leases.has(`${namespace}/${lease.metadata?.name}`)) {
      this.conflicts++;
      throw new ConflictError("already exists");
    }
    return this.store(namespace, lease);
  }

  async replace(namespace: string, lease: V1Lease): Promise<V1Lease> {
    const current = this.leases.get(`${namespace}/${lease.metadata?.name}`);
    if (current === undefined) throw Object.assign(new Error("not found"), { code: 404 });
    if (current.metadata?.resourceVersion !== lease.metadata?.resourceVersion) {
      this.conflicts++;
      throw new ConflictError("the object has been modified");
    }
    return this.store(namespace, lease);
  }

  /** The stored lease, for assertions. */
  get(): V1Lease | undefined {
    return this.leases.get(`${NAMESPACE}/${NAME}`);
  }

  /** A write by someone outside the test's electors. */
  overwrite(spec: V1Lease["spec"]): void {
    const current = this.get();
    this.leases.set(`${NAMESPACE}/${NAME}`, {
      ...current,
      metadata: { name: NAME, namespace: NAMESPACE, resourceVersion: String(++this.version) },
      spec,
    });
  }

  private store(namespace: string, lease: V1Lease): V1Lease {
    const stored = wire({
      ...lease,
      metadata: { ...lease.metadata, namespace, resourceVersion: String(++this.version) },
    });
    // The API server parses MicroTime with exactly six fractional digits (a plain Date has three).
    for (const field of ["renewTime", "acquireTime"] as const) {
      const value: unknown = stored.spec?.[field];
      if (value !== undefined && !/\.\d{6}Z$/.test(String(value))) {
        throw Object.assign(new Error(`${field} ${String(value)} is not a MicroTime`), { code: 400 });
      }
    }
    this.leases.set(`${namespace}/${lease.metadata?.name}`, stored);
    return wire(stored);
  }
}

/** As the real client: MicroTime fields come back as strings. */
function wire(lease: V1Lease): V1Lease {
  return JSON.parse(JSON.stringify(lease)) as V1Lease;
}

/** A candidate's own view of the API server: reachable, unreachable, or writing but losing the replies. */
function partitionable(api: LeaseApi) {
  const link = { state: "up" as "up" | "down" | "replies-lost" };
  const call =
    <A extends unknown[]>(send: (...args: A) => Promise<V1Lease | null>) =>
    async (...args: A) => {
      if (link.state === "down") throw new Error("connect ECONNREFUSED");
      const reply = await send(...args);
      if (link.state === "replies-lost") throw new Error("socket hang up");
      return reply;
    };
  const flaky: LeaseApi = {
    read: call((namespace: string, name: string) => api.read(namespace, name)),
    create: call((namespace: string, lease: V1Lease) => api.create(namespace, lease)) as LeaseApi["create"],
    replace: call((namespace: string, lease: V1Lease) =>
      api.replace(namespace, lease),
    ) as LeaseApi["replace"],
  };
  return { api: flaky, link };
}

function elector(api: LeaseApi, identity: string, options: Partial<LeaderElectionOptions> = {}) {
  return new LeaderElector({ api, namespace: NAMESPACE, name: NAME, identity, log, ...options });
}

/** Whether a promise has settled, without waiting for it. */
function settled(promise: Promise<unknown>): { done: boolean } {
  const state = { done: false };
  promise.then(
    () => (state.done = true),
    () => (state.done = true),
  );
  return state;
}

const advance = (ms: number) => jest.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  jest.useFakeTimers({ now: Date.UTC(2025, 0, 1) });
});
afterEach(() => {
  jest.useRealTimers();
});

describe("LeaderElector", () => {
  it("lets exactly one of two candidates lead, and records it in the lease", async () => {
    const leases = new FakeLeases();
    const a = elector(leases, "operator-a");
    const b = elector(leases, "operator-b");
    const acquiredA = settled(a.acquire());
    const acquiredB = settled(b.acquire());
    const lostA = settled(a.lost);
    await advance(0);

    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    expect(acquiredA.done).toBe(true);
    expect(leases.get()?.spec).toMatchObject({
      holderIdentity: "operator-a",
      leaseDurationSeconds: 15,
      leaseTransitions: 0,
      acquireTime: "2025-01-01T00:00:00.000000Z",
      renewTime: "2025-01-01T00:00:00.000000Z",
    });

    // A minute of renewals: the leader keeps the lease, the other keeps waiting.
    await advance(60_000);
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    expect(acquiredB.done).toBe(false);
    expect(leases.get()?.spec).toMatchObject({
      holderIdentity: "operator-a",
      acquireTime: "2025-01-01T00:00:00.000000Z",
      renewTime: "2025-01-01T00:01:00.000000Z",
    });
    expect(lostA.done).toBe(false);
    await Promise.all([a.release(), b.release()]);
  });

  it("takes over a lease that has not been renewed for its duration, counting the transition", async () => {
    const leases = new FakeLeases();
    const a = partitionable(leases);
    const first = elector(a.api, "operator-a");
    await first.acquire();
    const firstLost = settled(first.lost);
    const second = elector(leases, "operator-b");
    const acquired = settled(second.acquire());
    await advance(4_000);

    // The leader stops renewing after its renew at 4 s, as if it had crashed.
    a.link.state = "down";
    await advance(14_999);
    expect(second.isLeader).toBe(false);
    expect(firstLost.done).toBe(true);

    // Expired 15 s after the candidate saw the last renew, taken on its next retry at 20 s.
    await advance(1_001);
    expect(acquired.done).toBe(true);
    expect(second.isLeader).toBe(true);
    expect(leases.get()?.spec).toMatchObject({
      holderIdentity: "operator-b",
      leaseTransitions: 1,
      acquireTime: "2025-01-01T00:00:20.000000Z",
      renewTime: "2025-01-01T00:00:20.000000Z",
    });
    await second.release();
  });

  it("judges expiry by its own clock, not the holder's renewTime", async () => {
    const leases = new FakeLeases();
    // A renewTime far in the past (a skewed holder clock) is no reason to take over a lease that changes.
    leases.overwrite({ holderIdentity: "skewed", leaseDurationSeconds: 15, renewTime: new Date(0) });
    const candidate = elector(leases, "operator-a");
    void candidate.acquire().catch(() => undefined); // rejects on release()
    await advance(14_000);
    expect(candidate.isLeader).toBe(false);

    // Renewed at 14 s, seen at the retry at 16 s: expired at 31 s, taken at the retry at 32 s.
    leases.overwrite({ holderIdentity: "skewed", leaseDurationSeconds: 15, renewTime: new Date(0) });
    await advance(16_000);
    expect(candidate.isLeader).toBe(false);
    await advance(2_000);
    expect(candidate.isLeader).toBe(true);
    await candidate.release();
  });

  it("lets the next candidate in within one retry period after release()", async () => {
    const leases = new FakeLeases();
    const a = elector(leases, "operator-a");
    const b = elector(leases, "operator-b");
    await a.acquire();
    const acquired = settled(b.acquire());
    await advance(5_000);

    const lostA = settled(a.lost);
    await a.release();
    expect(a.isLeader).toBe(false);
    expect(leases.get()?.spec?.holderIdentity).toBeUndefined();
    await advance(2_000);

    expect(acquired.done).toBe(true);
    expect(b.isLeader).toBe(true);
    expect(leases.get()?.spec).toMatchObject({ holderIdentity: "operator-b", leaseTransitions: 1 });
    // Giving leadership up is not losing it.
    expect(lostA.done).toBe(false);
    await b.release();
    expect(jest.getTimerCount()).toBe(0);
  });

  it("takes its own lease back at once after a restart, keeping acquireTime and transitions", async () => {
    const leases = new FakeLeases();
    const before = partitionable(leases);
    await elector(before.api, "operator-a").acquire();
    await advance(3_000);
    before.link.state = "down";

    const restarted = elector(leases, "operator-a");
    await restarted.acquire();
    expect(leases.get()?.spec).toMatchObject({
      holderIdentity: "operator-a",
      leaseTransitions: 0,
      acquireTime: "2025-01-01T00:00:00.000000Z",
      renewTime: "2025-01-01T00:00:03.000000Z",
    });
    await restarted.release();
  });

  it.each([
    // Renews are tried every 2 s; the last one before the 10 s deadline is 8 s after the last success.
    { outageMs: 7_999, leads: true },
    { outageMs: 8_001, leads: false },
    { outageMs: 30_000, leads: false },
  ])("after an outage of $outageMs ms still leads: $leads", async ({ outageMs, leads }) => {
    const leases = new FakeLeases();
    const { api, link } = partitionable(leases);
    const leader = elector(api, "operator-a");
    await leader.acquire();
    const lost = settled(leader.lost);
    await advance(2_000); // last successful renew at 2 s

    link.state = "down";
    await advance(outageMs - 1);
    link.state = "up";
    await advance(1);
    await advance(2_000);

    expect(leader.isLeader).toBe(leads);
    expect(lost.done).toBe(!leads);
    if (leads) await leader.release();
  });

  it("resolves lost when it cannot renew within renewDeadline", async () => {
    const leases = new FakeLeases();
    const { api, link } = partitionable(leases);
    const leader = elector(api, "operator-a");
    await leader.acquire();
    await advance(2_000);

    link.state = "replies-lost";
    const lost = settled(leader.lost);
    await advance(9_999);
    expect(lost.done).toBe(false);
    await advance(1);

    expect(await leader.lost).toBe("could not renew the lease within 10000ms");
    expect(leader.isLeader).toBe(false);
    expect(jest.getTimerCount()).toBe(0);
  });

  it("resolves lost at once when someone else holds the lease", async () => {
    const leases = new FakeLeases();
    const leader = elector(leases, "operator-a");
    await leader.acquire();
    leases.overwrite({ holderIdentity: "intruder", leaseDurationSeconds: 15 });
    await advance(2_000);

    expect(await leader.lost).toBe("the lease is held by intruder");
    expect(leader.isLeader).toBe(false);
    await expect(leader.acquire()).rejects.toThrow("leadership was lost: the lease is held by intruder");
  });

  it.each([
    { lease: "absent", existing: undefined },
    { lease: "released", existing: { leaseDurationSeconds: 1, leaseTransitions: 4 } },
    { lease: "expired", existing: { holderIdentity: "gone", leaseDurationSeconds: 1, leaseTransitions: 4 } },
  ])("lets one of five racing candidates win a lease that is $lease", async ({ existing }) => {
    const leases = new FakeLeases();
    if (existing !== undefined) leases.overwrite(existing);
    const candidates = ["a", "b", "c", "d", "e"].map((id) => elector(leases, `operator-${id}`));
    for (const candidate of candidates) void candidate.acquire().catch(() => undefined);
    if (existing?.holderIdentity !== undefined) {
      // The lease expires before the next retry; a synchronous advance wakes every candidate before
      // any of them writes, so all of them read the same resourceVersion.
      await advance(0);
      jest.advanceTimersByTime(2_000);
    }
    await advance(0);

    const leaders = candidates.filter((c) => c.isLeader);
    expect(leaders).toHaveLength(1);
    expect(leases.conflicts).toBe(4);
    await advance(30_000);
    expect(candidates.filter((c) => c.isLeader)).toEqual(leaders);
    await Promise.all(candidates.map((c) => c.release()));
  });

  it.each([1, 2, 3, 4, 5])(
    "never has two leaders while candidates crash, lose replies and restart (seed %i)",
    async (seed) => {
      const random = seededRandom(seed);
      const leases = new FakeLeases();
      const terms: Array<{ identity: string; from: number; to: number }> = [];
      const links = ["a", "b", "c"].map((id) => {
        const { api, link } = partitionable(leases);
        const identity = `operator-${id}`;
        // A replica that loses leadership exits and is restarted with the same identity.
        const run = () => {
          const candidate = elector(api, identity);
          candidate.acquire().then(
            () => {
              const term = { identity, from: Date.now(), to: Infinity };
              terms.push(term);
              void candidate.lost.then(() => {
                term.to = Date.now();
                run();
              });
            },
            () => undefined,
          );
        };
        run();
        return link;
      });

      for (let step = 0; step < 1_200; step++) {
        for (const link of links) {
          if (random() < 0.02)
            link.state = (["up", "down", "replies-lost"] as const)[randomInt(random, 0, 2)] ?? "up";
        }
        await advance(500);
      }

      expect(terms.length).toBeGreaterThan(1);
      for (const [i, term] of terms.entries()) {
        const next = terms[i + 1];
        if (next !== undefined) expect(next.from).toBeGreaterThanOrEqual(term.to);
      }
    },
  );

  it("stops trying when acquire() is aborted or the elector released", async () => {
    const leases = new FakeLeases();
    leases.overwrite({ holderIdentity: "other", leaseDurationSeconds: 15 });
    const controller = new AbortController();
    const aborted = elector(leases, "operator-a").acquire(controller.signal);
    const released = elector(leases, "operator-b");
    const pending = released.acquire();
    await advance(5_000);

    controller.abort(new Error("shutting down"));
    await expect(aborted).rejects.toThrow("shutting down");
    await released.release();
    await expect(pending).rejects.toThrow("leader election was released");
    expect(jest.getTimerCount()).toBe(0);
    expect(leases.get()?.spec?.holderIdentity).toBe("other");
  });

  it.each([
    { options: { leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }, error: "renewDeadline must be shorter" },
    { options: { renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }, error: "retryPeriod must be shorter" },
    { options: { identity: "" }, error: "non-empty identity" },
  ])("refuses timings that could make two leaders: $error", ({ options, error }) => {
    expect(() => elector(new FakeLeases(), "operator-a", options)).toThrow(error);
  });
});
