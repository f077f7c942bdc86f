// Running podman and buildah (no Docker daemon). Their containers.conf comes from here, so the
// machine's own configuration is left alone: runc under cgroupfs (crun refuses hybrid cgroup v1
// hosts), and no default ulimits (raising them needs CAP_SYS_RESOURCE, which a nested host lacks).
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { assetsCacheDir } from "../devcluster/assets.js";
import { runCommand } from "../devcluster/processes.js";

const CONTAINERS_CONF = `# Written by streamjob-operator (src/images/podman.ts); used only by its own podman and buildah calls.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
`;

function containersConf(): string {
  const file = path.join(path.dirname(assetsCacheDir()), "containers.conf");
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, CONTAINERS_CONF);
  return file;
}

// Debian's packages for each tool the images need (runc: podman's runtime here, see above).
const TOOLS: Record<string, string> = {
  buildah: "buildah",
  podman: "podman",
  mmdebstrap: "mmdebstrap",
  runc: "runc",
};

function installed(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** Installs the missing tools with apt-get where it can (root on Debian); otherwise says what is missing. */
export async function ensureTools(log: (line: string) => void): Promise<void> {
  const missing = Object.keys(TOOLS).filter((command) => !installed(command));
  if (missing.length === 0) return;
  const packages = missing.map((command) => TOOLS[command]!);
  if (process.getuid?.() !== 0 || !installed("apt-get")) {
    throw new Error(
      `the images need ${missing.join(", ")}: install them (on Debian: apt-get install ${packages.join(" ")})`,
    );
  }
  log(`installing ${packages.join(", ")} from Debian's packages`);
  await run("apt-get", ["install", "-y", "-q", ...packages]);
}

export function containerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, CONTAINERS_CONF: containersConf() };
}

/** Runs podman, buildah, mmdebstrap or apt-get with this containers.conf, non-interactively. */
export function run(command: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  return runCommand(command, args, {
    ...options,
    env: { ...containerEnv(), DEBIAN_FRONTEND: "noninteractive" },
  });
}

export async function imageExists(name: string): Promise<boolean> {
  try {
    await run("podman", ["image", "exists", name]);
    return true;
  } catch {
    return false;
  }
}

/** The image's size as podman reports it (the uncompressed layers), in bytes. */
export async function imageSize(name: string): Promise<number> {
  return Number((await run("podman", ["image", "inspect", "--format", "{{.Size}}", name])).trim());
}
