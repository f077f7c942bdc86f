// Base images built from Debian's packages, for machines that reach Debian's archive but no image
// registry. They stand in for the Dockerfile's defaults (node:24-trixie-slim to build,
// distroless/nodejs24 to run): the same Node.js major, /nodejs/bin/node, the nonroot user 65532.
//
// Node.js 24 is the active LTS; Debian ships it from forky (testing): trixie has only 20, which
// reached end of life in April 2026. The archive reachable here is a snapshot whose Release files
// are past their Valid-Until date, so apt is told not to check it; signatures are still verified.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { assetsCacheDir } from "../devcluster/assets.js";
import { imageExists, run } from "./podman.js";

const SUITE = "forky";

const COMMON_OPTIONS = [
  "--aptopt=Acquire::Check-Valid-Until false",
  // Documentation and translations: nothing at run time reads them.
  "--dpkgopt=path-exclude=/usr/share/doc/*",
  "--dpkgopt=path-exclude=/usr/share/man/*",
  "--dpkgopt=path-exclude=/usr/share/locale/*",
];

// Distroless-style: the packages Node.js needs are unpacked (--variant=extract: no dpkg, no shell,
// no maintainer scripts, and no hooks), then this script (run on the host, $1 = the new root) does
// what those scripts and a base image would have done.
const RUNTIME_FINISH = String.raw`set -e
r="$1"
# Debian is /usr-merged: the dynamic loader is found through /lib64.
for d in bin sbin lib lib64; do [ -e "$r/$d" ] || ln -s "usr/$d" "$r/$d"; done
mkdir -p "$r/nodejs/bin" "$r/etc/ssl/certs" "$r/var/lib/dpkg/status.d"
ln -sf /usr/bin/node "$r/nodejs/bin/node"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
mkdir -p "$r/home/nonroot" && chown 65532:65532 "$r/home/nonroot"
chmod 1777 "$r/tmp"
# What update-ca-certificates would have written.
cat "$r"/usr/share/ca-certificates/mozilla/*.crt > "$r/etc/ssl/certs/ca-certificates.crt"
# One control file per package, where image scanners (Trivy, Syft) look in distroless images.
for deb in "$r"/var/cache/apt/archives/*.deb; do
  dpkg-deb -f "$deb" > "$r/var/lib/dpkg/status.d/$(dpkg-deb -f "$deb" Package)"
done
# The downloaded packages, documentation, glibc's character-set converters and the unpacked
# tools' data: Node uses none of them.
rm -rf "$r/var/cache/apt" "$r/var/lib/apt" "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" \
  "$r/usr/lib/x86_64-linux-gnu/gconv" "$r/usr/share/perl5" "$r/usr/share/debconf" "$r/usr/share/lintian"
`;

interface BaseRecipe {
  /** Repository of the image, tagged with the Node major and a hash of this recipe. */
  repository: string;
  args: string[];
  /** Shell script run on the unpacked root ($1) before it is imported. */
  finish?: string;
  /** Image settings for `podman import --change`. */
  changes: string[];
}

const RECIPES = {
  build: {
    repository: "localhost/streamjob/node-build",
    args: ["--variant=apt", "--include=nodejs,npm,ca-certificates", ...COMMON_OPTIONS],
    changes: ["ENV=PATH=/usr/local/bin:/usr/bin:/bin", "WORKDIR=/"],
  },
  runtime: {
    repository: "localhost/streamjob/node-runtime",
    args: [
      "--variant=extract",
      "--include=nodejs,ca-certificates",
      "--skip=cleanup/apt/cache", // RUNTIME_FINISH reads the packages' control fields
      ...COMMON_OPTIONS,
    ],
    finish: RUNTIME_FINISH,
    changes: ["USER=65532:65532", "WORKDIR=/home/nonroot", 'ENTRYPOINT=["/nodejs/bin/node"]'],
  },
} satisfies Record<string, BaseRecipe>;

export type BaseKind = keyof typeof RECIPES;

/** The image name for a recipe: a change to the recipe is a new tag, so stale bases are never reused. */
export function baseImageName(kind: BaseKind): string {
  const recipe: BaseRecipe = RECIPES[kind];
  const hash = createHash("sha256")
    .update(JSON.stringify([SUITE, recipe]))
    .digest("hex")
    .slice(0, 12);
  return `${recipe.repository}:24-${SUITE}-${hash}`;
}

/** Builds the base image unless it exists; returns its name. */
export async function ensureDebianBase(kind: BaseKind, log: (line: string) => void): Promise<string> {
  const name = baseImageName(kind);
  if (await imageExists(name)) return name;
  const recipe: BaseRecipe = RECIPES[kind];
  const started = Date.now();
  log(`${name}: building from Debian ${SUITE} packages (mmdebstrap)`);
  const work = mkdtempSync(path.join(path.dirname(assetsCacheDir()), "base-"));
  try {
    const tarball = path.join(work, "rootfs.tar");
    if (recipe.finish) {
      const root = path.join(work, "root");
      await run("mmdebstrap", [...recipe.args, SUITE, root]);
      await run("sh", ["-c", recipe.finish, "finish", root]);
      await run("tar", ["--numeric-owner", "-C", root, "-cf", tarball, "."]);
    } else {
      await run("mmdebstrap", [...recipe.args, SUITE, tarball]);
    }
    await run("podman", [
      "import",
      ...recipe.changes.flatMap((change) => ["--change", change]),
      "--message",
      `streamjob-operator: Debian ${SUITE} ${recipe.args.join(" ").slice(0, 200)}`,
      tarball,
      name,
    ]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const version = (
    await run("podman", ["run", "--rm", "--entrypoint", "/usr/bin/node", name, "--version"])
  ).trim();
  if (!version.startsWith("v24.")) throw new Error(`${name} has Node.js ${version}, not 24`);
  log(`${name}: Node.js ${version}, built in ${Math.round((Date.now() - started) / 1000)} s`);
  return name;
}
