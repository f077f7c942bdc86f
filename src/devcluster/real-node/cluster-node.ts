// What the local cluster adds around a real node (DEVCLUSTER_NODE=real): kube-scheduler, which the
// emulated node agent stood in for by binding pods itself, and the project's images, which no
// registry serves here, loaded into the node's containerd.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import type { RealNodeBinaryName } from "../assets.js";
import { exportImage, IMAGES } from "../../images/build.js";
import { writeKubeconfig } from "../kubeconfig.js";
import { issueFromCa } from "../pki.js";
import { startDetached, type StartedProcess } from "../processes.js";
import { importImage } from "./images.js";
import type { RealNodeState } from "./node.js";

export interface SchedulerOptions {
  binaries: Record<RealNodeBinaryName, string>;
  apiserverUrl: string;
  caCert: string;
  caKey: string;
  pkiDir: string;
  port: number;
  log: string;
}

/** kube-scheduler as system:kube-scheduler, the user the bootstrap policy gives its ClusterRole. */
export async function startScheduler(o: SchedulerOptions): Promise<StartedProcess> {
  const user = await issueFromCa(o.caCert, o.caKey, "CN=system:kube-scheduler", "client");
  const kubeconfig = path.join(o.pkiDir, "kube-scheduler.kubeconfig");
  writeKubeconfig(kubeconfig, { server: o.apiserverUrl, caPem: readFileSync(o.caCert, "utf8"), ...user });
  return startDetached(
    "kube-scheduler",
    o.binaries["kube-scheduler"],
    [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      "--bind-address=127.0.0.1",
      `--secure-port=${o.port}`,
      "--leader-elect=false",
      "--profiling=false",
    ],
    o.log,
  );
}

/**
 * Copies the operator and TaskManager images from the machine's container storage (`npm run
 * images`, which cluster:up runs first) into the node's containerd, where pods find them with the
 * chart's IfNotPresent.
 */
export async function loadProjectImages(node: RealNodeState): Promise<void> {
  const work = mkdtempSync(path.join(node.dir, "images-"));
  try {
    for (const name of Object.values(IMAGES)) {
      const tarball = path.join(work, "image.tar");
      await exportImage(name, tarball);
      await importImage(node.binaries.ctr, node.containerdSocket, tarball, { snapshotter: node.snapshotter });
      rmSync(tarball);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
