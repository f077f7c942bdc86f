// Background processes of the local cluster: started detached (each leads its own process
// group, so stopping it also stops what it spawned), output appended to a log file.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import net from "node:net";

export interface StartedProcess {
  name: string;
  pid: number;
  log: string;
}

export function startDetached(
  name: string,
  command: string,
  args: string[],
  log: string,
  env: NodeJS.ProcessEnv = process.env,
  cwd?: string,
): StartedProcess {
  const fd = openSync(log, "a");
  try {
    const child = spawn(command, args, { detached: true, stdio: ["ignore", fd, fd], env, cwd });
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    child.unref();
    return { name, pid: child.pid, log };
  } finally {
    closeSync(fd);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** SIGTERM the process group, wait up to `graceMs`, then SIGKILL. Resolves once the leader is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  signalGroup(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    signalGroup(pid, "SIGKILL");
    while (isAlive(pid)) await sleep(50);
  }
}

/** A free TCP port on 127.0.0.1 (the kernel picks it; a race with another process is unlikely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** Polls `check` until it returns true; fails with `what` and the last error after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  pid?: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (pid !== undefined && !isAlive(pid)) throw new Error(`${what}: the process exited`);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${lastError}` : ""}`);
    await sleep(200);
  }
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Each line of output (stdout and stderr) as it comes: progress. */
  onLine?: (line: string) => void;
}

/** Runs a command to completion; resolves with its stdout, rejects naming it with the tail of its output. */
export function runCommand(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let tail = "";
    const take = (chunk: Buffer, isStdout: boolean) => {
      const text = chunk.toString();
      if (isStdout) stdout += text;
      tail = (tail + text).slice(-4000);
      if (options.onLine) for (const line of text.split("\n")) if (line.trim()) options.onLine(line);
    };
    child.stdout.on("data", (chunk: Buffer) => take(chunk, true));
    child.stderr.on("data", (chunk: Buffer) => take(chunk, false));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(" ")} failed (exit ${code}):\n${tail}`));
    });
  });
}
