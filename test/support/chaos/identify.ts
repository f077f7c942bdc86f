// Chaos signals only processes positively identified as this cluster's own: a pod's process by the
// node agent's containerID (`local://<pid>`) and its environment (HOME is the pod's folder under
// `<cluster>/pods/`, HOSTNAME the pod's name), or on a real node as the init process of one of the
// cluster's containers (its pid in the runc shim's init.pid under the cluster's folder) with that
// HOSTNAME; a control-plane process by the cluster's state file and its command line (the binary,
// and arguments naming the cluster's folder).
import { readFileSync, readlinkSync } from "node:fs";
import path from "node:path";

export interface ProcessFacts {
  pid: number;
  cmdline: string[];
  environ: Record<string, string>;
}

/** What /proc says of `pid`, or undefined when it is gone. */
export function readProcessFacts(pid: number): ProcessFacts | undefined {
  try {
    const split = (file: string) => readFileSync(`/proc/${pid}/${file}`, "utf8").split("\0").filter(Boolean);
    const environ = Object.fromEntries(
      split("environ").map((entry) => {
        const eq = entry.indexOf("=");
        return [entry.slice(0, eq), entry.slice(eq + 1)];
      }),
    );
    readlinkSync(`/proc/${pid}/cwd`); // still there
    return { pid, cmdline: split("cmdline"), environ };
  } catch {
    return undefined;
  }
}

const inside = (dir: string, file: string) => {
  const relative = path.relative(path.resolve(dir), path.resolve(file));
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
};

/** What a pod runs: an entry point under dist/ on the emulated node, a bundled module in the image. */
export interface PodProgram {
  entryPoint: string;
  imageEntry: string;
}

/**
 * Why `facts` is not the main process of pod `podName` of the cluster in `clusterDir` running
 * `program`; undefined when it is. `containerInitPids` are the init processes of the cluster's
 * real-node containers (`containerInitPids` of real-node/node.ts).
 */
export function notPodProcess(
  facts: ProcessFacts | undefined,
  clusterDir: string,
  podName: string,
  program: PodProgram,
  containerInitPids: readonly number[] = [],
): string | undefined {
  if (!facts) return "the process is gone";
  const inContainer = containerInitPids.includes(facts.pid);
  const home = facts.environ.HOME ?? "";
  if (!inContainer && !inside(path.join(clusterDir, "pods"), home))
    return `pid ${facts.pid}: neither a container of ${clusterDir}'s real node nor HOME in a pod folder (HOME ${home || "(none)"})`;
  if (facts.environ.HOSTNAME !== podName)
    return `pid ${facts.pid}: HOSTNAME ${facts.environ.HOSTNAME ?? "(none)"} is not ${podName}`;
  const entries = inContainer ? [program.entryPoint, program.imageEntry] : [program.entryPoint];
  if (!facts.cmdline.some((arg) => entries.some((entry) => arg.endsWith(entry))))
    return `pid ${facts.pid}: ${facts.cmdline.join(" ")} does not run ${entries.join(" or ")}`;
  return undefined;
}

/**
 * Why `facts` is not the cluster's own `binary` (e.g. "minio"), started with arguments inside
 * `clusterDir`; undefined when it is.
 */
export function notControlPlaneProcess(
  facts: ProcessFacts | undefined,
  clusterDir: string,
  binary: string,
): string | undefined {
  if (!facts) return "the process is gone";
  if (path.basename(facts.cmdline[0] ?? "") !== binary)
    return `pid ${facts.pid}: ${facts.cmdline[0] ?? "(no command)"} is not ${binary}`;
  const own = facts.cmdline.slice(1).some((arg) => {
    const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : arg;
    return path.isAbsolute(value) && inside(clusterDir, value);
  });
  if (!own) return `pid ${facts.pid}: no argument of ${binary} names ${clusterDir}`;
  return undefined;
}
