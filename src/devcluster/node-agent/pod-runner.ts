// Runs one pod's containers as local processes, the way a kubelet and container runtime would:
// env and volumes resolved, each container in its own mount namespace with the pod's volumes
// (including its ServiceAccount token) bind-mounted, probes, restarts, status reported to the API.
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1Probe,
} from "@kubernetes/client-node";
import { spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import { ContainerConfigError, resolveEnv, type EnvSources } from "./env.js";
import { repoRoot } from "../assets.js";
import { containerCommand, type ImageMap } from "./images.js";
import { mountSteps } from "./mount-script.js";
import {
  MAX_TERMINATION_MESSAGE_BYTES,
  MAX_TERMINATION_MESSAGE_LOG_BYTES,
  podPhase,
  restartBackoffMs,
  shouldRestart,
  terminationMessage,
  type RestartPolicy,
  type TerminationMessagePolicy,
} from "./pod-status.js";
import { PodVolumes, type Mount, type VolumeSources } from "./volumes.js";

export interface PodRunnerDeps {
  sources: EnvSources & VolumeSources;
  imageMap: ImageMap;
  /** Writes the pod's status subresource. */
  reportStatus(pod: V1Pod, status: V1Pod["status"]): Promise<void>;
  /** A Kubernetes Event about the pod, as the kubelet records them for `kubectl describe`. */
  recordEvent(pod: V1Pod, type: "Normal" | "Warning", reason: string, message: string): void;
  podDir: string;
  logDir: string;
  podIP: string;
  /** Set for containers: where the in-cluster client finds the apiserver. */
  apiserver: { host: string; port: string };
  log: Logger;
}

interface ContainerRuntime {
  spec: V1Container;
  init: boolean;
  restartCount: number;
  state: V1ContainerState;
  lastState: V1ContainerState;
  ready: boolean;
  process?: ChildProcess;
  /** Set while the agent itself kills the container (liveness failure or pod stop). */
  killedBy?: "liveness" | "stop";
  timers: NodeJS.Timeout[];
  probeFailures: { readiness: number; liveness: number };
  probeSuccesses: number;
}

const now = () => new Date();
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export class PodRunner {
  private readonly containers: ContainerRuntime[];
  private readonly volumes: PodVolumes;
  private readonly startTime = now();
  private stopping = false;
  private initFailed = false;
  private tokenTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private dirty = false;
  /** Conditions keep their transition time until their status changes. */
  private readonly conditionSince = new Map<string, { status: string; at: Date }>();

  constructor(
    private pod: V1Pod,
    private readonly deps: PodRunnerDeps,
  ) {
    const runtime = (spec: V1Container, init: boolean): ContainerRuntime => ({
      spec,
      init,
      restartCount: 0,
      state: { waiting: { reason: "ContainerCreating" } },
      lastState: {},
      ready: false,
      timers: [],
      probeFailures: { readiness: 0, liveness: 0 },
      probeSuccesses: 0,
    });
    this.containers = [
      ...(pod.spec?.initContainers ?? []).map((c) => runtime(c, true)),
      ...(pod.spec?.containers ?? []).map((c) => runtime(c, false)),
    ];
    const owner = this.podUser();
    this.volumes = new PodVolumes(pod, path.join(deps.podDir, "volumes"), deps.sources, owner);
  }

  private get restartPolicy(): RestartPolicy {
    return (this.pod.spec?.restartPolicy as RestartPolicy | undefined) ?? "Always";
  }

  /** The pod-level user (runAsUser/fsGroup) that owns emptyDir volumes. */
  private podUser(): { uid: number; gid: number } | undefined {
    const sc = this.pod.spec?.securityContext;
    const uid = sc?.runAsUser ?? this.pod.spec?.containers[0]?.securityContext?.runAsUser;
    if (uid === undefined || !isRoot) return undefined;
    return { uid, gid: sc?.fsGroup ?? sc?.runAsGroup ?? uid };
  }

  update(pod: V1Pod): void {
    this.pod = pod;
  }

  async start(): Promise<void> {
    mkdirSync(this.deps.podDir, { recursive: true });
    const owner = this.podUser();
    if (owner) chownSync(this.deps.podDir, owner.uid, owner.gid);
    this.markDirty();
    try {
      await this.refreshVolumes();
    } catch (err) {
      this.failAllWaiting(err);
      return;
    }
    for (const c of this.containers.filter((c) => c.init)) {
      const exitCode = await this.runToCompletion(c);
      if (this.stopping) return;
      if (exitCode !== 0) {
        this.initFailed = this.restartPolicy === "Never";
        this.markDirty();
        return;
      }
    }
    for (const c of this.containers.filter((c) => !c.init)) this.startContainer(c);
  }

  /** Stops every container: SIGTERM, then SIGKILL after the grace period. */
  async stop(graceSeconds: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.tokenTimer);
    const running = this.containers.filter(
      (c) => c.process && c.process.exitCode === null && c.process.signalCode === null,
    );
    for (const c of this.containers) c.timers.forEach(clearTimeout);
    for (const c of running)
      this.deps.recordEvent(this.pod, "Normal", "Killing", `Stopping container ${c.spec.name}`);
    await Promise.all(running.map((c) => this.kill(c, graceSeconds, "stop")));
    rmSync(this.deps.podDir, { recursive: true, force: true });
  }

  private async refreshVolumes(): Promise<void> {
    const refreshInMs = await this.volumes.materialize();
    if (refreshInMs !== undefined && !this.stopping) {
      this.tokenTimer = setTimeout(() => {
        this.refreshVolumes().catch((err: Error) => this.deps.log.warn({ err }, "refreshing volumes failed"));
      }, refreshInMs);
      this.tokenTimer.unref();
    }
  }

  private failAllWaiting(err: unknown): void {
    const reason =
      err instanceof ContainerConfigError ? "CreateContainerConfigError" : "CreateContainerError";
    for (const c of this.containers) c.state = { waiting: { reason, message: (err as Error).message } };
    this.deps.log.warn({ err }, "pod cannot start");
    this.deps.recordEvent(this.pod, "Warning", "Failed", `Error: ${(err as Error).message}`);
    this.markDirty();
  }

  private runToCompletion(c: ContainerRuntime): Promise<number> {
    return new Promise((resolve) => {
      const onExit = (code: number) => resolve(code);
      this.startContainer(c, onExit);
    });
  }

  private containerUser(c: V1Container, imageUser: number | undefined): { uid: number; gid: number } {
    const podSc = this.pod.spec?.securityContext;
    const uid = c.securityContext?.runAsUser ?? podSc?.runAsUser ?? imageUser ?? 0;
    const gid = c.securityContext?.runAsGroup ?? podSc?.runAsGroup ?? uid;
    const runAsNonRoot = c.securityContext?.runAsNonRoot ?? podSc?.runAsNonRoot ?? false;
    if (runAsNonRoot && uid === 0) {
      throw new ContainerConfigError("container has runAsNonRoot and image will run as root");
    }
    return { uid, gid };
  }

  /** The argv that sets up the container's mount namespace and user, then execs its command. */
  private wrap(argv: string[], mounts: Mount[], user: { uid: number; gid: number }): string[] {
    if (!isRoot) return argv; // no namespaces without privileges: run as this user, volumes not mounted
    // The repository holds the entry points of this project's images (and node_modules).
    const steps = mountSteps(mounts, [repoRoot]);
    const exec =
      user.uid === 0
        ? 'exec "$@"'
        : `exec setpriv --reuid=${user.uid} --regid=${user.gid} --clear-groups --inh-caps=-all -- "$@"`;
    const script = ["set -e", ...steps, exec].join("\n");
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", ...argv];
  }

  private startContainer(c: ContainerRuntime, onExit?: (code: number) => void): void {
    if (this.stopping) return;
    const spec = c.spec;
    const logFile = path.join(
      this.deps.logDir,
      `${this.pod.metadata?.namespace}_${this.pod.metadata?.name}_${spec.name}.log`,
    );
    // The kubelet's termination message file: fresh for every run, writable by the container's user,
    // mounted at terminationMessagePath (only with mount namespaces, i.e. as root).
    const messageFile = path.join(this.deps.podDir, `${spec.name}.termination-log`);
    void (async () => {
      let argv: string[];
      let env: Record<string, string>;
      let user: { uid: number; gid: number };
      try {
        const command = containerCommand(this.deps.imageMap, spec.image ?? "", spec.command, spec.args);
        user = this.containerUser(spec, command.imageUser);
        env = await resolveEnv(this.pod, spec, this.deps.podIP, this.deps.sources);
        writeFileSync(messageFile, "");
        chmodSync(messageFile, 0o666);
        const messageMount = {
          source: messageFile,
          target: spec.terminationMessagePath ?? "/dev/termination-log",
          readOnly: false,
          file: true,
        };
        argv = this.wrap(command.argv, [...this.volumes.mounts(spec), messageMount], user);
      } catch (err) {
        const reason =
          err instanceof ContainerConfigError ? "CreateContainerConfigError" : "CreateContainerError";
        const message = (err as Error).message;
        // Retried every 5 s: one event per distinct problem, not one per retry.
        if (c.state.waiting?.message !== message)
          this.deps.recordEvent(this.pod, "Warning", "Failed", `Error: ${message}`);
        c.state = { waiting: { reason, message } };
        this.markDirty();
        // Like the kubelet, try again: the missing Secret may appear.
        c.timers.push(setTimeout(() => this.startContainer(c, onExit), 5_000));
        return;
      }
      if (this.stopping) return;
      const fd = openSync(logFile, "a");
      // Where this run's output starts: a message from the log is from this run only.
      const logStart = fstatSync(fd).size;
      const child = spawn(argv[0]!, argv.slice(1), {
        cwd: spec.workingDir ?? this.deps.podDir,
        env: {
          PATH: process.env.PATH,
          HOME: this.deps.podDir,
          HOSTNAME: this.pod.metadata?.name,
          KUBERNETES_SERVICE_HOST: this.deps.apiserver.host,
          KUBERNETES_SERVICE_PORT: this.deps.apiserver.port,
          ...env,
        },
        stdio: ["ignore", fd, fd],
        detached: true, // its own process group: stopping the container stops its children too
      });
      closeSync(fd);
      c.process = child;
      c.killedBy = undefined;
      const startedAt = now();
      const pidFile = path.join(this.deps.podDir, `${spec.name}.pid`);
      child.on("spawn", () => {
        writeFileSync(pidFile, String(child.pid));
        c.state = { running: { startedAt } };
        c.ready = !spec.readinessProbe;
        c.probeFailures = { readiness: 0, liveness: 0 };
        c.probeSuccesses = 0;
        this.markDirty();
        this.deps.recordEvent(this.pod, "Normal", "Started", `Started container ${spec.name}`);
        if (!c.init) this.startProbes(c);
      });
      child.on("error", (err) =>
        this.deps.log.warn({ err, container: spec.name }, "container failed to start"),
      );
      child.on("close", (code, signal) => {
        rmSync(pidFile, { force: true });
        // A container ends with its main process: whatever it left running goes too.
        signalGroup(child.pid, "SIGKILL");
        c.timers.forEach(clearTimeout);
        c.timers = [];
        c.process = undefined;
        c.ready = false;
        // A container killed for failing its liveness probe reads as killed (137, Error) whatever
        // it returned: a TaskManager exits 0 on SIGTERM, which would read as a clean stop.
        const exitCode =
          c.killedBy === "liveness" ? 137 : (code ?? 128 + (signal ? (signalNumbers[signal] ?? 15) : 15));
        let message: string | undefined;
        try {
          message = terminationMessage({
            policy: (spec.terminationMessagePolicy ?? "File") as TerminationMessagePolicy,
            exitCode,
            file: readTail(messageFile, 0, MAX_TERMINATION_MESSAGE_BYTES),
            log: () => readTail(logFile, logStart, MAX_TERMINATION_MESSAGE_LOG_BYTES) ?? Buffer.alloc(0),
          });
        } catch (err) {
          message = `Error on reading termination message: ${(err as Error).message}`; // as the kubelet says it
        }
        c.state = {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? "Completed" : "Error",
            ...(message && { message }),
            ...(signal ? { signal: signalNumbers[signal] } : {}),
            startedAt,
            finishedAt: now(),
          },
        };
        this.deps.log.info(
          { container: spec.name, exitCode, signal, killedBy: c.killedBy },
          "container exited",
        );
        this.markDirty();
        if (onExit) return onExit(exitCode);
        if (this.stopping) return;
        if (shouldRestart(this.restartPolicy, exitCode)) {
          const delay = restartBackoffMs(c.restartCount + 1);
          c.lastState = c.state;
          c.state = {
            waiting: {
              reason: "CrashLoopBackOff",
              message: `back-off ${delay / 1000}s restarting failed container=${spec.name}`,
            },
          };
          this.deps.recordEvent(
            this.pod,
            "Warning",
            "BackOff",
            `Back-off restarting failed container ${spec.name}`,
          );
          c.timers.push(
            setTimeout(() => {
              c.restartCount++;
              this.startContainer(c);
            }, delay),
          );
          this.markDirty();
        }
      });
    })();
  }

  private async kill(c: ContainerRuntime, graceSeconds: number, why: "liveness" | "stop"): Promise<void> {
    const child = c.process;
    if (!child?.pid) return;
    c.killedBy = why;
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    signalGroup(child.pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), Math.max(0, graceSeconds) * 1000);
    await exited;
    clearTimeout(timer);
  }

  private startProbes(c: ContainerRuntime): void {
    const schedule = (probe: V1Probe, kind: "readiness" | "liveness") => {
      const period = Math.max(1, probe.periodSeconds ?? 10) * 1000;
      const tick = async () => {
        if (!c.process || this.stopping) return;
        const ok = await this.probe(c.spec, probe);
        if (kind === "readiness") this.onReadiness(c, probe, ok);
        else this.onLiveness(c, probe, ok);
        if (c.process) c.timers.push(setTimeout(tick, period));
      };
      c.timers.push(setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000));
    };
    if (c.spec.readinessProbe) schedule(c.spec.readinessProbe, "readiness");
    if (c.spec.livenessProbe) schedule(c.spec.livenessProbe, "liveness");
  }

  private onReadiness(c: ContainerRuntime, probe: V1Probe, ok: boolean): void {
    const before = c.ready;
    if (ok) {
      c.probeFailures.readiness = 0;
      c.probeSuccesses++;
      if (c.probeSuccesses >= (probe.successThreshold ?? 1)) c.ready = true;
    } else {
      c.probeSuccesses = 0;
      if (++c.probeFailures.readiness >= (probe.failureThreshold ?? 3)) c.ready = false;
    }
    if (before !== c.ready) this.markDirty();
    if (before && !c.ready)
      this.deps.recordEvent(
        this.pod,
        "Warning",
        "Unhealthy",
        `Readiness probe of container ${c.spec.name} failed`,
      );
  }

  private onLiveness(c: ContainerRuntime, probe: V1Probe, ok: boolean): void {
    if (ok) {
      c.probeFailures.liveness = 0;
      return;
    }
    if (++c.probeFailures.liveness >= (probe.failureThreshold ?? 3)) {
      this.deps.log.info({ container: c.spec.name }, "liveness probe failed, restarting container");
      this.deps.recordEvent(
        this.pod,
        "Warning",
        "Unhealthy",
        `Liveness probe of container ${c.spec.name} failed`,
      );
      this.deps.recordEvent(
        this.pod,
        "Normal",
        "Killing",
        `Container ${c.spec.name} failed liveness probe, will be restarted`,
      );
      void this.kill(c, this.pod.spec?.terminationGracePeriodSeconds ?? 30, "liveness");
    }
  }

  private probe(container: V1Container, probe: V1Probe): Promise<boolean> {
    const timeoutMs = Math.max(1, probe.timeoutSeconds ?? 1) * 1000;
    const portOf = (port: number | string) =>
      typeof port === "number" || /^\d+$/.test(port)
        ? Number(port)
        : (container.ports?.find((p) => p.name === port)?.containerPort ?? -1);
    if (probe.httpGet) {
      const { path: urlPath = "/", port, host, scheme, httpHeaders } = probe.httpGet;
      const client = scheme === "HTTPS" ? https : http;
      return new Promise((resolve) => {
        const req = client.get(
          {
            host: host ?? this.deps.podIP,
            port: portOf(port as number | string),
            path: urlPath,
            headers: Object.fromEntries((httpHeaders ?? []).map((h) => [h.name, h.value])),
            timeout: timeoutMs,
            rejectUnauthorized: false, // the kubelet does not verify probe certificates either
          },
          (res) => {
            res.resume();
            resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
          },
        );
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(false));
      });
    }
    if (probe.tcpSocket) {
      const port = portOf(probe.tcpSocket.port as number | string);
      return new Promise((resolve) => {
        const socket = net.connect({
          host: probe.tcpSocket!.host ?? this.deps.podIP,
          port,
          timeout: timeoutMs,
        });
        socket.on("connect", () => (socket.destroy(), resolve(true)));
        socket.on("timeout", () => (socket.destroy(), resolve(false)));
        socket.on("error", () => resolve(false));
      });
    }
    if (probe.exec?.command?.length) {
      const [cmd, ...args] = probe.exec.command;
      return new Promise((resolve) => {
        const child = spawn(cmd!, args, { stdio: "ignore", timeout: timeoutMs });
        child.on("error", () => resolve(false));
        child.on("close", (code) => resolve(code === 0));
      });
    }
    return Promise.resolve(true);
  }

  /** Status writes are coalesced: at most one in flight, the latest state always sent last. */
  private markDirty(): void {
    this.dirty = true;
    if (this.flushing) return;
    this.flushing = (async () => {
      while (this.dirty && !this.stopping) {
        this.dirty = false;
        try {
          await this.deps.reportStatus(this.pod, this.status());
        } catch (err) {
          this.deps.log.warn({ err }, "status update failed");
          await new Promise((r) => setTimeout(r, 1000));
          this.dirty = true;
        }
      }
      this.flushing = undefined;
    })();
  }

  private containerStatus(c: ContainerRuntime): V1ContainerStatus {
    return {
      name: c.spec.name,
      image: c.spec.image ?? "",
      imageID: "",
      containerID: c.process?.pid ? `local://${c.process.pid}` : undefined,
      ready: c.ready,
      started: !!c.state.running,
      restartCount: c.restartCount,
      state: c.state,
      lastState: c.lastState,
    };
  }

  status(): V1Pod["status"] {
    const main = this.containers.filter((c) => !c.init);
    const init = this.containers.filter((c) => c.init);
    const containerStatuses = main.map((c) => this.containerStatus(c));
    const initDone = init.every((c) => c.state.terminated?.exitCode === 0);
    const phase = podPhase(this.restartPolicy, containerStatuses, this.initFailed);
    const allReady = main.length > 0 && main.every((c) => c.ready) && phase === "Running";
    const condition = (type: string, ok: boolean, reason?: string): V1PodCondition => {
      const status = ok ? "True" : "False";
      let since = this.conditionSince.get(type);
      if (since?.status !== status) this.conditionSince.set(type, (since = { status, at: now() }));
      return { type, status, lastTransitionTime: since.at, ...(ok || !reason ? {} : { reason }) };
    };
    return {
      phase,
      hostIP: "127.0.0.1",
      hostIPs: [{ ip: "127.0.0.1" }],
      podIP: this.deps.podIP,
      podIPs: [{ ip: this.deps.podIP }],
      startTime: this.startTime,
      conditions: [
        condition("PodScheduled", true),
        condition("Initialized", initDone, "ContainersNotInitialized"),
        condition("ContainersReady", allReady, "ContainersNotReady"),
        condition("Ready", allReady, "ContainersNotReady"),
      ],
      initContainerStatuses: init.map((c) => this.containerStatus(c)),
      containerStatuses,
    };
  }
}

/**
 * At most the last `max` bytes of a file from `from` on; undefined when there is no file. Only the
 * tail is read: the kubelet's caps make anything before it irrelevant (see terminationMessage).
 */
function readTail(file: string, from: number, max: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - max);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    return buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, start));
  } finally {
    closeSync(fd);
  }
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGKILL: 9,
  SIGTERM: 15,
  SIGSEGV: 11,
  SIGABRT: 6,
};
