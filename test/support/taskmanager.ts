// A TaskManager asked over HTTP, as the coordinator asks it (docs/protocol.md).
import { TaskManagerStatus } from "../../src/api/protocol.js";
import { TASKMANAGER_PORT } from "../../src/operator/desired.js";

/**
 * GET /v1/status of the TaskManager at `ip`. Rejects when nothing answers; resolves undefined when
 * it refuses (401 for a token that is not the job's current one).
 */
export async function readTaskManagerStatus(
  ip: string,
  token: string,
  timeoutMs = 1_000,
): Promise<TaskManagerStatus | undefined> {
  const res = await fetch(`http://${ip}:${TASKMANAGER_PORT}/v1/status`, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) return undefined;
  return TaskManagerStatus.parse(await res.json());
}

/** Like readTaskManagerStatus, undefined while it does not answer. */
export function taskManagerStatus(
  ip: string,
  token: string,
  timeoutMs = 1_000,
): Promise<TaskManagerStatus | undefined> {
  return readTaskManagerStatus(ip, token, timeoutMs).catch(() => undefined);
}
