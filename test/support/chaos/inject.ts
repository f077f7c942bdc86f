// Carrying out a planned hit on the local cluster. A process is signalled only once identified as
// the cluster's own (identify.ts); every SIGSTOP is recorded so that it is always followed by a
// SIGCONT, also when the run fails or is interrupted (resumeAll).
import type { CoreV1Api, V1Pod } from "@kubernetes/client-node";
import { readState } from "../../../src/devcluster/cluster.js";
import { sleep } from "../../../src/devcluster/processes.js";
import { readyOperatorPod } from "../operator-release.js";
import { containerPidOf, isDeleting, jobPodSelector } from "../pods.js";
import { waitFor } from "../wait.js";
import type { Hit } from "./faults.js";
import { containerInitPids } from "../../../src/devcluster/real-node/node.js";
import { notControlPlaneProcess, notPodProcess, readProcessFacts, type PodProgram } from "./identify.js";

export interface ChaosTarget {
  clusterDir: string;
  core: CoreV1Api;
  /** Where the job and the operator run. */
  namespace: string;
  job: string;
  operatorRelease: string;
  random: () => number;
}

/** Pids stopped with SIGSTOP and not yet continued. */
const stopped = new Set<number>();

/** SIGCONT to every process this run stopped; safe to call more than once, and from an exit handler. */
export function resumeAll(): void {
  for (const pid of stopped) resume(pid);
}

function resume(pid: number): void {
  try {
    process.kill(pid, "SIGCONT");
  } catch {
    // gone: nothing to continue
  }
  stopped.delete(pid);
}

interface Victim {
  pid?: number;
  pod?: string;
  /** Why the process is not the one meant; undefined once identified. */
  refused?: string;
}

const TASKMANAGER_ENTRY: PodProgram = { entryPoint: "taskmanager/main.js", imageEntry: "taskmanager.mjs" };
const OPERATOR_ENTRY: PodProgram = { entryPoint: "operator/main.js", imageEntry: "operator.mjs" };
/** How long a hit waits for its target to exist (a pod may be restarting after the previous fault). */
const TARGET_TIMEOUT_MS = 60_000;

/**
 * Waits for a candidate whose process is there, and identifies it. A process gone meanwhile (the
 * pod not yet updated after the previous fault) means waiting; any other mismatch is a refusal.
 */
async function podVictim(
  target: ChaosTarget,
  what: string,
  program: PodProgram,
  candidate: () => Promise<{ name: string; pid: number } | undefined>,
): Promise<Victim> {
  return waitFor(
    what,
    async () => {
      const pod = await candidate();
      const facts = pod && readProcessFacts(pod.pid);
      if (!pod || !facts) return undefined;
      return {
        pid: pod.pid,
        pod: pod.name,
        refused: notPodProcess(facts, target.clusterDir, pod.name, program, [
          ...containerInitPids(target.clusterDir).values(),
        ]),
      };
    },
    TARGET_TIMEOUT_MS,
  );
}

function taskManagerVictim(target: ChaosTarget): Promise<Victim> {
  return podVictim(target, `a running TaskManager of ${target.job}`, TASKMANAGER_ENTRY, async () => {
    const running = (
      await target.core.listNamespacedPod({
        namespace: target.namespace,
        labelSelector: jobPodSelector(target.job),
      })
    ).items.filter((p: V1Pod) => !isDeleting(p) && p.status?.containerStatuses?.[0]?.state?.running);
    const pod = running[Math.floor(target.random() * running.length)];
    const pid = pod && containerPidOf(pod);
    return pid === undefined ? undefined : { name: pod!.metadata!.name!, pid };
  });
}

function operatorVictim(target: ChaosTarget): Promise<Victim> {
  return podVictim(target, "a ready operator pod", OPERATOR_ENTRY, () =>
    readyOperatorPod(target.core, target.namespace, target.operatorRelease),
  );
}

function controlPlaneVictim(target: ChaosTarget, binary: "minio" | "kube-apiserver"): Victim {
  const pid = readState(target.clusterDir)?.processes.find((p) => p.name === binary)?.pid;
  if (pid === undefined) return { refused: `${binary} is not in ${target.clusterDir}/state.json` };
  return { pid, refused: notControlPlaneProcess(readProcessFacts(pid), target.clusterDir, binary) };
}

function victim(target: ChaosTarget, hit: Hit): Promise<Victim> | Victim {
  switch (hit.target) {
    case "taskmanager":
      return taskManagerVictim(target);
    case "operator":
      return operatorVictim(target);
    default:
      return controlPlaneVictim(target, hit.target);
  }
}

/** Carries out `hit`; resolves once it is over (a pause: after the SIGCONT). What it hit, for the log. */
export async function inject(target: ChaosTarget, hit: Hit): Promise<string> {
  const found = await victim(target, hit);
  if (found.refused !== undefined || found.pid === undefined)
    throw new Error(`refused to hit ${hit.target}: ${found.refused ?? "no process"}`);
  const { pid, pod } = found;
  const what = pod ? `pod ${pod} (pid ${pid})` : `pid ${pid}`;
  switch (hit.action) {
    case "sigkill":
      process.kill(pid, "SIGKILL");
      return what;
    case "delete-pod":
      await target.core.deleteNamespacedPod({ namespace: target.namespace, name: pod! });
      return what;
    case "pause":
      stopped.add(pid);
      try {
        process.kill(pid, "SIGSTOP");
        await sleep(hit.pauseMs ?? 0);
      } finally {
        resume(pid);
      }
      return what;
  }
}
