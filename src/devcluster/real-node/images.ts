// Images a real node runs without a registry: a static C program is the whole image (one file,
// no shell, no libc to copy). Built with gcc -static, packed by buildah (private vfs storage, so
// nothing touches the machine's image store) into a docker-archive tarball cached next to the
// assets, and imported into the node's containerd with `ctr images import`.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { assetsCacheDir } from "../assets.js";
import { runCommand } from "../processes.js";
import { PAUSE_IMAGE } from "./config.js";

export interface StaticImage {
  /** The image reference the tarball carries, e.g. registry.k8s.io/pause:3.10.2. */
  ref: string;
  /** C source of the image's only file, /<binary>, its entrypoint. */
  source: string;
  binary: string;
  /** The image's default user (uid:gid). */
  user: string;
}

/** Sleeps until SIGTERM or SIGINT, reaping orphans: what a pod sandbox's first process does. */
export const pauseImage: StaticImage = {
  ref: PAUSE_IMAGE,
  binary: "pause",
  user: "65535:65535",
  source: `#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, 0);
  sigaction(SIGTERM, &sa, 0);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, 0);
  for (;;) pause();
}
`,
};

export function imagesCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(path.dirname(assetsCacheDir(env)), "images");
}

/** The cached tarball of `image`; its name changes with the source, so an edit rebuilds it. */
export function imageTarball(image: StaticImage, env: NodeJS.ProcessEnv = process.env): string {
  const hash = createHash("sha256")
    .update(JSON.stringify([image.ref, image.source, image.user, image.binary]))
    .digest("hex")
    .slice(0, 12);
  const name = image.ref.replace(/[^A-Za-z0-9.-]+/g, "_");
  return path.join(imagesCacheDir(env), `${name}-${hash}.tar`);
}

/** Builds the image's tarball once (gcc and buildah needed then); returns its path. */
export async function ensureImageTarball(
  image: StaticImage,
  log: (line: string) => void = console.log,
): Promise<string> {
  const tarball = imageTarball(image);
  if (existsSync(tarball)) return tarball;
  const started = Date.now();
  mkdirSync(path.dirname(tarball), { recursive: true });
  const work = mkdtempSync(path.join(path.dirname(tarball), ".build-"));
  // buildah's storage stays in the work folder: the machine's own store (another user's images)
  // is neither read nor written.
  const buildah = (...args: string[]) =>
    runCommand("buildah", [
      "--storage-driver",
      "vfs",
      "--root",
      path.join(work, "storage"),
      "--runroot",
      path.join(work, "run"),
      ...args,
    ]);
  try {
    writeFileSync(path.join(work, `${image.binary}.c`), image.source);
    await runCommand("gcc", ["-static", "-Os", "-s", "-Wall", "-o", image.binary, `${image.binary}.c`], {
      cwd: work,
    });
    const container = (await buildah("from", "--name", `build-${process.pid}`, "scratch")).trim();
    await buildah("copy", "--chmod", "0755", container, path.join(work, image.binary), `/${image.binary}`);
    await buildah(
      "config",
      "--entrypoint",
      JSON.stringify([`/${image.binary}`]),
      "--cmd",
      "",
      "--user",
      image.user,
      "--os",
      "linux",
      "--arch",
      "amd64",
      container,
    );
    await buildah("commit", "--rm", container, image.ref);
    const partial = `${tarball}.partial-${process.pid}`;
    await buildah("push", image.ref, `docker-archive:${partial}:${image.ref}`);
    renameSync(partial, tarball);
  } finally {
    // vfs layers may carry immutable bits only buildah can clear; it owns the folder anyway.
    rmSync(work, { recursive: true, force: true });
  }
  log(`image ${image.ref}: built in ${((Date.now() - started) / 1000).toFixed(1)}s -> ${tarball}`);
  return tarball;
}

/** Imports a tarball into the CRI's namespace (k8s.io) of the containerd at `socket`. */
export async function importImage(
  ctr: string,
  socket: string,
  tarball: string,
  options: { snapshotter: string; pinned?: boolean },
): Promise<void> {
  await runCommand(ctr, [
    "--address",
    socket,
    "--namespace",
    "k8s.io",
    "images",
    "import",
    "--snapshotter",
    options.snapshotter,
    "--platform",
    "linux/amd64",
    ...(options.pinned ? ["--label", "io.cri-containerd.pinned=pinned"] : []),
    tarball,
  ]);
}
