import {
  containerCommand,
  foldersClosedToOthers,
  imageName,
  type ImageMap,
} from "../../../src/devcluster/node-agent/images.js";

const map: ImageMap = {
  "streamjob-taskmanager": { entrypoint: ["node", "tm.js"], cmd: ["--default"], user: 65532 },
};

test.each([
  ["busybox", "busybox"],
  ["busybox:1.36", "busybox"],
  ["ghcr.io/acme/streamjob-taskmanager:0.1.0", "streamjob-taskmanager"],
  ["localhost:5000/streamjob-taskmanager@sha256:abc", "streamjob-taskmanager"],
])("imageName(%s) = %s", (image, name) => {
  expect(imageName(image)).toBe(name);
});

describe("containerCommand follows Docker's ENTRYPOINT/CMD rules", () => {
  test.each([
    ["mapped image, no command or args", undefined, undefined, ["node", "tm.js", "--default"]],
    [
      "mapped image, args replace CMD",
      undefined,
      ["--job", "sequence"],
      ["node", "tm.js", "--job", "sequence"],
    ],
    ["mapped image, command replaces ENTRYPOINT", ["sh", "-c"], ["echo hi"], ["sh", "-c", "echo hi"]],
  ])("%s", (_what, command, args, argv) => {
    expect(containerCommand(map, "ghcr.io/acme/streamjob-taskmanager:1", command, args)).toEqual({
      argv,
      imageUser: 65532,
    });
  });

  test("an unmapped image runs command and args as given", () => {
    expect(containerCommand(map, "busybox", undefined, ["sh", "-c", "true"])).toEqual({
      argv: ["sh", "-c", "true"],
    });
    expect(containerCommand(map, "busybox", ["sleep"], ["1"])).toEqual({ argv: ["sleep", "1"] });
  });

  test("an unmapped image without command or args is an error naming the image", () => {
    expect(() => containerCommand(map, "nginx:1.27")).toThrow("image nginx:1.27 has no local mapping");
  });
});

describe("foldersClosedToOthers", () => {
  // A checkout made by root with `mktemp -d`: /tmp is 1777, the clone's folder 700.
  const modes: Record<string, number> = {
    "/tmp": 0o1777,
    "/tmp/tmp.abc": 0o700,
    "/tmp/tmp.abc/repo": 0o755,
    "/srv": 0o750,
    "/srv/repo": 0o711,
  };
  const statOf = (dir: string) => ({ mode: modes[dir]! });

  it.each([
    ["a private mktemp folder above the checkout", "/tmp/tmp.abc/repo", ["/tmp/tmp.abc"]],
    ["the checkout itself", "/tmp/tmp.abc", ["/tmp/tmp.abc"]],
    ["search without read is enough", "/srv/repo", ["/srv"]],
    ["an open path", "/tmp", []],
  ])("%s", (_, target, expected) => {
    expect(foldersClosedToOthers(target, statOf)).toEqual(expected);
  });
});
