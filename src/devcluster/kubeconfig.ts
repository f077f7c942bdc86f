// Kubeconfigs and HTTP health checks of the local cluster's parts: each component (the admin, the
// controller manager, a kubelet, kube-proxy, kube-scheduler, CoreDNS) gets a kubeconfig with its
// own client certificate, inline, for the one cluster.
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { stringify } from "yaml";

export interface KubeconfigOptions {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** The context's default namespace. */
  namespace?: string;
}

function kubeconfigYaml(o: KubeconfigOptions): string {
  const b64 = (pem: string) => Buffer.from(pem).toString("base64");
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      { name: "devcluster", cluster: { server: o.server, "certificate-authority-data": b64(o.caPem) } },
    ],
    users: [
      { name: "user", user: { "client-certificate-data": b64(o.certPem), "client-key-data": b64(o.keyPem) } },
    ],
    contexts: [
      {
        name: "devcluster",
        context: { cluster: "devcluster", user: "user", ...(o.namespace && { namespace: o.namespace }) },
      },
    ],
    "current-context": "devcluster",
  });
}

/** Writes a kubeconfig (mode 0600: it holds a private key). */
export function writeKubeconfig(file: string, o: KubeconfigOptions): void {
  writeFileSync(file, kubeconfigYaml(o), { mode: 0o600 });
}

/** The same, from the PEM files of the CA certificate and the client's certificate and key. */
export function writeKubeconfigFromFiles(
  file: string,
  server: string,
  files: { ca: string; cert: string; key: string },
  namespace?: string,
): void {
  const read = (f: string) => readFileSync(f, "utf8");
  writeKubeconfig(file, {
    server,
    caPem: read(files.ca),
    certPem: read(files.cert),
    keyPem: read(files.key),
    namespace,
  });
}

/** True when a GET answers 200; rejects when nothing answers (so waitFor keeps the last error). */
export function httpGetOk(url: string, options: https.RequestOptions = {}): Promise<boolean> {
  const client = url.startsWith("https:") ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.get(url, { ...options, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}
