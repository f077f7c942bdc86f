// Leader election on a real coordination.k8s.io/v1 Lease in the test cluster's API server, with
// short timings (lease 3 s, renew deadline 2 s, retry 500 ms): one leader, a fast handover on
// release, a takeover after expiry when the leader vanishes, and how MicroTime survives the trip.
import { CoordinationV1Api, V1MicroTime, type V1Lease } from "@kubernetes/client-node";
import { pino } from "pino";
import { LeaderElector, leaseApi, type LeaseApi } from "../../src/operator/controller/leader-election.js";
import { clients, createNamespace } from "./support/cluster.js";

const { kc, core } = clients();
const coordination = kc.makeApiClient(CoordinationV1Api);
const log = pino({ level: "silent" });
const timings = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };

let ns: string;
const electors: LeaderElector[] = [];

beforeAll(async () => {
  ns = await createNamespace(core, "leader-election");
});

afterEach(async () => {
  await Promise.allSettled(electors.splice(0).map((elector) => elector.release()));
});

afterAll(async () => {
  if (ns !== undefined) await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

function candidate(lease: string, identity: string, api: LeaseApi = leaseApi(kc)): LeaderElector {
  const elector = new LeaderElector({ api, namespace: ns, name: lease, identity, log, ...timings });
  electors.push(elector);
  return elector;
}

/** The Lease calls of a process that can be made to vanish: no more requests, and no release. */
function killable(api: LeaseApi) {
  let dead = false;
  const alive = <T>(call: () => Promise<T>) => (dead ? Promise.reject(new Error("process killed")) : call());
  return {
    api: {
      read: (namespace, name) => alive(() => api.read(namespace, name)),
      create: (namespace, lease) => alive(() => api.create(namespace, lease)),
      replace: (namespace, lease) => alive(() => api.replace(namespace, lease)),
    } satisfies LeaseApi,
    kill: () => (dead = true),
  };
}

const readLease = (name: string): Promise<V1Lease> =>
  coordination.readNamespacedLease({ namespace: ns, name });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** MicroTime fields come back from client-node as the API server's strings. */
const millis = (time: unknown) => new Date(String(time)).getTime();

/** Starts both candidates; resolves once one of them leads, with the other's pending acquire(). */
async function race(a: LeaderElector, b: LeaderElector) {
  const acquiredA = a.acquire().then(() => a);
  const acquiredB = b.acquire().then(() => b);
  // The loser's acquire() rejects when afterEach releases it.
  for (const acquired of [acquiredA, acquiredB]) acquired.catch(() => undefined);
  const leader = await Promise.race([acquiredA, acquiredB]);
  return leader === a
    ? { leader: a, waiting: b, waitingAcquired: acquiredB }
    : { leader: b, waiting: a, waitingAcquired: acquiredA };
}

describe("leader election on a real Lease", () => {
  it("lets exactly one of two candidates lead, and the Lease names it", async () => {
    const a = candidate("one-leader", "operator-a");
    const b = candidate("one-leader", "operator-b");
    const { leader, waiting } = await race(a, b);
    // Several renew periods: the leader keeps the lease, the other keeps waiting.
    await sleep(2_500);

    expect([leader.isLeader, waiting.isLeader]).toEqual([true, false]);
    const lease = await readLease("one-leader");
    expect(lease.spec).toMatchObject({
      holderIdentity: leader === a ? "operator-a" : "operator-b",
      leaseDurationSeconds: 3,
      leaseTransitions: 0,
    });
    const renewed = millis(lease.spec?.renewTime);
    expect(renewed).toBeGreaterThan(millis(lease.spec?.acquireTime));
    expect(Math.abs(Date.now() - renewed)).toBeLessThan(1_500);
  });

  it("hands over within a retry period when the leader releases the lease", async () => {
    const a = candidate("handover", "operator-a");
    const b = candidate("handover", "operator-b");
    const { leader, waiting, waitingAcquired } = await race(a, b);
    await sleep(1_000);

    const releasedAt = Date.now();
    await leader.release();
    await waitingAcquired;

    expect(Date.now() - releasedAt).toBeLessThan(1_500);
    expect([leader.isLeader, waiting.isLeader]).toEqual([false, true]);
    const lease = await readLease("handover");
    expect(lease.spec).toMatchObject({
      holderIdentity: leader === a ? "operator-b" : "operator-a",
      leaseTransitions: 1,
    });
    expect(millis(lease.spec?.acquireTime)).toBeGreaterThanOrEqual(releasedAt - 1_000);
  });

  it("takes over after the lease expires when the leader stops renewing without a release", async () => {
    const a = killable(leaseApi(kc));
    const b = killable(leaseApi(kc));
    const electorA = candidate("takeover", "operator-a", a.api);
    const electorB = candidate("takeover", "operator-b", b.api);
    const { leader, waitingAcquired } = await race(electorA, electorB);
    await sleep(1_000);

    const killedAt = Date.now();
    (leader === electorA ? a : b).kill();
    const lostAt = leader.lost.then(() => Date.now());
    const newLeader = await waitingAcquired;
    const tookOverAt = Date.now();

    // The other waits a lease duration from the last renew it saw (at most one retry before the kill).
    expect(tookOverAt - killedAt).toBeGreaterThanOrEqual(timings.leaseDurationMs - timings.retryPeriodMs);
    expect(tookOverAt - killedAt).toBeLessThan(timings.leaseDurationMs + 3_000);
    // The killed leader gave up (renew deadline) before the lease could change hands.
    expect(await lostAt).toBeLessThan(tookOverAt);
    expect(leader.isLeader).toBe(false);
    expect(newLeader.isLeader).toBe(true);
    expect((await readLease("takeover")).spec).toMatchObject({
      holderIdentity: newLeader === electorA ? "operator-a" : "operator-b",
      leaseTransitions: 1,
    });
  });

  it("needs MicroTime written with six fractional digits, which a plain Date does not give", async () => {
    const at = new Date("2025-06-01T12:00:00.123Z");
    await expect(
      coordination.createNamespacedLease({
        namespace: ns,
        body: { metadata: { name: "plain-date" }, spec: { holderIdentity: "x", renewTime: at } },
      }),
    ).rejects.toMatchObject({ code: 400 });

    await coordination.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: "micro-time" },
        spec: { holderIdentity: "x", renewTime: new V1MicroTime(at) },
      },
    });
    const stored = (await readLease("micro-time")).spec?.renewTime;
    expect(String(stored)).toBe("2025-06-01T12:00:00.123000Z");
    expect(millis(stored)).toBe(at.getTime());
  });
});
