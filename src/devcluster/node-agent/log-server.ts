// The one kubelet endpoint the apiserver proxies for `kubectl logs`:
// GET /containerLogs/{namespace}/{pod}/{container}?follow=true&tailLines=N, over mutual TLS.
import { createReadStream, existsSync, readFileSync, statSync, watch } from "node:fs";
import https from "node:https";
import path from "node:path";
import { tailLines } from "./pod-status.js";

export interface LogServerOptions {
  port: number;
  cert: Buffer;
  key: Buffer;
  ca: string;
  logDir: string;
}

const segment = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function startLogServer(options: LogServerOptions): https.Server {
  const server = https.createServer(
    // Only clients with a certificate from the cluster CA (the apiserver) may read logs.
    { cert: options.cert, key: options.key, ca: options.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const url = new URL(req.url ?? "/", "https://node");
      const parts = url.pathname.split("/").filter(Boolean);
      if (
        parts[0] !== "containerLogs" ||
        parts.length !== 4 ||
        !parts.slice(1).every((p) => segment.test(p))
      ) {
        res.writeHead(404).end("not found\n");
        return;
      }
      const [, namespace, pod, container] = parts;
      const file = path.join(options.logDir, `${namespace}_${pod}_${container}.log`);
      if (!existsSync(file)) {
        res.writeHead(404).end(`no logs for container ${container} of pod ${namespace}/${pod}\n`);
        return;
      }
      res.writeHead(200, { "Content-Type": "text/plain" });
      const tail = url.searchParams.get("tailLines");
      let offset = 0;
      if (tail !== null) {
        const bytes = readFileSync(file);
        res.write(tailLines(bytes, Number(tail)));
        offset = bytes.length;
      }
      const follow = url.searchParams.get("follow") === "true";
      if (!follow) {
        if (tail !== null) res.end();
        else createReadStream(file).pipe(res);
        return;
      }
      // One read stream at a time, so followed output never interleaves or repeats.
      let sending = false;
      let again = false;
      const pump = (): void => {
        if (sending) {
          again = true;
          return;
        }
        const size = statSync(file).size;
        if (size <= offset) return;
        sending = true;
        createReadStream(file, { start: offset, end: size - 1 })
          .on("end", () => {
            sending = false;
            if (again) {
              again = false;
              pump();
            }
          })
          .pipe(res, { end: false });
        offset = size;
      };
      pump();
      const watcher = watch(file, pump);
      req.on("close", () => watcher.close());
    },
  );
  server.listen(options.port, "127.0.0.1");
  return server;
}
