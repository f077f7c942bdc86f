// The shell steps that give a container its volumes inside its own mount namespace. The host's
// file system stands in for the image, so a volume mounted over a folder that holds the image's
// files (a `/tmp` emptyDir while the repository is checked out under /tmp) would hide them, and
// with them the sources of the volumes mounted after it. So every source is first bound to a
// private staging tmpfs, then mounted from there, and an image path a volume covers is bound back.
import path from "node:path";
import type { Mount } from "./volumes.js";

/** Where the staging tmpfs goes; each container's namespace mounts its own, invisible to the host. */
export const STAGE = "/run/devcluster-stage";

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function covers(target: string, inner: string): boolean {
  const dir = target.endsWith("/") ? target : `${target}/`;
  return inner === target || inner.startsWith(dir);
}

/**
 * Steps for `sh -c` (run with `set -e` as root in a new mount namespace): mounts in order, then
 * `imagePaths` (absolute folders the container's command needs) bound back where a mount covers them.
 */
export function mountSteps(mounts: Mount[], imagePaths: string[]): string[] {
  if (mounts.length === 0) return [];
  const covered = imagePaths.filter((p) => mounts.some((m) => covers(m.target, p)));
  const steps = [`mkdir -p ${STAGE}`, `mount -t tmpfs -o mode=0700 devcluster-stage ${STAGE}`];
  mounts.forEach((m, i) => {
    steps.push(
      m.file ? `touch ${STAGE}/${i}` : `mkdir ${STAGE}/${i}`,
      `mount --bind ${shellQuote(m.source)} ${STAGE}/${i}`,
    );
  });
  covered.forEach((p, i) => {
    steps.push(`mkdir ${STAGE}/image-${i}`, `mount --rbind ${shellQuote(p)} ${STAGE}/image-${i}`);
  });
  mounts.forEach((m, i) => {
    const target = shellQuote(m.target);
    // A missing mount point is made on the host, a folder or, for a file, an empty file (e.g.
    // /dev/termination-log) that only this namespace's mount gives content.
    if (m.file)
      steps.push(
        `mkdir -p ${shellQuote(path.posix.dirname(m.target))}`,
        `[ -e ${target} ] || touch ${target}`,
      );
    else steps.push(`mkdir -p ${target}`);
    steps.push(`mount --bind ${STAGE}/${i} ${target}`);
    if (m.readOnly) steps.push(`mount -o remount,bind,ro ${target}`);
  });
  covered.forEach((p, i) => {
    steps.push(`mkdir -p ${shellQuote(p)}`, `mount --rbind ${STAGE}/image-${i} ${shellQuote(p)}`);
  });
  return steps;
}
