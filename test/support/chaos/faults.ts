// What `npm run chaos` does to the local cluster, planned up front from a seed so that a run can
// be repeated: which process or pod is hit, how, and for how long a paused process stays stopped.
import { randomInt } from "../random.js";

export type FaultTarget = "taskmanager" | "operator" | "minio" | "kube-apiserver";
/** SIGKILL; delete the pod through the API; SIGSTOP, then SIGCONT after `pauseMs`. */
export type FaultAction = "sigkill" | "delete-pod" | "pause";

export interface Hit {
  target: FaultTarget;
  action: FaultAction;
  /** How long a paused process stays stopped (only for "pause"). */
  pauseMs?: number;
}

/** One fault: a single hit, or two at once. */
export type Fault = Hit[];

const HITS: readonly Omit<Hit, "pauseMs">[] = [
  { target: "taskmanager", action: "sigkill" },
  { target: "operator", action: "delete-pod" },
  { target: "minio", action: "pause" },
  { target: "taskmanager", action: "pause" },
  { target: "kube-apiserver", action: "pause" },
  { target: "taskmanager", action: "delete-pod" },
  { target: "operator", action: "sigkill" },
];

export interface FaultPlanOptions {
  minPauseMs: number;
  maxPauseMs: number;
}

export const DEFAULT_PAUSES: FaultPlanOptions = { minPauseMs: 2_000, maxPauseMs: 6_000 };

/**
 * `count` faults in rounds of eight: every kind of hit once and one pair of hits on two different
 * targets at once. The first round keeps the order above with the pair sixth, so a short run
 * covers most kinds; later rounds are shuffled.
 */
export function planFaults(
  count: number,
  random: () => number,
  options: FaultPlanOptions = DEFAULT_PAUSES,
): Fault[] {
  const hit = (kind: Omit<Hit, "pauseMs">): Hit =>
    kind.action === "pause"
      ? { ...kind, pauseMs: randomInt(random, options.minPauseMs, options.maxPauseMs) }
      : { ...kind };
  const pair = (): Fault => {
    const first = HITS[randomInt(random, 0, HITS.length - 1)]!;
    const others = HITS.filter((kind) => kind.target !== first.target);
    return [hit(first), hit(others[randomInt(random, 0, others.length - 1)]!)];
  };
  const faults: Fault[] = [];
  for (let round = 0; faults.length < count; round++) {
    const kinds: (Omit<Hit, "pauseMs"> | "pair")[] = [...HITS];
    kinds.splice(5, 0, "pair");
    if (round > 0) shuffle(kinds, random);
    for (const kind of kinds) {
      if (faults.length === count) break;
      faults.push(kind === "pair" ? pair() : [hit(kind)]);
    }
  }
  return faults;
}

function shuffle<T>(items: T[], random: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(random, 0, i);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}

/** e.g. "SIGSTOP minio for 3.2 s + SIGKILL taskmanager". */
export function describeFault(fault: Fault): string {
  return fault
    .map((hit) =>
      hit.action === "pause"
        ? `SIGSTOP ${hit.target} for ${((hit.pauseMs ?? 0) / 1000).toFixed(1)} s`
        : hit.action === "sigkill"
          ? `SIGKILL ${hit.target}`
          : `delete ${hit.target} pod`,
    )
    .join(" + ");
}
