import {
  containerCommand,
  folderBlocking,
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

describe("folderBlocking", () => {
  // A checkout made by root with `mktemp -d`: /tmp is 1777, the clone's folder 700.
  const modes: Record<string, { uid: number; gid: number; mode: number }> = {
    "/tmp": { uid: 0, gid: 0, mode: 0o1777 },
    "/tmp/tmp.abc": { uid: 0, gid: 0, mode: 0o700 },
    "/tmp/tmp.abc/repo": { uid: 0, gid: 0, mode: 0o755 },
    "/tmp/shared": { uid: 0, gid: 65532, mode: 0o750 },
    "/tmp/mine": { uid: 1000, gid: 0, mode: 0o700 },
  };
  const statOf = (dir: string) => modes[dir]!;

  it.each([
    ["a private folder stops a non-root user", "/tmp/tmp.abc/repo", 65532, 65532, "/tmp/tmp.abc"],
    ["root enters anything", "/tmp/tmp.abc/repo", 0, 0, undefined],
    ["the owner's bits count for the owner", "/tmp/mine", 1000, 1000, undefined],
    ["the group's bits count for the group", "/tmp/shared", 1000, 65532, undefined],
    ["others' bits count for the rest", "/tmp/shared", 1000, 1000, "/tmp/shared"],
  ])("%s", (_, target, uid, gid, expected) => {
    expect(folderBlocking(target, uid, gid, statOf)).toBe(expected);
  });
});
