// Idle: many suspended StreamJobs (they never run pods); the operator's RSS and CPU from /proc,
// and the API requests made while nothing changes, from kube-apiserver's /metrics.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { GROUP, PLURAL, VERSION } from "../../src/api/streamjob.js";
import { operatorUrl, readyOperatorPod, type OperatorPod } from "../../test/support/operator-release.js";
import { jobOf } from "../../test/support/pods.js";
import { sleep } from "../../test/support/wait.js";
import { cpuSeconds, rssMiB } from "../measure.js";
import { rows } from "./results.js";
import { cluster, JOB, sequenceJob, TARGETS, waitFor, type Context } from "./setup.js";

async function apiserverRequests(): Promise<Map<string, number>> {
  const text = await cluster.kubectl("get", "--raw", "/metrics");
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!["streamjobs", "pods", "secrets"].includes(labels.resource ?? "") || labels.verb === "WATCH")
      continue;
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(match[2]));
  }
  return counts;
}

/** The sum of a metric's series in the operator's /metrics. */
async function operatorMetric(ip: string, name: string): Promise<number> {
  const text = await (
    await fetch(operatorUrl(ip, "/metrics"), { signal: AbortSignal.timeout(5_000) })
  ).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}
const operatorReconciles = (ip: string) => operatorMetric(ip, "streamjob_reconcile_duration_seconds_count");

/** The release's Ready operator pod, its process checked to be the operator's. */
export async function operatorPod(ctx: Context): Promise<OperatorPod> {
  const pod = await readyOperatorPod(ctx.core, ctx.namespace, ctx.release);
  if (!pod) throw new Error("no Ready operator pod");
  const cmdline = readFileSync(`/proc/${pod.pid}/cmdline`, "utf8").replaceAll("\0", " ");
  if (!cmdline.includes("operator/main.js"))
    throw new Error(`pid ${pod.pid} is not the operator: ${cmdline}`);
  return pod;
}

export async function benchIdle(ctx: Context): Promise<void> {
  console.log(
    `\n── 3. idle: ${ctx.settings.idleJobs} StreamJobs with suspend: true, ${ctx.settings.idleSeconds} s window ──`,
  );
  const { obs, custom, namespace } = ctx;
  // The running job goes first: "idle" means no job runs pods.
  if (obs.jobs.has(JOB)) {
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name: JOB,
    });
    await waitFor(
      `the pods of ${JOB} gone`,
      () => [...obs.pods.values()].every((p) => jobOf(p) !== JOB),
      90_000,
      200,
    );
  }
  const operator = await operatorPod(ctx);
  const reconcilesAtCreate = await operatorReconciles(operator.ip);
  const names = Array.from({ length: ctx.settings.idleJobs }, (_, i) => `idle-${String(i).padStart(3, "0")}`);
  const created = performance.now();
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(
      names.slice(i, i + 10).map((name) =>
        custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          body: sequenceJob(name, ctx.bucket, { suspend: true }),
        }),
      ),
    );
  }
  // Watched, not polled: the bench itself makes no requests while the operator settles.
  await waitFor(
    `all ${ctx.settings.idleJobs} StreamJobs in phase Suspended`,
    () => names.every((name) => obs.jobs.get(name)?.status?.phase === "Suspended"),
    180_000,
    100,
  );
  const allSuspendedS = (performance.now() - created) / 1000;
  const reconcilesToSuspend = (await operatorReconciles(operator.ip)) - reconcilesAtCreate;
  console.log(
    `${ctx.settings.idleJobs} StreamJobs Suspended ${allSuspendedS.toFixed(1)} s after the first create; ` +
      `${reconcilesToSuspend} reconcile passes; they never run pods. Quiet 5 s, then the window.`,
  );
  await sleep(5_000);

  const requestsBefore = await apiserverRequests();
  const reconcilesBefore = await operatorReconciles(operator.ip);
  const cpuBefore = cpuSeconds(operator.pid);
  const started = performance.now();
  const rss: number[] = [rssMiB(operator.pid)];
  while (performance.now() - started < ctx.settings.idleSeconds * 1000) {
    await sleep(1_000);
    rss.push(rssMiB(operator.pid));
  }
  const windowS = (performance.now() - started) / 1000;
  const cpuPercent = ((cpuSeconds(operator.pid) - cpuBefore) / windowS) * 100;
  const requestsAfter = await apiserverRequests();
  const reconciles = (await operatorReconciles(operator.ip)) - reconcilesBefore;
  const delta = [...requestsAfter]
    .map(([key, value]) => [key, value - (requestsBefore.get(key) ?? 0)] as const)
    .filter(([, value]) => value > 0);
  const requests = delta.reduce((sum, [, value]) => sum + value, 0);
  const suspended = names.filter((name) => obs.jobs.get(name)?.status?.phase === "Suspended").length;
  const maxRss = Math.max(...rss);
  const heapMiB = (await operatorMetric(operator.ip, "nodejs_heap_size_used_bytes")) / 1024 / 1024;
  const externalMiB = (await operatorMetric(operator.ip, "nodejs_external_memory_bytes")) / 1024 / 1024;
  rows.push(
    {
      section: "idle",
      metric: `StreamJobs Suspended (idle: suspend: true, no pods)`,
      unit: "jobs",
      value: suspended,
      target: String(ctx.settings.idleJobs),
      pass: suspended === ctx.settings.idleJobs,
      note: `all Suspended ${allSuspendedS.toFixed(1)} s after the first create, ${reconcilesToSuspend} reconcile passes`,
    },
    {
      section: "idle",
      metric: "operator RSS, max over the window",
      unit: "MiB",
      value: maxRss,
      target: `≤ ${TARGETS.rssMiB} MiB`,
      pass: maxRss <= TARGETS.rssMiB,
      note:
        `VmRSS every 1 s: first ${rss[0]!.toFixed(1)}, last ${rss.at(-1)!.toFixed(1)}; ` +
        `V8 heap used ${heapMiB.toFixed(1)}, external ${externalMiB.toFixed(1)}; ` +
        `${ctx.startRssMiB?.toFixed(1) ?? "?"} right after start with no StreamJob`,
    },
    {
      section: "idle",
      metric: "operator CPU over the window",
      unit: "% of a core",
      value: cpuPercent,
      target: `≤ ${TARGETS.cpuPercent} %`,
      pass: cpuPercent <= TARGETS.cpuPercent,
      note: `utime+stime over ${windowS.toFixed(0)} s`,
    },
    {
      section: "idle",
      metric: "apiserver non-WATCH requests (streamjobs, pods, secrets)",
      unit: "requests",
      value: requests,
      target: "0 (no polling)",
      pass: requests === 0,
      note:
        (delta.length ? delta.map(([key, value]) => `${key}: ${value}`).join("; ") : "none") +
        `; from every client of the cluster (${[...requestsBefore.values()].reduce((a, b) => a + b, 0)} ` +
        "such requests counted before the window)",
    },
    {
      section: "idle",
      metric: "operator reconcile passes (streamjob_reconcile_duration_seconds_count)",
      unit: "passes",
      value: reconciles,
      target: "0",
      pass: reconciles === 0,
    },
  );
}
