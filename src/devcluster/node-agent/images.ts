// Which local command stands in for a container image. This project's own images run its
// built entry points; any other image runs the container's command and args as given (as an
// image without an ENTRYPOINT would), so `kubectl run x --image=busybox -- sh -c '...'` works.
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { z } from "zod";

const ImageMapping = z.object({
  /** Stands for the image's ENTRYPOINT. Relative paths resolve against the repository root. */
  entrypoint: z.array(z.string()).min(1),
  /** Stands for the image's CMD: used when the container gives no args. */
  cmd: z.array(z.string()).default([]),
  /** Stands for the image's USER. */
  user: z.number().int().nonnegative().optional(),
});
export type ImageMapping = z.infer<typeof ImageMapping>;

export const ImageMap = z.record(z.string(), ImageMapping);
export type ImageMap = z.infer<typeof ImageMap>;

/** Defaults for this project's images (`<registry>/streamjob-operator` and `.../streamjob-taskmanager`). */
export function defaultImageMap(repoRoot: string): ImageMap {
  const node = process.execPath;
  return {
    "streamjob-operator": {
      entrypoint: [node, path.join(repoRoot, "dist/operator/main.js")],
      cmd: [],
      user: 65532,
    },
    "streamjob-taskmanager": {
      entrypoint: [node, path.join(repoRoot, "dist/taskmanager/main.js")],
      cmd: [],
      user: 65532,
    },
  };
}

/** The defaults, overridden entry by entry by the JSON file in $DEVCLUSTER_IMAGES if set. */
export function loadImageMap(repoRoot: string, file: string | undefined): ImageMap {
  const map = defaultImageMap(repoRoot);
  if (file && existsSync(file)) {
    const parsed = ImageMap.safeParse(JSON.parse(readFileSync(file, "utf8")));
    if (!parsed.success)
      throw new Error(
        `${file}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      );
    Object.assign(map, parsed.data);
  }
  return map;
}

/** The image's repository name without registry, tag or digest: `ghcr.io/x/streamjob-operator:0.1` -> `streamjob-operator`. */
export function imageName(image: string): string {
  const withoutDigest = image.split("@")[0]!;
  const lastSegment = withoutDigest.split("/").pop()!;
  return lastSegment.split(":")[0]!;
}

export interface Command {
  argv: string[];
  /** The user the image would run as, when the mapping says. */
  imageUser?: number;
}

/** Docker semantics: `command` replaces the entrypoint, `args` replaces the image's CMD. */
export function containerCommand(map: ImageMap, image: string, command?: string[], args?: string[]): Command {
  const mapping = map[imageName(image)] ?? map[image];
  if (!mapping) {
    const argv = [...(command ?? []), ...(args ?? [])];
    if (argv.length === 0) {
      throw new Error(`image ${image} has no local mapping, so the container must set command or args`);
    }
    return { argv };
  }
  const argv = command?.length
    ? [...command, ...(args ?? [])]
    : [...mapping.entrypoint, ...(args?.length ? args : mapping.cmd)];
  return { argv, imageUser: mapping.user };
}

/**
 * The folders from the root down to `target` (itself included) that others may not enter. This
 * project's images run from the checkout as the pods' non-root users, so the local cluster opens
 * these (a clone into `mktemp -d` is mode 700).
 */
export function foldersClosedToOthers(
  target: string,
  statOf: (dir: string) => { mode: number } = statSync,
): string[] {
  const closed: string[] = [];
  let dir = path.parse(target).root;
  for (const part of path.relative(dir, target).split(path.sep).filter(Boolean)) {
    dir = path.join(dir, part);
    if ((statOf(dir).mode & 0o001) === 0) closed.push(dir);
  }
  return closed;
}
