// Where a process's main thread spent its time, from the V8 CPU profiles `--cpu-prof` leaves: each
// sample goes to exactly one share, the first rule its stack (leaf first) matches, so the shares add
// up to 100% of the profiled time. bench/profile-summary.ts (checkpoints) and bench/dataflow.ts (the
// exchange) bring their own rules.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export type Frame = ProfileNode["callFrame"];
export type ShareRule = [name: string, matches: (leaf: Frame, stack: Frame[]) => boolean];

/**
 * Microseconds per share over every `.cpuprofile` in `dir`, in the rules' order (a last rule that
 * matches everything catches the rest), and how many profiles were read.
 */
export function profileShares(
  dir: string,
  rules: readonly ShareRule[],
): { files: number; micros: Map<string, number> } {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  const micros = new Map<string, number>(rules.map(([name]) => [name, 0]));
  for (const file of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), "utf8")) as Profile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
    const shareOf = new Map<number, string>();
    profile.samples.forEach((id, i) => {
      let share = shareOf.get(id);
      if (share === undefined) {
        const stack: Frame[] = [];
        for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
          stack.push(byId.get(at)!.callFrame);
        }
        share = rules.find(([, matches]) => matches(stack[0]!, stack))![0];
        shareOf.set(id, share);
      }
      micros.set(share, micros.get(share)! + (profile.timeDeltas[i] ?? 0));
    });
  }
  return { files: files.length, micros };
}
