import { mountSteps, STAGE } from "../../../src/devcluster/node-agent/mount-script.js";

const token = {
  source: "/tmp/repo/.devcluster/pods/p/volumes/kube-api-access",
  target: "/var/run/secrets/kubernetes.io/serviceaccount",
  readOnly: true,
};
const tmp = { source: "/tmp/repo/.devcluster/pods/p/volumes/tmp", target: "/tmp", readOnly: false };

describe("mountSteps", () => {
  it("no volumes: nothing to do", () => {
    expect(mountSteps([], ["/tmp/repo"])).toEqual([]);
  });

  it("stages every source before any target is mounted, so a /tmp volume cannot hide a later source", () => {
    const steps = mountSteps([tmp, token], ["/work/repo"]);
    const firstTarget = steps.findIndex((s) => s.startsWith("mount --bind /run"));
    const lastSource = steps.findLastIndex((s) => s.includes(`${STAGE}/`) && s.startsWith("mount --bind '"));
    expect(lastSource).toBeLessThan(firstTarget);
    expect(steps).toContain(`mount --bind '${token.source}' ${STAGE}/1`);
    expect(steps).toContain(`mount --bind ${STAGE}/1 '${token.target}'`);
    expect(steps).toContain(`mount -o remount,bind,ro '${token.target}'`);
    // The repository is not under /tmp here: nothing to bind back.
    expect(steps.some((s) => s.includes("--rbind"))).toBe(false);
  });

  it("binds the image's files back when a volume covers them", () => {
    const steps = mountSteps([tmp], ["/tmp/repo"]);
    expect(steps.slice(-2)).toEqual(["mkdir -p '/tmp/repo'", `mount --rbind ${STAGE}/image-0 '/tmp/repo'`]);
    expect(steps).toContain(`mount --rbind '/tmp/repo' ${STAGE}/image-0`);
  });

  it("mounts a file over a file, making an empty one to mount over only when it is missing", () => {
    const log = {
      source: "/pods/p/taskmanager.termination-log",
      target: "/dev/termination-log",
      readOnly: false,
      file: true,
    };
    const steps = mountSteps([log], []);
    expect(steps).toContain(`touch ${STAGE}/0`);
    expect(steps).not.toContain(`mkdir ${STAGE}/0`);
    expect(steps.slice(-3)).toEqual([
      "mkdir -p '/dev'",
      "[ -e '/dev/termination-log' ] || touch '/dev/termination-log'",
      `mount --bind ${STAGE}/0 '/dev/termination-log'`,
    ]);
  });

  it("quotes paths for the shell", () => {
    const steps = mountSteps([{ source: "/a b/it's", target: "/data", readOnly: false }], []);
    expect(steps).toContain(`mount --bind '/a b/it'\\''s' ${STAGE}/0`);
  });
});
