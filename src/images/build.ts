// `npm run images`: builds the operator and TaskManager images from images/Dockerfile with buildah
// (no Docker daemon), into the machine's container storage, where podman and `podman save` find them.
// From the Dockerfile's own FROM where an image registry answers; otherwise from bases built from
// Debian's packages (debian-base.ts), passed as build arguments. buildah's layer cache makes a
// rebuild of unchanged sources take seconds.
import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../devcluster/assets.js";
import { ensureDebianBase } from "./debian-base.js";
import { ensureTools, imageSize, run } from "./podman.js";

export type ImageTarget = "operator" | "taskmanager";

const version = (JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string })
  .version;

/** The images' names: the chart's default repositories, tagged with the chart's appVersion. */
export const IMAGES: Record<ImageTarget, string> = {
  operator: `ghcr.io/streamjob/streamjob-operator:${version}`,
  taskmanager: `ghcr.io/streamjob/streamjob-taskmanager:${version}`,
};

export type BaseSource = "registry" | "debian";

/** `registry` if the Dockerfile's default bases can be pulled, else `debian`. STREAMJOB_IMAGE_BASES overrides. */
export async function chooseBaseSource(env: NodeJS.ProcessEnv = process.env): Promise<BaseSource> {
  const forced = env.STREAMJOB_IMAGE_BASES;
  if (forced === "registry" || forced === "debian") return forced;
  if (forced) throw new Error(`STREAMJOB_IMAGE_BASES=${forced}: expected "registry" or "debian"`);
  const answers = await Promise.all(
    ["https://registry-1.docker.io/v2/", "https://gcr.io/v2/"].map((url) =>
      fetch(url, { signal: AbortSignal.timeout(3000) }).then(
        () => true,
        () => false,
      ),
    ),
  );
  return answers.every(Boolean) ? "registry" : "debian";
}

export interface BuiltImage {
  target: ImageTarget;
  name: string;
  bytes: number;
}

export interface BuildResult {
  baseSource: BaseSource;
  images: BuiltImage[];
  elapsedMs: number;
}

export async function buildImages(log: (line: string) => void = console.log): Promise<BuildResult> {
  const started = Date.now();
  await ensureTools(log);
  const baseSource = await chooseBaseSource();
  const buildArgs: string[] = [];
  if (baseSource === "debian") {
    log("no image registry answers: building on bases made from Debian's packages");
    buildArgs.push(
      `--build-arg=BUILD_IMAGE=${await ensureDebianBase("build", log)}`,
      `--build-arg=RUNTIME_IMAGE=${await ensureDebianBase("runtime", log)}`,
      "--pull=never",
    );
  }
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  if (extraCa)
    buildArgs.push(
      `--volume=${extraCa}:/run/host-ca.crt:ro`,
      "--build-arg=NODE_EXTRA_CA_CERTS=/run/host-ca.crt",
    );
  const images: BuiltImage[] = [];
  for (const target of ["operator", "taskmanager"] as const) {
    const name = IMAGES[target];
    const targetStarted = Date.now();
    log(`${name}: building`);
    await run(
      "buildah",
      [
        "build",
        "--layers", // cache each step: unchanged package-lock.json skips npm ci
        "--network=host", // npm ci reaches the registry the host reaches
        "--file=images/Dockerfile",
        `--target=${target}`,
        `--tag=${name}`,
        ...buildArgs,
        repoRoot,
      ],
      { cwd: repoRoot },
    );
    const bytes = await imageSize(name);
    images.push({ target, name, bytes });
    log(`${name}: built in ${Math.round((Date.now() - targetStarted) / 1000)} s`);
  }
  return { baseSource, images, elapsedMs: Date.now() - started };
}

/** Writes the image to a docker-archive tarball, as `ctr images import` takes it. */
export async function exportImage(name: string, tarball: string): Promise<void> {
  await run("podman", ["save", "--format=docker-archive", `--output=${tarball}`, name]);
}

export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
